/*
 * NAME
 *	test-data-reader - unit tests for proxy/data_reader.c
 * DESCRIPTION
 *	Every vector is fed whole, byte by byte, split at every point, and in
 *	seeded random chunkings; output, flags, size, lines, consumed count
 *	and done must be identical every time. Tables cover the end of data,
 *	dot-unstuffing, the SMTP smuggling family (with and without
 *	normalisation, which keeps every dot of the text), NUL, long lines at
 *	and over the limit (and under the 1 MiB default, streamed), size limits,
 *	and raw mode (BDAT: no dots, no terminator, the same checks).
 *	A naive whole-buffer reference model is compared against the reader on
 *	every string up to 7 bytes over { CR LF . a NUL } and on random
 *	longer ones.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/data_reader.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))
#define S(s) s, sizeof(s) - 1
/* REQUIRE - an assertion for hot loops: ck_assert* reports every pass to the
 * parent over a pipe, which makes millions of checks slow */
#define REQUIRE(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)

struct cfg {
	size_t line_max, size_max;
	int normalize;
	int raw;                  /* BDAT mode: no dots, no end, finish at the end */
};

struct result {
	char *out;
	size_t out_len, out_cap;
	size_t calls;             /* sink calls */
	unsigned flags;
	size_t size, lines;
	size_t consumed;
	int done;
};

/* bytes_eq - n bytes equal (either pointer may be NULL when n is 0) */
static int bytes_eq(const char *a, const char *b, size_t n)
{
	return n == 0 || memcmp(a, b, n) == 0;
}

/* res_free - release a result's output */
static void res_free(struct result *res)
{
	free(res->out);
	memset(res, 0, sizeof(*res));
}

/* res_put - append n bytes to the collected output */
static void res_put(struct result *res, const char *p, size_t n)
{
	if (res->out_len + n + 1 > res->out_cap) {
		res->out_cap = (res->out_len + n + 1) * 2;
		res->out = realloc(res->out, res->out_cap);
		REQUIRE(res->out != NULL, "out of memory");
	}
	memcpy(res->out + res->out_len, p, n);
	res->out_len += n;
}

/* sink - collect output; checks that the reader never sends empty runs */
static int sink(void *arg, const char *p, size_t n)
{
	struct result *res = arg;

	REQUIRE(n > 0, "empty run");
	res_put(res, p, n);
	res->calls++;
	return 0;
}

/* ---- chunkings ------------------------------------------------------- */

/* A chunker returns the size of the next chunk, given what is left. */
struct chunker {
	int kind;                 /* 0 whole, 1 bytewise, 2 split at, 3 random */
	size_t split;
	uint64_t seed;
};

/* rnd - xorshift64 */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* next_chunk - size of the next chunk at offset off of len */
static size_t next_chunk(struct chunker *ch, size_t off, size_t len)
{
	size_t left = len - off;

	switch (ch->kind) {
	case 1:
		return 1;
	case 2:
		return off < ch->split ? ch->split - off : left;
	case 3:
		return (size_t)(rnd(&ch->seed) % (left < 16 ? left : 16)) + 1;
	default:
		return left;
	}
}

/* run_reader - feed in per the chunker into a fresh reader */
static void run_reader(const char *in, size_t len, const struct cfg *cfg, struct chunker *ch,
		       struct result *res)
{
	struct px_data_reader r;
	size_t off = 0, n;
	long got;
	int done = 0;

	memset(res, 0, sizeof(*res));
	if (cfg->raw)
		px_data_reader_init_raw(&r, cfg->line_max, cfg->size_max, cfg->normalize);
	else
		px_data_reader_init(&r, cfg->line_max, cfg->size_max, cfg->normalize);
	while (off < len && !done) {
		n = next_chunk(ch, off, len);
		got = px_data_reader_feed(&r, in + off, n, sink, res, &done);
		REQUIRE(got >= 0 && (size_t)got <= n, "feed returned %ld for %zu", got, n);
		REQUIRE(done || (size_t)got == n, "short count without done");
		off += (size_t)got;
	}
	if (len == 0) {
		REQUIRE(px_data_reader_feed(&r, in, 0, sink, res, &done) == 0, "empty feed");
	}
	if (cfg->raw)
		REQUIRE(px_data_reader_finish(&r, sink, res) == 0, "finish");
	res->flags = r.flags;
	res->size = r.size;
	res->lines = r.lines;
	res->consumed = off;
	res->done = done;
}

/* res_same - two results are identical (sink call count aside) */
static void res_same(const struct result *a, const struct result *b, const char *what)
{
	REQUIRE(a->out_len == b->out_len && bytes_eq(a->out, b->out, a->out_len),
		"%s: output differs (%zu vs %zu bytes)", what, a->out_len, b->out_len);
	REQUIRE(a->flags == b->flags, "%s: flags %#x vs %#x", what, a->flags, b->flags);
	REQUIRE(a->size == b->size, "%s: size %zu vs %zu", what, a->size, b->size);
	REQUIRE(a->lines == b->lines, "%s: lines %zu vs %zu", what, a->lines, b->lines);
	REQUIRE(a->consumed == b->consumed, "%s: consumed %zu vs %zu", what, a->consumed,
		b->consumed);
	REQUIRE(a->done == b->done, "%s: done %d vs %d", what, a->done, b->done);
}

/* run_all_chunkings - whole, then compare bytewise, every split, random */
static void run_all_chunkings(const char *in, size_t len, const struct cfg *cfg,
			      struct result *whole)
{
	struct chunker ch = { 0, 0, 0 };
	struct result other;
	char what[64];

