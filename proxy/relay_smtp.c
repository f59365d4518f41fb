/*
 * NAME
 *	relay_smtp - the backend relay state machine (SMTP and LMTP client)
 * DESCRIPTION
 *	States: IDLE -> CONNECTING -> GREETING -> EHLO -> READY (-> CLOSING).
 *	Commands from the session are queued; in READY the queue is pumped:
 *	all at once when the backend offers PIPELINING (DATA ends a group, as
 *	RFC 2920 says), else one at a time. Replies are matched to the sent
 *	commands in order. DATA's 354 turns the same queue entry into the
 *	end-of-data marker; the message is streamed dot-stuffed with flow
 *	control, then ".", and the final reply (one per accepted recipient for
 *	LMTP) goes back to the session.
 *
 *	Any timeout, EOF, socket error, malformed reply or 421 fails every
 *	queued command with 451 4.4.x and drops the connection; the backend's
 *	transaction is then gone (px_relay_in_transaction says so, and the
 *	session voids the recipients accepted on it); the next transaction
 *	reconnects. px_relay_free on an idle connection sends QUIT first.
 *
 *	Timers are deadlines: a reply must be complete within backend_command
 *	(backend_data after the end of data) of the moment it was awaited, so
 *	a backend trickling continuation lines is dropped; writes must make
 *	progress within the same times. No read timeout runs while the link is
 *	idle: inside a transaction (the client is still sending its message) a
 *	NOOP goes out every half backend_command, at most every minute, so a
 *	long upload does not lose the backend's transaction.
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

enum rs_state { RS_IDLE, RS_CONNECTING, RS_GREETING, RS_EHLO, RS_READY, RS_CLOSING,
		RS_STARTTLS, RS_TLS, RS_XCLIENT };
static const char *const rs_state_names[] = {
	"idle", "connecting", "greeting", "ehlo", "ready", "closing", "starttls", "tls", "xclient"
};

enum rs_kind { K_MAIL, K_RCPT, K_DATA, K_DOT, K_RSET, K_QUIT, K_XFWD, K_BDAT, K_NOOP };

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
	/* setup (relay_setup.c): STARTTLS, then XCLIENT or XFORWARD */
	int tls_done, fwd_done, fwd_kind;
	char xfwd[1200];                 /* the XFORWARD line for this client */
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

/* rs_enter_state - the one place the state changes; logged at debug */
static void rs_enter_state(struct rs *rs, enum rs_state next)
{
	if (px_log_enabled(PX_LOG_DEBUG))
		px_log(PX_LOG_DEBUG, rs->rl->client.sid, "relay state=%s next=%s",
		       rs_state_names[rs->state], rs_state_names[next]);
	rs->state = next;
}

/* rs_set_timeout - the write timeout (output must make progress); replies
 * are covered by the deadline timer (rs_timers), not by a read timeout,
 * so an idle link in a transaction is not an error and a trickling reply is */
static void rs_set_timeout(struct rs *rs, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	bufferevent_set_timeouts(rs->bev, NULL, &tv);
}

/* rs_expecting - whether a reply (or a handshake) is awaited now */
static int rs_expecting(const struct rs *rs)
{
	switch (rs->state) {
	case RS_GREETING: case RS_EHLO: case RS_STARTTLS: case RS_TLS: case RS_XCLIENT:
	case RS_CLOSING:
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
	if (rs->state == RS_CLOSING)
		return RS_QUIT_TIMEOUT * 1000;
	if (rs->state == RS_READY && rs->head != NULL && rs->head->kind == K_DOT)
		return rs->rl->cfg->timeouts.backend_data;
	return rs->rl->cfg->timeouts.backend_command;
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
	rs->tls_done = rs->fwd_done = 0;
	rs->fwd_kind = PX_FWD_NONE;
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
	       PX_LOG_WARN, rs->rl->client.sid, "relay error backend=%s state=%s reason=\"%s\"",
	       rs->rl->cfg->backend.text, rs_state_names[rs->state], why);
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

/* rs_connect - start connecting; failures come back through rs_fail */
static void rs_connect(struct rs *rs)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256];

	rs_enter_state(rs, RS_CONNECTING);
	if (rs_sockaddr(rs, &ss, &len, why, sizeof(why)) < 0) {
		rs_fail(rs, 451, "4.4.1", why);
		return;
	}
	rs->bev = bufferevent_socket_new(rs->rl->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (rs->bev == NULL) {
		rs_fail(rs, 451, "4.3.0", "out of memory");
		return;
	}
	bufferevent_setcb(rs->bev, rs_read_cb, rs_write_cb, rs_event_cb, rs);
	{
		unsigned ms = rs->rl->cfg->timeouts.backend_connect;
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

		bufferevent_set_timeouts(rs->bev, &tv, &tv);
	}
	if (bufferevent_socket_connect(rs->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		px_backend_addr_failed(rs->rl->cfg);
		rs_fail(rs, 451, "4.4.1", "connect failed");
	}
}

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
		rs_connect(rs);
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

/* rs_send_ehlo - EHLO (LHLO) again, after STARTTLS or XCLIENT (then with the
 * client's HELO name: Postfix takes the name of the EHLO after XCLIENT) */
static void rs_send_ehlo(struct rs *rs, const char *name)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "%s %s", rs->lmtp ? "LHLO" : "EHLO",
		 name != NULL && *name ? name : rs->rl->cfg->hostname);
	rs_enter_state(rs, RS_EHLO);
	rs_write_line(rs, cmd);
}

