/*
 * NAME
 *	reply - SMTP replies as they go to the client
 * DESCRIPTION
 *	See reply.h.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "reply.h"
#include "smtp_parse.h"

/* px_reply_set - one line with our own enhanced code */
void px_reply_set(struct px_reply *r, int code, const char *esc, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (esc != NULL && *esc != '\0')
		n = snprintf(r->wire, sizeof(r->wire) - 2, "%03d %s ", code, esc);
	else
		n = snprintf(r->wire, sizeof(r->wire) - 2, "%03d ", code);
	va_start(ap, fmt);
	n += vsnprintf(r->wire + n, sizeof(r->wire) - 2 - (size_t)n, fmt, ap);
	va_end(ap);
	if ((size_t)n > sizeof(r->wire) - 3)
		n = (int)sizeof(r->wire) - 3;
	memcpy(r->wire + n, "\r\n", 3);
	r->len = (size_t)n + 2;
	r->code = code;
}

/* reply_add_line - append one line; 0, or -1 when it does not fit */
static int reply_add_line(struct px_reply *r, int code, int last, const char *esc,
			  const char *text, size_t len)
{
	size_t room = sizeof(r->wire) - r->len;
	int n;

	n = snprintf(r->wire + r->len, room, "%03d%c%s%s%.*s\r\n", code, last ? ' ' : '-',
		     esc ? esc : "", esc ? " " : "", (int)len, text);
	if (n < 0 || (size_t)n >= room) {
		r->wire[r->len] = '\0';
		return -1;
	}
	r->len += (size_t)n;
	return 0;
}

/* px_reply_from_lines - wire form of a backend reply */
void px_reply_from_lines(struct px_reply *r, int code, const char *text, const char *dflt_esc)
{
	char esc[16];
	const char *line = text, *nl;
	size_t len;

	snprintf(esc, sizeof(esc), "%d.%s", code / 100, dflt_esc);
	r->len = 0;
	r->wire[0] = '\0';
	r->code = code;
	for (;;) {
		nl = strchr(line, '\n');
		len = nl ? (size_t)(nl - line) : strlen(line);
		if (reply_add_line(r, code, nl == NULL, px_smtp_enhanced_code(line) ? NULL : esc,
				   line, len) < 0) {
			/* too long: end with what fits, as a last line */
			px_reply_set(r, code, esc, "%.*s", (int)(len > 200 ? 200 : len), line);
			return;
		}
		if (nl == NULL)
			return;
		line = nl + 1;
	}
}

/* px_reply_summary - every line, joined: "250 first / second" (see reply.h) */
const char *px_reply_summary(const struct px_reply *r, char *out, size_t outlen)
{
	const char *line = r->wire, *nl;
	size_t o = 0, n, skip;

	out[0] = '\0';
	while (*line != '\0' && o + 1 < outlen) {
		nl = strstr(line, "\r\n");
		n = nl != NULL ? (size_t)(nl - line) : strlen(line);
		skip = o == 0 || n < 4 ? 0 : 4;          /* later lines: no "CODE-" */
		if (o > 0 && n > skip)
			o += (size_t)snprintf(out + o, outlen - o, " / ");
		if (o < outlen && n > skip)
			o += (size_t)snprintf(out + o, outlen - o, "%.*s", (int)(n - skip),
					      line + skip);
		if (o >= outlen)
			o = outlen - 1;
		if (nl == NULL)
			break;
		line = nl + 2;
	}
	if (o > 3 && out[3] == '-')
		out[3] = ' ';
	return out;
}
