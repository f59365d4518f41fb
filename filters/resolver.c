/*
 * NAME
 *	resolver - the process's one caching DNS resolver (libunbound)
 * DESCRIPTION
 *	See resolver.h. How a lookup travels:
 *
 *	  caller (any thread)  -- a struct req on r->queue (r->lock, held for
 *	                          the push only), then event_active(kick)
 *	  resolver thread      -- ub_resolve_async, and the req's timer;
 *	                          the answer (ub_process -> on_answer) or the
 *	                          timer (on_timeout -> ub_cancel), whichever
 *	                          comes first, finishes it:
 *	    blocking           -- the waiter's condition variable
 *	    async, no base     -- cb on the resolver thread
 *	    async, base        -- an event on that base, activated here, runs
 *	                          cb on its loop (the req sits on r->posted
 *	                          until then, so that stop can drop it)
 *
 *	A req's libunbound state is only touched on the resolver thread, so a
 *	timer and an answer cannot race: ub_process removes a query and calls
 *	its callback in one go, and ub_cancel of a query still known
 *	guarantees that no callback follows. A lookup that timed out may
 *	still run inside libunbound (its cancelled answer is discarded);
 *	num-queries-per-thread and outgoing-range are raised so that such
 *	lookups do not crowd out others (libunbound's library defaults are 30
 *	queries and 16 ports).
 *
 *	The blocking waiter also has a deadline of its own (timeout + 2s), in
 *	case the resolver thread is wedged; the req is then freed by whichever
 *	side lets go last (refs).
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <unbound.h>

#include "common/log.h"
#include "resolver.h"

#define WAITER_GRACE_MS 2000

struct px_resolver;

struct req {
	struct req *next, **pprev;        /* on queue, flight or posted */
	struct px_resolver *r;
	char *name;
	int type;
	unsigned timeout_ms;
	struct timespec t0;
	int ub_id;
	struct event *timer;              /* resolver thread */
	struct px_dns_answer *ans;
	int sync;
	/* blocking */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done;
	int refs;                         /* waiter + resolver */
	/* async */
	struct event_base *base;
	struct event *post;
	px_dns_cb cb;
	void (*drop)(void *);
	void *arg;
};

struct px_resolver {
	struct ub_ctx *ctx;
	struct event_base *base;
	struct event *ub_ev, *kick, *halt;
	pthread_t thread;
	int started;
	pthread_mutex_t lock;             /* queue, posted, stopping */
	struct req *queue;
	struct req *posted;
	int stopping;
	struct req *flight;               /* resolver thread only */
	unsigned timeout_ms;              /* atomic */
	char upstream[1024];
};

static pthread_mutex_t r_lock = PTHREAD_MUTEX_INITIALIZER;   /* R and defaults, never
								 held across a lookup */
static struct px_resolver *R;
static struct {
	char **forward;
	unsigned timeout_ms;
	const char *const *local_zones, *const *local_data;
} defaults;

static const char *const status_names[] = { "ok", "nxdomain", "nodata", "tempfail", "error" };

const char *px_dns_status_name(enum px_dns_status st)
{
	return (unsigned)st <= PX_DNS_ERROR ? status_names[st] : "?";
}

/* ------------------------------------------------------------ lists */

static void list_add(struct req **head, struct req *q)
{
	q->next = *head;
	if (*head != NULL)
		(*head)->pprev = &q->next;
	*head = q;
	q->pprev = head;
}

static void list_del(struct req *q)
{
	if (q->pprev == NULL)
		return;
	*q->pprev = q->next;
	if (q->next != NULL)
		q->next->pprev = q->pprev;
	q->next = NULL;
	q->pprev = NULL;
}

/* ---------------------------------------------------------- answers */

