/*
 * NAME
 *	relay_smtp - the backend relay state machine (SMTP and LMTP client)
 * DESCRIPTION
 *	The relay is its own state machine, apart from the client session's:
 *	the session hands it commands and gets replies back through callbacks
 *	(relay.h), and nothing here looks at the session's state.
 *
 *	States: IDLE -> SETUP -> READY (-> CLOSING). SETUP runs one step list,
 *	rs_steps[]: a row per step {name, the command it sends (fixed or
 *	built), when it applies, how its reply is judged, the next step}, run
 *	by one small driver (rs_step_run, rs_step_done):
 *
 *	    connect       open the connection (address from backend_addr.c)
 *	    greeting      wait for 220
 *	    ehlo          EHLO (LHLO for LMTP); note the capabilities
 *	    helo          only if EHLO got 5xx (SMTP, not LMTP): HELO
 *	    starttls      only if the backend offers STARTTLS and backend_tls
 *	                  asks for it (required and not offered: 451 4.7.5)
 *	    tls           only after STARTTLS's 220: the TLS handshake
 *	    ehlo-again    only if STARTTLS was sent: EHLO again
 *	    xclient       only if XCLIENT is the way to tell the client's identity
 *	    ehlo-xclient  only after XCLIENT was accepted: EHLO with the
 *	                  client's HELO name
 *	    xforward      only if XFORWARD is the way: nothing goes now; an
 *	                  XFORWARD goes before every MAIL
 *
 *	In READY, commands from the session are queued and the queue is
 *	pumped: all at once when the backend offers PIPELINING (DATA ends a
 *	group, as RFC 2920 says), else one at a time. Replies are matched to
 *	the sent commands in order. DATA's 354 turns the same queue entry into
 *	the end-of-data marker; the message is streamed dot-stuffed with flow
 *	control, then ".", and the final reply (one per accepted recipient for
 *	LMTP) goes back to the session. Every reply is read by the shared
 *	reply reader (reply_reader.c).
 *
 *	Any timeout, EOF, socket error, malformed reply or 421 fails every
 *	queued command with 451 4.4.x and drops the connection; the backend's
 *	transaction is then gone (px_relay_in_transaction says so, and the
 *	session voids the recipients accepted on it); the next transaction
 *	reconnects. px_relay_free on an idle connection sends QUIT first.
 *
 *	Timers are deadlines, taken from one table (rs_kinds[]: a row per kind
 *	of command, with its timeout setting and the words that name it in log
 *	lines and in the client's reply on timeout): the connection must be up
 *	within backend_connect, every reply (and the TLS handshake) complete
 *	within backend_command (backend_data after the end of data) of the
 *	moment it was awaited, so a backend trickling continuation lines is
 *	dropped; writes must make progress within the same times. No read
 *	timeout runs while the link is idle: inside a transaction (the client
 *	is still sending its message) a NOOP goes out every half
 *	backend_command, at most every minute, so a long upload does not lose
 *	the backend's transaction.
 *
 *	An end-of-data reply that arrives while the body still streams stops
 *	the stream: a refusal is passed on, a 2xx (which cannot be acceptance
 *	of a message not yet sent) becomes 451, and the link is dropped.
 *
 *	The backend address comes from backend_addr.c's cache, resolved at
 *	configuration load; a failed connection has the name resolved again
 *	off the I/O threads for the next one.
 */
#include "autoconfig.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "filters/spool.h"
#include "policy/config.h"
#include "relay_int.h"
#include "relay_setup.h"
#include "reply_reader.h"
#include "smtp_parse.h"

enum rs_state { RS_IDLE, RS_SETUP, RS_READY, RS_CLOSING };
static const char *const rs_state_names[] = { "idle", "setup", "ready", "closing" };

/* What the relay sends or waits for; each has a row in rs_kinds[] */
enum rs_kind { K_CONNECT, K_GREETING, K_EHLO, K_LHLO, K_HELO, K_STARTTLS, K_TLS, K_XCLIENT,
	       K_XFWD, K_MAIL, K_RCPT, K_DATA, K_DOT, K_BDAT, K_RSET, K_NOOP, K_QUIT };

/* Which timeout setting a wait uses */
enum rs_tmo { T_CONNECT, T_COMMAND, T_DATA, T_QUIT };

/* rs_kinds - per kind: its timeout, the word for log lines (cmd=) and for
 * the client's reply, and what a read timeout was waiting for */
static const struct rs_kind_row {
	const char *name;                /* "rcpt": cmd= in log lines */
	const char *word;                /* "RCPT": "it stopped reading during RCPT" */
	const char *awaited;             /* "the reply to RCPT": "timed out waiting for ..." */
	enum rs_tmo tmo;
} rs_kinds[] = {
	[K_CONNECT]  = { "connect", "connect", "the connection", T_CONNECT },
	[K_GREETING] = { "greeting", "the greeting", "the greeting", T_COMMAND },
	[K_EHLO]     = { "ehlo", "EHLO", "the reply to EHLO", T_COMMAND },
	[K_LHLO]     = { "lhlo", "LHLO", "the reply to LHLO", T_COMMAND },
	[K_HELO]     = { "helo", "HELO", "the reply to HELO", T_COMMAND },
	[K_STARTTLS] = { "starttls", "STARTTLS", "the reply to STARTTLS", T_COMMAND },
	[K_TLS]      = { "tls-handshake", "the TLS handshake", "the TLS handshake", T_COMMAND },
	[K_XCLIENT]  = { "xclient", "XCLIENT", "the reply to XCLIENT", T_COMMAND },
	[K_XFWD]     = { "xforward", "XFORWARD", "the reply to XFORWARD", T_COMMAND },
	[K_MAIL]     = { "mail", "MAIL", "the reply to MAIL", T_COMMAND },
	[K_RCPT]     = { "rcpt", "RCPT", "the reply to RCPT", T_COMMAND },
	[K_DATA]     = { "data", "DATA", "the reply to DATA", T_COMMAND },
	[K_DOT]      = { "data-end", "the message", "the reply to the end of data", T_DATA },
	[K_BDAT]     = { "bdat", "BDAT", "the reply to BDAT", T_DATA },
	[K_RSET]     = { "rset", "RSET", "the reply to RSET", T_COMMAND },
	[K_NOOP]     = { "noop", "NOOP", "the reply to NOOP", T_COMMAND },
	[K_QUIT]     = { "quit", "QUIT", "the reply to QUIT", T_QUIT },
};

/* The setup steps, in order (rs_steps[]) */
enum rs_step_id { S_CONNECT, S_GREETING, S_EHLO, S_HELO, S_STARTTLS, S_TLS, S_EHLO_AGAIN,
		  S_XCLIENT, S_EHLO_XCLIENT, S_XFORWARD, S_READY,
		  S_NEXT, S_FAIL };   /* judges' answers: the row's next step; failed */

#define RS_LINE_MAX      4096           /* a backend reply line; longer is an error */
#define RS_BODY_CHUNK    65536
#define RS_OUT_HIGH      (256 * 1024)   /* stop filling the socket buffer here */
#define RS_QUIT_TIMEOUT  5
#define RS_KEEPALIVE_MAX 60000          /* ms: NOOP at least this often in a transaction */

