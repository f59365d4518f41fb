/*
 * NAME
 *	test-netaddr - unit tests of common/netaddr.c
 * DESCRIPTION
 *	CIDR parsing and matching (IPv4, IPv6, IPv4-mapped IPv6 clients and
 *	networks), address formatting, and HOST:PORT splitting.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "common/netaddr.h"

/* sa_of - fill ss with "ADDR" (v4 or v6) and port */
static const struct sockaddr *sa_of(struct sockaddr_storage *ss, const char *addr, unsigned port)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((unsigned short)port);
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((unsigned short)port);
	}
	return (const struct sockaddr *)ss;
}

/* matches - whether addr lies in the network written as net */
static int matches(const char *net, const char *addr)
{
	struct sockaddr_storage ss;
	struct px_cidr c;
	char err[128];

	ck_assert_msg(px_cidr_parse(net, &c, err, sizeof(err)) == 0, "%s: %s", net, err);
	return px_cidr_match(&c, sa_of(&ss, addr, 0));
}

/* formatted - parse text and format it back */
static const char *formatted(const char *text)
{
	static char out[64];
	struct px_cidr c;
	char err[128];

	ck_assert_msg(px_cidr_parse(text, &c, err, sizeof(err)) == 0, "%s: %s", text, err);
	return px_cidr_format(&c, out, sizeof(out));
}

