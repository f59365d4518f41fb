/*
 * NAME
 *	config - postern.conf + conf.d, read with libconfuse into one generation
 * SUMMARY
 *	load, merge per key, override with -o, dump like postconf
 * SYNOPSIS
 *	#include "policy/config.h"
 * DESCRIPTION
 *	Every file is parsed on its own into a fresh cfg_t built from the one
 *	schema (config_cfg_new), then only the options that file set
 *	(CFGF_MODIFIED) are copied onto the merged cfg_t, section by section;
 *	titled sections merge per title. So a conf.d file that says only
 *	"limits { recipients_max = 10 }" leaves every other limit alone.
 *
 *	Before a file is parsed, its lists are preloaded with the merged value
 *	so far (and marked unmodified), so "listen += { ... }" in conf.d
 *	appends to what postern.conf said, while "listen = { ... }" replaces
 *	it. The -o overrides are one more layer, applied last.
 *
 *	Values are checked while libconfuse parses them (parse callbacks), so
 *	each error carries the file and line of the bad value. Numbers with
 *	units are int options with a callback: "timeout = 5m" and
 *	"timeout = \"5m\"" both work, and the int holds milliseconds or bytes.
 *
 *	Global state, and why: libconfuse's lexer is one global (flex, not
 *	reentrant), and its error callback takes no user pointer. So every
 *	libconfuse call (init, parse, reading the tree, free) runs under
 *	config_lock, and the error collector of the load in progress sits in
 *	config_errors under the same lock. config_lock covers libconfuse and
 *	nothing else: the plugin chain (dlopen, each plugin's configure(),
 *	which may block) is built after it is released, from the plugin
 *	sections copied out of the tree. The generation counter is atomic.
 *
 *	Freeing: the last px_config_unref frees the generation, or hands it
 *	to the releaser a program installed (px_config_set_releaser), so a
 *	program whose I/O threads drop generations can free them elsewhere.
 * DIAGNOSTICS
 *	"FILE:LINE: message", "FILE: message" (cannot open), "-o: message".
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <confuse.h>

#include "config_plugins.h"
#include "config_policy.h"
#include "filters/chain.h"
#include "policy.h"

#include "common/log.h"
#include "common/netaddr.h"
#include "common/units.h"
#include "policy/config.h"

#define KIB PX_KIB
#define MIB PX_MIB
#define GIB PX_GIB
#define MS_SECOND PX_MS_SECOND
#define MS_MINUTE PX_MS_MINUTE
#define MS_HOUR PX_MS_HOUR
#define MS_DAY PX_MS_DAY

#define PX_CONF_HOST_MAX 256
#define PX_CONF_PORT_MAX 8
#define PX_CONF_FILE_MAX (4 * 1024 * 1024)

/* Where errors of the load in progress go; see DESCRIPTION. */
struct config_errors {
	char *buf;              /* caller's err; may be NULL */
	size_t size;
	size_t len;
	int count;
	const char *file;       /* file being parsed */
	const char *origin;     /* "-o" while applying overrides */
};

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static struct config_errors *config_errors;
static struct px_plugin_sections *config_plugins;   /* of the load in progress */
static unsigned long config_generation;

/* ---------------------------------------------------------------- errors */

/* errors_add - append one line to the collector */
static void errors_add(struct config_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void errors_add(struct config_errors *errs, const char *fmt, ...)
{
	va_list ap;
	int n;

	errs->count++;
	if (!errs->buf || errs->size == 0 || errs->len + 1 >= errs->size)
		return;
	if (errs->len > 0)
		errs->buf[errs->len++] = '\n';
	va_start(ap, fmt);
	n = vsnprintf(errs->buf + errs->len, errs->size - errs->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		errs->len += (size_t)n;
	if (errs->len >= errs->size)
		errs->len = errs->size - 1;
	errs->buf[errs->len] = 0;
}

/* config_errfunc - libconfuse's error callback: "FILE:LINE: message" */
static void config_errfunc(cfg_t *cfg, const char *fmt, va_list ap)
{
	struct config_errors *errs = config_errors;
	char msg[512];

	if (!errs)
		return;
	/* libconfuse 3.3 reports each free-form key of a CFGF_KEYSTRVAL section
	 * (a plugin's own options) as unknown, yet keeps it; those are checked
	 * against the plugin's table when it is loaded (config_plugins.c) */
	if (cfg->name && strcmp(cfg->name, "plugin") == 0 &&
	    strncmp(fmt, "no such option", 14) == 0)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (errs->origin)
		errors_add(errs, "%s: %s", errs->origin, msg);
	else
		errors_add(errs, "%s:%d: %s", errs->file ? errs->file : "?", cfg->line, msg);
}

/* opt_fullname - "limits.recipients_max", or "hostname" at the top */
static const char *opt_fullname(cfg_t *cfg, cfg_opt_t *opt, char *buf, size_t len)
{
	if (!cfg->name || strcmp(cfg->name, "root") == 0)
		snprintf(buf, len, "%s", opt->name);
	else if (cfg->title)
		snprintf(buf, len, "%s.%s.%s", cfg->name, cfg->title, opt->name);
	else
		snprintf(buf, len, "%s.%s", cfg->name, opt->name);
	return buf;
}

/* opt_error_msg - report "name: msg" through libconfuse (it adds file:line) */
static int opt_error_msg(cfg_t *cfg, cfg_opt_t *opt, const char *msg)
{
	char name[128];

	cfg_error(cfg, "%s: %s", opt_fullname(cfg, opt, name, sizeof(name)), msg);
	return -1;
}

/* opt_error - report a bad value of opt through libconfuse (it adds file:line) */
static int opt_error(cfg_t *cfg, cfg_opt_t *opt, const char *value, const char *why)
{
	char name[128];

	cfg_error(cfg, "%s: '%s': %s", opt_fullname(cfg, opt, name, sizeof(name)),
		  value ? value : "", why);
	return -1;
}

/* ------------------------------------------------------ numeric options */

enum num_kind { NUM_COUNT, NUM_SIZE, NUM_DURATION };

/* Bounds and units of every int option, by section and name. */
struct num_rule {
	const char *section;    /* "root" for the top level */
	const char *name;
	enum num_kind kind;
	long long min, max;
};

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
	{ "auth", "failures_max", NUM_COUNT, 1, 100000 },
	{ "auth", "failure_window", NUM_DURATION, 1, MS_DAY },
};

/* num_rule_find - the rule of an int option; NULL for a plain int */
static const struct num_rule *num_rule_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(num_rules) / sizeof(num_rules[0]); i++)
		if (strcmp(num_rules[i].section, section) == 0
		    && strcmp(num_rules[i].name, name) == 0)
			return &num_rules[i];
	return NULL;
}

