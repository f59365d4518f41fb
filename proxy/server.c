/*
 * NAME
 *	server - listeners, event-loop threads, connection limits, reload
 * DESCRIPTION
 *	See server.h. Connection limits (in total, and per client address) are
 *	checked at accept, before any session exists: an over-limit client gets
 *	"421 4.7.0" and the socket is closed. The counters are shared by all
 *	threads under one mutex; the per-address table is a small chained hash.
 *
 *	Running out of file descriptors (EMFILE, ENFILE) or kernel memory makes
 *	accept() fail on every wakeup while the connection stays queued, so a
 *	listener that just logged and kept listening would spin. Instead the
 *	worker that saw the error stops accepting and probes every
 *	ACCEPT_RETRY_MS (and whenever a session closes) whether descriptors are
 *	free again. One "accept paused" line starts an outage; one "accept
 *	resumed" line ends it once accepting has gone ACCEPT_SETTLE_MS without
 *	another pause, so a server that keeps hitting the limit as sessions
 *	come and go still writes two lines, not two per session.
 *
 *	At start and on reload the descriptor limit is checked against
 *	connections_max (FDS_PER_SESSION each, plus FDS_SPARE): the soft limit
 *	is raised toward the hard one, and a hard limit that is too low is
 *	logged with the numbers.
 *
 *	Generations and listeners. srv->cfg is the current generation, with
 *	its TLS contexts attached (px_config_attach), so a session takes its
 *	configuration, its certificates and its listener with one reference
 *	under one lock (px_server_generation). srv->socks are the bound
 *	sockets of that generation, one per listener, each refcounted: the
 *	table holds one reference and each worker's evconnlistener on it one
 *	more. A reload binds the addresses the new generation adds (if one
 *	cannot be bound, for instance a port below 1024 after posternd gave
 *	up root, the reload fails and the old generation keeps serving),
 *	swaps generation and table under the lock, and wakes every worker,
 *	which follows the table on its own thread (worker_sync): it drops its
 *	listeners on sockets that are gone, the last reference closes the
 *	socket, and it listens on new ones. A connection accepted on a socket
 *	the current generation no longer has (between the swap and the
 *	worker's sync) gets 421: a session never starts without its
 *	listener's settings. Sessions already open keep their generation, and
 *	with it their listener's settings, until they end.
 *
 *	Freeing a generation runs plugin unconfigure hooks and libconfuse
 *	(config_lock), either of which may block, so it never runs on an I/O
 *	thread: while the server runs, the last px_config_unref (usually a
 *	session ending on an I/O thread) hands the generation to the main
 *	thread (gen_release), which frees it on its next loop turn.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "filters/chain.h"
#include "filters/workpool.h"
#include "policy/config.h"
#include "relay.h"
#include "server.h"
#include "smtp_session.h"
#include "tls.h"

#define CONN_BUCKETS 4096

#define ACCEPT_RETRY_MS  250     /* how often a paused worker probes for free fds */
#define ACCEPT_SETTLE_MS 3000    /* accepting this long without a pause ends an outage */
#define ACCEPT_PROBE_FDS 2       /* what a new session needs: the client and the backend */
#define FDS_PER_SESSION  3       /* client, backend, and the spool file during DATA */
#define FDS_SPARE        64      /* listeners, event bases, logs, plugins */

struct conn_count {
	struct conn_count *next;
	unsigned char addr[16];
	unsigned count;
};

struct px_worker;

/* One bound, listening socket. References: the server's table, and each
 * worker's listener on it; the last one closes it. All under srv->lock. */
struct px_lsock {
	int refs;
	int fd;
	char *address;                    /* as the listener gives it */
};

/* One worker's listener on one socket; the accept callbacks' argument */
struct px_wlisten {
	struct px_worker *w;
	struct px_lsock *sock;            /* referenced */
	struct evconnlistener *l;
};

struct px_worker {
	struct px_server *srv;
	struct event_base *base;
	struct px_wlisten **listen;       /* touched on this worker's thread only */
	size_t nlisten;
	struct event *sync;               /* srv->socks changed: follow it */
	struct event *retry;              /* probes for free fds while paused */
	int paused;                       /* listeners disabled (srv->lock) */
	pthread_t thread;
};

/* One accept outage: from the first pause to ACCEPT_SETTLE_MS after the last resume */
struct accept_outage {
	int active;
	long long since, resumed;         /* monotonic ms */
	unsigned retries;                 /* probes that found no free fds */
	unsigned paused_workers;
	unsigned wake_next;               /* round robin for px_server_conn_closed */
};

