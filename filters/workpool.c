/*
 * NAME
 *	workpool - a bounded, elastic pool of worker threads for blocking work
 * DESCRIPTION
 *	See workpool.h. A mutex-protected FIFO of jobs and detached threads
 *	that take from it. Each job carries a libevent event on the
 *	submitter's base; the worker activates it when the work is done
 *	(event_active is thread-safe once evthread is on), and the done
 *	callback then runs on the submitter's own thread.
 *
 *	Accounting, under pool->lock: nthreads workers are alive, idle of them
 *	wait for work, nstuck of them are inside an abandoned job. A submit
 *	starts a worker when more jobs are queued than workers are idle; an
 *	abandon replaces the stuck worker, so that min_threads workers stay
 *	outside abandoned jobs (both within max_threads). Workers are
 *	detached: px_workpool_stop waits on `gone` until the count says they
 *	have left.
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "workpool.h"

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct px_job {
	struct px_job *next;
	px_work_fn work;
	px_done_fn done;
	void *arg;
	struct event *ev;
	enum job_state state;
	int abandoned;
};

struct px_workpool {
	pthread_mutex_t lock;
	pthread_cond_t work;          /* a job was queued, or stop */
	pthread_cond_t gone;          /* a worker ended */
	struct px_job *head, *tail;
	unsigned queued, queue_max;
	unsigned min_threads, max_threads;
	unsigned nthreads, idle, nstuck;
	int stopping;                 /* stop: drain the queue, then end */
	int closed;                   /* stopped: take nothing more, drop the queue */
};

static void *worker_main(void *arg);

/* job_done - runs on the submitter's base: hand the result back, free the job */
static void job_done(evutil_socket_t fd, short what, void *arg)
{
	struct px_job *job = arg;

	(void)fd;
	(void)what;
	event_free(job->ev);
	job->done(job->arg);
	free(job);
}

/* worker_spawn - one more detached worker (lock held); 0 or an errno */
static int worker_spawn(struct px_workpool *pool)
{
	pthread_attr_t a;
	pthread_t t;
	int rc;

	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&t, &a, worker_main, pool);
	pthread_attr_destroy(&a);
	if (rc == 0)
		pool->nthreads++;
	return rc;
}

/* maybe_grow - a worker for a queued job that no idle worker will take,
 * and workers to keep `min_threads` of them outside abandoned jobs (lock
 * held); on failure the existing workers carry on */
static void maybe_grow(struct px_workpool *pool)
{
	if (pool->stopping)
		return;
	if (pool->queued > pool->idle && pool->nthreads < pool->max_threads)
		(void)worker_spawn(pool);
	while (pool->nthreads - pool->nstuck < pool->min_threads &&
	       pool->nthreads < pool->max_threads && worker_spawn(pool) == 0)
		;
}

