/*
 * NAME
 *	store - the key-value store: spec parsing, checks, the process's store
 * DESCRIPTION
 *	See store.h. This file checks what every engine would check (key and
 *	value sizes), dispatches to the engine, rate-limits the engines' error
 *	lines, and keeps the process's store: a refcounted pointer swapped by
 *	px_store_use() under one mutex, so that a call holds the store it
 *	started with until it ends.
 * DIAGNOSTICS
 *	- store engine=E error="..." [suppressed=N]
 *	- store spec=S engine=E timeout_ms=T (when a new spec is taken)
 */
#include "autoconfig.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "store_int.h"

unsigned long long px_store_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (unsigned long long)t.tv_sec * 1000ULL + (unsigned long long)t.tv_nsec / 1000000ULL;
}

/* px_store_fail - one error line a second at most per store */
enum px_store_status px_store_fail(struct px_store *s, const char *fmt, ...)
{
	unsigned long long now = px_store_now_ms(), last;
	char msg[512], q[600];
	unsigned held;
	va_list ap;

	last = __atomic_load_n(&s->last_err_ms, __ATOMIC_RELAXED);
	if (now - last < 1000 || !__atomic_compare_exchange_n(&s->last_err_ms, &last, now, 0,
							       __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&s->suppressed, 1, __ATOMIC_RELAXED);
		return PX_STORE_ERROR;
	}
	held = __atomic_exchange_n(&s->suppressed, 0, __ATOMIC_RELAXED);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (held)
		px_log(PX_LOG_WARN, NULL, "store engine=%s error=%s suppressed=%u", s->ops->name,
		       px_log_quote(q, sizeof(q), msg, strlen(msg)), held);
	else
		px_log(PX_LOG_WARN, NULL, "store engine=%s error=%s", s->ops->name,
		       px_log_quote(q, sizeof(q), msg, strlen(msg)));
	return PX_STORE_ERROR;
}

/* spec_engine - the engine a spec names, and where its own part starts */
static const struct px_store_ops *spec_engine(const char *spec, const char **rest)
{
	if (strncmp(spec, "lmdb:", 5) == 0) {
		*rest = spec + 5;
		return &px_store_lmdb_ops;
	}
	if (strncmp(spec, "redis://", 8) == 0) {
		*rest = spec;
		return &px_store_redis_ops;
	}
	return NULL;
}

/* engine_new - parse (and only parse) the engine's part */
static struct px_store_engine *engine_new(const struct px_store_ops *ops, const char *rest,
					  char *err, size_t errlen)
{
	if (ops == &px_store_lmdb_ops)
		return px_store_lmdb_new(rest, err, errlen);
	return px_store_redis_new(rest, err, errlen);
}

int px_store_check(const char *spec, char *err, size_t errlen)
{
	struct px_store *s = px_store_open(spec, PX_STORE_TIMEOUT_DEFAULT, err, errlen);

	if (s == NULL)
		return -1;
	px_store_close(s);
	return 0;
}

char *px_store_default_spec(const char *spool_dir, char *buf, size_t len)
{
	snprintf(buf, len, "lmdb:%s/store", spool_dir);
	return buf;
}

struct px_store *px_store_open(const char *spec, unsigned timeout_ms, char *err, size_t errlen)
{
	const char *rest = NULL;
	const struct px_store_ops *ops = spec ? spec_engine(spec, &rest) : NULL;
	struct px_store *s;

