/*
 * NAME
 *	postern - the admin command: check the configuration, test a message
 * SYNOPSIS
 *	postern [-c FILE] [-o key=value]... check [-v]
 *	postern [-c FILE] [-o key=value]... greylist list | allow WHAT [DURATION] | purge [TEXT]
 *	postern [-c FILE] [-o key=value]... test --client-ip ADDR [--client-name NAME]
 *		[--helo NAME] --from ADDR --rcpt ADDR [--rcpt ADDR]... [--tls] [--login NAME]
 *		< message
 *	-c and -o may as well follow the command: postern check -c FILE.
 * DESCRIPTION
 *	check: reads the configuration exactly as posternd does (file, conf.d,
 *	-o), loads and configures every plugin, and prints every effective
 *	setting and the chain; exit 0, or 1 with "file:line: message" lines.
 *
 *	test: runs the very same chain and policy as posternd, offline, over
 *	the envelope given and the message on standard input (LF line ends
 *	become CRLF, as an SMTP client sends them). It prints one line per
 *	plugin verdict, the final action with its SMTP reply, and the header
 *	fields that would be added (the trace header excluded). Exit status:
 *	0 accept (quarantine included), 2 reject, 3 tempfail, 4 discard,
 *	1 error.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/log.h"
#include "filters/chain.h"
#include "filters/loader.h"
#include "filters/resolver.h"
#include "filters/spool.h"
#include "filters/workpool.h"
#include "policy/config.h"
#include "policy/outgoing.h"
#include "policy/policy.h"
#include "greylist_admin.h"

#define DEFAULT_CONFIG SYSCONFDIR "/postern/postern.conf"
#define MAX_OVERRIDES 256
#define MAX_RCPTS 1000

enum { EXIT_ACCEPT = 0, EXIT_ERROR = 1, EXIT_REJECT = 2, EXIT_TEMPFAIL = 3, EXIT_DISCARD = 4 };

struct global_args {
	const char *config;
	const char *overrides[MAX_OVERRIDES];
	size_t nov;
};

struct test_args {
	const char *client_ip, *client_name, *helo, *from, *login;
	const char *rcpts[MAX_RCPTS];
	size_t nrcpts;
	int tls;
};

struct tester {
	struct px_config *cfg;
	struct event_base *base;
	struct px_workpool *pool;
	struct px_txn *txn;
	struct px_stage_outcome out;
	int done;
};

/* usage - and exit 1 */
static void usage(void)
{
	fprintf(stderr,
		"usage: postern [-c FILE] [-o key=value]... check [-v]\n"
		"       postern [-c FILE] [-o key=value]... test --client-ip ADDR [--client-name NAME]\n"
		"               [--helo NAME] --from ADDR --rcpt ADDR [--rcpt ADDR]... [--tls]\n"
		"               [--login NAME] < message\n"
		"       postern [-c FILE] [-o key=value]... greylist list | allow ADDR|DOMAIN\n"
		"               [DURATION] | purge [TEXT]\n"
		"(-c and -o may also follow the command)\n"
		"exit (test): 0 accept, 2 reject, 3 tempfail, 4 discard, 1 error\n");
	exit(EXIT_ERROR);
}

/* print_options - a plugin's option table, with defaults and help */
static void print_options(const struct px_plugin *p)
{
	static const char *const types[] = { "", "string", "int", "bool", "duration", "size",
					     "list" };
	const struct px_option *o;

	for (o = p->options; o != NULL && o->name != NULL; o++)
		printf("#     %s (%s, default %s): %s\n", o->name,
		       (unsigned)o->type <= PX_OPT_LIST ? types[o->type] : "?",
		       o->dflt ? o->dflt : "none", o->help ? o->help : "");
}

/* cmd_check - load, print, exit; verbose adds each plugin's options */
static int cmd_check(struct px_config *cfg, int verbose)
{
	const struct px_chain *c = cfg->chain;
	size_t i;

	px_config_dump(cfg, stdout);
	for (i = 0; c != NULL && i < c->n; i++)
		printf("# chain %zu: %s (%s %s, ABI %u.%u) %s timeout=%ums on_error=%s%s\n", i + 1,
		       c->v[i].name, c->v[i].plugin->name, c->v[i].plugin->version ?
		       c->v[i].plugin->version : "?", c->v[i].plugin->abi_major,
		       c->v[i].plugin->abi_minor, c->v[i].path, c->v[i].timeout_ms,
		       c->v[i].on_error_accept ? "accept" : "tempfail",
		       c->v[i].monitor ? " monitor" : "");
	for (i = 0; verbose && c != NULL && i < c->n; i++) {
		printf("# %s: %s\n", c->v[i].name, c->v[i].plugin->description ?
		       c->v[i].plugin->description : "");
		print_options(c->v[i].plugin);
	}
	return EXIT_ACCEPT;
}

