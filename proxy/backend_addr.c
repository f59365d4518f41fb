/*
 * NAME
 *	backend_addr - the backend's address, resolved off the I/O threads
 * SYNOPSIS
 *	#include "proxy/backend_addr.h"
 *
 *	void px_backend_addr_load(const struct px_config *cfg);
 *	int px_backend_addr(const struct px_config *cfg,
 *		struct sockaddr_storage *ss, socklen_t *len,
 *		char *why, size_t whylen);
 *	void px_backend_addr_failed(const struct px_config *cfg);
 * DESCRIPTION
 *	A cache of one address per backend host and port, shared by every
 *	configuration generation and every I/O thread (one mutex; it is held
 *	only to copy an entry, never while resolving).
 *
 *	Filled at configuration load: posternd installs px_backend_addr_load
 *	as px_config_load's load hook, so the main thread resolves the name
 *	at start and again at every reload, before the generation serves
 *	anyone. Read by the relay at each connection (px_backend_addr, which
 *	never blocks). Refreshed in the background, on a detached thread,
 *	when a connection fails (px_backend_addr_failed), when a cached
 *	address is older than ADDR_TTL_MS, and when a name has no address
 *	yet; one resolution at a time per name, at most one per retry
 *	interval. A failed resolution keeps the last good address (a name
 *	server that is down does not take a working backend away) and is
 *	logged; a name that never resolved answers "cannot resolve" until
 *	one succeeds.
 *
 *	IP literals (and unix socket paths) never reach the resolver:
 *	getaddrinfo with AI_NUMERICHOST does not block.
 * DIAGNOSTICS
 *	"- backend resolve host=H port=P addr=A" when an address is learned
 *	or changes; "- backend resolve host=H port=P error=..." on failure.
 */
#include "autoconfig.h"

#include <netdb.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>

#include "backend_addr.h"
#include "common/log.h"
#include "common/netaddr.h"
#include "policy/config.h"

#define ADDR_RETRY_MS 1000            /* between two resolutions of one name */
#define ADDR_TTL_MS   (5 * 60 * 1000) /* refresh a good address this old, on use */