	if (ops == NULL) {
		snprintf(err, errlen, "expected lmdb:/PATH or redis://[:PASSWORD@]HOST[:PORT][/DB]");
		return NULL;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL || (s->spec = strdup(spec)) == NULL) {
		free(s);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->ops = ops;
	s->timeout_ms = timeout_ms ? timeout_ms : PX_STORE_TIMEOUT_DEFAULT;
	if ((s->e = engine_new(ops, rest, err, errlen)) == NULL) {
		free(s->spec);
		free(s);
		return NULL;
	}
	return s;
}

void px_store_close(struct px_store *s)
{
	if (s == NULL)
		return;
	s->ops->close(s->e);
	free(s->spec);
	free(s);
}

const char *px_store_spec(const struct px_store *s)
{
	return s->spec;
}

const char *px_store_engine(const struct px_store *s)
{
	return s->ops->name;
}

void px_store_set_timeout(struct px_store *s, unsigned timeout_ms)
{
	__atomic_store_n(&s->timeout_ms, timeout_ms ? timeout_ms : PX_STORE_TIMEOUT_DEFAULT,
			 __ATOMIC_RELAXED);
}

/* key_ok - a key the engines take: 1..PX_STORE_KEY_MAX bytes */
static int key_ok(const char *key, size_t klen)
{
	return key != NULL && klen > 0 && klen <= PX_STORE_KEY_MAX;
}

enum px_store_status px_store_get(struct px_store *s, const char *key, size_t klen, void *buf,
				  size_t buflen, size_t *len)
{
	size_t dummy;

	if (len == NULL)
		len = &dummy;
	*len = 0;
	if (!key_ok(key, klen))
		return PX_STORE_ERROR;
	return s->ops->get(s, key, klen, buf, buflen, len);
}

enum px_store_status px_store_set(struct px_store *s, const char *key, size_t klen,
				  const void *val, size_t vlen, unsigned long long ttl_ms)
{
	if (!key_ok(key, klen) || vlen > PX_STORE_VALUE_MAX || (vlen > 0 && val == NULL))
		return PX_STORE_ERROR;
	return s->ops->set(s, key, klen, val, vlen, ttl_ms);
}

enum px_store_status px_store_incr(struct px_store *s, const char *key, size_t klen,
				   long long delta, unsigned long long ttl_ms, long long *value)
{
	long long dummy;

	if (!key_ok(key, klen))
		return PX_STORE_ERROR;
	return s->ops->incr(s, key, klen, delta, ttl_ms, value ? value : &dummy);
}

enum px_store_status px_store_del(struct px_store *s, const char *key, size_t klen)
{
	if (!key_ok(key, klen))
		return PX_STORE_ERROR;
	return s->ops->del(s, key, klen);
}

enum px_store_status px_store_scan(struct px_store *s, const char *prefix, px_store_scan_fn fn,
				   void *arg)
{
	return s->ops->scan(s, prefix ? prefix : "", fn, arg);
}

/* ------------------------------------------------- the process's store */

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct px_store *current;

/* drop_locked - one reference less; the last closes (current_lock held) */
static struct px_store *drop_locked(struct px_store *s)
{
	return (s != NULL && --s->refs == 0) ? s : NULL;
}

int px_store_use(const char *spec, unsigned timeout_ms, char *err, size_t errlen)
{
	struct px_store *s, *old = NULL;

	pthread_mutex_lock(&current_lock);
	if (current != NULL && strcmp(current->spec, spec) == 0) {
		px_store_set_timeout(current, timeout_ms);
		pthread_mutex_unlock(&current_lock);
		return 0;
	}
	pthread_mutex_unlock(&current_lock);
	if ((s = px_store_open(spec, timeout_ms, err, errlen)) == NULL)
		return -1;
	s->refs = 1;
	px_log(PX_LOG_DEBUG, NULL, "store spec=%s engine=%s timeout_ms=%u", s->spec, s->ops->name,
	       s->timeout_ms);
	pthread_mutex_lock(&current_lock);
	old = drop_locked(current);
	current = s;
	pthread_mutex_unlock(&current_lock);
	px_store_close(old);
	return 0;
}

struct px_store *px_store_acquire(void)
{
	struct px_store *s;

	pthread_mutex_lock(&current_lock);
	s = current;
	if (s != NULL)
		s->refs++;
	pthread_mutex_unlock(&current_lock);
	return s;
}

void px_store_release(struct px_store *s)
{
	struct px_store *gone;

	if (s == NULL)
		return;
	pthread_mutex_lock(&current_lock);
	gone = drop_locked(s);
	pthread_mutex_unlock(&current_lock);
	px_store_close(gone);
}

void px_store_shutdown(void)
{
	struct px_store *gone;

	pthread_mutex_lock(&current_lock);
	gone = drop_locked(current);
	current = NULL;
	pthread_mutex_unlock(&current_lock);
	px_store_close(gone);
}
