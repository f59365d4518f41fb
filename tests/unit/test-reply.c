/*
 * NAME
 *	test-reply - unit tests for proxy/reply.c
 * DESCRIPTION
 *	Wire forms of our replies and of backend replies (enhanced codes
 *	added where missing), and the one-line summary for logs: every line
 *	of a multi-line reply is kept (Exim's queue id may be on a later one),
 *	joined with " / ", and cut to fit. The reply reader (relay, AUTH
 *	check, probe): multi-line replies joined, split reads, pipelined
 *	replies one at a time, changed codes, garbage and over-long lines.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "proxy/reply.h"
#include "proxy/reply_reader.h"

START_TEST(test_set)
{
	struct px_reply r;

	px_reply_set(&r, 250, "2.0.0", "Ok: %d", 7);
	ck_assert_str_eq(r.wire, "250 2.0.0 Ok: 7\r\n");
	ck_assert_uint_eq(r.len, strlen(r.wire));
	ck_assert_int_eq(r.code, 250);
	px_reply_set(&r, 354, "", "go");
	ck_assert_str_eq(r.wire, "354 go\r\n");
}
END_TEST

START_TEST(test_from_lines)
{
	struct px_reply r;

	px_reply_from_lines(&r, 250, "Accepted\n2.6.0 OK id=1rXyZa-0004Qm-2B", "0.0");
	ck_assert_str_eq(r.wire, "250-2.0.0 Accepted\r\n250 2.6.0 OK id=1rXyZa-0004Qm-2B\r\n");
}
END_TEST

START_TEST(test_summary_one_line)
{
	struct px_reply r;
	char out[256];

	px_reply_set(&r, 250, "2.0.0", "Ok: queued as 4XyZ");
	ck_assert_str_eq(px_reply_summary(&r, out, sizeof(out)), "250 2.0.0 Ok: queued as 4XyZ");
}
END_TEST

START_TEST(test_summary_multi_line)
{
	struct px_reply r;
	char out[256];

	px_reply_from_lines(&r, 250, "Accepted\nOK id=1rXyZa-0004Qm-2B", "0.0");
	ck_assert_str_eq(px_reply_summary(&r, out, sizeof(out)),
			 "250 2.0.0 Accepted / 2.0.0 OK id=1rXyZa-0004Qm-2B");
	px_reply_from_lines(&r, 451, "one\ntwo\nthree", "0.0");
	ck_assert_str_eq(px_reply_summary(&r, out, sizeof(out)),
			 "451 4.0.0 one / 4.0.0 two / 4.0.0 three");
}
END_TEST

START_TEST(test_summary_cut)
{
	struct px_reply r;
	char out[64];

	px_reply_from_lines(&r, 250, "Accepted\nOK id=1rXyZa-0004Qm-2B", "0.0");
	px_reply_summary(&r, out, 16);
	ck_assert_str_eq(out, "250 2.0.0 Accep");
	px_reply_summary(&r, out, 24);
	ck_assert_str_eq(out, "250 2.0.0 Accepted / 2.");
	px_reply_summary(&r, out, 1);
	ck_assert_str_eq(out, "");
}
END_TEST

/* reply_suite - every test case above */
/* feed - lines from s through the reader; the status of the last call */
static int feed(struct px_reply_reader *rr, const char *s)
{
	const char *nl;
	int rc = PX_RR_MORE;

	for (; (nl = strstr(s, "\r\n")) != NULL; s = nl + 2)
		rc = px_reply_reader_line(rr, s, (size_t)(nl - s));
	return rc;
}