struct entry {
	struct entry *next;
	char *host, *port;                /* immutable once listed */
	struct sockaddr_storage ss;
	socklen_t len;                    /* 0: no address yet */
	char why[200];                    /* the last failure */
	int busy;                         /* a resolution is running */
	uint64_t started_ms;              /* when the last one started */
	uint64_t resolved_ms;             /* when len was last set */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry *cache;           /* never freed: a handful, reachable to exit */
static px_resolve_fn resolver;
static unsigned retry_ms = ADDR_RETRY_MS;
static px_backend_addr_observer_fn observer;   /* tests only */

/* now_ms - monotonic milliseconds */
static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* gai_resolve - getaddrinfo, the first address; flags AI_NUMERICHOST or 0 */
static int gai_resolve(const char *host, const char *port, int flags,
		       struct sockaddr_storage *ss, socklen_t *len, char *why, size_t whylen)
{
	struct addrinfo hints = { 0 }, *res;
	int rc;

	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | flags;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(why, whylen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* resolve - the configured resolver (blocking) */
static int resolve(const char *host, const char *port, struct sockaddr_storage *ss,
		   socklen_t *len, char *why, size_t whylen)
{
	if (resolver != NULL)
		return resolver(host, port, ss, len, why, whylen);
	return gai_resolve(host, port, 0, ss, len, why, whylen);
}

/* numeric - host is an IP literal: its address without any lookup; 0 or -1 */
static int numeric(const char *host, const char *port, struct sockaddr_storage *ss,
		   socklen_t *len)
{
	char why[8];

	return gai_resolve(host, port, AI_NUMERICHOST, ss, len, why, sizeof(why));
}

/* find - the entry for host:port, or NULL; cache_lock held */
static struct entry *find(const char *host, const char *port)
{
	struct entry *e;

	for (e = cache; e != NULL; e = e->next)
		if (strcmp(e->host, host) == 0 && strcmp(e->port, port) == 0)
			return e;
	return NULL;
}

/* find_or_add - the entry for host:port, created empty if new; NULL when out
 * of memory; cache_lock held */
static struct entry *find_or_add(const char *host, const char *port)
{
	struct entry *e = find(host, port);

	if (e != NULL)
		return e;
	if ((e = calloc(1, sizeof(*e))) == NULL || (e->host = strdup(host)) == NULL ||
	    (e->port = strdup(port)) == NULL) {
		if (e != NULL)
			free(e->host);
		free(e);
		return NULL;
	}
	snprintf(e->why, sizeof(e->why), "resolving %s", host);
	e->next = cache;
	cache = e;
	return e;
}

/* store - a resolution's result into e; logs what changed; cache_lock held */
static void store(struct entry *e, int rc, const struct sockaddr_storage *ss, socklen_t len,
		  const char *why)
{
	char addr[64];

	if (rc < 0) {
		snprintf(e->why, sizeof(e->why), "%s", why);
		px_log(PX_LOG_WARN, NULL, "backend resolve host=%s port=%s error=\"%s\"%s",
		       e->host, e->port, why, e->len ? " keeping=previous" : "");
		return;
	}
	if (e->len != len || memcmp(&e->ss, ss, len) != 0)
		px_log(PX_LOG_INFO, NULL, "backend resolve host=%s port=%s addr=%s", e->host,
		       e->port, px_sockaddr_ntop((const struct sockaddr *)ss, addr, sizeof(addr)));
	e->ss = *ss;
	e->len = len;
	e->resolved_ms = now_ms();
}

/* refresh_thread - one background resolution of an entry */
static void *refresh_thread(void *arg)
{
	struct entry *e = arg;
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char why[200];
	int rc = resolve(e->host, e->port, &ss, &len, why, sizeof(why));
	px_backend_addr_observer_fn obs;

	pthread_mutex_lock(&cache_lock);
	store(e, rc, &ss, len, why);
	e->busy = 0;
	obs = observer;
	pthread_mutex_unlock(&cache_lock);
	if (obs != NULL)
		obs(PX_BACKEND_ADDR_DONE, e->host, e->port, rc);
	return NULL;
}

/* refresh - start a background resolution unless one runs or ran just now;
 * cache_lock held */
static void refresh(struct entry *e)
{
	pthread_attr_t attr;
	pthread_t t;
	uint64_t now = now_ms();

	if (e->busy || (e->started_ms != 0 && now - e->started_ms < retry_ms))
		return;
	e->busy = 1;
	e->started_ms = now;
	if (pthread_attr_init(&attr) != 0) {
		e->busy = 0;
		return;
	}
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, refresh_thread, e) != 0)
		e->busy = 0;          /* out of threads: the next failure tries again */
	else if (observer != NULL)    /* before the thread can store: it needs the lock */
		observer(PX_BACKEND_ADDR_STARTED, e->host, e->port, 0);
	pthread_attr_destroy(&attr);
}

/* by_name - the backend names a host (not a unix socket, not maildir) */
static int by_name(const struct px_config *cfg)
{
	const struct px_backend_spec *b = &cfg->backend;

	return b->kind != PX_BACKEND_MAILDIR && b->path == NULL && b->host != NULL &&
	       b->port != NULL;
}

/* px_hostport_addr_load - resolve host:port now (blocking) into the cache */
void px_hostport_addr_load(const char *host, const char *port)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	struct entry *e;
	char why[200];
	int rc;

	if (numeric(host, port, &ss, &len) == 0)
		return;
	rc = resolve(host, port, &ss, &len, why, sizeof(why));
	pthread_mutex_lock(&cache_lock);
	if ((e = find_or_add(host, port)) != NULL)
		store(e, rc, &ss, len, why);
	pthread_mutex_unlock(&cache_lock);
}

