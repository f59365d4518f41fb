/*
 * NAME
 *	auth_throttle - failed AUTH attempts per client address
 * DESCRIPTION
 *	A fixed table (bounded memory, shared by all threads under a mutex)
 *	counts failures per address within a window. An address with
 *	failures_max failures in the current window is throttled until the
 *	window, which starts at its first failure, has passed. A success
 *	clears the address. Collisions overwrite the older entry: the table
 *	can forget, never grow.
 */
#ifndef PX_PROXY_AUTH_THROTTLE_H
#define PX_PROXY_AUTH_THROTTLE_H

#include <sys/socket.h>

int px_auth_throttled(const struct sockaddr *sa, unsigned max, unsigned window_ms);
void px_auth_failed(const struct sockaddr *sa, unsigned window_ms);
void px_auth_succeeded(const struct sockaddr *sa);

#endif
