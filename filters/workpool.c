/*
 * NAME
 *	workpool - a bounded pool of worker threads for blocking work
 * DESCRIPTION
 *	A mutex-protected FIFO of jobs and N threads that take from it. Each job
 *	carries a libevent event on the submitter's base; the worker activates it
 *	when the work is done (event_active is thread-safe once evthread is on),
 *	and the done callback then runs on the submitter's own thread.
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

struct px_job {
	struct px_job *next;
	px_work_fn work;
	px_done_fn done;
	void *arg;
	struct event *ev;
};

struct px_workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct px_job *head, *tail;
	unsigned queued, queue_max;
	unsigned nthreads;
	int stopping;
	pthread_t *threads;
};

/* job_done - runs on the submitter's base: hand the result back, free the job */
static void job_done(evutil_socket_t fd, short what, void *arg)
{
	struct px_job *job = arg;

	event_free(job->ev);
	job->done(job->arg);
	free(job);
}

/* pool_take - wait for a job; NULL when the pool stops and the queue is empty */
static struct px_job *pool_take(struct px_workpool *pool)
{
	struct px_job *job;

	pthread_mutex_lock(&pool->lock);
	while (pool->head == NULL && !pool->stopping)
		pthread_cond_wait(&pool->cond, &pool->lock);
	job = pool->head;
	if (job != NULL) {
		pool->head = job->next;
		if (pool->head == NULL)
			pool->tail = NULL;
		pool->queued--;
	}
	pthread_mutex_unlock(&pool->lock);
	return job;
}

/* worker_main - run jobs until told to stop */
static void *worker_main(void *arg)
{
	struct px_workpool *pool = arg;
	struct px_job *job;

	while ((job = pool_take(pool)) != NULL) {
		job->work(job->arg);
		event_active(job->ev, EV_TIMEOUT, 0);
	}
	return NULL;
}

/* px_workpool_new - start the threads */
struct px_workpool *px_workpool_new(unsigned threads, unsigned queue_max, char *err, size_t errlen)
{
	struct px_workpool *pool = calloc(1, sizeof(*pool));
	unsigned i;
	int rc;

	if (pool == NULL || (pool->threads = calloc(threads, sizeof(pthread_t))) == NULL) {
		snprintf(err, errlen, "worker pool: out of memory");
		free(pool);
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->queue_max = queue_max;
	for (i = 0; i < threads; i++) {
		if ((rc = pthread_create(&pool->threads[i], NULL, worker_main, pool)) != 0) {
			snprintf(err, errlen, "worker pool: pthread_create: %s", strerror(rc));
			pool->nthreads = i;
			px_workpool_free(pool);
			return NULL;
		}
	}
	pool->nthreads = threads;
	return pool;
}

/* px_workpool_submit - queue one job */
int px_workpool_submit(struct px_workpool *pool, struct event_base *base, px_work_fn work,
		       px_done_fn done, void *arg)
{
	struct px_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return -1;
	job->work = work;
	job->done = done;
	job->arg = arg;
	if ((job->ev = event_new(base, -1, 0, job_done, job)) == NULL) {
		free(job);
		return -1;
	}
	pthread_mutex_lock(&pool->lock);
	if (pool->queued >= pool->queue_max || pool->stopping) {
		pthread_mutex_unlock(&pool->lock);
		event_free(job->ev);
		free(job);
		errno = EAGAIN;
		return -1;
	}
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

/* px_workpool_free - drain and join, waiting at most PX_WORKPOOL_JOIN_MS in
 * all; 0 when every thread ended, -1 when one is still inside a job (a hook
 * that never returns): then the pool is left allocated, since that thread
 * will still touch it, and the caller must not free what jobs may reach */
int px_workpool_free(struct px_workpool *pool)
{
	struct timespec deadline;
	unsigned i;
	int stuck = 0;

	if (pool == NULL)
		return 0;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += PX_WORKPOOL_JOIN_MS / 1000;
	for (i = 0; i < pool->nthreads; i++)
		if (pthread_timedjoin_np(pool->threads[i], NULL, &deadline) != 0)
			stuck = 1;
	if (stuck)
		return -1;
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool->threads);
	free(pool);
	return 0;
}