/* auth_backend - the host and port of auth.backend ("smtp:HOST:PORT"); 0 or -1 */
static int auth_backend(const struct px_config *cfg, char *host, size_t hostlen, char *port,
			size_t portlen)
{
	const char *b = cfg->transport.auth_backend;
	char err[128];

	if (b == NULL || strncmp(b, "smtp:", 5) != 0)
		return -1;
	return px_hostport_split(b + 5, NULL, host, hostlen, port, portlen, err, sizeof(err));
}

/* px_backend_addr_load - resolve now, at configuration load: the backend,
 * and the AUTH check's backend when it is another one */
void px_backend_addr_load(const struct px_config *cfg)
{
	char host[256], port[16];

	if (by_name(cfg))
		px_hostport_addr_load(cfg->backend.host, cfg->backend.port);
	if (auth_backend(cfg, host, sizeof(host), port, sizeof(port)) == 0)
		px_hostport_addr_load(host, port);
}

/* unix_addr - a unix socket path as an address; 0 or -1 with why */
static int unix_addr(const char *path, struct sockaddr_storage *ss, socklen_t *len, char *why,
		     size_t whylen)
{
	struct sockaddr_un *un = (struct sockaddr_un *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strlen(path) >= sizeof(un->sun_path)) {
		snprintf(why, whylen, "socket path too long");
		return -1;
	}
	un->sun_family = AF_UNIX;
	memcpy(un->sun_path, path, strlen(path) + 1);
	*len = sizeof(*un);
	return 0;
}

/* px_hostport_addr - host:port from the cache; never blocks */
int px_hostport_addr(const char *host, const char *port, struct sockaddr_storage *ss,
		     socklen_t *len, char *why, size_t whylen)
{
	struct entry *e;
	int rc = -1;

	if (numeric(host, port, ss, len) == 0)
		return 0;
	pthread_mutex_lock(&cache_lock);
	if ((e = find_or_add(host, port)) == NULL) {
		snprintf(why, whylen, "out of memory");
	} else if (e->len > 0) {
		*ss = e->ss;
		*len = e->len;
		rc = 0;
		if (now_ms() - e->resolved_ms >= ADDR_TTL_MS)
			refresh(e);       /* stale: use it, and look again */
	} else {
		snprintf(why, whylen, "%s", e->why);
		refresh(e);
	}
	pthread_mutex_unlock(&cache_lock);
	return rc;
}

/* px_hostport_addr_failed - look host:port up again, in the background */
void px_hostport_addr_failed(const char *host, const char *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct entry *e;

	if (numeric(host, port, &ss, &len) == 0)
		return;
	pthread_mutex_lock(&cache_lock);
	if ((e = find_or_add(host, port)) != NULL)
		refresh(e);
	pthread_mutex_unlock(&cache_lock);
}

/* px_backend_addr - the cached address; never blocks */
int px_backend_addr(const struct px_config *cfg, struct sockaddr_storage *ss, socklen_t *len,
		    char *why, size_t whylen)
{
	const struct px_backend_spec *b = &cfg->backend;

	if (b->path != NULL)
		return unix_addr(b->path, ss, len, why, whylen);
	if (!by_name(cfg)) {
		snprintf(why, whylen, "no backend host");
		return -1;
	}
	return px_hostport_addr(b->host, b->port, ss, len, why, whylen);
}

/* px_backend_addr_failed - look the name up again, in the background */
void px_backend_addr_failed(const struct px_config *cfg)
{
	if (by_name(cfg))
		px_hostport_addr_failed(cfg->backend.host, cfg->backend.port);
}

/* px_backend_addr_set_resolver - for tests */
void px_backend_addr_set_resolver(px_resolve_fn fn, unsigned ms)
{
	pthread_mutex_lock(&cache_lock);
	resolver = fn;
	retry_ms = ms ? ms : ADDR_RETRY_MS;
	pthread_mutex_unlock(&cache_lock);
}

/* px_backend_addr_set_observer - for tests */
void px_backend_addr_set_observer(px_backend_addr_observer_fn fn)
{
	pthread_mutex_lock(&cache_lock);
	observer = fn;
	pthread_mutex_unlock(&cache_lock);
}
