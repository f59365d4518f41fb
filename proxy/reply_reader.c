/*
 * NAME
 *	reply_reader - read SMTP replies from a server
 * DESCRIPTION
 *	See reply_reader.h. Lines are parsed by px_smtp_reply_line (the
 *	parser the unit tests and the fuzzer cover).
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "reply_reader.h"
#include "smtp_parse.h"

/* px_reply_reader_init - ready for a new reply (the last reply's text stays
 * readable until the next line comes: a caller may still be using it) */
void px_reply_reader_init(struct px_reply_reader *rr)
{
	rr->len = 0;
	rr->code = 0;
	rr->done = 0;
}

/* text_append - one line's text, after a '\n' unless it is the first */
static void text_append(struct px_reply_reader *rr, const char *text, size_t n)
{
	size_t room;

	if (rr->len > 0 && rr->len < sizeof(rr->text) - 1)
		rr->text[rr->len++] = '\n';
	room = sizeof(rr->text) - 1 - rr->len;
	if (n > room)
		n = room;
	memcpy(rr->text + rr->len, text, n);
	rr->len += n;
	rr->text[rr->len] = '\0';
}

/* px_reply_reader_line - one line; PX_RR_DONE, PX_RR_MORE or PX_RR_BAD */
int px_reply_reader_line(struct px_reply_reader *rr, const char *line, size_t len)
{
	const char *text;
	int code, last;

	if (rr->done)
		px_reply_reader_init(rr);
	if (px_smtp_reply_line(line, len, &code, &last, &text) != PX_PARSE_OK ||
	    (rr->code != 0 && code != rr->code))
		return PX_RR_BAD;
	rr->code = code;
	/* text is line + 4, or a static "" for a bare code (len 3) */
	text_append(rr, text, len > 3 ? len - 4 : 0);
	rr->done = last;
	return last ? PX_RR_DONE : PX_RR_MORE;
}

/* px_reply_reader_next - the next complete reply from in */
int px_reply_reader_next(struct px_reply_reader *rr, struct evbuffer *in, size_t max_line,
			 const char **why)
{
	size_t len;
	char *line;
	int rc;

	while ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		rc = len > max_line ? PX_RR_BAD : px_reply_reader_line(rr, line, len);
		free(line);
		if (rc == PX_RR_BAD) {
			*why = len > max_line ? "reply line too long" : "malformed reply";
			return PX_RR_BAD;
		}
		if (rc == PX_RR_DONE)
			return PX_RR_DONE;
	}
	if (evbuffer_get_length(in) > max_line) {
		*why = "reply line too long";
		return PX_RR_BAD;
	}
	return PX_RR_MORE;
}