/* answer_new - one block: the struct, the arrays, the bytes; res may be NULL */
static struct px_dns_answer *answer_new(int type, enum px_dns_status st, int rcode,
					const struct ub_result *res)
{
	size_t n = 0, bytes = 0, i, canon = 0, pkt = 0;
	struct px_dns_answer *a;
	unsigned char **data;
	size_t *len;
	unsigned char *p;

	if (res != NULL && res->havedata)
		for (; res->data[n] != NULL; n++)
			bytes += (size_t)res->len[n];
	if (res != NULL && res->canonname != NULL && res->qname != NULL &&
	    strcasecmp(res->canonname, res->qname) != 0)
		canon = strlen(res->canonname) + 1;
	if (res != NULL && res->answer_packet != NULL && res->answer_len > 0)
		pkt = (size_t)res->answer_len;
	a = calloc(1, sizeof(*a) + n * (sizeof(*data) + sizeof(*len)) + bytes + canon + pkt);
	if (a == NULL)
		return NULL;
	data = (unsigned char **)(void *)(a + 1);
	len = (size_t *)(void *)(data + n);
	p = (unsigned char *)(len + n);
	for (i = 0; i < n; i++) {
		len[i] = (size_t)res->len[i];
		memcpy(p, res->data[i], len[i]);
		data[i] = p;
		p += len[i];
	}
	a->status = st;
	a->rcode = rcode;
	a->type = type;
	a->count = n;
	a->data = (const unsigned char *const *)data;
	a->len = len;
	if (res != NULL) {
		a->ttl = res->ttl > 0 ? (unsigned)res->ttl : 0;
		a->secure = res->secure;
	}
	if (canon) {
		memcpy(p, res->canonname, canon);
		a->canonname = (const char *)p;
		p += canon;
	}
	if (pkt) {
		memcpy(p, res->answer_packet, pkt);
		a->packet = p;
		a->packet_len = pkt;
	}
	return a;
}

/* answer_from - what libunbound answered, as a status */
static struct px_dns_answer *answer_from(int type, int err, const struct ub_result *res)
{
	enum px_dns_status st;

	if (err != 0 || res == NULL)
		return answer_new(type, err == UB_SYNTAX ? PX_DNS_ERROR : PX_DNS_TEMPFAIL,
				  err == UB_SYNTAX ? -1 : 2, NULL);
	if (res->bogus)
		st = PX_DNS_TEMPFAIL;        /* a validation failure is a SERVFAIL */
	else if (res->nxdomain || res->rcode == 3)
		st = PX_DNS_NXDOMAIN;
	else if (res->rcode != 0)
		st = PX_DNS_TEMPFAIL;        /* SERVFAIL, REFUSED, ... */
	else
		st = res->havedata ? PX_DNS_OK : PX_DNS_NODATA;
	return answer_new(type, st, res->bogus ? 2 : res->rcode, res);
}

void px_dns_answer_free(struct px_dns_answer *ans)
{
	free(ans);
}