	run_reader(in, len, cfg, &ch, whole);
	ch.kind = 1;
	run_reader(in, len, cfg, &ch, &other);
	res_same(whole, &other, "bytewise");
	res_free(&other);
	for (size_t k = 1; k < len; k++) {
		ch.kind = 2;
		ch.split = k;
		run_reader(in, len, cfg, &ch, &other);
		snprintf(what, sizeof(what), "split at %zu", k);
		res_same(whole, &other, what);
		res_free(&other);
	}
	for (uint64_t seed = 1; seed <= 8; seed++) {
		ch.kind = 3;
		ch.seed = seed * 0x9e3779b97f4a7c15u;
		run_reader(in, len, cfg, &ch, &other);
		snprintf(what, sizeof(what), "random seed %u", (unsigned)seed);
		res_same(whole, &other, what);
		res_free(&other);
	}
}

/* ---- reference model ------------------------------------------------- */

/* ref_out - one output byte, counted; stored only below size_max */
static void ref_out(struct result *res, const struct cfg *cfg, char c)
{
	res->size++;
	if (cfg->size_max && res->size > cfg->size_max)
		res->flags |= PX_DATA_TOO_BIG;
	else
		res_put(res, &c, 1);
}

/* ref_len - one more input byte on the line */
static void ref_len(struct result *res, const struct cfg *cfg, size_t *line)
{
	if (cfg->line_max && ++*line > cfg->line_max)
		res->flags |= PX_DATA_LONG_LINE;
}

/* ref_byte - one input byte (not a line-start dot); returns bytes used,
 * sets *bol to 1 after CRLF, 2 after a normalised bare end (a line for
 * counting only: a dot after it is text), 0 otherwise */
static size_t ref_byte(const char *in, size_t i, size_t len, const struct cfg *cfg,
		       struct result *res, size_t *line, int *bol)
{
	char c = in[i];

	*bol = 0;
	ref_len(res, cfg, line);
	if (c == '\r' && i + 1 < len && in[i + 1] == '\n') {
		ref_len(res, cfg, line);
		ref_out(res, cfg, '\r');
		ref_out(res, cfg, '\n');
		*bol = 1;
	} else if (c == '\r' || c == '\n') {
		res->flags |= c == '\r' ? PX_DATA_BARE_CR : PX_DATA_BARE_LF;
		if (cfg->normalize) {
			ref_out(res, cfg, '\r');
			ref_out(res, cfg, '\n');
			*bol = 2;
		} else {
			ref_out(res, cfg, c);
		}
	} else {
		if (c == 0)
			res->flags |= PX_DATA_NUL;
		ref_out(res, cfg, c);
	}
	if (*bol) {
		res->lines++;
		*line = 0;
	}
	return *bol == 1 ? 2 : 1;
}

/* ref_run - the whole-buffer model: input must hold its terminator */
static void ref_run(const char *in, size_t len, const struct cfg *cfg, struct result *res)
{
	size_t i = 0, line = 0;
	int bol = 1;

	memset(res, 0, sizeof(*res));
	while (i < len && cfg->raw)           /* BDAT: every byte is text */
		i += ref_byte(in, i, len, cfg, res, &line, &bol);
	while (i < len) {
		if (bol == 1 && in[i] == '.') {
			if (i + 2 < len && in[i + 1] == '\r' && in[i + 2] == '\n') {
				res->done = 1;
				res->consumed = i + 3;
				return;
			}
			ref_len(res, cfg, &line);
			i++;
			bol = 0;
			continue;
		}
		i += ref_byte(in, i, len, cfg, res, &line, &bol);
	}
	res->consumed = len;
}

/* ---- the vector table ------------------------------------------------ */

