/*
 * NAME
 *	backend_addr - the backend's address, resolved off the I/O threads
 * SYNOPSIS
 *	#include "proxy/backend_addr.h"
 * DESCRIPTION
 *	getaddrinfo() blocks, so no I/O thread may call it. The backend host
 *	is resolved when a configuration generation is loaded (on the main
 *	thread) and cached by host and port; the relay only reads the cache.
 *	When a connection fails, the name is resolved again on a thread of
 *	its own and the cache updated for the next connection. See
 *	backend_addr.c.
 */
#ifndef PX_PROXY_BACKEND_ADDR_H
#define PX_PROXY_BACKEND_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

struct px_config;

/*
 * px_backend_addr_load - resolve cfg's backend now (blocking: call it where
 * blocking is allowed, i.e. at configuration load on the main thread). A
 * failure is logged, not fatal: connections answer 4xx until a later
 * resolution succeeds. posternd runs it as px_config_load's load hook.
 */
void px_backend_addr_load(const struct px_config *cfg);

/*
 * px_backend_addr - the backend address from the cache (a unix socket path
 * and an IP literal need no cache). Never blocks. 0, or -1 with why when
 * no address is known yet (a resolution is then started in the background).
 */
int px_backend_addr(const struct px_config *cfg, struct sockaddr_storage *ss, socklen_t *len,
		    char *why, size_t whylen);

/*
 * px_backend_addr_failed - connecting to the cached address failed: resolve
 * the name again in the background (one at a time per name, and at most
 * once per retry interval); later px_backend_addr calls see the result.
 * Never blocks.
 */
void px_backend_addr_failed(const struct px_config *cfg);

/*
 * The same cache for any host:port (the AUTH check's backend): _load
 * resolves now (blocking: main thread, configuration load), px_hostport_addr
 * reads the cache and never blocks (no address yet: -1 with why, and a
 * background resolution starts), _failed looks the name up again in the
 * background. IP literals need no cache.
 */
void px_hostport_addr_load(const char *host, const char *port);
int px_hostport_addr(const char *host, const char *port, struct sockaddr_storage *ss,
		     socklen_t *len, char *why, size_t whylen);
void px_hostport_addr_failed(const char *host, const char *port);

/* A resolver: 0 with the first address, or -1 with why. getaddrinfo by default. */
typedef int (*px_resolve_fn)(const char *host, const char *port, struct sockaddr_storage *ss,
			     socklen_t *len, char *why, size_t whylen);

/*
 * px_backend_addr_set_resolver - for tests: resolve with fn (NULL: getaddrinfo)
 * and wait retry_ms between background resolutions of one name (0: default).
 */
void px_backend_addr_set_resolver(px_resolve_fn fn, unsigned retry_ms);

/*
 * An observer of background resolutions, for tests (so that they can wait
 * on a condition variable instead of sleeping). PX_BACKEND_ADDR_STARTED: a
 * background resolution of host:port was just started; called on the
 * thread that called px_backend_addr or px_backend_addr_failed, before that
 * call returns, with the cache lock held (the observer must not call back
 * into this module). PX_BACKEND_ADDR_DONE: the cache now holds the result
 * (rc: the resolver's 0 or -1) and the next resolution may start; called on
 * the resolver's thread, without the lock, once per STARTED and after it.
 * Resolutions at configuration load are not reported (they are synchronous).
 */
enum px_backend_addr_event { PX_BACKEND_ADDR_STARTED, PX_BACKEND_ADDR_DONE };
typedef void (*px_backend_addr_observer_fn)(enum px_backend_addr_event ev, const char *host,
					    const char *port, int rc);

/* px_backend_addr_set_observer - for tests: install fn (NULL: none, the default) */
void px_backend_addr_set_observer(px_backend_addr_observer_fn fn);

#endif
