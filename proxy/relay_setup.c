/*
 * NAME
 *	relay_setup - what the relay says before the first MAIL: STARTTLS,
 *	XCLIENT or XFORWARD
 * DESCRIPTION
 *	Helpers for the setup step list of relay_smtp.c (rs_steps[]: whether
 *	a step applies, the line it sends); the steps' order, replies and
 *	timeouts live there. After the backend's EHLO:
 *
 *	1. backend_tls.mode = opportunistic or required: STARTTLS when the
 *	   backend offers it (required: a backend without it fails the
 *	   transaction with 451 4.7.5), then EHLO again over TLS. verify = yes
 *	   checks the certificate and its name (server_name, else the
 *	   backend host).
 *	2. backend_forward = auto: XCLIENT with the attributes we know of
 *	   (ADDR PORT NAME HELO PROTO LOGIN DESTADDR DESTPORT) that the
 *	   backend lists in its "250-XCLIENT ..." line, then EHLO again;
 *	   else XFORWARD (sent before every MAIL, as its attributes last one
 *	   transaction); else nothing, logged. xclient / xforward force one
 *	   kind; none sends neither.
 *	Values are xtext-encoded; an unknown name or HELO is "[UNAVAILABLE]";
 *	an unknown port (0: e.g. after an inbound XCLIENT ADDR without PORT)
 *	and a missing LOGIN or DESTADDR are left out.
 *
 *	TLS to the backend sends SNI only for a host name: an IP literal
 *	(server_name or the backend host) is never sent as SNI (RFC 6066 3);
 *	with verify = yes it is matched against the certificate's IP address.
 * STANDARDS
 *	Postfix XCLIENT_README and XFORWARD_README; RFC 3207.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>

#include "common/log.h"
#include "policy/config.h"
#include "relay_int.h"
#include "relay_setup.h"
#include "tls.h"

/* ehlo_line_args - the arguments of EHLO keyword kw ("XCLIENT NAME ADDR"), or NULL */
static const char *ehlo_line_args(const char *text, const char *kw, char *out, size_t len)
{
	const char *line = strchr(text, '\n');
	size_t n, k = strlen(kw);

	while (line != NULL) {
		line++;
		n = strcspn(line, "\n");
		if (n >= k && strncasecmp(line, kw, k) == 0 && (line[k] == ' ' || n == k)) {
			snprintf(out, len, " %.*s ", (int)(n - k), line + k);
			return out;
		}
		line = strchr(line, '\n');
	}
	return NULL;
}

/* has_attr - the attribute list " A B C " names attr */
static int has_attr(const char *list, const char *attr)
{
	char word[32];

	snprintf(word, sizeof(word), " %s ", attr);
	return strcasestr(list, word) != NULL;
}

/* xtext - RFC 3461 encoding of value ("[UNAVAILABLE]" when empty or unknown) */
static void xtext(const char *value, char *out, size_t len)
{
	size_t n = 0;

	if (value == NULL || *value == 0 || strcmp(value, "unknown") == 0)
		value = "[UNAVAILABLE]";
	for (; *value && n + 4 < len; value++) {
		unsigned char c = (unsigned char)*value;

		if (c < 0x21 || c > 0x7e || c == '+' || c == '=')
			n += (size_t)snprintf(out + n, len - n, "+%02X", c);
		else
			out[n++] = (char)c;
	}
	out[n] = 0;
}

/* add_attr - " NAME=value" when the backend lists NAME */
static void add_attr(char *out, size_t len, const char *list, const char *name,
		     const char *value, int raw)
{
	char enc[600];
	size_t used = strlen(out);

	if (!has_attr(list, name))
		return;
	if (raw)
		snprintf(enc, sizeof(enc), "%s", value);
	else
		xtext(value, enc, sizeof(enc));
	if (used + strlen(name) + strlen(enc) + 3 < len)
		snprintf(out + used, len - used, " %s=%s", name, enc);
}

/* client_addr - "192.0.2.1" or "IPV6:2001:db8::1" */
static void client_addr(const char *addr, char *out, size_t len)
{
	snprintf(out, len, "%s%s", strchr(addr, ':') ? "IPV6:" : "", addr);
}

/* attrs - the attributes both commands share: only those the backend lists,
 * and a port only when we know it (0 is no port: XCLIENT ADDR without PORT) */