/* observe - one plugin's verdict, as posternd logs it */
static void observe(void *arg, unsigned idx, enum px_stage st, enum px_verdict v, long ms,
		    const char *error)
{
	struct tester *t = arg;
	const struct px_result *r;
	char results[1024] = "";
	size_t len = 0;

	for (r = t->txn->results; r != NULL; r = r->next)
		if (r->plugin == idx && r->stage == st && len < sizeof(results))
			len += (size_t)snprintf(results + len, sizeof(results) - len, "%s%s=%s",
						len ? " " : "", r->method, r->result);
	printf("plugin=%s stage=%s verdict=%s ms=%ld%s%s%s%s%s\n", t->cfg->chain->v[idx].name,
	       px_stage_names[st], px_verdict_name(v), ms < 0 ? 0 : ms, error ? " error=" : "",
	       error ? error : "", len ? " results=\"" : "", results, len ? "\"" : "");
}

/* stage_done - the loop's answer */
static void stage_done(void *arg, const struct px_stage_outcome *o)
{
	struct tester *t = arg;

	t->out = *o;
	t->done = 1;
	event_base_loopbreak(t->base);
}

/* run_stage - one stage with a view, to the end */
static void run_stage(struct tester *t, enum px_stage st, const struct px_policy_view *view)
{
	struct px_run_ctx ctx = { t->txn, t->cfg->policy, view, t->base, t->pool, observe, t,
				  &px_policy_decider };

	t->done = 0;
	if (px_chain_run(&ctx, st, &t->out, stage_done, t))
		return;
	while (!t->done)
		event_base_dispatch(t->base);
}

/* exit_for - the exit status of a refusing outcome */
static int exit_for(const struct px_stage_outcome *o)
{
	switch (o->verdict) {
	case PX_TEMPFAIL:
	case PX_DISCONNECT:
		return EXIT_TEMPFAIL;
	case PX_DISCARD:
		return EXIT_DISCARD;
	default:
		return EXIT_REJECT;
	}
}

/* print_refusal - the action line of a refusing stage */
static int print_refusal(const struct px_stage_outcome *o, enum px_stage st)
{
	const char *action = o->verdict == PX_TEMPFAIL || o->verdict == PX_DISCONNECT ? "tempfail" :
			     o->verdict == PX_DISCARD ? "discard" : "reject";

	printf("action=%s stage=%s by=%s reply=\"%d %s %s\"\n", action, px_stage_names[st],
	       o->plugin, o->code, o->esc, o->text);
	return exit_for(o);
}

/* read_message - stdin into a spool, LF -> CRLF */
static struct px_spool *read_message(const char *dir)
{
	struct px_spool *sp = px_spool_new(dir, 64 * 1024 * 1024);
	char buf[65536], out[131072], err[256];
	size_t n, i, o;
	int prev_cr = 0;

	while (sp != NULL && (n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
		for (i = o = 0; i < n; i++) {
			if (buf[i] == '\n' && !prev_cr)
				out[o++] = '\r';
			out[o++] = buf[i];
			prev_cr = buf[i] == '\r';
		}
		if (px_spool_write(sp, out, o, err, sizeof(err)) < 0) {
			fprintf(stderr, "postern: %s\n", err);
			px_spool_free(sp);
			return NULL;
		}
	}
	return sp;
}

/* end_with_crlf - SMTP messages end with CRLF */
static void end_with_crlf(struct px_spool *sp)
{
	char last[2] = "";
	char err[128];
	size_t n = px_spool_size(sp);

	if (n >= 2)
		px_spool_read(sp, n - 2, last, 2);
	if (n > 0 && (last[0] != '\r' || last[1] != '\n'))
		px_spool_write(sp, "\r\n", 2, err, sizeof(err));
}

/* test_rcpts - each recipient's stage; the accepted ones fix the view */
static int test_rcpts(struct tester *t, const struct test_args *a, struct px_policy_view *txv,
		      struct px_stage_outcome *last)
{
	struct px_policy_view v;
	size_t i, ok = 0;

