/*
 * NAME
 *	data_reader 3 - the DATA stream: end-of-data, unstuffing, smuggling flags
 * SYNOPSIS
 *	#include "proxy/data_reader.h"
 *
 *	void px_data_reader_init(struct px_data_reader *r,
 *		size_t text_line_max, size_t size_max, int normalize_bare);
 *	void px_data_reader_init_raw(struct px_data_reader *r,
 *		size_t text_line_max, size_t size_max, int normalize_bare);
 *	long px_data_reader_feed(struct px_data_reader *r, const char *in,
 *		size_t len, px_data_sink sink, void *arg, int *done);
 *	int px_data_reader_finish(struct px_data_reader *r,
 *		px_data_sink sink, void *arg);
 * DESCRIPTION
 *	A byte-at-a-time state machine whose only per-byte work is a word-wide
 *	scan for CR, LF and NUL; everything between those bytes is copied to
 *	the sink as one run, and a run goes on across CRLF line ends. A run is
 *	cut only where output differs from input (a dropped stuffing dot, a
 *	CR or LF added by normalisation, the dropped terminator) and at the end
 *	of each fed chunk, so the output and the flags do not depend on how the
 *	input was split. Nothing is buffered: a line of any length streams
 *	through in runs, and only its length is counted.
 *
 *	Line starts: the start of data and the byte after a real CR LF are
 *	"eligible" (".CRLF" there ends the data, and a dot there is a stuffing
 *	dot, dropped unless it begins the terminator). With normalize_bare,
 *	a bare CR or bare LF also ends a line, but only for line counting and
 *	line length: a dot after it is text (the client did not stuff it,
 *	since for SMTP no line started there), so it is kept.
 *
 *	A CR is always passed on at once: if it proves bare and normalisation
 *	is on, the LF is added after it. The one CR held back is the one after
 *	an eligible dot, which may be the terminator's.
 *
 *	Raw mode (BDAT, RFC 3030) has no line starts at all: no unstuffing
 *	and no terminator; the same checks and normalisation apply, and
 *	px_data_reader_finish judges a CR left at the very end.
 *
 *	Line length is counted on the input (stuffing dot and line end
 *	included), as the client sent it.
 * STANDARDS
 *	RFC 5321 4.1.1.4 (DATA), 4.5.2 (transparency), 4.5.3.1.6 (text line);
 *	RFC 3030 (BDAT).
 */
#include <stdint.h>
#include <string.h>

#include "proxy/data_reader.h"

enum {
	ST_BOL = 0,       /* at an eligible line start (".CRLF" here ends) */
	ST_TEXT,          /* inside a line */
	ST_CR,            /* after a CR that was passed on */
	ST_DOT,           /* after a dropped dot at an eligible line start */
	ST_DOT_CR,        /* after ".CR" at an eligible line start; CR held */
	ST_DONE
};

/* One call of px_data_reader_feed. */
struct feed {
	struct px_data_reader *r;
	const char *p;            /* next input byte */
	const char *end;
	const char *run;          /* start of the verbatim run not yet emitted */
	px_data_sink sink;
	void *arg;
	int err;
};

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* has_zero - nonzero if one of the 8 bytes of w is zero */
static uint64_t has_zero(uint64_t w)
{
	return (w - ONES) & ~w & HIGHS;
}

/* has_special - nonzero if one of the 8 bytes of w is NUL, LF or CR */
static uint64_t has_special(uint64_t w)
{
	return has_zero(w) | has_zero(w ^ (ONES * '\n')) | has_zero(w ^ (ONES * '\r'));
}

/* is_special - NUL, LF or CR */
static int is_special(char c)
{
	return c == 0 || c == '\n' || c == '\r';
}

/* scan_special - first NUL, LF or CR in [p, end), or end */
static const char *scan_special(const char *p, const char *end)
{
	uint64_t w;

	while (end - p >= 8) {
		memcpy(&w, p, sizeof(w));
		if (has_special(w))
			break;
		p += 8;
	}
	while (p < end && !is_special(*p))
		p++;
	return p;
}

/* emit - count n output bytes and pass those below size_max to the sink */
static void emit(struct feed *f, const char *p, size_t n)
{
	struct px_data_reader *r = f->r;
	size_t room = n;

	if (n == 0 || f->err)
		return;
	if (r->size_max) {
		room = r->size >= r->size_max ? 0 : r->size_max - r->size;
		if (room < n) {
			r->flags |= PX_DATA_TOO_BIG;
		} else {
			room = n;
		}
	}
	r->size += n;
	if (room > 0 && f->sink(f->arg, p, room) < 0)
		f->err = 1;
}

/* flush - emit the pending run up to (not including) upto; restart it there */
static void flush(struct feed *f, const char *upto)
{
	emit(f, f->run, (size_t)(upto - f->run));
	f->run = upto;
}

/* insert - emit bytes that are not in the input, before the byte at p */
static void insert(struct feed *f, const char *s, size_t n)
{
	flush(f, f->p);
	emit(f, s, n);
}

/* add_len - count n input bytes of the current line; flag a long line */
static void add_len(struct px_data_reader *r, size_t n)
{
	r->line_len += n;
	if (r->text_line_max && r->line_len > r->text_line_max)
		r->flags |= PX_DATA_LONG_LINE;
}