struct px_server {
	pthread_mutex_t lock;             /* cfg, socks, lsock refs, the connection counters */
	struct px_config *cfg;            /* the current generation; its TLS attached */
	const char *path;
	const char *const *overrides;
	size_t noverrides;
	struct px_lsock **socks;          /* cfg's sockets, in listener order; written
					     by the main thread only */
	size_t nsocks;
	struct px_worker *workers;
	unsigned nworkers;
	struct px_workpool *pool;
	unsigned conns;
	struct accept_outage outage;      /* under lock */
	struct event *settle;             /* on the main base: ends an outage */
	struct event *reap;               /* on the main base: frees released generations */
	pthread_mutex_t reap_lock;
	struct px_config *reap_list;      /* released, not yet freed (reap_lock) */
	struct px_chain *reap_chains;     /* chains released after their generation */
	pthread_t main_thread;            /* runs px_server_run's loop */
	struct conn_count *buckets[CONN_BUCKETS];
};

static void accept_wake_one(struct px_server *srv);

/* addr_bucket - the counter table's bucket for a key */
static unsigned addr_bucket(const unsigned char key[16])
{
	return px_key_hash(key) % CONN_BUCKETS;
}

/* conn_find - the counter for an address, created on demand (lock held) */
static struct conn_count *conn_find(struct px_server *srv, const unsigned char key[16], int create)
{
	struct conn_count **pp = &srv->buckets[addr_bucket(key)], *c;

