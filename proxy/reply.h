/*
 * NAME
 *	reply - SMTP replies as they go to the client
 * DESCRIPTION
 *	A reply is kept in wire form (one or more "CODE-text" lines, the last
 *	"CODE text", each ending CRLF) plus its code. Every reply Postern sends
 *	carries an RFC 3463 enhanced status code: ours always do, and a backend
 *	reply without one gets the default for its context (px_reply_from_lines).
 */
#ifndef PX_PROXY_REPLY_H
#define PX_PROXY_REPLY_H

#include <stddef.h>

#define PX_REPLY_MAX 2048

struct px_reply {
	int code;                 /* 200..599 */
	size_t len;
	char wire[PX_REPLY_MAX];  /* NUL-terminated */
};

/* px_reply_set - a one-line reply "CODE ESC text" */
void px_reply_set(struct px_reply *r, int code, const char *esc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * px_reply_from_lines - build from a backend's reply: code, and text lines
 * (without "CODE-"), joined by '\n' in text. A line lacking an enhanced code
 * gets dflt_esc for its class ("2.0.0" for 2xx, etc., where dflt_esc gives
 * the subject.detail, e.g. "1.5" -> 2.1.5 / 4.1.5 / 5.1.5). Overlong replies
 * are cut at whole lines.
 */
void px_reply_from_lines(struct px_reply *r, int code, const char *text, const char *dflt_esc);

/*
 * px_reply_summary - the whole reply on one line, for logs (into out): the
 * first line with its code, then the text of each later line after " / "
 * ("250 2.0.0 Ok / 2.0.0 id=1rXy-0004"), no CRLF; cut to fit outlen.
 */
const char *px_reply_summary(const struct px_reply *r, char *out, size_t outlen);

#endif
