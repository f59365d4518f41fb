/*
 * NAME
 *	netaddr - socket addresses as text, and CIDR networks
 * SUMMARY
 *	parse and match "192.0.2.0/24"; split "HOST:PORT"
 * DESCRIPTION
 *	A network written with IPv4-mapped IPv6 syntax (::ffff:192.0.2.0/120)
 *	is stored as the IPv4 network it means, and a mapped client address
 *	is unmapped before matching, so one "192.0.2.0/24" covers a client
 *	whether it arrived on an IPv4 or a dual-stack IPv6 socket.
 *
 *	A network with bits set beyond its prefix ("192.0.2.1/24") is refused
 *	rather than silently widened: it is almost always a typo.
 *
 *	Ports are decimal 1..65535; service names are not looked up.
 * DIAGNOSTICS
 *	Functions that can fail return 0 or -1 with a one-line message in err.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/netaddr.h"

static const unsigned char v4mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

/* addr_len - bytes of address for a family */
static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* addr_is_v4mapped - whether 16 bytes hold ::ffff:a.b.c.d */
static int addr_is_v4mapped(const unsigned char *a16)
{
	return memcmp(a16, v4mapped_prefix, sizeof(v4mapped_prefix)) == 0;
}

/* bits_match - whether the first prefix bits of a and b agree */
static int bits_match(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	unsigned char mask;

	if (memcmp(a, b, whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* host_bits_zero - whether every bit after prefix is clear */
static int host_bits_zero(const unsigned char *a, size_t len, unsigned prefix)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned lo = (unsigned)i * 8;
		unsigned char keep;

		if (lo + 8 <= prefix)
			continue;
		keep = lo >= prefix ? 0 : (unsigned char)(0xff << (8 - (prefix - lo)));
		if (a[i] & (unsigned char)~keep)
			return 0;
	}
	return 1;
}

/* cidr_prefix - read the decimal prefix after '/' */
static int cidr_prefix(const char *s, unsigned max, unsigned *prefix)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9' || strlen(s) > 3)
		return -1;
	v = strtoul(s, &end, 10);
	if (*end || v > max)
		return -1;
	*prefix = (unsigned)v;
	return 0;
}

/* cidr_address - the address part, v4 or v6, into out */
static int cidr_address(const char *s, struct px_cidr *out)
{
	if (inet_pton(AF_INET, s, out->addr) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->addr) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return -1;
}

/* cidr_unmap - turn a v4-mapped network of prefix >= 96 into IPv4 */
static void cidr_unmap(struct px_cidr *net)
{
	if (net->family != AF_INET6 || net->prefix < 96 || !addr_is_v4mapped(net->addr))
		return;
	memmove(net->addr, net->addr + 12, 4);
	memset(net->addr + 4, 0, 12);
	net->family = AF_INET;
	net->prefix -= 96;
}

/* px_cidr_parse - "192.0.2.0/24", "2001:db8::/32", or a bare address */
int px_cidr_parse(const char *text, struct px_cidr *out, char *err, size_t errlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	char *slash;
	unsigned max;

	memset(out, 0, sizeof(*out));
	if (strlen(text) >= sizeof(buf)) {
		snprintf(err, errlen, "network '%.64s...' is too long", text);
		return -1;
	}
	strcpy(buf, text);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = 0;
	if (cidr_address(buf, out) < 0) {
		snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 network", text);
		return -1;
	}
	max = out->family == AF_INET ? 32 : 128;
	out->prefix = max;
	if (slash && cidr_prefix(slash, max, &out->prefix) < 0) {
		snprintf(err, errlen, "'%s': prefix length must be 0..%u", text, max);
		return -1;
	}
	if (!host_bits_zero(out->addr, addr_len(out->family), out->prefix)) {
		snprintf(err, errlen, "'%s' has bits set beyond the /%u prefix", text, out->prefix);
		return -1;
	}
	cidr_unmap(out);
	return 0;
}

/* sockaddr_bytes - the address bytes and family of sa, v4-mapped unmapped */
static const unsigned char *sockaddr_bytes(const struct sockaddr *sa, int *family)
{
	const unsigned char *a6;

	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		return (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	}
	if (sa->sa_family != AF_INET6)
		return NULL;
	a6 = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	*family = addr_is_v4mapped(a6) ? AF_INET : AF_INET6;
	return *family == AF_INET ? a6 + 12 : a6;
}

/* px_cidr_match - 1 if sa (AF_INET or AF_INET6) lies in net */
int px_cidr_match(const struct px_cidr *net, const struct sockaddr *sa)
{
	const unsigned char *a;
	int family;

	if (!sa || !(a = sockaddr_bytes(sa, &family)) || family != net->family)
		return 0;
	return bits_match(a, net->addr, net->prefix);
}

/* px_cidr_match_any - 1 if sa lies in any of the n networks */
int px_cidr_match_any(const struct px_cidr *nets, size_t n, const struct sockaddr *sa)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (px_cidr_match(&nets[i], sa))
			return 1;
	return 0;
}