	for (c = *pp; c != NULL; c = c->next)
		if (memcmp(c->addr, key, 16) == 0)
			return c;
	if (!create || (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	memcpy(c->addr, key, 16);
	c->next = *pp;
	*pp = c;
	return c;
}

static const char *conn_open_locked(struct px_server *srv, const struct sockaddr *sa,
				    int moving);
static void conn_uncount_locked(struct px_server *srv, const struct sockaddr *sa);

/* conn_open - count a new connection; the reason when over a limit */
static const char *conn_open(struct px_server *srv, const struct sockaddr *sa)
{
	const char *why;

	pthread_mutex_lock(&srv->lock);
	why = conn_open_locked(srv, sa, 0);
	pthread_mutex_unlock(&srv->lock);
	return why;
}

/* conn_open_locked - count sa (the total too unless moving); lock held */
static const char *conn_open_locked(struct px_server *srv, const struct sockaddr *sa, int moving)
{
	const struct px_limits *l = &srv->cfg->limits;
	unsigned char key[16];
	struct conn_count *c;
	const char *why = NULL;

	px_sockaddr_key(sa, key);
	if (!moving && srv->conns >= l->connections_max)
		why = "too many connections";
	else if ((c = conn_find(srv, key, 1)) == NULL)
		why = "out of memory";
	else if (c->count >= l->connections_per_client_max)
		why = "too many connections from your address";
	else {
		c->count++;
		srv->conns += moving ? 0 : 1;
	}
	return why;
}

/* px_server_conn_closed - uncount; drop the entry at zero */
void px_server_conn_closed(struct px_server *srv, const struct sockaddr *sa)
{
	pthread_mutex_lock(&srv->lock);
	srv->conns--;
	conn_uncount_locked(srv, sa);
	pthread_mutex_unlock(&srv->lock);
	accept_wake_one(srv);          /* an fd is free: a paused worker may go on */
}

/* px_server_conn_move - the session's count goes from one address to another */
const char *px_server_conn_move(struct px_server *srv, const struct sockaddr *from,
				const struct sockaddr *to)
{
	const char *why;

	pthread_mutex_lock(&srv->lock);
	why = conn_open_locked(srv, to, 1);
	if (why == NULL)
		conn_uncount_locked(srv, from);
	pthread_mutex_unlock(&srv->lock);
	return why;
}

/* px_server_generation - what a session accepted on address starts with:
 * the current generation (referenced), its TLS contexts and the listener,
 * read together under one lock; NULL when that generation has no listener
 * on address (the socket is being closed by a reload) */
struct px_config *px_server_generation(struct px_server *srv, const char *address,
				       struct px_tls **tls, const struct px_listener **listener)
{
	struct px_config *cfg = NULL;
	const struct px_listener *l;

	pthread_mutex_lock(&srv->lock);
	if ((l = px_config_listener(srv->cfg, address)) != NULL)
		cfg = px_config_ref(srv->cfg);
	pthread_mutex_unlock(&srv->lock);
	*listener = l;
	*tls = cfg != NULL ? px_config_attached(cfg) : NULL;
	return cfg;
}

/* conn_uncount_locked - one connection fewer from sa; lock held */
static void conn_uncount_locked(struct px_server *srv, const struct sockaddr *sa)
{
	unsigned char key[16];
	struct conn_count **pp, *c;

	px_sockaddr_key(sa, key);
	for (pp = &srv->buckets[addr_bucket(key)]; (c = *pp) != NULL; pp = &c->next) {
		if (memcmp(c->addr, key, 16) == 0) {
			if (--c->count == 0) {
				*pp = c->next;
				free(c);
			}
			break;
		}
	}
}

/* px_server_config - current generation, referenced */
struct px_config *px_server_config(struct px_server *srv)
{
	struct px_config *cfg;

	pthread_mutex_lock(&srv->lock);
	cfg = px_config_ref(srv->cfg);
	pthread_mutex_unlock(&srv->lock);
	return cfg;
}

struct px_workpool *px_server_pool(struct px_server *srv)
{
	return srv->pool;
}

/* refuse_conn - tell a client why it gets no session ("421 esc"), and close */
static void refuse_conn(evutil_socket_t fd, const struct sockaddr *sa, const char *esc,
			const char *why)
{
	char buf[512], addr[64];
	int n;

	px_sockaddr_ntop(sa, addr, sizeof(addr));
	px_log(PX_LOG_WARN, NULL, "refuse client=%s reason=\"%s\"", addr, why);
	n = snprintf(buf, sizeof(buf), "421 %s Error: %s; try again later\r\n", esc, why);
	if (send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		(void)0;   /* the client is going anyway */
	evutil_closesocket(fd);
}

/* px_server_refuse - a counted connection gets no session: 421, close, uncount */
void px_server_refuse(struct px_server *srv, evutil_socket_t fd, const struct sockaddr *sa,
		      const char *why)
{
	refuse_conn(fd, sa, "4.3.2", why);
	px_server_conn_closed(srv, sa);
}

/* accept_cb - a new client on this worker's base */
static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct px_wlisten *wl = arg;
	struct px_worker *w = wl->w;
	const char *why;

	if ((why = conn_open(w->srv, sa)) != NULL) {
		refuse_conn(fd, sa, "4.7.0", why);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	px_session_start(w->srv, w->base, fd, sa, (socklen_t)salen, wl->sock->address);
}

/* now_ms - monotonic milliseconds */
static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* fd_soft_limit - RLIMIT_NOFILE's soft value, for log lines; 0 if unknown */
static unsigned long fd_soft_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	return (unsigned long)rl.rlim_cur;
}

/* listeners_enable - start or stop accepting on every socket of this worker */
static void listeners_enable(struct px_worker *w, int on)
{
	size_t i;

	for (i = 0; i < w->nlisten; i++)
		if (on)
			evconnlistener_enable(w->listen[i]->l);
		else
			evconnlistener_disable(w->listen[i]->l);
}

/* accept_pause - accept() failed: stop this worker's listeners, retry later.
 * The first pause of an outage is logged; the rest are counted. */
static void accept_pause(struct px_worker *w, int err)
{
	struct px_server *srv = w->srv;
	struct accept_outage *o = &srv->outage;
	struct timeval tv = { 0, ACCEPT_RETRY_MS * 1000 };
	unsigned conns;
	int first;

	listeners_enable(w, 0);
	pthread_mutex_lock(&srv->lock);
	if (!w->paused) {
		w->paused = 1;
		o->paused_workers++;
	}
	if ((first = !o->active)) {
		o->active = 1;
		o->since = now_ms();
		o->retries = 0;
	}
	conns = srv->conns;
	pthread_mutex_unlock(&srv->lock);
	if (first)
		px_log(PX_LOG_ERR, NULL, "accept paused error=\"%s\" connections=%u fd_limit=%lu "
		       "retry_ms=%d", evutil_socket_error_to_string(err), conns, fd_soft_limit(),
		       ACCEPT_RETRY_MS);
	evtimer_add(w->retry, &tv);
}

/* fds_available - whether n more descriptors can be opened now (by trying) */
static int fds_available(int n)
{
	int fds[ACCEPT_PROBE_FDS], i, got;

	for (got = 0; got < n && got < ACCEPT_PROBE_FDS; got++)
		if ((fds[got] = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0)) < 0 &&
		    (fds[got] = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
			break;
	for (i = 0; i < got; i++)
		close(fds[i]);
	return got == n;
}

/* accept_retry_cb - a paused worker's timer (or a session closed): accept
 * again when fds are free, else wait another ACCEPT_RETRY_MS */
static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *w = arg;
	struct px_server *srv = w->srv;
	struct timeval settle = { ACCEPT_SETTLE_MS / 1000, (ACCEPT_SETTLE_MS % 1000) * 1000 };
	struct timeval tv = { 0, ACCEPT_RETRY_MS * 1000 };
	int ok = fds_available(ACCEPT_PROBE_FDS);

	pthread_mutex_lock(&srv->lock);
	if (!w->paused) {               /* woken twice: already accepting */
		pthread_mutex_unlock(&srv->lock);
		return;
	}
	if (ok) {
		w->paused = 0;
		srv->outage.paused_workers--;
		srv->outage.resumed = now_ms();
	} else {
		srv->outage.retries++;
	}
	pthread_mutex_unlock(&srv->lock);
	if (!ok) {
		evtimer_add(w->retry, &tv);
		return;
	}
	listeners_enable(w, 1);
	evtimer_add(srv->settle, &settle);  /* (re)starts the quiet period */
}

/* accept_settle_cb - no pause for ACCEPT_SETTLE_MS: the outage is over */
static void accept_settle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_server *srv = arg;
	struct accept_outage *o = &srv->outage;
	long long paused_ms = 0;
	unsigned retries = 0, conns = 0;
	int over;

	pthread_mutex_lock(&srv->lock);
	if ((over = o->active && o->paused_workers == 0)) {
		o->active = 0;
		paused_ms = o->resumed - o->since;
		retries = o->retries;
		conns = srv->conns;
	}
	pthread_mutex_unlock(&srv->lock);
	if (over)
		px_log(PX_LOG_WARN, NULL, "accept resumed paused_ms=%lld retries=%u connections=%u",
		       paused_ms, retries, conns);
}

/* accept_wake_one - a session freed its fds: let one paused worker probe now */
static void accept_wake_one(struct px_server *srv)
{
	struct px_worker *w = NULL;
	unsigned i, k;

	pthread_mutex_lock(&srv->lock);
	for (i = 0; srv->outage.paused_workers > 0 && i < srv->nworkers && w == NULL; i++) {
		k = (srv->outage.wake_next + i) % srv->nworkers;
		if (srv->workers[k].paused) {
			w = &srv->workers[k];
			srv->outage.wake_next = k + 1;
		}
	}
	pthread_mutex_unlock(&srv->lock);
	if (w != NULL)
		event_active(w->retry, EV_TIMEOUT, 1);
}

/* accept_error_cb - accept() failed with other than EAGAIN/EINTR/ECONNABORTED
 * (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...): pause rather than spin */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct px_wlisten *wl = arg;

