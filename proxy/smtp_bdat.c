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
 *	header, and pass the same checks: bare CR or LF (554 5.5.2, or
 *	normalised to CRLF for normalize_bare_networks), NUL, line length and
 *	size; the result is kept in txn.reader so that smtp_data.c's refusal
 *	and relay code serve both. Chunks before LAST get "250 2.0.0 N bytes
 *	received"; LAST completes the message like DATA's final dot. Between
 *	chunks (state BDAT) DATA and MAIL are refused (503), RSET or QUIT
 *	drop the unfinished message: nothing without LAST reaches the backend.
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
	if (s->state == PX_S_RCPT || s->state == PX_S_BDAT)
		return NULL;
	if (s->state == PX_S_MAIL && s->txn.rcpt_attempts > 0) {
		*code = 554;
		return "Error: no valid recipients";
	}
	return s->state == PX_S_MAIL ? "Error: need RCPT command" : "Error: need MAIL command";
}

/* bdat_write - n message bytes to the spool, counting size and its limit */
static void bdat_write(struct px_session *s, const char *p, size_t n)
{
	struct px_smtp_txn *t = &s->txn;
	struct px_data_reader *r = &t->reader;
	size_t room = r->size_max && r->size < r->size_max ? r->size_max - r->size : 0;

	if (r->size_max == 0)
		room = n;
	if (room < n)
		r->flags |= PX_DATA_TOO_BIG;
	r->size += n;
	if (t->spool_err[0] == 0 && (room < n ? room : n) > 0)
		px_spool_write(t->spool, p, room < n ? room : n, t->spool_err, sizeof(t->spool_err));
}

/* line_byte - line length, counted as sent (line ends included) */
static void line_byte(struct px_data_reader *r, int ends)
{
	if (++r->line_len > r->text_line_max && r->text_line_max)
		r->flags |= PX_DATA_LONG_LINE;
	if (ends) {
		r->line_len = 0;
		r->lines++;
	}
}

/* bare - a bare CR or LF: flag it; normalised, it becomes CRLF */
static void bare(struct px_session *s, unsigned flag)
{
	s->txn.reader.flags |= s->normalize_bare ? 0 : flag;
	if (s->normalize_bare)
		bdat_write(s, "\r\n", 2);
	else
		bdat_write(s, flag == PX_DATA_BARE_CR ? "\r" : "\n", 1);
	line_byte(&s->txn.reader, 1);
}

/* bdat_special - one special byte: CR, LF or NUL */
static void bdat_special(struct px_session *s, char c)
{
	if (s->bdat_cr && c == '\n') {
		s->bdat_cr = 0;
		bdat_write(s, "\r\n", 2);
		line_byte(&s->txn.reader, 1);
		return;
	}
	if (s->bdat_cr) {
		s->bdat_cr = 0;
		bare(s, PX_DATA_BARE_CR);
	}
	if (c == '\r')
		s->bdat_cr = 1;
	else if (c == '\n')
		bare(s, PX_DATA_BARE_LF);
	else {
		s->txn.reader.flags |= PX_DATA_NUL;
		bdat_write(s, "", 1);
		line_byte(&s->txn.reader, 0);
	}
}

/* bdat_scan - pass a chunk's bytes through the checks into the spool */
static void bdat_scan(struct px_session *s, const char *p, size_t n)
{
	const char *end = p + n, *q;

	while (p < end) {
		for (q = p; q < end && *q != '\r' && *q != '\n' && *q != 0; q++)
			;
		if (q > p && s->bdat_cr) {
			s->bdat_cr = 0;
			bare(s, PX_DATA_BARE_CR);
		}
		if (q > p) {
			bdat_write(s, p, (size_t)(q - p));
			s->txn.reader.line_len += (size_t)(q - p) - 1;
			line_byte(&s->txn.reader, 0);
		}
		if (q < end)
			bdat_special(s, *q++);
		p = q;
	}
}

/* bdat_begin - the first chunk of a transaction: spool, Received, limits */
static int bdat_begin(struct px_session *s)
{
	const struct px_limits *l = &s->cfg->limits;

	if (px_data_prepare(s) < 0)
		return -1;
	px_data_reader_init(&s->txn.reader, l->text_line_max, l->message_size_max, 0);
	s->bdat_cr = 0;
	s->bdat_used = 1;
	px_enter_state(s, PX_S_BDAT);
	px_session_set_timeout(s, s->cfg->timeouts.data);
	return 0;
}

/* chunk_done - all of a chunk's bytes are in */
static void chunk_done(struct px_session *s)
{
	if (s->bdat_discard) {
		s->bdat_discard = 0;
		px_session_send(s, &s->bdat_reply);
		return;
	}
	if (!s->bdat_last) {
		px_session_reply(s, 250, "2.0.0", "Ok: %zu bytes received", s->txn.reader.size);
		return;
	}
	if (s->bdat_cr) {
		s->bdat_cr = 0;
		bare(s, PX_DATA_BARE_CR);
	}
	px_data_complete(s);
}

/* px_bdat_input - read chunk bytes; 1 to go on, 0 when more must arrive */
int px_bdat_input(struct px_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[8];
	size_t take, used = 0;
	int i, n = evbuffer_peek(in, (ev_ssize_t)s->bdat_left, NULL, v, 8);

	for (i = 0; i < n && i < 8 && used < s->bdat_left; i++) {
		take = v[i].iov_len < s->bdat_left - used ? v[i].iov_len : s->bdat_left - used;
		if (!s->bdat_discard)
			bdat_scan(s, v[i].iov_base, take);
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
	    (s->state == PX_S_RCPT && bdat_begin(s) < 0)) {
		if (why == NULL) {
			code = 451;
			esc = "4.3.0";
			why = "Error: out of memory";
		}
		s->errors++;
		s->bdat_discard = 1;
		px_reply_set(&s->bdat_reply, code, esc, "%s", why);
	}
	if (s->bdat_left == 0)
		chunk_done(s);
}