START_TEST(cidr_parse_forms)
{
	struct px_cidr c;
	char err[128];

	ck_assert_int_eq(px_cidr_parse("192.0.2.0/24", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_uint_eq(c.prefix, 24);
	ck_assert_int_eq(px_cidr_parse("2001:db8::/32", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.family, AF_INET6);
	ck_assert_uint_eq(c.prefix, 32);
	ck_assert_int_eq(px_cidr_parse("192.0.2.7", &c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.prefix, 32);
	ck_assert_int_eq(px_cidr_parse("::1", &c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.prefix, 128);
	ck_assert_int_eq(px_cidr_parse("0.0.0.0/0", &c, err, sizeof(err)), 0);
	ck_assert_uint_eq(c.prefix, 0);
}
END_TEST

START_TEST(cidr_parse_errors)
{
	static const char *const bad[] = {
		"", "/24", "192.0.2.0/", "192.0.2.0/33", "2001:db8::/129", "192.0.2.0/-1",
		"192.0.2.0/24x", "192.0.2.0/024x", "192.0.2/24", "example.com", "192.0.2.0 /24",
		"192.0.2.1/24", "2001:db8::1/64", "1.2.3.4/1000",
		"0000000000000000000000000000000000000000000000000000000000000000000000/8",
	};
	struct px_cidr c;
	char err[128];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		ck_assert_msg(px_cidr_parse(bad[i], &c, err, sizeof(err)) == -1, "accepted '%s'", bad[i]);
		ck_assert_msg(err[0] != 0, "no message for '%s'", bad[i]);
	}
	px_cidr_parse("192.0.2.1/24", &c, err, sizeof(err));
	ck_assert_ptr_nonnull(strstr(err, "beyond the /24"));
}
END_TEST

START_TEST(cidr_match_v4)
{
	ck_assert(matches("192.0.2.0/24", "192.0.2.0"));
	ck_assert(matches("192.0.2.0/24", "192.0.2.255"));
	ck_assert(!matches("192.0.2.0/24", "192.0.3.0"));
	ck_assert(matches("10.0.0.0/7", "11.255.255.255"));
	ck_assert(!matches("10.0.0.0/7", "12.0.0.0"));
	ck_assert(matches("198.51.100.0/23", "198.51.101.9"));
	ck_assert(!matches("198.51.100.0/23", "198.51.102.9"));
	ck_assert(matches("0.0.0.0/0", "203.0.113.5"));
	ck_assert(matches("203.0.113.5", "203.0.113.5"));
	ck_assert(!matches("203.0.113.5", "203.0.113.4"));
}
END_TEST

START_TEST(cidr_match_v6)
{
	ck_assert(matches("2001:db8::/32", "2001:db8:ffff::1"));
	ck_assert(!matches("2001:db8::/32", "2001:db9::1"));
	ck_assert(matches("2001:db8::/127", "2001:db8::1"));
	ck_assert(!matches("2001:db8::/127", "2001:db8::2"));
	ck_assert(matches("::1/128", "::1"));
	ck_assert(!matches("::/0", "192.0.2.1"));
	ck_assert(!matches("0.0.0.0/0", "2001:db8::1"));
}
END_TEST

START_TEST(cidr_match_v4_mapped)
{
	struct px_cidr c;
	char err[128];

	/* a mapped client matches the IPv4 network it belongs to */
	ck_assert(matches("192.0.2.0/24", "::ffff:192.0.2.77"));
	ck_assert(!matches("192.0.2.0/24", "::ffff:192.0.3.77"));
	ck_assert(matches("127.0.0.0/8", "::ffff:127.0.0.1"));
	/* a network written mapped is the IPv4 network */
	ck_assert_int_eq(px_cidr_parse("::ffff:192.0.2.0/120", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_uint_eq(c.prefix, 24);
	ck_assert(matches("::ffff:192.0.2.0/120", "192.0.2.9"));
	ck_assert(matches("::ffff:192.0.2.0/120", "::ffff:192.0.2.9"));
	ck_assert(!matches("::ffff:192.0.2.0/120", "192.0.3.9"));
	ck_assert_str_eq(formatted("::ffff:0.0.0.0/96"), "0.0.0.0/0");
	/* a plain IPv6 network does not match the mapped range */
	ck_assert(!matches("2001:db8::/32", "::ffff:192.0.2.1"));
}
END_TEST

START_TEST(cidr_match_any_and_format)
{
	struct px_cidr nets[2];
	struct sockaddr_storage ss;
	char err[128];

	ck_assert_int_eq(px_cidr_parse("127.0.0.0/8", &nets[0], err, sizeof(err)), 0);
	ck_assert_int_eq(px_cidr_parse("::1/128", &nets[1], err, sizeof(err)), 0);
	ck_assert(px_cidr_match_any(nets, 2, sa_of(&ss, "127.1.2.3", 25)));
	ck_assert(px_cidr_match_any(nets, 2, sa_of(&ss, "::1", 25)));
	ck_assert(!px_cidr_match_any(nets, 2, sa_of(&ss, "192.0.2.1", 25)));
	ck_assert(!px_cidr_match_any(nets, 0, sa_of(&ss, "127.0.0.1", 25)));
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	ck_assert(!px_cidr_match(&nets[0], (const struct sockaddr *)&ss));
	ck_assert_str_eq(formatted("192.0.2.0/24"), "192.0.2.0/24");
	ck_assert_str_eq(formatted("2001:DB8::/32"), "2001:db8::/32");
	ck_assert_str_eq(formatted("192.0.2.1"), "192.0.2.1/32");
}
END_TEST

START_TEST(sockaddr_text_and_port)
{
	struct sockaddr_storage ss;
	char out[64];

	ck_assert_str_eq(px_sockaddr_ntop(sa_of(&ss, "192.0.2.1", 25), out, sizeof(out)), "192.0.2.1");
	ck_assert_uint_eq(px_sockaddr_port(sa_of(&ss, "192.0.2.1", 25)), 25);
	ck_assert_str_eq(px_sockaddr_ntop(sa_of(&ss, "2001:db8::1", 2525), out, sizeof(out)),
			 "2001:db8::1");
	ck_assert_uint_eq(px_sockaddr_port(sa_of(&ss, "2001:db8::1", 2525)), 2525);
	ck_assert_str_eq(px_sockaddr_ntop(sa_of(&ss, "::ffff:192.0.2.9", 1), out, sizeof(out)),
			 "192.0.2.9");
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	ck_assert_str_eq(px_sockaddr_ntop((struct sockaddr *)&ss, out, sizeof(out)), "?");
	ck_assert_uint_eq(px_sockaddr_port((struct sockaddr *)&ss), 0);
}
END_TEST

/* split_ok - split text and compare host and port */
static void split_ok(const char *text, const char *dflt, const char *host, const char *port)
{
	char h[64], p[8], err[128];

	ck_assert_msg(px_hostport_split(text, dflt, h, sizeof(h), p, sizeof(p), err, sizeof(err)) == 0,
		      "%s: %s", text, err);
	ck_assert_str_eq(h, host);
	ck_assert_str_eq(p, port);
}

/* split_bad - splitting text fails with a message that names it */
static void split_bad(const char *text, const char *dflt)
{
	char h[64], p[8], err[128] = "";

	ck_assert_msg(px_hostport_split(text, dflt, h, sizeof(h), p, sizeof(p), err, sizeof(err)) == -1,
		      "accepted '%s'", text);
	ck_assert_msg(strstr(err, text) != NULL, "'%s' not in '%s'", text, err);
}

START_TEST(hostport_split_good)
{
	split_ok("127.0.0.1:25", NULL, "127.0.0.1", "25");
	split_ok("mx.example.com:2525", NULL, "mx.example.com", "2525");
	split_ok("[::1]:2525", NULL, "::1", "2525");
	split_ok("[2001:db8::25]:65535", NULL, "2001:db8::25", "65535");
	split_ok("[::1]", "25", "::1", "25");
	split_ok("::1", "25", "::1", "25");
	split_ok("2001:db8::1", "24", "2001:db8::1", "24");
	split_ok("mx.example.com", "25", "mx.example.com", "25");
	split_ok("0.0.0.0:25", "587", "0.0.0.0", "25");
}
END_TEST

START_TEST(hostport_split_errors)
{
	char h[4], p[8], err[128];

	split_bad("127.0.0.1", NULL);
	split_bad("::1", NULL);
	split_bad("[::1]", NULL);
	split_bad(":25", NULL);
	split_bad("host:", NULL);
	split_bad("host:0", NULL);
	split_bad("host:65536", NULL);
	split_bad("host:smtp", NULL);
	split_bad("host:25x", NULL);
	split_bad("[::1]x", "25");
	split_bad("[::1]:", NULL);
	split_bad("[::1", "25");
	split_bad("[nothex]:25", NULL);
	split_bad("1:2:3", NULL);
	split_bad("[]:25", NULL);
	split_bad("a b:25", NULL);
	ck_assert_int_eq(px_hostport_split("longhost:25", NULL, h, sizeof(h), p, sizeof(p),
					   err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "too long"));
}
END_TEST

/* netaddr_suite - every test above */
static Suite *netaddr_suite(void)
{
	Suite *s = suite_create("netaddr");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, cidr_parse_forms);
	tcase_add_test(tc, cidr_parse_errors);
	tcase_add_test(tc, cidr_match_v4);
	tcase_add_test(tc, cidr_match_v6);
	tcase_add_test(tc, cidr_match_v4_mapped);
	tcase_add_test(tc, cidr_match_any_and_format);
	tcase_add_test(tc, sockaddr_text_and_port);
	tcase_add_test(tc, hostport_split_good);
	tcase_add_test(tc, hostport_split_errors);
	suite_add_tcase(s, tc);
	return s;
}

/* main - run the suite; non-zero exit if any test failed */
int main(void)
{
	SRunner *sr = srunner_create(netaddr_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
