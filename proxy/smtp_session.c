/*
 * NAME
 *	smtp_session - one client's SMTP session: I/O, states, replies, lifetime
 * DESCRIPTION
 *	The session is one state machine (smtp_states.c, the states listed in
 *	smtp_session_int.h): whatever input arrives goes to the handler of
 *	the state it is in (session_process), command lines (COMMAND, AUTH)
 *	are taken here and handed to the command table (smtp_commands.c),
 *	message text to smtp_data.c and smtp_bdat.c. While it waits for a
 *	chain stage or the relay it is in WAIT: reading stops (which also
 *	stops the read timeout and bounds what a client can pipeline), and
 *	when the answer comes the buffered input is processed in order, so
 *	pipelined commands are answered in order.
 *
 *	Every wait has its deadline, set from the state (smtp_states.c).
 *	Output is bounded: past PX_OUTPUT_HIGH pending bytes no more input is
 *	processed (so a client that pipelines and never reads stops being
 *	served, and is closed at its write deadline); this hold pauses the
 *	state it is in, it is not a state of its own.
 *
 *	End of input (TCP FIN, TLS close_notify) is not the end of the work:
 *	what was already received (commands, a complete message) is processed
 *	and relayed, and the replies are written while the socket takes them;
 *	then the session closes.
 *
 *	Ending: px_session_close() flushes the last reply (and our TLS
 *	close_notify), then closes; whatever is still unflushed after
 *	PX_CLOSE_LINGER is dropped, so every session ends and frees its fd and
 *	its slot. The session's memory lives on until a relay call in flight
 *	has answered (the relay borrows the session's message), then it is
 *	freed.
 * DIAGNOSTICS
 *	"SID connect", "SID disconnect reason=...", state transitions at debug.
 */
#include "autoconfig.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "filters/spool.h"
#include "policy/config.h"
#include "server.h"
#include "smtp_session.h"
#include "smtp_chain.h"
#include "smtp_session_int.h"

#define PX_INPUT_HIGH (256 * 1024)   /* stop reading from a client past this */
#define PX_OUTPUT_HIGH (64 * 1024)   /* stop processing input while more is unsent */
#define PX_OUTPUT_MAX (1024 * 1024)  /* a session whose unsent output passes this goes */
#define PX_CLOSE_LINGER 5000         /* ms a closing session may take to flush */

static void session_read_cb(struct bufferevent *bev, void *arg);
static void session_write_cb(struct bufferevent *bev, void *arg);
static void session_event_cb(struct bufferevent *bev, short what, void *arg);
static void session_process(struct px_session *s);

/* px_now_ms - monotonic milliseconds */
uint64_t px_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* px_session_send - queue a reply for the client */
void px_session_send(struct px_session *s, const struct px_reply *r)
{
	char line[256];

	if (s->bev == NULL)
		return;
	if (px_log_enabled(PX_LOG_DEBUG))
		px_log(PX_LOG_DEBUG, s->sid, "reply=\"%s\"", px_reply_summary(r, line, sizeof(line)));
	px_session_write(s, r->wire, r->len);
}

/* session_output_len - reply bytes not yet on the wire (below a TLS filter too) */
static size_t session_output_len(struct px_session *s)
{
	struct bufferevent *u;
	size_t n;

	if (s->bev == NULL)
		return 0;
	n = evbuffer_get_length(bufferevent_get_output(s->bev));
	if ((u = bufferevent_get_underlying(s->bev)) != NULL)
		n += evbuffer_get_length(bufferevent_get_output(u));
	return n;
}

/* px_session_write - raw reply bytes; a client that lets PX_OUTPUT_MAX pile
 * up is dropped (input stops at PX_OUTPUT_HIGH, so only replies that were
 * already on their way can get here) */
void px_session_write(struct px_session *s, const char *p, size_t n)
{
	if (s->bev == NULL)
		return;
	if (s->output_overflow)
		return;
	if (session_output_len(s) + n > PX_OUTPUT_MAX) {
		px_log(PX_LOG_WARN, s->sid, "output overflow pending=%zu client=%s",
		       session_output_len(s), s->client_addr);
		s->output_overflow = 1;
		px_session_close(s, "output-overflow");
		return;
	}
	bufferevent_write(s->bev, p, n);
}