/* query_ok - a name libunbound may be asked, and a type */
static int query_ok(const char *name, int type)
{
	size_t n;
	const char *p;

	if (name == NULL || type <= 0 || type > 65535)
		return 0;
	n = strlen(name);
	if (n == 0 || n > 254 || (n == 254 && name[253] != '.'))
		return 0;
	for (p = name; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return 0;
	return 1;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* -------------------------------------------------------------- reqs */

static void req_free(struct req *q)
{
	if (q->sync) {
		pthread_mutex_destroy(&q->mu);
		pthread_cond_destroy(&q->cond);
	}
	px_dns_answer_free(q->ans);
	free(q->name);
	free(q);
}

static void req_unref(struct req *q)
{
	if (__atomic_sub_fetch(&q->refs, 1, __ATOMIC_ACQ_REL) == 0)
		req_free(q);
}

static struct req *req_new(const char *name, int type)
{
	struct req *q = calloc(1, sizeof(*q));

	if (q == NULL || (q->name = strdup(name)) == NULL) {
		free(q);
		return NULL;
	}
	q->type = type;
	q->refs = 1;
	clock_gettime(CLOCK_MONOTONIC, &q->t0);
	return q;
}

/* on_deliver - on the requester's loop: the answer to cb */
static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct req *q = arg;
	struct px_dns_answer *ans;

	pthread_mutex_lock(&q->r->lock);
	list_del(q);
	pthread_mutex_unlock(&q->r->lock);
	event_free(q->post);
	ans = q->ans;
	q->ans = NULL;
	q->cb(q->arg, ans);
	req_free(q);
}

/* finish - the req has its answer (resolver thread); ans may be NULL (memory) */
static void finish(struct px_resolver *r, struct req *q, struct px_dns_answer *ans)
{
	if (q->timer != NULL) {
		event_free(q->timer);
		q->timer = NULL;
	}
	px_log(PX_LOG_DEBUG, NULL, "dns lookup name=%s type=%d status=%s ms=%ld", q->name, q->type,
	       ans ? px_dns_status_name(ans->status) : "nomem", ms_since(&q->t0));
	q->ans = ans;
	if (q->sync) {
		pthread_mutex_lock(&q->mu);
		q->done = 1;
		pthread_cond_signal(&q->cond);
		pthread_mutex_unlock(&q->mu);
		req_unref(q);
		return;
	}
	if (q->base != NULL && (q->post = event_new(q->base, -1, 0, on_deliver, q)) != NULL) {
		pthread_mutex_lock(&r->lock);
		list_add(&r->posted, q);
		pthread_mutex_unlock(&r->lock);
		event_active(q->post, EV_TIMEOUT, 1);
		return;
	}
	q->ans = NULL;               /* no base (or no memory for the event): here */
	q->cb(q->arg, ans);
	req_free(q);
}

/* on_answer - libunbound's callback, inside ub_process (resolver thread) */
static void on_answer(void *arg, int err, struct ub_result *res)
{
	struct req *q = arg;
	struct px_dns_answer *ans;

	list_del(q);
	ans = answer_from(q->type, err, res);
	if (res != NULL)
		ub_resolve_free(res);
	finish(q->r, q, ans);
}

/* on_timeout - the deadline: cancel (no callback follows), answer tempfail */
static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct req *q = arg;

	(void)ub_cancel(q->r->ctx, q->ub_id);
	list_del(q);
	px_log(PX_LOG_DEBUG, NULL, "dns lookup name=%s type=%d status=timeout ms=%ld", q->name,
	       q->type, ms_since(&q->t0));
	finish(q->r, q, answer_new(q->type, PX_DNS_TEMPFAIL, 2, NULL));
}

/* start - hand q to libunbound and arm its deadline (resolver thread) */
static void start(struct px_resolver *r, struct req *q)
{
	long left = (long)q->timeout_ms - ms_since(&q->t0);
	struct timeval tv;
	int rc;

	if (!query_ok(q->name, q->type)) {
		finish(r, q, answer_new(q->type, PX_DNS_ERROR, -1, NULL));
		return;
	}
	if (left < 0)
		left = 0;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	if ((q->timer = evtimer_new(r->base, on_timeout, q)) == NULL) {
		finish(r, q, answer_new(q->type, PX_DNS_TEMPFAIL, 2, NULL));
		return;
	}
	rc = ub_resolve_async(r->ctx, q->name, q->type, 1, q, on_answer, &q->ub_id);
	if (rc != 0) {
		px_log(PX_LOG_DEBUG, NULL, "dns lookup name=%s type=%d error=\"%s\"", q->name,
		       q->type, ub_strerror(rc));
		finish(r, q, answer_new(q->type, rc == UB_SYNTAX ? PX_DNS_ERROR : PX_DNS_TEMPFAIL,
					rc == UB_SYNTAX ? -1 : 2, NULL));
		return;
	}
	list_add(&r->flight, q);
	evtimer_add(q->timer, &tv);
}

/* take_queue - what callers queued (r->lock) */
static struct req *take_queue(struct px_resolver *r)
{
	struct req *v;

	pthread_mutex_lock(&r->lock);
	v = r->queue;
	r->queue = NULL;
	pthread_mutex_unlock(&r->lock);
	return v;
}

/* on_kick - start every queued lookup */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct px_resolver *r = arg;
	struct req *q = take_queue(r), *next;

	for (; q != NULL; q = next) {
		next = q->next;
		q->next = NULL;
		q->pprev = NULL;
		start(r, q);
	}
}