/* num_format - a value of kind as it would be written in the file */
static char *num_format(enum num_kind kind, long long v, char *buf, size_t len)
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
static int cb_number(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
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
static int str_check(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
		     const char *why)
{
	if (why)
		return opt_error(cfg, opt, value, why);
	*(const char **)result = value;
	return 0;
}

/* text_clean - whether s holds no control bytes (may hold spaces) */
static int text_clean(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 0;
	return 1;
}

/* backend_free - release what backend_parse filled in */
static void backend_free(struct px_backend_spec *b)
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
static int backend_parse(const char *text, struct px_backend_spec *b, char *err, size_t errlen)
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
static int cb_backend(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct px_backend_spec b;
	char err[256];

	if (backend_parse(value, &b, err, sizeof(err)) < 0)
		return str_check(cfg, opt, value, result, err);
	backend_free(&b);
	return str_check(cfg, opt, value, result, NULL);
}

/* cb_listen - one "ADDR:PORT" */
static int cb_listen(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	char host[PX_CONF_HOST_MAX], port[PX_CONF_PORT_MAX], err[256];

	if (px_hostport_split(value, NULL, host, sizeof(host), port, sizeof(port),
			      err, sizeof(err)) < 0)
		return opt_error_msg(cfg, opt, err);
	return str_check(cfg, opt, value, result, NULL);
}

/* cb_network - one CIDR network */
static int cb_network(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
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

/* cb_hostname - a host name (letters, digits, '-', '_', dots) */
static int cb_hostname(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, value[0] != '.' && domain_valid(value) ? NULL
			 : "not a host name (mx.example.com)");
}

/* cb_log_level - error, warning, info or debug */
static int cb_log_level(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, px_log_level_parse(value) >= 0 ? NULL
			 : "expected error, warning, info or debug");
}

/* cb_path - an absolute path */
static int cb_path(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, value[0] == '/' && text_clean(value) ? NULL
			 : "not an absolute path");
}

/* cb_text - free text for a reply line: no control bytes */
static int cb_text(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
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
	CFG_END()
};

/* ------------------------------------------------ transport (issue 3) */

/* choice_ok - value is one of the words allowed for option name */
static const char *choice_ok(const char *name, const char *value)
{
	static const struct { const char *name, *words, *expect; } choices[] = {
		{ "tls", "|auto|none|starttls|implicit|", "expected auto, none, starttls or implicit" },
		{ "proxy_protocol", "|none|v1|v2|any|", "expected none, v1, v2 or any" },
		{ "min_version", "|TLSv1.2|TLSv1.3|", "expected TLSv1.2 or TLSv1.3" },
		{ "mode", "|none|opportunistic|required|", "expected none, opportunistic or required" },
		{ "backend_forward", "|auto|xclient|xforward|none|",
		  "expected auto, xclient, xforward or none" },
	};
	char word[64];
	size_t i;

	snprintf(word, sizeof(word), "|%s|", value);
	for (i = 0; i < sizeof(choices) / sizeof(choices[0]); i++)
		if (strcmp(choices[i].name, name) == 0)
			return strlen(value) < 32 && strstr(choices[i].words, word) ? NULL
			       : choices[i].expect;
	return NULL;
}

/* cb_choice - one word from a fixed set */
static int cb_choice(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, choice_ok(opt->name, value));
}

/* cb_path_opt - an absolute path, or "" for none */
static int cb_path_opt(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	return str_check(cfg, opt, value, result, value[0] == 0 || (value[0] == '/' &&
			 text_clean(value)) ? NULL : "not an absolute path");
}

/* cb_auth_backend - "" (the backend) or smtp:HOST:PORT */
static int cb_auth_backend(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	if (value[0] == 0)
		return str_check(cfg, opt, value, result, NULL);
	if (strncmp(value, "smtp:", 5) != 0)
		return str_check(cfg, opt, value, result, "expected smtp:HOST:PORT or \"\"");
	return cb_backend(cfg, opt, value, result);
}

static cfg_opt_t listener_opts[] = {
	CFG_STR_CB("address", NULL, CFGF_NONE, cb_listen),
	CFG_STR_CB("tls", "auto", CFGF_NONE, cb_choice),
	CFG_BOOL("require_tls", cfg_false, CFGF_NONE),
	CFG_STR_CB("proxy_protocol", "none", CFGF_NONE, cb_choice),
	CFG_STR_LIST_CB("proxy_sources", NULL, CFGF_NONE, cb_network),
	CFG_BOOL("auth", cfg_false, CFGF_NONE),
	CFG_END()
};

