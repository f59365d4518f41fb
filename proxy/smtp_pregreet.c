/*
 * NAME
 *	smtp_pregreet - the pregreet check: a multi-line greeting, remembered
 * DESCRIPTION
 *	Postscreen's "pregreet" test, made affordable by remembering who
 *	passed. On a listener with the check on (listener `pregreet`, else
 *	pregreet.enable; auto: port 25), a client that is not trusted and
 *	not allow-listed by the policy is looked up in the store under
 *	"pregreet:ADDR" before its greeting:
 *
 *	  pass   it waited on an earlier connection within pregreet.greet_ttl:
 *	         greeted at once (no 220- line, no delay, not even
 *	         timeouts.greeting_delay)
 *	  fail   it talked early on an earlier connection within
 *	         pregreet.fail_ttl: the result pregreet=fail, which the
 *	         policy's rules can act on ("pregreet=fail reject": 554 5.7.1
 *	         at once; tempfail or disconnect: 421 4.7.0; accept: greeted at
 *	         once; no rule, ignore, tag, quarantine: tested again); monitor
 *	         mode logs what the rule would do and tests again
 *	  none   tested: "220-HOST GREETING" at once, then, after
 *	         pregreet.delay, the rest of the greeting (the connect stage,
 *	         then "220 HOST GREETING"). A client that sends anything
 *	         before that is an early talker (554 5.5.1, smtp_connect.c)
 *	         and is written down as "fail" for fail_ttl; one that waited
 *	         is written down as "pass" for greet_ttl.
 *
 *	The store is never called on an I/O thread: the lookup and the writes
 *	are jobs on the worker pool (filters/workpool.h), and the lookup's
 *	answer comes back to the session's loop as the job's done callback,
 *	where the GREETING state goes on (px_greeting_after). The session
 *	waits at most timeouts.store for the lookup: past it, or when the
 *	store fails or the pool is full, the client is greeted as if the
 *	check were off (timeouts.greeting_delay, then 220), and that is
 *	logged. A session that ends before its lookup answers lets go of it
 *	(the job frees itself); a lookup past its bound is abandoned to the
 *	pool. The writes are not waited for.
 * DIAGNOSTICS
 *	SID pregreet client=A remembered=pass action=greet
 *	SID pregreet client=A remembered=fail action=reject|tempfail|accept|test [monitor=yes]
 *	SID pregreet client=A test=start delay_ms=N
 *	SID pregreet client=A test=pass waited_ms=N
 *	SID pregreet client=A test=fail after_ms=N
 *	SID pregreet client=A error=store|store-timeout|pool-full action=greet
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "common/log.h"
#include "filters/store.h"
#include "filters/workpool.h"
#include "policy/config.h"
#include "policy/policy.h"
#include "server.h"
#include "smtp_session_int.h"

#define PG_PREFIX "pregreet:"

/* One store call on the pool: the lookup (a session waits for it, until
 * it lets go: s = NULL) or a write (nobody waits) */
struct px_pregreet {
	struct px_session *s;         /* the session waiting; NULL: nobody */
	struct px_workpool *pool;
	struct px_job *job;
	char key[sizeof(PG_PREFIX) + 64];
	int write;
	char value[8];                /* the write's value */
	unsigned long long ttl_ms;
	enum px_store_status st;      /* the worker's answer */
	char got[16];                 /* the lookup's value */
};

/* pg_work - on a worker: the store call */
static void pg_work(void *arg)
{
	struct px_pregreet *pg = arg;
	struct px_store *st = px_store_acquire();
	size_t len = 0;

	if (st == NULL) {
		pg->st = PX_STORE_ERROR;
		return;
	}
	if (pg->write)
		pg->st = px_store_set(st, pg->key, strlen(pg->key), pg->value, strlen(pg->value),
				      pg->ttl_ms);
	else
		pg->st = px_store_get(st, pg->key, strlen(pg->key), pg->got, sizeof(pg->got) - 1,
				      &len);
	px_store_release(st);
	pg->got[pg->st == PX_STORE_OK && len < sizeof(pg->got) ? len : 0] = 0;
}

static void lookup_answered(struct px_session *s, enum px_store_status st, const char *value);