struct rs_cmd {
	struct rs_cmd *next;
	enum rs_kind kind;
	char *text;                      /* without CRLF */
	char *params;                    /* ESMTP parameters, filtered when sent */
	px_relay_cb cb;
	void *arg;
	int sent;
	int bdat;                        /* K_DOT that was "BDAT n LAST" */
	unsigned expect, got;            /* replies: 1, or accepted recipients (LMTP DOT) */
	unsigned n2, n4, n5;             /* LMTP DOT: reply classes seen */
	struct px_reply first_ok, first_bad4, first_bad5;
};

struct rs {
	struct px_relay *rl;
	enum rs_state state;
	struct bufferevent *bev;
	unsigned caps;
	int lmtp;
	int detached;
	int dead;                        /* destroyed; freed on the next loop turn */
	struct rs_cmd *head;             /* sent commands first, then unsent */
	unsigned outstanding;
	int txn_open;                    /* MAIL queued or accepted on this connection */
	unsigned rcpt_ok;
	/* the reply being read */
	struct px_reply_reader rr;
	/* the body being streamed */
	const struct px_message *msg;
	size_t body_off;
	int at_bol, streaming;
	int raw;                         /* BDAT: the body goes unstuffed, no "." */
	/* setup (rs_steps[]; relay_setup.c builds the lines): reset per connection */
	struct rs_setup {
		enum rs_step_id step;    /* the step under way (state SETUP) */
		int ehlo_refused;        /* EHLO got 5xx: HELO instead */
		int starttls_sent, tls_accepted;
		int fwd_done, fwd_kind, xclient_ok;
		char fwd[1200];          /* the XCLIENT or XFORWARD line for this client */
	} su;
	/* deadlines (rs_timers): a reply must be complete within its timeout,
	 * however slowly its lines trickle; an open transaction whose backend
	 * link is idle (the client still sends its message) gets a NOOP */
	struct event *deadline;
	int deadline_armed;
	struct event *keepalive;
	int keepalive_armed;
	struct rs *live_next, *live_prev; /* every rs not yet freed (shutdown) */
};

static pthread_mutex_t rs_live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rs *rs_live;

/* rs_live_add - track rs until it is freed */
static void rs_live_add(struct rs *rs)
{
	pthread_mutex_lock(&rs_live_lock);
	rs->live_next = rs_live;
	if (rs_live != NULL)
		rs_live->live_prev = rs;
	rs_live = rs;
	pthread_mutex_unlock(&rs_live_lock);
}

/* rs_live_del - rs is being freed */
static void rs_live_del(struct rs *rs)
{
	pthread_mutex_lock(&rs_live_lock);
	if (rs->live_prev != NULL)
		rs->live_prev->live_next = rs->live_next;
	else
		rs_live = rs->live_next;
	if (rs->live_next != NULL)
		rs->live_next->live_prev = rs->live_prev;
	pthread_mutex_unlock(&rs_live_lock);
}

static void rs_pump(struct rs *rs);
static void rs_fail(struct rs *rs, int code, const char *esc, const char *why);
static void rs_bdat_start(struct rs *rs, struct rs_cmd *c);

static const char *rs_step_name(enum rs_step_id id);
static enum rs_kind rs_step_kind(const struct rs *rs);

/* rs_where - the state for log lines: the step's name while in SETUP */
static const char *rs_where(const struct rs *rs)
{
	return rs->state == RS_SETUP ? rs_step_name(rs->su.step) : rs_state_names[rs->state];
}

/* rs_enter_state - the one place the state changes; logged at debug */
static void rs_enter_state(struct rs *rs, enum rs_state next)
{
	if (px_log_enabled(PX_LOG_DEBUG))
		px_log(PX_LOG_DEBUG, rs->rl->client.sid, "relay state=%s next=%s",
		       rs_where(rs), rs_state_names[next]);
	rs->state = next;
}

/* rs_enter_step - the one place the setup step changes (state SETUP) */
static void rs_enter_step(struct rs *rs, enum rs_step_id step)
{
	if (px_log_enabled(PX_LOG_DEBUG))
		px_log(PX_LOG_DEBUG, rs->rl->client.sid, "relay state=%s next=%s",
		       rs_where(rs), rs_step_name(step));
	rs->state = RS_SETUP;
	rs->su.step = step;
}

/* rs_tmo_ms - one timeout setting, in ms */
static unsigned rs_tmo_ms(const struct rs *rs, enum rs_tmo tmo)
{
	const struct px_timeouts *t = &rs->rl->cfg->timeouts;

	switch (tmo) {
	case T_CONNECT:
		return t->backend_connect;
	case T_DATA:
		return t->backend_data;
	case T_QUIT:
		return RS_QUIT_TIMEOUT * 1000;
	default:
		return t->backend_command;
	}
}

/* rs_set_timeout - the write timeout (output must make progress); replies
 * are covered by the deadline timer (rs_timers), not by a read timeout,
 * so an idle link in a transaction is not an error and a trickling reply is */
static void rs_set_timeout(struct rs *rs, enum rs_tmo tmo)
{
	unsigned ms = rs_tmo_ms(rs, tmo);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	bufferevent_set_timeouts(rs->bev, NULL, &tv);
}

/* rs_awaited - the kind of what the relay waits for now (or last sent) */
static enum rs_kind rs_awaited(const struct rs *rs)
{
	const struct rs_cmd *c = rs->head;

	if (rs->state == RS_SETUP)
		return rs_step_kind(rs);
	if (rs->state == RS_CLOSING)
		return K_QUIT;
	if (c == NULL)
		return K_NOOP;
	return c->kind == K_DOT && c->bdat ? K_BDAT : c->kind;
}

/* rs_expecting - whether a reply (or the connection, or a handshake) is awaited now */
static int rs_expecting(const struct rs *rs)
{
	switch (rs->state) {
	case RS_SETUP: case RS_CLOSING:
		return 1;
	case RS_READY:
		return rs->outstanding > 0 && !rs->streaming;
	default:
		return 0;
	}
}

/* rs_deadline_ms - how long the awaited reply may take, from its command */
static unsigned rs_deadline_ms(const struct rs *rs)
{
	return rs_tmo_ms(rs, rs_kinds[rs_awaited(rs)].tmo);
}

/* rs_timeout_why - the reason a timeout gives, in the log and the client's
 * reply: "backend timed out waiting for the reply to RCPT (5000 ms)"; a write
 * timeout (writing): "... it stopped reading during the message ..." */
static void rs_timeout_why(const struct rs *rs, int writing, char *why, size_t len)
{
	const struct rs_kind_row *k = &rs_kinds[rs_awaited(rs)];

	if (writing)
		snprintf(why, len, "backend timed out: it stopped reading during %s (%u ms)",
			 k->word, rs_tmo_ms(rs, k->tmo));
	else
		snprintf(why, len, "backend timed out waiting for %s (%u ms)", k->awaited,
			 rs_tmo_ms(rs, k->tmo));
}

/* rs_keepalive_ms - the NOOP interval: half the backend timeout, at most a minute */
static unsigned rs_keepalive_ms(const struct rs *rs)
{
	unsigned ms = rs->rl->cfg->timeouts.backend_command / 2;

	if (ms > RS_KEEPALIVE_MAX)
		ms = RS_KEEPALIVE_MAX;
	return ms < 100 ? 100 : ms;
}