static cfg_opt_t tls_opts[] = {
	CFG_STR_LIST_CB("certificate", NULL, CFGF_NONE, cb_path),
	CFG_STR_LIST_CB("key", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("ciphers", "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS",
		   CFGF_NONE, cb_text),
	CFG_STR_CB("ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
		   "TLS_AES_128_GCM_SHA256", CFGF_NONE, cb_text),
	CFG_STR_CB("min_version", "TLSv1.2", CFGF_NONE, cb_choice),
	CFG_END()
};

static cfg_opt_t backend_tls_opts[] = {
	CFG_STR_CB("mode", "none", CFGF_NONE, cb_choice),
	CFG_BOOL("verify", cfg_false, CFGF_NONE),
	CFG_STR_CB("ca_file", "", CFGF_NONE, cb_path_opt),
	CFG_STR_CB("server_name", "", CFGF_NONE, cb_text),
	CFG_END()
};

static cfg_opt_t auth_opts[] = {
	CFG_STR_CB("backend", "", CFGF_NONE, cb_auth_backend),
	CFG_INT_CB("failures_max", 5, CFGF_NONE, cb_number),
	CFG_INT_CB("failure_window", 5 * MS_MINUTE, CFGF_NONE, cb_number),
	CFG_END()
};

/* config_set_errfunc - route errors of cfg and its sections to config_errfunc */
static void config_set_errfunc(cfg_t *cfg)
{
	unsigned i, j;

	cfg_set_error_function(cfg, config_errfunc);
	for (i = 0; cfg->opts[i].name; i++)
		for (j = 0; cfg->opts[i].type == CFGT_SEC && j < cfg->opts[i].nvalues; j++)
			config_set_errfunc(cfg->opts[i].values[j]->section);
}

/*
 * config_cfg_new - an empty cfg_t with the whole schema and its defaults.
 * This is the one place the schema is built: a new section (for instance a
 * titled, multiple `plugin "greylist" { ... }`, CFGF_TITLE | CFGF_MULTI) is
 * added to opts[] here, and the merge, -o and dump code handle it as is.
 * The root uses CFGF_NONE so an unknown key is an error. Call with
 * config_lock held.
 */
static cfg_t *config_cfg_new(void)
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
		CFG_SEC("limits", limits_opts, CFGF_NONE),
		CFG_SEC("timeouts", timeouts_opts, CFGF_NONE),
		/* transport (issue 3): built by config_transport.c */
		CFG_SEC("listener", listener_opts, CFGF_TITLE | CFGF_MULTI | CFGF_NO_TITLE_DUPES),
		CFG_SEC("tls", tls_opts, CFGF_NONE),
		CFG_SEC("backend_tls", backend_tls_opts, CFGF_NONE),
		CFG_SEC("auth", auth_opts, CFGF_NONE),
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

/* ----------------------------------------------------------------- merge */

/* copy_value - value i of s into d, same type */
static int copy_value(cfg_opt_t *d, cfg_opt_t *s, unsigned i)
{
	switch (s->type) {
	case CFGT_INT:
		return cfg_opt_setnint(d, cfg_opt_getnint(s, i), i);
	case CFGT_FLOAT:
		return cfg_opt_setnfloat(d, cfg_opt_getnfloat(s, i), i);
	case CFGT_BOOL:
		return cfg_opt_setnbool(d, cfg_opt_getnbool(s, i), i);
	case CFGT_STR:
		return cfg_opt_setnstr(d, cfg_opt_getnstr(s, i), i);
	default:
		return CFG_SUCCESS;
	}
}

/* copy_values - replace every value of d with those of s */
static int copy_values(cfg_opt_t *d, cfg_opt_t *s)
{
	unsigned i;

	cfg_free_value(d);
	d->flags &= ~CFGF_RESET;
	for (i = 0; i < s->nvalues; i++)
		if (copy_value(d, s, i) != CFG_SUCCESS)
			return -1;
	d->flags |= CFGF_MODIFIED;
	return 0;
}

/* section_target - the section of dst that src section ssec merges into */
static cfg_t *section_target(cfg_t *dst, cfg_opt_t *dopt, cfg_t *ssec)
{
	cfg_value_t *val;
	cfg_t *sec;

	if (!(dopt->flags & CFGF_MULTI))
		return cfg_opt_getnsec(dopt, 0);
	if (dopt->flags & CFGF_TITLE) {
		sec = cfg_opt_gettsec(dopt, ssec->title);
		return sec ? sec : cfg_addtsec(dst, dopt->name, ssec->title);
	}
	val = cfg_setopt(dst, dopt, NULL);
	return val ? val->section : NULL;
}

static int merge_cfg(cfg_t *dst, cfg_t *src);

/* merge_sections - every section value of sopt into its match in dst */
static int merge_sections(cfg_t *dst, cfg_opt_t *dopt, cfg_opt_t *sopt)
{
	unsigned i;
	cfg_t *dsec;

	for (i = 0; i < sopt->nvalues; i++) {
		dsec = section_target(dst, dopt, sopt->values[i]->section);
		if (!dsec || merge_cfg(dsec, sopt->values[i]->section) < 0)
			return -1;
	}
	return 0;
}

/* merge_cfg - copy onto dst every option src set (same schema), recursively */
static int merge_cfg(cfg_t *dst, cfg_t *src)
{
	cfg_opt_t *so, *dopt;
	unsigned i;

	for (i = 0; src->opts[i].name; i++) {
		so = &src->opts[i];
		dopt = &dst->opts[i];
		if (so->flags & CFGF_KEYSTRVAL)
			continue;       /* plugin sections: config_plugins.c collects them */
		if (so->type == CFGT_SEC && merge_sections(dst, dopt, so) < 0)
			return -1;
		if (so->type != CFGT_SEC && (so->flags & CFGF_MODIFIED) && copy_values(dopt, so) < 0)
			return -1;
	}
	return 0;
}

/* preload_lists - give fresh's lists the merged values, marked unmodified */
static void preload_lists(cfg_t *fresh, cfg_t *merged)
{
	cfg_opt_t *fo, *mo;
	unsigned i;

	for (i = 0; fresh->opts[i].name; i++) {
		fo = &fresh->opts[i];
		mo = &merged->opts[i];
		if (fo->type == CFGT_SEC && !(fo->flags & CFGF_MULTI))
			preload_lists(cfg_opt_getnsec(fo, 0), cfg_opt_getnsec(mo, 0));
		if (fo->type == CFGT_SEC || !(fo->flags & CFGF_LIST))
			continue;
		copy_values(fo, mo);
		fo->flags &= ~CFGF_MODIFIED;
	}
}

/* ----------------------------------------------------------------- files */

/* file_check - a readable regular file, or an error */
static int file_check(const char *file, struct config_errors *errs)
{
	struct stat st;

	if (stat(file, &st) < 0) {
		errors_add(errs, "%s: %s", file, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		errors_add(errs, "%s: not a regular file", file);
		return -1;
	}
	return 0;
}

/* Scanner states of prescan. */
enum scan_state { SCAN_CODE, SCAN_DQ, SCAN_SQ, SCAN_LINE, SCAN_BLOCK };

#define SCAN_DEPTH_MAX 16

/* What prescan found in a file's text. */
struct text_scan {
	enum scan_state st;
	int line;
	int start_line;                 /* where the open string or comment began */
	int depth;                      /* braces still open */
	int open_line[SCAN_DEPTH_MAX];  /* where each of them was opened */
};

/* scan_brace - track { and } outside strings and comments */
static void scan_brace(struct text_scan *sc, char c)
{
	if (c == '{' && sc->depth < SCAN_DEPTH_MAX)
		sc->open_line[sc->depth] = sc->line;
	if (c == '{')
		sc->depth++;
	else if (c == '}' && sc->depth > 0)
		sc->depth--;
}

/* scan_code - one byte outside strings and comments; returns the next state */
static enum scan_state scan_code(struct text_scan *sc, char *p)
{
	scan_brace(sc, *p);
	if (*p == '"')
		return SCAN_DQ;
	if (*p == '\'')
		return SCAN_SQ;
	if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
		*p = ' ';
		return SCAN_LINE;
	}
	if (p[0] == '/' && p[1] == '*') {
		p[0] = p[1] = ' ';
		return SCAN_BLOCK;
	}
	return SCAN_CODE;
}

/* scan_step - advance the scanner over *pp; may consume two bytes */
static enum scan_state scan_step(struct text_scan *sc, char **pp)
{
	char *p = *pp;
	enum scan_state st = sc->st;

	switch (st) {
	case SCAN_CODE:
		st = scan_code(sc, p);
		*pp += st == SCAN_BLOCK;
		return st;
	case SCAN_DQ:
	case SCAN_SQ:
		if (p[0] == '\\' && p[1] && p[1] != '\n')
			(*pp)++;
		else if (*p == (st == SCAN_DQ ? '"' : '\''))
			return SCAN_CODE;
		return st;
	case SCAN_LINE:
		if (*p == '\n')
			return SCAN_CODE;
		*p = ' ';
		return st;
	default:
		if (p[0] == '*' && p[1] == '/') {
			p[0] = p[1] = ' ';
			(*pp)++;
			return SCAN_CODE;
		}
		if (*p != '\n')
			*p = ' ';
		return st;
	}
}

/*
 * prescan - blank out #, // and C comments outside quotes, keeping every
 * newline, and note unclosed strings, comments and braces. libconfuse 3.3
 * counts each comment line more than once (so an error after a comment
 * would name the wrong line), and it accepts a section whose closing brace
 * is missing at the end of the file.
 */
static void prescan(char *text, struct text_scan *sc)
{
	enum scan_state next;
	char *p;

	memset(sc, 0, sizeof(*sc));
	sc->line = 1;
	for (p = text; *p; p++) {
		sc->line += *p == '\n';
		next = scan_step(sc, &p);
		if (next != SCAN_CODE && sc->st == SCAN_CODE)
			sc->start_line = sc->line;
		sc->st = next;
	}
}

/* prescan_error - report what prescan found unclosed; -1 if anything */
static int prescan_error(const char *file, const struct text_scan *sc,
			 struct config_errors *errs)
{
	int depth = sc->depth < SCAN_DEPTH_MAX ? sc->depth : SCAN_DEPTH_MAX;

	if (sc->st == SCAN_BLOCK)
		errors_add(errs, "%s:%d: unterminated /* comment", file, sc->start_line);
	else if (sc->st == SCAN_DQ || sc->st == SCAN_SQ)
		errors_add(errs, "%s:%d: unterminated string", file, sc->start_line);
	else if (depth > 0)
		errors_add(errs, "%s:%d: '{' is never closed", file, sc->open_line[depth - 1]);
	else
		return 0;
	return -1;
}

/* slurp_fp - read all of fp (size bytes expected) into a string; NULL and errno */
static char *slurp_fp(FILE *fp, size_t size)
{
	char *text = malloc(size + 1);
	size_t len;

	if (!text)
		return NULL;
	len = fread(text, 1, size + 1, fp);
	if (ferror(fp) || len > size || memchr(text, 0, len)) {
		errno = ferror(fp) ? EIO : len > size ? EAGAIN : EINVAL;
		free(text);
		return NULL;
	}
	text[len] = 0;
	return text;
}

/* slurp - the whole file as a NUL-terminated string; NULL and errno on failure */
static char *slurp(const char *file)
{
	FILE *fp = fopen(file, "r");
	struct stat st;
	char *text = NULL;
	int saved;

	if (!fp)
		return NULL;
	if (fstat(fileno(fp), &st) < 0)
		saved = errno;
	else if (st.st_size > PX_CONF_FILE_MAX)
		saved = EFBIG;
	else
		saved = (text = slurp_fp(fp, (size_t)st.st_size)) ? 0 : errno;
	fclose(fp);
	errno = saved;
	return text;
}

/* parse_text - run libconfuse over the prescanned text of file */
static int parse_text(cfg_t *cfg, const char *file, char *text, struct config_errors *errs)
{
	struct text_scan sc;
	FILE *fp;
	int rc;

	prescan(text, &sc);
	if (prescan_error(file, &sc, errs) < 0)
		return -1;
	free(cfg->filename);
	cfg->filename = strdup(file);
	if (!cfg->filename || !(fp = fmemopen(text, strlen(text), "r"))) {
		errors_add(errs, "%s: out of memory", file);
		return -1;
	}
	errs->file = file;
	rc = cfg_parse_fp(cfg, fp);
	errs->file = NULL;
	fclose(fp);
	return rc == CFG_SUCCESS ? 0 : -1;
}

/* parse_file - parse file into a fresh cfg_t; NULL (and errors) on failure */
static cfg_t *parse_file(const char *file, cfg_t *merged, struct config_errors *errs)
{
	cfg_t *cfg = NULL;
	char msg[512];
	char *text;

	if (file_check(file, errs) < 0)
		return NULL;
	if (!(text = slurp(file))) {
		errors_add(errs, "%s: %s", file, errno == EINVAL ? "contains a NUL byte"
			   : strerror(errno));
		return NULL;
	}
	if (!(cfg = config_cfg_new()))
		errors_add(errs, "%s: out of memory", file);
	else
		preload_lists(cfg, merged);
	if (cfg && parse_text(cfg, file, text, errs) < 0) {
		cfg_free(cfg);
		cfg = NULL;
	}
	if (cfg && config_plugins && px_plugin_sections_take(config_plugins, cfg, file, text,
							     msg, sizeof(msg)) < 0)
		errors_add(errs, "%s", msg);
	free(text);
	return cfg;
}

/* load_file - parse one file and merge it onto merged */
static void load_file(cfg_t *merged, const char *file, struct config_errors *errs)
{
	cfg_t *layer = parse_file(file, merged, errs);

	if (!layer)
		return;
	if (merge_cfg(merged, layer) < 0)
		errors_add(errs, "%s: out of memory", file);
	cfg_free(layer);
}

/* confd_filter - scandir filter: "*.conf", not hidden */
static int confd_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

/* confd_compare - plain strcmp order, whatever the locale */
static int confd_compare(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* confd_dir - "DIR/conf.d" for the directory that holds path */
static char *confd_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path) : 1;
	char *dir = malloc(dirlen + sizeof("/conf.d"));

	if (!dir)
		return NULL;
	if (slash)
		memcpy(dir, path, dirlen);
	else
		dir[0] = '.';
	memcpy(dir + dirlen, "/conf.d", sizeof("/conf.d"));
	return dir;
}