static const struct vec {
	const char *in;
	size_t len;
	int normalize;
	size_t line_max, size_max;
	const char *out;
	size_t out_len;
	unsigned flags;
	size_t consumed;      /* == len when not done */
	int done;
	size_t lines;
} vecs[] = {
	/* end of data */
	{ S(".\r\n"), 0, 0, 0, S(""), 0, 3, 1, 0 },
	{ S(".\r\nQUIT\r\n"), 0, 0, 0, S(""), 0, 3, 1, 0 },
	{ S("\r\n.\r\n"), 0, 0, 0, S("\r\n"), 0, 5, 1, 1 },
	{ S("hello\r\n.\r\n"), 0, 0, 0, S("hello\r\n"), 0, 10, 1, 1 },
	{ S("a\r\nb\r\n.\r\nNEXT"), 0, 0, 0, S("a\r\nb\r\n"), 0, 9, 1, 2 },
	{ S("a\r\n.\r\n.\r\n"), 0, 0, 0, S("a\r\n"), 0, 6, 1, 1 },
	{ S("a\r\n.\r\nRSET\r\nMAIL FROM:<>\r\n"), 0, 0, 0, S("a\r\n"), 0, 6, 1, 1 },
	/* not (yet) the end */
	{ S(""), 0, 0, 0, S(""), 0, 0, 0, 0 },
	{ S("hello"), 0, 0, 0, S("hello"), 0, 5, 0, 0 },
	{ S("hello\r\n"), 0, 0, 0, S("hello\r\n"), 0, 7, 0, 1 },
	{ S("hello\r\n."), 0, 0, 0, S("hello\r\n"), 0, 8, 0, 1 },
	{ S("hello\r\n.\r"), 0, 0, 0, S("hello\r\n"), 0, 9, 0, 1 },
	{ S("hello\r"), 0, 0, 0, S("hello\r"), 0, 6, 0, 0 },
	{ S("."), 0, 0, 0, S(""), 0, 1, 0, 0 },
	{ S(".\r"), 0, 0, 0, S(""), 0, 2, 0, 0 },
	{ S("hello.\r\n"), 0, 0, 0, S("hello.\r\n"), 0, 8, 0, 1 },
	{ S("a.\r\n.\r\n"), 0, 0, 0, S("a.\r\n"), 0, 7, 1, 1 },
	{ S("a\r\n .\r\n"), 0, 0, 0, S("a\r\n .\r\n"), 0, 7, 0, 2 },
	/* a message without a final CRLF cannot end: ".\r\n" needs a CRLF before it */
	{ S("hello.\r\n.\r\n"), 0, 0, 0, S("hello.\r\n"), 0, 11, 1, 1 },
	{ S("hello\n.\r\n"), 0, 0, 0, S("hello\n.\r\n"), PX_DATA_BARE_LF, 9, 0, 1 },
	{ S("hello\r.\r\n"), 0, 0, 0, S("hello\r.\r\n"), PX_DATA_BARE_CR, 9, 0, 1 },
	/* dot-unstuffing */
	{ S("..foo\r\n.\r\n"), 0, 0, 0, S(".foo\r\n"), 0, 10, 1, 1 },
	{ S("a\r\n..foo\r\n.\r\n"), 0, 0, 0, S("a\r\n.foo\r\n"), 0, 13, 1, 2 },
	{ S("a\r\n..\r\n.\r\n"), 0, 0, 0, S("a\r\n.\r\n"), 0, 10, 1, 2 },
	{ S("a\r\n...\r\n.\r\n"), 0, 0, 0, S("a\r\n..\r\n"), 0, 11, 1, 2 },
	{ S("..\r\n.\r\n"), 0, 0, 0, S(".\r\n"), 0, 7, 1, 1 },
	{ S("a\r\n.x\r\n.\r\n"), 0, 0, 0, S("a\r\nx\r\n"), 0, 10, 1, 2 },
	{ S("a\r\n.\r\n"), 0, 0, 0, S("a\r\n"), 0, 6, 1, 1 },
	{ S("a\r\nb.c\r\n.\r\n"), 0, 0, 0, S("a\r\nb.c\r\n"), 0, 11, 1, 2 },
	{ S("..\r\n..\r\n.\r\n"), 0, 0, 0, S(".\r\n.\r\n"), 0, 11, 1, 2 },
	/* normalisation of bare line ends, and unstuffing after them */
	{ S("a\nb\r\n.\r\n"), 1, 0, 0, S("a\r\nb\r\n"), PX_DATA_BARE_LF, 8, 1, 2 },
	{ S("a\rb\r\n.\r\n"), 1, 0, 0, S("a\r\nb\r\n"), PX_DATA_BARE_CR, 8, 1, 2 },
	{ S("a\n..b\r\n.\r\n"), 1, 0, 0, S("a\r\n..b\r\n"), PX_DATA_BARE_LF, 10, 1, 2 },
	{ S("a\n..b\r\n.\r\n"), 0, 0, 0, S("a\n..b\r\n"), PX_DATA_BARE_LF, 10, 1, 1 },
	{ S("a\r\r\n.\r\n"), 0, 0, 0, S("a\r\r\n"), PX_DATA_BARE_CR, 7, 1, 1 },
	{ S("a\r\r\n.\r\n"), 1, 0, 0, S("a\r\n\r\n"), PX_DATA_BARE_CR, 7, 1, 2 },
	{ S("\n\n.\r\n\r\n.\r\n"), 1, 0, 0, S("\r\n\r\n.\r\n\r\n"), PX_DATA_BARE_LF, 10, 1, 4 },
	{ S("\r\r\r\n.\r\n"), 1, 0, 0, S("\r\n\r\n\r\n"), PX_DATA_BARE_CR, 7, 1, 3 },
	{ S("\n.\r\n"), 1, 0, 0, S("\r\n.\r\n"), PX_DATA_BARE_LF, 4, 0, 2 },
	/* normalisation keeps every dot of the text: after a bare end no line
	 * started for SMTP, so the client stuffed nothing there */
	{ S("a\n.\nb\r\n.\r\n"), 1, 0, 0, S("a\r\n.\r\nb\r\n"), PX_DATA_BARE_LF, 10, 1, 3 },
	{ S("a\r.\rb\r\n.\r\n"), 1, 0, 0, S("a\r\n.\r\nb\r\n"), PX_DATA_BARE_CR, 10, 1, 3 },
	{ S("a\n...\r\n.\r\n"), 1, 0, 0, S("a\r\n...\r\n"), PX_DATA_BARE_LF, 10, 1, 2 },
	{ S("a\r\n..\nb\r\n.\r\n"), 1, 0, 0, S("a\r\n.\r\nb\r\n"), PX_DATA_BARE_LF, 12, 1,
	  3 },
	{ S("\n..x\r\n.\r\n"), 1, 0, 0, S("\r\n..x\r\n"), PX_DATA_BARE_LF, 9, 1, 2 },
	/* NUL */
	{ S("\x00\r\n.\r\n"), 0, 0, 0, S("\x00\r\n"), PX_DATA_NUL, 6, 1, 1 },
	{ S("a\x00" "b\r\n.\r\n"), 0, 0, 0, S("a\x00" "b\r\n"), PX_DATA_NUL, 8, 1, 1 },
	{ S("0123456789\x00" "0123456789\r\n.\r\n"), 0, 0, 0,
	  S("0123456789\x00" "0123456789\r\n"), PX_DATA_NUL, 26, 1, 1 },
	{ S(".\x00\r\n.\r\n"), 0, 0, 0, S("\x00\r\n"), PX_DATA_NUL, 7, 1, 1 },
	/* long lines: limit 10 including CRLF, counted as sent (stuffing dot too) */
	{ S("12345678\r\n.\r\n"), 0, 10, 0, S("12345678\r\n"), 0, 13, 1, 1 },
	{ S("123456789\r\n.\r\n"), 0, 10, 0, S("123456789\r\n"), PX_DATA_LONG_LINE, 14, 1, 1 },
	{ S("a\r\n12345678\r\nb\r\n.\r\n"), 0, 10, 0, S("a\r\n12345678\r\nb\r\n"), 0, 19, 1, 3 },
	{ S("a\r\n123456789\r\nb\r\n.\r\n"), 0, 10, 0, S("a\r\n123456789\r\nb\r\n"),
	  PX_DATA_LONG_LINE, 20, 1, 3 },
	{ S("..234567\r\n.\r\n"), 0, 10, 0, S(".234567\r\n"), 0, 13, 1, 1 },
	{ S("..2345678\r\n.\r\n"), 0, 10, 0, S(".2345678\r\n"), PX_DATA_LONG_LINE, 14, 1, 1 },
	{ S("123456789012345"), 0, 10, 0, S("123456789012345"), PX_DATA_LONG_LINE, 15, 0, 0 },
	{ S("1234567890"), 0, 10, 0, S("1234567890"), 0, 10, 0, 0 },
	{ S("12345678\r\r\n.\r\n"), 0, 10, 0, S("12345678\r\r\n"),
	  PX_DATA_LONG_LINE | PX_DATA_BARE_CR, 14, 1, 1 },
	{ S("12345678\r\r\n.\r\n"), 1, 10, 0, S("12345678\r\n\r\n"), PX_DATA_BARE_CR, 14, 1, 2 },
	{ S("123456789\n\r\n.\r\n"), 0, 10, 0, S("123456789\n\r\n"),
	  PX_DATA_LONG_LINE | PX_DATA_BARE_LF, 15, 1, 1 },
	{ S("123456789\n\r\n.\r\n"), 1, 10, 0, S("123456789\r\n\r\n"), PX_DATA_BARE_LF, 15, 1, 2 },
	{ S(".\r\n"), 0, 2, 0, S(""), 0, 3, 1, 0 },
	/* size limit: size counts all output, the sink sees at most size_max */
	{ S("hello\r\n.\r\n"), 0, 0, 7, S("hello\r\n"), 0, 10, 1, 1 },
	{ S("hello\r\n.\r\n"), 0, 0, 6, S("hello\r"), PX_DATA_TOO_BIG, 10, 1, 1 },
	{ S("hello\r\n.\r\n"), 0, 0, 1, S("h"), PX_DATA_TOO_BIG, 10, 1, 1 },
	{ S("a\r\n..b\r\n.\r\n"), 0, 0, 6, S("a\r\n.b\r"), PX_DATA_TOO_BIG, 11, 1, 2 },
	{ S("a\nb\r\n.\r\n"), 1, 0, 3, S("a\r\n"), PX_DATA_TOO_BIG | PX_DATA_BARE_LF, 8, 1, 2 },
	{ S("a\nb\r\n.\r\n"), 1, 0, 2, S("a\r"), PX_DATA_TOO_BIG | PX_DATA_BARE_LF, 8, 1, 2 },
	{ S("\r\n.\r\n"), 0, 0, 2, S("\r\n"), 0, 5, 1, 1 },
};


