/*
 * NAME
 *	postern-milter - the Postern chain behind libmilter, for Postfix and Sendmail
 * SYNOPSIS
 *	postern-milter [-f] [-t] [-c FILE] [-o key=value]...
 * DESCRIPTION
 *	Reads the same configuration as posternd (FILE, conf.d/ beside it,
 *	each -o), loads the same plugins and policy, and serves the milter
 *	protocol on milter_socket (inet:PORT@ADDR, inet6:PORT@ADDR,
 *	unix:/PATH). -t checks the configuration and exits 0, or 1 after
 *	"file:line: message" lines. -f stays in the foreground and logs to
 *	stderr; otherwise it detaches and logs to syslog (facility mail).
 *
 *	Start-up order, and why: the signals libmilter handles (HUP, TERM,
 *	INT) and ours (USR1) are blocked first, before any thread exists, so
 *	that every thread inherits the mask and libmilter's sigwait thread
 *	really gets them (libraries.md 5.2: smfi_main blocks them only in the
 *	thread that calls it); then detach (fork keeps only the calling
 *	thread, and a plugin's load() may start one), read the configuration
 *	(loads the plugins), start the resolver, the worker pool and the loop
 *	thread (milter_loop.c), bind the socket (smfi_opensocket, so that an
 *	error is reported before serving) with TCP_NODELAY, drop privileges,
 *	and serve (smfi_main) until SIGTERM or SIGHUP. SIGHUP stops the
 *	milter: that is libmilter's rule. SIGUSR1 reloads: a new generation
 *	for new connections, the old one kept by those that use it, and on
 *	error the old one goes on (logged).
 * DIAGNOSTICS
 *	- milter start socket=S nodelay=N generation=G workers=W
 *	- milter reload generation=G | reload error="..."
 *	- milter stop
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/thread.h>
#include <libmilter/mfapi.h>

#include "common/log.h"
#include "filters/loader.h"
#include "filters/resolver.h"
#include "filters/workpool.h"
#include "policy/config.h"
#include "milter_int.h"
#include "privs.h"

#define DEFAULT_CONFIG SYSCONFDIR "/postern/postern.conf"
#define MAX_OVERRIDES 256
#define FD_SCAN_MAX 1024

struct px_milter px_milter = { .lock = PTHREAD_MUTEX_INITIALIZER };
extern struct smfiDesc px_milter_desc;   /* milter_session.c */

struct options {
	const char *config;
	int foreground;
	int check_only;
	const char *overrides[MAX_OVERRIDES];
	size_t noverrides;
};

static struct options opt;
static pthread_t reload_thread;
static int reload_started, stopping;

static void usage(void)
{
	fprintf(stderr, "usage: postern-milter [-f] [-t] [-c FILE] [-o key=value]...\n"
		"  -c FILE   configuration file (default %s); conf.d/ beside it is read too\n"
		"  -f        stay in the foreground, log to stderr\n"
		"  -t        check the configuration and exit (0 good, 1 errors)\n"
		"  -o K=V    override a setting after all files (section.key=value)\n"
		"  -V        print the version\n", DEFAULT_CONFIG);
	exit(2);
}

static void parse_args(int argc, char **argv)
{
	int c;

	opt.config = DEFAULT_CONFIG;
	while ((c = getopt(argc, argv, "c:fto:Vh")) != -1) {
		switch (c) {
		case 'c': opt.config = optarg; break;
		case 'f': opt.foreground = 1; break;
		case 't': opt.check_only = 1; break;
		case 'o':
			if (opt.noverrides == MAX_OVERRIDES) {
				fprintf(stderr, "postern-milter: too many -o options\n");
				exit(2);
			}
			opt.overrides[opt.noverrides++] = optarg;
			break;
		case 'V': printf("postern-milter %s\n", PACKAGE_VERSION); exit(0);
		default: usage();
		}
	}
	if (optind != argc)
		usage();
}

/* load - the configuration; NULL after printing why */
static struct px_config *load(void)
{
	struct px_config *cfg;
	char err[16384];

	if (px_config_load(opt.config, opt.overrides, opt.noverrides, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
		return NULL;
	}
	return cfg;
}

/* block_signals - in the first thread, so that all threads inherit it */
static void block_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* detach - fork and setsid; the parent waits for the start's outcome */
static int detach(void)
{
	int p[2], status = 0;
	ssize_t n;
	pid_t pid;
	char c = 0;

	if (pipe(p) < 0 || fcntl(p[0], F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(p[1], F_SETFD, FD_CLOEXEC) < 0 || (pid = fork()) < 0) {
		fprintf(stderr, "postern-milter: cannot detach: %s\n", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n == 1 && c == 'r')
			_exit(0);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		_exit(WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
	}
	close(p[0]);
	setsid();
	return p[1];
}

/* detach_done - serving: tell the parent, let go of the terminal */
static void detach_done(int fd)
{
	int null = open("/dev/null", O_RDWR);

	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		dup2(null, STDERR_FILENO);
		if (null > STDERR_FILENO)
			close(null);
	}
	if (chdir("/") < 0)
		px_log(PX_LOG_WARN, NULL, "chdir dir=/ error=\"%s\"", strerror(errno));
	(void)!write(fd, "r", 1);
	close(fd);
}

/* nodelay - TCP_NODELAY on libmilter's listening socket: accepted sockets
 * inherit it (Linux), so a reply written in several pieces (the header
 * edits, then the verdict) is not held back by Nagle behind the MTA's
 * delayed ACK: no fixed stall per message. libmilter keeps the descriptor
 * to itself; it is the only listening socket of the process. */
static int nodelay(void)
{
	int fd, on = 1, n = 0, acc, dom;
	socklen_t len;

	for (fd = 0; fd < FD_SCAN_MAX; fd++) {
		len = sizeof(acc);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 || !acc)
			continue;
		len = sizeof(dom);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) < 0 ||
		    (dom != AF_INET && dom != AF_INET6))
			continue;
		if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) == 0)
			n++;
	}
	return n;
}

