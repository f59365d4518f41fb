/*
 * NAME
 *	test-smtp-parse - unit tests for proxy/smtp_parse.c
 * DESCRIPTION
 *	Table-driven: command splitting, MAIL/RCPT paths (null sender,
 *	postmaster, quoted local parts, literals, routes, UTF-8, limits,
 *	control bytes), ESMTP parameters, domains, xtext, backend replies and
 *	enhanced status codes. Every failure must come with a short lower-case
 *	*why fit for "501 5.5.4 Syntax error: ".
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/smtp_parse.h"

#define N_ELEM(a) (sizeof(a) / sizeof((a)[0]))

/* check_why - a diagnostic is present, short, lower-case and one line */
static void check_why(const char *why, const char *input)
{
	ck_assert_msg(why != NULL && *why != 0, "no why for \"%s\"", input);
	ck_assert_msg(strlen(why) < 60, "long why \"%s\"", why);
	ck_assert_msg(!(why[0] >= 'A' && why[0] <= 'Z'), "why not lower-case: \"%s\"", why);
	ck_assert_msg(strpbrk(why, "\r\n") == NULL, "why with line end");
}

/* ---- px_smtp_split_command ------------------------------------------ */

static const struct split_case {
	const char *line;
	int rc;
	const char *verb;
	const char *args;
} split_cases[] = {
	{ "MAIL FROM:<a@b.example>", PX_PARSE_OK, "MAIL", "FROM:<a@b.example>" },
	{ "QUIT", PX_PARSE_OK, "QUIT", "" },
	{ "quit", PX_PARSE_OK, "quit", "" },
	{ "QUIT   ", PX_PARSE_OK, "QUIT", "" },
	{ "EHLO  mx.example.com  ", PX_PARSE_OK, "EHLO", "mx.example.com" },
	{ "RCPT TO: <a@b.example> NOTIFY=NEVER", PX_PARSE_OK, "RCPT",
	  "TO: <a@b.example> NOTIFY=NEVER" },
	{ "HELO h\xc3\xa9llo", PX_PARSE_OK, "HELO", "h\xc3\xa9llo" },
	{ "X-FOO a  b", PX_PARSE_OK, "X-FOO", "a  b" },
	{ "", PX_PARSE_SYNTAX, NULL, NULL },
	{ " ", PX_PARSE_SYNTAX, NULL, NULL },
	{ " QUIT", PX_PARSE_SYNTAX, NULL, NULL },
	{ "NOOP\r", PX_PARSE_SYNTAX, NULL, NULL },
	{ "NOOP\n", PX_PARSE_SYNTAX, NULL, NULL },
	{ "NO\tOP", PX_PARSE_SYNTAX, NULL, NULL },
	{ "HELO\tx", PX_PARSE_SYNTAX, NULL, NULL },
	{ "HELO x\x7f", PX_PARSE_SYNTAX, NULL, NULL },
	{ "HELO x\x1b[2J", PX_PARSE_SYNTAX, NULL, NULL },
	{ "HELO \xff", PX_PARSE_SYNTAX, NULL, NULL },
	{ "HELO \xc3", PX_PARSE_SYNTAX, NULL, NULL },
	{ "\x01MAIL", PX_PARSE_SYNTAX, NULL, NULL },
};

START_TEST(test_split)
{
	const struct split_case *c = &split_cases[_i];
	char line[256];
	char *verb = NULL, *args = NULL;
	const char *why = NULL;
	int rc;

	snprintf(line, sizeof(line), "%s", c->line);
	rc = px_smtp_split_command(line, &verb, &args, &why);
	ck_assert_msg(rc == c->rc, "\"%s\": rc %d, want %d", c->line, rc, c->rc);
	ck_assert_ptr_nonnull(verb);
	ck_assert_ptr_nonnull(args);
	if (rc != PX_PARSE_OK) {
		check_why(why, c->line);
		return;
	}
	ck_assert_str_eq(verb, c->verb);
	ck_assert_str_eq(args, c->args);
}
END_TEST

/* ---- px_smtp_check_line --------------------------------------------- */