START_TEST(test_vectors)
{
	const struct vec *v = &vecs[_i];
	struct cfg cfg = { v->line_max, v->size_max, v->normalize, 0 };
	struct result res;

	run_all_chunkings(v->in, v->len, &cfg, &res);
	ck_assert_msg(res.out_len == v->out_len && bytes_eq(res.out, v->out, v->out_len),
		      "vector %d: output differs (%zu bytes, want %zu)", _i, res.out_len,
		      v->out_len);
	ck_assert_msg(res.flags == v->flags, "vector %d: flags %#x, want %#x", _i, res.flags,
		      v->flags);
	ck_assert_msg(res.done == v->done, "vector %d: done %d", _i, res.done);
	ck_assert_msg(res.consumed == v->consumed, "vector %d: consumed %zu, want %zu", _i,
		      res.consumed, v->consumed);
	ck_assert_msg(res.lines == v->lines, "vector %d: lines %zu, want %zu", _i, res.lines,
		      v->lines);
	if (!v->size_max)
		ck_assert_uint_eq(res.size, v->out_len);
	if (res.flags & PX_DATA_TOO_BIG)
		ck_assert_uint_gt(res.size, v->size_max);
	if (v->done) {            /* the table and the model agree */
		struct result model;

		ref_run(v->in, v->len, &cfg, &model);
		res_same(&res, &model, "model");
		res_free(&model);
	}
	res_free(&res);
}
END_TEST

START_TEST(test_size_counts_past_max)
{
	struct cfg cfg = { 0, 3, 0, 0 };
	struct result res;

	run_all_chunkings(S("hello\r\n..x\r\n.\r\n"), &cfg, &res);
	ck_assert_uint_eq(res.size, 11);        /* "hello\r\n.x\r\n" */
	ck_assert_uint_eq(res.out_len, 3);
	ck_assert(res.flags & PX_DATA_TOO_BIG);
	ck_assert(res.done);
	res_free(&res);
}
END_TEST

/* ---- the smuggling table --------------------------------------------- */