	accept_pause(wl->w, EVUTIL_SOCKET_ERROR());
}

/* fd_limit_check - RLIMIT_NOFILE against connections_max: raise the soft
 * limit as far as the hard one allows, and say so when that is not enough */
static void fd_limit_check(const struct px_config *cfg)
{
	const struct px_limits *l = &cfg->limits;
	rlim_t need = (rlim_t)l->connections_max * FDS_PER_SESSION + FDS_SPARE +
		cfg->transport.nlisteners;
	struct rlimit rl;
	rlim_t was;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		px_log(PX_LOG_WARN, NULL, "fd-limit error=\"%s\"", strerror(errno));
		return;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
		return;
	was = rl.rlim_cur;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	if (rl.rlim_cur > was) {
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			px_log(PX_LOG_WARN, NULL, "fd-limit error=\"%s\" soft=%lu wanted=%lu",
			       strerror(errno), (unsigned long)was, (unsigned long)rl.rlim_cur);
			rl.rlim_cur = was;
		} else {
			px_log(PX_LOG_INFO, NULL, "fd-limit raised=yes from=%lu to=%lu",
			       (unsigned long)was, (unsigned long)rl.rlim_cur);
		}
	}
	if (rl.rlim_cur < need)
		px_log(PX_LOG_WARN, NULL, "fd-limit low=yes soft=%lu hard=%lu need=%lu "
		       "connections_max=%u fds_per_session=%d sessions_fit=%lu "
		       "hint=\"raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower "
		       "limits.connections_max\"", (unsigned long)rl.rlim_cur,
		       (unsigned long)rl.rlim_max, (unsigned long)need, l->connections_max,
		       FDS_PER_SESSION, rl.rlim_cur > FDS_SPARE ?
		       (unsigned long)((rl.rlim_cur - FDS_SPARE) / FDS_PER_SESSION) : 0UL);
}

/* listen_one - bind and listen on "ADDR:PORT"; after start (reloading), a
 * port that needs the privileges posternd gave up says so */