/* rs_timer_set - arm (ms > 0) or disarm one timer */
static void rs_timer_set(struct event *ev, int *armed, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (ms == 0) {
		if (*armed)
			evtimer_del(ev);
		*armed = 0;
	} else if (!*armed) {
		evtimer_add(ev, &tv);
		*armed = 1;
	}
}

/* rs_timers - after every event: the reply deadline runs while a reply is
 * awaited (armed once per reply: trickled lines do not extend it); the
 * keepalive runs while a transaction is open and the link is idle */
static void rs_timers(struct rs *rs)
{
	int live = !rs->dead && rs->bev != NULL;
	int idle_txn = live && rs->state == RS_READY && rs->txn_open && rs->head == NULL &&
		       !rs->streaming;

	rs_timer_set(rs->deadline, &rs->deadline_armed,
		     live && rs_expecting(rs) ? rs_deadline_ms(rs) : 0);
	rs_timer_set(rs->keepalive, &rs->keepalive_armed, idle_txn ? rs_keepalive_ms(rs) : 0);
}

/* rs_reply_complete - a whole reply came: the next one gets a fresh deadline */
static void rs_reply_complete(struct rs *rs)
{
	rs_timer_set(rs->deadline, &rs->deadline_armed, 0);
}

/* rs_reply - deliver one reply to a command's callback (via the loop) */
static void rs_reply(struct rs *rs, struct rs_cmd *c, const struct px_reply *r)
{
	if (c->cb != NULL && !rs->detached)
		px_relay_defer(rs->rl, c->cb, c->arg, r);
}

/* cmd_free - one queue entry */
static void cmd_free(struct rs_cmd *c)
{
	free(c->params);
	free(c->text);
	free(c);
}

/* rs_enqueue - add a command at the tail */
static struct rs_cmd *rs_enqueue(struct rs *rs, enum rs_kind kind, const char *text,
				 const char *params, px_relay_cb cb, void *arg)
{
	struct rs_cmd *c = calloc(1, sizeof(*c)), **tail;

	if (c == NULL || (c->text = strdup(text)) == NULL ||
	    (c->params = strdup(params ? params : "")) == NULL)
		abort();
	c->kind = kind;
	c->cb = cb;
	c->arg = arg;
	c->expect = 1;
	for (tail = &rs->head; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = c;
	return c;
}

/* rs_close - drop the connection, back to IDLE */
static void rs_close(struct rs *rs)
{
	if (rs->bev != NULL) {
		bufferevent_free(rs->bev);
		rs->bev = NULL;
	}
	rs->outstanding = 0;
	rs->txn_open = 0;
	rs->rcpt_ok = 0;
	rs->streaming = 0;
	rs->msg = NULL;
	px_reply_reader_init(&rs->rr);
	memset(&rs->su, 0, sizeof(rs->su));
	rs->su.fwd_kind = PX_FWD_NONE;
	rs_enter_state(rs, RS_IDLE);
	rs_timers(rs);
}

/* rs_destroy_now - free everything (from the loop, once no callback runs) */
static void rs_destroy_now(evutil_socket_t fd, short what, void *arg)
{
	struct rs *rs = arg;
	struct rs_cmd *c;

	rs_live_del(rs);
	while ((c = rs->head) != NULL) {
		rs->head = c->next;
		cmd_free(c);
	}
	if (rs->deadline != NULL)
		event_free(rs->deadline);
	if (rs->keepalive != NULL)
		event_free(rs->keepalive);
	free(rs->rl);
	free(rs);
}

/* px_relay_smtp_free_all - at exit, after the event loops stopped: every
 * connection still closing (QUIT sent) or waiting to be freed */
void px_relay_smtp_free_all(void)
{
	struct rs *rs;

	while ((rs = rs_live) != NULL) {
		if (rs->bev != NULL) {
			bufferevent_free(rs->bev);
			rs->bev = NULL;
		}
		rs_destroy_now(-1, 0, rs);
	}
}

/* rs_destroy - close now, free on the next loop turn (callers may still hold rs) */
static void rs_destroy(struct rs *rs)
{
	struct timeval now = { 0, 0 };

	if (rs->dead)
		return;
	rs->dead = 1;
	rs_close(rs);
	rs_timers(rs);
	if (event_base_once(rs->rl->base, -1, EV_TIMEOUT, rs_destroy_now, rs, &now) < 0)
		rs_destroy_now(-1, 0, rs);
}

/* rs_fail - every queued command gets a 4xx; the connection goes */
static void rs_fail(struct rs *rs, int code, const char *esc, const char *why)
{
	struct px_reply r;
	struct rs_cmd *c;

	if (rs->detached) {
		rs_destroy(rs);
		return;
	}
	/* an idle link between transactions that the backend closed loses
	 * nothing: the next transaction reconnects */
	px_log(rs->head == NULL && !rs->txn_open && rs->state == RS_READY ? PX_LOG_DEBUG :
	       PX_LOG_WARN, rs->rl->client.sid,
	       "relay error backend=%s state=%s cmd=%s reason=\"%s\"",
	       rs->rl->cfg->backend.text, rs_where(rs), rs_kinds[rs_awaited(rs)].name, why);
	px_reply_set(&r, code, esc, "Backend unavailable: %s; try again later", why);
	while ((c = rs->head) != NULL) {
		rs->head = c->next;
		rs_reply(rs, c, &r);
		cmd_free(c);
	}
	rs_close(rs);
}

/* rs_sockaddr - the backend address; 0 or -1 with why */
static int rs_sockaddr(struct rs *rs, struct sockaddr_storage *ss, socklen_t *len, char *why,
		       size_t whylen)
{
	return px_backend_addr(rs->rl->cfg, ss, len, why, whylen);   /* cached: never blocks */
}

static void rs_read_cb(struct bufferevent *bev, void *arg);
static void rs_write_cb(struct bufferevent *bev, void *arg);
static void rs_event_cb(struct bufferevent *bev, short what, void *arg);

/* rs_debug - "key=TEXT" at debug, TEXT quoted: a multi-line backend reply
 * must stay one log line */
static void rs_debug(struct rs *rs, const char *key, const char *text)
{
	char q[600];

	if (px_log_enabled(PX_LOG_DEBUG))
		px_log(PX_LOG_DEBUG, rs->rl->client.sid, "%s%s", key,
		       px_log_quote(q, sizeof(q), text, strlen(text)));
}

/* rs_write_line - one command line */
static void rs_write_line(struct rs *rs, const char *text)
{
	struct evbuffer *out = bufferevent_get_output(rs->bev);

	rs_debug(rs, "relay send=", text);
	evbuffer_add_printf(out, "%s\r\n", text);
}

/* param_cap - the capability a parameter needs at the backend; 0 = drop it */
static unsigned param_cap(const char *kw, size_t n)
{
	static const struct { const char *kw; unsigned cap; } table[] = {
		{ "SIZE", PX_CAP_SIZE }, { "BODY", PX_CAP_8BITMIME },
		{ "SMTPUTF8", PX_CAP_SMTPUTF8 }, { "RET", PX_CAP_DSN }, { "ENVID", PX_CAP_DSN },
		{ "NOTIFY", PX_CAP_DSN }, { "ORCPT", PX_CAP_DSN },
	};
	size_t i;

	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strlen(table[i].kw) == n && strncasecmp(kw, table[i].kw, n) == 0)
			return table[i].cap;
	return 0;
}