static const struct line_case {
	const char *line;
	size_t len;
	int rc;
} line_cases[] = {
	{ "MAIL FROM:<a@b>", 15, PX_PARSE_OK },
	{ "", 0, PX_PARSE_OK },
	{ "MAIL FROM:<a@b>\0 SIZE=1", 23, PX_PARSE_SYNTAX },
	{ "\0", 1, PX_PARSE_SYNTAX },
	{ "RCPT TO:<a@b>\r", 14, PX_PARSE_SYNTAX },
	{ "RCPT TO:<\xc3\xa9@b>", 14, PX_PARSE_OK },
	{ "RCPT TO:<\xc3\xa9@b>", 10, PX_PARSE_SYNTAX },   /* sequence cut by len */
	{ "x\xe2\x82\xac", 4, PX_PARSE_OK },
	{ "x\xe2\x82", 3, PX_PARSE_SYNTAX },
	{ "x\xf0\x9f\x98\x80", 5, PX_PARSE_OK },
	{ "x\xf4\x90\x80\x80", 5, PX_PARSE_SYNTAX },           /* > U+10FFFF */
	{ "x\xc1\xbf", 3, PX_PARSE_SYNTAX },                   /* overlong */
	{ "x\xe0\x80\xaf", 4, PX_PARSE_SYNTAX },               /* overlong */
	{ "x\xed\xa0\x80", 4, PX_PARSE_SYNTAX },               /* surrogate */
	{ "x\x80", 2, PX_PARSE_SYNTAX },
	{ "x\xf8\x88\x80\x80\x80", 6, PX_PARSE_SYNTAX },
};

START_TEST(test_check_line)
{
	const struct line_case *c = &line_cases[_i];
	const char *why = NULL;
	int rc = px_smtp_check_line(c->line, c->len, &why);

	ck_assert_msg(rc == c->rc, "case %d: rc %d, want %d", _i, rc, c->rc);
	if (rc != PX_PARSE_OK)
		check_why(why, "check_line");
}
END_TEST

/* ---- px_smtp_parse_path: good ----------------------------------------- */

#define F "FROM:"
#define T "TO:"

