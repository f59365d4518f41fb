/*
 * NAME
 *	data_reader - the DATA stream: end-of-data, unstuffing, smuggling flags
 * DESCRIPTION
 *	Feeds the bytes a client sends after "354" and finds the end of the
 *	message. DATA ends ONLY at <CRLF>.<CRLF> where both CRLFs are real CR LF
 *	pairs (RFC 5321 4.1.1.4); the very first line may also be ".<CRLF>".
 *	Nothing else ends it: "\n.\n", "\r.\r", "\r\n.\n", "\r\n.\r\r\n" and the
 *	rest of the SMTP-smuggling family are message content, and they set flags
 *	so the session refuses the message (invariant 3, doc/layering.md).
 *
 *	Output is the message as RFC 5322 text: leading dots unstuffed, the
 *	terminating ".CRLF" dropped (the CRLF before it belongs to the message).
 *	Other bytes are passed on unchanged, unless normalize_bare is set, in which
 *	case a bare LF or bare CR is written as CRLF (a line end for counting and
 *	line length only: never for end-of-data detection, and never for
 *	unstuffing, so every dot of the text is kept). Lines of any length stream
 *	through; nothing is buffered.
 *
 *	Raw mode (px_data_reader_init_raw) is the same reader for BDAT chunks
 *	(RFC 3030): no dot-stuffing, no terminator, the same flags; the
 *	chunks are fed in order and px_data_reader_finish ends the message.
 *
 *	Flags record what was seen; the session decides the reply:
 *	  BARE_LF, BARE_CR  -> 554 5.5.2 (smuggling defence, unless normalised)
 *	  NUL               -> 554 5.6.0
 *	  LONG_LINE         -> 554 5.6.0 (a line longer than text_line_max incl. CRLF)
 *	  TOO_BIG           -> 552 5.3.4 (output beyond size_max; output stops there)
 */
#ifndef PX_PROXY_DATA_READER_H
#define PX_PROXY_DATA_READER_H

#include <stddef.h>

enum px_data_flag {
	PX_DATA_BARE_LF   = 1 << 0,
	PX_DATA_BARE_CR   = 1 << 1,
	PX_DATA_NUL       = 1 << 2,
	PX_DATA_LONG_LINE = 1 << 3,
	PX_DATA_TOO_BIG   = 1 << 4
};

/* Called with runs of output bytes; returns 0, or -1 to stop (feed returns -1). */
typedef int (*px_data_sink)(void *arg, const char *p, size_t n);

struct px_data_reader {
	/* settings, set before the first feed */
	size_t text_line_max;     /* 0 = unlimited */
	size_t size_max;          /* 0 = unlimited */
	int normalize_bare;
	int raw;                  /* BDAT: no unstuffing, no terminator */
	/* results */
	unsigned flags;           /* enum px_data_flag */
	size_t size;              /* output bytes (unstuffed), counted even past size_max */
	size_t lines;
	/* private state */
	int state;
	size_t line_len;
};

/* px_data_reader_init - reset for a new message, keeping the settings */
void px_data_reader_init(struct px_data_reader *r, size_t text_line_max, size_t size_max,
			 int normalize_bare);

/* px_data_reader_init_raw - the same, for BDAT text: no dots, no end */
void px_data_reader_init_raw(struct px_data_reader *r, size_t text_line_max, size_t size_max,
			     int normalize_bare);

/*
 * px_data_reader_feed - consume up to len bytes. Returns the number of bytes
 * consumed (less than len only when the end was found: bytes after the final
 * ".CRLF" belong to the next command and are not consumed), or -1 if the sink
 * failed. *done is set to 1 when the end of data was found.
 */
long px_data_reader_feed(struct px_data_reader *r, const char *in, size_t len, px_data_sink sink,
			 void *arg, int *done);

/*
 * px_data_reader_finish - raw mode: the message ends after the bytes fed so
 * far (BDAT LAST). A CR that was the last byte is bare (flagged; normalised,
 * its LF is written). 0, or -1 if the sink failed.
 */
int px_data_reader_finish(struct px_data_reader *r, px_data_sink sink, void *arg);

#endif