static int listen_one(const char *text, int reloading, char *err, size_t errlen)
{
	char host[256], port[32];
	struct evutil_addrinfo hints = { 0 }, *ai;
	int fd, one = 1, rc, e;

	if (px_hostport_split(text, NULL, host, sizeof(host), port, sizeof(port), err, errlen) < 0)
		return -1;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV;
	if ((rc = evutil_getaddrinfo(host, port, &hints, &ai)) != 0) {
		snprintf(err, errlen, "listen %s: %s", text, evutil_gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ai->ai_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 511) < 0) {
		e = errno;
		snprintf(err, errlen, "listen %s: %s%s", text, strerror(e),
			 reloading && e == EACCES ? " (posternd gave up the privileges this "
			 "port needs after it started: restart posternd to add this listener)" : "");
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	evutil_freeaddrinfo(ai);
	return fd;
}

/* lsock_unref_locked - drop a reference; the last one closes the socket */
static void lsock_unref_locked(struct px_lsock *k)
{
	if (--k->refs > 0)
		return;
	close(k->fd);
	free(k->address);
	free(k);
}

/* socks_release_locked - drop a table's references, and the table */
static void socks_release_locked(struct px_lsock **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		lsock_unref_locked(v[i]);
	free(v);
}

/* socks_find - the current table's socket on address, or NULL (main thread) */
static struct px_lsock *socks_find(struct px_server *srv, const char *address)
{
	size_t i;

	for (i = 0; i < srv->nsocks; i++)
		if (strcmp(srv->socks[i]->address, address) == 0)
			return srv->socks[i];
	return NULL;
}

/* sock_for - a reference to the socket on address: the current one, or a
 * new one bound now; NULL with err */
static struct px_lsock *sock_for(struct px_server *srv, const char *address, char *err,
				 size_t errlen)
{
	struct px_lsock *k = socks_find(srv, address);
	int fd;

	if (k != NULL) {
		pthread_mutex_lock(&srv->lock);
		k->refs++;
		pthread_mutex_unlock(&srv->lock);
		return k;
	}
	if ((fd = listen_one(address, srv->socks != NULL, err, errlen)) < 0)
		return NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL || (k->address = strdup(address)) == NULL) {
		snprintf(err, errlen, "listen %s: out of memory", address);
		free(k);
		close(fd);
		return NULL;
	}
	k->refs = 1;
	k->fd = fd;
	return k;
}

/* socks_for - the table of sockets for cfg's listeners, in their order:
 * kept ones referenced, added ones bound; -1 with err (nothing changed) */
static int socks_for(struct px_server *srv, const struct px_config *cfg,
		     struct px_lsock ***out, char *err, size_t errlen)
{
	const struct px_transport *t = &cfg->transport;
	struct px_lsock **v = calloc(t->nlisteners + 1, sizeof(*v));
	size_t i, j;

	if (v == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < t->nlisteners; i++) {
		for (j = 0; j < i; j++)
			if (strcmp(t->listeners[j].address, t->listeners[i].address) == 0)
				break;
		if (j < i) {
			snprintf(err, errlen, "listen %s: given twice (listeners %s and %s)",
				 t->listeners[i].address, t->listeners[j].name,
				 t->listeners[i].name);
			break;
		}
		if ((v[i] = sock_for(srv, t->listeners[i].address, err, errlen)) == NULL)
			break;
	}
	if (i == t->nlisteners) {
		*out = v;
		return 0;
	}
	pthread_mutex_lock(&srv->lock);
	socks_release_locked(v, i);
	pthread_mutex_unlock(&srv->lock);
	return -1;
}

/* listener_log - one "listen" line for a listener that starts accepting */
static void listener_log(const struct px_listener *l)
{
	px_log(PX_LOG_INFO, NULL, "listen address=%s name=%s tls=%s require_tls=%s proxy=%s "
	       "auth=%s", l->address, l->name,
	       l->tls == PX_TLS_IMPLICIT ? "implicit" : l->tls == PX_TLS_STARTTLS ? "starttls"
	       : "none", l->require_tls ? "yes" : "no", l->proxy == PX_PROXY_NONE ? "none" : "yes",
	       l->auth ? "yes" : "no");
}

/* socks_changes - log what a reload to cfg (with table v) opens and closes;
 * *opened, *closed: how many (main thread, before the swap) */
static void socks_changes(struct px_server *srv, const struct px_config *cfg,
			  struct px_lsock **v, unsigned *opened, unsigned *closed)
{
	const struct px_listener *l;
	size_t i, j;

	*opened = *closed = 0;
	for (i = 0; i < cfg->transport.nlisteners; i++)
		if (socks_find(srv, v[i]->address) == NULL) {
			listener_log(&cfg->transport.listeners[i]);
			++*opened;
		}
	for (i = 0; i < srv->nsocks; i++) {
		for (j = 0; j < cfg->transport.nlisteners && v[j] != srv->socks[i]; j++)
			;
		if (j < cfg->transport.nlisteners)
			continue;
		l = px_config_listener(srv->cfg, srv->socks[i]->address);
		px_log(PX_LOG_INFO, NULL, "listen address=%s name=%s closed=yes",
		       srv->socks[i]->address, l != NULL ? l->name : srv->socks[i]->address);
		++*closed;
	}
}

/* gen_tls - build cfg's TLS contexts and attach them to it; -1 with err */
static int gen_tls(struct px_config *cfg, char *err, size_t errlen)
{
	struct px_tls *tls = px_tls_new(cfg, err, errlen);

	if (tls == NULL)
		return -1;
	if (px_config_attach(cfg, tls, px_tls_free_void) < 0) {
		snprintf(err, errlen, "tls: the configuration has contexts already");
		px_tls_free(tls);
		return -1;
	}
	return 0;
}

