/*
 * NAME
 *	relay_int - what the relay front (relay.c) shares with its backends
 * DESCRIPTION
 *	Each backend kind fills a px_relay_ops table. Callbacks to the session
 *	always go through px_relay_defer(), which runs them from the event loop,
 *	so a backend that answers at once (maildir) cannot re-enter the session.
 */
#ifndef PX_PROXY_RELAY_INT_H
#define PX_PROXY_RELAY_INT_H

#include "backend_addr.h"
#include "relay.h"

struct px_relay_ops {
	void (*mail)(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		     void *arg);
	void (*rcpt)(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		     void *arg);
	void (*data)(struct px_relay *rl, const struct px_message *msg, px_relay_cb cb, void *arg);
	void (*rset)(struct px_relay *rl);
	void (*free)(struct px_relay *rl);
};

struct px_deferred;

struct px_relay {
	const struct px_relay_ops *ops;
	struct event_base *base;
	const struct px_config *cfg;
	struct px_workpool *pool;
	struct px_relay_client client;
	char sid[24];                     /* a copy: the relay may outlive its session */
	struct px_deferred *deferred;     /* callbacks waiting for the loop */
	struct event *deferred_ev;
	void *impl;                       /* the backend kind's own state */
	int bdat;                         /* next message: BDAT if the backend has CHUNKING */
};

/* px_relay_defer - call cb(arg, reply) from the event loop, soon */
void px_relay_defer(struct px_relay *rl, px_relay_cb cb, void *arg, const struct px_reply *reply);

extern const struct px_relay_ops px_relay_smtp_ops;
extern const struct px_relay_ops px_relay_maildir_ops;
int px_relay_smtp_init(struct px_relay *rl);
int px_relay_maildir_init(struct px_relay *rl);

/* px_backend_caps_parse - capabilities from an EHLO reply's text lines, and
 * the SIZE limit it announced (*size: 0 when none, or "SIZE 0": no limit) */
unsigned px_backend_caps_parse(const char *text, size_t *size);
/* px_backend_caps_note - record the capabilities and SIZE a backend just announced */
void px_backend_caps_note(unsigned caps, size_t size);

#endif
