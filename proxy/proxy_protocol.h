/*
 * NAME
 *	proxy_protocol - the HAProxy PROXY protocol header, v1 and v2
 * SYNOPSIS
 *	#include "proxy/proxy_protocol.h"
 * DESCRIPTION
 *	px_proxy_parse() reads the header at the start of a connection from
 *	the bytes received so far. It returns PX_PP_MORE while the header may
 *	still be incomplete, PX_PP_DONE with the addresses and the header's
 *	length, or PX_PP_BAD with the reason. Nothing past the header is
 *	looked at. Bounds: v1 is at most 107 bytes (the spec's limit), v2 at
 *	most PX_PP_V2_MAX; TLVs are skipped. A v1 "UNKNOWN" or a v2 LOCAL
 *	command gives local = 1 (health checks: keep the socket's address).
 * STANDARDS
 *	The PROXY protocol, versions 1 and 2 (haproxy.org, proxy-protocol.txt).
 */
#ifndef PX_PROXY_PROXY_PROTOCOL_H
#define PX_PROXY_PROXY_PROTOCOL_H

#include <stddef.h>
#include <sys/socket.h>

#define PX_PP_V1_MAX 107
#define PX_PP_V2_MAX (16 + 2048)

enum { PX_PP_BAD = -1, PX_PP_MORE = 0, PX_PP_DONE = 1 };
enum { PX_PP_ALLOW_V1 = 1, PX_PP_ALLOW_V2 = 2 };

struct px_proxy_info {
	int version;                     /* 1 or 2 */
	int local;                       /* no addresses: keep the socket's */
	struct sockaddr_storage src;     /* the real client */
	struct sockaddr_storage dst;     /* the address it connected to */
	size_t length;                   /* header bytes to consume */
	char why[128];                   /* PX_PP_BAD: what was wrong */
};

int px_proxy_parse(const unsigned char *p, size_t len, int allow, struct px_proxy_info *out);

#endif
