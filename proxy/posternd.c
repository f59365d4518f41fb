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
 */
#include "autoconfig.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
static int spool_dir_ready(const char *dir)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		px_log(PX_LOG_ERR, NULL, "spool_dir=%s error=\"%s\"", dir, strerror(errno));
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

int main(int argc, char **argv)
{
	struct options opt = { 0 };
	struct px_config *cfg;
	struct px_server *srv;
	char err[16384];
	int rc;

	parse_args(argc, argv, &opt);
	px_log_open("posternd", 1, PX_LOG_INFO);     /* until the configuration says more */
	if (!opt.check_only)       /* each generation (start, reload) resolves the backend */
		px_config_set_load_hook(px_backend_addr_load);
	if (px_config_load(opt.config, opt.overrides, opt.noverrides, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s%s", err, err[0] && err[strlen(err) - 1] == '\n' ? "" : "\n");
		return 1;
	}
	if (opt.check_only) {
		rc = check_tls(cfg, err, sizeof(err));
		px_config_unref(cfg);
		return rc;
	}
	px_log_open("posternd", opt.foreground, (enum px_log_level)cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	evthread_use_pthreads();
	if (spool_dir_ready(cfg->spool_dir) < 0)
		return 1;
	if ((srv = px_server_new(cfg, opt.config, opt.overrides, opt.noverrides, err,
				 sizeof(err))) == NULL) {
		px_log(PX_LOG_ERR, NULL, "start error=\"%s\"", err);
		return 1;
	}
	if (px_privs_drop(cfg->transport.user, cfg->transport.group, cfg->spool_dir, err,
			  sizeof(err)) < 0) {
		px_log(PX_LOG_ERR, NULL, "start error=\"%s\"", err);
		px_server_free(srv);
		px_config_unref(cfg);
		return 1;
	}
	px_config_unref(cfg);
	if (!opt.foreground && daemon(0, 0) < 0) {
		px_log(PX_LOG_ERR, NULL, "daemon error=\"%s\"", strerror(errno));
		return 1;
	}
	rc = px_server_run(srv);
	if (px_server_free(srv) == 0)
		px_plugins_unload();
	return rc == 0 ? 0 : 1;
}
