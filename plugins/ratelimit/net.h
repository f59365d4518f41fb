/*
 * net.h - client addresses and networks for the ratelimit plugin (a copy of
 * plugins/greylist/net.h: a plugin sees only its own files): parse an
 * address, cut it to a prefix, match it against "ADDR/LEN" lists. Static
 * functions: a plugin links nothing of Postern's.
 */
#ifndef RATELIMIT_NET_H
#define RATELIMIT_NET_H

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gl_addr {
	int family;               /* AF_INET or AF_INET6 */
	unsigned char b[16];
};

struct gl_net {
	struct gl_addr a;
	unsigned len;
};

/* gl_addr_parse - an IPv4 or IPv6 address (an IPv4-mapped one as IPv4) */
static int gl_addr_parse(const char *s, struct gl_addr *a)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, s, a->b) == 1) {
		a->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, a->b) != 1)
		return -1;
	a->family = AF_INET6;
	if (memcmp(a->b, mapped, 12) == 0) {
		memmove(a->b, a->b + 12, 4);
		memset(a->b + 4, 0, 12);
		a->family = AF_INET;
	}
	return 0;
}

/* gl_cut - clear the bits after len */
static void gl_cut(struct gl_addr *a, unsigned len)
{
	unsigned bits = a->family == AF_INET ? 32 : 128, i;

	for (i = len; i < bits; i++)
		a->b[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
}

/* gl_net_parse - "ADDR" or "ADDR/LEN"; -1 when it is neither */
static int gl_net_parse(const char *s, struct gl_net *n)
{
	char buf[64], *slash, *end;
	unsigned long len;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	if (gl_addr_parse(buf, &n->a) < 0)
		return -1;
	len = n->a.family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		unsigned long max = len;

		len = strtoul(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || len > max)
			return -1;
	}
	n->len = (unsigned)len;
	gl_cut(&n->a, n->len);
	return 0;
}

/* gl_net_has - a lies in n */
static int gl_net_has(const struct gl_net *n, const struct gl_addr *a)
{
	struct gl_addr c = *a;

	if (c.family != n->a.family)
		return 0;
	gl_cut(&c, n->len);
	return memcmp(c.b, n->a.b, 16) == 0;
}

/* gl_net_text - "192.0.2.0/24" of a cut to len */
static char *gl_net_text(const struct gl_addr *a, unsigned len, char *buf, size_t size)
{
	struct gl_addr c = *a;
	char ip[INET6_ADDRSTRLEN];

	gl_cut(&c, len);
	inet_ntop(c.family, c.b, ip, sizeof(ip));
	snprintf(buf, size, "%s/%u", ip, len);
	return buf;
}

#endif