/* px_session_reply - a one-line reply */
void px_session_reply(struct px_session *s, int code, const char *esc, const char *fmt, ...)
{
	struct px_reply r;
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	px_reply_set(&r, code, esc, "%s", text);
	px_session_send(s, &r);
}

/* px_session_error - a reply for a client mistake; too many end the session */
void px_session_error(struct px_session *s, int code, const char *esc, const char *fmt, ...)
{
	struct px_reply r;
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (++s->errors > s->cfg->limits.errors_max) {
		px_session_reply(s, 421, "4.7.0", "%s Error: too many errors", s->cfg->hostname);
		px_session_close(s, "too-many-errors");
		return;
	}
	px_reply_set(&r, code, esc, "%s", text);
	px_session_send(s, &r);
}

static void session_linger_now(struct px_session *s);

/* px_session_set_timeout - idle limit for reading and writing (DATA, BDAT
 * chunks, the PROXY header); every wait has a deadline on top */
void px_session_set_timeout(struct px_session *s, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (s->bev != NULL)
		bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* px_session_relay - the relay, created on first use */
struct px_relay *px_session_relay(struct px_session *s)
{
	struct px_relay_client client;

	memset(&client, 0, sizeof(client));
	client.sid = s->sid;
	client.addr = s->client_addr;
	client.port = s->client_port;
	client.helo = s->helo;
	client.name = s->client_name;
	client.proto = s->proto;
	client.login = s->login;
	client.dest_addr = s->server_addr;
	client.dest_port = s->server_port;
	client.tls = s->tls_ctx;

	snprintf(s->proto, sizeof(s->proto), "%s", s->esmtp ? "ESMTP" : "SMTP");
	if (s->relay == NULL)
		s->relay = px_relay_new(s->base, s->cfg, px_server_pool(s->srv), &client);
	return s->relay;
}

/* px_session_txn_reset - forget the transaction (the backend's is ended by the caller) */
void px_session_txn_reset(struct px_session *s)
{
	struct px_smtp_txn *t = &s->txn;
	size_t i;

	/* the plugins' view first (their on_reset, and the txn lets go of the
	 * spool), then what the session owns */
	if (s->ptx != NULL)
		px_txn_reset(s->ptx);
	for (i = 0; i < t->nrcpts; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	px_spool_free(t->spool);
	free(t->received);
	memset(t, 0, sizeof(*t));
	s->relay_lost = 0;
	px_outgoing_free(&s->outgoing);
}

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct px_session *live;        /* every session not yet freed */

/* live_add - track a session until it is freed */
static void live_add(struct px_session *s)
{
	pthread_mutex_lock(&live_lock);
	s->live_next = live;
	if (live != NULL)
		live->live_prev = s;
	live = s;
	pthread_mutex_unlock(&live_lock);
}

/* live_del - a session is being freed */
static void live_del(struct px_session *s)
{
	pthread_mutex_lock(&live_lock);
	if (s->live_prev != NULL)
		s->live_prev->live_next = s->live_next;
	else
		live = s->live_next;
	if (s->live_next != NULL)
		s->live_next->live_prev = s->live_prev;
	pthread_mutex_unlock(&live_lock);
}

/* session_free - the last step */
static void session_free(struct px_session *s)
{
	live_del(s);
	px_session_txn_reset(s);
	px_relay_free(s->relay);
	if (s->session_timer)
		event_free(s->session_timer);
	if (s->deadline)
		event_free(s->deadline);
	if (s->linger)
		event_free(s->linger);
	if (s->greet_timer)
		event_free(s->greet_timer);
	px_pregreet_free(s);
	free(s->auth_resp);
	free(s->line);
	px_session_chain_close(s);
	px_server_conn_closed(s->srv, (struct sockaddr *)&s->count_sa);
	px_config_unref(s->cfg);
	free(s);
}

static void session_try_free(struct px_session *s);

/* session_drain_retry - from the loop: the socket side drained */
static void session_drain_retry(evutil_socket_t fd, short what, void *arg)
{
	struct px_session *s = arg;

	s->drain_scheduled = 0;
	if (s->state == PX_ST_CLOSING)
		session_try_free(s);
	else if (s->output_wait)
		session_process(s);
}

/* session_drained_cb - a TLS filter's socket-side output changed */
static void session_drained_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			       void *arg)
{
	struct px_session *s = arg;
	struct timeval now = { 0, 0 };

	if (evbuffer_get_length(buf) > 0 || s->drain_scheduled)
		return;
	s->drain_scheduled = 1;
	if (event_base_once(s->base, -1, EV_TIMEOUT, session_drain_retry, s, &now) < 0)
		s->drain_scheduled = 0;
}

/* session_unflushed - reply bytes not yet written (below a TLS filter too) */
static int session_unflushed(struct px_session *s)
{
	struct bufferevent *u;

	if (s->bev == NULL)
		return 0;
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return 1;
	u = bufferevent_get_underlying(s->bev);
	return u != NULL && evbuffer_get_length(bufferevent_get_output(u)) > 0;
}

/* session_watch_drain - under TLS, be called back once the socket side
 * has drained: the filter's write callback fires when bytes leave the
 * filter, not when they leave the socket below it, and our close_notify
 * (SSL_shutdown) is written below the filter only; so wait for the
 * socket side's output buffer itself to empty (session_drained_cb) */
static void session_watch_drain(struct px_session *s)
{
	struct bufferevent *u;

	if (s->bev == NULL || s->drain_cb != NULL ||
	    (u = bufferevent_get_underlying(s->bev)) == NULL ||
	    evbuffer_get_length(bufferevent_get_output(u)) == 0)
		return;
	s->drain_cb = evbuffer_add_cb(bufferevent_get_output(u), session_drained_cb, s);
}

/* session_tls_shutdown - our close_notify, once the replies went through TLS;
 * 1 if it was queued now (then wait for it to drain) */
static int session_tls_shutdown(struct px_session *s)
{
	SSL *ssl;

	if (s->tls_shut || !s->tls || s->bev == NULL || s->output_overflow ||
	    (ssl = bufferevent_openssl_get_ssl(s->bev)) == NULL)
		return 0;
	s->tls_shut = 1;
	if (SSL_shutdown(ssl) < 0)
		return 0;
	return bufferevent_get_underlying(s->bev) != NULL &&
	       evbuffer_get_length(bufferevent_get_output(bufferevent_get_underlying(s->bev))) > 0;
}

/* session_drop_bev - free the bufferevent (and a TLS filter's socket side) */
static void session_drop_bev(struct px_session *s)
{
	struct bufferevent *u = bufferevent_get_underlying(s->bev);

	if (u != NULL && s->drain_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(u), s->drain_cb);
	s->drain_cb = NULL;
	bufferevent_free(s->bev);
	s->bev = NULL;
}

/* session_free_cb - from the loop: nobody holds the session any more */
static void session_free_cb(evutil_socket_t fd, short what, void *arg)
{
	session_free(arg);
}

/* session_try_free - free once the reply (and close_notify) is flushed and
 * no relay or chain call is out; the free itself runs on the next loop
 * turn, so no caller ever holds a freed session */
static void session_try_free(struct px_session *s)
{
	struct timeval now = { 0, 0 };

	if (s->free_scheduled)
		return;
	if (!s->output_overflow && (session_unflushed(s) || session_tls_shutdown(s))) {
		session_watch_drain(s);          /* replies or close_notify still below TLS */
		return;
	}
	if (s->bev != NULL)
		session_drop_bev(s);
	if (s->in_flight || s->drain_scheduled)
		return;
	s->free_scheduled = 1;
	if (event_base_once(s->base, -1, EV_TIMEOUT, session_free_cb, s, &now) < 0)
		session_free(s);
}

/* session_linger_now - stop waiting for the client to read: drop, free */
static void session_linger_now(struct px_session *s)
{
	s->output_overflow = 1;
	if (s->bev != NULL)
		session_drop_bev(s);
	session_try_free(s);
}

/* session_linger_cb - a closing session took too long to flush */
static void session_linger_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_session *s = arg;

	if (s->bev != NULL)
		px_log(PX_LOG_INFO, s->sid, "close unflushed=%zu reason=linger-timeout",
		       session_output_len(s));
	session_linger_now(s);
}

