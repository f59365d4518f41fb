/*
 * NAME
 *	smtp_connect - a session's opening: PROXY header, implicit TLS, greeting
 * DESCRIPTION
 *	Before the 220 greeting a session may have to:
 *
 *	1. read a PROXY protocol header (listener proxy_protocol = v1|v2|any),
 *	   accepted only from proxy_sources; a connection from anywhere else
 *	   is refused with 421 4.7.0 at once. The header must arrive within
 *	   timeouts.proxy_header; a bad one closes the connection. The real
 *	   client address then replaces the socket's everywhere (logs,
 *	   Received, trusted_networks, relay, XCLIENT), and the per-address
 *	   connection limit is applied to it.
 *	2. start TLS (listener tls = implicit).
 *	3. wait timeouts.greeting_delay (0: not at all). A client that sends
 *	   anything before the greeting is an early talker (postscreen's
 *	   "pregreet"): 554 5.5.1, and the session ends. With the pregreet
 *	   check on (smtp_pregreet.c), the store is asked first whether the
 *	   client passed recently: then it is greeted at once; else it gets
 *	   "220-" at once and the rest after pregreet.delay, and what it did
 *	   is written down.
 *
 *	These are the states PROXY_HEADER and GREETING (smtp_session_int.h).
 *	The greeting itself is the connect stage of the chain (WAIT while it
 *	runs), then 220 and COMMAND. With implicit TLS the handshake goes on
 *	under the greeting, as it always has: the 220 is queued in the TLS
 *	filter, to go out once the handshake is done, and a client may send
 *	its first command right behind its side of the handshake; if the
 *	handshake is still going when the 220 is queued, the session waits
 *	for it in TLS_HANDSHAKE (smtp_chain.c greet_after_chain).
 * DIAGNOSTICS
 *	"SID proxy version=N client=ADDR port=N", "SID reject reason=...".
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "policy/config.h"
#include "proxy_protocol.h"
#include "server.h"
#include "smtp_chain.h"
#include "smtp_session_int.h"

/* px_session_set_client - the client's address, and what it is allowed */
void px_session_set_client(struct px_session *s, const struct sockaddr *sa)
{
	const struct px_transport *t = &s->cfg->transport;
	socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						  : sizeof(struct sockaddr_in);

	memset(&s->client_sa, 0, sizeof(s->client_sa));
	memcpy(&s->client_sa, sa, len);
	px_sockaddr_ntop(sa, s->client_addr, sizeof(s->client_addr));
	s->client_port = px_sockaddr_port(sa);
	s->trusted = px_config_is_trusted(s->cfg, sa);
	s->normalize_bare = px_config_in_networks(t->normalize_bare_networks,
						  t->nnormalize_bare_networks, sa);
	s->xclient_ok = px_config_in_networks(t->xclient_sources, t->nxclient_sources, sa);
	snprintf(s->client_name, sizeof(s->client_name), "unknown");
}

/* px_session_set_server - the local address the client connected to */
void px_session_set_server(struct px_session *s, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	s->server_addr[0] = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return;
	px_sockaddr_ntop((struct sockaddr *)&ss, s->server_addr, sizeof(s->server_addr));
	s->server_port = px_sockaddr_port((struct sockaddr *)&ss);
}

/* early_talker - input before the greeting: 554 and close */
static void early_talker(struct px_session *s)
{
	px_pregreet_early(s);                 /* remembered, when the check is on */
	px_log(PX_LOG_INFO, s->sid, "reject reason=early-talker client=%s", s->client_addr);
	px_session_reply(s, 554, "5.5.1", "Error: SMTP protocol violation: you talked "
			 "before the greeting");
	px_session_close(s, "early-talker");
}

/* greet - the greeting delay is over: the 220, unless the client already spoke */
static void greet(struct px_session *s)
{
	if (s->state != PX_ST_GREETING || s->bev == NULL)
		return;
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0) {
		early_talker(s);
		return;
	}
	px_pregreet_passed(s);                /* it waited after its 220- line */
	px_session_set_timeout(s, s->cfg->timeouts.command);
	px_enter_state(s, PX_ST_COMMAND);
	px_session_greet(s);          /* the connect stage of the chain, then 220 */
}

/* px_greeting_input - GREETING's handler: whoever talks now is early */
int px_greeting_input(struct px_session *s)
{
	if (evbuffer_get_length(bufferevent_get_input(s->bev)) > 0)
		early_talker(s);
	return 0;
}

/* greet_timer_cb - the greeting delay is over */
static void greet_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	greet(arg);
}