	for (i = 0; i < a->nrcpts; i++) {
		px_policy_view_for(t->cfg->policy, a->client_ip, a->from, a->rcpts[i], &v);
		if (ok > 0 && !px_policy_view_equal(&v, txv)) {
			printf("rcpt=<%s> action=defer reply=\"452 4.5.3 Recipient has a different "
			       "policy; try again in another transaction\"\n", a->rcpts[i]);
			continue;
		}
		px_txn_set_rcpt(t->txn, a->rcpts[i]);
		run_stage(t, PX_STAGE_RCPT, &v);
		if (t->out.verdict != PX_NEXT && t->out.verdict != PX_ACCEPT) {
			printf("rcpt=<%s> action=refuse reply=\"%d %s %s\"\n", a->rcpts[i],
			       t->out.code, t->out.esc, t->out.text);
			*last = t->out;
			continue;
		}
		if (ok++ == 0)
			*txv = v;
		px_txn_add_rcpt(t->txn, a->rcpts[i]);
	}
	return (int)ok;
}

/* test_envelope - connect, helo, mail, rcpt; 0 to go on, else an exit status */
static int test_envelope(struct tester *t, const struct test_args *a, struct px_policy_view *txv)
{
	struct px_policy_view v;
	struct px_stage_outcome last = { 0 };
	static const enum px_stage pre[] = { PX_STAGE_CONNECT, PX_STAGE_HELO, PX_STAGE_MAIL };
	size_t i;

	for (i = 0; i < 3; i++) {
		if (pre[i] == PX_STAGE_MAIL)
			px_txn_set_mail(t->txn, a->from);
		px_policy_view_for(t->cfg->policy, a->client_ip, pre[i] == PX_STAGE_MAIL ? a->from :
				   NULL, NULL, &v);
		run_stage(t, pre[i], &v);
		if (t->out.verdict != PX_NEXT && t->out.verdict != PX_ACCEPT)
			return print_refusal(&t->out, pre[i]);
	}
	if (test_rcpts(t, a, txv, &last) == 0)
		return last.code ? print_refusal(&last, PX_STAGE_RCPT) :
		       (printf("action=reject reply=\"554 5.5.1 no valid recipients\"\n"), EXIT_REJECT);
	return 0;
}

/* test_message - data-end, then the action and the headers */
static int test_message(struct tester *t, const struct px_policy_view *txv, struct px_spool *sp)
{
	struct px_outgoing out;
	size_t i;

	if (px_txn_set_message(t->txn, sp) < 0)
		return EXIT_ERROR;
	run_stage(t, PX_STAGE_DATA_END, txv);
	if (t->out.verdict != PX_NEXT && t->out.verdict != PX_ACCEPT)
		return print_refusal(&t->out, PX_STAGE_DATA_END);
	if (px_outgoing_build(t->txn, t->cfg->policy, NULL, &out) < 0)
		return EXIT_ERROR;
	printf("action=%s reply=\"250 2.0.0 Ok\"\n", t->txn->added &&
	       strstr(out.prepend, "X-Postern-Quarantine:") ? "quarantine" : "accept");
	for (i = 0; i < out.n; i++)
		printf("header: %s: %s\n", out.names[i], out.values[i]);
	px_outgoing_free(&out);
	return EXIT_ACCEPT;
}

/* client_trusted - the --client-ip lies in trusted_networks */
static int client_trusted(const struct px_config *cfg, const char *ip)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1)
		v4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1)
		v6->sin6_family = AF_INET6;
	else
		return 0;
	return px_config_is_trusted(cfg, (const struct sockaddr *)&ss);
}

