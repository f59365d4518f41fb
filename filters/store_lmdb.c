/*
 * NAME
 *	store_lmdb - the embedded engine of the store: LMDB
 * DESCRIPTION
 *	One LMDB environment (a directory holding data.mdb and lock.mdb),
 *	opened at the first call, shared by every thread (MDB_NOTLS: reader
 *	slots belong to transactions, not to the pool's threads) and, through
 *	LMDB's lock file, by every process that opens it (`postern greylist`
 *	beside a running posternd). Writers take LMDB's own write lock, so an
 *	increment is atomic across threads and processes.
 *
 *	Records are an 8-byte expiry (ms since the epoch, little-endian, 0 =
 *	never) followed by the value; a read checks the expiry, so an expired
 *	key is gone for every caller at once. Expired keys are also removed:
 *	every PURGE_EVERY writes, the write transaction walks at most
 *	PURGE_BATCH further keys from where the last walk stopped (a round
 *	robin over the whole database, bounded per write), and when the map
 *	is full a larger walk runs before the write is tried once more.
 *
 *	Durability: MDB_NOSYNC, and an fsync at most once a second after a
 *	write (mdb_env_sync). A restart of posternd loses nothing (the data is
 *	in the page cache); a crash of the machine may lose the last second of
 *	greylist and rate state, which only costs a retry.
 *
 *	Increments keep the number as decimal text, so store_get reads the
 *	same bytes from LMDB as from Redis.
 */
#include "autoconfig.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "store_int.h"

#define MAP_SIZE (256UL << 20)   /* sparse; holds a few million triplets */
#define MAX_READERS 1024
#define PURGE_EVERY 32
#define PURGE_BATCH 64
#define PURGE_FULL 100000
#define SYNC_EVERY_MS 1000
#define OPEN_RETRY_MS 1000

struct px_store_engine {
	char *path;
	pthread_mutex_t open_lock;
	MDB_env *env;             /* set once, under open_lock; read atomically */
	MDB_dbi dbi;
	unsigned long long open_retry;   /* no new try before (ms) */
	char open_err[256];
	/* the purge walk (under LMDB's write lock) */
	char purge_key[PX_STORE_KEY_MAX + 1];
	size_t purge_klen;
	unsigned writes;
	unsigned long long last_sync;    /* atomic */
};

struct px_store_engine *px_store_lmdb_new(const char *path, char *err, size_t errlen)
{
	struct px_store_engine *e;

	if (path[0] != '/' || strlen(path) > 1024) {
		snprintf(err, errlen, "lmdb: '%s' is not an absolute path", path);
		return NULL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL || (e->path = strdup(path)) == NULL) {
		free(e);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&e->open_lock, NULL);
	return e;
}

static void lmdb_close(struct px_store_engine *e)
{
	if (e->env != NULL)
		mdb_env_close(e->env);
	pthread_mutex_destroy(&e->open_lock);
	free(e->path);
	free(e);
}

/* env_open - create the directory and the environment (open_lock held) */
static int env_open(struct px_store_engine *e, char *err, size_t errlen)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	int rc, dead;

	if (mkdir(e->path, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "lmdb %s: %s", e->path, strerror(errno));
		return -1;
	}
	if ((rc = mdb_env_create(&env)) != 0 || (rc = mdb_env_set_mapsize(env, MAP_SIZE)) != 0 ||
	    (rc = mdb_env_set_maxreaders(env, MAX_READERS)) != 0 ||
	    (rc = mdb_env_open(env, e->path, MDB_NOTLS | MDB_NOSYNC, 0600)) != 0)
		goto fail;
	mdb_reader_check(env, &dead);     /* slots of processes that died */
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &e->dbi)) != 0 || (rc = mdb_txn_commit(txn)) != 0) {
		if (txn != NULL && rc != 0)
			mdb_txn_abort(txn);
		goto fail;
	}
	__atomic_store_n(&e->env, env, __ATOMIC_RELEASE);
	return 0;
fail:
	snprintf(err, errlen, "lmdb %s: %s", e->path, mdb_strerror(rc));
	if (env != NULL)
		mdb_env_close(env);
	return -1;
}

/* env_get - the open environment, opening it at the first call; NULL when
 * it cannot be opened (tried again a second later) */
static MDB_env *env_get(struct px_store *s)
{
	struct px_store_engine *e = s->e;
	MDB_env *env = __atomic_load_n(&e->env, __ATOMIC_ACQUIRE);
	unsigned long long now;
	char err[256] = "";

	if (env != NULL)
		return env;
	pthread_mutex_lock(&e->open_lock);
	now = px_store_now_ms();
	if (e->env == NULL && now >= e->open_retry && env_open(e, err, sizeof(err)) < 0) {
		e->open_retry = now + OPEN_RETRY_MS;
		snprintf(e->open_err, sizeof(e->open_err), "%s", err);
	}
	env = e->env;
	snprintf(err, sizeof(err), "%s", e->open_err);
	pthread_mutex_unlock(&e->open_lock);
	if (env == NULL)
		px_store_fail(s, "%s", err[0] ? err : "lmdb: not open");
	return env;
}

