/*
 * NAME
 *	config_schema - the option tables of postern.conf and their value checks
 * SYNOPSIS
 *	#include "config_int.h"
 * DESCRIPTION
 *	The one schema (config_cfg_new), the tables of its sections (those
 *	of the transport are in config_transport.c, those of the policy and
 *	the plugins in config_policy.c), and the parse callbacks.
 *
 *	Values are checked while libconfuse parses them (parse callbacks), so
 *	each error carries the file and line of the bad value. Numbers with
 *	units are int options with a callback: "timeout = 5m" and
 *	"timeout = \"5m\"" both work, and the int holds milliseconds or bytes.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <arpa/inet.h>
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <confuse.h>

#include "config_int.h"
#include "config_policy.h"

#include "common/log.h"
#include "common/netaddr.h"
#include "common/units.h"
#include "filters/store.h"
#include "policy/config.h"

/* ------------------------------------------------------ numeric options */

static const struct num_rule num_rules[] = {
	{ "root", "workers", NUM_COUNT, 0, 1024 },
	{ "limits", "command_line_max", NUM_SIZE, 512, MIB },
	{ "limits", "text_line_max", NUM_SIZE, 1000, MIB },
	{ "limits", "message_size_max", NUM_SIZE, KIB, 16 * GIB },
	{ "limits", "recipients_max", NUM_COUNT, 1, 100000 },
	{ "limits", "errors_max", NUM_COUNT, 1, 10000 },
	{ "limits", "connections_max", NUM_COUNT, 1, 1000000 },
	{ "limits", "connections_per_client_max", NUM_COUNT, 1, 1000000 },
	{ "limits", "spool_memory_max", NUM_SIZE, 0, GIB },
	{ "timeouts", "command", NUM_DURATION, 1, MS_DAY },
	{ "timeouts", "data", NUM_DURATION, 1, MS_DAY },
	{ "timeouts", "session", NUM_DURATION, 1, MS_DAY },
	{ "timeouts", "backend_connect", NUM_DURATION, 1, MS_DAY },
	{ "timeouts", "backend_command", NUM_DURATION, 1, MS_DAY },
	{ "timeouts", "backend_data", NUM_DURATION, 1, MS_DAY },
	{ "timeouts", "greeting_delay", NUM_DURATION, 0, 5 * MS_MINUTE },
	{ "timeouts", "proxy_header", NUM_DURATION, 1, MS_HOUR },
	{ "timeouts", "store", NUM_DURATION, 10, MS_MINUTE },
	{ "timeouts", "dns", NUM_DURATION, 10, 5 * MS_MINUTE },
	{ "timeouts", "milter", NUM_DURATION, MS_SECOND, 10 * MS_MINUTE },
	{ "pregreet", "delay", NUM_DURATION, 100, 5 * MS_MINUTE },
	{ "pregreet", "greet_ttl", NUM_DURATION, 0, 365LL * MS_DAY },
	{ "pregreet", "fail_ttl", NUM_DURATION, 0, 365LL * MS_DAY },
	{ "auth", "failures_max", NUM_COUNT, 1, 100000 },
	{ "auth", "failure_window", NUM_DURATION, 1, MS_DAY },
};

/* num_rule_find - the rule of an int option; NULL for a plain int */
const struct num_rule *num_rule_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(num_rules) / sizeof(num_rules[0]); i++)
		if (strcmp(num_rules[i].section, section) == 0
		    && strcmp(num_rules[i].name, name) == 0)
			return &num_rules[i];
	return NULL;
}

/* num_format - a value of kind as it would be written in the file */
char *num_format(enum num_kind kind, long long v, char *buf, size_t len)
{
	if (kind == NUM_DURATION)
		return px_format_duration(v, buf, len);
	if (kind == NUM_SIZE)
		return px_format_size(v, buf, len);
	snprintf(buf, len, "%lld", v);
	return buf;
}

/* num_parse - text of kind into v; -1 if malformed */
static int num_parse(enum num_kind kind, const char *text, unsigned long long *v)
{
	if (kind == NUM_DURATION)
		return px_parse_duration_ms(text, v);
	if (kind == NUM_SIZE)
		return px_parse_size(text, v);
	return px_parse_count(text, v);
}

