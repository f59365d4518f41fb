/*
 * NAME
 *	workpool - a bounded, elastic pool of worker threads for blocking work
 * DESCRIPTION
 *	I/O threads never block: anything that may (a plugin hook, an fsync, a
 *	synchronous mail library) is handed to this pool, and its completion is
 *	delivered back on the event base of the thread that submitted it, so the
 *	caller's state is only ever touched by its own thread. The queue is
 *	bounded; a submit fails when it is full, and the caller answers its
 *	client with a 4xx.
 *
 *	Sized for blocking work. The pool keeps `threads` workers, and starts
 *	another (up to threads * PX_WORKPOOL_GROWTH) whenever a job is queued
 *	and no worker is idle: a job that blocks on DNS or a scan costs one
 *	thread, never the service. Workers beyond `threads` end after
 *	PX_WORKPOOL_IDLE_MS without work.
 *
 *	Abandoned jobs. A caller that stops waiting for a job (a plugin hook
 *	past its budget) says so with px_workpool_abandon(): a job still queued
 *	is cancelled (it never runs and its done never comes); a running one is
 *	counted as stuck, and its thread no longer counts as a worker: the pool
 *	starts another one at once, so that `threads` workers stay free of
 *	stuck jobs (within the bound). A stuck job's done still comes when it
 *	returns; its thread then is a surplus worker. px_workpool_stuck_max() is how many stuck jobs
 *	one client of the pool (one plugin) should be allowed: a quarter of the
 *	bound, so that one hung library leaves the others three quarters.
 *
 *	Requires evthread_use_pthreads() before any event base is created.
 */
#ifndef PX_FILTERS_WORKPOOL_H
#define PX_FILTERS_WORKPOOL_H

#include <stddef.h>

struct event_base;
struct px_workpool;
struct px_job;

typedef void (*px_work_fn)(void *arg);   /* on a worker thread */
typedef void (*px_done_fn)(void *arg);   /* on the submitter's event base */

#define PX_WORKPOOL_GROWTH 8            /* the bound: threads * this */
#define PX_WORKPOOL_IDLE_MS 30000       /* a surplus worker ends after this idle */
#define PX_WORKPOOL_JOIN_MS 5000        /* px_workpool_stop waits at most this */

/* px_workpool_new - keep `threads` workers (grow to threads * GROWTH) with a
 * queue of at most queue_max jobs */
struct px_workpool *px_workpool_new(unsigned threads, unsigned queue_max, char *err, size_t errlen);
/* px_workpool_submit - queue work; done runs later on base. 0, or -1 when full */
int px_workpool_submit(struct px_workpool *pool, struct event_base *base, px_work_fn work,
		       px_done_fn done, void *arg);
/* px_workpool_submit_job - the same, returning the job for px_workpool_abandon
 * (valid until its done has run), or NULL when full. base NULL: a detached
 * job, nobody waits for it: done runs on the worker right after work (or,
 * if the pool stops before it ran, at px_workpool_stop, without work), so
 * it is never lost when the event loops have stopped first; not for
 * px_workpool_abandon. */
struct px_job *px_workpool_submit_job(struct px_workpool *pool, struct event_base *base,
				      px_work_fn work, px_done_fn done, void *arg);

enum px_job_fate {
	PX_JOB_CANCELLED,         /* it was still queued: it will never run, no done */
	PX_JOB_STUCK,             /* it is running: counted stuck, replaced; done later */
	PX_JOB_FINISHED           /* it has returned: done is on its way */
};
/* px_workpool_abandon - the submitter stops waiting for job; on the
 * submitter's base thread, before job's done has run */
enum px_job_fate px_workpool_abandon(struct px_workpool *pool, struct px_job *job);

/* px_workpool_stuck_max - how many stuck jobs one plugin should be allowed */
unsigned px_workpool_stuck_max(const struct px_workpool *pool);

/* px_workpool_stats - workers alive, idle, inside an abandoned job; the bounds */
struct px_workpool_stats {
	unsigned threads, idle, stuck, min, max;
};
void px_workpool_stats(struct px_workpool *pool, struct px_workpool_stats *out);

/* px_workpool_stop - no more jobs: run what is queued, then wait (at most
 * PX_WORKPOOL_JOIN_MS) for every worker that is not inside an abandoned job
 * to end. 0 when only abandoned jobs may still run (they hold what they
 * use; nothing else will run, not even a job still queued), -1 when another
 * job is still running: then nothing a job may reach may be freed. Call it
 * after the event loops have stopped and before what jobs reach (sessions,
 * spools) is freed. Idempotent. */
int px_workpool_stop(struct px_workpool *pool);

/* px_workpool_free - px_workpool_stop, then free the pool if no thread is
 * left; 0, or -1 when a thread (an abandoned job) is still running: then the
 * pool stays allocated, since that thread will still touch it, and the
 * caller must not free what jobs' done callbacks reach (the event bases) */
int px_workpool_free(struct px_workpool *pool);

#endif
