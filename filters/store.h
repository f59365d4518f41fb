/*
 * NAME
 *	store - the key-value store behind host->store_*(): LMDB or Redis
 * SYNOPSIS
 *	#include "filters/store.h"
 * DESCRIPTION
 *	One interface, two engines: get, set with an expiry, an atomic
 *	increment with an expiry (a fixed-window counter), delete, and a scan by
 *	prefix for the admin command. Every call blocks its thread for at most
 *	the store's timeout (`timeouts.store`): call it on workers, never on an
 *	event-loop thread.
 *
 *	Specs (the `store` setting):
 *	    lmdb:/ABSOLUTE/DIR          embedded, the default (SPOOL_DIR/store);
 *	                                safe across threads and processes
 *	    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
 *	                                shared by every node of a cluster
 *	Both engines open lazily, at the first call (so after posternd has
 *	dropped its privileges, and so that a Redis that is down at start only
 *	costs the calls made while it is down).
 *
 *	The process's store. px_store_use() makes a spec the process's store
 *	(each configuration generation that loads calls it; the same spec keeps
 *	the open handle, a new one replaces it for every session at once), and
 *	px_store_acquire() / px_store_release() hold it across one call, so a
 *	reload never closes a store under a call in flight.
 * DIAGNOSTICS
 *	- store engine=lmdb|redis error="..." (at most one line per second per
 *	  store, with suppressed=N for the lines it held back)
 */
#ifndef PX_FILTERS_STORE_H
#define PX_FILTERS_STORE_H

#include <stddef.h>

#include "postern/plugin.h"    /* enum px_store_status */

#define PX_STORE_KEY_MAX 480     /* bytes, with the plugin's prefix (LMDB allows 511) */
#define PX_STORE_VALUE_MAX 4096
#define PX_STORE_TIMEOUT_DEFAULT 2000   /* ms */

struct px_store;

/* px_store_scan_fn - one live key of a scan; expires_ms is the absolute
 * time (ms since the epoch) it expires, 0 for never. Return 0 to go on,
 * 1 to stop. */
typedef int (*px_store_scan_fn)(void *arg, const char *key, size_t klen, const void *val,
				size_t vlen, unsigned long long expires_ms);

/* px_store_check - whether spec is a store spec; 0, or -1 with why in err */
int px_store_check(const char *spec, char *err, size_t errlen);
/* px_store_default_spec - "lmdb:SPOOL_DIR/store" into buf */
char *px_store_default_spec(const char *spool_dir, char *buf, size_t len);

/* px_store_open - a store for spec (nothing is opened or connected yet);
 * NULL with why in err. px_store_close - close it (no call may be running) */
struct px_store *px_store_open(const char *spec, unsigned timeout_ms, char *err, size_t errlen);
void px_store_close(struct px_store *s);
const char *px_store_spec(const struct px_store *s);
const char *px_store_engine(const struct px_store *s);
void px_store_set_timeout(struct px_store *s, unsigned timeout_ms);

enum px_store_status px_store_get(struct px_store *s, const char *key, size_t klen, void *buf,
				  size_t buflen, size_t *len);
enum px_store_status px_store_set(struct px_store *s, const char *key, size_t klen,
				  const void *val, size_t vlen, unsigned long long ttl_ms);
enum px_store_status px_store_incr(struct px_store *s, const char *key, size_t klen,
				   long long delta, unsigned long long ttl_ms, long long *value);
enum px_store_status px_store_del(struct px_store *s, const char *key, size_t klen);
/* px_store_scan - every live key that starts with prefix (in no fixed
 * order for Redis); keys may come and go meanwhile */
enum px_store_status px_store_scan(struct px_store *s, const char *prefix, px_store_scan_fn fn,
				   void *arg);

/* px_store_use - make spec the process's store (see above); 0, or -1 with
 * why in err (the previous store stays) */
int px_store_use(const char *spec, unsigned timeout_ms, char *err, size_t errlen);
/* px_store_acquire - the process's store, held until px_store_release; NULL
 * when none was set */
struct px_store *px_store_acquire(void);
void px_store_release(struct px_store *s);
/* px_store_shutdown - close the process's store (exit; no call may run) */
void px_store_shutdown(void);

/* The host services (store_host.c): key prefixed "PLUGIN-NAME:" */
struct px_txn;
enum px_store_status px_host_store_get(struct px_txn *handle, const char *key, void *buf,
				       size_t buflen, size_t *len);
enum px_store_status px_host_store_set(struct px_txn *handle, const char *key,
				       const void *value, size_t len, unsigned long long ttl_ms);
enum px_store_status px_host_store_incr(struct px_txn *handle, const char *key,
					long long delta, unsigned long long ttl_ms,
					long long *value);
enum px_store_status px_host_store_del(struct px_txn *handle, const char *key);

/* px_store_now_ms - wall-clock ms since the epoch (expiry times) */
unsigned long long px_store_now_ms(void);

#endif
