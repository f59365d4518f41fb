/*
 * NAME
 *	store_int - what store.c and its engines (store_lmdb.c, store_redis.c)
 *	share; nothing else includes it
 */
#ifndef PX_FILTERS_STORE_INT_H
#define PX_FILTERS_STORE_INT_H

#include "store.h"

struct px_store_engine;

struct px_store_ops {
	const char *name;
	void (*close)(struct px_store_engine *e);
	enum px_store_status (*get)(struct px_store *s, const char *key, size_t klen,
				    void *buf, size_t buflen, size_t *len);
	enum px_store_status (*set)(struct px_store *s, const char *key, size_t klen,
				    const void *val, size_t vlen, unsigned long long ttl_ms);
	enum px_store_status (*incr)(struct px_store *s, const char *key, size_t klen,
				     long long delta, unsigned long long ttl_ms, long long *value);
	enum px_store_status (*del)(struct px_store *s, const char *key, size_t klen);
	enum px_store_status (*scan)(struct px_store *s, const char *prefix,
				     px_store_scan_fn fn, void *arg);
};

struct px_store {
	const struct px_store_ops *ops;
	struct px_store_engine *e;
	char *spec;
	unsigned timeout_ms;          /* atomic: a reload may change it */
	int refs;                     /* px_store_acquire; under the registry lock */
	unsigned long long last_err_ms;   /* rate limit of error lines (atomic) */
	unsigned suppressed;
};

/* Engines: parse the spec (after "lmdb:" / the whole redis URL) */
struct px_store_engine *px_store_lmdb_new(const char *path, char *err, size_t errlen);
struct px_store_engine *px_store_redis_new(const char *url, char *err, size_t errlen);
extern const struct px_store_ops px_store_lmdb_ops, px_store_redis_ops;

/* px_store_fail - log an engine error (rate-limited), return PX_STORE_ERROR */
enum px_store_status px_store_fail(struct px_store *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
