/*
 * NAME
 *	config - postern.conf + conf.d, read with libconfuse into one generation
 * SUMMARY
 *	build a generation; hold, release and query it
 * SYNOPSIS
 *	#include "policy/config.h"
 * DESCRIPTION
 *	px_config_load reads the files (config_engine.c, with the schema of
 *	config_schema.c) into one merged cfg_t under config_lock, builds
 *	struct px_config from it (here), then the plugin chain after the
 *	lock is released. Each load is a new generation, numbered.
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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <confuse.h>

#include "config_int.h"
#include "config_plugins.h"
#include "config_policy.h"
#include "filters/chain.h"
#include "filters/store.h"
#include "policy.h"

#include "common/log.h"
#include "common/netaddr.h"
#include "common/units.h"
#include "policy/config.h"

static unsigned long config_generation;

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
	t->dns = (unsigned)cfg_getint(sec, "dns");
	t->store = (unsigned)cfg_getint(sec, "store");
	t->milter = (unsigned)cfg_getint(sec, "milter");
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
	conf->milter_socket = strdup(cfg_getstr(cfg, "milter_socket"));
	if (conf->spool_dir != NULL) {
		char dflt[4200];
		const char *st = cfg_getstr(cfg, "store");

		conf->store = strdup(st && *st ? st : px_store_default_spec(conf->spool_dir, dflt,
									     sizeof(dflt)));
	}
	return conf->hostname && conf->spool_dir && conf->greeting && conf->store &&
	       conf->milter_socket ? 0 : -1;
}

/* config_fill - every struct field from the merged, normalized cfg */
static int config_fill(struct px_config *conf, cfg_t *cfg, char *err, size_t errlen)
{
	size_t n;

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
	conf->dns.timeout_ms = conf->timeouts.dns;
	if (dup_list(cfg, "dns_forward", &conf->dns.forward, &n) < 0)
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
	free_list(conf->dns.forward);
	free(conf->trusted_networks);
	free(conf->spool_dir);
	free(conf->store);
	free(conf->greeting);
	free(conf->milter_socket);
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

	px_chain_set_config_facts(conf->hostname, conf->limits.message_size_max);
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
	char why[256];

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
	px_resolver_defaults(&conf->dns);   /* a resolver started on first use (postern test) */
	if (px_store_use(conf->store, conf->timeouts.store, why, sizeof(why)) < 0)   /* lazy */
		px_log(PX_LOG_ERR, NULL, "store spec=%s error=\"%s\"", conf->store, why);
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