/* num_range_error - "is too small (minimum 512)" */
static int num_range_error(cfg_t *cfg, cfg_opt_t *opt, const char *value,
			   const struct num_rule *r, unsigned long long v)
{
	char why[96], lim[32];
	int low = v < (unsigned long long)r->min;

	num_format(r->kind, low ? r->min : r->max, lim, sizeof(lim));
	snprintf(why, sizeof(why), "too %s (%s %s)", low ? "small" : "large",
		 low ? "minimum" : "maximum", lim);
	return opt_error(cfg, opt, value, why);
}

/* cb_number - parse callback of every int option: units and bounds */
int cb_number(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const char *const expect[] = {
		[NUM_COUNT] = "not a number",
		[NUM_SIZE] = "not a size (bytes, or with k, M, G: 64k, 50M)",
		[NUM_DURATION] = "not a duration (30s, 5m, 1h, 1d, 250ms; bare = seconds)",
	};
	const struct num_rule *r = num_rule_find(cfg->name, opt->name);
	enum num_kind kind = r ? r->kind : NUM_COUNT;
	unsigned long long v;

	if (!value || num_parse(kind, value, &v) < 0)
		return opt_error(cfg, opt, value, expect[kind]);
	if (r && (v < (unsigned long long)r->min || v > (unsigned long long)r->max))
		return num_range_error(cfg, opt, value, r, v);
	if (v > (unsigned long long)LONG_MAX)
		return opt_error(cfg, opt, value, "too large");
	*(long *)result = (long)v;
	return 0;
}

/* ------------------------------------------------------- string options */

/* str_check - finish a string callback: pass value through or report why */
int str_check(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
	      const char *why)
{
	if (why)
		return opt_error(cfg, opt, value, why);
	*(const char **)result = value;
	return 0;
}

