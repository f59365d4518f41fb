/*
 * NAME
 *	smtp_starttls - STARTTLS, implicit TLS, and what TLS changes
 * DESCRIPTION
 *	STARTTLS (RFC 3207) on a listener with tls = starttls (or auto with a
 *	certificate): "220 2.0.0 Ready to start TLS" goes out in plaintext;
 *	anything the client pipelined behind the command is discarded
 *	(CVE-2011-0411: it must never run as if it came over TLS); then a
 *	libevent OpenSSL filter is put over the socket's bufferevent and the
 *	session starts over: no HELO, no transaction, a new backend
 *	connection if one was open. Implicit TLS (tls = implicit, port 465)
 *	puts the same filter in place before the greeting.
 *
 *	A listener with require_tls refuses MAIL before TLS with
 *	530 5.7.0. The EHLO reply names STARTTLS before TLS, AUTH after it
 *	(when the listener offers AUTH), CHUNKING, and XCLIENT to the
 *	sources allowed to send it.
 * DIAGNOSTICS
 *	"SID tls version=TLSv1.3 cipher=... bits=256 sni=NAME", "SID starttls
 *	discarded=N" when pipelined plaintext was dropped, "SID tls
 *	error=..." when the handshake fails.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "common/log.h"
#include "policy/config.h"
#include "smtp_session_int.h"
#include "tls.h"

/* px_session_tls_wrap - put an OpenSSL filter between the socket and the session */
int px_session_tls_wrap(struct px_session *s)
{
	SSL *ssl = px_tls_server_ssl(s->tls_ctx);
	struct bufferevent *f;

	if (ssl == NULL) {
		px_log(PX_LOG_ERR, s->sid, "tls error=\"no certificate loaded\"");
		return -1;
	}
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	f = bufferevent_openssl_filter_new(s->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
					   BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL) {
		SSL_free(ssl);
		return -1;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	s->bev = f;
	px_session_set_callbacks(s);
	px_session_set_timeout(s, s->cfg->timeouts.command);
	bufferevent_enable(f, EV_WRITE);
	return 0;                 /* the caller's next state turns reading on */
}

/* px_session_tls_pending - a TLS filter is on and its handshake not done */
int px_session_tls_pending(struct px_session *s)
{
	return !s->tls && s->bev != NULL && bufferevent_get_underlying(s->bev) != NULL;
}

/* px_tls_handshake_input - TLS_HANDSHAKE's handler: the filter reads the
 * handshake itself; nothing is ours until it is done */
int px_tls_handshake_input(struct px_session *s)
{
	return 0;
}

/* px_session_tls_up - the handshake is done: note and log what was agreed;
 * then commands, if the session was waiting for it (after STARTTLS, or
 * after the greeting on an implicit TLS listener) */
void px_session_tls_up(struct px_session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	const char *sni;

	if (ssl == NULL)
		return;
	s->tls = 1;
	px_tls_describe(ssl, s->tls_version, sizeof(s->tls_version), s->tls_cipher,
			sizeof(s->tls_cipher), &s->tls_bits);
	sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	px_log(PX_LOG_INFO, s->sid, "tls version=%s cipher=%s bits=%d sni=%s", s->tls_version,
	       s->tls_cipher, s->tls_bits, sni ? sni : "-");
	if (s->state != PX_ST_TLS_HANDSHAKE)
		return;
	px_enter_state(s, PX_ST_COMMAND);
	/* the filter may have decrypted the client's first command (sent with
	 * its last handshake flight) before telling us the handshake is done */
	px_session_resume(s);
}

/* px_session_tls_failed - log why the TLS connection broke */
void px_session_tls_failed(struct px_session *s)
{
	unsigned long e = s->bev ? bufferevent_get_openssl_error(s->bev) : 0;
	char why[256] = "connection closed during the handshake";

	if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	px_log(PX_LOG_INFO, s->sid, "tls error=\"%s\" client=%s", why, s->client_addr);
}

/* px_session_reset - forget HELO, the transaction and the backend connection */
void px_session_reset(struct px_session *s)
{
	if (s->relay != NULL) {
		px_relay_free(s->relay);
		s->relay = NULL;
	}
	s->relay_mail_open = 0;
	px_session_txn_reset(s);
	s->helo[0] = 0;
	s->esmtp = 0;
	s->bdat_used = 0;
	px_envelope_enter(s, PX_ENV_CONNECTED);
}

/* starttls_offered - this listener offers STARTTLS */
static int starttls_offered(const struct px_session *s)
{
	return s->listener != NULL && s->listener->tls == PX_TLS_STARTTLS && s->tls_ctx != NULL;
}

/* px_session_starttls - the STARTTLS command */
void px_session_starttls(struct px_session *s, char *args)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t pending = evbuffer_get_length(in);

	if (*args != 0) {
		px_session_error(s, 501, "5.5.4", "Syntax: STARTTLS");
		return;
	}
	if (s->tls) {
		px_session_error(s, 554, "5.5.1", "Error: TLS already active");
		return;
	}
	if (!starttls_offered(s)) {
		px_session_error(s, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	px_session_reply(s, 220, "2.0.0", "Ready to start TLS");
	if (pending > 0) {
		evbuffer_drain(in, pending);
		px_log(PX_LOG_INFO, s->sid, "starttls discarded=%zu reason=pipelined-plaintext",
		       pending);
	}
	px_session_reset(s);
	if (px_session_tls_wrap(s) < 0)
		px_session_close(s, "tls-unavailable");
	else
		px_enter_state(s, PX_ST_TLS_HANDSHAKE);
}

/* px_session_require_tls - 530 to MAIL before TLS on a listener that requires it */
int px_session_require_tls(struct px_session *s)
{
	if (s->tls || s->listener == NULL || !s->listener->require_tls)
		return 0;
	px_session_error(s, 530, "5.7.0", "Must issue a STARTTLS command first");
	return -1;
}

/* px_ehlo_transport - our transport keywords for the EHLO reply ("250-..." lines) */
size_t px_ehlo_transport(struct px_session *s, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s%s250-CHUNKING\r\n%s",
			 starttls_offered(s) && !s->tls ? "250-STARTTLS\r\n" : "",
			 s->listener != NULL && s->listener->auth && s->tls ?
			 "250-AUTH PLAIN LOGIN\r\n" : "",
			 s->xclient_ok ? "250-XCLIENT ADDR NAME PORT PROTO HELO LOGIN DESTADDR "
			 "DESTPORT\r\n" : "");

	if (n < 0 || (size_t)n >= size) {
		buf[0] = 0;
		return 0;
	}
	return (size_t)n;
}