/* px_session_gone - whether the caller must stop touching the session */
int px_session_gone(struct px_session *s)
{
	return s->state == PX_ST_CLOSING;
}

/* px_session_close - CLOSING: stop reading; flush; free when nothing is in flight */
void px_session_close(struct px_session *s, const char *reason)
{
	unsigned ms = s->cfg->timeouts.command < PX_CLOSE_LINGER ? s->cfg->timeouts.command :
		      PX_CLOSE_LINGER;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (s->state == PX_ST_CLOSING)
		return;
	px_log(PX_LOG_INFO, s->sid, "disconnect reason=%s messages=%u errors=%u", reason,
	       s->messages, s->errors);
	px_enter_state(s, PX_ST_CLOSING);
	if (s->linger != NULL)
		evtimer_add(s->linger, &tv);
	session_try_free(s);
}

/* px_session_abort - close a client no reply can reach (a stalled
 * handshake, a client that does not read): drop what is unsent */
void px_session_abort(struct px_session *s, const char *reason)
{
	px_session_close(s, reason);
	session_linger_now(s);
}

/* px_session_park - WAIT for a chain stage, the relay or an AUTH check,
 * which holds the session until it answers */
void px_session_park(struct px_session *s)
{
	s->in_flight = 1;
	px_enter_state(s, PX_ST_WAIT);        /* our turn: the client is not late */
}