static const struct smuggle {
	const char *seq;
	size_t len;
	unsigned flags;           /* must include this flag */
	const char *out_raw;      /* message body output, normalize off */
	size_t out_raw_len;
	const char *out_norm;     /* normalize on */
	size_t out_norm_len;
} smuggles[] = {
	{ S("\n.\n"), PX_DATA_BARE_LF, S("hello\n.\nworld\r\n"), S("hello\r\n.\r\nworld\r\n") },
	{ S("\r.\r"), PX_DATA_BARE_CR, S("hello\r.\rworld\r\n"), S("hello\r\n.\r\nworld\r\n") },
	{ S("\r.\n"), PX_DATA_BARE_CR | PX_DATA_BARE_LF, S("hello\r.\nworld\r\n"),
	  S("hello\r\n.\r\nworld\r\n") },
	{ S("\n.\r"), PX_DATA_BARE_LF | PX_DATA_BARE_CR, S("hello\n.\rworld\r\n"),
	  S("hello\r\n.\r\nworld\r\n") },
	{ S("\n.\r\n"), PX_DATA_BARE_LF, S("hello\n.\r\nworld\r\n"), S("hello\r\n.\r\nworld\r\n") },
	{ S("\r\n.\n"), PX_DATA_BARE_LF, S("hello\r\n\nworld\r\n"), S("hello\r\n\r\nworld\r\n") },
	{ S("\r.\r\n"), PX_DATA_BARE_CR, S("hello\r.\r\nworld\r\n"), S("hello\r\n.\r\nworld\r\n") },
	{ S("\r\n.\r"), PX_DATA_BARE_CR, S("hello\r\n\rworld\r\n"), S("hello\r\n\r\nworld\r\n") },
	{ S("\r\n\x00.\r\n"), PX_DATA_NUL, S("hello\r\n\x00.\r\nworld\r\n"),
	  S("hello\r\n\x00.\r\nworld\r\n") },
	{ S("\r\n.\x00\r\n"), PX_DATA_NUL, S("hello\r\n\x00\r\nworld\r\n"),
	  S("hello\r\n\x00\r\nworld\r\n") },
	{ S("\r\n.\r\r\n"), PX_DATA_BARE_CR, S("hello\r\n\r\r\nworld\r\n"),
	  S("hello\r\n\r\n\r\nworld\r\n") },
	{ S("\r\r\n.\r\r\n"), PX_DATA_BARE_CR, S("hello\r\r\n\r\r\nworld\r\n"),
	  S("hello\r\n\r\n\r\n\r\nworld\r\n") },
	/* more of the family */
	{ S("\n.\n\r\n"), PX_DATA_BARE_LF, S("hello\n.\n\r\nworld\r\n"),
	  S("hello\r\n.\r\n\r\nworld\r\n") },
	{ S("\r\n.\n\r\n"), PX_DATA_BARE_LF, S("hello\r\n\n\r\nworld\r\n"),
	  S("hello\r\n\r\n\r\nworld\r\n") },
	{ S("\r\n.\r\r"), PX_DATA_BARE_CR, S("hello\r\n\r\rworld\r\n"),
	  S("hello\r\n\r\n\r\nworld\r\n") },
	{ S("\r\n\r.\r\n"), PX_DATA_BARE_CR, S("hello\r\n\r.\r\nworld\r\n"),
	  S("hello\r\n\r\n.\r\nworld\r\n") },
	{ S("\r\n\n.\r\n"), PX_DATA_BARE_LF, S("hello\r\n\n.\r\nworld\r\n"),
	  S("hello\r\n\r\n.\r\nworld\r\n") },
};

/* smuggle_check - one smuggling sequence in a body, in one mode */
static void smuggle_check(int idx, int normalize)
{
	static const char head[] = "Subject: x\r\n\r\nhello";
	static const char tail[] = "world\r\n.\r\nQUIT\r\n";
	static const char ohead[] = "Subject: x\r\n\r\n";
	const struct smuggle *sm = &smuggles[idx];
	char in[128], want[128];
	struct cfg cfg = { 1000, 0, normalize, 0 };
	struct result res;
	size_t n = 0, w = 0;

	memcpy(in + n, head, sizeof(head) - 1), n += sizeof(head) - 1;
	memcpy(in + n, sm->seq, sm->len), n += sm->len;
	memcpy(in + n, tail, sizeof(tail) - 1), n += sizeof(tail) - 1;
	memcpy(want + w, ohead, sizeof(ohead) - 1), w += sizeof(ohead) - 1;
	memcpy(want + w, normalize ? sm->out_norm : sm->out_raw,
	       normalize ? sm->out_norm_len : sm->out_raw_len);
	w += normalize ? sm->out_norm_len : sm->out_raw_len;

	run_all_chunkings(in, n, &cfg, &res);
	ck_assert_msg(res.done, "smuggle %d: no end at the real terminator", idx);
	ck_assert_msg(res.consumed == n - 6, "smuggle %d: consumed %zu, want %zu (ended early?)",
		      idx, res.consumed, n - 6);
	ck_assert_msg((res.flags & sm->flags) == sm->flags, "smuggle %d: flags %#x, want %#x",
		      idx, res.flags, sm->flags);
	ck_assert_msg(res.out_len == w && bytes_eq(res.out, want, w),
		      "smuggle %d normalize %d: output differs", idx, normalize);
	res_free(&res);
}

START_TEST(test_smuggling)
{
	smuggle_check(_i, 0);
	smuggle_check(_i, 1);
}
END_TEST

