/*
 * NAME
 *	server - listeners, event-loop threads, connection limits, reload
 * DESCRIPTION
 *	One event base per worker thread (workers = cores by default); every
 *	thread accepts on every listening socket, and a connection stays on the
 *	thread that accepted it. The main thread only handles signals: SIGHUP
 *	loads a new configuration generation (the old one stays if the new one
 *	has errors), SIGTERM/SIGINT stop the server.
 */
#ifndef PX_PROXY_SERVER_H
#define PX_PROXY_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

struct px_config;
struct px_server;
struct px_workpool;

/* px_server_new - bind every listen address; takes a reference to cfg */
struct px_server *px_server_new(struct px_config *cfg, const char *path,
				const char *const *overrides, size_t noverrides,
				char *err, size_t errlen);
/* px_server_run - start the workers and serve until a stop signal; 0 on a clean stop */
int px_server_run(struct px_server *srv);
/* px_server_free - 0, or -1 when a plugin hook still runs (nothing freed) */
int px_server_free(struct px_server *srv);

/* px_server_config - the current generation, with a reference for the caller */
struct px_config *px_server_config(struct px_server *srv);
struct px_workpool *px_server_pool(struct px_server *srv);
/* px_server_tls - the TLS contexts of the current generation, or NULL */
struct px_tls *px_server_tls(struct px_server *srv);
/* px_server_conn_move - count a session under its real (PROXY) address; NULL or why not */
const char *px_server_conn_move(struct px_server *srv, const struct sockaddr *from,
				const struct sockaddr *to);
/* px_server_conn_closed - a session ended (pairs with the accept-time count) */
void px_server_conn_closed(struct px_server *srv, const struct sockaddr *sa);

#endif
