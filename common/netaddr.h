/*
 * NAME
 *	netaddr - socket addresses as text, and CIDR networks
 * DESCRIPTION
 *	px_cidr_parse() reads "192.0.2.0/24", "2001:db8::/32", or a bare address
 *	(a host network). IPv4-mapped IPv6 clients (::ffff:192.0.2.1) match IPv4
 *	networks. Functions return 0 on success and -1 with err filled on failure.
 */
#ifndef PX_COMMON_NETADDR_H
#define PX_COMMON_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

struct px_cidr {
	int family;               /* AF_INET or AF_INET6 */
	unsigned char addr[16];   /* network byte order; 4 bytes used for AF_INET */
	unsigned prefix;          /* 0..32 or 0..128 */
};

int px_cidr_parse(const char *text, struct px_cidr *out, char *err, size_t errlen);
/* px_cidr_match - 1 if sa (AF_INET or AF_INET6) lies in net */
int px_cidr_match(const struct px_cidr *net, const struct sockaddr *sa);
/* px_cidr_match_any - 1 if sa lies in any of the n networks */
int px_cidr_match_any(const struct px_cidr *nets, size_t n, const struct sockaddr *sa);
/* px_cidr_format - "192.0.2.0/24" */
char *px_cidr_format(const struct px_cidr *net, char *out, size_t outlen);

/* px_sockaddr_key - 16 bytes naming the address (IPv4 as IPv4-mapped IPv6),
 * for tables keyed by client address; other families give all zeros */
void px_sockaddr_key(const struct sockaddr *sa, unsigned char key[16]);
/* px_key_hash - FNV-1a of such a key */
unsigned px_key_hash(const unsigned char key[16]);

/* px_sockaddr_ntop - address only: "192.0.2.1", "2001:db8::1" (mapped v4 unmapped) */
char *px_sockaddr_ntop(const struct sockaddr *sa, char *out, size_t outlen);
/* px_sockaddr_port - the port, host byte order */
unsigned px_sockaddr_port(const struct sockaddr *sa);

/*
 * px_hostport_split - "HOST:PORT", "[V6]:PORT" or "V6-ADDR" forms into host and
 * port strings. A missing port is an error unless dflt_port is non-NULL.
 */
int px_hostport_split(const char *text, const char *dflt_port, char *host, size_t hostlen,
		      char *port, size_t portlen, char *err, size_t errlen);

#endif