/* load_confd_entries - parse the sorted entries of dir, then free them */
static void load_confd_entries(cfg_t *merged, const char *dir, struct dirent **list, int n,
			       struct config_errors *errs)
{
	char *file;
	int i;

	for (i = 0; i < n; i++) {
		if (asprintf(&file, "%s/%s", dir, list[i]->d_name) < 0) {
			errors_add(errs, "%s: out of memory", dir);
		} else {
			load_file(merged, file, errs);
			free(file);
		}
		free(list[i]);
	}
	free(list);
}

/* load_confd - every conf.d/ *.conf beside path, in strcmp order */
static void load_confd(cfg_t *merged, const char *path, struct config_errors *errs)
{
	struct dirent **list;
	char *dir = confd_dir(path);
	int n;

	if (!dir) {
		errors_add(errs, "%s: out of memory", path);
		return;
	}
	n = scandir(dir, &list, confd_filter, confd_compare);
	if (n < 0 && errno != ENOENT)
		errors_add(errs, "%s: %s", dir, strerror(errno));
	if (n >= 0)
		load_confd_entries(merged, dir, list, n, errs);
	free(dir);
}

/* ------------------------------------------------------------- overrides */

/* opt_lookup - the option called name in cfg, without libconfuse's error */
static cfg_opt_t *opt_lookup(cfg_t *cfg, const char *name)
{
	unsigned i;

	for (i = 0; cfg->opts[i].name; i++)
		if (strcmp(cfg->opts[i].name, name) == 0)
			return &cfg->opts[i];
	return NULL;
}

