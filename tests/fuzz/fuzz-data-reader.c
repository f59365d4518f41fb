/*
 * NAME
 *	fuzz-data-reader - libFuzzer harness for proxy/data_reader.c
 * SYNOPSIS
 *	clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *		tests/fuzz/fuzz-data-reader.c proxy/data_reader.c -o fuzz-data-reader
 *	./fuzz-data-reader -max_total_time=60
 * DESCRIPTION
 *	The first input byte picks the settings (normalisation, a small line
 *	limit, a small size limit) and the second a chunk size and the mode
 *	(its top bit: raw, as for BDAT); the rest is the DATA stream (or the
 *	BDAT text). Checks, aborting on failure:
 * .IP \(bu
 *	the same output, flags, size, lines, consumed count and end whether fed
 *	whole, byte by byte, or in chunks;
 * .IP \(bu
 *	the end is found only right after "CRLF.CRLF" (or ".CRLF" at the start);
 *	in raw mode never, and without normalisation the output is the input;
 * .IP \(bu
 *	with normalisation, the output holds no bare CR or LF;
 * .IP \(bu
 *	smuggling: an output free of bare CR/LF, dot-stuffed again with
 *	"CRLF.CRLF" appended, reads back as exactly itself, ending exactly at
 *	the appended terminator.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/data_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct out {
	char *buf;
	size_t len, cap;
};

struct run {
	struct out out;
	unsigned flags;
	size_t size, lines, consumed;
	int done;
};

/* check - abort the fuzzer on a broken invariant */
static void check(int cond)
{
	if (!cond)
		abort();
}

/* put - append n bytes */
static void put(struct out *o, const char *p, size_t n)
{
	if (o->len + n > o->cap) {
		o->cap = (o->len + n) * 2 + 16;
		o->buf = realloc(o->buf, o->cap);
		check(o->buf != NULL);
	}
	if (n)
		memcpy(o->buf + o->len, p, n);
	o->len += n;
}

/* sink - collect output */
static int sink(void *arg, const char *p, size_t n)
{
	check(n > 0);
	put(arg, p, n);
	return 0;
}

/* feed_all - feed in chunks of chunk bytes (0 = whole) into a fresh reader */
static void feed_all(const char *in, size_t len, size_t chunk, size_t line_max, size_t size_max,
		     int norm, int raw, struct run *res)
{
	struct px_data_reader r;
	size_t off = 0, n;
	long got;
	int done = 0;

	memset(res, 0, sizeof(*res));
	if (raw)
		px_data_reader_init_raw(&r, line_max, size_max, norm);
	else
		px_data_reader_init(&r, line_max, size_max, norm);
	while (off < len && !done) {
		n = chunk == 0 || len - off < chunk ? len - off : chunk;
		got = px_data_reader_feed(&r, in + off, n, sink, &res->out, &done);
		check(got >= 0 && (size_t)got <= n && (done || (size_t)got == n));
		off += (size_t)got;
	}
	if (raw)
		check(px_data_reader_finish(&r, sink, &res->out) == 0);
	res->flags = r.flags;
	res->size = r.size;
	res->lines = r.lines;
	res->consumed = off;
	res->done = done;
}

/* same - two runs agree */
static void same(const struct run *a, const struct run *b)
{
	check(a->out.len == b->out.len);
	check(a->out.len == 0 || memcmp(a->out.buf, b->out.buf, a->out.len) == 0);
	check(a->flags == b->flags && a->size == b->size && a->lines == b->lines);
	check(a->consumed == b->consumed && a->done == b->done);
}

/* check_end - the end was found right after a real terminator */
static void check_end(const char *in, const struct run *res)
{
	size_t c = res->consumed;

	if (!res->done)
		return;
	check(c >= 3 && memcmp(in + c - 3, ".\r\n", 3) == 0);
	check(c == 3 || (c >= 5 && in[c - 5] == '\r' && in[c - 4] == '\n'));
}

/* no_bare - every CR in o is followed by LF and every LF preceded by CR */
static int no_bare(const struct out *o)
{
	for (size_t i = 0; i < o->len; i++) {
		if (o->buf[i] == '\r' && (i + 1 == o->len || o->buf[i + 1] != '\n'))
			return 0;
		if (o->buf[i] == '\n' && (i == 0 || o->buf[i - 1] != '\r'))
			return 0;
	}
	return 1;
}

/* restuff - the output (empty or ending in CRLF) as a client would send it again */
static void restuff(const struct out *o, struct out *wire)
{
	for (size_t i = 0; i < o->len; i++) {
		if (o->buf[i] == '.' && (i == 0 || o->buf[i - 1] == '\n'))
			put(wire, ".", 1);
		put(wire, o->buf + i, 1);
	}
	put(wire, ".\r\n", 3);
}

/* round_trip - a clean output reads back as itself, ending at the end */
static void round_trip(const struct run *res)
{
	struct out wire = { 0 };
	struct run back;
	size_t n = res->out.len;

	if (!res->done || (res->flags & PX_DATA_TOO_BIG) || !no_bare(&res->out))
		return;
	check(n == 0 || (n >= 2 && memcmp(res->out.buf + n - 2, "\r\n", 2) == 0));
	restuff(&res->out, &wire);
	feed_all(wire.buf, wire.len, 0, 0, 0, 0, 0, &back);
	check(back.done && back.consumed == wire.len);
	check(back.out.len == n && (n == 0 || memcmp(back.out.buf, res->out.buf, n) == 0));
	check((back.flags & ~PX_DATA_NUL) == 0);
	free(wire.buf);
	free(back.out.buf);
}

/* LLVMFuzzerTestOneInput - one DATA stream */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, bytes, chunks;
	const char *in = (const char *)data + 2;
	size_t len, line_max, size_max, chunk;
	int norm, raw;

	if (size < 2)
		return 0;
	len = size - 2;
	norm = data[0] & 1;
	line_max = (data[0] >> 1) & 7;
	size_max = (data[0] >> 4) & 3 ? (size_t)((data[0] >> 4) & 15) * 4 : 0;
	chunk = (size_t)(data[1] & 0x7f) % 17 + 1;
	raw = data[1] >> 7;
	feed_all(in, len, 0, line_max, size_max, norm, raw, &whole);
	feed_all(in, len, 1, line_max, size_max, norm, raw, &bytes);
	feed_all(in, len, chunk, line_max, size_max, norm, raw, &chunks);
	same(&whole, &bytes);
	same(&whole, &chunks);
	check_end(in, &whole);
	if (raw) {
		check(!whole.done && whole.consumed == len);
		if (!norm && !size_max)
			check(whole.out.len == len &&
			      (len == 0 || memcmp(whole.out.buf, in, len) == 0));
	}
	check(size_max == 0 || whole.out.len == (whole.size < size_max ? whole.size : size_max));
	check(!!(whole.flags & PX_DATA_TOO_BIG) == (size_max && whole.size > size_max));
	if (norm && !(whole.flags & PX_DATA_TOO_BIG) && (whole.done || raw))
		check(no_bare(&whole.out));
	if (!raw)
		round_trip(&whole);
	free(whole.out.buf);
	free(bytes.out.buf);
	free(chunks.out.buf);
	return 0;
}
