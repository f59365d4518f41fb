/*
 * NAME
 *	tls - OpenSSL contexts for one configuration generation
 * DESCRIPTION
 *	See tls.h. Server side: ctx[0] serves clients without SNI or whose
 *	name matches no certificate; the servername callback switches the
 *	connection to the context whose certificate matches the name
 *	(X509_check_host, wildcards included). Renegotiation is off, and so is
 *	compression; the server's cipher order wins.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "policy/config.h"
#include "tls.h"

struct px_tls {
	struct px_tls *next, *prev;    /* every one not yet freed (px_tls_free_all) */
	SSL_CTX **server;              /* one per certificate */
	X509 **certs;                  /* the leaf of each, for SNI matching */
	size_t nserver;
	SSL_CTX *client;               /* backend STARTTLS, or NULL */
};

static pthread_mutex_t tls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct px_tls *tls_all;

/* px_tls_error - the oldest queued OpenSSL error, and clear the queue */
const char *px_tls_error(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

/* ctx_common - protocol floor, ciphers, options shared by both sides */
static int ctx_common(SSL_CTX *ctx, const struct px_transport *t)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
			    SSL_OP_CIPHER_SERVER_PREFERENCE);
	return SSL_CTX_set_min_proto_version(ctx, t->tls_min_version) == 1 &&
	       SSL_CTX_set_cipher_list(ctx, t->tls_ciphers) == 1 &&
	       SSL_CTX_set_ciphersuites(ctx, t->tls_ciphersuites) == 1 ? 0 : -1;
}

/* servername_cb - pick the certificate whose names match the client's SNI */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
	struct px_tls *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	size_t i;

	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (i = 0; i < t->nserver; i++)
		if (X509_check_host(t->certs[i], name, 0, 0, NULL) == 1) {
			if (i > 0)
				SSL_set_SSL_CTX(ssl, t->server[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	return SSL_TLSEXT_ERR_NOACK;
}

/* server_ctx - one context for one certificate (chain file) and key */
static SSL_CTX *server_ctx(struct px_tls *t, const struct px_transport *tr, size_t i,
			   char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char why[256];

	if (ctx == NULL || ctx_common(ctx, tr) < 0 ||
	    SSL_CTX_use_certificate_chain_file(ctx, tr->tls_certs[i]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, tr->tls_keys[i], SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "tls: certificate %s / key %s: %s", tr->tls_certs[i],
			 tr->tls_keys[i], px_tls_error(why, sizeof(why)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"postern", 7);
	SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, t);
	return ctx;
}

/* client_ctx - for STARTTLS to the backend */
static SSL_CTX *client_ctx(const struct px_transport *tr, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	const char *ca = tr->backend_tls_ca_file;
	char why[256];
	int ok;

	if (ctx == NULL || ctx_common(ctx, tr) < 0) {
		snprintf(err, errlen, "backend_tls: %s", px_tls_error(why, sizeof(why)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	ok = ca[0] ? SSL_CTX_load_verify_locations(ctx, ca, NULL)
		   : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1 && tr->backend_tls_verify) {
		snprintf(err, errlen, "backend_tls: ca_file %s: %s", ca[0] ? ca : "(default)",
			 px_tls_error(why, sizeof(why)));
		SSL_CTX_free(ctx);
		return NULL;
	}
	ERR_clear_error();
	return ctx;
}

/* tls_free - one generation's contexts */
static void tls_free(struct px_tls *t)
{
	size_t i;

	for (i = 0; i < t->nserver; i++)
		SSL_CTX_free(t->server[i]);
	free(t->server);
	free(t->certs);
	SSL_CTX_free(t->client);
	free(t);
}

/* tls_servers - a context per certificate */
static int tls_servers(struct px_tls *t, const struct px_transport *tr, char *err,
		       size_t errlen)
{
	size_t n = tr->ntls_certs;

	if ((t->server = calloc(n + 1, sizeof(*t->server))) == NULL ||
	    (t->certs = calloc(n + 1, sizeof(*t->certs))) == NULL)
		return -1;
	for (; t->nserver < n; t->nserver++) {
		t->server[t->nserver] = server_ctx(t, tr, t->nserver, err, errlen);
		if (t->server[t->nserver] == NULL)
			return -1;
		t->certs[t->nserver] = SSL_CTX_get0_certificate(t->server[t->nserver]);
	}
	return 0;
}

/* px_tls_new - everything the configuration asks for */
struct px_tls *px_tls_new(const struct px_config *cfg, char *err, size_t errlen)
{
	const struct px_transport *tr = &cfg->transport;
	struct px_tls *t = calloc(1, sizeof(*t));

	snprintf(err, errlen, "out of memory");
	if (t == NULL)
		return NULL;
	if (tls_servers(t, tr, err, errlen) < 0 ||
	    (tr->backend_tls != PX_BTLS_NONE && (t->client = client_ctx(tr, err, errlen)) == NULL)) {
		tls_free(t);
		return NULL;
	}
	pthread_mutex_lock(&tls_lock);
	t->next = tls_all;
	if (tls_all != NULL)
		tls_all->prev = t;
	tls_all = t;
	pthread_mutex_unlock(&tls_lock);
	return t;
}

/* tls_unlink - take t off the list of live contexts; tls_lock held */
static void tls_unlink(struct px_tls *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		tls_all = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
}

/* px_tls_free - one generation's contexts (NULL is fine) */
void px_tls_free(struct px_tls *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&tls_lock);
	tls_unlink(t);
	pthread_mutex_unlock(&tls_lock);
	tls_free(t);
}

/* px_tls_free_void - px_tls_free for px_config_attach */
void px_tls_free_void(void *t)
{
	px_tls_free(t);
}

/* px_tls_free_all - every set not freed yet (posternd -t; at exit) */
void px_tls_free_all(void)
{
	struct px_tls *t;

	pthread_mutex_lock(&tls_lock);
	while ((t = tls_all) != NULL) {
		tls_unlink(t);
		tls_free(t);
	}
	pthread_mutex_unlock(&tls_lock);
}

/* px_tls_server_ssl - a new SSL to accept with */
SSL *px_tls_server_ssl(struct px_tls *t)
{
	return t != NULL && t->nserver > 0 ? SSL_new(t->server[0]) : NULL;
}

/* ip_literal - name is an IPv4 or IPv6 address, not a host name */
static int ip_literal(const char *name)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

/* px_tls_client_ssl - a new SSL for the backend, with SNI and name check;
 * an IP literal gets no SNI (RFC 6066 3) and is checked as an address */
SSL *px_tls_client_ssl(struct px_tls *t, const char *server_name, int verify)
{
	SSL *ssl = t != NULL && t->client != NULL ? SSL_new(t->client) : NULL;
	int ip = ip_literal(server_name);

	if (ssl == NULL)
		return NULL;
	if (!ip)
		SSL_set_tlsext_host_name(ssl, server_name);
	if (verify) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		if (ip)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name);
		else
			SSL_set1_host(ssl, server_name);
	}
	return ssl;
}

/* px_tls_describe - version, cipher and its bits of an established connection */
void px_tls_describe(SSL *ssl, char *version, size_t vlen, char *cipher, size_t clen,
		     int *bits)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);

	snprintf(version, vlen, "%s", SSL_get_version(ssl));
	snprintf(cipher, clen, "%s", c ? SSL_CIPHER_get_name(c) : "unknown");
	*bits = c ? SSL_CIPHER_get_bits(c, NULL) : 0;
}