/* reap_now - free every released generation and chain (main thread) */
static void reap_now(struct px_server *srv)
{
	struct px_config *cfg, *next;
	struct px_chain *c, *cnext;

	pthread_mutex_lock(&srv->reap_lock);
	cfg = srv->reap_list;
	srv->reap_list = NULL;
	c = srv->reap_chains;
	srv->reap_chains = NULL;
	pthread_mutex_unlock(&srv->reap_lock);
	for (; cfg != NULL; cfg = next) {
		next = cfg->release_next;
		px_log(PX_LOG_DEBUG, NULL, "generation freed=%lu", cfg->generation);
		px_config_free(cfg);
	}
	for (; c != NULL; c = cnext) {
		cnext = c->release_next;
		px_log(PX_LOG_DEBUG, NULL, "chain freed=after-generation");
		px_chain_free(c);
	}
}

/* reap_cb - the main loop's turn to free released generations */
static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
	reap_now(arg);
}

/* gen_release - the last reference to a generation went (any thread, often
 * an I/O thread ending a session): queue it for the main thread */
static void gen_release(struct px_config *cfg, void *arg)
{
	struct px_server *srv = arg;

	pthread_mutex_lock(&srv->reap_lock);
	cfg->release_next = srv->reap_list;
	srv->reap_list = cfg;
	pthread_mutex_unlock(&srv->reap_lock);
	event_active(srv->reap, EV_TIMEOUT, 1);
}

/* chain_release - a chain's last reference went: on the main thread (its
 * generation freed) free it now; elsewhere (a txn behind a late call
 * outlived its generation) queue it for the main thread */
static void chain_release(struct px_chain *c, void *arg)
{
	struct px_server *srv = arg;

	if (pthread_equal(pthread_self(), srv->main_thread)) {
		px_chain_free(c);
		return;
	}
	pthread_mutex_lock(&srv->reap_lock);
	c->release_next = srv->reap_chains;
	srv->reap_chains = c;
	pthread_mutex_unlock(&srv->reap_lock);
	event_active(srv->reap, EV_TIMEOUT, 1);
}

/* px_server_new - bind everything now, while we may (before any privilege drop) */
struct px_server *px_server_new(struct px_config *cfg, const char *path,
				const char *const *overrides, size_t noverrides,
				char *err, size_t errlen)
{
	struct px_server *srv = calloc(1, sizeof(*srv));
	size_t i;

	if (srv == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&srv->lock, NULL);
	pthread_mutex_init(&srv->reap_lock, NULL);
	srv->cfg = px_config_ref(cfg);
	srv->path = path;
	srv->overrides = overrides;
	srv->noverrides = noverrides;
	fd_limit_check(cfg);
	if (px_resolver_start(&cfg->dns, err, errlen) < 0 ||     /* the process's one resolver */
	    gen_tls(cfg, err, errlen) < 0 || socks_for(srv, cfg, &srv->socks, err, errlen) < 0) {
		px_server_free(srv);
		return NULL;
	}
	srv->nsocks = cfg->transport.nlisteners;
	for (i = 0; i < srv->nsocks; i++)
		listener_log(&cfg->transport.listeners[i]);
	return srv;
}

/* worker_main - one event loop */
static void *worker_main(void *arg)
{
	struct px_worker *w = arg;

	event_base_dispatch(w->base);
	return NULL;
}

/* worker_has - w listens on k */
static int worker_has(const struct px_worker *w, const struct px_lsock *k)
{
	size_t i;

	for (i = 0; i < w->nlisten; i++)
		if (w->listen[i]->sock == k)
			return 1;
	return 0;
}

/* socks_has - the current table holds k (srv->lock held) */
static int socks_has(const struct px_server *srv, const struct px_lsock *k)
{
	size_t i;

	for (i = 0; i < srv->nsocks; i++)
		if (srv->socks[i] == k)
			return 1;
	return 0;
}

/* wlisten_free - stop one listener of a worker (srv->lock held) */
static void wlisten_free(struct px_wlisten *wl)
{
	evconnlistener_free(wl->l);
	lsock_unref_locked(wl->sock);
	free(wl);
}

/* wlisten_new - listen on k in w's base; -1 on failure (srv->lock held) */
static int wlisten_new(struct px_worker *w, struct px_lsock *k)
{
	struct px_wlisten *wl = calloc(1, sizeof(*wl));

	if (wl == NULL)
		return -1;
	wl->w = w;
	wl->sock = k;
	if ((wl->l = evconnlistener_new(w->base, accept_cb, wl, 0, -1, k->fd)) == NULL) {
		free(wl);
		return -1;
	}
	evconnlistener_set_error_cb(wl->l, accept_error_cb);
	if (w->paused)
		evconnlistener_disable(wl->l);
	k->refs++;
	w->listen[w->nlisten++] = wl;
	return 0;
}