/* rs_write_cmd - the command with the parameters this backend understands */
static void rs_write_cmd(struct rs *rs, const struct rs_cmd *c)
{
	char line[1200];
	const char *p = c->params;
	size_t n, kwlen, len;

	len = (size_t)snprintf(line, sizeof(line), "%s", c->text);
	while (*p != '\0' && len < sizeof(line)) {
		n = strcspn(p, " ");
		kwlen = strcspn(p, "= ");
		if (n > 0 && (rs->caps & param_cap(p, kwlen)) && len + 1 + n < sizeof(line))
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %.*s", (int)n, p);
		p += n;
		p += strspn(p, " ");
	}
	rs_write_line(rs, line);
}

static void rs_pump_send(struct rs *rs);
static void rs_step_run(struct rs *rs, enum rs_step_id id);

/* rs_pump - send what the backend may take now, then set the timers */
static void rs_pump(struct rs *rs)
{
	rs_pump_send(rs);
	rs_timers(rs);
}

/* rs_pump_send - write the commands that may go now (or connect) */
static void rs_pump_send(struct rs *rs)
{
	struct rs_cmd *c;

	if (rs->state == RS_IDLE && rs->head != NULL) {
		rs_step_run(rs, S_CONNECT);
		return;
	}
	if (rs->state != RS_READY || rs->streaming)
		return;
	for (c = rs->head; c != NULL; c = c->next) {
		if (c->sent) {
			if (c->kind == K_DATA || c->kind == K_DOT)
				return;          /* a sync point is still open */
			continue;
		}
		if (rs->outstanding > 0 && !(rs->caps & PX_CAP_PIPELINING))
			return;
		rs_write_cmd(rs, c);
		c->sent = 1;
		rs->outstanding++;
		if (c->kind == K_BDAT) {
			rs_bdat_start(rs, c);
			return;
		}
		if (c->kind == K_DATA || c->kind == K_QUIT)
			return;
	}
}

/* px_backend_caps_parse - EHLO keywords (lines after the first; '\n'-joined,
 * without reply codes), and SIZE's number into *size (0: none, or no limit) */
unsigned px_backend_caps_parse(const char *text, size_t *size)
{
	static const struct { const char *kw; unsigned cap; } table[] = {
		{ "PIPELINING", PX_CAP_PIPELINING }, { "SIZE", PX_CAP_SIZE },
		{ "8BITMIME", PX_CAP_8BITMIME }, { "SMTPUTF8", PX_CAP_SMTPUTF8 },
		{ "DSN", PX_CAP_DSN }, { "CHUNKING", PX_CAP_CHUNKING },
		{ "XCLIENT", PX_CAP_XCLIENT }, { "XFORWARD", PX_CAP_XFORWARD },
		{ "STARTTLS", PX_CAP_STARTTLS }, { "ENHANCEDSTATUSCODES", PX_CAP_ENHANCED },
	};
	const char *line = strchr(text, '\n');
	unsigned caps = 0;
	size_t i, n;

	*size = 0;
	while (line != NULL) {
		line++;
		n = strcspn(line, " \n");
		for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
			if (strlen(table[i].kw) == n && strncasecmp(line, table[i].kw, n) == 0)
				caps |= table[i].cap;
		if (n == 4 && strncasecmp(line, "SIZE", 4) == 0 && line[4] == ' ')
			*size = (size_t)strtoull(line + 5, NULL, 10);   /* RFC 1870 */
		line = strchr(line, '\n');
	}
	return caps;
}

static void rs_stream_body(struct rs *rs);

/* ---------------------------------------------------------- setup steps -- */

/* What completes a step: nothing (it is done at once), a reply, or the
 * bufferevent's CONNECTED event (the TCP connection, the TLS handshake) */
enum rs_wait { W_NONE, W_REPLY, W_CONNECTED };

/* One setup step. The driver (rs_step_run) skips it unless applies() says
 * 1, then sends its command (cmd, or the line build() writes) or begins
 * its action (start()), and waits as wait says; on the reply (code 0 for
 * W_CONNECTED) judge() answers S_NEXT (go on to next), another step, or
 * S_FAIL (it called rs_fail: the connection is gone) */
struct rs_step {
	const char *name;                                  /* state= in log lines */
	enum rs_kind kind;                                 /* timeout and words: rs_kinds[] */
	int (*applies)(struct rs *rs);                     /* NULL: always; 0 skip; -1 failed */
	const char *cmd;                                   /* a fixed command, or NULL */
	void (*build)(struct rs *rs, char *line, size_t len);  /* or one built now */
	int (*start)(struct rs *rs);                       /* or an action; -1 failed */
	enum rs_wait wait;
	enum rs_step_id (*judge)(struct rs *rs, int code, const char *text);
	enum rs_step_id next;
};

/* step_connect - open the connection; failures come back through rs_fail.
 * No timeout on the bufferevent: the deadline (backend_connect) covers it */