/* pg_done - on the session's loop: the lookup's answer, or a write's end */
static void pg_done(void *arg)
{
	struct px_pregreet *pg = arg;
	struct px_session *s = pg->s;

	if (s != NULL) {
		s->pregreet = NULL;
		evtimer_del(s->pregreet_timer);
		lookup_answered(s, pg->st, pg->got);
	}
	free(pg);
}

/* pg_write_done - a write's end, on the worker (or at the pool's stop) */
static void pg_write_done(void *arg)
{
	free(arg);
}

/* pg_new - a store call for the session's client */
static struct px_pregreet *pg_new(struct px_session *s)
{
	struct px_pregreet *pg = calloc(1, sizeof(*pg));

	if (pg == NULL)
		return NULL;
	pg->pool = px_server_pool(s->srv);
	snprintf(pg->key, sizeof(pg->key), PG_PREFIX "%s", s->client_addr);
	return pg;
}

/* pg_write - remember value for the client for ttl_ms; not waited for */
static void pg_write(struct px_session *s, const char *value, unsigned long long ttl_ms)
{
	struct px_pregreet *pg;

	if (ttl_ms == 0 || (pg = pg_new(s)) == NULL)
		return;
	pg->write = 1;
	snprintf(pg->value, sizeof(pg->value), "%s", value);
	pg->ttl_ms = ttl_ms;
	/* detached: nobody waits, and a write still queued at shutdown (the
	 * loops stopped first) is freed by the pool, not lost; pg may be gone
	 * as soon as it is queued (nothing of it is touched after) */
	if (px_workpool_submit_job(pg->pool, NULL, pg_work, pg_write_done, pg) == NULL) {
		px_log(PX_LOG_WARN, s->sid, "pregreet client=%s error=pool-full write=%s",
		       s->client_addr, value);
		free(pg);
	}
}

/* greet_normally - the check is off for this session: as without it */
static void greet_normally(struct px_session *s, const char *why)
{
	px_log(PX_LOG_WARN, s->sid, "pregreet client=%s error=%s action=greet", s->client_addr,
	       why);
	s->pregreet_on = 0;
	px_greeting_after(s, s->cfg->transport.greeting_delay);
}

/* test - the first line of the greeting now, the rest after the delay */
static void test(struct px_session *s)
{
	char line[600];
	int n = snprintf(line, sizeof(line), "220-%s %s\r\n", s->cfg->hostname, s->cfg->greeting);

	px_log(PX_LOG_INFO, s->sid, "pregreet client=%s test=start delay_ms=%u", s->client_addr,
	       s->cfg->transport.pregreet_delay);
	px_session_write(s, line, n > 0 && (size_t)n < sizeof(line) ? (size_t)n : 0);
	s->pregreet_testing = 1;
	s->pregreet_t0 = px_now_ms();
	px_greeting_after(s, s->cfg->transport.pregreet_delay);
}

/* remembered_fail - pregreet=fail: what the policy's rules make of it */
static void remembered_fail(struct px_session *s)
{
	struct px_policy_view v;
	enum px_action a;
	const char *what;

	px_policy_view_for(s->cfg->policy, s->client_addr, NULL, NULL, &v);
	a = px_policy_action(s->cfg->policy, &v, "pregreet", "pregreet", "fail");
	switch (a) {
	case PX_ACT_REJECT:
	case PX_ACT_DISCARD:
		what = "reject";
		break;
	case PX_ACT_TEMPFAIL:
	case PX_ACT_DISCONNECT:
		what = "tempfail";
		break;
	case PX_ACT_ACCEPT:
		what = "accept";
		break;
	default:
		what = "test";
	}
	px_log(PX_LOG_INFO, s->sid, "pregreet client=%s remembered=fail action=%s%s",
	       s->client_addr, what, v.monitor && a != PX_ACT_ACCEPT && strcmp(what, "test")
	       ? " monitor=yes" : "");
	if (strcmp(what, "accept") == 0) {
		px_greeting_after(s, 0);
		return;
	}
	if (strcmp(what, "test") == 0 || v.monitor) {
		test(s);
		return;
	}
	if (strcmp(what, "reject") == 0)
		px_session_reply(s, 554, "5.7.1", "%s Error: you talked before the greeting on an "
				 "earlier connection", s->cfg->hostname);
	else
		px_session_reply(s, 421, "4.7.0", "%s Error: you talked before the greeting on an "
				 "earlier connection; try again later", s->cfg->hostname);
	px_session_close(s, "pregreet-fail");
}

