/*
 * NAME
 *	test-reply - unit tests for proxy/reply.c
 * DESCRIPTION
 *	Wire forms of our replies and of backend replies (enhanced codes
 *	added where missing), and the one-line summary for logs: every line
 *	of a multi-line reply is kept (Exim's queue id may be on a later one),
 *	joined with " / ", and cut to fit.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/reply.h"

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
static Suite *reply_suite(void)
{
	Suite *s = suite_create("reply");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_set);
	tcase_add_test(tc, test_from_lines);
	tcase_add_test(tc, test_summary_one_line);
	tcase_add_test(tc, test_summary_multi_line);
	tcase_add_test(tc, test_summary_cut);
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