/* override_section - step into section opt; a titled one eats "TITLE." */
static cfg_t *override_section(cfg_t *cfg, cfg_opt_t *opt, char **rest)
{
	char *title = *rest, *dot;
	cfg_t *sec;

	if (!(opt->flags & CFGF_MULTI))
		return cfg_opt_getnsec(opt, 0);
	if (!(opt->flags & CFGF_TITLE) || !(dot = strchr(title, '.')))
		return NULL;
	*dot = 0;
	*rest = dot + 1;
	sec = cfg_opt_gettsec(opt, title);
	return sec ? sec : cfg_addtsec(cfg, opt->name, title);
}

/* override_find - resolve "a.b.key" in key (modified) to an option and its cfg */
static cfg_opt_t *override_find(cfg_t *cfg, char *key, cfg_t **owner)
{
	cfg_opt_t *opt;
	char *dot;

	while ((dot = strchr(key, '.')) != NULL) {
		*dot = 0;
		opt = opt_lookup(cfg, key);
		key = dot + 1;
		if (!opt || opt->type != CFGT_SEC || !(cfg = override_section(cfg, opt, &key)))
			return NULL;
	}
	*owner = cfg;
	opt = opt_lookup(cfg, key);
	return opt && opt->type != CFGT_SEC && opt->type != CFGT_FUNC ? opt : NULL;
}

/* trim - strip spaces at both ends, in place */
static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = 0;
	return s;
}

/* unquote - drop one pair of double quotes around s, in place */
static char *unquote(char *s)
{
	size_t n = strlen(s);

	if (n < 2 || s[0] != '"' || s[n - 1] != '"')
		return s;
	s[n - 1] = 0;
	return s + 1;
}

/* override_list - "a, b, c" replaces the list; "" empties it */
static void override_list(cfg_t *cfg, cfg_opt_t *opt, char *value)
{
	char *item, *save = NULL;

	cfg_free_value(opt);
	opt->flags |= CFGF_MODIFIED;
	opt->flags &= ~CFGF_RESET;
	for (item = strtok_r(value, ",", &save); item; item = strtok_r(NULL, ",", &save))
		if (*(item = unquote(trim(item))) && !cfg_setopt(cfg, opt, item))
			return;
}

/* override_plugin - "-o NAME.OPTION=value" for a plugin section, or an error */
static void override_plugin(const char *key, const char *value, struct config_errors *errs)
{
	char msg[512];
	int rc = config_plugins ? px_plugin_sections_override(config_plugins, key, value, msg,
								 sizeof(msg)) : 0;

	if (rc == 0)
		errors_add(errs, "-o: unknown setting '%s'", key);
	else if (rc < 0)
		errors_add(errs, "%s", msg);
}

