/*
 * NAME
 *	config_transport - listeners, TLS, PROXY, XCLIENT and AUTH settings
 * SYNOPSIS
 *	#include "policy/config_transport.h"
 *
 *	int px_config_transport_build(struct px_config *conf, void *cfg,
 *		char *err, size_t errlen);
 *	void px_config_transport_free(struct px_config *conf);
 * DESCRIPTION
 *	Builds conf->transport from the merged libconfuse tree (the option
 *	tables of the transport are here; the rest of the schema is in
 *	config_schema.c). Listeners: every `listen` address becomes a plain
 *	listener (tls = auto), then every `listener "NAME" { ... }` section is
 *	added. When no file sets `listen` and at least one listener section
 *	exists, the default `listen` address is not used.
 *
 *	tls = auto means STARTTLS when a certificate is configured, else
 *	none; starttls and implicit need a certificate.
 * DIAGNOSTICS
 *	A setting that is valid alone but not together ("tls = implicit"
 *	without a certificate) fails the load with a message in err.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <confuse.h>

#include "config_int.h"

#include "policy/config.h"

#define TLS1_2 0x0303
#define TLS1_3 0x0304

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
		{ "pregreet", "|auto|yes|no|", "expected auto, yes or no" },
		{ "enable", "|auto|yes|no|", "expected auto, yes or no" },
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
int cb_choice(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
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

cfg_opt_t listener_opts[] = {
	CFG_STR_CB("address", NULL, CFGF_NONE, cb_listen),
	CFG_STR_CB("tls", "auto", CFGF_NONE, cb_choice),
	CFG_BOOL("require_tls", cfg_false, CFGF_NONE),
	CFG_STR_CB("proxy_protocol", "none", CFGF_NONE, cb_choice),
	CFG_STR_LIST_CB("proxy_sources", NULL, CFGF_NONE, cb_network),
	CFG_BOOL("auth", cfg_false, CFGF_NONE),
	/* the pregreet check (proxy/smtp_pregreet.c); unset: pregreet.enable */
	CFG_STR_CB("pregreet", NULL, CFGF_NONE, cb_choice),
	CFG_END()
};

/* the pregreet section: the check's switch for `listen` addresses and
 * listener sections that say nothing, its delay and its memory */
cfg_opt_t pregreet_opts[] = {
	CFG_STR_CB("enable", "auto", CFGF_NONE, cb_choice),
	CFG_INT_CB("delay", 6 * MS_SECOND, CFGF_NONE, cb_number),
	CFG_INT_CB("greet_ttl", MS_DAY, CFGF_NONE, cb_number),
	CFG_INT_CB("fail_ttl", MS_HOUR, CFGF_NONE, cb_number),
	CFG_END()
};

cfg_opt_t tls_opts[] = {
	CFG_STR_LIST_CB("certificate", NULL, CFGF_NONE, cb_path),
	CFG_STR_LIST_CB("key", NULL, CFGF_NONE, cb_path),
	CFG_STR_CB("ciphers", "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS",
		   CFGF_NONE, cb_text),
	CFG_STR_CB("ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"
		   "TLS_AES_128_GCM_SHA256", CFGF_NONE, cb_text),
	CFG_STR_CB("min_version", "TLSv1.2", CFGF_NONE, cb_choice),
	CFG_END()
};

cfg_opt_t backend_tls_opts[] = {
	CFG_STR_CB("mode", "none", CFGF_NONE, cb_choice),
	CFG_BOOL("verify", cfg_false, CFGF_NONE),
	CFG_STR_CB("ca_file", "", CFGF_NONE, cb_path_opt),
	CFG_STR_CB("server_name", "", CFGF_NONE, cb_text),
	CFG_END()
};

cfg_opt_t auth_opts[] = {
	CFG_STR_CB("backend", "", CFGF_NONE, cb_auth_backend),
	CFG_INT_CB("failures_max", 5, CFGF_NONE, cb_number),
	CFG_INT_CB("failure_window", 5 * MS_MINUTE, CFGF_NONE, cb_number),
	CFG_END()
};

