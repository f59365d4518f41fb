/*
 * NAME
 *	smtp_session - one client's SMTP session (server side)
 * DESCRIPTION
 *	px_session_start() takes an accepted socket, sends the greeting and runs
 *	the session on the calling thread's event base until it ends; it then
 *	frees itself and tells the server through px_server_conn_closed().
 */
#ifndef PX_PROXY_SMTP_SESSION_H
#define PX_PROXY_SMTP_SESSION_H

#include <sys/socket.h>
#include <event2/util.h>

struct event_base;
struct px_server;

void px_session_start(struct px_server *srv, struct event_base *base, evutil_socket_t fd,
		      const struct sockaddr *sa, socklen_t salen, const char *listen_addr);

/* px_session_free_all - at exit, once the event loops have stopped */
void px_session_free_all(void);

#endif
