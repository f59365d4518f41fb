/*
 * NAME
 *	reply_reader - read SMTP replies from a server (the one reader for the
 *	relay, the AUTH check and the start-up probe)
 * SYNOPSIS
 *	#include "proxy/reply_reader.h"
 * DESCRIPTION
 *	A reply is one or more lines "NNN-text" ending with "NNN text" (or
 *	"NNN"), every line with the same code (RFC 5321 4.2.1). The reader
 *	takes lines one at a time (px_reply_reader_line) or straight from an
 *	evbuffer (px_reply_reader_next) and hands back complete replies: the
 *	code, and the lines' texts joined with '\n' (without the codes), bounded
 *	by PX_REPLY_MAX (longer text is cut, not an error). A line that is not a
 *	reply line, a code that changes inside a reply, or a line longer than
 *	the caller's bound is an error: the peer is not speaking SMTP.
 */
#ifndef PX_PROXY_REPLY_READER_H
#define PX_PROXY_REPLY_READER_H

#include <stddef.h>

#include "reply.h"

struct evbuffer;

enum px_rr_status { PX_RR_BAD = -1, PX_RR_MORE = 0, PX_RR_DONE = 1 };

struct px_reply_reader {
	char text[PX_REPLY_MAX];  /* the complete reply's texts, '\n'-joined */
	size_t len;
	int code;                 /* the reply's code (valid at PX_RR_DONE) */
	int done;                 /* the last line was seen: the next line starts anew */
};

/* px_reply_reader_init - ready for a first reply */
void px_reply_reader_init(struct px_reply_reader *rr);

/* px_reply_reader_line - one line, without its CRLF: PX_RR_DONE when it
 * completed a reply (rr->code, rr->text valid until the next call),
 * PX_RR_MORE, or PX_RR_BAD */
int px_reply_reader_line(struct px_reply_reader *rr, const char *line, size_t len);

/* px_reply_reader_next - take lines from in until a reply is complete
 * (PX_RR_DONE), the input runs out (PX_RR_MORE), or it is malformed or a
 * line passes max_line bytes (PX_RR_BAD, with *why) */
int px_reply_reader_next(struct px_reply_reader *rr, struct evbuffer *in, size_t max_line,
			 const char **why);

#endif