/* word_index - position of value in a NULL-terminated word list, 0 if absent */
static int word_index(const char *const *words, const char *value)
{
	int i;

	for (i = 0; words[i] != NULL; i++)
		if (value != NULL && strcmp(words[i], value) == 0)
			return i;
	return 0;
}

/* nets_build - a CIDR list option, parsed */
static int nets_build(cfg_t *cfg, const char *name, struct px_cidr **out, size_t *n)
{
	size_t i, count = cfg_size(cfg, name);
	char err[256];

	*n = 0;
	if ((*out = calloc(count + 1, sizeof(**out))) == NULL)
		return -1;
	for (i = 0; i < count; i++)
		if (px_cidr_parse(cfg_getnstr(cfg, name, (unsigned)i), &(*out)[i], err,
				  sizeof(err)) < 0)
			return -1;
	*n = count;
	return 0;
}

/* list_dup - a string list option as a NULL-terminated array */
static char **list_dup(cfg_t *cfg, const char *name, size_t *n)
{
	size_t i, count = cfg_size(cfg, name);
	char **v = calloc(count + 1, sizeof(*v));

	*n = 0;
	if (v == NULL)
		return NULL;
	for (i = 0; i < count; i++)
		if ((v[i] = strdup(cfg_getnstr(cfg, name, (unsigned)i))) == NULL)
			return v;
	*n = count;
	return v;
}