static const struct path_ok {
	const char *args;
	const char *prefix;
	int allow_null, allow_pm;
	const char *addr, *local, *domain;
	int utf8;
	size_t nparams;
} path_ok[] = {
	{ "FROM:<user@example.com>", F, 1, 0, "user@example.com", "user", "example.com", 0, 0 },
	{ "from:<user@example.com>", F, 1, 0, "user@example.com", "user", "example.com", 0, 0 },
	{ "From:<User@Example.COM>", F, 1, 0, "User@Example.COM", "User", "Example.COM", 0, 0 },
	{ "FROM: <user@example.com>", F, 1, 0, "user@example.com", "user", "example.com", 0, 0 },
	{ "FROM:    <u@example.com>   ", F, 1, 0, "u@example.com", "u", "example.com", 0, 0 },
	{ "TO:<user@example.com>", T, 0, 1, "user@example.com", "user", "example.com", 0, 0 },
	{ "to: <user@example.com>", T, 0, 1, "user@example.com", "user", "example.com", 0, 0 },
	/* null sender */
	{ "FROM:<>", F, 1, 0, "", "", NULL, 0, 0 },
	{ "FROM: <>", F, 1, 0, "", "", NULL, 0, 0 },
	{ "FROM:<> SIZE=100", F, 1, 0, "", "", NULL, 0, 1 },
	/* postmaster */
	{ "TO:<postmaster>", T, 0, 1, "postmaster", "postmaster", NULL, 0, 0 },
	{ "TO:<Postmaster>", T, 0, 1, "Postmaster", "Postmaster", NULL, 0, 0 },
	{ "TO:<POSTMASTER> NOTIFY=NEVER", T, 0, 1, "POSTMASTER", "POSTMASTER", NULL, 0, 1 },
	{ "TO:<postmaster@example.com>", T, 0, 1, "postmaster@example.com", "postmaster",
	  "example.com", 0, 0 },
	{ "TO:<postmaster@example.com>", T, 0, 0, "postmaster@example.com", "postmaster",
	  "example.com", 0, 0 },
	/* dot-string local parts */
	{ "FROM:<first.last+tag@sub.example.com>", F, 1, 0, "first.last+tag@sub.example.com",
	  "first.last+tag", "sub.example.com", 0, 0 },
	{ "FROM:<!#$%&'*+-/=?^_`{|}~@example.com>", F, 1, 0,
	  "!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~", "example.com", 0, 0 },
	{ "FROM:<a.b.c@x.y.z>", F, 1, 0, "a.b.c@x.y.z", "a.b.c", "x.y.z", 0, 0 },
	/* quoted local parts */
	{ "FROM:<\"john doe\"@example.com>", F, 1, 0, "\"john doe\"@example.com",
	  "\"john doe\"", "example.com", 0, 0 },
	{ "FROM:<\"a\\\"b\"@example.com>", F, 1, 0, "\"a\\\"b\"@example.com", "\"a\\\"b\"",
	  "example.com", 0, 0 },
	{ "FROM:<\"a>b\"@example.com>", F, 1, 0, "\"a>b\"@example.com", "\"a>b\"", "example.com",
	  0, 0 },
	{ "FROM:<\"a@b\"@example.com>", F, 1, 0, "\"a@b\"@example.com", "\"a@b\"", "example.com",
	  0, 0 },
	{ "FROM:<\"\"@example.com>", F, 1, 0, "\"\"@example.com", "\"\"", "example.com", 0, 0 },
	{ "FROM:<\"a..b\"@example.com>", F, 1, 0, "\"a..b\"@example.com", "\"a..b\"",
	  "example.com", 0, 0 },
	{ "FROM:<\"\\\\\"@example.com>", F, 1, 0, "\"\\\\\"@example.com", "\"\\\\\"",
	  "example.com", 0, 0 },
	/* address literals */
	{ "FROM:<u@[192.0.2.1]>", F, 1, 0, "u@[192.0.2.1]", "u", "[192.0.2.1]", 0, 0 },
	{ "FROM:<u@[0.0.0.0]>", F, 1, 0, "u@[0.0.0.0]", "u", "[0.0.0.0]", 0, 0 },
	{ "FROM:<u@[255.255.255.255]>", F, 1, 0, "u@[255.255.255.255]", "u",
	  "[255.255.255.255]", 0, 0 },
	{ "FROM:<u@[IPv6:2001:db8::1]>", F, 1, 0, "u@[IPv6:2001:db8::1]", "u",
	  "[IPv6:2001:db8::1]", 0, 0 },
	{ "FROM:<u@[ipv6:::1]>", F, 1, 0, "u@[ipv6:::1]", "u", "[ipv6:::1]", 0, 0 },
	{ "FROM:<u@[IPv6:1:2:3:4:5:6:7:8]>", F, 1, 0, "u@[IPv6:1:2:3:4:5:6:7:8]", "u",
	  "[IPv6:1:2:3:4:5:6:7:8]", 0, 0 },
	{ "FROM:<u@[IPv6:::ffff:192.0.2.1]>", F, 1, 0, "u@[IPv6:::ffff:192.0.2.1]", "u",
	  "[IPv6:::ffff:192.0.2.1]", 0, 0 },
	/* source routes are dropped */
	{ "FROM:<@a.example,@b.example:user@d.example>", F, 1, 0, "user@d.example", "user",
	  "d.example", 0, 0 },
	{ "TO:<@a.example:user@d.example>", T, 0, 1, "user@d.example", "user", "d.example",
	  0, 0 },
	{ "FROM:<@[192.0.2.1]:user@d.example>", F, 1, 0, "user@d.example", "user", "d.example",
	  0, 0 },
	{ "FROM:<@[IPv6:::1],@b.example:user@d.example>", F, 1, 0, "user@d.example", "user",
	  "d.example", 0, 0 },
	/* SMTPUTF8 */
	{ "FROM:<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", F, 1, 0,
	  "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "j\xc3\xb6rg", "b\xc3\xbc" "cher.example", 1, 0 },
	{ "TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>", T, 0,
	  0, "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
	  "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a", 1, 0 },
	{ "FROM:<\"\xf0\x9f\x98\x80\"@example.com>", F, 1, 0, "\"\xf0\x9f\x98\x80\"@example.com",
	  "\"\xf0\x9f\x98\x80\"", "example.com", 1, 0 },
	{ "FROM:<user@xn--bcher-kva.example> SMTPUTF8", F, 1, 0, "user@xn--bcher-kva.example",
	  "user", "xn--bcher-kva.example", 0, 1 },
	/* numeric labels are a Domain, not a literal */
	{ "FROM:<1@2.3>", F, 1, 0, "1@2.3", "1", "2.3", 0, 0 },
	{ "FROM:<a@b>", F, 1, 0, "a@b", "a", "b", 0, 0 },
	/* parameters */
	{ "FROM:<a@b.example> SIZE=1000 BODY=8BITMIME", F, 1, 0, "a@b.example", "a",
	  "b.example", 0, 2 },
	{ "FROM:<a@b.example>   SIZE=1000    BODY=8BITMIME   ", F, 1, 0, "a@b.example", "a",
	  "b.example", 0, 2 },
	{ "TO:<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+40b.example", T, 0, 0,
	  "a@b.example", "a", "b.example", 0, 2 },
	{ "FROM:<a@b.example> X-A=\xc3\xa9t\xc3\xa9", F, 1, 0, "a@b.example", "a", "b.example",
	  0, 1 },
	{ "FROM:<a@b.example> 8BITMIME-X=y-", F, 1, 0, "a@b.example", "a", "b.example", 0, 1 },
	{ "FROM:<a@b.example> AUTH=<>", F, 1, 0, "a@b.example", "a", "b.example", 0, 1 },
};

START_TEST(test_path_ok)
{
	const struct path_ok *c = &path_ok[_i];
	struct px_smtp_path p;
	char args[512];
	const char *why = NULL;
	int rc;

	snprintf(args, sizeof(args), "%s", c->args);
	rc = px_smtp_parse_path(args, c->prefix, c->allow_null, c->allow_pm, &p, &why);
	ck_assert_msg(rc == PX_PARSE_OK, "\"%s\": rc %d (%s)", c->args, rc, why ? why : "");
	ck_assert_str_eq(p.addr, c->addr);
	ck_assert_str_eq(p.local, c->local);
	if (c->domain == NULL)
		ck_assert_ptr_null(p.domain);
	else
		ck_assert_str_eq(p.domain, c->domain);
	ck_assert_int_eq(p.utf8, c->utf8);
	ck_assert_uint_eq(p.nparams, c->nparams);
}
END_TEST

/* ---- px_smtp_parse_path: bad ------------------------------------------ */

static const struct path_bad {
	const char *args;
	const char *prefix;
	int allow_null, allow_pm;
	int rc;
} path_bad[] = {
	/* prefix and brackets */
	{ "FROM:user@example.com", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM: ", F, 1, 0, PX_PARSE_SYNTAX },
	{ "", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM <a@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM :<a@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FRO", F, 1, 0, PX_PARSE_SYNTAX },
	{ "TO:<a@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b>", T, 0, 1, PX_PARSE_SYNTAX },
	{ "FROM:<a@b", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b >", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:< a@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b>x", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b>>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<<a@b>>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b><c@d>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b>SIZE=1", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:>", F, 1, 0, PX_PARSE_SYNTAX },
	/* null path and postmaster where not allowed */
	{ "TO:<>", T, 0, 1, PX_PARSE_SYNTAX },
	{ "FROM:<postmaster>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "TO:<postmaster>", T, 0, 0, PX_PARSE_SYNTAX },
	{ "TO:<\"postmaster\">", T, 0, 1, PX_PARSE_SYNTAX },
	{ "TO:<postmasterx>", T, 0, 1, PX_PARSE_SYNTAX },
	{ "TO:<@a.example:postmaster>", T, 0, 1, PX_PARSE_SYNTAX },
	{ "FROM:<< >>", F, 1, 0, PX_PARSE_SYNTAX },
	/* local parts */
	{ "FROM:<a>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a b@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a..b@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<.a@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a.@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a(b)@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a,b@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a\\b@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a<b@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<\"a@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<\"a\"b@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a\"b\"@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<\"a\\\xc3\xa9\"@c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<\"a\\", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b@c>", F, 1, 0, PX_PARSE_SYNTAX },
	/* domains */
	{ "FROM:<a@>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b..c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@.b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b.>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@-b.c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b-.c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b_c.d>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b/c>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b\"c>", F, 1, 0, PX_PARSE_SYNTAX },
	/* address literals */
	{ "FROM:<a@[192.0.2.256]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[192.0.2]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[1.2.3.4.5]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[1.2.3.0004]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[1.2.3.-4]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[192.0.2.1>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[192.0.2.1]x>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@x[192.0.2.1]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:2001:db8::1::2]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:1:2:3:4:5:6:7:8:9]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:1:2:3:4:5:6:7]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:12345::1]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:g::1]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:1:]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6::1]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:192.0.2.1]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:::1.2.3]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[IPv6:1:2:3:4:5:6:7:1.2.3.4]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[x-tag:foo]>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@[2001:db8::1]>", F, 1, 0, PX_PARSE_SYNTAX },
	/* source routes */
	{ "FROM:<@a:>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<@a,b:u@d>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<@a;@b:u@d>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<@:u@d>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<@a,:u@d>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<@a_b:u@d>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<@a.example>", F, 1, 0, PX_PARSE_SYNTAX },
	/* control characters and bad UTF-8 */
	{ "FROM:<a@b>\t", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:\t<a@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a\x01@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b\x7f>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<\"a\\\x01\"@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<\"a\tb\"@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b>\r", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b> SIZE=1\r\nRSET", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a\xff@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a\xc0\x80@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a\xed\xa0\x80@b>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b\xc3>", F, 1, 0, PX_PARSE_SYNTAX },
	{ "FROM:<a@b> X=\xc3", F, 1, 0, PX_PARSE_SYNTAX },
	/* parameters */
	{ "FROM:<a@b> =x", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> -SIZE=1", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SIZE=", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SIZE= 1", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SIZE==1", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SIZE=1=2", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SI_ZE=1", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SIZE:1", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> \xc3\xa9=1", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SIZE=1 size=2", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> BODY=7BIT BODY=8BITMIME", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "FROM:<a@b> SMTPUTF8 SMTPUTF8", F, 1, 0, PX_PARSE_BAD_PARAM },
	{ "TO:<a@b> <c@d>", T, 0, 0, PX_PARSE_BAD_PARAM },
};

START_TEST(test_path_bad)
{
	const struct path_bad *c = &path_bad[_i];
	struct px_smtp_path p;
	char args[512];
	const char *why = NULL;
	int rc;

	snprintf(args, sizeof(args), "%s", c->args);
	rc = px_smtp_parse_path(args, c->prefix, c->allow_null, c->allow_pm, &p, &why);
	ck_assert_msg(rc == c->rc, "case %d \"%s\": rc %d (%s), want %d", _i, c->args, rc,
		      why ? why : "", c->rc);
	check_why(why, c->args);
}
END_TEST

/* ---- lengths --------------------------------------------------------- */

/* make_path - "FROM:<" local(nl) "@" domain(labels of 63 + rest) ">" */
static void make_path(char *buf, size_t nl, size_t nd)
{
	size_t i, k = 0;

	k += (size_t)sprintf(buf, "FROM:<");
	for (i = 0; i < nl; i++)
		buf[k++] = 'l';
	buf[k++] = '@';
	for (i = 0; i < nd; i++)
		buf[k++] = (i % 64 == 63 && i + 1 < nd) ? '.' : 'd';
	buf[k++] = '>';
	buf[k] = 0;
}

static const struct len_case {
	size_t local, domain;
	int rc;
} len_cases[] = {
	{ 64, 10, PX_PARSE_OK },
	{ 65, 10, PX_PARSE_TOO_LONG },
	{ 200, 10, PX_PARSE_TOO_LONG },
	{ 1, 252, PX_PARSE_OK },          /* path exactly 256 with <> */
	{ 2, 252, PX_PARSE_TOO_LONG },    /* 257 */
	{ 64, 189, PX_PARSE_OK },         /* 64 + 1 + 189 + 2 = 256 */
	{ 64, 190, PX_PARSE_TOO_LONG },
	{ 1, 255, PX_PARSE_TOO_LONG },
	{ 1, 256, PX_PARSE_TOO_LONG },
	{ 1, 1000, PX_PARSE_TOO_LONG },
};

START_TEST(test_path_lengths)
{
	const struct len_case *c = &len_cases[_i];
	struct px_smtp_path p;
	char args[2048];
	const char *why = NULL;
	int rc;

	make_path(args, c->local, c->domain);
	rc = px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why);
	ck_assert_msg(rc == c->rc, "local %zu domain %zu: rc %d (%s)", c->local, c->domain, rc,
		      why ? why : "");
	if (rc != PX_PARSE_OK) {
		check_why(why, "length");
		return;
	}
	ck_assert_uint_eq(strlen(p.local), c->local);
	ck_assert_uint_eq(strlen(p.domain), c->domain);
	ck_assert_uint_eq(strlen(p.addr), c->local + 1 + c->domain);
}
END_TEST

START_TEST(test_path_route_length)
{
	/* the source route counts towards the 256 octets of the path */
	char args[600] = "FROM:<@";
	struct px_smtp_path p;
	const char *why = NULL;
	size_t k = strlen(args);

	for (int i = 0; i < 240; i++)
		args[k++] = (i % 60 == 59 && i != 239) ? '.' : 'r';
	strcpy(args + k, ":user@example.com>");
	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_TOO_LONG);
	check_why(why, "route");
}
END_TEST

START_TEST(test_path_quoted_local_length)
{
	/* the quotes count: 62 characters quoted is 64 octets, 63 is 65 */
	char args[200];
	struct px_smtp_path p;
	const char *why = NULL;

	snprintf(args, sizeof(args), "FROM:<\"%62d\"@example.com>", 1);
	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_OK);
	ck_assert_uint_eq(strlen(p.local), 64);
	snprintf(args, sizeof(args), "FROM:<\"%63d\"@example.com>", 1);
	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_TOO_LONG);
}
END_TEST

/* ---- parameters ------------------------------------------------------ */

START_TEST(test_params)
{
	char args[] = "FROM:<a@b.example>  SIZE=1000 BODY=8BITMIME SMTPUTF8 "
		      "ENVID=QQ314159+2B RET=HDRS AUTH=<>";
	struct px_smtp_path p;
	const char *why = NULL;
	int present = -1;

	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_OK);
	ck_assert_uint_eq(p.nparams, 6);
	ck_assert_str_eq(p.params[0].key, "SIZE");
	ck_assert_str_eq(p.params[0].value, "1000");
	ck_assert_str_eq(px_smtp_param_get(&p, "size", &present), "1000");
	ck_assert_int_eq(present, 1);
	ck_assert_str_eq(px_smtp_param_get(&p, "Body", NULL), "8BITMIME");
	ck_assert_ptr_null(px_smtp_param_get(&p, "SMTPUTF8", &present));
	ck_assert_int_eq(present, 1);
	ck_assert_ptr_null(px_smtp_param_get(&p, "SMTPUTF", &present));
	ck_assert_int_eq(present, 0);
	ck_assert_ptr_null(px_smtp_param_get(&p, "SIZ", &present));
	ck_assert_int_eq(present, 0);
	ck_assert_str_eq(px_smtp_param_get(&p, "envid", NULL), "QQ314159+2B");
	ck_assert(px_smtp_valid_xtext(px_smtp_param_get(&p, "ENVID", NULL)));
	ck_assert_str_eq(px_smtp_param_get(&p, "AUTH", NULL), "<>");
	ck_assert_str_eq(p.addr, "a@b.example");
}
END_TEST