/* on_ub - libunbound has answers: its callbacks run here */
static void on_ub(evutil_socket_t fd, short what, void *arg)
{
	struct px_resolver *r = arg;
	int rc = ub_process(r->ctx);

	if (rc != 0)
		px_log(PX_LOG_WARN, NULL, "resolver error=\"%s\"", ub_strerror(rc));
}

/* on_halt - stop: answer every lookup tempfail, then leave the loop */
static void on_halt(evutil_socket_t fd, short what, void *arg)
{
	struct px_resolver *r = arg;
	struct req *q;

	pthread_mutex_lock(&r->lock);
	r->stopping = 1;
	pthread_mutex_unlock(&r->lock);
	on_kick(-1, 0, r);          /* queued before stopping: start, then cancel */
	while ((q = r->flight) != NULL) {
		(void)ub_cancel(r->ctx, q->ub_id);
		list_del(q);
		finish(r, q, answer_new(q->type, PX_DNS_TEMPFAIL, 2, NULL));
	}
	event_base_loopbreak(r->base);
}

static void *resolver_main(void *arg)
{
	struct px_resolver *r = arg;

	event_base_dispatch(r->base);
	return NULL;
}

/* ---------------------------------------------------------- the ctx */

/* set_opt - one unbound option; failures are logged, not fatal */
static void set_opt(struct ub_ctx *ctx, const char *opt, const char *val)
{
	int rc = ub_ctx_set_option(ctx, opt, val);

	if (rc != 0)
		px_log(PX_LOG_WARN, NULL, "resolver option=%s%s error=\"%s\"", opt, val,
		       ub_strerror(rc));
}

/* test_zone_open - with forwarders, the forwarders answer what libunbound
 * would otherwise answer itself: names under test., the reverse zones of
 * private (RFC 1918) and documentation address ranges (a client from
 * 192.0.2.0/24 gets its PTR from the forwarder). libunbound takes
 * "local-zone: nodefault" only from a file (ub_ctx_config). */