/* list_free - undo list_dup */
static void list_free(char **v)
{
	size_t i;

	for (i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* listener_tls - the effective TLS mode; -1 when it needs a missing certificate */
static int listener_tls(const char *word, size_t ncerts)
{
	static const char *const words[] = { "auto", "none", "starttls", "implicit", NULL };

	switch (word_index(words, word)) {
	case 1:
		return PX_TLS_NONE;
	case 2:
		return ncerts ? PX_TLS_STARTTLS : -1;
	case 3:
		return ncerts ? PX_TLS_IMPLICIT : -1;
	default:
		return ncerts ? PX_TLS_STARTTLS : PX_TLS_NONE;
	}
}

/* listener_pregreet - whether the pregreet check runs on a listener:
 * yes, no, or auto (NULL: auto), which means on port 25 only */
static int listener_pregreet(const char *word, const char *address)
{
	const char *colon = strrchr(address, ':');

	if (word != NULL && strcmp(word, "yes") == 0)
		return 1;
	if (word != NULL && strcmp(word, "no") == 0)
		return 0;
	return colon != NULL && strcmp(colon + 1, "25") == 0;
}

/* listener_plain - a `listen` address with the defaults */
static int listener_plain(struct px_listener *l, const char *address, size_t ncerts,
			  const char *pregreet)
{
	l->name = strdup(address);
	l->address = strdup(address);
	l->tls = listener_tls("auto", ncerts);
	l->pregreet = listener_pregreet(pregreet, address);
	l->proxy_sources = calloc(1, sizeof(*l->proxy_sources));
	return l->name && l->address && l->proxy_sources ? 0 : -1;
}

/* listener_section - one `listener "NAME" { ... }` */
static int listener_section(struct px_listener *l, cfg_t *sec, size_t ncerts,
			    const char *pregreet, char *err, size_t errlen)
{
	static const char *const proxies[] = { "none", "v1", "v2", "any", NULL };
	const char *addr = cfg_getstr(sec, "address");

	l->name = strdup(cfg_title(sec));
	if (addr == NULL || *addr == 0) {
		snprintf(err, errlen, "listener \"%s\": address is not set", cfg_title(sec));
		return -1;
	}
	l->address = strdup(addr);
	if ((l->tls = listener_tls(cfg_getstr(sec, "tls"), ncerts)) < 0) {
		snprintf(err, errlen, "listener \"%s\": tls = %s needs tls.certificate and tls.key",
			 cfg_title(sec), cfg_getstr(sec, "tls"));
		return -1;
	}
	l->require_tls = cfg_getbool(sec, "require_tls") == cfg_true;
	l->auth = cfg_getbool(sec, "auth") == cfg_true;
	l->pregreet = listener_pregreet(cfg_getstr(sec, "pregreet") ? cfg_getstr(sec, "pregreet")
					: pregreet, addr);
	l->proxy = word_index(proxies, cfg_getstr(sec, "proxy_protocol"));
	if (l->require_tls && l->tls == PX_TLS_NONE) {
		snprintf(err, errlen, "listener \"%s\": require_tls needs TLS", cfg_title(sec));
		return -1;
	}
	if (nets_build(sec, "proxy_sources", &l->proxy_sources, &l->nproxy_sources) < 0 ||
	    !l->name || !l->address) {
		snprintf(err, errlen, "listener \"%s\": out of memory", cfg_title(sec));
		return -1;
	}
	return 0;
}

/* listeners_build - `listen` entries, then listener sections */
static int listeners_build(struct px_transport *t, cfg_t *cfg, char *err, size_t errlen)
{
	size_t nsec = cfg_size(cfg, "listener"), nplain = cfg_size(cfg, "listen"), i;
	cfg_opt_t *listen = cfg_getopt(cfg, "listen");
	const char *pregreet = cfg_getstr(cfg_getsec(cfg, "pregreet"), "enable");

	if (nsec > 0 && !(listen->flags & CFGF_MODIFIED))
		nplain = 0;       /* the default address only when nothing else is said */
	if ((t->listeners = calloc(nplain + nsec + 1, sizeof(*t->listeners))) == NULL)
		return -1;
	for (i = 0; i < nplain; i++, t->nlisteners++)
		if (listener_plain(&t->listeners[i], cfg_getnstr(cfg, "listen", (unsigned)i),
				   t->ntls_certs, pregreet) < 0)
			return -1;
	for (i = 0; i < nsec; i++, t->nlisteners++)
		if (listener_section(&t->listeners[nplain + i], cfg_getnsec(cfg, "listener",
				     (unsigned)i), t->ntls_certs, pregreet, err, errlen) < 0)
			return -1;
	return 0;
}

/* tls_build - the tls section */
static int tls_build(struct px_transport *t, cfg_t *sec, char *err, size_t errlen)
{
	size_t nkeys;

	t->tls_certs = list_dup(sec, "certificate", &t->ntls_certs);
	t->tls_keys = list_dup(sec, "key", &nkeys);
	t->tls_ciphers = strdup(cfg_getstr(sec, "ciphers"));
	t->tls_ciphersuites = strdup(cfg_getstr(sec, "ciphersuites"));
	t->tls_min_version = strcmp(cfg_getstr(sec, "min_version"), "TLSv1.3") == 0 ? TLS1_3
			     : TLS1_2;
	if (!t->tls_certs || !t->tls_keys || !t->tls_ciphers || !t->tls_ciphersuites)
		return -1;
	if (nkeys != t->ntls_certs) {
		snprintf(err, errlen, "tls: %zu certificate(s) but %zu key(s); give one key per "
			 "certificate, in the same order", t->ntls_certs, nkeys);
		return -1;
	}
	return 0;
}

/* backend_tls_build - the backend_tls section */
static int backend_tls_build(struct px_transport *t, cfg_t *sec)
{
	static const char *const modes[] = { "none", "opportunistic", "required", NULL };

	t->backend_tls = word_index(modes, cfg_getstr(sec, "mode"));
	t->backend_tls_verify = cfg_getbool(sec, "verify") == cfg_true;
	t->backend_tls_ca_file = strdup(cfg_getstr(sec, "ca_file"));
	t->backend_tls_server_name = strdup(cfg_getstr(sec, "server_name"));
	return t->backend_tls_ca_file && t->backend_tls_server_name ? 0 : -1;
}

/* misc_build - forwarding, networks, user, auth, transport timeouts */
static int misc_build(struct px_transport *t, cfg_t *cfg)
{
	static const char *const fwd[] = { "auto", "xclient", "xforward", "none", NULL };
	cfg_t *auth = cfg_getsec(cfg, "auth"), *to = cfg_getsec(cfg, "timeouts");

	t->forward = word_index(fwd, cfg_getstr(cfg, "backend_forward"));
	t->user = strdup(cfg_getstr(cfg, "user"));
	t->group = strdup(cfg_getstr(cfg, "group"));
	t->auth_backend = strdup(cfg_getstr(auth, "backend"));
	t->auth_failures_max = (unsigned)cfg_getint(auth, "failures_max");
	t->auth_failure_window = (unsigned)cfg_getint(auth, "failure_window");
	t->greeting_delay = (unsigned)cfg_getint(to, "greeting_delay");
	t->proxy_timeout = (unsigned)cfg_getint(to, "proxy_header");
	t->pregreet_delay = (unsigned)cfg_getint(cfg_getsec(cfg, "pregreet"), "delay");
	t->greet_ttl = (unsigned long long)cfg_getint(cfg_getsec(cfg, "pregreet"), "greet_ttl");
	t->pregreet_fail_ttl = (unsigned long long)cfg_getint(cfg_getsec(cfg, "pregreet"),
							      "fail_ttl");
	if (!t->user || !t->group || !t->auth_backend)
		return -1;
	if (nets_build(cfg, "xclient_sources", &t->xclient_sources, &t->nxclient_sources) < 0)
		return -1;
	return nets_build(cfg, "normalize_bare_networks", &t->normalize_bare_networks,
			  &t->nnormalize_bare_networks);
}

/* px_config_transport_build - everything above; -1 with err on failure */
int px_config_transport_build(struct px_config *conf, void *arg, char *err, size_t errlen)
{
	cfg_t *cfg = arg;
	struct px_transport *t = &conf->transport;

	snprintf(err, errlen, "out of memory");
	if (tls_build(t, cfg_getsec(cfg, "tls"), err, errlen) < 0)
		return -1;
	if (backend_tls_build(t, cfg_getsec(cfg, "backend_tls")) < 0 || misc_build(t, cfg) < 0)
		return -1;
	if (listeners_build(t, cfg, err, errlen) < 0)
		return -1;
	if (t->nlisteners == 0) {
		snprintf(err, errlen, "no listen address and no listener section");
		return -1;
	}
	err[0] = 0;
	return 0;
}

/* px_config_transport_free - release what build filled in (also half-built) */
void px_config_transport_free(struct px_config *conf)
{
	struct px_transport *t = &conf->transport;
	size_t i;

	for (i = 0; t->listeners != NULL && i < t->nlisteners + 1; i++) {
		free(t->listeners[i].name);
		free(t->listeners[i].address);
		free(t->listeners[i].proxy_sources);
	}
	free(t->listeners);
	list_free(t->tls_certs);
	list_free(t->tls_keys);
	free(t->tls_ciphers);
	free(t->tls_ciphersuites);
	free(t->backend_tls_ca_file);
	free(t->backend_tls_server_name);
	free(t->xclient_sources);
	free(t->normalize_bare_networks);
	free(t->user);
	free(t->group);
	free(t->auth_backend);
	memset(t, 0, sizeof(*t));
}

/* px_config_listener - the listener bound to address, or NULL */
const struct px_listener *px_config_listener(const struct px_config *cfg, const char *address)
{
	size_t i;

	for (i = 0; i < cfg->transport.nlisteners; i++)
		if (strcmp(cfg->transport.listeners[i].address, address) == 0)
			return &cfg->transport.listeners[i];
	return NULL;
}

/* px_config_in_networks - sa lies in one of the n networks */
int px_config_in_networks(const struct px_cidr *nets, size_t n, const struct sockaddr *sa)
{
	return px_cidr_match_any(nets, n, sa);
}
