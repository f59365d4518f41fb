/*
 * test-policy - policy rules and address lists, Authentication-Results
 * (authserv-id matching, the order and syntax of ours), and the outgoing
 * message stream (prepend + skips).
 */
#include "autoconfig.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "filters/message.h"
#include "filters/spool.h"
#include "filters/txn.h"
#include "policy/outgoing.h"
#include "policy/policy.h"

START_TEST(rules_parse)
{
	struct px_action_rule r;
	const char *why;

	ck_assert_int_eq(px_rule_parse("spf=fail reject", &r, &why), 0);
	ck_assert_str_eq(r.key, "spf");
	ck_assert_str_eq(r.result, "fail");
	ck_assert_int_eq(r.action, PX_ACT_REJECT);
	free(r.key);
	free(r.result);
	ck_assert_int_eq(px_rule_parse("example=* tag", &r, &why), 0);
	ck_assert_int_eq(r.action, PX_ACT_TAG);
	free(r.key);
	free(r.result);
	ck_assert_int_eq(px_rule_parse("spf=fail", &r, &why), -1);
	ck_assert_int_eq(px_rule_parse("=fail reject", &r, &why), -1);
	ck_assert_int_eq(px_rule_parse("spf= reject", &r, &why), -1);
	ck_assert_int_eq(px_rule_parse("spf=fail explode", &r, &why), -1);
}
END_TEST

START_TEST(address_lists)
{
	char *list[] = { "alice@example.com", "@partner.test", "plain.test", ".sub.test" };

	ck_assert(px_address_matches(list, 4, "ALICE@Example.COM"));
	ck_assert(!px_address_matches(list, 4, "bob@example.com"));
	ck_assert(px_address_matches(list, 4, "x@partner.test"));
	ck_assert(!px_address_matches(list, 4, "x@a.partner.test"));
	ck_assert(px_address_matches(list, 4, "x@plain.test"));
	ck_assert(px_address_matches(list, 4, "x@a.sub.test"));
	ck_assert(!px_address_matches(list, 4, "x@sub.test"));
	ck_assert(!px_address_matches(list, 4, NULL));
	ck_assert(!px_address_matches(list, 4, ""));
}
END_TEST

/* policy_with - a policy with one override for vip.test recipients */
static struct px_policy *policy_with(void)
{
	struct px_policy *p = calloc(1, sizeof(*p));
	const char *why;

	p->authserv_id = strdup("mx.test");
	p->overrides = calloc(1, sizeof(*p->overrides));
	p->noverrides = 1;
	p->overrides[0].name = strdup("vip");
	p->overrides[0].monitor = 1;
	p->overrides[0].match.recipients = calloc(1, sizeof(char *));
	p->overrides[0].match.recipients[0] = strdup("@vip.test");
	p->overrides[0].match.nrecipients = 1;
	p->overrides[0].actions = calloc(1, sizeof(struct px_action_rule));
	px_rule_parse("spf=fail ignore", &p->overrides[0].actions[0], &why);
	p->overrides[0].nactions = 1;
	p->actions = calloc(1, sizeof(struct px_action_rule));
	px_rule_parse("spf=fail reject", &p->actions[0], &why);
	p->nactions = 1;
	p->deny.senders = calloc(1, sizeof(char *));
	p->deny.senders[0] = strdup("@spam.test");
	p->deny.nsenders = 1;
	return p;
}

START_TEST(views_and_actions)
{
	struct px_policy *p = policy_with();
	struct px_policy_view a, b, c;

	px_policy_view_for(p, "192.0.2.1", "x@a.test", "u@vip.test", &a);
	px_policy_view_for(p, "192.0.2.1", "x@a.test", "u@other.test", &b);
	px_policy_view_for(p, "192.0.2.1", "x@spam.test", NULL, &c);
	ck_assert(a.monitor && !b.monitor);
	ck_assert(!px_policy_view_equal(&a, &b));      /* the 452 split */
	ck_assert_int_eq(px_policy_action(p, &a, "spf", "spf", "fail"), PX_ACT_IGNORE);
	ck_assert_int_eq(px_policy_action(p, &b, "spf", "spf", "fail"), PX_ACT_REJECT);
	ck_assert_int_eq(px_policy_action(p, &b, "spf", "spf", "pass"), PX_ACT_NONE);
	ck_assert(c.deny && !a.deny);
	px_policy_free(p);
}
END_TEST

START_TEST(authserv_id)
{
	static const char *const ours[] = {
		" mx.test; spf=pass", "MX.TEST;none", " mx.test 1; dkim=pass",
		" (comment) mx.test; x=y", "\r\n\tmx.test;\r\n\tspf=pass", " \"mx.test\"; none",
	};
	static const char *const others[] = {
		" mx.test.evil; spf=pass", " other.test; mx.test", " xmx.test; none", "",
	};
	size_t i;

	for (i = 0; i < sizeof(ours) / sizeof(ours[0]); i++)
		ck_assert_msg(px_authres_id_is(ours[i], strlen(ours[i]), "mx.test"), "%s", ours[i]);
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		ck_assert_msg(!px_authres_id_is(others[i], strlen(others[i]), "mx.test"), "%s",
			      others[i]);
}
END_TEST

/* Our A-R: spf, dkim, dmarc, iprev, then auth and arc, each method's
 * results in recorded order; unregistered methods, results that are no
 * token, and control characters in properties stay out */
