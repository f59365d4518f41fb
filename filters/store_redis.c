/*
 * NAME
 *	store_redis - the shared engine of the store: Redis through hiredis
 * DESCRIPTION
 *	redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (port 6379, database 0 by
 *	default). A small pool of blocking connections (at most POOL_MAX, made
 *	when needed, kept while they work): a call takes an idle one, or makes
 *	one, or waits (a condition variable, bounded by timeouts.store) for one
 *	to come back. Each connection has timeouts.store as its connect and its
 *	command timeout (SO_RCVTIMEO/SO_SNDTIMEO); one that failed in any way is
 *	closed, never reused.
 *
 *	Redis restarted: the first command on a connection from before the
 *	restart finds it closed (EOF, reset). The command never reached the new
 *	server, so it is sent once more on a new connection, and the other idle
 *	connections are dropped too. A timeout is not retried (the command may
 *	have run). While connecting fails, calls fail at once for DOWN_MS
 *	instead of each waiting for its own connect timeout; then the next
 *	call tries again, so service resumes within DOWN_MS of Redis's return.
 *
 *	The increment is one Lua script (EVAL), so INCRBY and its PEXPIRE are
 *	atomic: a counter never loses its window, whatever node increments.
 *	Values are plain Redis strings; the expiry is Redis's own (PX).
 */
#include "autoconfig.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "store_int.h"

#define POOL_MAX 16
#define DOWN_MS 1000
#define SCAN_COUNT "200"

/* KEYS[1] key, ARGV[1] delta, ARGV[2] ttl ms (0: none) */
static const char incr_script[] =
	"local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
	"if tonumber(ARGV[2]) > 0 and redis.call('PTTL', KEYS[1]) == -1 then "
	"redis.call('PEXPIRE', KEYS[1], ARGV[2]) end "
	"return v";

struct conn {
	struct conn *next;
	redisContext *c;
};

struct px_store_engine {
	char host[256];
	int port;
	int db;
	char *user, *password;
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct conn *idle;
	unsigned open;            /* connections made and not closed (idle or in use) */
	unsigned long long down_until;   /* ms; after a failed connect */
	char down_err[256];
};

/* url_auth - "[USER]:PASSWORD" */
static int url_auth(struct px_store_engine *e, const char *p, size_t n)
{
	const char *colon = memchr(p, ':', n);

	if (colon == NULL)
		return -1;
	if (colon > p && (e->user = strndup(p, (size_t)(colon - p))) == NULL)
		return -1;
	return (e->password = strndup(colon + 1, n - (size_t)(colon - p) - 1)) ? 0 : -1;
}

/* url_hostport - HOST[:PORT] or [V6][:PORT] */
static int url_hostport(struct px_store_engine *e, const char *p, size_t n)
{
	const char *end = p + n, *h = p, *he, *colon;
	char *x;

	if (n > 0 && *p == '[') {
		if ((he = memchr(p, ']', n)) == NULL)
			return -1;
		h = p + 1;
		colon = he + 1 < end && he[1] == ':' ? he + 1 : NULL;
		if (he + 1 < end && colon == NULL)
			return -1;
	} else {
		colon = memchr(p, ':', n);
		he = colon ? colon : end;
	}
	if (he == h || (size_t)(he - h) >= sizeof(e->host))
		return -1;
	memcpy(e->host, h, (size_t)(he - h));
	e->host[he - h] = '\0';
	e->port = 6379;
	if (colon != NULL) {
		long v;
		char num[8];

		if ((size_t)(end - colon - 1) == 0 || (size_t)(end - colon - 1) >= sizeof(num))
			return -1;
		memcpy(num, colon + 1, (size_t)(end - colon - 1));
		num[end - colon - 1] = '\0';
		v = strtol(num, &x, 10);
		if (*x != '\0' || v < 1 || v > 65535)
			return -1;
		e->port = (int)v;
	}
	return 0;
}

static void engine_free(struct px_store_engine *e)
{
	struct conn *c;

	while ((c = e->idle) != NULL) {
		e->idle = c->next;
		redisFree(c->c);
		free(c);
	}
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->freed);
	free(e->user);
	free(e->password);
	free(e);
}

struct px_store_engine *px_store_redis_new(const char *url, char *err, size_t errlen)
{
	struct px_store_engine *e = calloc(1, sizeof(*e));
	const char *p = url + 8, *slash, *at;
	size_t n;
	char *end;