/* rs_insert_xforward - an XFORWARD before every MAIL not yet sent */
static void rs_insert_xforward(struct rs *rs)
{
	struct rs_cmd **pp, **tail, *x;

	for (pp = &rs->head; *pp != NULL; pp = &(*pp)->next) {
		if ((*pp)->kind != K_MAIL || (*pp)->sent)
			continue;
		rs_enqueue(rs, K_XFWD, rs->xfwd, NULL, NULL, NULL);
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
	rs_enqueue(rs, K_XFWD, rs->xfwd, NULL, NULL, NULL);
}

/* rs_forward - XCLIENT now, or XFORWARD before each MAIL, or nothing; 1 if XCLIENT sent */
static int rs_forward(struct rs *rs, const char *ehlo)
{
	static const char *const names[] = { "none", "xclient", "xforward" };
	char line[sizeof(rs->xfwd)];

	rs->fwd_done = 1;
	rs->fwd_kind = px_relay_forward_kind(rs->rl, rs->caps);
	if (rs->fwd_kind != PX_FWD_NONE &&
	    px_relay_forward_line(rs->rl, rs->fwd_kind, ehlo, line, sizeof(line)) < 0)
		rs->fwd_kind = PX_FWD_NONE;
	px_log(rs->fwd_kind == PX_FWD_NONE ? PX_LOG_WARN : PX_LOG_INFO, rs->rl->client.sid,
	       "relay forward=%s client=%s%s", names[rs->fwd_kind], rs->rl->client.addr,
	       rs->fwd_kind == PX_FWD_NONE ? " reason=\"the backend is not told the client\"" : "");
	if (rs->fwd_kind == PX_FWD_XCLIENT) {
		rs_write_line(rs, line);
		rs_enter_state(rs, RS_XCLIENT);
		return 1;
	}
	if (rs->fwd_kind == PX_FWD_XFORWARD) {
		snprintf(rs->xfwd, sizeof(rs->xfwd), "%s", line);
		rs_insert_xforward(rs);
	}
	return 0;
}

/* rs_setup - after an EHLO: STARTTLS, then XCLIENT/XFORWARD; 1 if a step is under way */
static int rs_setup(struct rs *rs, const char *ehlo)
{
	int want;

	if (!rs->tls_done) {
		want = px_relay_tls_wanted(rs->rl, rs->caps);
		rs->tls_done = want == 0;
		if (want < 0)
			rs_fail(rs, 451, "4.7.5", "the backend does not offer STARTTLS");
		if (want > 0) {
			rs_write_line(rs, "STARTTLS");
			rs_enter_state(rs, RS_STARTTLS);
		}
		if (want != 0)
			return 1;
	}
	return rs->fwd_done ? 0 : rs_forward(rs, ehlo);
}

/* rs_on_starttls - 220: put TLS in; anything else: EHLO again without it */
static void rs_on_starttls(struct rs *rs, int code)
{
	struct bufferevent *f;

	rs->tls_done = 1;
	if (code != 220) {
		if (rs->rl->cfg->transport.backend_tls == PX_BTLS_REQUIRED)
			rs_fail(rs, 451, "4.7.5", "the backend refused STARTTLS");
		else
			rs_send_ehlo(rs, NULL);
		return;
	}
	if ((f = px_relay_tls_wrap(rs->rl, rs->bev)) == NULL) {
		rs_fail(rs, 451, "4.7.5", "cannot start TLS with the backend");
		return;
	}
	rs->bev = f;
	bufferevent_setcb(f, rs_read_cb, rs_write_cb, rs_event_cb, rs);
	rs_enter_state(rs, RS_TLS);
	rs_set_timeout(rs, rs->rl->cfg->timeouts.backend_command);
	bufferevent_enable(f, EV_READ | EV_WRITE);
}

/* rs_on_tls_up - the handshake with the backend is done */
static void rs_on_tls_up(struct rs *rs)
{
	px_relay_tls_log(rs->rl, rs->bev);
	rs_send_ehlo(rs, NULL);
}

/* rs_on_xclient - accepted: EHLO again (Postfix answers with a new 220
 * greeting; smtp-sink and others with 250, after which EHLO is harmless); a
 * refusal is logged and we go on without */
static void rs_on_xclient(struct rs *rs, int code, const char *text)
{
	char q[300];

	if (code == 220 || code / 100 == 2) {
		rs_send_ehlo(rs, rs->rl->client.helo);
		return;
	}
	px_log(PX_LOG_WARN, rs->rl->client.sid, "relay xclient refused reply=%d text=%s", code,
	       px_log_quote(q, sizeof(q), text, strlen(text)));
	rs_enter_state(rs, RS_READY);
	rs_pump(rs);
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
	rs_set_timeout(rs, rs->rl->cfg->timeouts.backend_data);
	rs_stream_body(rs);
}

/* rs_bdat_start - "BDAT n LAST" is out: the body follows at once, raw */
static void rs_bdat_start(struct rs *rs, struct rs_cmd *c)
{
	rs_body_start(rs, c, 1);
}

/* rs_on_greeting - 220, then EHLO or LHLO */
static void rs_on_greeting(struct rs *rs, int code, const char *text)
{
	char cmd[300];

	if (code != 220) {
		rs_fail(rs, 451, "4.4.1", "backend refused the session");
		return;
	}
	snprintf(cmd, sizeof(cmd), "%s %s", rs->lmtp ? "LHLO" : "EHLO", rs->rl->cfg->hostname);
	rs_enter_state(rs, RS_EHLO);
	rs_write_line(rs, cmd);
}

/* rs_on_ehlo - learn the capabilities, start pumping */
static void rs_on_ehlo(struct rs *rs, int code, const char *text)
{
	size_t size;

	if (code != 250) {
		rs_fail(rs, 451, "4.4.1", "backend refused EHLO");
		return;
	}
	rs->caps = px_backend_caps_parse(text, &size);
	px_backend_caps_note(rs->caps, size);
	if (rs_setup(rs, text))
		return;
	rs_enter_state(rs, RS_READY);
	rs_pump(rs);
}

/* rs_on_data - 354 turns the entry into the end-of-data marker */
static void rs_on_data(struct rs *rs, struct rs_cmd *c, const struct px_reply *r)
{
	if (r->code != 354) {
		rs->head = c->next;
		rs->txn_open = 0;
		rs->rcpt_ok = 0;
		rs_reply(rs, c, r);
		cmd_free(c);
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
	rs_set_timeout(rs, rs->rl->cfg->timeouts.backend_command);
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

/* rs_on_reply - route a complete reply by state */
static void rs_on_reply(struct rs *rs, int code, const char *text)
{
	char what[32];

	snprintf(what, sizeof(what), "relay reply=%d text=", code);
	rs_debug(rs, what, text);
	switch (rs->state) {
	case RS_GREETING:
		rs_on_greeting(rs, code, text);
		break;
	case RS_EHLO:
		rs_on_ehlo(rs, code, text);
		break;
	case RS_READY:
		rs_dispatch(rs, code, text);
		break;
	case RS_CLOSING:
		rs_destroy(rs);
		break;
	case RS_STARTTLS:
		rs_on_starttls(rs, code);
		break;
	case RS_XCLIENT:
		rs_on_xclient(rs, code, text);
		break;
	default:
		rs_fail(rs, 451, "4.4.2", "backend spoke out of turn");
	}
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
	char why[96];

	rs->deadline_armed = 0;
	if (rs->state == RS_CLOSING) {
		rs_destroy(rs);
		return;
	}
	snprintf(why, sizeof(why), "backend timed out (no complete reply within %u ms)",
		 rs_deadline_ms(rs));
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

/* rs_event - connected, EOF, error, timeout */
static void rs_event(struct rs *rs, struct bufferevent *bev, short what)
{
	int one = 1;

	if ((what & BEV_EVENT_CONNECTED) && rs->state == RS_TLS) {
		rs_on_tls_up(rs);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rs_enter_state(rs, RS_GREETING);
		rs_set_timeout(rs, rs->rl->cfg->timeouts.backend_command);
		bufferevent_enable(bev, EV_READ | EV_WRITE);
		return;
	}
	if (rs->state == RS_CLOSING) {
		rs_destroy(rs);
		return;
	}
	if (rs->state == RS_CONNECTING)
		px_backend_addr_failed(rs->rl->cfg);
	if (what & BEV_EVENT_TIMEOUT)
		rs_fail(rs, 451, "4.4.2", rs->state == RS_CONNECTING ? "connection timed out" :
			"backend timed out");
	else if (what & BEV_EVENT_EOF)
		rs_fail(rs, 451, "4.4.2", "backend closed the connection");
	else
		rs_fail(rs, 451, rs->state == RS_CONNECTING ? "4.4.1" : "4.4.2",
			evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
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

	if (rs->fwd_kind == PX_FWD_XFORWARD && rs->state == RS_READY)
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
	struct timeval tv = { RS_QUIT_TIMEOUT, 0 };

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
