/*
 * NAME
 *	smtp_xclient - XCLIENT from a trusted front end (Postfix's extension)
 * DESCRIPTION
 *	A client in xclient_sources may send "XCLIENT ATTR=value ..." outside
 *	a transaction to say for whom it speaks: ADDR, PORT, NAME, HELO,
 *	PROTO, LOGIN, DESTADDR, DESTPORT (values xtext-encoded; "[UNAVAILABLE]"
 *	and "[TEMPUNAVAIL]" mean unknown). The new client address then drives
 *	everything, as a PROXY header does (trusted_networks, relay, logs,
 *	Received, the backend's XCLIENT); a LOGIN counts as authenticated.
 *	Every attribute is validated before any is applied. As after a PROXY
 *	header, the per-client connection count moves to the new address
 *	(over limits.connections_per_client_max: 421 4.7.0 and close), and the
 *	connect stage of the plugin chain runs for the new identity; its
 *	answer is the reply: a new 220 greeting, after which the session
 *	starts over (EHLO again) as in Postfix, or the connect stage's
 *	refusal, which ends the session. Anyone else gets 550 5.7.0.
 * STANDARDS
 *	Postfix XCLIENT_README.
 * DIAGNOSTICS
 *	"SID xclient client=ADDR port=N name=NAME helo=HELO login=LOGIN",
 *	"SID reject reason=xclient client=ADDR error=...".
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "policy/config.h"
#include "server.h"
#include "smtp_chain.h"
#include "smtp_session_int.h"

#define XC_VALUE_MAX 255

struct xclient {
	struct sockaddr_storage addr;
	int have_addr;
	long port, destport;
	char name[XC_VALUE_MAX + 1], helo[XC_VALUE_MAX + 1], login[XC_VALUE_MAX + 1];
	char proto[16], destaddr[64];
};

/* xtext_decode - RFC 3461 xtext into out; -1 if malformed or not printable */
static int xtext_decode(const char *in, char *out, size_t outlen)
{
	size_t n = 0;
	unsigned v;

	for (; *in != 0; in++) {
		if (n + 1 >= outlen)
			return -1;
		if (*in == '+') {
			if (!isxdigit((unsigned char)in[1]) || !isxdigit((unsigned char)in[2]) ||
			    sscanf(in + 1, "%2x", &v) != 1)
				return -1;
			out[n++] = (char)v;
			in += 2;
		} else {
			out[n++] = *in;
		}
		if ((unsigned char)out[n - 1] <= 0x20 || (unsigned char)out[n - 1] >= 0x7f)
			return -1;
	}
	out[n] = 0;
	return 0;
}

/* xc_addr - "192.0.2.1" or "IPV6:2001:db8::1" */
static int xc_addr(const char *v, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strncasecmp(v, "IPV6:", 5) == 0) {
		in6->sin6_family = AF_INET6;
		return inet_pton(AF_INET6, v + 5, &in6->sin6_addr) == 1 ? 0 : -1;
	}
	in->sin_family = AF_INET;
	return inet_pton(AF_INET, v, &in->sin_addr) == 1 ? 0 : -1;
}

/* xc_port - 0..65535 */
static int xc_port(const char *v, long *port)
{
	char *end;

	*port = strtol(v, &end, 10);
	return *v && *end == 0 && *port >= 0 && *port <= 65535 ? 0 : -1;
}

/* xc_unknown - the two "not known" values */
static int xc_unknown(const char *v)
{
	return strcmp(v, "[UNAVAILABLE]") == 0 || strcmp(v, "[TEMPUNAVAIL]") == 0;
}

/* xc_attr - one decoded NAME=value into x; -1 if bad */
static int xc_attr(struct xclient *x, const char *k, const char *v)
{
	if (xc_unknown(v))
		return strcasecmp(k, "NAME") == 0 ? (snprintf(x->name, sizeof(x->name), "unknown"), 0)
		       : 0;
	if (strcasecmp(k, "ADDR") == 0)
		return (x->have_addr = xc_addr(v, &x->addr) == 0) ? 0 : -1;
	if (strcasecmp(k, "PORT") == 0)
		return xc_port(v, &x->port);
	if (strcasecmp(k, "DESTPORT") == 0)
		return xc_port(v, &x->destport);
	if (strcasecmp(k, "DESTADDR") == 0)
		return snprintf(x->destaddr, sizeof(x->destaddr), "%s", v) < (int)sizeof(x->destaddr)
		       ? 0 : -1;
	if (strcasecmp(k, "PROTO") == 0)
		return strcasecmp(v, "SMTP") == 0 || strcasecmp(v, "ESMTP") == 0 ?
		       (snprintf(x->proto, sizeof(x->proto), "%s", v), 0) : -1;
	if (strcasecmp(k, "NAME") == 0)
		return snprintf(x->name, sizeof(x->name), "%s", v), 0;
	if (strcasecmp(k, "HELO") == 0)
		return snprintf(x->helo, sizeof(x->helo), "%s", v), 0;
	if (strcasecmp(k, "LOGIN") == 0)
		return snprintf(x->login, sizeof(x->login), "%s", v), 0;
	return -1;
}