/* reload_main - SIGUSR1: a new generation for new connections */
static void *reload_main(void *arg)
{
	struct px_config *cfg, *old;
	char err[4096];
	sigset_t set;
	int sig;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		if (sigwait(&set, &sig) != 0 || __atomic_load_n(&stopping, __ATOMIC_ACQUIRE))
			return NULL;
		if (px_config_load(opt.config, opt.overrides, opt.noverrides, &cfg, err,
				   sizeof(err)) < 0) {
			err[strcspn(err, "\n")] = '\0';     /* the first error; -t prints all */
			px_log(PX_LOG_ERR, NULL, "milter reload error=\"%s\" kept=old", err);
			continue;
		}
		px_resolver_reconfigure(&cfg->dns);
		px_log_set_level((enum px_log_level)cfg->log_level);
		pthread_mutex_lock(&px_milter.lock);
		old = px_milter.cfg;
		px_milter.cfg = cfg;
		pthread_mutex_unlock(&px_milter.lock);
		px_log(PX_LOG_INFO, NULL, "milter reload generation=%lu", cfg->generation);
		px_config_unref(old);
	}
}

/* start - everything before smfi_main; 0, or -1 with err */
static int start(struct px_config *cfg, char *err, size_t errlen)
{
	unsigned n = cfg->workers;
	int nd;

	if (mkdir(cfg->spool_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "spool_dir %s: %s", cfg->spool_dir, strerror(errno));
		return -1;
	}
	if (px_resolver_start(&cfg->dns, err, errlen) < 0 ||
	    (px_milter.pool = px_workpool_new(n < 4 ? 4 : n * 2, 4096, err, errlen)) == NULL ||
	    (px_milter.loop = px_mloop_start(err, errlen)) == NULL)
		return -1;
	if (smfi_setconn(cfg->milter_socket) != MI_SUCCESS ||
	    smfi_register(px_milter_desc) != MI_SUCCESS ||
	    smfi_opensocket(true) != MI_SUCCESS) {
		snprintf(err, errlen, "milter_socket %s: cannot listen (in use, or no permission)",
			 cfg->milter_socket);
		return -1;
	}
	nd = nodelay();
	if (px_privs_drop(cfg->transport.user, cfg->transport.group, cfg->spool_dir, err,
			  errlen) < 0)
		return -1;
	if (pthread_create(&reload_thread, NULL, reload_main, NULL) == 0)
		reload_started = 1;
	px_log(PX_LOG_INFO, NULL, "milter start socket=%s nodelay=%s generation=%lu workers=%u "
	       "timeout=%ums", cfg->milter_socket, nd ? "yes" : "no", cfg->generation,
	       n < 4 ? 4 : n * 2, cfg->timeouts.milter);
	return 0;
}

/* shutdown_all - after smfi_main: the loop, the pool, the resolver */
static int shutdown_all(void)
{
	int idle;

	__atomic_store_n(&stopping, 1, __ATOMIC_RELEASE);
	if (reload_started) {
		pthread_kill(reload_thread, SIGUSR1);
		pthread_join(reload_thread, NULL);
	}
	px_mloop_stop(px_milter.loop);
	idle = px_milter.pool == NULL || px_workpool_free(px_milter.pool) == 0;
	if (!idle) {
		px_log(PX_LOG_WARN, NULL, "milter stop plugin-hook-still-running=yes");
		return -1;
	}
	px_resolver_stop();
	px_mloop_free(px_milter.loop);
	px_config_unref(px_milter.cfg);
	px_milter.cfg = NULL;
	return 0;
}

static int serve(int ready_fd)
{
	struct px_config *cfg;
	char err[4096];
	int rc;

	if ((cfg = load()) == NULL)
		return 1;
	px_log_open("postern-milter", opt.foreground, (enum px_log_level)cfg->log_level);
	px_milter.cfg = cfg;
	if (start(cfg, err, sizeof(err)) < 0) {
		px_log(PX_LOG_ERR, NULL, "start error=\"%s\"", err);
		if (!opt.foreground)
			fprintf(stderr, "postern-milter: %s\n", err);
		return 1;
	}
	if (ready_fd >= 0)
		detach_done(ready_fd);
	rc = smfi_main();
	px_log(PX_LOG_INFO, NULL, "milter stop status=%d", rc);
	if (shutdown_all() == 0)
		px_plugins_unload();
	return rc == MI_SUCCESS ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct px_config *cfg;

	parse_args(argc, argv);
	block_signals();
	px_log_open("postern-milter", 1, PX_LOG_INFO);
	if (opt.check_only) {
		if ((cfg = load()) == NULL)
			return 1;
		px_config_unref(cfg);
		return 0;
	}
	evthread_use_pthreads();
	return serve(opt.foreground ? -1 : detach());
}
