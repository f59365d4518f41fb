/*
 * NAME
 *	smtp_bdat - CHUNKING: the BDAT command (RFC 3030)
 * DESCRIPTION
 *	"BDAT size [LAST]" is followed by exactly size bytes of message, with
 *	no dot-stuffing and no terminator. Every syntactically valid BDAT has
 *	its bytes read, even when the command is refused (wrong state, no
 *	recipient, no EHLO): otherwise the chunk would be read as commands,
 *	which is exactly the desynchronisation smuggling needs. A BDAT whose
 *	size cannot be parsed ends the session (421), for the same reason.
 *
 *	The chunks go to the same spool as DATA, behind the same Received
 *	header, and pass the same checks, made by the same code: the DATA
 *	reader (data_reader.c) in raw mode, fed every chunk in order: bare CR
 *	or LF (554 5.5.2, or normalised to CRLF for normalize_bare_networks),
 *	NUL, line length and size. Its result in txn.reader serves
 *	smtp_data.c's refusal and relay code for both. A refused BDAT is a
 *	client error (px_session_error, counted toward errors_max), answered
 *	once its chunk has been read. Chunks before LAST get "250 2.0.0 N bytes
 *	received"; LAST completes the message like DATA's final dot. A chunk's
 *	bytes are read in state BDAT_CHUNK (px_bdat_input), after which the
 *	session is back in COMMAND. Between chunks (envelope BDAT) DATA and
 *	MAIL are refused (503), RSET or QUIT drop the unfinished message:
 *	nothing without LAST reaches the backend.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/log.h"
#include "filters/spool.h"
#include "policy/config.h"
#include "smtp_session_int.h"

#define BDAT_SIZE_DIGITS 15

/* bdat_parse - "size" or "size LAST"; -1 if malformed */
static int bdat_parse(const char *args, size_t *size, int *last)
{
	size_t n = strspn(args, "0123456789");
	char *end;

	if (n == 0 || n > BDAT_SIZE_DIGITS)
		return -1;
	*size = (size_t)strtoull(args, &end, 10);
	*last = 0;
	if (*end == 0)
		return 0;
	if (strcasecmp(end, " LAST") == 0) {
		*last = 1;
		return 0;
	}
	return -1;
}

/* bdat_refusal - why this BDAT cannot be taken now; NULL if it can */
static const char *bdat_refusal(struct px_session *s, int *code, const char **esc)
{
	*code = 503;
	*esc = "5.5.1";
	if (!s->esmtp)
		return "Error: send EHLO first";
	if (s->env == PX_ENV_RCPT && (s->relay_lost || (s->relay != NULL &&
					!px_relay_in_transaction(s->relay)))) {
		s->relay_lost = 1;
		*code = 451;
		*esc = "4.4.2";
		return "Backend transaction lost; send RSET and start over";
	}
	if (s->env == PX_ENV_RCPT || s->env == PX_ENV_BDAT)
		return NULL;
	if (s->env == PX_ENV_MAIL && s->txn.rcpt_attempts > 0) {
		*code = 554;
		return "Error: no valid recipients";
	}
	return s->env == PX_ENV_MAIL ? "Error: need RCPT command" : "Error: need MAIL command";
}

/* bdat_sink - the reader's output goes to the spool, until the spool fails */
static int bdat_sink(void *arg, const char *p, size_t n)
{
	struct px_smtp_txn *t = arg;

	if (t->spool_err[0] == '\0')
		px_spool_write(t->spool, p, n, t->spool_err, sizeof(t->spool_err));
	return 0;
}

/* bdat_begin - the first chunk of a transaction: spool, Received, limits */
static int bdat_begin(struct px_session *s)
{
	const struct px_limits *l = &s->cfg->limits;

	if (px_data_prepare(s) < 0)
		return -1;
	px_data_reader_init_raw(&s->txn.reader, l->text_line_max, l->message_size_max,
				s->normalize_bare);
	s->bdat_used = 1;
	px_envelope_enter(s, PX_ENV_BDAT);
	px_session_set_timeout(s, s->cfg->timeouts.data);
	return 0;
}

/* bdat_refused - the answer to a refused BDAT, once its chunk is read: a
 * client error like any other, so a loop of them ends at errors_max */
static void bdat_refused(struct px_session *s)
{
	const struct px_reply *r = &s->bdat_reply;
	size_t n = r->len > 6 ? r->len - 6 : 0;     /* "CODE " ... "\r\n" */

	s->bdat_discard = 0;
	px_session_error(s, r->code, NULL, "%.*s", (int)n, r->wire + 4);
}

/* chunk_done - all of a chunk's bytes are in: commands again (or, after
 * LAST, the end of the message) */
static void chunk_done(struct px_session *s)
{
	px_enter_state(s, PX_ST_COMMAND);
	if (s->bdat_discard) {
		bdat_refused(s);
		return;
	}
	if (!s->bdat_last) {
		px_session_reply(s, 250, "2.0.0", "Ok: %zu bytes received", s->txn.reader.size);
		return;
	}
	px_data_reader_finish(&s->txn.reader, bdat_sink, &s->txn);
	px_data_complete(s);
}

/* px_bdat_input - BDAT_CHUNK's handler: read chunk bytes; 1 to go on, 0
 * when more must arrive */
int px_bdat_input(struct px_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[8];
	size_t take, used = 0;
	int i, done = 0, n = evbuffer_peek(in, (ev_ssize_t)s->bdat_left, NULL, v, 8);

	for (i = 0; i < n && i < 8 && used < s->bdat_left; i++) {
		take = v[i].iov_len < s->bdat_left - used ? v[i].iov_len : s->bdat_left - used;
		if (!s->bdat_discard)
			px_data_reader_feed(&s->txn.reader, v[i].iov_base, take, bdat_sink,
					    &s->txn, &done);
		used += take;
	}
	evbuffer_drain(in, used);
	s->bdat_left -= used;
	if (s->bdat_left == 0)
		chunk_done(s);
	return s->bdat_left == 0 || evbuffer_get_length(in) > 0;
}

/* px_session_bdat - the BDAT command: take or drop the chunk that follows */
void px_session_bdat(struct px_session *s, char *args)
{
	const char *why, *esc;
	size_t size;
	int last, code;

	if (bdat_parse(args, &size, &last) < 0) {
		px_session_reply(s, 421, "4.5.4", "%s Error: bad BDAT syntax; cannot go on",
				 s->cfg->hostname);
		px_session_close(s, "bdat-syntax");
		return;
	}
	s->bdat_last = last;
	s->bdat_left = size;
	if ((why = bdat_refusal(s, &code, &esc)) != NULL ||
	    (s->env == PX_ENV_RCPT && bdat_begin(s) < 0)) {
		if (why == NULL) {
			code = 451;
			esc = "4.3.0";
			why = "Error: out of memory";
		}
		s->bdat_discard = 1;
		px_reply_set(&s->bdat_reply, code, esc, "%s", why);
	}
	if (s->bdat_left == 0)
		chunk_done(s);
	else
		px_enter_state(s, PX_ST_BDAT_CHUNK);
}