/* text_clean - whether s holds no control bytes (may hold spaces) */
int text_clean(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* backend_free - release what backend_parse filled in */
void backend_free(struct px_backend_spec *b)
{
	free(b->host);
	free(b->port);
	free(b->path);
	free(b->text);
	memset(b, 0, sizeof(*b));
}

/* backend_path - an absolute path for lmtp:unix: or maildir: */
static int backend_path(struct px_backend_spec *b, const char *path, char *err, size_t errlen)
{
	if (path[0] != '/' || !text_clean(path)) {
		snprintf(err, errlen, "'%s' is not an absolute path", path);
		return -1;
	}
	b->path = strdup(path);
	return 0;
}

/* backend_tcp - HOST:PORT or [V6]:PORT for smtp: and lmtp: */
static int backend_tcp(struct px_backend_spec *b, const char *hp, char *err, size_t errlen)
{
	char host[PX_CONF_HOST_MAX], port[PX_CONF_PORT_MAX];

	if (px_hostport_split(hp, NULL, host, sizeof(host), port, sizeof(port), err, errlen) < 0)
		return -1;
	b->host = strdup(host);
	b->port = strdup(port);
	return 0;
}

/* backend_dispatch - the kind prefix decides how the rest is read */
static int backend_dispatch(struct px_backend_spec *b, const char *text, char *err,
			    size_t errlen)
{
	if (strncmp(text, "smtp:", 5) == 0) {
		b->kind = PX_BACKEND_SMTP;
		return backend_tcp(b, text + 5, err, errlen);
	}
	if (strncmp(text, "lmtp:unix:", 10) == 0) {
		b->kind = PX_BACKEND_LMTP;
		return backend_path(b, text + 10, err, errlen);
	}
	if (strncmp(text, "lmtp:", 5) == 0) {
		b->kind = PX_BACKEND_LMTP;
		return backend_tcp(b, text + 5, err, errlen);
	}
	if (strncmp(text, "maildir:", 8) == 0) {
		b->kind = PX_BACKEND_MAILDIR;
		return backend_path(b, text + 8, err, errlen);
	}
	snprintf(err, errlen, "expected smtp:HOST:PORT, lmtp:HOST:PORT, lmtp:unix:PATH "
		 "or maildir:PATH");
	return -1;
}

/* backend_parse - fill b from "smtp:HOST:PORT" and the other forms */
int backend_parse(const char *text, struct px_backend_spec *b, char *err, size_t errlen)
{
	memset(b, 0, sizeof(*b));
	if (backend_dispatch(b, text, err, errlen) < 0) {
		backend_free(b);
		return -1;
	}
	b->text = strdup(text);
	if (!b->text || (!b->path && (!b->host || !b->port))) {
		snprintf(err, errlen, "out of memory");
		backend_free(b);
		return -1;
	}
	return 0;
}

/* cb_backend - check the backend form */
int cb_backend(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct px_backend_spec b;
	char err[256];

	if (backend_parse(value, &b, err, sizeof(err)) < 0)
		return str_check(cfg, opt, value, result, err);
	backend_free(&b);
	return str_check(cfg, opt, value, result, NULL);
}

/* cb_listen - one "ADDR:PORT" */
int cb_listen(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char host[PX_CONF_HOST_MAX], port[PX_CONF_PORT_MAX], err[256];

	if (px_hostport_split(value, NULL, host, sizeof(host), port, sizeof(port),
			      err, sizeof(err)) < 0)
		return opt_error_msg(cfg, opt, err);
	return str_check(cfg, opt, value, result, NULL);
}

/* cb_network - one CIDR network */
int cb_network(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct px_cidr net;
	char err[256];

	if (px_cidr_parse(value, &net, err, sizeof(err)) < 0)
		return opt_error_msg(cfg, opt, err);
	return str_check(cfg, opt, value, result, NULL);
}

/* domain_valid - letters, digits, '-', '_', dots; optional leading dot */
static int domain_valid(const char *d)
{
	const char *p;

	if (*d == '.')
		d++;
	if (!*d || *d == '.' || strlen(d) > 254 || strstr(d, ".."))
		return 0;
	for (p = d; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_.", *p))
			return 0;
	return 1;
}

/* cb_domain - one relay domain */
static int cb_domain(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result,
			 domain_valid(value) ? NULL : "not a domain name (example.com or .example.com)");
}

/* cb_dns_forward - one upstream DNS server: "IP" or "IP@PORT" (v4 or v6) */
static int cb_dns_forward(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	unsigned char buf[16];
	char ip[64], *end;
	const char *at = strchr(value, '@');
	size_t n = at ? (size_t)(at - value) : strlen(value);
	unsigned long port = 53;

	if (n == 0 || n >= sizeof(ip))
		return str_check(cfg, opt, value, result, "not an address (IP or IP@PORT)");
	memcpy(ip, value, n);
	ip[n] = '\0';
	if (at != NULL)
		port = strtoul(at + 1, &end, 10);
	if ((at != NULL && (at[1] == '\0' || *end != '\0')) || port == 0 || port > 65535 ||
	    (inet_pton(AF_INET, ip, buf) != 1 && inet_pton(AF_INET6, ip, buf) != 1))
		return str_check(cfg, opt, value, result,
				 "not an address (IP or IP@PORT: 127.0.0.1@5353, ::1)");
	return str_check(cfg, opt, value, result, NULL);
}

/* cb_store - lmdb:/PATH or redis://...; "" = lmdb:SPOOL_DIR/store */
static int cb_store(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char err[256];

	if (value[0] != '\0' && px_store_check(value, err, sizeof(err)) < 0)
		return str_check(cfg, opt, value, result, err);
	return str_check(cfg, opt, value, result, NULL);
}

/* cb_hostname - a host name (letters, digits, '-', '_', dots) */
static int cb_hostname(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, value[0] != '.' && domain_valid(value) ? NULL
			 : "not a host name (mx.example.com)");
}

/* px_milter_socket_check - inet:PORT[@ADDR], inet6:PORT[@ADDR], unix:/PATH
 * (local:/PATH), as libmilter's smfi_setconn takes them; NULL or why not */
