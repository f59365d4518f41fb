/*
 * NAME
 *	smtp_states - the session's state machine: states, deadlines, reading
 * DESCRIPTION
 *	px_states[] has one row per state (smtp_session_int.h lists them and
 *	says why): its name in the log, its input handler, its deadline kind,
 *	and whether it is part of the SMTP dialogue (then, at the client's end
 *	of input, what it sent is still processed and answered). A state
 *	without an input handler reads nothing. px_enter_state() is the only
 *	way into a state; the session's input loop (smtp_session.c) calls the
 *	handler of whatever state it is in, until that handler wants more
 *	input or the state reads nothing.
 *
 *	px_deadlines[] has one row per deadline kind: its close reason, the
 *	timeout that applies, whether a 421 can still reach the client, and
 *	whether the wait may be given more time. Deadlines, not idleness: a
 *	deadline runs from the moment the session began to wait; a deadline
 *	of the same kind already running is kept, so input trickled a byte a
 *	second does not extend it. The one extension is message text: each
 *	timeouts.data period must bring PX_DATA_RATE_MIN bytes a second
 *	(Postfix's smtpd_min_data_rate); a message that does gets another
 *	period. (The bufferevent's idle timeouts, px_session_set_timeout, are
 *	a second line behind these.)
 * DIAGNOSTICS
 *	"SID state=OLD next=NEW", "SID envelope=OLD next=NEW" at debug;
 *	"SID disconnect reason=KIND-deadline" when a deadline passes.
 */
#include "autoconfig.h"

#include <stdio.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "policy/config.h"
#include "smtp_session_int.h"

#define PX_DATA_RATE_MIN 500         /* bytes a second a message must at least arrive at */

struct px_state_row {
	const char *name;                      /* in the debug log */
	int (*input)(struct px_session *s);    /* 1: go on, 0: wait; NULL: reads nothing */
	enum px_deadline deadline;             /* while in this state */
	int dialogue;                          /* at end of input, finish what arrived */
};

static const struct px_state_row px_states[PX_ST_COUNT] = {
	[PX_ST_NEW] = { "new", NULL, PX_DL_NONE, 0 },
	[PX_ST_PROXY_HEADER] = { "proxy-header", px_proxy_header_input, PX_DL_PROXY_HEADER, 0 },
	[PX_ST_TLS_HANDSHAKE] = { "tls-handshake", px_tls_handshake_input, PX_DL_TLS_HANDSHAKE, 0 },
	[PX_ST_GREETING] = { "greeting", px_greeting_input, PX_DL_NONE, 0 },
	[PX_ST_COMMAND] = { "command", px_session_command_input, PX_DL_COMMAND, 1 },
	[PX_ST_AUTH] = { "auth", px_session_auth_input, PX_DL_COMMAND, 1 },
	[PX_ST_DATA] = { "data", px_data_input, PX_DL_DATA, 1 },
	[PX_ST_BDAT_CHUNK] = { "bdat-chunk", px_bdat_input, PX_DL_DATA, 1 },
	[PX_ST_WAIT] = { "wait", NULL, PX_DL_NONE, 1 },
	[PX_ST_CLOSING] = { "closing", NULL, PX_DL_NONE, 0 },
};

static unsigned ms_command(const struct px_config *c)
{
	return c->timeouts.command;
}

static unsigned ms_data(const struct px_config *c)
{
	return c->timeouts.data;
}

static unsigned ms_proxy_header(const struct px_config *c)
{
	return c->transport.proxy_timeout;
}

static int data_more_time(struct px_session *s);

struct px_deadline_row {
	const char *reason;                    /* "SID disconnect reason=..." */
	unsigned (*ms)(const struct px_config *c);   /* the timeout that applies */
	int silent;                            /* no reply can reach the client */
	int (*more_time)(struct px_session *s);      /* at expiry: 1 if extended */
};

static const struct px_deadline_row px_deadlines[PX_DL_COUNT] = {
	[PX_DL_NONE] = { NULL, NULL, 0, NULL },
	[PX_DL_PROXY_HEADER] = { "proxy-header-deadline", ms_proxy_header, 0, NULL },
	[PX_DL_TLS_HANDSHAKE] = { "tls-handshake-deadline", ms_command, 1, NULL },
	[PX_DL_COMMAND] = { "command-deadline", ms_command, 0, NULL },
	[PX_DL_DATA] = { "data-deadline", ms_data, 0, data_more_time },
	[PX_DL_WRITE] = { "write-deadline", ms_command, 1, NULL },
};

/* px_state_reads - whether the current state takes input */
int px_state_reads(const struct px_session *s)
{
	return px_states[s->state].input != NULL;
}

/* px_state_input - the current state's handler on buffered input: 1 to
 * go on (the state may have changed), 0 when it must wait */
