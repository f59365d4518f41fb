/*
 * NAME
 *	relay - one client session's connection to the backend
 * SYNOPSIS
 *	#include "proxy/relay.h"
 * DESCRIPTION
 *	The session hands the relay each envelope command once it has passed
 *	the local checks; the relay forwards it and calls back, always later on
 *	the session's event base (never from inside the call), with the
 *	backend's reply. Backends:
 *
 *	smtp:, lmtp:  relay_smtp.c, its own state machine. The connection opens
 *	    lazily at the first command of the session (the first accepted RCPT:
 *	    the session sends MAIL and that RCPT together), is reused for later
 *	    transactions, and is pipelined when the backend offers PIPELINING.
 *	maildir:      relay_maildir.c. MAIL and RCPT are accepted; DATA writes
 *	    tmp/NAME, fsyncs, renames into new/, fsyncs the folder, and only
 *	    then answers 250.
 *
 *	Failures never look like success: a refused connection, a timeout, a
 *	dropped connection or a reply that makes no sense become 451 4.4.x
 *	(421 when the session should end), so the sender keeps its copy.
 */
#ifndef PX_PROXY_RELAY_H
#define PX_PROXY_RELAY_H

#include <stddef.h>
#include "filters/message.h"
#include "reply.h"

struct event_base;
struct px_config;
struct px_spool;
struct px_workpool;
struct px_tls;

/* Backend capabilities seen in its EHLO reply */
enum px_backend_cap {
	PX_CAP_PIPELINING   = 1 << 0,
	PX_CAP_SIZE         = 1 << 1,
	PX_CAP_8BITMIME     = 1 << 2,
	PX_CAP_SMTPUTF8     = 1 << 3,
	PX_CAP_DSN          = 1 << 4,
	PX_CAP_CHUNKING     = 1 << 5,
	PX_CAP_XCLIENT      = 1 << 6,
	PX_CAP_XFORWARD     = 1 << 7,
	PX_CAP_STARTTLS     = 1 << 8,
	PX_CAP_ENHANCED     = 1 << 9,
	PX_CAP_KNOWN        = 1 << 15   /* set once any EHLO reply was seen */
};

/* What the relay knows of the client it speaks for */
struct px_relay_client {
	const char *sid;
	const char *addr;         /* "192.0.2.1" */
	unsigned port;
	const char *helo;         /* may be NULL */
	const char *name;         /* reverse name, "unknown" (XCLIENT NAME) */
	const char *proto;        /* "SMTP", "ESMTP", ... */
	const char *login;        /* SASL login or "" */
	const char *dest_addr;    /* where the client connected */
	unsigned dest_port;
	struct px_tls *tls;       /* contexts for STARTTLS to the backend, or NULL */
};

typedef void (*px_relay_cb)(void *arg, const struct px_reply *reply);

struct px_relay;

/* px_relay_new - nothing is connected yet; client strings must outlive the relay */
struct px_relay *px_relay_new(struct event_base *base, const struct px_config *cfg,
			      struct px_workpool *pool, const struct px_relay_client *client);
/*
 * px_relay_mail - "MAIL FROM:<addr>" as rebuilt by the session (no CRLF), and
 * its validated ESMTP parameters ("SIZE=10 BODY=8BITMIME", may be ""). The
 * relay passes on only the parameters the backend announced (SIZE, BODY via
 * 8BITMIME, SMTPUTF8, RET/ENVID/NOTIFY/ORCPT via DSN).
 */
void px_relay_mail(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		   void *arg);
/* px_relay_rcpt - "RCPT TO:<addr>" and its parameters, as for MAIL */
void px_relay_rcpt(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		   void *arg);
/* px_relay_data - send the message; cb gets the final reply (LMTP: aggregated) */
void px_relay_data(struct px_relay *rl, const struct px_message *msg, px_relay_cb cb, void *arg);
/* px_relay_set_bdat - send the next message with BDAT when the backend offers CHUNKING */
void px_relay_set_bdat(struct px_relay *rl, int on);
/* px_relay_rset - end the backend transaction, if any (no callback) */
void px_relay_rset(struct px_relay *rl);
/* px_relay_free - QUIT politely if idle, else drop; no callback runs after this */
void px_relay_free(struct px_relay *rl);

/* px_relay_smtp_free_all - at exit, once the event loops have stopped */
void px_relay_smtp_free_all(void);

/* px_relay_in_transaction - 0 once the backend lost the transaction (reconnect needed) */
int px_relay_in_transaction(struct px_relay *rl);

/* px_backend_caps - capabilities from the most recent backend EHLO (any session) */
unsigned px_backend_caps(void);
/* px_backend_size - the SIZE limit of that EHLO; 0 if none was announced (or "SIZE 0") */
size_t px_backend_size(void);
/* px_backend_size_min - the smaller of ours and px_backend_size() (0 there: ours) */
size_t px_backend_size_min(size_t ours);
/* px_backend_caps_probe - connect once, EHLO, QUIT, to learn them at start */
void px_backend_caps_probe(struct event_base *base, const struct px_config *cfg);

#endif