const char *px_milter_socket_check(const char *v)
{
	const char *p = v, *at;
	char *end;
	unsigned long port;

	if (strncmp(v, "unix:", 5) == 0 || strncmp(v, "local:", 6) == 0) {
		p = strchr(v, ':') + 1;
		return p[0] == '/' && text_clean(p) && !strchr(p, ' ') ? NULL
		       : "expected unix:/ABSOLUTE/PATH";
	}
	if (strncmp(v, "inet:", 5) == 0)
		p = v + 5;
	else if (strncmp(v, "inet6:", 6) == 0)
		p = v + 6;
	else
		return "expected inet:PORT@ADDR, inet6:PORT@ADDR or unix:/PATH";
	port = strtoul(p, &end, 10);
	at = *end == '@' ? end + 1 : NULL;
	if (end == p || port == 0 || port > 65535 || (*end != '\0' && at == NULL) ||
	    (at != NULL && (*at == '\0' || !text_clean(at) || strchr(at, ' '))))
		return "expected inet:PORT@ADDR (8895@127.0.0.1), inet6:PORT@ADDR or unix:/PATH";
	return NULL;
}

/* cb_milter_socket - see px_milter_socket_check */
static int cb_milter_socket(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, px_milter_socket_check(value));
}

/* cb_log_level - error, warning, info or debug */
static int cb_log_level(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, px_log_level_parse(value) >= 0 ? NULL
			 : "expected error, warning, info or debug");
}

/* cb_path - an absolute path */
int cb_path(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, value[0] == '/' && text_clean(value) ? NULL
			 : "not an absolute path");
}

/* cb_text - free text for a reply line: no control bytes */
int cb_text(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, text_clean(value) ? NULL
			 : "must not contain control characters");
}

/* ---------------------------------------------------------------- schema */

static cfg_opt_t limits_opts[] = {
	CFG_INT_CB("command_line_max", 2048, CFGF_NONE, cb_number),
	CFG_INT_CB("text_line_max", MIB, CFGF_NONE, cb_number),
	CFG_INT_CB("message_size_max", 50 * MIB, CFGF_NONE, cb_number),
	CFG_INT_CB("recipients_max", 1000, CFGF_NONE, cb_number),
	CFG_INT_CB("errors_max", 20, CFGF_NONE, cb_number),
	CFG_INT_CB("connections_max", 1000, CFGF_NONE, cb_number),
	CFG_INT_CB("connections_per_client_max", 50, CFGF_NONE, cb_number),
	CFG_INT_CB("spool_memory_max", MIB, CFGF_NONE, cb_number),
	CFG_END()
};

static cfg_opt_t timeouts_opts[] = {
	CFG_INT_CB("command", 5 * MS_MINUTE, CFGF_NONE, cb_number),
	CFG_INT_CB("data", 10 * MS_MINUTE, CFGF_NONE, cb_number),
	CFG_INT_CB("session", MS_HOUR, CFGF_NONE, cb_number),
	CFG_INT_CB("backend_connect", 30 * MS_SECOND, CFGF_NONE, cb_number),
	CFG_INT_CB("backend_command", 5 * MS_MINUTE, CFGF_NONE, cb_number),
	CFG_INT_CB("backend_data", 10 * MS_MINUTE, CFGF_NONE, cb_number),
	CFG_INT_CB("greeting_delay", 0, CFGF_NONE, cb_number),
	CFG_INT_CB("proxy_header", 10 * MS_SECOND, CFGF_NONE, cb_number),
	CFG_INT_CB("store", 2 * MS_SECOND, CFGF_NONE, cb_number),
	CFG_INT_CB("dns", 5 * MS_SECOND, CFGF_NONE, cb_number),
	/* postern-milter: a stage's answer to the MTA at the latest (Postfix's
	 * milter_command_timeout is 30s) */
	CFG_INT_CB("milter", 25 * MS_SECOND, CFGF_NONE, cb_number),
	CFG_END()
};

/*
 * config_cfg_new - an empty cfg_t with the whole schema and its defaults.
 * This is the one place the schema is built: a new section (for instance a
 * titled, multiple `plugin "greylist" { ... }`, CFGF_TITLE | CFGF_MULTI) is
 * added to opts[] here, and the merge, -o and dump code handle it as is.
 * The root uses CFGF_NONE so an unknown key is an error. Call with
 * config_lock held.
 */