/* params_line - "FROM:<a@b> P0 P1 ... P(n-1)" */
static void params_line(char *buf, size_t size, int n)
{
	size_t k = (size_t)snprintf(buf, size, "FROM:<a@b>");

	for (int i = 0; i < n; i++)
		k += (size_t)snprintf(buf + k, size - k, " X-P%d=%d", i, i);
}

START_TEST(test_params_max)
{
	char args[1024];
	struct px_smtp_path p;
	const char *why = NULL;

	params_line(args, sizeof(args), PX_SMTP_PARAMS_MAX);
	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_OK);
	ck_assert_uint_eq(p.nparams, PX_SMTP_PARAMS_MAX);
	ck_assert_str_eq(px_smtp_param_get(&p, "x-p15", NULL), "15");
	params_line(args, sizeof(args), PX_SMTP_PARAMS_MAX + 1);
	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_TOO_MANY);
	check_why(why, "too many");
	/* trailing spaces after the 16th are not a 17th */
	params_line(args, sizeof(args), PX_SMTP_PARAMS_MAX);
	strcat(args, "    ");
	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_OK);
}
END_TEST

START_TEST(test_path_after_split)
{
	char line[] = "MAIL FROM: <\"x y\"@example.com> BODY=8BITMIME  ";
	char *verb, *args;
	struct px_smtp_path p;
	const char *why = NULL;

	ck_assert_int_eq(px_smtp_split_command(line, &verb, &args, &why), PX_PARSE_OK);
	ck_assert_str_eq(verb, "MAIL");
	ck_assert_int_eq(px_smtp_parse_path(args, "FROM:", 1, 0, &p, &why), PX_PARSE_OK);
	ck_assert_str_eq(p.addr, "\"x y\"@example.com");
	ck_assert_str_eq(p.local, "\"x y\"");
	ck_assert_str_eq(p.domain, "example.com");
	ck_assert_str_eq(px_smtp_param_get(&p, "BODY", NULL), "8BITMIME");
}
END_TEST

