/*
 * NAME
 *	posternd - the Postern SMTP proxy daemon
 * SYNOPSIS
 *	posternd [-f] [-t] [-c FILE] [-o key=value]...
 * DESCRIPTION
 *	Reads the configuration (FILE, then conf.d/ beside it, then each -o),
 *	binds the listeners, and serves. -t checks the configuration and exits
 *	0, or 1 after printing "file:line: message" lines. -f stays in the
 *	foreground and logs to stderr; otherwise it detaches and logs to syslog.
 *
 *	Start-up order, and why: detach first (fork, setsid), so that the
 *	process that loads the plugins is the one that serves, and a thread a
 *	plugin starts in load() lives on (fork keeps only the calling
 *	thread); then read the configuration (which loads the plugins), bind,
 *	read the keys, drop privileges (privs.h: started as root, posternd
 *	serves as an unprivileged user unless user = "root"), and only then
 *	tell the waiting parent that the start succeeded and let go of the
 *	terminal's stdin, stdout and stderr. The parent exits with the start's
 *	status (0, or 1 after the child printed why), so `posternd && ...`
 *	and a pipe reading posternd's output both end.
 */
#include "autoconfig.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <event2/thread.h>

#include "backend_addr.h"
#include "common/log.h"
#include "filters/loader.h"
#include "policy/config.h"
#include "privs.h"
#include "server.h"
#include "tls.h"

#define DEFAULT_CONFIG SYSCONFDIR "/postern/postern.conf"
#define MAX_OVERRIDES 256

struct options {
	const char *config;
	int foreground;
	int check_only;
	const char *overrides[MAX_OVERRIDES];
	size_t noverrides;
};

/* usage - the synopsis, and exit 2 */
static void usage(void)
{
	fprintf(stderr, "usage: posternd [-f] [-t] [-c FILE] [-o key=value]...\n"
		"  -c FILE   configuration file (default %s); conf.d/ beside it is read too\n"
		"  -f        stay in the foreground, log to stderr\n"
		"  -t        check the configuration and exit (0 good, 1 errors)\n"
		"  -o K=V    override a setting after all files (section.key=value)\n"
		"  -V        print the version\n", DEFAULT_CONFIG);
	exit(2);
}

/* parse_args - the command line into opt */
static void parse_args(int argc, char **argv, struct options *opt)
{
	int c;

	opt->config = DEFAULT_CONFIG;
	while ((c = getopt(argc, argv, "c:fto:Vh")) != -1) {
		switch (c) {
		case 'c': opt->config = optarg; break;
		case 'f': opt->foreground = 1; break;
		case 't': opt->check_only = 1; break;
		case 'o':
			if (opt->noverrides == MAX_OVERRIDES) {
				fprintf(stderr, "posternd: too many -o options\n");
				exit(2);
			}
			opt->overrides[opt->noverrides++] = optarg;
			break;
		case 'V': printf("posternd %s\n", PACKAGE_VERSION); exit(0);
		default: usage();
		}
	}
	if (optind != argc)
		usage();
}

/* spool_dir_ready - the spool directory exists and is private */
static int spool_dir_ready(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "spool_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* check_tls - -t also loads the certificates and keys; 0, or 1 after printing why */
static int check_tls(const struct px_config *cfg, char *err, size_t errlen)
{
	struct px_tls *t = px_tls_new(cfg, err, errlen);

	px_tls_free_all();
	if (t != NULL)
		return 0;
	fprintf(stderr, "%s: %s\n", cfg->path, err);
	return 1;
}

/* detach - fork and setsid; the parent waits for the start's outcome and
 * exits with it. Returns, in the child, the pipe end that detach_done writes. */
static int detach(void)
{
	int p[2], status = 0;
	ssize_t n;
	pid_t pid;
	char c = 0;

	if (pipe(p) < 0 || fcntl(p[0], F_SETFD, FD_CLOEXEC) < 0 ||
	    fcntl(p[1], F_SETFD, FD_CLOEXEC) < 0 || (pid = fork()) < 0) {
		fprintf(stderr, "posternd: cannot detach: %s\n", strerror(errno));
		exit(1);
	}
	if (pid > 0) {
		close(p[1]);
		while ((n = read(p[0], &c, 1)) < 0 && errno == EINTR)
			;
		if (n == 1 && c == 'r')
			_exit(0);               /* it serves */
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;                       /* it ended before serving: its status */
		_exit(WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
	}
	close(p[0]);
	setsid();
	return p[1];
}

/* detach_done - the start succeeded: tell the parent, let go of the
 * terminal's descriptors (a pipe reading our output sees its end) */
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

/* start_error - a start-up error: logged, and on the terminal while it is
 * ours (detached, the log is syslog); the exit status */
static int start_error(const struct options *opt, const char *err)
{
	px_log(PX_LOG_ERR, NULL, "start error=\"%s\"", err);
	if (!opt->foreground)
		fprintf(stderr, "posternd: %s\n", err);
	return 1;
}

/* serve - from the configuration to the end of the run; the exit status */
static int serve(const struct options *opt, int ready_fd)
{
	struct px_config *cfg;
	struct px_server *srv;
	char err[16384];
	int rc;

	/* each generation (start, reload) resolves the backend */
	px_config_set_load_hook(px_backend_addr_load);
	if (px_config_load(opt->config, opt->overrides, opt->noverrides, &cfg, err,
			   sizeof(err)) < 0) {
		fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
		return 1;
	}
	px_log_open("posternd", opt->foreground, (enum px_log_level)cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	if (spool_dir_ready(cfg->spool_dir, err, sizeof(err)) < 0) {
		px_config_unref(cfg);
		return start_error(opt, err);
	}
	if ((srv = px_server_new(cfg, opt->config, opt->overrides, opt->noverrides, err,
				 sizeof(err))) == NULL) {
		px_config_unref(cfg);
		return start_error(opt, err);
	}
	if (px_privs_drop(cfg->transport.user, cfg->transport.group, cfg->spool_dir, err,
			  sizeof(err)) < 0) {
		px_server_free(srv);
		px_config_unref(cfg);
		return start_error(opt, err);
	}
	px_config_unref(cfg);
	if (ready_fd >= 0)
		detach_done(ready_fd);
	rc = px_server_run(srv);
	if (px_server_free(srv) == 0)
		px_plugins_unload();
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	struct px_config *cfg;
	char err[16384];
	int rc;

	parse_args(argc, argv, &opt);
	px_log_open("posternd", 1, PX_LOG_INFO);     /* until the configuration says more */
	if (!opt.check_only) {
		evthread_use_pthreads();
		return serve(&opt, opt.foreground ? -1 : detach());
	}
	if (px_config_load(opt.config, opt.overrides, opt.noverrides, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
		return 1;
	}
	rc = check_tls(cfg, err, sizeof(err));
	px_config_unref(cfg);
	return rc;
}
