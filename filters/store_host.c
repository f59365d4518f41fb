/*
 * NAME
 *	store_host - host->store_get/set/incr/del (ABI 1.3) for plugins
 * DESCRIPTION
 *	Each service prefixes the plugin's key with "NAME:", NAME being the
 *	plugin's own name (px_plugin.name, not its section title: two sections
 *	of one plugin share their keys, and `postern greylist` finds them), and
 *	calls the process's store (store.h), held for the call.
 *
 *	Where they may be called: in a hook (on a worker, or on the plugin's own
 *	thread while its call is PENDING), late calls included (the store is
 *	not the transaction: what a late call writes there stands). Never from
 *	on_reset/on_close, which run on an event-loop thread: there the call
 *	fails (PX_STORE_ERROR) at once and is logged. A failure marks the
 *	plugin's call in flight (px_invocation.failed), so that when the hook
 *	answers with its error verdict (PX_VERDICT_COUNT) the log names the
 *	store: "plugin name=N stage=S error=store action=tempfail|accept".
 * DIAGNOSTICS
 *	SID plugin=N store=refused reason=event-loop (on_reset/on_close)
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "chain.h"
#include "common/log.h"
#include "store.h"
#include "txn.h"

/* store_enter - the store for a call of the plugin behind handle, and its
 * prefixed key in key (PX_STORE_KEY_MAX + 1); NULL when it may not call */
static struct px_store *store_enter(struct px_txn *handle, const char *pkey, char *key,
				    size_t *klen)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	struct px_txn *t;
	const char *name;
	size_t n, plen;
	int notify;

	if (h == NULL || pkey == NULL)
		return NULL;
	t = h->txn;
	name = t->chain->v[h->plugin].plugin->name;
	pthread_mutex_lock(&t->lock);
	notify = t->plugins[h->plugin].notify != PX_NOTIFY_NONE;
	pthread_mutex_unlock(&t->lock);
	if (notify) {
		px_log(PX_LOG_WARN, t->sid, "plugin=%s store=refused reason=event-loop",
		       t->chain->v[h->plugin].name);
		return NULL;
	}
	plen = strlen(name);
	n = strlen(pkey);
	if (plen + 1 + n > PX_STORE_KEY_MAX)
		return NULL;
	memcpy(key, name, plen);
	key[plen] = ':';
	memcpy(key + plen + 1, pkey, n);
	*klen = plen + 1 + n;
	key[*klen] = '\0';
	return px_store_acquire();
}

/* store_leave - release the store; a failure marks the call in flight */
static enum px_store_status store_leave(struct px_txn *handle, struct px_store *s,
					enum px_store_status st)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	struct px_invocation *inv;

	px_store_release(s);
	if (st != PX_STORE_ERROR || h == NULL)
		return st;
	pthread_mutex_lock(&h->txn->lock);
	if ((inv = h->txn->plugins[h->plugin].call) != NULL)
		inv->failed = "store";
	pthread_mutex_unlock(&h->txn->lock);
	return st;
}

enum px_store_status px_host_store_get(struct px_txn *handle, const char *pkey, void *buf,
				       size_t buflen, size_t *len)
{
	char key[PX_STORE_KEY_MAX + 1];
	size_t klen, dummy;
	struct px_store *s = store_enter(handle, pkey, key, &klen);

	if (len == NULL)
		len = &dummy;
	*len = 0;
	if (s == NULL)
		return store_leave(handle, NULL, PX_STORE_ERROR);
	return store_leave(handle, s, px_store_get(s, key, klen, buf, buflen, len));
}

enum px_store_status px_host_store_set(struct px_txn *handle, const char *pkey,
				       const void *value, size_t len, unsigned long long ttl_ms)
{
	char key[PX_STORE_KEY_MAX + 1];
	size_t klen;
	struct px_store *s = store_enter(handle, pkey, key, &klen);

	if (s == NULL)
		return store_leave(handle, NULL, PX_STORE_ERROR);
	return store_leave(handle, s, px_store_set(s, key, klen, value, len, ttl_ms));
}

enum px_store_status px_host_store_incr(struct px_txn *handle, const char *pkey,
					long long delta, unsigned long long ttl_ms,
					long long *value)
{
	char key[PX_STORE_KEY_MAX + 1];
	size_t klen;
	struct px_store *s = store_enter(handle, pkey, key, &klen);

	if (s == NULL)
		return store_leave(handle, NULL, PX_STORE_ERROR);
	return store_leave(handle, s, px_store_incr(s, key, klen, delta, ttl_ms, value));
}

enum px_store_status px_host_store_del(struct px_txn *handle, const char *pkey)
{
	char key[PX_STORE_KEY_MAX + 1];
	size_t klen;
	struct px_store *s = store_enter(handle, pkey, key, &klen);

	if (s == NULL)
		return store_leave(handle, NULL, PX_STORE_ERROR);
	return store_leave(handle, s, px_store_del(s, key, klen));
}