START_TEST(test_smuggling_at_start)
{
	/* the same sequences as the very first bytes of DATA */
	struct cfg cfg = { 0, 0, 0, 0 };
	struct result res;
	char in[64];
	size_t n;

	for (size_t i = 0; i < N_ELEM(smuggles); i++) {
		const struct smuggle *sm = &smuggles[i];

		memcpy(in, sm->seq, sm->len);
		memcpy(in + sm->len, "x\r\n.\r\n", 6);
		n = sm->len + 6;
		for (cfg.normalize = 0; cfg.normalize <= 1; cfg.normalize++) {
			run_all_chunkings(in, n, &cfg, &res);
			ck_assert_msg(res.done && res.consumed == n, "start %zu: ended early", i);
			ck_assert_msg(res.flags & sm->flags, "start %zu: no flag", i);
			res_free(&res);
		}
	}
}
END_TEST

/* ---- raw mode (BDAT) ------------------------------------------------- */

static const struct rawvec {
	const char *in;
	size_t len;
	int normalize;
	size_t line_max, size_max;
	const char *out;
	size_t out_len;
	unsigned flags;
	size_t lines;
} rawvecs[] = {
	/* no unstuffing and no terminator: dots and ".CRLF" are text */
	{ S(""), 0, 0, 0, S(""), 0, 0 },
	{ S(".\r\n"), 0, 0, 0, S(".\r\n"), 0, 1 },
	{ S("..a\r\n.\r\nQUIT\r\n"), 0, 0, 0, S("..a\r\n.\r\nQUIT\r\n"), 0, 3 },
	{ S("a\r\n.\r\n"), 1, 0, 0, S("a\r\n.\r\n"), 0, 2 },
	/* bare line ends: flagged; normalised to CRLF, dots kept */
	{ S("a\nb\r\n"), 0, 0, 0, S("a\nb\r\n"), PX_DATA_BARE_LF, 1 },
	{ S("a\nb\r\n"), 1, 0, 0, S("a\r\nb\r\n"), PX_DATA_BARE_LF, 2 },
	{ S("a\rb\r\n"), 1, 0, 0, S("a\r\nb\r\n"), PX_DATA_BARE_CR, 2 },
	{ S("a\n.\nb"), 1, 0, 0, S("a\r\n.\r\nb"), PX_DATA_BARE_LF, 2 },
	{ S("\r\r\n"), 1, 0, 0, S("\r\n\r\n"), PX_DATA_BARE_CR, 2 },
	/* a CR as the very last byte is bare (px_data_reader_finish) */
	{ S("abc\r"), 0, 0, 0, S("abc\r"), PX_DATA_BARE_CR, 0 },
	{ S("abc\r"), 1, 0, 0, S("abc\r\n"), PX_DATA_BARE_CR, 1 },
	{ S("abc\r\n"), 0, 0, 0, S("abc\r\n"), 0, 1 },
	/* NUL, line length (as sent: a leading dot counts), size */
	{ S("a\x00" "b\r\n"), 0, 0, 0, S("a\x00" "b\r\n"), PX_DATA_NUL, 1 },
	{ S("12345678\r\n"), 0, 10, 0, S("12345678\r\n"), 0, 1 },
	{ S("123456789\r\n"), 0, 10, 0, S("123456789\r\n"), PX_DATA_LONG_LINE, 1 },
	{ S("..3456789\r\n"), 0, 10, 0, S("..3456789\r\n"), PX_DATA_LONG_LINE, 1 },
	{ S("hello\r\n"), 0, 0, 6, S("hello\r"), PX_DATA_TOO_BIG, 1 },
	{ S("a\nb\r\n"), 1, 0, 3, S("a\r\n"), PX_DATA_TOO_BIG | PX_DATA_BARE_LF, 2 },
};

START_TEST(test_raw_vectors)
{
	const struct rawvec *v = &rawvecs[_i];
	struct cfg cfg = { v->line_max, v->size_max, v->normalize, 1 };
	struct result res, model;

	run_all_chunkings(v->in, v->len, &cfg, &res);
	ck_assert_msg(res.out_len == v->out_len && bytes_eq(res.out, v->out, v->out_len),
		      "raw vector %d: output differs (%zu bytes, want %zu)", _i, res.out_len,
		      v->out_len);
	ck_assert_msg(res.flags == v->flags, "raw vector %d: flags %#x, want %#x", _i, res.flags,
		      v->flags);
	ck_assert_msg(!res.done && res.consumed == v->len, "raw vector %d: ended", _i);
	ck_assert_msg(res.lines == v->lines, "raw vector %d: lines %zu, want %zu", _i, res.lines,
		      v->lines);
	ref_run(v->in, v->len, &cfg, &model);
	res_same(&res, &model, "raw model");
	res_free(&model);
	res_free(&res);
}
END_TEST

START_TEST(test_raw_cr_across_chunks)
{
	/* the CR of a CRLF at the end of one chunk, its LF opening the next:
	 * a real line end, whatever the split (BDAT chunks split anywhere) */
	struct px_data_reader r;
	struct result res;
	int done = 0;

	memset(&res, 0, sizeof(res));
	px_data_reader_init_raw(&r, 0, 0, 0);
	ck_assert_int_eq(px_data_reader_feed(&r, S("line\r"), sink, &res, &done), 5);
	ck_assert_int_eq(px_data_reader_feed(&r, S("\nnext\r"), sink, &res, &done), 6);
	ck_assert_int_eq(px_data_reader_feed(&r, S("\n"), sink, &res, &done), 1);
	ck_assert_int_eq(px_data_reader_finish(&r, sink, &res), 0);
	ck_assert_uint_eq(r.flags, 0);
	ck_assert_uint_eq(r.lines, 2);
	ck_assert_int_eq(done, 0);
	ck_assert(res.out_len == 12 && memcmp(res.out, "line\r\nnext\r\n", 12) == 0);
	res_free(&res);
}
END_TEST

/* ---- long lines under the default bound ----------------------------- */

