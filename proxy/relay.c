/*
 * NAME
 *	relay - one client session's connection to the backend (front)
 * DESCRIPTION
 *	Chooses the backend kind from the configuration, forwards calls to its
 *	ops table, and owns the deferred-callback queue every kind uses.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "policy/config.h"
#include "relay_int.h"

struct px_deferred {
	struct px_deferred *next;
	px_relay_cb cb;
	void *arg;
	struct px_reply reply;
};

/* run_deferred - deliver queued callbacks in order */
static void run_deferred(evutil_socket_t fd, short what, void *arg)
{
	struct px_relay *rl = arg;
	struct px_deferred *d;

	while ((d = rl->deferred) != NULL) {
		rl->deferred = d->next;
		d->cb(d->arg, &d->reply);
		free(d);
	}
}

/* px_relay_defer - queue a callback for the next loop turn */
void px_relay_defer(struct px_relay *rl, px_relay_cb cb, void *arg, const struct px_reply *reply)
{
	struct px_deferred *d = calloc(1, sizeof(*d)), **tail;

	if (d == NULL)
		abort();        /* out of memory: nothing sane to answer */
	d->cb = cb;
	d->arg = arg;
	d->reply = *reply;
	for (tail = &rl->deferred; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = d;
	event_active(rl->deferred_ev, EV_TIMEOUT, 0);
}

/* px_relay_new - choose the backend kind */
struct px_relay *px_relay_new(struct event_base *base, const struct px_config *cfg,
			      struct px_workpool *pool, const struct px_relay_client *client)
{
	struct px_relay *rl = calloc(1, sizeof(*rl));
	int rc;

	if (rl == NULL)
		return NULL;
	rl->base = base;
	rl->cfg = cfg;
	rl->pool = pool;
	rl->client = *client;
	snprintf(rl->sid, sizeof(rl->sid), "%s", client->sid);
	rl->client.sid = rl->sid;
	rl->deferred_ev = event_new(base, -1, 0, run_deferred, rl);
	if (cfg->backend.kind == PX_BACKEND_MAILDIR)
		rc = px_relay_maildir_init(rl);
	else
		rc = px_relay_smtp_init(rl);
	if (rl->deferred_ev == NULL || rc < 0) {
		if (rl->deferred_ev)
			event_free(rl->deferred_ev);
		free(rl);
		return NULL;
	}
	return rl;
}

void px_relay_mail(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		   void *arg)
{
	rl->ops->mail(rl, cmd, params, cb, arg);
}

void px_relay_rcpt(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		   void *arg)
{
	rl->ops->rcpt(rl, cmd, params, cb, arg);
}

void px_relay_data(struct px_relay *rl, const struct px_message *msg, px_relay_cb cb, void *arg)
{
	rl->ops->data(rl, msg, cb, arg);
}

/* px_relay_set_bdat - the client used BDAT for the next message */
void px_relay_set_bdat(struct px_relay *rl, int on)
{
	rl->bdat = on;
}

void px_relay_rset(struct px_relay *rl)
{
	rl->ops->rset(rl);
}

/* px_relay_free - drop pending callbacks, let the kind close its side */
void px_relay_free(struct px_relay *rl)
{
	struct px_deferred *d;

	if (rl == NULL)
		return;
	while ((d = rl->deferred) != NULL) {
		rl->deferred = d->next;
		free(d);
	}
	event_free(rl->deferred_ev);
	rl->ops->free(rl);   /* frees rl->impl, and rl when it no longer needs it */
}

static unsigned backend_caps;
static size_t backend_size;

/* px_backend_caps - the last capabilities seen */
unsigned px_backend_caps(void)
{
	return __atomic_load_n(&backend_caps, __ATOMIC_RELAXED);
}

/* px_backend_size - the last SIZE limit seen; 0 = none */
size_t px_backend_size(void)
{
	return __atomic_load_n(&backend_size, __ATOMIC_RELAXED);
}

/* px_backend_size_min - the smaller of ours and the backend's SIZE (RFC 1870):
 * advertising more than the backend takes only gets the message refused late */
size_t px_backend_size_min(size_t ours)
{
	size_t theirs = px_backend_size();

	return theirs != 0 && theirs < ours ? theirs : ours;
}

/* px_backend_caps_note - remember them for EHLO advertisements */
void px_backend_caps_note(unsigned caps, size_t size)
{
	__atomic_store_n(&backend_size, (caps & PX_CAP_SIZE) ? size : 0, __ATOMIC_RELAXED);
	__atomic_store_n(&backend_caps, caps | PX_CAP_KNOWN, __ATOMIC_RELAXED);
}