/* px_session_wait_done - the call answered: from WAIT back to commands
 * (each wait ends with a reply, so a command is next); a continuation
 * may have moved on already (closed, or waits again) */
void px_session_wait_done(struct px_session *s)
{
	s->in_flight = 0;
	if (s->state == PX_ST_WAIT)
		px_enter_state(s, PX_ST_COMMAND);
}

/* px_session_unpark - the call answered: free, or go on with buffered input */
void px_session_unpark(struct px_session *s)
{
	px_session_wait_done(s);
	if (s->state == PX_ST_CLOSING || s->bev == NULL) {
		session_try_free(s);
		return;
	}
	session_process(s);
}

/* session_line - take one command line out of the input; 1 if one was taken */
static int session_line(struct px_session *s, struct evbuffer *in, char *buf, size_t bufsize)
{
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	size_t len;

	if (eol.pos < 0) {
		if (evbuffer_get_length(in) >= bufsize) {   /* too long already */
			evbuffer_drain(in, evbuffer_get_length(in));
			if (!s->discard_line)
				px_session_error(s, 500, "5.5.2", "Error: command line too long");
			s->discard_line = 1;
		}
		return 0;
	}
	len = (size_t)eol.pos + 1;
	if (s->discard_line || len >= bufsize) {
		evbuffer_drain(in, len);
		if (!s->discard_line)
			px_session_error(s, 500, "5.5.2", "Error: command line too long");
		s->discard_line = 0;
		return 0;
	}
	evbuffer_remove(in, buf, len);
	buf[--len] = '\0';
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	if (memchr(buf, '\0', len) != NULL) {
		px_session_error(s, 500, "5.5.2", "Error: NUL byte in command");
		buf[0] = '\0';
		return 0;
	}
	return 1;
}

/* session_lines - one line of input to handle(); 1 to go on (a line was
 * taken or dropped), 0 when no whole line is buffered */
static int session_lines(struct px_session *s, void (*handle)(struct px_session *, char *))
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t max = s->cfg->limits.command_line_max;
	char *buf;
	int taken;

	if (evbuffer_get_length(in) == 0)
		return 0;
	/* the session's own buffer, not one malloc per line (a flood of short
	 * commands churned the allocator); a nested call (a handler that
	 * resumes input) gets a buffer of its own */
	if (s->line == NULL)
		s->line = malloc(max + 1);
	buf = s->line_busy ? malloc(max + 1) : s->line;
	if (buf == NULL)
		return 0;
	s->line_busy += buf == s->line;
	if ((taken = session_line(s, in, buf, max + 1)) != 0) {
		px_deadline_met(s);                  /* the next line gets its own */
		handle(s, buf);
	}
	if (buf == s->line)
		s->line_busy--;
	else
		free(buf);
	/* after handle() the input may be another buffer (STARTTLS): not read */
	return taken || evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF).pos >= 0;
}

