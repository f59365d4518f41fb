/*
 * NAME
 *	proxy_protocol - the HAProxy PROXY protocol header, v1 and v2
 * DESCRIPTION
 *	See proxy_protocol.h. v1 is one text line "PROXY TCP4|TCP6|UNKNOWN
 *	SRC DST SPORT DPORT\r\n"; every field is checked (addresses with
 *	inet_pton, ports 0..65535 without leading zeros or signs). v2 is a
 *	12-byte signature, version/command, family, a 16-bit length, then the
 *	addresses; only STREAM over INET/INET6 carries addresses, anything
 *	else with the PROXY command is refused, LOCAL is accepted.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_protocol.h"

static const unsigned char v2_sig[12] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

/* bad - fill the reason, return PX_PP_BAD */
static int bad(struct px_proxy_info *out, const char *why)
{
	snprintf(out->why, sizeof(out->why), "%s", why);
	return PX_PP_BAD;
}

/* prefix_of - the n bytes at p start the m-byte string s (or s starts them) */
static int prefix_of(const unsigned char *p, size_t n, const void *s, size_t m)
{
	return memcmp(p, s, n < m ? n : m) == 0;
}

/* v1_port - "0".."65535", digits only, no leading zero */
static int v1_port(const char *s, unsigned *port)
{
	size_t n = strlen(s), i;
	unsigned long v = 0;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	*port = (unsigned)v;
	return v <= 65535 ? 0 : -1;
}

/* v1_addr - one address and port into ss */
static int v1_addr(int family, const char *a, const char *p, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	unsigned port;

	memset(ss, 0, sizeof(*ss));
	if (v1_port(p, &port) < 0)
		return -1;
	if (family == AF_INET) {
		in->sin_family = AF_INET;
		in->sin_port = htons((unsigned short)port);
		return inet_pton(AF_INET, a, &in->sin_addr) == 1 ? 0 : -1;
	}
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons((unsigned short)port);
	return inet_pton(AF_INET6, a, &in6->sin6_addr) == 1 ? 0 : -1;
}

/* v1_fields - split the line (no CRLF) into at most 6 space-separated fields */
static int v1_fields(char *line, char **f)
{
	int n = 0;
	char *save = NULL, *tok;

	for (tok = strtok_r(line, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		if (n == 6)
			return -1;
		f[n++] = tok;
	}
	return n;
}

/* parse_v1 - the text form */
static int parse_v1(const unsigned char *p, size_t len, struct px_proxy_info *out)
{
	const unsigned char *cr = memchr(p, '\r', len < PX_PP_V1_MAX ? len : PX_PP_V1_MAX);
	char line[PX_PP_V1_MAX + 1], *f[6];
	int n, family;

	if (cr == NULL)
		return len >= PX_PP_V1_MAX ? bad(out, "v1 header too long") : PX_PP_MORE;
	if ((size_t)(cr - p) + 1 >= len)
		return PX_PP_MORE;
	if (cr[1] != '\n')
		return bad(out, "v1 header without CRLF");
	memcpy(line, p, (size_t)(cr - p));
	line[cr - p] = 0;
	out->version = 1;
	out->length = (size_t)(cr - p) + 2;
	n = v1_fields(line, f);
	if (n >= 2 && strcmp(f[1], "UNKNOWN") == 0) {
		out->local = 1;
		return PX_PP_DONE;
	}
	if (n != 6 || (strcmp(f[1], "TCP4") != 0 && strcmp(f[1], "TCP6") != 0))
		return bad(out, "v1 header malformed");
	family = f[1][3] == '4' ? AF_INET : AF_INET6;
	if (v1_addr(family, f[2], f[4], &out->src) < 0 || v1_addr(family, f[3], f[5], &out->dst) < 0)
		return bad(out, "v1 header has a bad address or port");
	return PX_PP_DONE;
}

/* v2_inet - the address block of a TCP over IPv4 or IPv6 header */
static int v2_inet(const unsigned char *a, size_t alen, int fam, struct px_proxy_info *out)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->src, *d4 = (struct sockaddr_in *)&out->dst;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->src;
	struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&out->dst;

	if (fam == 0x11) {
		if (alen < 12)
			return bad(out, "v2 header too short for IPv4");
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a, 4);
		memcpy(&d4->sin_addr, a + 4, 4);
		memcpy(&s4->sin_port, a + 8, 2);
		memcpy(&d4->sin_port, a + 10, 2);
		return PX_PP_DONE;
	}
	if (alen < 36)
		return bad(out, "v2 header too short for IPv6");
	s6->sin6_family = d6->sin6_family = AF_INET6;
	memcpy(&s6->sin6_addr, a, 16);
	memcpy(&d6->sin6_addr, a + 16, 16);
	memcpy(&s6->sin6_port, a + 32, 2);
	memcpy(&d6->sin6_port, a + 34, 2);
	return PX_PP_DONE;
}

/* parse_v2 - the binary form */
static int parse_v2(const unsigned char *p, size_t len, struct px_proxy_info *out)
{
	size_t alen;

	if (len < 16)
		return PX_PP_MORE;
	alen = ((size_t)p[14] << 8) | p[15];
	if (16 + alen > PX_PP_V2_MAX)
		return bad(out, "v2 header too long");
	if ((p[12] & 0xF0) != 0x20)
		return bad(out, "v2 header with an unknown version");
	if (len < 16 + alen)
		return PX_PP_MORE;
	out->version = 2;
	out->length = 16 + alen;
	if ((p[12] & 0x0F) == 0x00) {
		out->local = 1;
		return PX_PP_DONE;
	}
	if ((p[12] & 0x0F) != 0x01)
		return bad(out, "v2 header with an unknown command");
	if (p[13] != 0x11 && p[13] != 0x21)
		return bad(out, "v2 header: only TCP over IPv4 or IPv6 is accepted");
	return v2_inet(p + 16, alen, p[13], out);
}

/* px_proxy_parse - one header at the start of p */
int px_proxy_parse(const unsigned char *p, size_t len, int allow, struct px_proxy_info *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0)
		return PX_PP_MORE;
	if ((allow & PX_PP_ALLOW_V1) && prefix_of(p, len, "PROXY ", 6))
		return len < 6 ? PX_PP_MORE : parse_v1(p, len, out);
	if ((allow & PX_PP_ALLOW_V2) && prefix_of(p, len, v2_sig, sizeof(v2_sig)))
		return len < sizeof(v2_sig) ? PX_PP_MORE : parse_v2(p, len, out);
	return bad(out, allow == PX_PP_ALLOW_V1 ? "no PROXY v1 header" :
		   allow == PX_PP_ALLOW_V2 ? "no PROXY v2 header" : "no PROXY header");
}