#define MIB_LINE ((size_t)1 << 20)   /* limits.text_line_max default */

/* long_line_input - one line of n bytes (CRLF included), then ".CRLF" */
static char *long_line_input(size_t n)
{
	char *in = malloc(n + 3);

	if (in == NULL)
		return NULL;
	memset(in, 'y', n - 2);
	memcpy(in + n - 2, "\r\n.\r\n", 5);
	return in;
}

START_TEST(test_long_line_default)
{
	/* 5,000 bytes (and exactly the bound) pass whole; one byte more is flagged */
	static const size_t sizes[] = { 5000, MIB_LINE, MIB_LINE + 1 };
	struct cfg cfg = { MIB_LINE, 0, 0, 0 };
	struct chunker ch = { 0, 0, 0 };
	struct result res;

	for (size_t i = 0; i < N_ELEM(sizes); i++) {
		char *in = long_line_input(sizes[i]);

		ck_assert_ptr_nonnull(in);
		run_reader(in, sizes[i] + 3, &cfg, &ch, &res);
		ck_assert(res.done);
		ck_assert_uint_eq(res.out_len, sizes[i]);
		ck_assert(bytes_eq(res.out, in, sizes[i]));     /* byte for byte */
		ck_assert_uint_eq(res.flags, sizes[i] > MIB_LINE ? PX_DATA_LONG_LINE : 0u);
		ck_assert_uint_eq(res.calls, 1);                /* one run: nothing held */
		res_free(&res);
		cfg.raw = 1;                                    /* BDAT: the same limit */
		run_reader(in, sizes[i], &cfg, &ch, &res);
		ck_assert_uint_eq(res.flags, sizes[i] > MIB_LINE ? PX_DATA_LONG_LINE : 0u);
		res_free(&res);
		cfg.raw = 0;
		free(in);
	}
}
END_TEST

START_TEST(test_long_line_streams)
{
	/* fed in 4 KiB chunks, a 1 MiB line comes out as it goes in: one sink
	 * run per chunk, never held back to find the end of the line */
	size_t n = MIB_LINE, off, chunk = 4096;
	char *in = long_line_input(n);
	struct px_data_reader r;
	struct result res;
	int done = 0;

	ck_assert_ptr_nonnull(in);
	memset(&res, 0, sizeof(res));
	px_data_reader_init(&r, MIB_LINE, 0, 0);
	for (off = 0; off + chunk <= n - 2; off += chunk) {
		ck_assert_int_eq(px_data_reader_feed(&r, in + off, chunk, sink, &res, &done),
				 (long)chunk);
		ck_assert_uint_eq(res.out_len, off + chunk);
	}
	ck_assert_int_eq(px_data_reader_feed(&r, in + off, n + 3 - off, sink, &res, &done),
			 (long)(n + 3 - off));
	ck_assert(done);
	ck_assert_uint_eq(res.out_len, n);
	ck_assert_uint_eq(r.flags, 0);
	res_free(&res);
	free(in);
}
END_TEST

/* ---- behaviour of the API ------------------------------------------- */

/* failing_sink - fails on its second call */
static int failing_sink(void *arg, const char *p, size_t n)
{
	int *calls = arg;

	return ++*calls >= 2 ? -1 : 0;
}

START_TEST(test_sink_failure)
{
	struct px_data_reader r;
	int calls = 0, done = 0;

	px_data_reader_init(&r, 0, 0, 0);
	ck_assert_int_eq(px_data_reader_feed(&r, S("abc\r\n"), failing_sink, &calls, &done), 5);
	ck_assert_int_eq(px_data_reader_feed(&r, S("..x\r\n.\r\n"), failing_sink, &calls, &done),
			 -1);
}
END_TEST

START_TEST(test_feed_after_done)
{
	struct px_data_reader r;
	struct result res;
	int done = 0;

	memset(&res, 0, sizeof(res));
	px_data_reader_init(&r, 0, 0, 0);
	ck_assert_int_eq(px_data_reader_feed(&r, S("a\r\n.\r\nNOOP\r\n"), sink, &res, &done), 6);
	ck_assert_int_eq(done, 1);
	done = 0;
	ck_assert_int_eq(px_data_reader_feed(&r, S("NOOP\r\n"), sink, &res, &done), 0);
	ck_assert_int_eq(done, 1);
	ck_assert_uint_eq(res.out_len, 3);
	res_free(&res);
}
END_TEST

START_TEST(test_init_resets)
{
	struct px_data_reader r;
	struct result res;
	int done = 0;

	memset(&res, 0, sizeof(res));
	px_data_reader_init(&r, 5, 3, 1);
	ck_assert_int_eq(px_data_reader_feed(&r, S("abcdefgh\n\x00.\r\n"), sink, &res, &done),
			 13);
	ck_assert_uint_ne(r.flags, 0);
	px_data_reader_init(&r, 5, 3, 1);
	ck_assert_uint_eq(r.flags, 0);
	ck_assert_uint_eq(r.size, 0);
	ck_assert_uint_eq(r.lines, 0);
	ck_assert_uint_eq(r.text_line_max, 5);
	ck_assert_uint_eq(r.size_max, 3);
	ck_assert_int_eq(r.normalize_bare, 1);
	ck_assert_int_eq(px_data_reader_feed(&r, S(".\r\n"), sink, &res, &done), 3);
	ck_assert_int_eq(done, 1);
	res_free(&res);
}
END_TEST

