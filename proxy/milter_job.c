/*
 * NAME
 *	milter_job - a callback's hand-off to the loop, and its wait
 * DESCRIPTION
 *	A stage job is shared by two threads: the libmilter thread that waits
 *	for it and the loop thread that answers it. Whoever is second frees
 *	it: the waiter after the answer came, or the loop when the waiter
 *	gave up (abandoned: past timeouts.milter, the MTA got 451 already).
 *	The wait uses CLOCK_MONOTONIC, so a clock step cannot stretch it.
 */
#include "autoconfig.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "filters/spool.h"
#include "milter_int.h"

struct px_mjob *px_mjob_new(struct px_mconn *c, enum px_mjob_kind kind, enum px_stage st)
{
	struct px_mjob *job = calloc(1, sizeof(*job));
	pthread_condattr_t ca;

	if (job == NULL)
		return NULL;
	job->kind = kind;
	job->c = c;
	job->stage = st;
	job->f = c->f;
	pthread_mutex_init(&job->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&job->cond, &ca);
	pthread_condattr_destroy(&ca);
	return job;
}

void px_medits_free(struct px_medits *e)
{
	size_t i;

	for (i = 0; i < e->nadd; i++) {
		free(e->add[i].name);
		free(e->add[i].value);
	}
	for (i = 0; i < e->ndel; i++)
		free(e->del[i].name);
	free(e->add);
	free(e->del);
	memset(e, 0, sizeof(*e));
}

void px_mjob_free(struct px_mjob *job)
{
	if (job == NULL)
		return;
	px_medits_free(&job->edits);
	px_spool_free(job->spool);
	pthread_cond_destroy(&job->cond);
	pthread_mutex_destroy(&job->lock);
	free(job);
}

/* px_mjob_answer - on the loop thread */
void px_mjob_answer(struct px_mjob *job)
{
	int gone;

	pthread_mutex_lock(&job->lock);
	job->answered = 1;
	gone = job->abandoned;
	pthread_cond_signal(&job->cond);
	pthread_mutex_unlock(&job->lock);
	if (gone)
		px_mjob_free(job);
}

/* add_ms - now + ms on CLOCK_MONOTONIC */
static void add_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* before - a is earlier than b */
static int before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int px_mjob_wait(struct px_mjob *job, unsigned deadline_ms, unsigned slice_ms,
		 void (*progress)(void *), void *arg)
{
	struct timespec end, next;
	int answered;

	add_ms(&end, deadline_ms);
	pthread_mutex_lock(&job->lock);
	while (!job->answered) {
		if (slice_ms > 0 && progress != NULL) {
			add_ms(&next, slice_ms);
			if (before(&end, &next))
				next = end;
		} else {
			next = end;
		}
		if (pthread_cond_timedwait(&job->cond, &job->lock, &next) != ETIMEDOUT ||
		    job->answered)
			continue;
		if (!before(&next, &end))
			break;                /* the deadline */
		pthread_mutex_unlock(&job->lock);
		progress(arg);                /* smfi_progress: the MTA's timer restarts */
		pthread_mutex_lock(&job->lock);
	}
	answered = job->answered;
	if (!answered)
		job->abandoned = 1;
	pthread_mutex_unlock(&job->lock);
	return answered ? 0 : -1;
}