/* ---- px_smtp_valid_domain ------------------------------------------- */

static const struct dom_case {
	const char *s;
	int utf8;
	int ok;
} dom_cases[] = {
	{ "example.com", 0, 1 },
	{ "a", 0, 1 },
	{ "a-b.c-d.e", 0, 1 },
	{ "xn--bcher-kva.example", 0, 1 },
	{ "1.2.3.4", 0, 1 },
	{ "a--b.example", 0, 1 },
	{ "[192.0.2.1]", 0, 1 },
	{ "[IPv6:2001:db8::1]", 0, 1 },
	{ "[IPv6:::]", 0, 1 },
	{ "[IPv6:1::]", 0, 1 },
	{ "[IPv6:1:2:3:4:5:6:7::]", 0, 1 },
	{ "[IPv6:1:2:3:4:5:6:192.0.2.1]", 0, 1 },
	{ "[IPv6:1:2:3:4:5::192.0.2.1]", 0, 1 },
	{ "[IPv6:ABCD:ef01::0]", 0, 1 },
	{ "b\xc3\xbc" "cher.example", 1, 1 },
	{ "b\xc3\xbc" "cher.example", 0, 0 },
	{ "\xc3\xbc", 1, 1 },
	{ "b\xc3.example", 1, 0 },
	{ "", 0, 0 },
	{ ".", 0, 0 },
	{ "example.com.", 0, 0 },
	{ ".example.com", 0, 0 },
	{ "a..b", 0, 0 },
	{ "-a.b", 0, 0 },
	{ "a-.b", 0, 0 },
	{ "a.b-", 0, 0 },
	{ "a_b.c", 0, 0 },
	{ "a b", 0, 0 },
	{ "a\tb", 0, 0 },
	{ "a@b", 0, 0 },
	{ "[192.0.2.1", 0, 0 },
	{ "192.0.2.1]", 0, 0 },
	{ "[192.0.2.01]", 0, 1 },       /* Snum is 1*3DIGIT */
	{ "[IPv6:1:2:3:4:5:6:7:8:9]", 0, 0 },
	{ "[IPv6:1::2::3]", 0, 0 },
	{ "[IPv6:1:2:3:4:5:6:7:1.2.3.4]", 0, 0 },
	{ "[IPv6:::1.2.3.4.5]", 0, 0 },
	{ "[IPv6:1.2.3.4::]", 0, 0 },
	{ "[IPv6:fffff::]", 0, 0 },
	{ "[IPv6::::]", 0, 0 },
	{ "[foo:bar]", 0, 0 },
	{ "[]", 0, 0 },
	{ "[", 0, 0 },
};