START_TEST(test_long_runs)
{
	/* 20000 lines of 78 characters, no stuffing: one sink call for all */
	size_t nl = 20000, len = nl * 80 + 3, k = 0;
	char *in = malloc(len);
	struct cfg cfg = { 1000, 0, 0, 0 };
	struct chunker ch = { 0, 0, 0 };
	struct result res;

	ck_assert_ptr_nonnull(in);
	for (size_t i = 0; i < nl; i++) {
		for (int j = 0; j < 78; j++)
			in[k++] = (char)('A' + (i + (size_t)j) % 26);
		in[k++] = '\r';
		in[k++] = '\n';
	}
	memcpy(in + k, ".\r\n", 3);
	run_reader(in, len, &cfg, &ch, &res);
	ck_assert(res.done);
	ck_assert_uint_eq(res.consumed, len);
	ck_assert_uint_eq(res.lines, nl);
	ck_assert_uint_eq(res.out_len, len - 3);
	ck_assert_uint_eq(res.calls, 1);
	ck_assert_uint_eq(res.flags, 0);
	/* in random small chunks: same output */
	res_free(&res);
	ch.kind = 3;
	ch.seed = 42;
	run_reader(in, len, &cfg, &ch, &res);
	ck_assert_uint_eq(res.out_len, len - 3);
	res_free(&res);
	free(in);
}
END_TEST

START_TEST(test_long_line_big)
{
	/* a 1 MB line with no line end: flagged, passed on, no end */
	size_t len = 1 << 20;
	char *in = malloc(len);
	struct cfg cfg = { 1000, 0, 0, 0 };
	struct chunker ch = { 3, 0, 7 };
	struct result res;

	ck_assert_ptr_nonnull(in);
	memset(in, 'x', len);
	run_reader(in, len, &cfg, &ch, &res);
	ck_assert(!res.done);
	ck_assert_uint_eq(res.out_len, len);
	ck_assert_uint_eq(res.flags, PX_DATA_LONG_LINE);
	res_free(&res);
	free(in);
}
END_TEST

/* ---- reference model comparisons ------------------------------------ */

static const struct cfg ref_cfgs[] = {
	{ 0, 0, 0, 0 }, { 0, 0, 1, 0 }, { 4, 0, 0, 0 }, { 4, 0, 1, 0 }, { 0, 5, 0, 0 },
	{ 3, 4, 1, 0 }, { 1, 0, 0, 0 }, { 2, 1, 1, 0 },
	{ 0, 0, 0, 1 }, { 0, 0, 1, 1 }, { 4, 0, 1, 1 }, { 3, 4, 0, 1 },
};

/* compare_ref - reader (every chunking) against the model, input + terminator */
static void compare_ref(const char *body, size_t n, const struct cfg *cfg)
{
	char in[128];
	struct result got, want;

	memcpy(in, body, n);
	memcpy(in + n, "\r\n.\r\nX", 6);
	ref_run(in, n + 6, cfg, &want);
	run_all_chunkings(in, n + 6, cfg, &got);
	res_same(&got, &want, "reference");
	res_free(&got);
	res_free(&want);
}

START_TEST(test_exhaustive)
{
	/* every body of length _i over the alphabet, in every configuration */
	static const char alpha[] = { '\r', '\n', '.', 'a', '\0' };
	size_t n = (size_t)_i, total = 1;
	char body[16];

	for (size_t i = 0; i < n; i++)
		total *= sizeof(alpha);
	for (size_t code = 0; code < total; code++) {
		size_t c = code;

		for (size_t i = 0; i < n; i++, c /= sizeof(alpha))
			body[i] = alpha[c % sizeof(alpha)];
		for (size_t k = 0; k < N_ELEM(ref_cfgs); k++)
			compare_ref(body, n, &ref_cfgs[k]);
	}
}
END_TEST

START_TEST(test_random)
{
	static const char alpha[] = "\r\r\r\n\n..\x00" "abcdefgh";
	uint64_t seed = 0x1234567887654321u;
	char body[96];

	for (int iter = 0; iter < 3000; iter++) {
		size_t n = (size_t)(rnd(&seed) % sizeof(body));

		for (size_t i = 0; i < n; i++)
			body[i] = alpha[rnd(&seed) % (sizeof(alpha) - 1)];
		compare_ref(body, n, &ref_cfgs[iter % N_ELEM(ref_cfgs)]);
	}
}
END_TEST

/* ---- suite ----------------------------------------------------------- */

/* reader_suite - every test case above */
static Suite *reader_suite(void)
{
	Suite *s = suite_create("data_reader");
	TCase *tc = tcase_create("core");
	TCase *slow = tcase_create("model");

	tcase_add_loop_test(tc, test_vectors, 0, (int)N_ELEM(vecs));
	tcase_add_test(tc, test_size_counts_past_max);
	tcase_add_loop_test(tc, test_smuggling, 0, (int)N_ELEM(smuggles));
	tcase_add_test(tc, test_smuggling_at_start);
	tcase_add_test(tc, test_sink_failure);
	tcase_add_test(tc, test_feed_after_done);
	tcase_add_test(tc, test_init_resets);
	tcase_add_test(tc, test_long_runs);
	tcase_add_test(tc, test_long_line_big);
	tcase_add_loop_test(tc, test_raw_vectors, 0, (int)N_ELEM(rawvecs));
	tcase_add_test(tc, test_raw_cr_across_chunks);
	tcase_add_test(tc, test_long_line_default);
	tcase_add_test(tc, test_long_line_streams);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(slow, test_exhaustive, 0, 7);
	tcase_add_test(slow, test_random);
	tcase_set_timeout(slow, 600);
	suite_add_tcase(s, slow);
	return s;
}

/* main - run the suite; nonzero exit on any failure */
int main(void)
{
	SRunner *sr = srunner_create(reader_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