static void attrs(const struct px_relay_client *c, const char *list, char *out, size_t len)
{
	char addr[80], port[16], dport[16];

	client_addr(c->addr, addr, sizeof(addr));
	snprintf(port, sizeof(port), "%u", c->port);
	snprintf(dport, sizeof(dport), "%u", c->dest_port);
	add_attr(out, len, list, "NAME", c->name, 0);
	add_attr(out, len, list, "ADDR", addr, 1);
	if (c->port != 0)
		add_attr(out, len, list, "PORT", port, 1);
	add_attr(out, len, list, "HELO", c->helo, 0);
	add_attr(out, len, list, "PROTO", c->proto && *c->proto ? c->proto : "SMTP", 1);
	if (c->login != NULL && *c->login)
		add_attr(out, len, list, "LOGIN", c->login, 0);
	if (c->dest_addr != NULL && *c->dest_addr) {
		client_addr(c->dest_addr, addr, sizeof(addr));
		add_attr(out, len, list, "DESTADDR", addr, 1);
		if (c->dest_port != 0)
			add_attr(out, len, list, "DESTPORT", dport, 1);
	}
}

/* px_relay_forward_kind - which command to use, given the EHLO reply */
int px_relay_forward_kind(const struct px_relay *rl, unsigned caps)
{
	int mode = rl->cfg->transport.forward;

	if ((mode == PX_FORWARD_AUTO || mode == PX_FORWARD_XCLIENT) && (caps & PX_CAP_XCLIENT))
		return PX_FWD_XCLIENT;
	if ((mode == PX_FORWARD_AUTO || mode == PX_FORWARD_XFORWARD) && (caps & PX_CAP_XFORWARD))
		return PX_FWD_XFORWARD;
	return PX_FWD_NONE;
}

/* px_relay_forward_line - "XCLIENT ..." or "XFORWARD ..." for this client; 0 or -1 */
int px_relay_forward_line(const struct px_relay *rl, int kind, const char *ehlo, char *out,
			  size_t len)
{
	const char *kw = kind == PX_FWD_XCLIENT ? "XCLIENT" : "XFORWARD";
	char list[512];

	if (ehlo_line_args(ehlo, kw, list, sizeof(list)) == NULL)
		return -1;
	snprintf(out, len, "%s", kw);
	attrs(&rl->client, list, out, len);
	if (kind == PX_FWD_XFORWARD && has_attr(list, "SOURCE"))
		snprintf(out + strlen(out), len - strlen(out), " SOURCE=REMOTE");
	return strchr(out, '=') != NULL ? 0 : -1;
}

/* px_relay_tls_wanted - STARTTLS now? 1 yes, 0 no, -1 required but not offered */
int px_relay_tls_wanted(const struct px_relay *rl, unsigned caps)
{
	int mode = rl->cfg->transport.backend_tls;

	if (mode == PX_BTLS_NONE || rl->client.tls == NULL)
		return 0;
	if (caps & PX_CAP_STARTTLS)
		return 1;
	return mode == PX_BTLS_REQUIRED ? -1 : 0;
}

/* px_relay_tls_wrap - an OpenSSL filter over bev (connecting); NULL on failure */
struct bufferevent *px_relay_tls_wrap(struct px_relay *rl, struct bufferevent *bev)
{
	const struct px_transport *t = &rl->cfg->transport;
	const char *name = t->backend_tls_server_name[0] ? t->backend_tls_server_name
			   : rl->cfg->backend.host ? rl->cfg->backend.host : "localhost";
	SSL *ssl = px_tls_client_ssl(rl->client.tls, name, t->backend_tls_verify);
	struct bufferevent *f;

	if (ssl == NULL)
		return NULL;
	f = bufferevent_openssl_filter_new(rl->base, bev, ssl, BUFFEREVENT_SSL_CONNECTING,
					   BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	return f;
}

/* px_relay_tls_log - what the backend TLS connection agreed on */
void px_relay_tls_log(struct px_relay *rl, struct bufferevent *bev)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	char version[32], cipher[64];
	int bits;

	if (ssl == NULL)
		return;
	px_tls_describe(ssl, version, sizeof(version), cipher, sizeof(cipher), &bits);
	px_log(PX_LOG_INFO, rl->client.sid, "relay tls version=%s cipher=%s bits=%d verified=%s",
	       version, cipher, bits, SSL_get_verify_result(ssl) == X509_V_OK ? "yes" : "no");
}
