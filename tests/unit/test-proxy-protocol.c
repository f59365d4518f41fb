/*
 * NAME
 *	test-proxy-protocol - unit tests for proxy/proxy_protocol.c
 * DESCRIPTION
 *	Good v1 and v2 headers (TCP4, TCP6, UNKNOWN/LOCAL, TLVs), every prefix
 *	of a good header (must ask for more, never fail), and malformed or
 *	over-long ones (must fail with a reason).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "proxy/proxy_protocol.h"

#define ALL (PX_PP_ALLOW_V1 | PX_PP_ALLOW_V2)

static const unsigned char v2_tcp4[] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
	0x21, 0x11, 0x00, 0x0F,
	192, 0, 2, 7, 198, 51, 100, 1, 0x9C, 0x40, 0x00, 0x19,
	0x04, 0x00, 0x00             /* a NOOP TLV, skipped */
};

/* addr4 - the IPv4 address and port of ss as "a.b.c.d:port" */
static const char *addr4(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
	char a[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a));
	snprintf(buf, len, "%s:%u", a, ntohs(in->sin_port));
	return buf;
}

START_TEST(v1_tcp4)
{
	const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n";
	struct px_proxy_info pp;
	char buf[64];

	ck_assert_int_eq(px_proxy_parse((const unsigned char *)h, strlen(h), ALL, &pp), PX_PP_DONE);
	ck_assert_int_eq(pp.version, 1);
	ck_assert_uint_eq(pp.length, strlen(h) - strlen("EHLO x\r\n"));
	ck_assert_str_eq(addr4(&pp.src, buf, sizeof(buf)), "192.0.2.7:40000");
	ck_assert_str_eq(addr4(&pp.dst, buf, sizeof(buf)), "198.51.100.1:25");
}
END_TEST

START_TEST(v1_tcp6_and_unknown)
{
	const char *h6 = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
	const char *hu = "PROXY UNKNOWN\r\n";
	struct px_proxy_info pp;

	ck_assert_int_eq(px_proxy_parse((const unsigned char *)h6, strlen(h6), ALL, &pp), PX_PP_DONE);
	ck_assert_int_eq(pp.src.ss_family, AF_INET6);
	ck_assert_int_eq(px_proxy_parse((const unsigned char *)hu, strlen(hu), ALL, &pp), PX_PP_DONE);
	ck_assert_int_eq(pp.local, 1);
}
END_TEST

START_TEST(v2_tcp4_with_tlv)
{
	struct px_proxy_info pp;
	char buf[64];

	ck_assert_int_eq(px_proxy_parse(v2_tcp4, sizeof(v2_tcp4), ALL, &pp), PX_PP_DONE);
	ck_assert_int_eq(pp.version, 2);
	ck_assert_uint_eq(pp.length, sizeof(v2_tcp4));
	ck_assert_str_eq(addr4(&pp.src, buf, sizeof(buf)), "192.0.2.7:40000");
}
END_TEST

START_TEST(prefixes_ask_for_more)
{
	const char *h = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n";
	struct px_proxy_info pp;
	size_t i;

	for (i = 1; i < strlen(h); i++)
		ck_assert_int_eq(px_proxy_parse((const unsigned char *)h, i, ALL, &pp), PX_PP_MORE);
	for (i = 1; i < sizeof(v2_tcp4); i++)
		ck_assert_int_eq(px_proxy_parse(v2_tcp4, i, ALL, &pp), PX_PP_MORE);
}
END_TEST

START_TEST(malformed)
{
	static const char *const bad[] = {
		"EHLO x\r\n", "PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n",
		"PROXY TCP4 192.0.2.777 198.51.100.1 1 2\r\n", "PROXY TCP4 192.0.2.7 1.2.3.4 01 2\r\n",
		"PROXY TCP4 192.0.2.7 1.2.3.4 1 65536\r\n", "PROXY TCP5 192.0.2.7 1.2.3.4 1 2\r\n",
		"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n", "PROXY TCP4 192.0.2.7 1.2.3.4 1 2\rX",
		"PROXY TCP4 192.0.2.7 1.2.3.4 1 2 3\r\n",
	};
	unsigned char longv1[200], v2[sizeof(v2_tcp4)];
	struct px_proxy_info pp;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(px_proxy_parse((const unsigned char *)bad[i], strlen(bad[i]), ALL,
						&pp), PX_PP_BAD);
		ck_assert(pp.why[0] != 0);
	}
	memset(longv1, 'x', sizeof(longv1));
	memcpy(longv1, "PROXY ", 6);
	ck_assert_int_eq(px_proxy_parse(longv1, sizeof(longv1), ALL, &pp), PX_PP_BAD);
	memcpy(v2, v2_tcp4, sizeof(v2));
	v2[13] = 0x12;                          /* UDP over IPv4 */
	ck_assert_int_eq(px_proxy_parse(v2, sizeof(v2), ALL, &pp), PX_PP_BAD);
	memcpy(v2, v2_tcp4, sizeof(v2));
	v2[14] = 0xff;                          /* longer than PX_PP_V2_MAX */
	ck_assert_int_eq(px_proxy_parse(v2, 16, ALL, &pp), PX_PP_BAD);
	ck_assert_int_eq(px_proxy_parse(v2_tcp4, sizeof(v2_tcp4), PX_PP_ALLOW_V1, &pp), PX_PP_BAD);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("proxy_protocol");
	TCase *tc = tcase_create("parse");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, v1_tcp4);
	tcase_add_test(tc, v1_tcp6_and_unknown);
	tcase_add_test(tc, v2_tcp4_with_tlv);
	tcase_add_test(tc, prefixes_ask_for_more);
	tcase_add_test(tc, malformed);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