/* px_cidr_format - "192.0.2.0/24" */
char *px_cidr_format(const struct px_cidr *net, char *out, size_t outlen)
{
	char addr[INET6_ADDRSTRLEN];

	if (!inet_ntop(net->family, net->addr, addr, sizeof(addr)))
		snprintf(addr, sizeof(addr), "?");
	snprintf(out, outlen, "%s/%u", addr, net->prefix);
	return out;
}

/* px_sockaddr_ntop - address only; "?" for a family we do not know */
char *px_sockaddr_ntop(const struct sockaddr *sa, char *out, size_t outlen)
{
	const unsigned char *a;
	int family;

	if (outlen == 0)
		return out;
	a = sa ? sockaddr_bytes(sa, &family) : NULL;
	if (!a || !inet_ntop(family, a, out, (socklen_t)outlen))
		snprintf(out, outlen, "?");
	return out;
}

/* px_sockaddr_port - the port, host byte order; 0 for other families */
unsigned px_sockaddr_port(const struct sockaddr *sa)
{
	if (sa && sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	if (sa && sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	return 0;
}

/* port_valid - decimal 1..65535 */
static int port_valid(const char *p)
{
	char *end;
	unsigned long v;

	if (*p < '0' || *p > '9' || strlen(p) > 5)
		return 0;
	v = strtoul(p, &end, 10);
	return *end == 0 && v >= 1 && v <= 65535;
}

/* copy_part - bounded copy of len bytes; -1 if it does not fit */
static int copy_part(char *dst, size_t dstlen, const char *src, size_t len)
{
	if (len >= dstlen)
		return -1;
	memcpy(dst, src, len);
	dst[len] = 0;
	return 0;
}

/* is_ipv6 - whether s (len bytes) is an IPv6 address */
static int is_ipv6(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char a[16];

	return copy_part(buf, sizeof(buf), s, len) == 0 && inet_pton(AF_INET6, buf, a) == 1;
}

/*
 * hostport_locate - find the host bytes and the port text of "HOST:PORT",
 * "[V6]:PORT", "[V6]", "V6" or "HOST"; *port is NULL when none is written.
 * Returns NULL, or why the text is malformed.
 */
static const char *hostport_locate(const char *text, const char **host, size_t *hlen,
				   const char **port)
{
	const char *colon, *close;

	*port = NULL;
	*host = text;
	if (text[0] == '[') {
		close = strchr(text, ']');
		if (!close || !is_ipv6(text + 1, (size_t)(close - text - 1)))
			return "bad [IPv6] address";
		if (close[1] && close[1] != ':')
			return "junk after ']'";
		*host = text + 1;
		*hlen = (size_t)(close - text - 1);
		*port = close[1] ? close + 2 : NULL;
		return NULL;
	}
	colon = strrchr(text, ':');
	if (colon && strchr(text, ':') != colon) {
		*hlen = strlen(text);
		return is_ipv6(text, *hlen) ? NULL : "an IPv6 address with a port is written [ADDR]:PORT";
	}
	*hlen = colon ? (size_t)(colon - text) : strlen(text);
	*port = colon ? colon + 1 : NULL;
	return NULL;
}

/* host_valid - a non-empty host without spaces or control bytes */
static int host_valid(const char *h, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++)
		if ((unsigned char)h[i] <= 0x20 || (unsigned char)h[i] >= 0x7f)
			return 0;
	return 1;
}

/* hostport_parse - the work of px_hostport_split; NULL or why it failed */
static const char *hostport_parse(const char *text, const char *dflt_port, char *host,
				  size_t hostlen, char *port, size_t portlen)
{
	const char *h, *p, *why;
	size_t hlen;

	if ((why = hostport_locate(text, &h, &hlen, &p)) != NULL)
		return why;
	if (!host_valid(h, hlen))
		return "missing or bad host";
	if (!p && !(p = dflt_port))
		return "missing port";
	if (!port_valid(p))
		return "port must be a number 1..65535";
	if (copy_part(host, hostlen, h, hlen) < 0 || copy_part(port, portlen, p, strlen(p)) < 0)
		return "too long";
	return NULL;
}

/* px_hostport_split - "HOST:PORT", "[V6]:PORT" or "V6-ADDR" into host and port */
int px_hostport_split(const char *text, const char *dflt_port, char *host, size_t hostlen,
		      char *port, size_t portlen, char *err, size_t errlen)
{
	const char *why = hostport_parse(text, dflt_port, host, hostlen, port, portlen);

	if (!why)
		return 0;
	snprintf(err, errlen, "'%s': %s", text, why);
	return -1;
}

/* px_sockaddr_key - the address as 16 bytes, IPv4 mapped */
void px_sockaddr_key(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

/* px_key_hash - FNV-1a */
unsigned px_key_hash(const unsigned char key[16])
{
	unsigned h = 2166136261u;
	int i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}