/* deadline_in - CLOCK_MONOTONIC now + ms */
static struct timespec deadline_in(unsigned ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* pool_take - wait for a job (lock held); NULL when this worker should end:
 * the pool stops and the queue is empty, or a surplus worker sat idle */
static struct px_job *pool_take(struct px_workpool *pool)
{
	struct timespec until = deadline_in(PX_WORKPOOL_IDLE_MS);
	struct px_job *job;
	int rc = 0;

	while (pool->head == NULL && !pool->stopping && !pool->closed) {
		if (rc == ETIMEDOUT && pool->nthreads - pool->nstuck > pool->min_threads)
			return NULL;
		pool->idle++;
		rc = pthread_cond_timedwait(&pool->work, &pool->lock, &until);
		pool->idle--;
		if (rc == ETIMEDOUT)
			until = deadline_in(PX_WORKPOOL_IDLE_MS);
	}
	if (pool->closed || (job = pool->head) == NULL)
		return NULL;
	pool->head = job->next;
	if (pool->head == NULL)
		pool->tail = NULL;
	pool->queued--;
	job->state = JOB_RUNNING;
	return job;
}

/* worker_main - run jobs until told to end */
static void *worker_main(void *arg)
{
	struct px_workpool *pool = arg;
	struct px_job *job;
	struct event *ev;

	pthread_mutex_lock(&pool->lock);
	while ((job = pool_take(pool)) != NULL) {
		pthread_mutex_unlock(&pool->lock);
		job->work(job->arg);
		pthread_mutex_lock(&pool->lock);
		if (job->abandoned)
			pool->nstuck--;
		job->state = JOB_DONE;
		ev = job->ev;
		pthread_mutex_unlock(&pool->lock);
		if (ev == NULL) {         /* detached: done here, nobody waits */
			job->done(job->arg);
			free(job);
		} else {
			/* after this the submitter's base may free job at any time */
			event_active(ev, EV_TIMEOUT, 0);
		}
		pthread_mutex_lock(&pool->lock);
	}
	pool->nthreads--;
	pthread_cond_broadcast(&pool->gone);
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* px_workpool_new - start the minimum of workers */
struct px_workpool *px_workpool_new(unsigned threads, unsigned queue_max, char *err, size_t errlen)
{
	struct px_workpool *pool = calloc(1, sizeof(*pool));
	pthread_condattr_t ca;
	unsigned i;
	int rc = 0;

	if (pool == NULL) {
		snprintf(err, errlen, "worker pool: out of memory");
		return NULL;
	}
	if (threads == 0)
		threads = 1;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->work, &ca);
	pthread_cond_init(&pool->gone, &ca);
	pthread_condattr_destroy(&ca);
	pool->queue_max = queue_max;
	pool->min_threads = threads;
	pool->max_threads = threads * PX_WORKPOOL_GROWTH;
	pthread_mutex_lock(&pool->lock);
	for (i = 0; i < threads && rc == 0; i++)
		rc = worker_spawn(pool);
	pthread_mutex_unlock(&pool->lock);
	if (rc != 0) {
		snprintf(err, errlen, "worker pool: pthread_create: %s", strerror(rc));
		px_workpool_free(pool);
		return NULL;
	}
	return pool;
}

/* px_workpool_submit_job - queue one job (base NULL: detached, done runs on
 * the worker, or at stop when the job was dropped) */
struct px_job *px_workpool_submit_job(struct px_workpool *pool, struct event_base *base,
				      px_work_fn work, px_done_fn done, void *arg)
{
	struct px_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->work = work;
	job->done = done;
	job->arg = arg;
	if (base != NULL && (job->ev = event_new(base, -1, 0, job_done, job)) == NULL) {
		free(job);
		return NULL;
	}
	pthread_mutex_lock(&pool->lock);
	if (pool->queued >= pool->queue_max || pool->stopping || pool->closed) {
		pthread_mutex_unlock(&pool->lock);
		if (job->ev != NULL)
			event_free(job->ev);
		free(job);
		errno = EAGAIN;
		return NULL;
	}
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	maybe_grow(pool);
	pthread_cond_signal(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	return job;
}

int px_workpool_submit(struct px_workpool *pool, struct event_base *base, px_work_fn work,
		       px_done_fn done, void *arg)
{
	return px_workpool_submit_job(pool, base, work, done, arg) ? 0 : -1;
}

/* unqueue - take a queued job out of the FIFO (lock held) */
static void unqueue(struct px_workpool *pool, struct px_job *job)
{
	struct px_job **pp, *prev = NULL;

	for (pp = &pool->head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp != job)
			continue;
		*pp = job->next;
		if (pool->tail == job)
			pool->tail = prev;
		pool->queued--;
		return;
	}
}

/* px_workpool_abandon - cancel a queued job, or count a running one stuck */
enum px_job_fate px_workpool_abandon(struct px_workpool *pool, struct px_job *job)
{
	enum px_job_fate fate;

	pthread_mutex_lock(&pool->lock);
	switch (job->state) {
	case JOB_QUEUED:
		unqueue(pool, job);
		fate = PX_JOB_CANCELLED;
		break;
	case JOB_RUNNING:
		if (!job->abandoned) {
			job->abandoned = 1;
			pool->nstuck++;
			maybe_grow(pool);
		}
		fate = PX_JOB_STUCK;
		break;
	default:
		fate = PX_JOB_FINISHED;
	}
	pthread_mutex_unlock(&pool->lock);
	if (fate == PX_JOB_CANCELLED) {
		event_free(job->ev);
		free(job);
	}
	return fate;
}

unsigned px_workpool_stuck_max(const struct px_workpool *pool)
{
	unsigned n = pool->max_threads / 4;

	return n > 0 ? n : 1;
}

void px_workpool_stats(struct px_workpool *pool, struct px_workpool_stats *out)
{
	pthread_mutex_lock(&pool->lock);
	out->threads = pool->nthreads;
	out->idle = pool->idle;
	out->stuck = pool->nstuck;
	out->min = pool->min_threads;
	out->max = pool->max_threads;
	pthread_mutex_unlock(&pool->lock);
}

/* drop_queue - at stop: the jobs nobody will run (lock held) */
static void drop_queue(struct px_workpool *pool)
{
	struct px_job *job;

	while ((job = pool->head) != NULL) {
		pool->head = job->next;
		if (job->ev == NULL)
			job->done(job->arg);  /* detached: its done frees what it owns */
		else
			event_free(job->ev);
		free(job);
	}
	pool->tail = NULL;
	pool->queued = 0;
}

/* px_workpool_stop - drain, then wait for the workers that are not stuck */
int px_workpool_stop(struct px_workpool *pool)
{
	struct timespec until = deadline_in(PX_WORKPOOL_JOIN_MS);
	int rc = 0;

	if (pool == NULL)
		return 0;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->work);
	/* a worker ends once the queue is empty; one inside an abandoned job
	 * may never come back, and is not waited for */
	while (pool->nthreads > pool->nstuck && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&pool->gone, &pool->lock, &until);
	/* from here on nobody takes a job: a stuck worker that comes back
	 * ends, and what is still queued is dropped */
	pool->closed = 1;
	drop_queue(pool);
	pthread_cond_broadcast(&pool->work);
	rc = pool->nthreads > pool->nstuck ? -1 : 0;
	pthread_mutex_unlock(&pool->lock);
	return rc;
}

/* px_workpool_free - stop, and free when every worker has left */
int px_workpool_free(struct px_workpool *pool)
{
	unsigned left;

	if (pool == NULL)
		return 0;
	px_workpool_stop(pool);
	pthread_mutex_lock(&pool->lock);
	left = pool->nthreads;
	pthread_mutex_unlock(&pool->lock);
	if (left > 0)
		return -1;
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->work);
	pthread_cond_destroy(&pool->gone);
	free(pool);
	return 0;
}