/* session_dispatch - a command line (AUTH too: the table masks its
 * arguments in the debug log), unless it breaks the pipelining rules */
static void session_dispatch(struct px_session *s, char *line)
{
	if (px_guard_pipelining(s, line) < 0)
		return;
	px_session_command(s, line);
}

/* px_session_command_input - COMMAND's handler: command lines */
int px_session_command_input(struct px_session *s)
{
	return session_lines(s, session_dispatch);
}

/* px_session_auth_input - AUTH's handler: continuation lines (credentials:
 * never logged, never checked against pipelining) */
int px_session_auth_input(struct px_session *s)
{
	return session_lines(s, px_session_auth_line);
}

/* session_output_full - too much unsent output: hold (process no more
 * input) until it drains (the write callback, or the TLS socket side's
 * drain, resumes), within the write deadline */
static int session_output_full(struct px_session *s)
{
	if (session_output_len(s) <= PX_OUTPUT_HIGH) {
		if (s->output_wait) {
			s->output_wait = 0;
			px_state_reading(s);
		}
		return 0;
	}
	if (!s->output_wait) {
		s->output_wait = 1;
		px_state_reading(s);
		session_watch_drain(s);
	}
	return 1;
}

/* session_input_done - nothing more to process: at end of input, close */
static void session_input_done(struct px_session *s)
{
	if (!s->peer_eof || !px_state_reads(s) || s->output_wait)
		return;
	if (s->state == PX_ST_DATA || s->state == PX_ST_BDAT_CHUNK)
		px_log(PX_LOG_INFO, s->sid, "message incomplete at end of input size=%zu",
		       s->txn.reader.size);
	px_session_close(s, "client-eof");
}

/* session_process - buffered input to the state's handler until it runs
 * out or the state reads no more; then the deadline of the next wait */
static void session_process(struct px_session *s)
{
	while (s->bev != NULL && px_state_reads(s) && !session_output_full(s))
		if (!px_state_input(s))
			break;
	px_state_deadline(s);
	session_input_done(s);
}

/* px_session_resume - go on with buffered input after a state change
 * that came from outside the input (a TLS handshake done) */
void px_session_resume(struct px_session *s)
{
	if (s->bev != NULL)
		session_process(s);
}

/* session_read_cb - input arrived */
static void session_read_cb(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

/* session_write_cb - output drained: finish a close, or lift the hold */
static void session_write_cb(struct bufferevent *bev, void *arg)
{
	struct px_session *s = arg;

	if (s->state == PX_ST_CLOSING)
		session_try_free(s);
	else if (s->output_wait)
		session_process(s);
}

/* session_eof - the client finished sending (FIN, or TLS close_notify):
 * process what it sent, write the replies while the socket takes them */
static void session_eof(struct px_session *s)
{
	px_log(PX_LOG_DEBUG, s->sid, "client end-of-input buffered=%zu",
	       evbuffer_get_length(bufferevent_get_input(s->bev)));
	s->peer_eof = 1;
	px_state_reading(s);
	bufferevent_enable(s->bev, EV_WRITE);
	session_process(s);
}

/* session_event_cb - EOF, error, timeout, a TLS handshake done */
static void session_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct px_session *s = arg;
	int handshake = px_session_tls_pending(s);

	if (what & BEV_EVENT_CONNECTED) {
		px_session_tls_up(s);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (handshake || (what & BEV_EVENT_WRITING))) {
		/* a stalled handshake, or a client that does not read */
		px_session_abort(s, handshake ? "tls-handshake-timeout" : "write-timeout");
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		px_session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->hostname);
		px_session_close(s, "timeout");
		return;
	}
	if ((what & BEV_EVENT_EOF) && px_state_dialogue(s) && !handshake && !s->peer_eof) {
		session_eof(s);
		return;
	}
	session_drop_bev(s);        /* nothing more can be written */
	if (s->state == PX_ST_CLOSING) {
		session_try_free(s);
		return;
	}
	if (handshake || ((what & BEV_EVENT_ERROR) && s->tls))
		px_session_tls_failed(s);
	px_session_close(s, (what & BEV_EVENT_EOF) ? "client-eof" : "client-error");
}