/* override_one - apply "key=value" or "section.key=value" to layer */
static void override_one(cfg_t *layer, const char *text, struct config_errors *errs)
{
	const char *eq = strchr(text, '=');
	char *key, *path, *value;
	cfg_opt_t *opt;
	cfg_t *owner;

	if (!eq) {
		errors_add(errs, "-o: '%s': expected key=value", text);
		return;
	}
	key = strndup(text, (size_t)(eq - text));
	path = key ? strdup(trim(key)) : NULL;
	value = strdup(eq + 1);
	if (!path || !value)
		errors_add(errs, "-o: out of memory");
	else if (!(opt = override_find(layer, path, &owner)))
		override_plugin(trim(key), unquote(trim(value)), errs);
	else if (opt->flags & CFGF_LIST)
		override_list(owner, opt, trim(value));
	else
		cfg_setopt(owner, opt, unquote(trim(value)));
	free(key);
	free(path);
	free(value);
}

/* load_overrides - the -o layer, merged last */
static void load_overrides(cfg_t *merged, const char *const *ov, size_t n,
			   struct config_errors *errs)
{
	cfg_t *layer;
	size_t i;

	if (n == 0)
		return;
	if (!(layer = config_cfg_new())) {
		errors_add(errs, "-o: out of memory");
		return;
	}
	errs->origin = "-o";
	for (i = 0; i < n; i++)
		override_one(layer, ov[i], errs);
	if (merge_cfg(merged, layer) < 0)
		errors_add(errs, "-o: out of memory");
	errs->origin = NULL;
	cfg_free(layer);
}

/* ----------------------------------------------------------------- build */