/* xc_parse - every attribute, or the name of the bad one */
static const char *xc_parse(char *args, struct xclient *x)
{
	char *save = NULL, *tok, *eq, value[XC_VALUE_MAX + 1];

	memset(x, 0, sizeof(*x));
	x->port = x->destport = -1;
	for (tok = strtok_r(args, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		if ((eq = strchr(tok, '=')) == NULL)
			return tok;
		*eq = 0;
		if (xtext_decode(eq + 1, value, sizeof(value)) < 0 || xc_attr(x, tok, value) < 0)
			return tok;
	}
	return NULL;
}

/* xc_apply - the new identity */
static void xc_apply(struct px_session *s, struct xclient *x)
{
	struct sockaddr_storage ss = s->client_sa;

	if (x->have_addr)
		ss = x->addr;
	if (x->port >= 0 && ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = htons((unsigned short)x->port);
	if (x->port >= 0 && ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((unsigned short)x->port);
	px_session_set_client(s, (struct sockaddr *)&ss);
	s->xclient_ok = 1;              /* the front end may speak for the next client too */
	if (x->name[0])
		snprintf(s->client_name, sizeof(s->client_name), "%s", x->name);
	snprintf(s->xclient_helo, sizeof(s->xclient_helo), "%s", x->helo);
	snprintf(s->login, sizeof(s->login), "%s", x->login);
	if (x->destaddr[0])
		snprintf(s->server_addr, sizeof(s->server_addr), "%s", x->destaddr);
	if (x->destport >= 0)
		s->server_port = (unsigned)x->destport;
}

/* xc_count - the per-client count follows the new address; 0, or -1
 * after refusing (the limit is the new client's) */
static int xc_count(struct px_session *s)
{
	unsigned char was[16], now[16];
	const char *why;

	px_sockaddr_key((struct sockaddr *)&s->count_sa, was);
	px_sockaddr_key((struct sockaddr *)&s->client_sa, now);
	if (memcmp(was, now, sizeof(was)) == 0)
		return 0;
	if ((why = px_server_conn_move(s->srv, (struct sockaddr *)&s->count_sa,
				       (struct sockaddr *)&s->client_sa)) != NULL) {
		px_log(PX_LOG_WARN, s->sid, "reject reason=xclient client=%s error=\"%s\"",
		       s->client_addr, why);
		px_session_reply(s, 421, "4.7.0", "Error: %s", why);
		px_session_close(s, "xclient-limit");
		return -1;
	}
	memcpy(&s->count_sa, &s->client_sa, sizeof(s->count_sa));
	return 0;
}

/* px_session_xclient - the XCLIENT command */
void px_session_xclient(struct px_session *s, char *args)
{
	struct xclient x;
	const char *bad = "(none)";

	if (!s->xclient_ok) {
		px_session_error(s, 550, "5.7.0", "Error: insufficient authorization");
		return;
	}
	if (*args == 0 || (bad = xc_parse(args, &x)) != NULL) {
		px_session_error(s, 501, "5.5.4", "Bad XCLIENT attribute: %.64s", bad);
		return;
	}
	px_session_reset(s);
	xc_apply(s, &x);
	px_log(PX_LOG_INFO, s->sid, "xclient client=%s port=%u name=%s helo=%s login=%s trusted=%s",
	       s->client_addr, s->client_port, s->client_name, s->xclient_helo[0] ?
	       s->xclient_helo : "-", s->login[0] ? s->login : "-", s->trusted ? "yes" : "no");
	if (xc_count(s) == 0)
		px_session_greet(s);    /* the connect stage for the new client, then 220 */
}