	if (e == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&e->lock, NULL);
	pthread_cond_init(&e->freed, NULL);
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	at = memrchr(p, '@', n);
	if ((at != NULL && url_auth(e, p, (size_t)(at - p)) < 0) ||
	    url_hostport(e, at ? at + 1 : p, at ? n - (size_t)(at + 1 - p) : n) < 0)
		goto bad;
	if (slash != NULL && slash[1] != '\0') {
		long db = strtol(slash + 1, &end, 10);

		if (*end != '\0' || db < 0 || db > 1000000)
			goto bad;
		e->db = (int)db;
	}
	return e;
bad:
	snprintf(err, errlen, "redis: '%s' is not redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]",
		 url);
	engine_free(e);
	return NULL;
}

static void redis_close(struct px_store_engine *e)
{
	engine_free(e);
}

static struct timeval ms_tv(unsigned ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

/* simple_cmd - a command whose reply must not be an error; 0 or -1 */
static int simple_cmd(redisContext *c, int argc, const char **argv, char *err, size_t errlen)
{
	redisReply *r = redisCommandArgv(c, argc, argv, NULL);
	int rc = 0;

	if (r == NULL) {
		snprintf(err, errlen, "%s: %s", argv[0], c->errstr);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "%s: %s", argv[0], r->str);
		rc = -1;
	}
	freeReplyObject(r);
	return rc;
}