/* px_greeting_after - in GREETING: greet after ms (0: now) */
void px_greeting_after(struct px_session *s, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (ms == 0) {
		greet(s);
		return;
	}
	if (s->greet_timer == NULL)
		s->greet_timer = evtimer_new(s->base, greet_timer_cb, s);
	if (s->greet_timer == NULL || evtimer_add(s->greet_timer, &tv) < 0)
		greet(s);
}

/* open_greeting - GREETING: the pregreet check (smtp_pregreet.c) looks
 * the client up first; else greet now, or after the delay */
static void open_greeting(struct px_session *s)
{
	px_enter_state(s, PX_ST_GREETING);
	if (px_pregreet_begin(s))
		return;                       /* its answer calls px_greeting_after */
	px_greeting_after(s, s->cfg->transport.greeting_delay);
}

/* open_after_proxy - implicit TLS (its handshake goes on under the
 * greeting), then the greeting */
static void open_after_proxy(struct px_session *s)
{
	px_session_set_timeout(s, s->cfg->timeouts.command);
	if (s->listener != NULL && s->listener->tls == PX_TLS_IMPLICIT &&
	    px_session_tls_wrap(s) < 0) {
		px_session_close(s, "tls-unavailable");
		return;
	}
	open_greeting(s);
}

/* refuse_proxy - log, 421, close */
static void refuse_proxy(struct px_session *s, const char *why)
{
	px_log(PX_LOG_WARN, s->sid, "reject reason=proxy-protocol client=%s error=\"%s\"",
	       s->client_addr, why);
	px_session_reply(s, 421, "4.7.0", "Error: %s", why);
	px_session_close(s, "proxy-protocol");
}

/* proxy_apply - the header named the real client */
static void proxy_apply(struct px_session *s, const struct px_proxy_info *pp)
{
	const char *why;

	if (!pp->local) {
		if ((why = px_server_conn_move(s->srv, (struct sockaddr *)&s->count_sa,
					       (const struct sockaddr *)&pp->src)) != NULL) {
			px_session_set_client(s, (const struct sockaddr *)&pp->src);
			refuse_proxy(s, why);
			return;
		}
		memcpy(&s->count_sa, &pp->src, sizeof(s->count_sa));
		px_session_set_client(s, (const struct sockaddr *)&pp->src);
		px_sockaddr_ntop((const struct sockaddr *)&pp->dst, s->server_addr,
				 sizeof(s->server_addr));
		s->server_port = px_sockaddr_port((const struct sockaddr *)&pp->dst);
	}
	px_log(PX_LOG_INFO, s->sid, "proxy version=%d client=%s port=%u trusted=%s local=%s",
	       pp->version, s->client_addr, s->client_port, s->trusted ? "yes" : "no",
	       pp->local ? "yes" : "no");
	open_after_proxy(s);
}

/* px_proxy_header_input - PROXY_HEADER's handler: parse what has arrived
 * of the header; 1 when it was applied (what follows is the next state's) */
int px_proxy_header_input(struct px_session *s)
{
	static const int allow[] = { 0, PX_PP_ALLOW_V1, PX_PP_ALLOW_V2,
				     PX_PP_ALLOW_V1 | PX_PP_ALLOW_V2 };
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t len = evbuffer_get_length(in);
	struct px_proxy_info pp;
	int rc;

	if (len == 0)
		return 0;
	if (len > PX_PP_V2_MAX)
		len = PX_PP_V2_MAX;
	rc = px_proxy_parse(evbuffer_pullup(in, (ev_ssize_t)len), len, allow[s->listener->proxy],
			    &pp);
	if (rc == PX_PP_MORE)
		return 0;
	if (rc == PX_PP_BAD) {
		refuse_proxy(s, pp.why);
		return 0;
	}
	evbuffer_drain(in, pp.length);
	proxy_apply(s, &pp);
	return 1;
}

/* px_session_open - start the opening sequence */
void px_session_open(struct px_session *s)
{
	const struct px_listener *l = s->listener;

	bufferevent_enable(s->bev, EV_WRITE);
	if (l == NULL || l->proxy == PX_PROXY_NONE) {
		open_after_proxy(s);
		return;
	}
	if (!px_config_in_networks(l->proxy_sources, l->nproxy_sources,
				   (struct sockaddr *)&s->client_sa)) {
		refuse_proxy(s, "PROXY protocol is accepted from trusted proxies only");
		return;
	}
	px_session_set_timeout(s, s->cfg->transport.proxy_timeout);
	/* its deadline: a header trickled a byte at a time is late all the same */
	px_enter_state(s, PX_ST_PROXY_HEADER);
}
