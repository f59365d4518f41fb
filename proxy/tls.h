/*
 * NAME
 *	tls - OpenSSL contexts for one configuration generation
 * DESCRIPTION
 *	px_tls_new() loads the certificates and keys of the tls section (one
 *	SSL_CTX per pair; the client's SNI name picks the pair whose
 *	certificate matches it, else the first) and, when backend_tls asks for
 *	it, a client context for STARTTLS to the backend. TLS 1.2 is the
 *	oldest version allowed; the cipher lists come from the configuration.
 *
 *	A set of contexts belongs to one configuration generation: posternd
 *	attaches it to the generation (px_config_attach) and it is freed with
 *	it, once the last session of that generation has ended, so a session
 *	and its relay always use the contexts of the generation they hold.
 *	An SSL keeps its own reference to its SSL_CTX; the servername callback
 *	reads the set, which the session's generation keeps alive.
 */
#ifndef PX_PROXY_TLS_H
#define PX_PROXY_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

struct px_config;
struct px_tls;

/* px_tls_new - NULL with err when a file cannot be loaded */
struct px_tls *px_tls_new(const struct px_config *cfg, char *err, size_t errlen);
/* px_tls_free - free one set (NULL is fine); px_tls_free_void - the same
 * for px_config_attach */
void px_tls_free(struct px_tls *t);
void px_tls_free_void(void *t);
/* px_tls_free_all - every set not freed yet (posternd -t; at exit) */
void px_tls_free_all(void);

/* px_tls_server_ssl - a new SSL to accept with, or NULL (no certificate) */
SSL *px_tls_server_ssl(struct px_tls *t);
/* px_tls_client_ssl - a new SSL to connect to the backend with, or NULL;
 * server_name goes out as SNI unless it is an IP literal (RFC 6066 3) */
SSL *px_tls_client_ssl(struct px_tls *t, const char *server_name, int verify);

/* px_tls_describe - "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256 */
void px_tls_describe(SSL *ssl, char *version, size_t vlen, char *cipher, size_t clen,
		     int *bits);
/* px_tls_error - the last OpenSSL error as text (for logs) */
const char *px_tls_error(char *buf, size_t len);

#endif