/* lookup_answered - what the store remembers of the client */
static void lookup_answered(struct px_session *s, enum px_store_status st, const char *value)
{
	if (s->state != PX_ST_GREETING)
		return;                       /* it talked early meanwhile: closing */
	if (st == PX_STORE_ERROR) {
		greet_normally(s, "store");
		return;
	}
	if (st == PX_STORE_OK && strcmp(value, "pass") == 0) {
		px_log(PX_LOG_INFO, s->sid, "pregreet client=%s remembered=pass action=greet",
		       s->client_addr);
		px_greeting_after(s, 0);
		return;
	}
	if (st == PX_STORE_OK && strcmp(value, "fail") == 0) {
		remembered_fail(s);
		return;
	}
	test(s);
}

/* lookup_timeout - the store did not answer within timeouts.store */
static void lookup_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct px_session *s = arg;
	struct px_pregreet *pg = s->pregreet;

	if (pg == NULL)
		return;
	s->pregreet = NULL;
	if (px_workpool_abandon(pg->pool, pg->job) == PX_JOB_CANCELLED)
		free(pg);                     /* it never ran: no done */
	else
		pg->s = NULL;                 /* its done frees it */
	greet_normally(s, "store-timeout");
}

/* px_pregreet_begin - GREETING: look the client up if the check applies;
 * 1 when the greeting now waits for the store, 0 to greet as usual */
int px_pregreet_begin(struct px_session *s)
{
	unsigned ms = s->cfg->timeouts.store;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct px_policy_view v;
	struct px_pregreet *pg;

	if (s->listener == NULL || !s->listener->pregreet || s->trusted)
		return 0;
	px_policy_view_for(s->cfg->policy, s->client_addr, NULL, NULL, &v);
	if (v.allow)
		return 0;
	s->pregreet_on = 1;
	if (s->pregreet_timer == NULL &&
	    (s->pregreet_timer = evtimer_new(s->base, lookup_timeout, s)) == NULL)
		return 0;
	if ((pg = pg_new(s)) == NULL)
		return 0;
	pg->s = s;
	if ((pg->job = px_workpool_submit_job(pg->pool, s->base, pg_work, pg_done, pg)) == NULL) {
		free(pg);
		s->pregreet_on = 0;
		px_log(PX_LOG_WARN, s->sid, "pregreet client=%s error=pool-full action=greet",
		       s->client_addr);
		return 0;
	}
	s->pregreet = pg;
	evtimer_add(s->pregreet_timer, &tv);
	return 1;
}

/* px_pregreet_early - the client talked before the greeting was done */
void px_pregreet_early(struct px_session *s)
{
	if (!s->pregreet_on)
		return;
	px_log(PX_LOG_INFO, s->sid, "pregreet client=%s test=fail after_ms=%llu", s->client_addr,
	       s->pregreet_testing ? (unsigned long long)(px_now_ms() - s->pregreet_t0) : 0ULL);
	s->pregreet_testing = 0;
	pg_write(s, "fail", s->cfg->transport.pregreet_fail_ttl);
}

/* px_pregreet_passed - the delay is over and the client kept quiet */
void px_pregreet_passed(struct px_session *s)
{
	if (!s->pregreet_testing)
		return;
	s->pregreet_testing = 0;
	px_log(PX_LOG_INFO, s->sid, "pregreet client=%s test=pass waited_ms=%llu", s->client_addr,
	       (unsigned long long)(px_now_ms() - s->pregreet_t0));
	pg_write(s, "pass", s->cfg->transport.greet_ttl);
}

/* px_pregreet_free - the session goes: let go of a lookup in flight (its
 * done frees it; the pool may be stopped already, so it is not touched) */
void px_pregreet_free(struct px_session *s)
{
	if (s->pregreet != NULL)
		s->pregreet->s = NULL;
	s->pregreet = NULL;
	if (s->pregreet_timer != NULL)
		event_free(s->pregreet_timer);
	s->pregreet_timer = NULL;
}