cfg_t *config_cfg_new(void)
{
	cfg_opt_t opts[] = {
		CFG_STR_CB("hostname", NULL, CFGF_NONE, cb_hostname),
		CFG_STR_LIST_CB("listen", "{\"0.0.0.0:25\"}", CFGF_NONE, cb_listen),
		CFG_INT_CB("workers", 0, CFGF_NONE, cb_number),
		CFG_STR_CB("backend", "maildir:/var/lib/postern/maildir", CFGF_NONE, cb_backend),
		CFG_STR_LIST_CB("relay_domains", NULL, CFGF_NONE, cb_domain),
		CFG_STR_LIST_CB("trusted_networks", "{\"127.0.0.0/8\", \"::1/128\"}", CFGF_NONE,
				cb_network),
		CFG_STR_CB("spool_dir", "/var/spool/postern", CFGF_NONE, cb_path),
		CFG_STR_CB("log_level", "info", CFGF_NONE, cb_log_level),
		CFG_STR_CB("greeting", "ESMTP Postern", CFGF_NONE, cb_text),
		CFG_BOOL("vrfy", cfg_false, CFGF_NONE),
		/* the resolver (filters/resolver.c): upstream DNS servers; none: resolv.conf */
		CFG_STR_LIST_CB("dns_forward", NULL, CFGF_NONE, cb_dns_forward),
		/* the key-value store (filters/store.c): "" = lmdb:SPOOL_DIR/store */
		CFG_STR_CB("store", "", CFGF_NONE, cb_store),
		/* postern-milter (proxy/milter_main.c): where libmilter listens */
		CFG_STR_CB("milter_socket", "inet:8895@127.0.0.1", CFGF_NONE, cb_milter_socket),
		CFG_SEC("limits", limits_opts, CFGF_NONE),
		CFG_SEC("timeouts", timeouts_opts, CFGF_NONE),
		/* transport (issue 3): built by config_transport.c */
		CFG_SEC("listener", listener_opts, CFGF_TITLE | CFGF_MULTI | CFGF_NO_TITLE_DUPES),
		CFG_SEC("tls", tls_opts, CFGF_NONE),
		CFG_SEC("backend_tls", backend_tls_opts, CFGF_NONE),
		CFG_SEC("auth", auth_opts, CFGF_NONE),
		CFG_SEC("pregreet", pregreet_opts, CFGF_NONE),   /* proxy/smtp_pregreet.c */
		CFG_STR_CB("backend_forward", "auto", CFGF_NONE, cb_choice),
		CFG_STR_LIST_CB("xclient_sources", NULL, CFGF_NONE, cb_network),
		CFG_STR_LIST_CB("normalize_bare_networks", NULL, CFGF_NONE, cb_network),
		CFG_STR_CB("user", "", CFGF_NONE, cb_text),
		CFG_STR_CB("group", "", CFGF_NONE, cb_text),
		/* the plugin chain and the policy (issue 4): config_plugins.c, config_policy.c */
		CFG_STR_CB("plugin_dir", PX_PLUGIN_DIR, CFGF_NONE, cb_path),
		/* no CFGF_NO_TITLE_DUPES here: libconfuse 3.3 then rejects the
		 * free-form keys of CFGF_KEYSTRVAL */
		CFG_SEC("plugin", px_plugin_opts, CFGF_MULTI | CFGF_TITLE | CFGF_KEYSTRVAL),
		CFG_SEC("policy", px_policy_opts, CFGF_NONE),
		CFG_SEC("allow", px_lists_opts, CFGF_NONE),
		CFG_SEC("deny", px_lists_opts, CFGF_NONE),
		CFG_SEC("override", px_override_opts, CFGF_MULTI | CFGF_TITLE | CFGF_NO_TITLE_DUPES),
		CFG_END()
	};
	cfg_t *cfg = cfg_init(opts, CFGF_NONE);

	if (cfg)
		config_set_errfunc(cfg);
	return cfg;
}