/* conn_new - connect, AUTH, SELECT (no lock held) */
static redisContext *conn_new(struct px_store *s, char *err, size_t errlen)
{
	struct px_store_engine *e = s->e;
	unsigned ms = __atomic_load_n(&s->timeout_ms, __ATOMIC_RELAXED);
	redisContext *c = redisConnectWithTimeout(e->host, e->port, ms_tv(ms));
	char db[16];
	const char *auth[3] = { "AUTH", e->user ? e->user : e->password, e->password };
	const char *sel[2] = { "SELECT", db };

	if (c == NULL || c->err) {
		snprintf(err, errlen, "connect %s:%d: %s", e->host, e->port,
			 c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	snprintf(db, sizeof(db), "%d", e->db);
	if (redisSetTimeout(c, ms_tv(ms)) != REDIS_OK ||
	    (e->password && simple_cmd(c, e->user ? 3 : 2, auth, err, errlen) < 0) ||
	    (e->db != 0 && simple_cmd(c, 2, sel, err, errlen) < 0)) {
		if (c->err && !err[0])
			snprintf(err, errlen, "%s", c->errstr);
		redisFree(c);
		return NULL;
	}
	redisEnableKeepAlive(c);
	return c;
}

/* deadline_ts - now + ms, for pthread_cond_timedwait (CLOCK_REALTIME) */
static struct timespec deadline_ts(unsigned ms)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

/* conn_take - an idle connection (*reused = 1), or a new one, or wait for
 * one to be released; NULL (logged) when none came in time */
static struct conn *conn_take(struct px_store *s, int *reused)
{
	struct px_store_engine *e = s->e;
	struct timespec dl = deadline_ts(__atomic_load_n(&s->timeout_ms, __ATOMIC_RELAXED));
	struct conn *c = NULL;
	char err[256] = "";
	int rc = 0;

	pthread_mutex_lock(&e->lock);
	while (e->idle == NULL && e->open >= POOL_MAX && rc == 0)
		rc = pthread_cond_timedwait(&e->freed, &e->lock, &dl);
	if (e->idle != NULL) {
		c = e->idle;
		e->idle = c->next;
		*reused = 1;
		pthread_mutex_unlock(&e->lock);
		return c;
	}
	if (e->open >= POOL_MAX) {
		pthread_mutex_unlock(&e->lock);
		px_store_fail(s, "redis: all %d connections busy for timeouts.store", POOL_MAX);
		return NULL;
	}
	if (px_store_now_ms() < e->down_until) {
		snprintf(err, sizeof(err), "%s", e->down_err);
		pthread_mutex_unlock(&e->lock);
		px_store_fail(s, "redis down: %s", err);
		return NULL;
	}
	e->open++;
	pthread_mutex_unlock(&e->lock);
	*reused = 0;
	if ((c = calloc(1, sizeof(*c))) != NULL && (c->c = conn_new(s, err, sizeof(err))) != NULL)
		return c;
	free(c);
	pthread_mutex_lock(&e->lock);
	e->open--;
	e->down_until = px_store_now_ms() + DOWN_MS;
	snprintf(e->down_err, sizeof(e->down_err), "%s", err[0] ? err : "out of memory");
	pthread_cond_signal(&e->freed);
	pthread_mutex_unlock(&e->lock);
	px_store_fail(s, "redis %s", err[0] ? err : "out of memory");
	return NULL;
}

/* conn_give - back to the pool, or closed when it failed */
static void conn_give(struct px_store *s, struct conn *c, int broken)
{
	struct px_store_engine *e = s->e;

	pthread_mutex_lock(&e->lock);
	if (broken) {
		e->open--;
	} else {
		c->next = e->idle;
		e->idle = c;
	}
	pthread_cond_signal(&e->freed);
	pthread_mutex_unlock(&e->lock);
	if (broken) {
		redisFree(c->c);
		free(c);
	}
}

/* drop_idle - close every idle connection (they predate a restart) */
static void drop_idle(struct px_store *s)
{
	struct px_store_engine *e = s->e;
	struct conn *list, *c;

	pthread_mutex_lock(&e->lock);
	list = e->idle;
	e->idle = NULL;
	for (c = list; c != NULL; c = c->next)
		e->open--;
	pthread_cond_broadcast(&e->freed);
	pthread_mutex_unlock(&e->lock);
	while ((c = list) != NULL) {
		list = c->next;
		redisFree(c->c);
		free(c);
	}
}

/* command - one command on a pooled connection; the reply (free it), or
 * NULL when the store failed (logged). A closed old connection is retried
 * once on a new one. */
static redisReply *command(struct px_store *s, int argc, const char **argv, const size_t *lens)
{
	struct conn *c;
	redisReply *r;
	int reused, attempt, saved, closed;

	for (attempt = 0; attempt < 2; attempt++) {
		if ((c = conn_take(s, &reused)) == NULL)
			return NULL;
		errno = 0;
		r = redisCommandArgv(c->c, argc, argv, lens);
		saved = errno;
		if (r != NULL) {
			conn_give(s, c, 0);
			if (r->type == REDIS_REPLY_ERROR) {
				px_store_fail(s, "redis %s: %s", argv[0], r->str);
				freeReplyObject(r);
				return NULL;
			}
			return r;
		}
		closed = c->c->err == REDIS_ERR_EOF || (c->c->err == REDIS_ERR_IO &&
			 (saved == ECONNRESET || saved == EPIPE));
		if (attempt == 0 && reused && closed) {
			conn_give(s, c, 1);
			drop_idle(s);
			continue;
		}
		px_store_fail(s, "redis %s: %s", argv[0], (saved == EAGAIN || saved == EWOULDBLOCK)
			      ? "timed out (timeouts.store)" : c->c->errstr);
		conn_give(s, c, 1);
		return NULL;
	}
	return NULL;
}

static enum px_store_status redis_get(struct px_store *s, const char *key, size_t klen,
				      void *buf, size_t buflen, size_t *len)
{
	const char *argv[2] = { "GET", key };
	size_t lens[2] = { 3, klen };
	redisReply *r = command(s, 2, argv, lens);
	enum px_store_status st = PX_STORE_OK;

	if (r == NULL)
		return PX_STORE_ERROR;
	if (r->type == REDIS_REPLY_NIL) {
		st = PX_STORE_NOTFOUND;
	} else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
		*len = r->len;
		if (buf != NULL && buflen > 0)
			memcpy(buf, r->str, r->len < buflen ? r->len : buflen);
	} else {
		st = px_store_fail(s, "redis GET: unexpected reply type %d", r->type);
	}
	freeReplyObject(r);
	return st;
}

static enum px_store_status redis_set(struct px_store *s, const char *key, size_t klen,
				      const void *val, size_t vlen, unsigned long long ttl_ms)
{
	char ttl[24];
	const char *argv[5] = { "SET", key, val ? val : "", "PX", ttl };
	size_t lens[5] = { 3, klen, vlen, 2, 0 };
	redisReply *r;

	lens[4] = (size_t)snprintf(ttl, sizeof(ttl), "%llu", ttl_ms);
	if ((r = command(s, ttl_ms ? 5 : 3, argv, lens)) == NULL)
		return PX_STORE_ERROR;
	freeReplyObject(r);
	return PX_STORE_OK;
}

static enum px_store_status redis_incr(struct px_store *s, const char *key, size_t klen,
				       long long delta, unsigned long long ttl_ms, long long *value)
{
	char d[24], ttl[24];
	const char *argv[6] = { "EVAL", incr_script, "1", key, d, ttl };
	size_t lens[6] = { 4, sizeof(incr_script) - 1, 1, klen, 0, 0 };
	enum px_store_status st = PX_STORE_OK;
	redisReply *r;

	lens[4] = (size_t)snprintf(d, sizeof(d), "%lld", delta);
	lens[5] = (size_t)snprintf(ttl, sizeof(ttl), "%llu", ttl_ms);
	if ((r = command(s, 6, argv, lens)) == NULL)
		return PX_STORE_ERROR;
	if (r->type == REDIS_REPLY_INTEGER)
		*value = r->integer;
	else
		st = px_store_fail(s, "redis EVAL incr: unexpected reply type %d", r->type);
	freeReplyObject(r);
	return st;
}

static enum px_store_status redis_del(struct px_store *s, const char *key, size_t klen)
{
	const char *argv[2] = { "DEL", key };
	size_t lens[2] = { 3, klen };
	redisReply *r = command(s, 2, argv, lens);

	if (r == NULL)
		return PX_STORE_ERROR;
	freeReplyObject(r);
	return PX_STORE_OK;
}

/* glob_escape - prefix with MATCH's special characters escaped, then '*' */
static void glob_escape(const char *prefix, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *prefix && o + 3 < outlen; prefix++) {
		if (strchr("*?[]\\", *prefix))
			out[o++] = '\\';
		out[o++] = *prefix;
	}
	out[o++] = '*';
	out[o] = '\0';
}