/* worker_sync - make w's listeners those of the current table: on w's
 * thread (or before it runs); -1 when a socket could not be listened on */
static int worker_sync(struct px_worker *w)
{
	struct px_server *srv = w->srv;
	struct px_wlisten **v;
	size_t i, n, nsocks;
	int rc = 0;

	pthread_mutex_lock(&srv->lock);
	nsocks = srv->nsocks;
	for (i = n = 0; i < w->nlisten; i++)
		if (socks_has(srv, w->listen[i]->sock))
			w->listen[n++] = w->listen[i];
		else
			wlisten_free(w->listen[i]);
	w->nlisten = n;
	if ((v = realloc(w->listen, (nsocks + 1) * sizeof(*v))) == NULL)
		rc = -1;
	else
		w->listen = v;
	for (i = 0; rc == 0 && i < nsocks; i++)
		if (!worker_has(w, srv->socks[i]) && wlisten_new(w, srv->socks[i]) < 0)
			rc = -1;
	pthread_mutex_unlock(&srv->lock);
	if (rc < 0)
		px_log(PX_LOG_ERR, NULL, "listen error=\"out of memory or descriptors\" "
		       "listening=%zu sockets=%zu", w->nlisten, nsocks);
	return rc;
}

/* worker_sync_cb - the main thread changed the table (reload) */
static void worker_sync_cb(evutil_socket_t fd, short what, void *arg)
{
	worker_sync(arg);
}

/* worker_start - a base, a listener per socket, a thread */
static int worker_start(struct px_server *srv, struct px_worker *w)
{
	w->srv = srv;
	if ((w->base = event_base_new()) == NULL ||
	    (w->retry = evtimer_new(w->base, accept_retry_cb, w)) == NULL ||
	    (w->sync = event_new(w->base, -1, 0, worker_sync_cb, w)) == NULL ||
	    worker_sync(w) < 0)
		return -1;
	return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

/* reload_swap - make cfg with its socket table v current, and wake the
 * workers to follow; the previous generation is returned (main thread) */
static struct px_config *reload_swap(struct px_server *srv, struct px_config *cfg,
				     struct px_lsock **v)
{
	struct px_config *old;
	unsigned i;

	pthread_mutex_lock(&srv->lock);
	old = srv->cfg;
	srv->cfg = cfg;
	socks_release_locked(srv->socks, srv->nsocks);
	srv->socks = v;
	srv->nsocks = cfg->transport.nlisteners;
	pthread_mutex_unlock(&srv->lock);
	for (i = 0; i < srv->nworkers; i++)
		event_active(srv->workers[i].sync, EV_TIMEOUT, 1);
	return old;
}

/* server_reload - SIGHUP: a new generation, or keep the old one */
static void server_reload(struct px_server *srv)
{
	struct px_config *cfg, *old;
	struct px_lsock **v;
	unsigned long keeping = srv->cfg->generation;
	unsigned opened, closed;
	char err[8192];

	if (px_config_load(srv->path, srv->overrides, srv->noverrides, &cfg, err, sizeof(err)) < 0) {
		px_log(PX_LOG_ERR, NULL, "reload status=failed keeping=%lu errors=\"%s\"",
		       keeping, err);
		return;
	}
	if (gen_tls(cfg, err, sizeof(err)) < 0 || socks_for(srv, cfg, &v, err, sizeof(err)) < 0) {
		px_log(PX_LOG_ERR, NULL, "reload status=failed keeping=%lu refused=%lu "
		       "errors=\"%s\"", keeping, cfg->generation, err);
		px_config_unref(cfg);
		return;
	}
	px_log_set_level((enum px_log_level)cfg->log_level);
	fd_limit_check(cfg);
	socks_changes(srv, cfg, v, &opened, &closed);
	old = reload_swap(srv, cfg, v);
	px_resolver_reconfigure(&cfg->dns);     /* timeouts.dns now; dns_forward at restart */
	px_log(PX_LOG_INFO, NULL, "reload status=ok generation=%lu previous=%lu listeners=%zu "
	       "opened=%u closed=%u", cfg->generation, old->generation,
	       cfg->transport.nlisteners, opened, closed);
	px_config_unref(old);
}

/* signal_cb - TERM and INT stop */
static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct event_base *base = arg;

	px_log(PX_LOG_INFO, NULL, "stop signal=%d", (int)sig);
	event_base_loopexit(base, NULL);
}

/* hup_cb - reload */
static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	server_reload(arg);
}

