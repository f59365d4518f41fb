/*
 * NAME
 *	workpool - a bounded pool of worker threads for blocking work
 * DESCRIPTION
 *	I/O threads never block: anything that may (a plugin hook, an fsync, a
 *	synchronous mail library) is handed to this pool, and its completion is
 *	delivered back on the event base of the thread that submitted it, so the
 *	caller's state is only ever touched by its own thread. The queue is
 *	bounded; px_workpool_submit fails when it is full, and the caller answers
 *	its client with a 4xx.
 *
 *	Requires evthread_use_pthreads() before any event base is created.
 */
#ifndef PX_FILTERS_WORKPOOL_H
#include <stddef.h>
#define PX_FILTERS_WORKPOOL_H

struct event_base;
struct px_workpool;

typedef void (*px_work_fn)(void *arg);   /* on a worker thread */
typedef void (*px_done_fn)(void *arg);   /* on the submitter's event base */

/* px_workpool_new - start threads workers with a queue of at most queue_max jobs */
struct px_workpool *px_workpool_new(unsigned threads, unsigned queue_max, char *err, size_t errlen);
/* px_workpool_submit - queue work; done runs later on base. 0, or -1 when full */
int px_workpool_submit(struct px_workpool *pool, struct event_base *base, px_work_fn work,
		       px_done_fn done, void *arg);
#define PX_WORKPOOL_JOIN_MS 5000

/* px_workpool_free - finish queued jobs, join the threads (bounded); 0, or -1
 * when a job is still running: then nothing its done callback reaches (the
 * event bases) may be freed */
int px_workpool_free(struct px_workpool *pool);

#endif