START_TEST(test_reader_lines)
{
	struct px_reply_reader rr;

	px_reply_reader_init(&rr);
	ck_assert_int_eq(feed(&rr, "250-mx.test hi\r\n250-PIPELINING\r\n"), PX_RR_MORE);
	ck_assert_int_eq(feed(&rr, "250 SIZE 1000\r\n"), PX_RR_DONE);
	ck_assert_int_eq(rr.code, 250);
	ck_assert_str_eq(rr.text, "mx.test hi\nPIPELINING\nSIZE 1000");
	/* the next reply starts anew; a bare code is a whole reply */
	ck_assert_int_eq(feed(&rr, "354\r\n"), PX_RR_DONE);
	ck_assert_int_eq(rr.code, 354);
	ck_assert_str_eq(rr.text, "");
	/* a code that changes inside a reply, or garbage, is not SMTP */
	ck_assert_int_eq(feed(&rr, "250-a\r\n251 b\r\n"), PX_RR_BAD);
	px_reply_reader_init(&rr);
	ck_assert_int_eq(feed(&rr, "hello\r\n"), PX_RR_BAD);
	px_reply_reader_init(&rr);
	ck_assert_int_eq(feed(&rr, "250\x01x\r\n"), PX_RR_BAD);
}
END_TEST

START_TEST(test_reader_evbuffer)
{
	struct px_reply_reader rr;
	struct evbuffer *in = evbuffer_new();
	const char *why = NULL;
	char big[5000];

	px_reply_reader_init(&rr);
	evbuffer_add_printf(in, "250-one\r\n25");
	ck_assert_int_eq(px_reply_reader_next(&rr, in, 4096, &why), PX_RR_MORE);
	evbuffer_add_printf(in, "0 two\r\n550 5.1.1 no\r\n");
	ck_assert_int_eq(px_reply_reader_next(&rr, in, 4096, &why), PX_RR_DONE);
	ck_assert_str_eq(rr.text, "one\ntwo");
	ck_assert_int_eq(px_reply_reader_next(&rr, in, 4096, &why), PX_RR_DONE);   /* pipelined */
	ck_assert_int_eq(rr.code, 550);
	ck_assert_str_eq(rr.text, "5.1.1 no");
	ck_assert_int_eq(px_reply_reader_next(&rr, in, 4096, &why), PX_RR_MORE);
	/* a line past the bound, complete or not, is an error */
	memset(big, 'x', sizeof(big));
	evbuffer_add(in, "250 ", 4);
	evbuffer_add(in, big, sizeof(big));
	ck_assert_int_eq(px_reply_reader_next(&rr, in, 4096, &why), PX_RR_BAD);
	ck_assert_str_eq(why, "reply line too long");
	evbuffer_free(in);
}
END_TEST

START_TEST(test_reader_cut)
{
	struct px_reply_reader rr;
	char line[600];
	int i, rc = PX_RR_MORE;

	px_reply_reader_init(&rr);
	memset(line, 'y', sizeof(line));
	memcpy(line, "250-", 4);
	for (i = 0; i < 10; i++)           /* 10 x 596 bytes: more than PX_REPLY_MAX */
		rc = px_reply_reader_line(&rr, line, sizeof(line));
	ck_assert_int_eq(rc, PX_RR_MORE);
	ck_assert_int_eq(px_reply_reader_line(&rr, "250 end", 7), PX_RR_DONE);
	ck_assert_uint_lt(strlen(rr.text), PX_REPLY_MAX);
	ck_assert_uint_eq(strlen(rr.text), rr.len);
}
END_TEST

static Suite *reply_suite(void)
{
	Suite *s = suite_create("reply");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_set);
	tcase_add_test(tc, test_from_lines);
	tcase_add_test(tc, test_summary_one_line);
	tcase_add_test(tc, test_summary_multi_line);
	tcase_add_test(tc, test_summary_cut);
	tcase_add_test(tc, test_reader_lines);
	tcase_add_test(tc, test_reader_evbuffer);
	tcase_add_test(tc, test_reader_cut);
	suite_add_tcase(s, tc);
	return s;
}

/* main - run the suite; nonzero exit on any failure */
int main(void)
{
	SRunner *sr = srunner_create(reply_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