/* workers_stop - end the loops, join the threads, drop the sessions left;
 * then generations are freed on this thread again */
static void workers_stop(struct px_server *srv)
{
	unsigned i;

	for (i = 0; i < srv->nworkers; i++)
		event_base_loopexit(srv->workers[i].base, NULL);
	for (i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i].thread, NULL);
	/* the pool before the sessions: a job (a maildir write, a hook) may
	 * still read a session's message */
	if (px_workpool_stop(srv->pool) < 0) {
		px_log(PX_LOG_WARN, NULL, "stop job-still-running=yes");
		return;
	}
	px_session_free_all();          /* sessions in flight: SIGTERM ends them unanswered */
	px_relay_smtp_free_all();
	px_config_set_releaser(NULL, NULL);
	px_chain_set_releaser(NULL, NULL);
	reap_now(srv);
}

/* px_server_run - workers, then wait for signals on the main thread */
int px_server_run(struct px_server *srv)
{
	struct event_base *main_base = event_base_new();
	struct event *ev_term, *ev_int, *ev_hup;
	char err[256];
	unsigned i, n = srv->cfg->workers;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);

	if (n == 0)
		n = cores > 0 ? (unsigned)cores : 1;
	if (main_base == NULL || (srv->pool = px_workpool_new(n < 4 ? 4 : n * 2, 4096, err,
							   sizeof(err))) == NULL ||
	    (srv->workers = calloc(n, sizeof(*srv->workers))) == NULL ||
	    (srv->settle = evtimer_new(main_base, accept_settle_cb, srv)) == NULL ||
	    (srv->reap = event_new(main_base, -1, 0, reap_cb, srv)) == NULL)
		return -1;
	ev_term = evsignal_new(main_base, SIGTERM, signal_cb, main_base);
	ev_int = evsignal_new(main_base, SIGINT, signal_cb, main_base);
	ev_hup = evsignal_new(main_base, SIGHUP, hup_cb, srv);
	evsignal_add(ev_term, NULL);
	evsignal_add(ev_int, NULL);
	evsignal_add(ev_hup, NULL);
	px_config_set_releaser(gen_release, srv);
	srv->main_thread = pthread_self();
	px_chain_set_releaser(chain_release, srv);
	px_backend_caps_probe(main_base, srv->cfg);
	for (i = 0; i < n; i++) {
		if (worker_start(srv, &srv->workers[i]) < 0)
			return -1;
		pthread_mutex_lock(&srv->lock);     /* accept_wake_one reads it */
		srv->nworkers++;
		pthread_mutex_unlock(&srv->lock);
	}
	px_log(PX_LOG_INFO, NULL, "start workers=%u generation=%lu backend=%s", n,
	       srv->cfg->generation, srv->cfg->backend.text);
	event_base_dispatch(main_base);
	workers_stop(srv);
	event_free(ev_term);
	event_free(ev_int);
	event_free(ev_hup);
	event_free(srv->settle);
	srv->settle = NULL;
	event_free(srv->reap);
	srv->reap = NULL;
	event_base_free(main_base);
	return 0;
}

/* worker_free - a stopped worker's listeners, events and base */
static void worker_free(struct px_server *srv, struct px_worker *w)
{
	size_t i;

	pthread_mutex_lock(&srv->lock);
	for (i = 0; i < w->nlisten; i++)
		wlisten_free(w->listen[i]);
	pthread_mutex_unlock(&srv->lock);
	free(w->listen);
	if (w->sync)
		event_free(w->sync);
	if (w->retry)
		event_free(w->retry);
	if (w->base)
		event_base_free(w->base);
}

/* px_server_free - after run returned; open sessions are dropped. -1 (and
 * nothing freed) when a plugin hook is still running after the pool's wait */
int px_server_free(struct px_server *srv)
{
	size_t i;
	/* the pool first: a hook that overran its budget may still be running,
	 * and its completion is posted to a worker's event base */
	int idle = px_workpool_free(srv->pool) == 0;

	if (!idle) {            /* it may still read its conf: free nothing, exit */
		px_log(PX_LOG_WARN, NULL, "stop plugin-hook-still-running=yes");
		return -1;
	}
	px_resolver_stop();     /* before the loops' bases: answers posted there are dropped */
	for (i = 0; i < srv->nworkers; i++)
		worker_free(srv, &srv->workers[i]);
	pthread_mutex_lock(&srv->lock);
	if (srv->socks != NULL)
		socks_release_locked(srv->socks, srv->nsocks);
	pthread_mutex_unlock(&srv->lock);
	free(srv->workers);
	px_config_unref(srv->cfg);      /* its TLS contexts go with it */
	pthread_mutex_destroy(&srv->reap_lock);
	pthread_mutex_destroy(&srv->lock);
	free(srv);
	return 0;
}