static int step_connect(struct rs *rs)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256];

	if (rs_sockaddr(rs, &ss, &len, why, sizeof(why)) < 0) {
		rs_fail(rs, 451, "4.4.1", why);
		return -1;
	}
	rs->bev = bufferevent_socket_new(rs->rl->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (rs->bev == NULL) {
		rs_fail(rs, 451, "4.3.0", "out of memory");
		return -1;
	}
	bufferevent_setcb(rs->bev, rs_read_cb, rs_write_cb, rs_event_cb, rs);
	if (bufferevent_socket_connect(rs->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		px_backend_addr_failed(rs->rl->cfg);
		rs_fail(rs, 451, "4.4.1", "connect failed");
		return -1;
	}
	return 0;
}

/* judge_connected - the TCP connection is up: read the greeting */
static enum rs_step_id judge_connected(struct rs *rs, int code, const char *text)
{
	int one = 1;

	setsockopt(bufferevent_getfd(rs->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	rs_set_timeout(rs, T_COMMAND);
	bufferevent_enable(rs->bev, EV_READ | EV_WRITE);
	return S_NEXT;
}

/* judge_greeting - 220, or the backend does not want us */
static enum rs_step_id judge_greeting(struct rs *rs, int code, const char *text)
{
	if (code == 220)
		return S_NEXT;
	rs_fail(rs, 451, "4.4.1", "backend refused the session");
	return S_FAIL;
}

/* hello_line - "EHLO name" (verb given), our hostname when name is empty */
static void hello_line(struct rs *rs, const char *verb, const char *name, char *line,
		       size_t len)
{
	snprintf(line, len, "%s %s", verb, name != NULL && *name ? name : rs->rl->cfg->hostname);
}

/* build_ehlo - EHLO (LHLO) with our hostname */
static void build_ehlo(struct rs *rs, char *line, size_t len)
{
	hello_line(rs, rs->lmtp ? "LHLO" : "EHLO", NULL, line, len);
}

/* build_ehlo_client - EHLO (LHLO) after XCLIENT, with the client's HELO
 * name: Postfix takes the name of the EHLO after XCLIENT */
static void build_ehlo_client(struct rs *rs, char *line, size_t len)
{
	hello_line(rs, rs->lmtp ? "LHLO" : "EHLO", rs->rl->client.helo, line, len);
}

/* build_helo - HELO with our hostname */
static void build_helo(struct rs *rs, char *line, size_t len)
{
	hello_line(rs, "HELO", NULL, line, len);
}

/* forward_prepare - after each EHLO until the choice is made: which way the
 * client's identity would go (XCLIENT, XFORWARD, none) and its line, from
 * the attributes this EHLO listed */
static void forward_prepare(struct rs *rs, const char *ehlo)
{
	if (rs->su.fwd_done)
		return;
	rs->su.fwd_kind = px_relay_forward_kind(rs->rl, rs->caps);
	if (rs->su.fwd_kind != PX_FWD_NONE &&
	    px_relay_forward_line(rs->rl, rs->su.fwd_kind, ehlo, rs->su.fwd,
				  sizeof(rs->su.fwd)) < 0)
		rs->su.fwd_kind = PX_FWD_NONE;
}

/* forward_decide - the choice, made (and logged) once per connection */
static int forward_decide(struct rs *rs)
{
	static const char *const names[] = { "none", "xclient", "xforward" };

	if (!rs->su.fwd_done) {
		rs->su.fwd_done = 1;
		px_log(rs->su.fwd_kind == PX_FWD_NONE ? PX_LOG_WARN : PX_LOG_INFO,
		       rs->rl->client.sid, "relay forward=%s client=%s%s", names[rs->su.fwd_kind],
		       rs->rl->client.addr, rs->su.fwd_kind == PX_FWD_NONE ?
		       " reason=\"the backend is not told the client\"" : "");
	}
	return rs->su.fwd_kind;
}

/* caps_note - the capabilities an EHLO (or HELO: none) announced */
static void caps_note(struct rs *rs, const char *text)
{
	size_t size = 0;

	rs->caps = text != NULL ? px_backend_caps_parse(text, &size) : 0;
	px_backend_caps_note(rs->caps, size);
	forward_prepare(rs, text != NULL ? text : "");
}

/* judge_ehlo - 250: the capabilities; 5xx from an SMTP backend: HELO next */
static enum rs_step_id judge_ehlo(struct rs *rs, int code, const char *text)
{
	if (code == 250) {
		caps_note(rs, text);
		return S_NEXT;
	}
	if (code / 100 == 5 && !rs->lmtp) {
		rs->su.ehlo_refused = 1;
		return S_NEXT;
	}
	rs_fail(rs, 451, "4.4.1", "backend refused EHLO");
	return S_FAIL;
}

/* judge_ehlo_again - EHLO after STARTTLS or XCLIENT: 250 or the end */
static enum rs_step_id judge_ehlo_again(struct rs *rs, int code, const char *text)
{
	if (code == 250) {
		caps_note(rs, text);
		return S_NEXT;
	}
	rs_fail(rs, 451, "4.4.1", "backend refused EHLO");
	return S_FAIL;
}

/* applies_helo - only when EHLO was refused */
static int applies_helo(struct rs *rs)
{
	return rs->su.ehlo_refused;
}

/* judge_helo - 250: a backend without extensions */
static enum rs_step_id judge_helo(struct rs *rs, int code, const char *text)
{
	if (code == 250) {
		caps_note(rs, NULL);
		return S_NEXT;
	}
	rs_fail(rs, 451, "4.4.1", "backend refused EHLO and HELO");
	return S_FAIL;
}

/* applies_starttls - the transport asks for TLS and the backend offers it;
 * required but not offered fails */
static int applies_starttls(struct rs *rs)
{
	int want = px_relay_tls_wanted(rs->rl, rs->caps);

	if (want < 0)
		rs_fail(rs, 451, "4.7.5", "the backend does not offer STARTTLS");
	return want;
}

/* judge_starttls - 220: the handshake next; a refusal: EHLO again without
 * TLS, unless TLS is required */
static enum rs_step_id judge_starttls(struct rs *rs, int code, const char *text)
{
	rs->su.starttls_sent = 1;
	rs->su.tls_accepted = code == 220;
	if (code == 220 || rs->rl->cfg->transport.backend_tls != PX_BTLS_REQUIRED)
		return S_NEXT;
	rs_fail(rs, 451, "4.7.5", "the backend refused STARTTLS");
	return S_FAIL;
}

/* applies_tls - after STARTTLS's 220 */
static int applies_tls(struct rs *rs)
{
	return rs->su.tls_accepted;
}

/* step_tls - an OpenSSL filter over the connection: the handshake starts */
static int step_tls(struct rs *rs)
{
	struct bufferevent *f = px_relay_tls_wrap(rs->rl, rs->bev);

	if (f == NULL) {
		rs_fail(rs, 451, "4.7.5", "cannot start TLS with the backend");
		return -1;
	}
	rs->bev = f;
	bufferevent_setcb(f, rs_read_cb, rs_write_cb, rs_event_cb, rs);
	rs_set_timeout(rs, T_COMMAND);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	return 0;
}

/* judge_tls_up - the handshake is done */
static enum rs_step_id judge_tls_up(struct rs *rs, int code, const char *text)
{
	px_relay_tls_log(rs->rl, rs->bev);
	return S_NEXT;
}

/* applies_ehlo_again - after STARTTLS, whatever its reply (RFC 3207 4.2) */
static int applies_ehlo_again(struct rs *rs)
{
	return rs->su.starttls_sent;
}

/* applies_xclient - XCLIENT is the way to tell the backend the client */
static int applies_xclient(struct rs *rs)
{
	return forward_decide(rs) == PX_FWD_XCLIENT;
}

/* build_forward - the XCLIENT line forward_prepare built */
static void build_forward(struct rs *rs, char *line, size_t len)
{
	snprintf(line, len, "%s", rs->su.fwd);
}

/* judge_xclient - accepted (Postfix answers with a new 220 greeting;
 * smtp-sink and others with 250, after which EHLO is harmless): EHLO again;
 * a refusal is logged and we go on without */
static enum rs_step_id judge_xclient(struct rs *rs, int code, const char *text)
{
	char q[300];

	rs->su.xclient_ok = code == 220 || code / 100 == 2;
	if (!rs->su.xclient_ok)
		px_log(PX_LOG_WARN, rs->rl->client.sid, "relay xclient refused reply=%d text=%s",
		       code, px_log_quote(q, sizeof(q), text, strlen(text)));
	return S_NEXT;
}

/* applies_ehlo_xclient - after XCLIENT was accepted */
static int applies_ehlo_xclient(struct rs *rs)
{
	return rs->su.xclient_ok;
}

/* applies_xforward - XFORWARD is the way */
static int applies_xforward(struct rs *rs)
{
	return forward_decide(rs) == PX_FWD_XFORWARD;
}

/* rs_insert_xforward - an XFORWARD before every MAIL not yet sent */
static void rs_insert_xforward(struct rs *rs)
{
	struct rs_cmd **pp, **tail, *x;

	for (pp = &rs->head; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->kind != K_MAIL || (*pp)->sent)
			continue;
		rs_enqueue(rs, K_XFWD, rs->su.fwd, NULL, NULL, NULL);
		for (tail = &rs->head; (*tail)->next != NULL; tail = &(*tail)->next)
			;
		x = *tail;                  /* move it from the tail to before this MAIL */
		*tail = NULL;
		x->next = *pp;
		*pp = x;
		pp = &x->next;
	}
}

/* rs_enqueue_xforward - XFORWARD for the MAIL about to be queued */
static void rs_enqueue_xforward(struct rs *rs)
{
	rs_enqueue(rs, K_XFWD, rs->su.fwd, NULL, NULL, NULL);
}

/* step_xforward - nothing goes now: XFORWARD's attributes last one
 * transaction, so one goes before every MAIL (those queued already, and
 * those to come: smtp_mail) */
static int step_xforward(struct rs *rs)
{
	rs_insert_xforward(rs);
	return 0;
}

/* rs_steps - the backend setup, in order (see the header comment) */
static const struct rs_step rs_steps[] = {
	[S_CONNECT] = { "connect", K_CONNECT, NULL, NULL, NULL, step_connect,
			W_CONNECTED, judge_connected, S_GREETING },
	[S_GREETING] = { "greeting", K_GREETING, NULL, NULL, NULL, NULL,
			 W_REPLY, judge_greeting, S_EHLO },
	[S_EHLO] = { "ehlo", K_EHLO, NULL, NULL, build_ehlo, NULL,
		     W_REPLY, judge_ehlo, S_HELO },
	[S_HELO] = { "helo", K_HELO, applies_helo, NULL, build_helo, NULL,
		     W_REPLY, judge_helo, S_STARTTLS },
	[S_STARTTLS] = { "starttls", K_STARTTLS, applies_starttls, "STARTTLS", NULL, NULL,
			 W_REPLY, judge_starttls, S_TLS },
	[S_TLS] = { "tls", K_TLS, applies_tls, NULL, NULL, step_tls,
		    W_CONNECTED, judge_tls_up, S_EHLO_AGAIN },
	[S_EHLO_AGAIN] = { "ehlo-again", K_EHLO, applies_ehlo_again, NULL, build_ehlo, NULL,
			   W_REPLY, judge_ehlo_again, S_XCLIENT },
	[S_XCLIENT] = { "xclient", K_XCLIENT, applies_xclient, NULL, build_forward, NULL,
			W_REPLY, judge_xclient, S_EHLO_XCLIENT },
	[S_EHLO_XCLIENT] = { "ehlo-xclient", K_EHLO, applies_ehlo_xclient, NULL,
			     build_ehlo_client, NULL, W_REPLY, judge_ehlo_again, S_XFORWARD },
	[S_XFORWARD] = { "xforward", K_XFWD, applies_xforward, NULL, NULL, step_xforward,
			 W_NONE, NULL, S_READY },
};

/* rs_step_name - a step's name for log lines */
static const char *rs_step_name(enum rs_step_id id)
{
	return id < S_READY ? rs_steps[id].name : "ready";
}

/* rs_step_kind - the kind of the step under way (LHLO for EHLO to LMTP) */
static enum rs_kind rs_step_kind(const struct rs *rs)
{
	enum rs_kind k = rs_steps[rs->su.step].kind;

	return k == K_EHLO && rs->lmtp ? K_LHLO : k;
}

/* rs_step_run - from step id on: skip the steps that do not apply, start
 * the first that does and return to wait for it; after the last, READY */
static void rs_step_run(struct rs *rs, enum rs_step_id id)
{
	const struct rs_step *st;
	char line[1200];
	int on;

	for (; id < S_READY; id = st->next) {
		st = &rs_steps[id];
		on = st->applies != NULL ? st->applies(rs) : 1;
		if (on < 0)
			return;                     /* it failed the connection */
		if (on == 0)
			continue;
		rs_enter_step(rs, id);
		if (st->start != NULL && st->start(rs) < 0)
			return;
		if (st->cmd != NULL || st->build != NULL) {
			if (st->build != NULL)
				st->build(rs, line, sizeof(line));
			else
				snprintf(line, sizeof(line), "%s", st->cmd);
			rs_write_line(rs, line);
		}
		if (st->wait != W_NONE)
			return;
	}
	rs_enter_state(rs, RS_READY);
	rs_pump(rs);
}

/* rs_step_done - what the step under way waited for came (a reply, or
 * code 0: connected): its judge picks the next step */
static void rs_step_done(struct rs *rs, int code, const char *text)
{
	const struct rs_step *st = &rs_steps[rs->su.step];
	enum rs_step_id next = st->judge(rs, code, text);

	if (next != S_FAIL)
		rs_step_run(rs, next == S_NEXT ? st->next : next);
}

/* rs_body_start - the entry becomes the end-of-data marker and the message
 * streams: raw after "BDAT n LAST", dot-stuffed after DATA's 354 */
static void rs_body_start(struct rs *rs, struct rs_cmd *c, int raw)
{
	c->kind = K_DOT;
	c->expect = rs->lmtp ? rs->rcpt_ok : 1;
	rs->streaming = 1;
	rs->raw = raw;
	rs->body_off = 0;
	rs->at_bol = 1;
	bufferevent_set_timeouts(rs->bev, NULL, NULL);
	rs_set_timeout(rs, T_DATA);
	rs_stream_body(rs);
}

/* rs_bdat_start - "BDAT n LAST" is out: the body follows at once, raw */
static void rs_bdat_start(struct rs *rs, struct rs_cmd *c)
{
	c->bdat = 1;
	rs_body_start(rs, c, 1);
}

/* rs_on_data - 354 turns the entry into the end-of-data marker */
static void rs_on_data(struct rs *rs, struct rs_cmd *c, const struct px_reply *r)
{
	if (r->code != 354) {
		/* the session's transaction ends here, but a refused DATA ends
		 * none at the backend (Postfix would answer the next MAIL "nested
		 * MAIL command"): RSET it now (nothing else is queued: DATA is a
		 * sync point and the session waits for this reply) */
		rs->head = c->next;
		rs->txn_open = 0;
		rs->rcpt_ok = 0;
		rs_reply(rs, c, r);
		cmd_free(c);
		rs_enqueue(rs, K_RSET, "RSET", NULL, NULL, NULL);
		rs_pump(rs);
		return;
	}
	rs->outstanding++;                  /* the reply(ies) to "." */
	rs_body_start(rs, c, 0);
}

/* dot_aggregate - one reply to "." (LMTP: one per recipient) */
static int dot_aggregate(struct rs *rs, struct rs_cmd *c, const struct px_reply *r)
{
	char line[256];

	c->got++;
	if (r->code / 100 == 2 && c->n2++ == 0)
		c->first_ok = *r;
	else if (r->code / 100 == 4 && c->n4++ == 0)
		c->first_bad4 = *r;
	else if (r->code / 100 == 5 && c->n5++ == 0)
		c->first_bad5 = *r;
	if (rs->lmtp)
		px_log(PX_LOG_INFO, rs->rl->client.sid, "lmtp rcpt=%u reply=\"%s\"", c->got,
		       px_reply_summary(r, line, sizeof(line)));
	return c->got >= c->expect;
}

/* dot_verdict - the one reply the client gets */
static void dot_verdict(struct rs_cmd *c, struct px_reply *out)
{
	if (c->n2 == c->got)
		*out = c->first_ok;
	else if (c->n2 == 0 && c->n4 == 0)
		*out = c->first_bad5;
	else if (c->n2 == 0)
		*out = c->first_bad4;
	else
		px_reply_set(out, 451, "4.3.0", "Backend accepted only some recipients; "
			     "try again later for all");
}

/* rs_on_dot - final reply(ies) */
static void rs_on_dot(struct rs *rs, struct rs_cmd *c, const struct px_reply *r)
{
	struct px_reply final;

	if (!dot_aggregate(rs, c, r)) {
		rs->outstanding++;   /* more LMTP replies to come */
		return;
	}
	dot_verdict(c, &final);
	rs->head = c->next;
	rs->txn_open = 0;
	rs->rcpt_ok = 0;
	rs->msg = NULL;
	rs_set_timeout(rs, T_COMMAND);
	rs_reply(rs, c, &final);
	cmd_free(c);
}

/* reply_fits - the reply classes a command can have: DATA 354/4xx/5xx,
 * everything else 2xx/4xx/5xx */
static int reply_fits(enum rs_kind kind, int code)
{
	if (kind == K_DATA)
		return code == 354 || code / 100 == 4 || code / 100 == 5;
	return code / 100 == 2 || code / 100 == 4 || code / 100 == 5;
}

/* rs_early_reply - the end-of-data reply came while the body still streams:
 * stop streaming and judge it. A refusal is the backend's answer; a 2xx
 * before the whole message was sent cannot be acceptance of this message
 * (invariant 1, doc/layering.md), so the client gets 451. The link goes either way: the
 * backend would read the rest of the body as commands. */
static void rs_early_reply(struct rs *rs, struct rs_cmd *c, int code, const char *text)
{
	struct px_reply r;
	char q[300];

	px_log(PX_LOG_WARN, rs->rl->client.sid, "relay early-reply=%d sent=%zu size=%zu text=%s",
	       code, rs->body_off, rs->msg != NULL ? px_message_size(rs->msg) : 0,
	       px_log_quote(q, sizeof(q), text, strlen(text)));
	rs->streaming = 0;
	rs->msg = NULL;
	if (code / 100 == 2 || code / 100 == 3 || code == 421)
		px_reply_set(&r, 451, "4.4.2", "Backend answered before the end of the message; "
			     "try again later");
	else
		px_reply_from_lines(&r, code, text, "0.0");
	rs->head = c->next;
	rs_reply(rs, c, &r);
	cmd_free(c);
	rs_fail(rs, 451, "4.4.2", "backend answered before the end of the message");
}

/* rs_dispatch - a complete reply for the oldest sent command */
static void rs_dispatch(struct rs *rs, int code, const char *text)
{
	struct rs_cmd *c = rs->head;
	struct px_reply r;

	if (c == NULL || !c->sent || rs->outstanding == 0) {
		rs_fail(rs, 451, "4.4.2", "backend sent a reply nobody asked for");
		return;
	}
	rs->outstanding--;
	if (c->kind == K_DOT && rs->streaming) {
		rs_early_reply(rs, c, code, text);
		return;
	}
	if (code == 421) {
		/* the backend ends the session: whatever it accepted on this link
		 * is void (the session learns it from px_relay_in_transaction) */
		char why[160], q[140];

		snprintf(why, sizeof(why), "backend is closing: %s",
			 px_log_quote(q, sizeof(q), text, strlen(text)));
		rs_fail(rs, 451, "4.4.2", why);
		return;
	}
	if (!reply_fits(c->kind, code)) {
		/* e.g. 250 to DATA: the message was never sent, so it must not look
		 * delivered (invariant 1, doc/layering.md); the session state at the backend is
		 * unknown, so the connection goes */
		rs_fail(rs, 451, "4.4.2", "backend gave a reply that does not fit the command");
		return;
	}
	px_reply_from_lines(&r, code, text, c->kind == K_RCPT ? "1.5" : c->kind == K_MAIL ? "1.0" : "0.0");
	switch (c->kind) {
	case K_DATA:
		rs_on_data(rs, c, &r);
		return;
	case K_DOT:
		rs_on_dot(rs, c, &r);
		break;
	case K_QUIT:
		rs->head = c->next;
		cmd_free(c);
		rs_close(rs);
		return;
	default:
		if (c->kind == K_MAIL && code / 100 != 2)
			rs->txn_open = 0;
		if (c->kind == K_RCPT && code / 100 == 2)
			rs->rcpt_ok++;
		rs->head = c->next;
		rs_reply(rs, c, &r);
		cmd_free(c);
	}
	rs_pump(rs);
}

/* rs_on_reply - route a complete reply: to the setup step, or the queue */
static void rs_on_reply(struct rs *rs, int code, const char *text)
{
	char what[32];

	snprintf(what, sizeof(what), "relay reply=%d text=", code);
	rs_debug(rs, what, text);
	if (rs->state == RS_SETUP && rs_steps[rs->su.step].wait == W_REPLY)
		rs_step_done(rs, code, text);
	else if (rs->state == RS_READY)
		rs_dispatch(rs, code, text);
	else if (rs->state == RS_CLOSING)
		rs_destroy(rs);
	else
		rs_fail(rs, 451, "4.4.2", "backend spoke out of turn");
}

/* rs_read_cb - complete replies, each to its state's handler */
static void rs_read_cb(struct bufferevent *bev, void *arg)
{
	struct rs *rs = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	const char *why = NULL;
	char reason[64];
	int rc;

	while ((rc = px_reply_reader_next(&rs->rr, in, RS_LINE_MAX, &why)) == PX_RR_DONE) {
		rs_reply_complete(rs);
		rs_on_reply(rs, rs->rr.code, rs->rr.text);
		if (rs->bev != bev)
			break;    /* failed, closed, or destroyed: stop reading */
	}
	if (rc == PX_RR_BAD && rs->bev == bev) {
		snprintf(reason, sizeof(reason), "%s from backend", why);
		rs_fail(rs, 451, "4.4.2", reason);
	}
	rs_timers(rs);
}

/* stuff_chunk - copy n bytes to out, doubling dots at line starts */
static void stuff_chunk(struct rs *rs, struct evbuffer *out, const char *p, size_t n)
{
	const char *end = p + n, *nl;

	if (rs->raw) {
		evbuffer_add(out, p, n);
		return;
	}
	while (p < end) {
		if (rs->at_bol && *p == '.')
			evbuffer_add(out, ".", 1);
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			evbuffer_add(out, p, (size_t)(end - p));
			rs->at_bol = 0;
			return;
		}
		evbuffer_add(out, p, (size_t)(nl - p + 1));
		rs->at_bol = 1;
		p = nl + 1;
	}
}

/* rs_body_done - the terminator, then wait for the reply */
static void rs_body_done(struct rs *rs)
{
	struct evbuffer *out = bufferevent_get_output(rs->bev);

	if (!rs->at_bol && !rs->raw)
		evbuffer_add(out, "\r\n", 2);
	if (!rs->raw)
		evbuffer_add(out, ".\r\n", 3);
	rs->streaming = 0;
	bufferevent_setwatermark(rs->bev, EV_WRITE, 0, 0);
}

/* rs_stream_body - fill the socket buffer up to RS_OUT_HIGH */
static void rs_stream_body(struct rs *rs)
{
	struct evbuffer *out = bufferevent_get_output(rs->bev);
	char buf[RS_BODY_CHUNK];
	ssize_t n;

	if (!rs->streaming || rs->msg == NULL)
		return;
	while (evbuffer_get_length(out) < RS_OUT_HIGH) {
		n = px_message_read(rs->msg, rs->body_off, buf, sizeof(buf));
		if (n < 0) {
			rs_fail(rs, 451, "4.3.0", "cannot read the spooled message");
			return;
		}
		if (n == 0) {
			rs_body_done(rs);
			return;
		}
		stuff_chunk(rs, out, buf, (size_t)n);
		rs->body_off += (size_t)n;
	}
	bufferevent_setwatermark(rs->bev, EV_WRITE, RS_OUT_HIGH / 4, 0);
}

/* rs_write_cb - output drained below the low watermark */
static void rs_write_cb(struct bufferevent *bev, void *arg)
{
	struct rs *rs = arg;

	if (rs->streaming)
		rs_stream_body(rs);
	rs_timers(rs);
}

static void rs_event(struct rs *rs, struct bufferevent *bev, short what);

/* rs_event_cb - connected, EOF, error, timeout; then the timers */
static void rs_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rs *rs = arg;

	rs_event(rs, bev, what);
	rs_timers(rs);
}

