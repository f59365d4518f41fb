/*
 * NAME
 *	resolver - the process's one caching DNS resolver (libunbound)
 * SYNOPSIS
 *	#include "filters/resolver.h"
 * DESCRIPTION
 *	One libunbound context serves the whole process: every session, every
 *	plugin and the cache warming share its cache. It runs in threaded
 *	async mode (ub_ctx_async) with one resolver thread of ours that owns
 *	an event base: it reads libunbound's answers (ub_fd/ub_process), arms
 *	each lookup's timer (timeouts.dns) and cancels a lookup at its
 *	deadline. Every lookup goes through that path, blocking ones too (the
 *	caller waits on a condition variable), so the deadline holds even
 *	when the upstream never answers, and no lock is held across a lookup:
 *	one dead domain costs its own lookups their timeout, nothing else.
 *
 *	Upstream: the forwarders of `dns_forward` ("IP" or "IP@PORT", tried by
 *	libunbound in turn), else the nameservers of /etc/resolv.conf. With
 *	forwarders, names under `test.` go to them too (libunbound otherwise
 *	answers its built-in special-use zone test. with NXDOMAIN; invalid.
 *	and localhost. stay built in), so that test zones work.
 *
 *	Life: px_resolver_start() at program start (posternd, before
 *	privileges are dropped); a program that does not start it gets one
 *	on its first lookup, built from the settings px_resolver_defaults()
 *	recorded (every configuration load records them: `postern test`).
 *	On reload, px_resolver_reconfigure() applies a new timeouts.dns at
 *	once; a changed dns_forward is logged and needs a restart (the cache
 *	and the lookups in flight belong to the one context).
 *	px_resolver_stop() after the event loops have stopped and before
 *	their bases are freed: answers posted to a base that will never run
 *	them are dropped there (their drop function runs instead).
 *
 *	Requires evthread_use_pthreads() before any event base is created.
 * DIAGNOSTICS
 *	- resolver start upstream=... timeout=5s
 *	- resolver reload dns_forward=changed upstream=... kept=... restart=needed
 *	- dns lookup name=N type=T status=timeout ms=.. (debug)
 */
#ifndef PX_FILTERS_RESOLVER_H
#define PX_FILTERS_RESOLVER_H

#include <stddef.h>

#include "postern/plugin.h"

struct event_base;

struct px_resolver_conf {
	char **forward;           /* "IP[@PORT]", NULL-terminated; NULL or empty: resolv.conf */
	unsigned timeout_ms;      /* per lookup; 0: 5000 */
	/* tests only (unit tests; no setting): local zones served in process */
	const char *const *local_zones;   /* "NAME TYPE" (ub_ctx_zone_add), NULL-terminated */
	const char *const *local_data;    /* RRs (ub_ctx_data_add), NULL-terminated */
};

#define PX_RESOLVER_TIMEOUT_DEFAULT 5000

/* px_resolver_start - the process's resolver, now; 0, or -1 with err (one
 * already running: 0, and it is reconfigured) */
int px_resolver_start(const struct px_resolver_conf *c, char *err, size_t errlen);
/* px_resolver_defaults - what a resolver started on first use gets */
void px_resolver_defaults(const struct px_resolver_conf *c);
/* px_resolver_reconfigure - a reload: the timeout now, forwarders at restart */
void px_resolver_reconfigure(const struct px_resolver_conf *c);
/* px_resolver_stop - cancel what is in flight, join the thread, free */
void px_resolver_stop(void);

/* px_dns_lookup - blocking, for at most the timeout (never on an event
 * loop); the answer in *ans (NULL only when out of memory), freed with
 * px_dns_answer_free */
enum px_dns_status px_dns_lookup(const char *name, int type, struct px_dns_answer **ans);

/*
 * px_dns_lookup_async - start a lookup: cb(arg, answer) runs once, later
 * (never inside this call), on base's loop (NULL: on the resolver's
 * thread). Only when px_resolver_stop drops an answer not yet delivered
 * does drop(arg) (if not NULL) run instead, on the stopping thread.
 * 0, or -1 (neither will be called).
 */
int px_dns_lookup_async(struct event_base *base, const char *name, int type, px_dns_cb cb,
			void (*drop)(void *), void *arg);

void px_dns_answer_free(struct px_dns_answer *ans);
/* px_dns_status_name - "ok", "nxdomain", "nodata", "tempfail", "error" */
const char *px_dns_status_name(enum px_dns_status st);

#endif
