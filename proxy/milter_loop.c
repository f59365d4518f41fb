/*
 * NAME
 *	milter_loop - postern-milter's one event loop thread
 * DESCRIPTION
 *	The chain runner needs an event base: its budget timers, the pool's
 *	completions, resume() and asynchronous DNS answers all arrive there.
 *	libmilter owns the program's other threads, so postern-milter runs one
 *	libevent loop of its own, and every txn operation is a job handed to
 *	it: px_mloop_submit queues the job (FIFO, so a connection's reset and
 *	close never overtake its stage) and wakes the loop, which runs the
 *	jobs in order (px_mstage_run). One loop is enough: it only starts
 *	and ends work, the work runs on the pool.
 */
#include "autoconfig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "milter_int.h"

struct px_mloop {
	struct event_base *base;
	struct event *wake;
	pthread_t thread;
	int started;
	pthread_mutex_t lock;
	struct px_mjob *head, **tail;
};

/* drain - run the queued jobs, in order */
static void drain(evutil_socket_t fd, short what, void *arg)
{
	struct px_mloop *l = arg;
	struct px_mjob *job;

	(void)fd;
	(void)what;
	for (;;) {
		pthread_mutex_lock(&l->lock);
		job = l->head;
		if (job != NULL && (l->head = job->next) == NULL)
			l->tail = &l->head;
		pthread_mutex_unlock(&l->lock);
		if (job == NULL)
			return;
		job->next = NULL;
		px_mstage_run(job);
	}
}

/* loop_main - the thread */
static void *loop_main(void *arg)
{
	struct px_mloop *l = arg;

	event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

struct px_mloop *px_mloop_start(char *err, size_t errlen)
{
	struct px_mloop *l = calloc(1, sizeof(*l));

	if (l == NULL || (l->base = event_base_new()) == NULL ||
	    (l->wake = event_new(l->base, -1, 0, drain, l)) == NULL) {
		snprintf(err, errlen, "cannot create the event loop");
		px_mloop_free(l);
		return NULL;
	}
	pthread_mutex_init(&l->lock, NULL);
	l->tail = &l->head;
	if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
		snprintf(err, errlen, "cannot start the event loop thread");
		px_mloop_free(l);
		return NULL;
	}
	l->started = 1;
	return l;
}

struct event_base *px_mloop_base(struct px_mloop *l)
{
	return l->base;
}

void px_mloop_submit(struct px_mloop *l, struct px_mjob *job)
{
	job->next = NULL;
	pthread_mutex_lock(&l->lock);
	*l->tail = job;
	l->tail = &job->next;
	pthread_mutex_unlock(&l->lock);
	event_active(l->wake, EV_TIMEOUT, 0);
}

/* px_mloop_stop - end the loop (after libmilter has stopped: no more jobs),
 * run what is still queued, join the thread */
void px_mloop_stop(struct px_mloop *l)
{
	if (l == NULL || !l->started)
		return;
	event_base_loopexit(l->base, NULL);
	pthread_join(l->thread, NULL);
	l->started = 0;
	drain(-1, 0, l);
}

void px_mloop_free(struct px_mloop *l)
{
	if (l == NULL)
		return;
	px_mloop_stop(l);
	if (l->wake)
		event_free(l->wake);
	if (l->base)
		event_base_free(l->base);
	if (l->tail)
		pthread_mutex_destroy(&l->lock);
	free(l);
}