START_TEST(test_domain)
{
	const struct dom_case *c = &dom_cases[_i];

	ck_assert_msg(px_smtp_valid_domain(c->s, c->utf8) == c->ok, "\"%s\" utf8=%d: want %d",
		      c->s, c->utf8, c->ok);
}
END_TEST

/* domain_of - n octets of labels of at most lab octets */
static void domain_of(char *buf, size_t n, size_t lab)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (i % (lab + 1) == lab && i + 1 < n) ? '.' : 'x';
	buf[n] = 0;
}

START_TEST(test_domain_limits)
{
	char buf[400];

	domain_of(buf, 63, 63);
	ck_assert(px_smtp_valid_domain(buf, 0));
	domain_of(buf, 64, 64);
	ck_assert(!px_smtp_valid_domain(buf, 0));
	domain_of(buf, 255, 63);
	ck_assert(px_smtp_valid_domain(buf, 0));
	domain_of(buf, 256, 63);
	ck_assert(!px_smtp_valid_domain(buf, 0));
	ck_assert(!px_smtp_valid_domain(NULL, 0));
}
END_TEST

/* ---- px_smtp_valid_xtext -------------------------------------------- */

static const struct xtext_case {
	const char *s;
	int ok;
} xtext_cases[] = {
	{ "", 1 },
	{ "abc", 1 },
	{ "rfc822;user+40example.com", 1 },
	{ "+2B+3D", 1 },
	{ "!~", 1 },
	{ "QQ314159", 1 },
	{ "a=b", 0 },
	{ "a b", 0 },
	{ "+", 0 },
	{ "+4", 0 },
	{ "+4g", 0 },
	{ "+2b", 0 },            /* hexchar is upper case */
	{ "a+", 0 },
	{ "\x7f", 0 },
	{ "\x01", 0 },
	{ "\xc3\xa9", 0 },
};