/* rec_expiry - the expiry of a record; 0 when too short to be one */
static uint64_t rec_expiry(const MDB_val *v)
{
	const unsigned char *p = v->mv_data;
	uint64_t x = 0;
	int i;

	for (i = 7; i >= 0; i--)
		x = (x << 8) | p[i];
	return x;
}

static int rec_live(const MDB_val *v, unsigned long long now)
{
	uint64_t x;

	if (v->mv_size < 8)
		return 0;
	x = rec_expiry(v);
	return x == 0 || x > now;
}

/* rec_fill - expiry + value into buf (8 + len bytes) */
static void rec_fill(unsigned char *buf, uint64_t expires, const void *val, size_t len)
{
	int i;

	for (i = 0; i < 8; i++)
		buf[i] = (unsigned char)(expires >> (8 * i));
	if (len)
		memcpy(buf + 8, val, len);
}

static enum px_store_status lmdb_get(struct px_store *s, const char *key, size_t klen, void *buf,
				     size_t buflen, size_t *len)
{
	MDB_env *env = env_get(s);
	MDB_txn *txn;
	MDB_val k = { klen, (void *)key }, v;
	enum px_store_status st;
	int rc;

	if (env == NULL)
		return PX_STORE_ERROR;
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0)
		return px_store_fail(s, "lmdb read: %s", mdb_strerror(rc));
	rc = mdb_get(txn, s->e->dbi, &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && !rec_live(&v, px_store_now_ms()))) {
		st = PX_STORE_NOTFOUND;
	} else if (rc != 0) {
		st = px_store_fail(s, "lmdb get: %s", mdb_strerror(rc));
	} else {
		*len = v.mv_size - 8;
		if (buf != NULL && buflen > 0)
			memcpy(buf, (char *)v.mv_data + 8, *len < buflen ? *len : buflen);
		st = PX_STORE_OK;
	}
	mdb_txn_abort(txn);
	return st;
}

/* purge_walk - delete the expired keys among the next `batch` from where
 * the last walk stopped (write txn held: so is LMDB's write lock) */