/* domain_normalize - lower case, no trailing dot, in place */
static char *domain_normalize(char *d)
{
	size_t n;
	char *p;

	for (p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	n = strlen(d);
	if (n > 1 && d[n - 1] == '.')
		d[n - 1] = 0;
	return d;
}

/* normalize_domains - relay_domains as they will be matched */
static int normalize_domains(cfg_t *cfg)
{
	cfg_opt_t *opt = cfg_getopt(cfg, "relay_domains");
	unsigned i;
	char *d;

	for (i = 0; i < opt->nvalues; i++) {
		if (!(d = strdup(cfg_opt_getnstr(opt, i))))
			return -1;
		cfg_opt_setnstr(opt, domain_normalize(d), i);
		free(d);
	}
	return 0;
}

/* normalize_hostname - an unset hostname becomes gethostname() */
static void normalize_hostname(cfg_t *cfg)
{
	char name[PX_CONF_HOST_MAX];
	const char *h = cfg_getstr(cfg, "hostname");

	if (h && *h)
		return;
	if (gethostname(name, sizeof(name) - 1) < 0 || !name[0])
		snprintf(name, sizeof(name), "localhost");
	name[sizeof(name) - 1] = 0;
	cfg_opt_setnstr(cfg_getopt(cfg, "hostname"), name, 0);
}

/* dup_list - the string list name as a NULL-terminated malloc'd array */
static int dup_list(cfg_t *cfg, const char *name, char ***out, size_t *n)
{
	size_t i, count = cfg_size(cfg, name);

	*n = 0;
	if (!(*out = calloc(count + 1, sizeof(char *))))
		return -1;
	for (i = 0; i < count; i++)
		if (!((*out)[i] = strdup(cfg_getnstr(cfg, name, (unsigned)i))))
			return -1;
	*n = count;
	return 0;
}

/* free_list - undo dup_list */
static void free_list(char **list)
{
	size_t i;

	for (i = 0; list && list[i]; i++)
		free(list[i]);
	free(list);
}

/* build_networks - trusted_networks, parsed */
static int build_networks(struct px_config *conf, cfg_t *cfg)
{
	size_t i, n = cfg_size(cfg, "trusted_networks");
	char err[256];

	if (!(conf->trusted_networks = calloc(n + 1, sizeof(struct px_cidr))))
		return -1;
	for (i = 0; i < n; i++)
		if (px_cidr_parse(cfg_getnstr(cfg, "trusted_networks", (unsigned)i),
				  &conf->trusted_networks[i], err, sizeof(err)) < 0)
			return -1;
	conf->ntrusted_networks = n;
	return 0;
}

/* build_limits - the limits section */
static void build_limits(struct px_limits *l, cfg_t *sec)
{
	l->command_line_max = (size_t)cfg_getint(sec, "command_line_max");
	l->text_line_max = (size_t)cfg_getint(sec, "text_line_max");
	l->message_size_max = (size_t)cfg_getint(sec, "message_size_max");
	l->recipients_max = (unsigned)cfg_getint(sec, "recipients_max");
	l->errors_max = (unsigned)cfg_getint(sec, "errors_max");
	l->connections_max = (unsigned)cfg_getint(sec, "connections_max");
	l->connections_per_client_max = (unsigned)cfg_getint(sec, "connections_per_client_max");
	l->spool_memory_max = (size_t)cfg_getint(sec, "spool_memory_max");
}

/* build_timeouts - the timeouts section, in milliseconds */
static void build_timeouts(struct px_timeouts *t, cfg_t *sec)
{
	t->command = (unsigned)cfg_getint(sec, "command");
	t->data = (unsigned)cfg_getint(sec, "data");
	t->session = (unsigned)cfg_getint(sec, "session");
	t->backend_connect = (unsigned)cfg_getint(sec, "backend_connect");
	t->backend_command = (unsigned)cfg_getint(sec, "backend_command");
	t->backend_data = (unsigned)cfg_getint(sec, "backend_data");
}

/* build_workers - 0 means one per online core */
static unsigned build_workers(cfg_t *cfg)
{
	long n = cfg_getint(cfg, "workers");

	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

/* build_strings - the scalar strings of the top level */
static int build_strings(struct px_config *conf, cfg_t *cfg)
{
	conf->hostname = strdup(cfg_getstr(cfg, "hostname"));
	conf->spool_dir = strdup(cfg_getstr(cfg, "spool_dir"));
	conf->greeting = strdup(cfg_getstr(cfg, "greeting"));
	return conf->hostname && conf->spool_dir && conf->greeting ? 0 : -1;
}

/* config_fill - every struct field from the merged, normalized cfg */
static int config_fill(struct px_config *conf, cfg_t *cfg, char *err, size_t errlen)
{
	conf->workers = build_workers(cfg);
	conf->log_level = px_log_level_parse(cfg_getstr(cfg, "log_level"));
	conf->vrfy_enabled = cfg_getbool(cfg, "vrfy") == cfg_true;
	build_limits(&conf->limits, cfg_getsec(cfg, "limits"));
	build_timeouts(&conf->timeouts, cfg_getsec(cfg, "timeouts"));
	if (build_strings(conf, cfg) < 0 || build_networks(conf, cfg) < 0)
		return -1;
	if (dup_list(cfg, "listen", &conf->listen, &conf->nlisten) < 0)
		return -1;
	if (dup_list(cfg, "relay_domains", &conf->relay_domains, &conf->nrelay_domains) < 0)
		return -1;
	if (px_config_transport_build(conf, cfg, err, errlen) < 0)
		return -1;
	return backend_parse(cfg_getstr(cfg, "backend"), &conf->backend, err, errlen);
}

/* config_free - release a generation; takes config_lock for cfg_free */
static void config_free(struct px_config *conf)
{
	if (conf->attached_free != NULL)
		conf->attached_free(conf->attached);
	px_chain_unref(conf->chain);
	px_policy_free(conf->policy);
	px_plugin_sections_free(conf->plugins);
	free(conf->plugin_dir);
	free(conf->path);
	free(conf->hostname);
	free_list(conf->listen);
	backend_free(&conf->backend);
	free_list(conf->relay_domains);
	free(conf->trusted_networks);
	free(conf->spool_dir);
	free(conf->greeting);
	px_config_transport_free(conf);
	if (conf->cfg) {
		pthread_mutex_lock(&config_lock);
		cfg_free(conf->cfg);
		pthread_mutex_unlock(&config_lock);
	}
	free(conf);
}

/* config_build - a generation that owns cfg; NULL (cfg freed by caller) on failure */
static struct px_config *config_build(cfg_t *cfg, const char *path, char *err,
				       size_t errlen)
{
	struct px_config *conf = calloc(1, sizeof(*conf));

	if (!conf)
		return NULL;
	normalize_hostname(cfg);
	if (normalize_domains(cfg) < 0 || !(conf->path = strdup(path))
	    || config_fill(conf, cfg, err, errlen) < 0) {
		config_free(conf);
		return NULL;
	}
	conf->refs = 1;
	conf->cfg = cfg;
	return conf;
}

/* config_policy - the policy of a generation, and its plugin sections (read
 * from the tree: config_lock held); on failure the caller drops conf */
static int config_policy(struct px_config *conf, struct config_errors *errs)
{
	cfg_t *cfg = conf->cfg;

	conf->plugins = config_plugins;
	config_plugins = NULL;
	if (cfg_size(cfg, "override") > 64) {
		errors_add(errs, "%s: at most 64 override sections", conf->path);
		return -1;
	}
	if ((conf->plugin_dir = strdup(cfg_getstr(cfg, "plugin_dir"))) == NULL ||
	    (conf->policy = px_policy_build(cfg, conf->hostname)) == NULL) {
		errors_add(errs, "%s: out of memory", conf->path);
		return -1;
	}
	return 0;
}

/* config_chain - load and configure the plugins (config_lock not held: a
 * plugin's configure() may block, and it touches no libconfuse state) */
static int config_chain(struct px_config *conf, struct config_errors *errs)
{
	char msg[2048];

	if (px_plugin_sections_chain(conf->plugins, conf->plugin_dir, &conf->chain, msg,
				     sizeof(msg)) < 0) {
		errors_add(errs, "%s", msg);
		return -1;
	}
	return 0;
}

/* config_load_locked - parse, merge and build, with config_lock held */
static struct px_config *config_load_locked(const char *path, const char *const *ov, size_t n,
					    struct config_errors *errs)
{
	struct px_config *conf = NULL;
	cfg_t *merged = config_cfg_new();
	char why[512] = "";

	if (!merged) {
		errors_add(errs, "%s: out of memory", path);
		return NULL;
	}
	config_plugins = px_plugin_sections_new();
	load_file(merged, path, errs);
	load_confd(merged, path, errs);
	load_overrides(merged, ov, n, errs);
	if (errs->count == 0 && !(conf = config_build(merged, path, why, sizeof(why))))
		errors_add(errs, "%s: %s", path, why[0] ? why : "out of memory");
	if (!conf)
		cfg_free(merged);
	if (conf)
		config_policy(conf, errs);
	px_plugin_sections_free(config_plugins);
	config_plugins = NULL;
	return conf;
}

static px_config_hook load_hook;

/* px_config_set_load_hook - run fn on each generation loaded from now on */
void px_config_set_load_hook(px_config_hook fn)
{
	__atomic_store_n(&load_hook, fn, __ATOMIC_RELEASE);
}

/* px_config_load - read path (+ conf.d beside it) and overrides into *out */
int px_config_load(const char *path, const char *const *overrides, size_t noverrides,
		   struct px_config **out, char *err, size_t errlen)
{
	px_config_hook hook;
	struct config_errors errs = { .buf = err, .size = errlen };
	struct px_config *conf;

	*out = NULL;
	if (err && errlen)
		err[0] = 0;
	pthread_mutex_lock(&config_lock);
	config_errors = &errs;
	conf = config_load_locked(path, overrides, noverrides, &errs);
	config_errors = NULL;
	pthread_mutex_unlock(&config_lock);
	if (conf && errs.count == 0)
		config_chain(conf, &errs);
	if (conf && errs.count > 0) {       /* the policy or a plugin failed */
		px_config_unref(conf);
		conf = NULL;
	}
	if (!conf)
		return -1;
	conf->generation = __atomic_add_fetch(&config_generation, 1, __ATOMIC_RELAXED);
	if ((hook = __atomic_load_n(&load_hook, __ATOMIC_ACQUIRE)) != NULL)
		hook(conf);
	*out = conf;
	return 0;
}

/* px_config_ref - one more holder of this generation */
struct px_config *px_config_ref(struct px_config *cfg)
{
	__atomic_add_fetch(&cfg->refs, 1, __ATOMIC_RELAXED);
	return cfg;
}

static pthread_mutex_t releaser_lock = PTHREAD_MUTEX_INITIALIZER;
static px_config_releaser releaser;
static void *releaser_arg;

/* px_config_set_releaser - who frees generations from now on (NULL: unref) */
void px_config_set_releaser(px_config_releaser fn, void *arg)
{
	pthread_mutex_lock(&releaser_lock);
	releaser = fn;
	releaser_arg = arg;
	pthread_mutex_unlock(&releaser_lock);
}

/* px_config_unref - drop a hold; the last one frees the generation, or hands
 * it to the releaser */
void px_config_unref(struct px_config *cfg)
{
	px_config_releaser fn;
	void *arg;

	if (!cfg || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pthread_mutex_lock(&releaser_lock);
	fn = releaser;
	arg = releaser_arg;
	pthread_mutex_unlock(&releaser_lock);
	if (fn != NULL)
		fn(cfg, arg);
	else
		config_free(cfg);
}

/* px_config_free - a released generation, now */
void px_config_free(struct px_config *cfg)
{
	if (cfg)
		config_free(cfg);
}

/* px_config_attach - obj lives and dies with this generation */
int px_config_attach(struct px_config *cfg, void *obj, void (*free_fn)(void *))
{
	if (cfg->attached_free != NULL || cfg->attached != NULL)
		return -1;
	cfg->attached = obj;
	cfg->attached_free = free_fn;
	return 0;
}

/* px_config_attached - what px_config_attach gave this generation, or NULL */
void *px_config_attached(const struct px_config *cfg)
{
	return cfg->attached;
}

/* ------------------------------------------------------------------ dump */

/* dump_value - value i of an option, in the syntax the file takes */
static void dump_value(cfg_t *cfg, cfg_opt_t *opt, unsigned i, FILE *fp)
{
	const struct num_rule *r;
	const char *s;
	char buf[64];

	switch (opt->type) {
	case CFGT_INT:
		r = num_rule_find(cfg->name, opt->name);
		fputs(num_format(r ? r->kind : NUM_COUNT, cfg_opt_getnint(opt, i), buf,
				 sizeof(buf)), fp);
		break;
	case CFGT_BOOL:
		fputs(cfg_opt_getnbool(opt, i) ? "yes" : "no", fp);
		break;
	case CFGT_FLOAT:
		fprintf(fp, "%g", cfg_opt_getnfloat(opt, i));
		break;
	default:
		s = cfg_opt_getnstr(opt, i);
		fputs(s ? s : "", fp);
	}
}

/* dump_option - "prefix.name = v1, v2" */
static void dump_option(cfg_t *cfg, cfg_opt_t *opt, const char *prefix, FILE *fp)
{
	unsigned i;

	fprintf(fp, "%s%s =", prefix, opt->name);
	for (i = 0; i < opt->nvalues; i++) {
		fputs(i ? ", " : " ", fp);
		dump_value(cfg, opt, i, fp);
	}
	fputc('\n', fp);
}

static void dump_cfg(cfg_t *cfg, const char *prefix, FILE *fp);

/* dump_section - every value of a section option, with "name." or "name.title." */
static void dump_section(cfg_opt_t *opt, const char *prefix, FILE *fp)
{
	char sub[256];
	unsigned i;
	cfg_t *sec;

	for (i = 0; i < opt->nvalues; i++) {
		sec = opt->values[i]->section;
		if (sec->title)
			snprintf(sub, sizeof(sub), "%s%s.%s.", prefix, opt->name, sec->title);
		else
			snprintf(sub, sizeof(sub), "%s%s.", prefix, opt->name);
		dump_cfg(sec, sub, fp);
	}
}

/* dump_cfg - every option of cfg, sections after the plain options */
static void dump_cfg(cfg_t *cfg, const char *prefix, FILE *fp)
{
	unsigned i;

	for (i = 0; cfg->opts[i].name; i++)
		if (cfg->opts[i].type != CFGT_SEC && cfg->opts[i].type != CFGT_FUNC
		    && cfg->opts[i].type != CFGT_PTR)
			dump_option(cfg, &cfg->opts[i], prefix, fp);
	for (i = 0; cfg->opts[i].name; i++)
		if (cfg->opts[i].type == CFGT_SEC)
			dump_section(&cfg->opts[i], prefix, fp);
}

/* px_config_dump - every effective setting as "name = value" lines */
void px_config_dump(const struct px_config *cfg, FILE *fp)
{
	dump_cfg(cfg->cfg, "", fp);
	px_plugin_sections_dump(cfg->plugins, fp);
}

/* --------------------------------------------------------------- queries */

/* domain_equal - case-insensitive compare of n bytes of a with all of b */
static int domain_equal(const char *a, size_t n, const char *b)
{
	return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* relay_match - one relay_domains entry against a domain of length n */
static int relay_match(const char *entry, const char *domain, size_t n)
{
	size_t elen = strlen(entry);

	if (entry[0] != '.')
		return domain_equal(domain, n, entry);
	return n > elen && strncasecmp(domain + n - elen, entry, elen) == 0;
}

/* px_config_is_relay_domain - exact match, or a subdomain of a ".domain" entry */
int px_config_is_relay_domain(const struct px_config *cfg, const char *domain)
{
	size_t i, n = domain ? strlen(domain) : 0;

	if (n > 0 && domain[n - 1] == '.')
		n--;
	if (n == 0)
		return 0;
	for (i = 0; i < cfg->nrelay_domains; i++)
		if (relay_match(cfg->relay_domains[i], domain, n))
			return 1;
	return 0;
}

/* px_config_is_trusted - client address lies in trusted_networks */
int px_config_is_trusted(const struct px_config *cfg, const struct sockaddr *client)
{
	return px_cidr_match_any(cfg->trusted_networks, cfg->ntrusted_networks, client);
}