START_TEST(authres_order_and_syntax)
{
	struct px_txn *t = px_txn_new(NULL, "0123456789abcdef", "mx.test");
	char *v;

	v = px_authres_value(t, "mx.test");
	ck_assert_str_eq(v, "mx.test; none");
	free(v);
	px_txn_record(t, 0, PX_STAGE_CONNECT, "iprev", "pass", "policy.iprev=192.0.2.1");
	px_txn_record(t, 0, PX_STAGE_DATA_END, "arc", "none", NULL);
	px_txn_record(t, 1, PX_STAGE_DATA_END, "dmarc", "fail",
		      "header.from=example.com policy.dmarc=reject");
	px_txn_record(t, 1, PX_STAGE_DATA_END, "dmarc-policy", "reject", "header.from=example.com");
	px_txn_record(t, 2, PX_STAGE_DATA_END, "dkim", "pass", "header.d=example.org header.s=s1");
	px_txn_record(t, 2, PX_STAGE_DATA_END, "DKIM", "fail", "header.d=example.com");
	px_txn_record(t, 3, PX_STAGE_MAIL, "spf", "softfail", "smtp.mailfrom=example.net");
	px_txn_record(t, 3, PX_STAGE_MAIL, "auth", "pass", "smtp.auth=alice");
	px_txn_record(t, 3, PX_STAGE_DATA_END, "example", "match", NULL);
	px_txn_record(t, 3, PX_STAGE_DATA_END, "spf", "pa ss", "smtp.mailfrom=bad.example");
	px_txn_record(t, 3, PX_STAGE_DATA_END, "dkim", "neutral",
		      "header.d=x.example\r\nX-Injected: yes\t (tab)  ");
	v = px_authres_value(t, "mx.test");
	ck_assert_str_eq(v, "mx.test;\r\n\tspf=softfail smtp.mailfrom=example.net"
			    ";\r\n\tdkim=pass header.d=example.org header.s=s1"
			    ";\r\n\tdkim=fail header.d=example.com"
			    ";\r\n\tdkim=neutral header.d=x.example X-Injected: yes (tab)"
			    ";\r\n\tdmarc=fail header.from=example.com policy.dmarc=reject"
			    ";\r\n\tiprev=pass policy.iprev=192.0.2.1"
			    ";\r\n\tauth=pass smtp.auth=alice"
			    ";\r\n\tarc=none");
	free(v);
	px_txn_unref(t);
}
END_TEST

/* Results at connect and helo belong to the session: a reset keeps them,
 * a new connect stage (XCLIENT) drops them, EHLO again drops helo's */
START_TEST(session_results_outlive_the_transaction)
{
	struct px_txn *t = px_txn_new(NULL, "0123456789abcdef", "mx.test");
	char *v;

	px_txn_record(t, 0, PX_STAGE_CONNECT, "iprev", "pass", "policy.iprev=192.0.2.1");
	px_txn_record(t, 1, PX_STAGE_HELO, "helo", "pass", NULL);
	px_txn_record(t, 2, PX_STAGE_MAIL, "spf", "pass", "smtp.mailfrom=example.net");
	px_txn_reset(t);
	v = px_authres_value(t, "mx.test");
	ck_assert_str_eq(v, "mx.test;\r\n\tiprev=pass policy.iprev=192.0.2.1");
	free(v);
	ck_assert_uint_eq(px_txn_result_seq(t), 3);
	px_txn_results_restart(t, PX_STAGE_HELO);
	v = px_authres_value(t, "mx.test");
	ck_assert_str_eq(v, "mx.test;\r\n\tiprev=pass policy.iprev=192.0.2.1");
	free(v);
	px_txn_results_restart(t, PX_STAGE_CONNECT);
	v = px_authres_value(t, "mx.test");
	ck_assert_str_eq(v, "mx.test; none");
	free(v);
	px_txn_unref(t);
}
END_TEST

/* read_all - the outgoing stream, in small reads */
static char *read_all(const struct px_message *m)
{
	size_t size = px_message_size(m), off = 0;
	char *out = calloc(1, size + 1);
	ssize_t n;

	while ((n = px_message_read(m, off, out + off, 3)) > 0)
		off += (size_t)n;
	ck_assert_uint_eq(off, size);
	return out;
}

START_TEST(outgoing_stream)
{
	static const char msg[] = "A: 1\r\nB: 2\r\n folded\r\nC: 3\r\n\r\nbody\r\n";
	struct px_spool *sp = px_spool_new("/tmp", 1 << 20);
	struct px_headers h;
	struct px_skip skip;
	struct px_message m = { 0 };
	char err[128], *out;

	ck_assert_int_eq(px_spool_write(sp, msg, sizeof(msg) - 1, err, sizeof(err)), 0);
	ck_assert_int_eq(px_headers_index(&h, sp), 0);
	ck_assert_uint_eq(h.n, 3);
	ck_assert(px_header_name_is(&h, 1, "b"));
	skip.off = h.v[1].off;          /* drop the folded B field */
	skip.len = h.v[1].len;
	m.prepend = "X: 0\r\n";
	m.prepend_len = 6;
	m.spool = sp;
	m.skips = &skip;
	m.nskips = 1;
	out = read_all(&m);
	ck_assert_str_eq(out, "X: 0\r\nA: 1\r\nC: 3\r\n\r\nbody\r\n");
	free(out);
	px_headers_free(&h);
	px_spool_free(sp);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, rules_parse);
	tcase_add_test(tc, address_lists);
	tcase_add_test(tc, views_and_actions);
	tcase_add_test(tc, authserv_id);
	tcase_add_test(tc, authres_order_and_syntax);
	tcase_add_test(tc, session_results_outlive_the_transaction);
	tcase_add_test(tc, outgoing_stream);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