static void purge_walk(struct px_store_engine *e, MDB_txn *txn, unsigned batch)
{
	unsigned long long now = px_store_now_ms();
	MDB_cursor *cur;
	MDB_val k = { e->purge_klen, e->purge_key }, v;
	unsigned i;
	int rc;

	if (mdb_cursor_open(txn, e->dbi, &cur) != 0)
		return;
	rc = e->purge_klen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
		: mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (i = 0; i < batch && rc == 0; i++) {
		if (!rec_live(&v, now))
			mdb_cursor_del(cur, 0);
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (rc == 0 && k.mv_size <= PX_STORE_KEY_MAX) {
		memcpy(e->purge_key, k.mv_data, k.mv_size);
		e->purge_klen = k.mv_size;
	} else {
		e->purge_klen = 0;        /* at the end: start again from the first */
	}
	mdb_cursor_close(cur);
}

/* write_fn - one change inside a write transaction: an MDB error code */
typedef int (*write_fn)(struct px_store_engine *e, MDB_txn *txn, void *arg);

/* write_txn - run fn in a write transaction (a bounded purge first, every
 * PURGE_EVERY writes); a full map gets a larger purge and one more try */
static enum px_store_status write_txn(struct px_store *s, write_fn fn, void *arg,
				      const char *what)
{
	struct px_store_engine *e = s->e;
	MDB_env *env = env_get(s);
	unsigned long long now, last;
	MDB_txn *txn;
	int rc = 0, attempt;

	if (env == NULL)
		return PX_STORE_ERROR;
	for (attempt = 0; attempt < 2; attempt++) {
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
			break;
		if (attempt > 0)
			purge_walk(e, txn, PURGE_FULL);
		else if (++e->writes % PURGE_EVERY == 0)
			purge_walk(e, txn, PURGE_BATCH);
		rc = fn(e, txn, arg);
		if (rc == 0 || rc == MDB_NOTFOUND) {
			rc = mdb_txn_commit(txn);
		} else {
			mdb_txn_abort(txn);
		}
		if (rc != MDB_MAP_FULL)
			break;
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc == -1 ? PX_STORE_ERROR
			: px_store_fail(s, "lmdb %s: %s", what, mdb_strerror(rc));
	now = px_store_now_ms();
	last = __atomic_load_n(&e->last_sync, __ATOMIC_RELAXED);
	if (now - last >= SYNC_EVERY_MS &&
	    __atomic_compare_exchange_n(&e->last_sync, &last, now, 0, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED))
		mdb_env_sync(env, 1);
	return PX_STORE_OK;
}

struct set_arg {
	const char *key;
	size_t klen;
	const void *val;
	size_t vlen;
	unsigned long long ttl_ms;
	long long delta, *value;
	int not_integer;
};

static int do_set(struct px_store_engine *e, MDB_txn *txn, void *arg)
{
	struct set_arg *a = arg;
	MDB_val k = { a->klen, (void *)a->key }, v = { a->vlen + 8, NULL };
	uint64_t exp = a->ttl_ms ? px_store_now_ms() + a->ttl_ms : 0;
	int rc;

	if ((rc = mdb_put(txn, e->dbi, &k, &v, MDB_RESERVE)) == 0)
		rec_fill(v.mv_data, exp, a->val, a->vlen);
	return rc;
}

static enum px_store_status lmdb_set(struct px_store *s, const char *key, size_t klen,
				     const void *val, size_t vlen, unsigned long long ttl_ms)
{
	struct set_arg a = { .key = key, .klen = klen, .val = val, .vlen = vlen, .ttl_ms = ttl_ms };

	return write_txn(s, do_set, &a, "set");
}

/* parse_ll - the decimal integer of a record's value; -1 when not one */
static int parse_ll(const char *p, size_t n, long long *out)
{
	char buf[32], *end;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, p, n);
	buf[n] = '\0';
	errno = 0;
	*out = strtoll(buf, &end, 10);
	return (*end != '\0' || errno) ? -1 : 0;
}

static int do_incr(struct px_store_engine *e, MDB_txn *txn, void *arg)
{
	struct set_arg *a = arg;
	unsigned long long now = px_store_now_ms();
	MDB_val k = { a->klen, (void *)a->key }, v;
	uint64_t exp = a->ttl_ms ? now + a->ttl_ms : 0;
	long long cur = 0;
	char num[32];
	int rc = mdb_get(txn, e->dbi, &k, &v), n;

	if (rc != 0 && rc != MDB_NOTFOUND)
		return rc;
	if (rc == 0 && rec_live(&v, now)) {
		if (parse_ll((char *)v.mv_data + 8, v.mv_size - 8, &cur) < 0) {
			a->not_integer = 1;
			return -1;
		}
		exp = rec_expiry(&v);    /* a window keeps its end */
	}
	if ((a->delta > 0 && cur > LLONG_MAX - a->delta) ||
	    (a->delta < 0 && cur < LLONG_MIN - a->delta)) {
		a->not_integer = 1;
		return -1;
	}
	*a->value = cur + a->delta;
	n = snprintf(num, sizeof(num), "%lld", *a->value);
	v.mv_size = (size_t)n + 8;
	if ((rc = mdb_put(txn, e->dbi, &k, &v, MDB_RESERVE)) == 0)
		rec_fill(v.mv_data, exp, num, (size_t)n);
	return rc;
}

static enum px_store_status lmdb_incr(struct px_store *s, const char *key, size_t klen,
				      long long delta, unsigned long long ttl_ms, long long *value)
{
	struct set_arg a = { .key = key, .klen = klen, .ttl_ms = ttl_ms, .delta = delta,
			     .value = value };
	enum px_store_status st = write_txn(s, do_incr, &a, "incr");

	if (a.not_integer)
		return px_store_fail(s, "lmdb incr: the value is not an integer or would overflow");
	return st;
}

static int do_del(struct px_store_engine *e, MDB_txn *txn, void *arg)
{
	struct set_arg *a = arg;
	MDB_val k = { a->klen, (void *)a->key };

	return mdb_del(txn, e->dbi, &k, NULL);
}

static enum px_store_status lmdb_del(struct px_store *s, const char *key, size_t klen)
{
	struct set_arg a = { .key = key, .klen = klen };

	return write_txn(s, do_del, &a, "del");
}

static enum px_store_status lmdb_scan(struct px_store *s, const char *prefix,
				      px_store_scan_fn fn, void *arg)
{
	MDB_env *env = env_get(s);
	unsigned long long now = px_store_now_ms();
	size_t plen = strlen(prefix);
	MDB_val k = { plen, (void *)prefix }, v;
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc;

	if (env == NULL)
		return PX_STORE_ERROR;
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0)
		return px_store_fail(s, "lmdb scan: %s", mdb_strerror(rc));
	if ((rc = mdb_cursor_open(txn, s->e->dbi, &cur)) != 0) {
		mdb_txn_abort(txn);
		return px_store_fail(s, "lmdb scan: %s", mdb_strerror(rc));
	}
	rc = plen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v,
										 MDB_FIRST);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		if (rec_live(&v, now) && fn(arg, k.mv_data, k.mv_size, (char *)v.mv_data + 8,
					    v.mv_size - 8, rec_expiry(&v)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return PX_STORE_OK;
}

const struct px_store_ops px_store_lmdb_ops = {
	.name = "lmdb",
	.close = lmdb_close,
	.get = lmdb_get,
	.set = lmdb_set,
	.incr = lmdb_incr,
	.del = lmdb_del,
	.scan = lmdb_scan,
};