/* cmd_test - the whole offline transaction */
static int cmd_test(struct px_config *cfg, const struct test_args *a)
{
	struct tester t = { .cfg = cfg };
	struct px_policy_view txv;
	struct px_spool *sp;
	char err[256], sid[17];
	int rc;

	snprintf(sid, sizeof(sid), "test%012ld", (long)getpid());
	evthread_use_pthreads();
	if ((t.base = event_base_new()) == NULL ||
	    (t.pool = px_workpool_new(4, 64, err, sizeof(err))) == NULL ||
	    (t.txn = px_txn_new(cfg->chain, sid, cfg->hostname)) == NULL ||
	    (sp = read_message(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp")) == NULL)
		return EXIT_ERROR;
	end_with_crlf(sp);
	px_txn_set_client(t.txn, a->client_ip, 0, a->client_name);
	px_txn_set_trusted(t.txn, client_trusted(cfg, a->client_ip));
	px_txn_set_base(t.txn, t.base);        /* asynchronous DNS answers come here */
	px_txn_set_helo(t.txn, a->helo);
	px_txn_set_tls(t.txn, a->tls ? "TLSv1.3" : NULL, a->tls ? "TLS_AES_256_GCM_SHA384" : NULL);
	px_txn_set_login(t.txn, a->login);
	rc = test_envelope(&t, a, &txv);
	if (rc == 0)
		rc = test_message(&t, &txv, sp);
	px_txn_reset(t.txn);
	px_txn_unref(t.txn);
	/* lookups still in flight end now (a worker blocked in one returns),
	 * and no answer is posted to the base after it is freed */
	px_resolver_stop();
	px_spool_free(sp);
	px_workpool_free(t.pool);
	event_base_free(t.base);
	return rc;
}

/* global_opt - -c or -o, before or after the command; 0, or -1 if c is neither */
static int global_opt(int c, const char *arg, struct global_args *g)
{
	if (c == 'c') {
		g->config = arg;
		return 0;
	}
	if (c != 'o')
		return -1;
	if (g->nov == MAX_OVERRIDES) {
		fprintf(stderr, "postern: too many -o options\n");
		exit(EXIT_ERROR);
	}
	g->overrides[g->nov++] = arg;
	return 0;
}

/* parse_check_args - [-v], and -c/-o */
static int parse_check_args(int argc, char **argv, struct global_args *g)
{
	int c, verbose = 0;

	optind = 1;
	while ((c = getopt(argc, argv, "c:o:v")) != -1) {
		if (c == 'v')
			verbose = 1;
		else if (global_opt(c, optarg, g) < 0)
			usage();
	}
	if (optind != argc)
		usage();
	return verbose;
}

/* parse_test_args - the envelope, and -c/-o */
static void parse_test_args(int argc, char **argv, struct test_args *a, struct global_args *g)
{
	static const struct option longs[] = {
		{ "client-ip", 1, NULL, 'a' }, { "client-name", 1, NULL, 'n' },
		{ "helo", 1, NULL, 'h' }, { "from", 1, NULL, 'f' }, { "rcpt", 1, NULL, 'r' },
		{ "tls", 0, NULL, 't' }, { "login", 1, NULL, 'l' }, { NULL, 0, NULL, 0 }
	};
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "c:o:", longs, NULL)) != -1) {
		switch (c) {
		case 'c': case 'o': global_opt(c, optarg, g); break;
		case 'a': a->client_ip = optarg; break;
		case 'n': a->client_name = optarg; break;
		case 'h': a->helo = optarg; break;
		case 'f': a->from = optarg; break;
		case 'l': a->login = optarg; break;
		case 't': a->tls = 1; break;
		case 'r':
			if (a->nrcpts == MAX_RCPTS)
				usage();
			a->rcpts[a->nrcpts++] = optarg;
			break;
		default: usage();
		}
	}
	if (!a->client_ip || !a->from || a->nrcpts == 0 || optind != argc)
		usage();
	if (!a->helo)
		a->helo = "unknown";
}

int main(int argc, char **argv)
{
	struct global_args g = { .config = DEFAULT_CONFIG };
	struct test_args targs = { 0 };
	struct px_config *cfg;
	char err[16384];
	int c, rc, verbose = 0, greylist = 0;

	while ((c = getopt(argc, argv, "+c:o:")) != -1)
		if (global_opt(c, optarg, &g) < 0)
			usage();
	if (optind >= argc)
		usage();
	px_log_open("postern", 1, PX_LOG_WARN);
	if (strcmp(argv[optind], "test") == 0)
		parse_test_args(argc - optind, argv + optind, &targs, &g);
	else if (strcmp(argv[optind], "check") == 0)
		verbose = parse_check_args(argc - optind, argv + optind, &g);
	else if (strcmp(argv[optind], "greylist") == 0)
		greylist = optind + 1;          /* its own arguments (greylist_admin.c) */
	else
		usage();
	if (px_config_load(g.config, g.overrides, g.nov, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return EXIT_ERROR;
	}
	px_log_set_level(cfg->log_level < PX_LOG_WARN ? (enum px_log_level)cfg->log_level :
			 PX_LOG_WARN);
	signal(SIGPIPE, SIG_IGN);
	if (greylist)
		rc = px_greylist_admin(argc - greylist, argv + greylist);
	else
		rc = targs.nrcpts ? cmd_test(cfg, &targs) : cmd_check(cfg, verbose);
	px_config_unref(cfg);
	px_plugins_unload();
	return rc;
}