int px_state_input(struct px_session *s)
{
	return px_states[s->state].input(s);
}

/* px_state_dialogue - whether the client's end of input still leaves
 * something to finish (before the greeting, in a handshake or when
 * closing it does not) */
int px_state_dialogue(const struct px_session *s)
{
	return px_states[s->state].dialogue;
}

/* px_state_reading - EV_READ on while the state reads, no output hold
 * is on and the client has not ended its input; off otherwise. Only a
 * change is made: enabling again would restart the idle timeout, and a
 * TLS filter must not be made to read from inside its own callbacks */
void px_state_reading(struct px_session *s)
{
	int want, on;

	if (s->bev == NULL)
		return;
	want = px_state_reads(s) && !s->output_wait && !s->peer_eof;
	on = (bufferevent_get_enabled(s->bev) & EV_READ) != 0;
	if (want && !on)
		bufferevent_enable(s->bev, EV_READ);
	else if (!want && on)
		bufferevent_disable(s->bev, EV_READ);
}

/* deadline_set - the current wait must end within its kind's timeout; a
 * deadline already running for the same kind is kept; PX_DL_NONE: off */
static void deadline_set(struct px_session *s, enum px_deadline kind)
{
	struct timeval tv;
	unsigned ms;

	if (s->deadline == NULL || kind == s->deadline_kind)
		return;
	if (s->deadline_kind != PX_DL_NONE)
		evtimer_del(s->deadline);
	s->deadline_kind = PX_DL_NONE;
	if (kind == PX_DL_NONE)
		return;
	ms = px_deadlines[kind].ms(s->cfg);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (kind == PX_DL_DATA)
		s->data_mark = s->txn.reader.size;
	if (evtimer_add(s->deadline, &tv) == 0)
		s->deadline_kind = kind;
}

/* state_deadline - what the session now waits for */
static enum px_deadline state_deadline(const struct px_session *s)
{
	if (s->bev == NULL)
		return PX_DL_NONE;
	if (s->output_wait && px_state_reads(s))
		return PX_DL_WRITE;             /* the hold: the client must read first */
	if (s->state == PX_ST_COMMAND && s->env == PX_ENV_BDAT)
		return PX_DL_DATA;              /* between BDAT chunks the message goes on */
	return px_states[s->state].deadline;
}

/* px_state_deadline - the deadline of what the session now waits for */
void px_state_deadline(struct px_session *s)
{
	deadline_set(s, state_deadline(s));
}

/* px_deadline_met - the awaited input came (a whole line): the next wait,
 * even of the same kind, gets a deadline of its own */
void px_deadline_met(struct px_session *s)
{
	deadline_set(s, PX_DL_NONE);
}

/* data_more_time - at a "data" deadline: enough bytes came? then another period */
static int data_more_time(struct px_session *s)
{
	size_t need = (size_t)PX_DATA_RATE_MIN * (s->cfg->timeouts.data / 1000);

	if (s->txn.reader.size - s->data_mark < need)
		return 0;
	deadline_set(s, PX_DL_DATA);
	return 1;
}

/* px_deadline_expired - a wait overran its deadline */
void px_deadline_expired(evutil_socket_t fd, short what, void *arg)
{
	struct px_session *s = arg;
	const struct px_deadline_row *d = &px_deadlines[s->deadline_kind];

	s->deadline_kind = PX_DL_NONE;
	if (s->state == PX_ST_CLOSING || d->reason == NULL)
		return;
	if (d->more_time != NULL && d->more_time(s))
		return;
	if (d->silent) {
		px_session_abort(s, d->reason);   /* no reply can reach this client */
		return;
	}
	px_session_reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->hostname);
	px_session_close(s, d->reason);
}

/* px_enter_state - the only writer of s->state: log, reading, deadline.
 * CLOSING is final: nothing leaves it */
void px_enter_state(struct px_session *s, enum px_state next)
{
	if (next == s->state || s->state == PX_ST_CLOSING)
		return;
	if (px_log_enabled(PX_LOG_DEBUG))
		px_log(PX_LOG_DEBUG, s->sid, "state=%s next=%s", px_states[s->state].name,
		       px_states[next].name);
	s->state = next;
	px_state_reading(s);
	px_state_deadline(s);
}

/* px_envelope_enter - the only writer of s->env */
void px_envelope_enter(struct px_session *s, enum px_envelope next)
{
	static const char *const names[PX_ENV_COUNT] = {
		"connected", "ready", "mail", "rcpt", "bdat"
	};

	if (next == s->env)
		return;
	if (px_log_enabled(PX_LOG_DEBUG))
		px_log(PX_LOG_DEBUG, s->sid, "envelope=%s next=%s", names[s->env], names[next]);
	s->env = next;
}