START_TEST(test_xtext)
{
	const struct xtext_case *c = &xtext_cases[_i];

	ck_assert_msg(px_smtp_valid_xtext(c->s) == c->ok, "\"%s\": want %d", c->s, c->ok);
}
END_TEST

/* ---- px_smtp_reply_line --------------------------------------------- */

#define L(s) s, sizeof(s) - 1

static const struct reply_case {
	const char *line;
	size_t len;
	int rc, code, last;
	const char *text;
} reply_cases[] = {
	{ L("250 OK"), PX_PARSE_OK, 250, 1, "OK" },
	{ L("250-PIPELINING"), PX_PARSE_OK, 250, 0, "PIPELINING" },
	{ L("250"), PX_PARSE_OK, 250, 1, "" },
	{ L("250-"), PX_PARSE_OK, 250, 0, "" },
	{ L("250 "), PX_PARSE_OK, 250, 1, "" },
	{ L("220 mx.example ESMTP ready"), PX_PARSE_OK, 220, 1, "mx.example ESMTP ready" },
	{ L("554 5.7.1 rejected"), PX_PARSE_OK, 554, 1, "5.7.1 rejected" },
	{ L("421 4.3.2 \tbye"), PX_PARSE_OK, 421, 1, "4.3.2 \tbye" },
	{ L("250 caf\xc3\xa9"), PX_PARSE_OK, 250, 1, "caf\xc3\xa9" },
	{ L("200 x"), PX_PARSE_OK, 200, 1, "x" },
	{ L("559 x"), PX_PARSE_OK, 559, 1, "x" },
	{ L(""), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("25"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("2500"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("250x"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("250\tx"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("199 x"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("600 x"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("260 x"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("2a0 x"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("abc"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L(" 250 x"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("250 a\r"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("250 a\r\n"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("250 a\0b"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("250-a\n250 b"), PX_PARSE_SYNTAX, 0, 0, NULL },
	{ L("250 \x1b[31m"), PX_PARSE_SYNTAX, 0, 0, NULL },
};

START_TEST(test_reply)
{
	const struct reply_case *c = &reply_cases[_i];
	int code = -1, last = -1;
	const char *text = NULL;
	int rc = px_smtp_reply_line(c->line, c->len, &code, &last, &text);

	ck_assert_msg(rc == c->rc, "case %d: rc %d", _i, rc);
	if (rc != PX_PARSE_OK)
		return;
	ck_assert_int_eq(code, c->code);
	ck_assert_int_eq(last, c->last);
	ck_assert_ptr_nonnull(text);
	ck_assert_uint_eq(strlen(c->text), c->len > 3 ? c->len - 4 : 0);
	ck_assert(memcmp(text, c->text, strlen(c->text)) == 0);
}
END_TEST

START_TEST(test_reply_unterminated)
{
	/* len is obeyed: the buffer has no NUL after the line */
	char buf[6];
	int code, last;
	const char *text;

	memcpy(buf, "250 OK", 6);
	ck_assert_int_eq(px_smtp_reply_line(buf, 6, &code, &last, &text), PX_PARSE_OK);
	ck_assert_int_eq(code, 250);
	ck_assert(text == buf + 4);
	ck_assert_int_eq(px_smtp_reply_line(buf, 2, &code, &last, &text), PX_PARSE_SYNTAX);
}
END_TEST

/* ---- px_smtp_enhanced_code ------------------------------------------ */

static const struct enh_case {
	const char *text;
	size_t len;
} enh_cases[] = {
	{ "2.0.0 ok", 5 },
	{ "5.7.1 denied", 5 },
	{ "4.4.2 timeout", 5 },
	{ "5.1.10 x", 6 },
	{ "5.123.456 x", 9 },
	{ "2.0.0  two spaces", 5 },
	{ "5.1234.1 x", 0 },
	{ "5.1.1234 x", 0 },
	{ "3.0.0 x", 0 },
	{ "1.0.0 x", 0 },
	{ "2.0.0", 0 },
	{ "2.0.0x", 0 },
	{ "2.0 x", 0 },
	{ "2..0 x", 0 },
	{ "2.0. x", 0 },
	{ ".0.0 x", 0 },
	{ "25.0.0 x", 0 },
	{ "x", 0 },
	{ "", 0 },
	{ "2.a.0 x", 0 },
	{ "2.0.0\tx", 0 },
};

START_TEST(test_enhanced)
{
	const struct enh_case *c = &enh_cases[_i];

	ck_assert_msg(px_smtp_enhanced_code(c->text) == c->len, "\"%s\": %zu, want %zu", c->text,
		      px_smtp_enhanced_code(c->text), c->len);
}
END_TEST

START_TEST(test_enhanced_null)
{
	ck_assert_uint_eq(px_smtp_enhanced_code(NULL), 0);
	ck_assert(!px_smtp_valid_xtext(NULL));
}
END_TEST

/* ---- suite ----------------------------------------------------------- */

/* parse_suite - every test case above */
static Suite *parse_suite(void)
{
	Suite *s = suite_create("smtp_parse");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_split, 0, (int)N_ELEM(split_cases));
	tcase_add_loop_test(tc, test_check_line, 0, (int)N_ELEM(line_cases));
	tcase_add_loop_test(tc, test_path_ok, 0, (int)N_ELEM(path_ok));
	tcase_add_loop_test(tc, test_path_bad, 0, (int)N_ELEM(path_bad));
	tcase_add_loop_test(tc, test_path_lengths, 0, (int)N_ELEM(len_cases));
	tcase_add_test(tc, test_path_route_length);
	tcase_add_test(tc, test_path_quoted_local_length);
	tcase_add_test(tc, test_params);
	tcase_add_test(tc, test_params_max);
	tcase_add_test(tc, test_path_after_split);
	tcase_add_loop_test(tc, test_domain, 0, (int)N_ELEM(dom_cases));
	tcase_add_test(tc, test_domain_limits);
	tcase_add_loop_test(tc, test_xtext, 0, (int)N_ELEM(xtext_cases));
	tcase_add_loop_test(tc, test_reply, 0, (int)N_ELEM(reply_cases));
	tcase_add_test(tc, test_reply_unterminated);
	tcase_add_loop_test(tc, test_enhanced, 0, (int)N_ELEM(enh_cases));
	tcase_add_test(tc, test_enhanced_null);
	suite_add_tcase(s, tc);
	return s;
}

/* main - run the suite; nonzero exit on any failure */
int main(void)
{
	SRunner *sr = srunner_create(parse_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