/* line_end - a line (and its line end) is complete */
static void line_end(struct px_data_reader *r)
{
	r->line_len = 0;
	r->lines++;
}

/* bare_end - a bare CR or LF was seen (flag); with normalisation it ends a
 * line, but what follows is text: no line start, so no unstuffing */
static void bare_end(struct feed *f, unsigned flag)
{
	f->r->flags |= flag;
	if (f->r->normalize_bare)
		line_end(f->r);
	f->r->state = ST_TEXT;
}

/* step_bol - at an eligible line start: drop a stuffing dot, else go on as text */
static void step_bol(struct feed *f)
{
	struct px_data_reader *r = f->r;

	if (*f->p == '.') {
		flush(f, f->p);
		f->run = ++f->p;
		r->line_len++;            /* checked once it is not the terminator */
		r->state = ST_DOT;
	} else {
		r->state = ST_TEXT;
	}
}

/* step_text - pass a run of text, then handle the NUL, CR or LF ending it */
static void step_text(struct feed *f)
{
	struct px_data_reader *r = f->r;
	const char *q = scan_special(f->p, f->end);

	add_len(r, (size_t)(q - f->p));
	f->p = q;
	if (q == f->end)
		return;
	add_len(r, 1);
	if (*q == '\r') {
		r->state = ST_CR;
	} else if (*q == 0) {
		r->flags |= PX_DATA_NUL;
	} else {
		if (r->normalize_bare)
			insert(f, "\r", 1);
		bare_end(f, PX_DATA_BARE_LF);
	}
	f->p++;
}

/* step_cr - after a CR: LF makes a real line end, anything else a bare CR */
static void step_cr(struct feed *f)
{
	if (*f->p == '\n') {
		add_len(f->r, 1);
		f->p++;
		line_end(f->r);
		f->r->state = f->r->raw ? ST_TEXT : ST_BOL;
		return;
	}
	if (f->r->normalize_bare)
		insert(f, "\n", 1);
	bare_end(f, PX_DATA_BARE_CR);
}

/* step_dot - after an eligible dropped dot: hold a CR, else go on as text */
static void step_dot(struct feed *f)
{
	if (*f->p == '\r') {
		f->r->line_len++;
		f->run = ++f->p;
		f->r->state = ST_DOT_CR;
	} else {
		f->r->state = ST_TEXT;
	}
}

/* step_dot_cr - after ".CR": LF ends the data, anything else makes the CR bare */
static void step_dot_cr(struct feed *f)
{
	if (*f->p == '\n') {
		f->run = ++f->p;
		f->r->state = ST_DONE;
		return;
	}
	add_len(f->r, 0);
	insert(f, f->r->normalize_bare ? "\r\n" : "\r", f->r->normalize_bare ? 2 : 1);
	bare_end(f, PX_DATA_BARE_CR);
}

/* step - one transition (ST_TEXT passes a whole run) */
static void step(struct feed *f)
{
	switch (f->r->state) {
	case ST_BOL:
		step_bol(f);
		break;
	case ST_TEXT:
		step_text(f);
		break;
	case ST_CR:
		step_cr(f);
		break;
	case ST_DOT:
		step_dot(f);
		break;
	case ST_DOT_CR:
		step_dot_cr(f);
		break;
	}
}

/* px_data_reader_init - reset for a new message, keeping the settings */
void px_data_reader_init(struct px_data_reader *r, size_t text_line_max, size_t size_max,
			 int normalize_bare)
{
	memset(r, 0, sizeof(*r));
	r->text_line_max = text_line_max;
	r->size_max = size_max;
	r->normalize_bare = normalize_bare;
	r->state = ST_BOL;
}

/* px_data_reader_init_raw - the same checks with no dots and no terminator (BDAT) */
void px_data_reader_init_raw(struct px_data_reader *r, size_t text_line_max, size_t size_max,
			     int normalize_bare)
{
	px_data_reader_init(r, text_line_max, size_max, normalize_bare);
	r->raw = 1;
	r->state = ST_TEXT;
}

/* px_data_reader_feed - consume bytes up to and including the terminator */
long px_data_reader_feed(struct px_data_reader *r, const char *in, size_t len, px_data_sink sink,
			 void *arg, int *done)
{
	struct feed f = { r, in, in, in, sink, arg, 0 };

	if (len == 0) {
		*done = r->state == ST_DONE;
		return 0;
	}
	f.end = in + len;
	while (f.p < f.end && r->state != ST_DONE && !f.err)
		step(&f);
	if (r->state != ST_DONE)
		flush(&f, f.p);
	*done = r->state == ST_DONE;
	return f.err ? -1 : (long)(f.p - in);
}

/* px_data_reader_finish - raw mode: the text ends here; a CR left last is bare */
int px_data_reader_finish(struct px_data_reader *r, px_data_sink sink, void *arg)
{
	struct feed f = { r, "", "", "", sink, arg, 0 };

	if (r->state != ST_CR)
		return 0;
	if (r->normalize_bare)
		emit(&f, "\n", 1);
	bare_end(&f, PX_DATA_BARE_CR);
	return f.err ? -1 : 0;
}