/* session_time_limit - the whole session took too long */
static void session_time_limit(evutil_socket_t fd, short what, void *arg)
{
	struct px_session *s = arg;

	px_session_reply(s, 421, "4.4.2", "%s Error: session time limit exceeded",
			 s->cfg->hostname);
	px_session_close(s, "session-time-limit");
}

/* session_new_id - 16 hex digits, random */
static void session_new_id(char out[17])
{
	uint64_t id;

	evutil_secure_rng_get_bytes(&id, sizeof(id));
	snprintf(out, 17, "%016llx", (unsigned long long)id);
}


/* session_timers - the idle timeout and the whole-session limit */
static void session_timers(struct px_session *s)
{
	struct timeval tv = { s->cfg->timeouts.session / 1000,
			      (s->cfg->timeouts.session % 1000) * 1000 };

	px_session_set_timeout(s, s->cfg->timeouts.command);
	s->deadline = evtimer_new(s->base, px_deadline_expired, s);
	s->linger = evtimer_new(s->base, session_linger_cb, s);
	s->session_timer = evtimer_new(s->base, session_time_limit, s);
	if (s->session_timer != NULL)
		evtimer_add(s->session_timer, &tv);
}

/* px_session_start - greet and go */
void px_session_start(struct px_server *srv, struct event_base *base, evutil_socket_t fd,
		      const struct sockaddr *sa, socklen_t salen, const char *listen_addr)
{
	struct px_session *s;
	struct px_config *cfg;
	struct px_tls *tls;
	const struct px_listener *l;
	int one = 1;

	/* one reference: the generation with its TLS contexts and this listener */
	if ((cfg = px_server_generation(srv, listen_addr, &tls, &l)) == NULL) {
		px_server_refuse(srv, fd, sa, "this listener is closed");
		return;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL ||
	    (s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(s);
		evutil_closesocket(fd);
		px_config_unref(cfg);
		px_server_conn_closed(srv, sa);
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	session_new_id(s->sid);
	live_add(s);
	s->srv = srv;
	s->base = base;
	s->cfg = cfg;
	s->tls_ctx = tls;
	s->listener = l;
	memcpy(&s->count_sa, sa, salen < sizeof(s->count_sa) ? salen : sizeof(s->count_sa));
	px_session_set_client(s, sa);
	px_session_set_server(s, fd);
	px_log(PX_LOG_INFO, s->sid, "connect client=%s port=%u trusted=%s listener=%s "
	       "generation=%lu", s->client_addr, s->client_port, s->trusted ? "yes" : "no",
	       s->listener ? s->listener->name : listen_addr, s->cfg->generation);
	px_session_set_callbacks(s);
	session_timers(s);
	if (px_session_chain_open(s) < 0) {
		px_session_reply(s, 421, "4.3.0", "%s Error: out of memory", s->cfg->hostname);
		px_session_close(s, "out-of-memory");
		return;
	}
	px_session_open(s);
}

/* px_session_set_callbacks - ours, on s->bev (again after a TLS wrap) */
void px_session_set_callbacks(struct px_session *s)
{
	bufferevent_setcb(s->bev, session_read_cb, session_write_cb, session_event_cb, s);
	bufferevent_setwatermark(s->bev, EV_READ, 0, PX_INPUT_HIGH);
}

/* px_session_free_all - at exit, after the event loops stopped: sessions in flight */
void px_session_free_all(void)
{
	struct px_session *s;

	while ((s = live) != NULL) {
		if (s->bev != NULL)
			session_drop_bev(s);
		s->in_flight = 0;
		s->drain_scheduled = 0;
		session_free(s);
	}
}
