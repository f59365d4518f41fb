/*
 * NAME
 *	server - listeners, event-loop threads, connection limits, reload
 * DESCRIPTION
 *	One event base per worker thread (workers = cores by default); every
 *	thread accepts on every listening socket, and a connection stays on the
 *	thread that accepted it. The main thread handles signals: SIGHUP
 *	loads a new configuration generation (the old one stays if the new one
 *	has errors or a new listen address cannot be bound) and opens and
 *	closes listeners to match it; SIGTERM/SIGINT stop the server. It also
 *	frees the generations the last session of which has ended.
 */
#ifndef PX_PROXY_SERVER_H
#define PX_PROXY_SERVER_H

#include <stddef.h>
#include <sys/socket.h>
#include <event2/util.h>

struct px_config;
struct px_listener;
struct px_server;
struct px_tls;
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
/* px_server_generation - for a session accepted on address (the listener's
 * address as configured): the current generation with a reference for the
 * caller, its TLS contexts (*tls, or NULL) and the listener (*listener),
 * taken together under one lock; NULL when the current generation has no
 * listener on address (a reload is closing it: px_server_refuse) */
struct px_config *px_server_generation(struct px_server *srv, const char *address,
				       struct px_tls **tls, const struct px_listener **listener);
/* px_server_refuse - a counted connection gets no session: 421 4.3.2 why, closed */
void px_server_refuse(struct px_server *srv, evutil_socket_t fd, const struct sockaddr *sa,
		      const char *why);
/* px_server_conn_move - count a session under its real (PROXY) address; NULL or why not */
const char *px_server_conn_move(struct px_server *srv, const struct sockaddr *from,
				const struct sockaddr *to);
/* px_server_conn_closed - a session ended (pairs with the accept-time count) */
void px_server_conn_closed(struct px_server *srv, const struct sockaddr *sa);

#endif