static int test_zone_open(struct ub_ctx *ctx, char *err, size_t errlen)
{
	static const char text[] = "server:\n"
		"\tunblock-lan-zones: yes\n"
		"\tinsecure-lan-zones: yes\n"
		"\tlocal-zone: \"test.\" nodefault\n"
		"\tlocal-zone: \"2.0.192.in-addr.arpa.\" nodefault\n"
		"\tlocal-zone: \"100.51.198.in-addr.arpa.\" nodefault\n"
		"\tlocal-zone: \"113.0.203.in-addr.arpa.\" nodefault\n"
		"\tlocal-zone: \"8.b.d.0.1.0.0.2.ip6.arpa.\" nodefault\n";
	const char *dir = getenv("TMPDIR");
	char path[512];
	int fd, rc;

	snprintf(path, sizeof(path), "%s/postern-unbound-XXXXXX", dir && *dir ? dir : "/tmp");
	if ((fd = mkstemp(path)) < 0) {
		snprintf(err, errlen, "resolver: %s: %s", path, strerror(errno));
		return -1;
	}
	if (write(fd, text, sizeof(text) - 1) != (ssize_t)(sizeof(text) - 1)) {
		snprintf(err, errlen, "resolver: %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	rc = ub_ctx_config(ctx, path);
	unlink(path);
	if (rc != 0) {
		snprintf(err, errlen, "resolver: local zones for the forwarders: %s", ub_strerror(rc));
		return -1;
	}
	return 0;
}

/* upstream_text - the upstream, as logged and compared on reload */
static void upstream_text(const struct px_resolver_conf *c, char *buf, size_t len)
{
	size_t i, used = 0;

	buf[0] = '\0';
	if (c->forward == NULL || c->forward[0] == NULL) {
		snprintf(buf, len, "%s", c->local_zones || c->local_data ? "local-data"
			 : "resolv.conf");
		return;
	}
	for (i = 0; c->forward[i] != NULL && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "",
					 c->forward[i]);
}

/* ctx_upstream - forwarders, test data, or resolv.conf */
static int ctx_upstream(struct ub_ctx *ctx, const struct px_resolver_conf *c, char *err,
			size_t errlen)
{
	size_t i;
	int rc;

	if (c->forward != NULL && c->forward[0] != NULL) {
		if (test_zone_open(ctx, err, errlen) < 0)
			return -1;
		for (i = 0; c->forward[i] != NULL; i++)
			if ((rc = ub_ctx_set_fwd(ctx, c->forward[i])) != 0) {
				snprintf(err, errlen, "dns_forward %s: %s", c->forward[i],
					 ub_strerror(rc));
				return -1;
			}
	} else if (c->local_zones == NULL && c->local_data == NULL &&
		   (rc = ub_ctx_resolvconf(ctx, NULL)) != 0) {
		px_log(PX_LOG_WARN, NULL, "resolver resolv.conf error=\"%s\" (resolving from the "
		       "root servers)", ub_strerror(rc));
	}
	for (i = 0; c->local_zones != NULL && c->local_zones[i] != NULL; i++) {
		char zone[256], type[64];

		if (sscanf(c->local_zones[i], "%255s %63s", zone, type) != 2 ||
		    (rc = ub_ctx_zone_add(ctx, zone, type)) != 0) {
			snprintf(err, errlen, "resolver: local zone %s: bad", c->local_zones[i]);
			return -1;
		}
	}
	for (i = 0; c->local_data != NULL && c->local_data[i] != NULL; i++)
		if ((rc = ub_ctx_data_add(ctx, c->local_data[i])) != 0) {
			snprintf(err, errlen, "resolver: local data %s: %s", c->local_data[i],
				 ub_strerror(rc));
			return -1;
		}
	return 0;
}

/* ctx_new - a threaded, caching context */
static struct ub_ctx *ctx_new(const struct px_resolver_conf *c, char *err, size_t errlen)
{
	struct ub_ctx *ctx = ub_ctx_create();
	int rc;

	if (ctx == NULL) {
		snprintf(err, errlen, "resolver: cannot create the libunbound context");
		return NULL;
	}
	if ((rc = ub_ctx_async(ctx, 1)) != 0) {
		snprintf(err, errlen, "resolver: threads: %s", ub_strerror(rc));
		ub_ctx_delete(ctx);
		return NULL;
	}
	set_opt(ctx, "num-queries-per-thread:", "1024");
	set_opt(ctx, "outgoing-range:", "256");
	set_opt(ctx, "infra-keep-probing:", "yes");
	set_opt(ctx, "msg-cache-size:", "4m");
	set_opt(ctx, "rrset-cache-size:", "8m");
	if (ctx_upstream(ctx, c, err, errlen) < 0) {
		ub_ctx_delete(ctx);
		return NULL;
	}
	return ctx;
}

static void resolver_free(struct px_resolver *r)
{
	if (r->ub_ev)
		event_free(r->ub_ev);
	if (r->kick)
		event_free(r->kick);
	if (r->halt)
		event_free(r->halt);
	if (r->ctx)
		ub_ctx_delete(r->ctx);
	if (r->base)
		event_base_free(r->base);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* resolver_new - the context, the base, the thread */
static struct px_resolver *resolver_new(const struct px_resolver_conf *c, char *err,
					size_t errlen)
{
	struct px_resolver *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		snprintf(err, errlen, "resolver: out of memory");
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	r->timeout_ms = c->timeout_ms ? c->timeout_ms : PX_RESOLVER_TIMEOUT_DEFAULT;
	upstream_text(c, r->upstream, sizeof(r->upstream));
	if ((r->ctx = ctx_new(c, err, errlen)) == NULL) {
		resolver_free(r);
		return NULL;
	}
	if ((r->base = event_base_new()) == NULL ||
	    (r->ub_ev = event_new(r->base, ub_fd(r->ctx), EV_READ | EV_PERSIST, on_ub, r)) == NULL ||
	    (r->kick = event_new(r->base, -1, 0, on_kick, r)) == NULL ||
	    (r->halt = event_new(r->base, -1, 0, on_halt, r)) == NULL ||
	    event_add(r->ub_ev, NULL) < 0) {
		snprintf(err, errlen, "resolver: cannot set up its event loop");
		resolver_free(r);
		return NULL;
	}
	if (pthread_create(&r->thread, NULL, resolver_main, r) != 0) {
		snprintf(err, errlen, "resolver: cannot start its thread");
		resolver_free(r);
		return NULL;
	}
	r->started = 1;
	px_log(PX_LOG_INFO, NULL, "resolver start upstream=%s timeout=%ums", r->upstream,
	       r->timeout_ms);
	return r;
}

/* ---------------------------------------------------------- life */

static char **list_dup(char **v)
{
	size_t n = 0, i;
	char **d;

	while (v != NULL && v[n] != NULL)
		n++;
	if ((d = calloc(n + 1, sizeof(*d))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		if ((d[i] = strdup(v[i])) == NULL)
			break;
	return d;
}

static void list_free(char **v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* defaults_set - (r_lock) */
static void defaults_set(const struct px_resolver_conf *c)
{
	list_free(defaults.forward);
	defaults.forward = list_dup(c->forward);
	defaults.timeout_ms = c->timeout_ms;
	defaults.local_zones = c->local_zones;
	defaults.local_data = c->local_data;
}

void px_resolver_defaults(const struct px_resolver_conf *c)
{
	pthread_mutex_lock(&r_lock);
	defaults_set(c);
	pthread_mutex_unlock(&r_lock);
}

/* reconfigure - (r_lock) */
static void reconfigure(struct px_resolver *r, const struct px_resolver_conf *c)
{
	char up[sizeof(r->upstream)];
	unsigned t = c->timeout_ms ? c->timeout_ms : PX_RESOLVER_TIMEOUT_DEFAULT;

	if (__atomic_exchange_n(&r->timeout_ms, t, __ATOMIC_RELAXED) != t)
		px_log(PX_LOG_INFO, NULL, "resolver reload timeout=%ums", t);
	upstream_text(c, up, sizeof(up));
	if (strcmp(up, r->upstream) != 0)
		px_log(PX_LOG_WARN, NULL, "resolver reload dns_forward=changed upstream=%s kept=%s "
		       "restart=needed", up, r->upstream);
}

void px_resolver_reconfigure(const struct px_resolver_conf *c)
{
	pthread_mutex_lock(&r_lock);
	defaults_set(c);
	if (R != NULL)
		reconfigure(R, c);
	pthread_mutex_unlock(&r_lock);
}

int px_resolver_start(const struct px_resolver_conf *c, char *err, size_t errlen)
{
	int rc = 0;

	pthread_mutex_lock(&r_lock);
	defaults_set(c);
	if (R != NULL)
		reconfigure(R, c);
	else if ((R = resolver_new(c, err, errlen)) == NULL)
		rc = -1;
	pthread_mutex_unlock(&r_lock);
	return rc;
}

/* resolver_get - the running one, or one started from the defaults */
static struct px_resolver *resolver_get(void)
{
	struct px_resolver_conf c;
	struct px_resolver *r;
	char err[512];

	pthread_mutex_lock(&r_lock);
	if (R == NULL) {
		c.forward = defaults.forward;
		c.timeout_ms = defaults.timeout_ms;
		c.local_zones = defaults.local_zones;
		c.local_data = defaults.local_data;
		if ((R = resolver_new(&c, err, sizeof(err))) == NULL)
			px_log(PX_LOG_ERR, NULL, "resolver start error=\"%s\"", err);
	}
	r = R;
	pthread_mutex_unlock(&r_lock);
	return r;
}

void px_resolver_stop(void)
{
	struct px_resolver *r;
	struct req *q;

	pthread_mutex_lock(&r_lock);
	r = R;
	R = NULL;
	list_free(defaults.forward);
	defaults.forward = NULL;
	pthread_mutex_unlock(&r_lock);
	if (r == NULL)
		return;
	event_active(r->halt, EV_TIMEOUT, 1);
	pthread_join(r->thread, NULL);
	/* answers posted to loops that have stopped: dropped (drop() runs
	 * without our lock held: it is the caller's code) */
	for (;;) {
		pthread_mutex_lock(&r->lock);
		if ((q = r->posted) != NULL)
			list_del(q);
		pthread_mutex_unlock(&r->lock);
		if (q == NULL)
			break;
		event_free(q->post);
		if (q->drop != NULL)
			q->drop(q->arg);
		req_free(q);
	}
	resolver_free(r);
}

/* ---------------------------------------------------------- lookups */

/* submit - queue q for the resolver thread; -1 when stopping */
static int submit(struct px_resolver *r, struct req *q)
{
	q->r = r;
	q->timeout_ms = __atomic_load_n(&r->timeout_ms, __ATOMIC_RELAXED);
	pthread_mutex_lock(&r->lock);
	if (r->stopping) {
		pthread_mutex_unlock(&r->lock);
		return -1;
	}
	list_add(&r->queue, q);
	pthread_mutex_unlock(&r->lock);
	event_active(r->kick, EV_TIMEOUT, 1);
	return 0;
}

/* wait_done - the waiter's side of a blocking lookup; 1 when answered */
static int wait_done(struct req *q)
{
	struct timespec dl;
	long ms = (long)q->timeout_ms + WAITER_GRACE_MS;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (ms % 1000) * 1000000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&q->mu);
	while (!q->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&q->cond, &q->mu, &dl);
	rc = q->done;
	pthread_mutex_unlock(&q->mu);
	return rc;
}

enum px_dns_status px_dns_lookup(const char *name, int type, struct px_dns_answer **ans)
{
	struct px_resolver *r;
	pthread_condattr_t ca;
	struct req *q;

	*ans = NULL;
	if (!query_ok(name, type)) {
		*ans = answer_new(type, PX_DNS_ERROR, -1, NULL);
		return PX_DNS_ERROR;
	}
	if ((r = resolver_get()) == NULL) {
		*ans = answer_new(type, PX_DNS_TEMPFAIL, 2, NULL);
		return PX_DNS_TEMPFAIL;
	}
	if (pthread_equal(pthread_self(), r->thread)) {   /* from a callback: it would wait on itself */
		px_log(PX_LOG_ERR, NULL, "dns lookup name=%s type=%d error=\"blocking lookup on the "
		       "resolver's thread\"", name, type);
		*ans = answer_new(type, PX_DNS_ERROR, -1, NULL);
		return PX_DNS_ERROR;
	}
	if ((q = req_new(name, type)) == NULL)
		return PX_DNS_ERROR;
	q->sync = 1;
	q->refs = 2;
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (submit(r, q) < 0) {
		q->refs = 1;
		req_unref(q);
		*ans = answer_new(type, PX_DNS_TEMPFAIL, 2, NULL);
		return PX_DNS_TEMPFAIL;
	}
	if (wait_done(q)) {
		*ans = q->ans;
		q->ans = NULL;
	} else {
		px_log(PX_LOG_WARN, NULL, "dns lookup name=%s type=%d status=timeout waiter=gave-up",
		       name, type);
		*ans = answer_new(type, PX_DNS_TEMPFAIL, 2, NULL);
	}
	req_unref(q);
	return *ans ? (*ans)->status : PX_DNS_ERROR;
}

int px_dns_lookup_async(struct event_base *base, const char *name, int type, px_dns_cb cb,
			void (*drop)(void *), void *arg)
{
	struct px_resolver *r;
	struct req *q;

	if (cb == NULL || (r = resolver_get()) == NULL || (q = req_new(name ? name : "", type)) == NULL)
		return -1;
	q->base = base;
	q->cb = cb;
	q->drop = drop;
	q->arg = arg;
	if (submit(r, q) < 0) {
		req_free(q);
		return -1;
	}
	return 0;
}