/* rs_deadline_cb - the awaited reply did not complete in time */
static void rs_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rs *rs = arg;
	char why[128];

	rs->deadline_armed = 0;
	if (rs->state == RS_CLOSING) {
		rs_destroy(rs);
		return;
	}
	if (rs->state == RS_SETUP && rs->su.step == S_CONNECT)
		px_backend_addr_failed(rs->rl->cfg);
	rs_timeout_why(rs, 0, why, sizeof(why));
	rs_fail(rs, 451, "4.4.2", why);
	rs_timers(rs);
}

/* rs_keepalive_cb - a transaction is open and the link idle (the client is
 * still sending its message): a NOOP keeps the backend from timing out */
static void rs_keepalive_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rs *rs = arg;

	rs->keepalive_armed = 0;
	if (rs->dead || rs->state != RS_READY || !rs->txn_open || rs->head != NULL)
		return;
	rs_enqueue(rs, K_NOOP, "NOOP", NULL, NULL, NULL);
	rs_pump(rs);
}

/* rs_event - connected (the step waiting for it is done), EOF, error,
 * write timeout */
static void rs_event(struct rs *rs, struct bufferevent *bev, short what)
{
	int connecting = rs->state == RS_SETUP && rs->su.step == S_CONNECT;
	char why[128];

	if (what & BEV_EVENT_CONNECTED) {
		if (rs->state == RS_SETUP && rs_steps[rs->su.step].wait == W_CONNECTED) {
			rs_reply_complete(rs);      /* the next wait gets its own deadline */
			rs_step_done(rs, 0, "");
		}
		return;
	}
	if (rs->state == RS_CLOSING) {
		rs_destroy(rs);
		return;
	}
	if (connecting)
		px_backend_addr_failed(rs->rl->cfg);
	if (what & BEV_EVENT_TIMEOUT) {
		rs_timeout_why(rs, 1, why, sizeof(why));
		rs_fail(rs, 451, "4.4.2", why);
	} else if (what & BEV_EVENT_EOF) {
		rs_fail(rs, 451, "4.4.2", "backend closed the connection");
	} else {
		rs_fail(rs, 451, connecting ? "4.4.1" : "4.4.2",
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
}

/* relay_rs - the state behind a relay */
static struct rs *relay_rs(struct px_relay *rl)
{
	return rl->impl;
}

static void smtp_mail(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		      void *arg)
{
	struct rs *rs = relay_rs(rl);

	if (rs->su.fwd_kind == PX_FWD_XFORWARD && rs->state == RS_READY)
		rs_enqueue_xforward(rs);
	rs_enqueue(rs, K_MAIL, cmd, params, cb, arg);
	rs->txn_open = 1;
	rs_pump(rs);
}

/* smtp_rcpt - only inside a transaction the backend still has */
static void smtp_rcpt(struct px_relay *rl, const char *cmd, const char *params, px_relay_cb cb,
		      void *arg)
{
	struct rs *rs = relay_rs(rl);
	struct px_reply r;

	if (!rs->txn_open) {
		px_reply_set(&r, 451, "4.4.2", "Backend transaction lost; try again later");
		px_relay_defer(rl, cb, arg, &r);
		return;
	}
	rs_enqueue(rs, K_RCPT, cmd, params, cb, arg);
	rs_pump(rs);
}

/* smtp_data - DATA, then the body when 354 comes */
static void smtp_data(struct px_relay *rl, const struct px_message *msg, px_relay_cb cb, void *arg)
{
	struct rs *rs = relay_rs(rl);
	struct px_reply r;
	char bdat[64];

	if (!rs->txn_open || rs->rcpt_ok == 0 || rs->state != RS_READY) {
		px_reply_set(&r, 451, "4.4.2", "Backend transaction lost; try again later");
		px_relay_defer(rl, cb, arg, &r);
		return;
	}
	rs->msg = msg;
	if (rl->bdat && (rs->caps & PX_CAP_CHUNKING)) {
		snprintf(bdat, sizeof(bdat), "BDAT %zu LAST", px_message_size(msg));
		rs_enqueue(rs, K_BDAT, bdat, NULL, cb, arg);
	} else {
		rs_enqueue(rs, K_DATA, "DATA", NULL, cb, arg);
	}
	rl->bdat = 0;
	rs_pump(rs);
}

/* smtp_rset - end the backend's transaction, if it has one */
static void smtp_rset(struct px_relay *rl)
{
	struct rs *rs = relay_rs(rl);

	if (rs->state == RS_IDLE || (!rs->txn_open && rs->head == NULL))
		return;
	rs_enqueue(rs, K_RSET, "RSET", NULL, NULL, NULL);
	rs->txn_open = 0;
	rs->rcpt_ok = 0;
	rs_pump(rs);
}

/* smtp_free - QUIT an idle connection; drop anything else */
static void smtp_free(struct px_relay *rl)
{
	struct rs *rs = relay_rs(rl);
	unsigned ms = rs_tmo_ms(rs, rs_kinds[K_QUIT].tmo);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	rs->detached = 1;
	if (rs->state != RS_READY || rs->head != NULL || rs->streaming) {
		rs_destroy(rs);
		return;
	}
	rs_write_line(rs, "QUIT");
	rs_enter_state(rs, RS_CLOSING);
	bufferevent_set_timeouts(rs->bev, &tv, &tv);
	rs_timers(rs);
}

const struct px_relay_ops px_relay_smtp_ops = {
	smtp_mail, smtp_rcpt, smtp_data, smtp_rset, smtp_free
};

/* px_relay_smtp_init - state for one session; nothing connects yet */
int px_relay_smtp_init(struct px_relay *rl)
{
	struct rs *rs = calloc(1, sizeof(*rs));

	if (rs == NULL)
		return -1;
	rs->rl = rl;
	rs->lmtp = rl->cfg->backend.kind == PX_BACKEND_LMTP;
	rs->deadline = evtimer_new(rl->base, rs_deadline_cb, rs);
	rs->keepalive = evtimer_new(rl->base, rs_keepalive_cb, rs);
	if (rs->deadline == NULL || rs->keepalive == NULL) {
		if (rs->deadline != NULL)
			event_free(rs->deadline);
		if (rs->keepalive != NULL)
			event_free(rs->keepalive);
		free(rs);
		return -1;
	}
	rs_live_add(rs);
	rl->impl = rs;
	rl->ops = &px_relay_smtp_ops;
	return 0;
}

/* px_relay_in_transaction - whether the backend still holds our MAIL */
int px_relay_in_transaction(struct px_relay *rl)
{
	return rl->cfg->backend.kind == PX_BACKEND_MAILDIR || relay_rs(rl)->txn_open;
}