/* scan_one - GET and PTTL of one key found by SCAN, to fn; 1 to stop */
static int scan_one(struct px_store *s, const redisReply *k, px_store_scan_fn fn, void *arg,
		    int *failed)
{
	const char *g[2] = { "GET", k->str }, *t[2] = { "PTTL", k->str };
	size_t lens[2] = { 3, k->len }, tl[2] = { 4, k->len };
	redisReply *v = command(s, 2, g, lens), *ttl;
	unsigned long long exp = 0;
	int stop = 0;

	if (v == NULL) {
		*failed = 1;
		return 1;
	}
	if (v->type == REDIS_REPLY_STRING && (ttl = command(s, 2, t, tl)) != NULL) {
		if (ttl->type == REDIS_REPLY_INTEGER && ttl->integer > 0)
			exp = px_store_now_ms() + (unsigned long long)ttl->integer;
		if (ttl->type != REDIS_REPLY_INTEGER || ttl->integer != -2)
			stop = fn(arg, k->str, k->len, v->str, v->len, exp);
		freeReplyObject(ttl);
	}
	freeReplyObject(v);
	return stop;
}

static enum px_store_status redis_scan(struct px_store *s, const char *prefix,
				       px_store_scan_fn fn, void *arg)
{
	char cursor[32] = "0", match[2 * PX_STORE_KEY_MAX + 4];
	const char *argv[6] = { "SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT };
	int failed = 0, stop = 0;
	redisReply *r;
	size_t i;

	glob_escape(prefix, match, sizeof(match));
	do {
		if ((r = command(s, 6, argv, NULL)) == NULL)
			return PX_STORE_ERROR;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING) {
			freeReplyObject(r);
			return px_store_fail(s, "redis SCAN: unexpected reply");
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (i = 0; i < r->element[1]->elements && !stop; i++)
			if (r->element[1]->element[i]->type == REDIS_REPLY_STRING)
				stop = scan_one(s, r->element[1]->element[i], fn, arg, &failed);
		freeReplyObject(r);
	} while (!stop && strcmp(cursor, "0") != 0);
	return failed ? PX_STORE_ERROR : PX_STORE_OK;
}

const struct px_store_ops px_store_redis_ops = {
	.name = "redis",
	.close = redis_close,
	.get = redis_get,
	.set = redis_set,
	.incr = redis_incr,
	.del = redis_del,
	.scan = redis_scan,
};
