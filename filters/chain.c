/*
 * NAME
 *	chain - the plugins of one configuration generation
 * DESCRIPTION
 *	Building the chain: load each plugin, apply its option defaults and
 *	the section's values to a fresh conf struct (checking names, types and
 *	ranges), and call configure(). Errors name the file and line of the
 *	offending option, or of the section.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chain.h"
#include "loader.h"
#include "common/units.h"

/* px_chain_new - an empty chain */
struct px_chain *px_chain_new(void)
{
	struct px_chain *c = calloc(1, sizeof(*c));

	if (c != NULL)
		c->refs = 1;
	return c;
}

struct px_chain *px_chain_ref(struct px_chain *c)
{
	__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

/* entry_free - unconfigure and release one entry */
static void entry_free(struct px_chain_entry *e)
{
	size_t i;

	if (e->configured && e->plugin->unconfigure != NULL)
		e->plugin->unconfigure(e->conf);
	for (i = 0; i < e->nstrings; i++)
		free(e->strings[i]);
	free(e->strings);
	free(e->conf);
	free(e->name);
	free(e->path);
}

static pthread_mutex_t releaser_lock = PTHREAD_MUTEX_INITIALIZER;
static void (*releaser)(struct px_chain *c, void *arg);
static void *releaser_arg;

/* px_chain_set_releaser - see chain.h */
void px_chain_set_releaser(void (*fn)(struct px_chain *c, void *arg), void *arg)
{
	pthread_mutex_lock(&releaser_lock);
	releaser = fn;
	releaser_arg = arg;
	pthread_mutex_unlock(&releaser_lock);
}

/* px_chain_unref - the generation and every txn on it are gone */
void px_chain_unref(struct px_chain *c)
{
	void (*fn)(struct px_chain *, void *);
	void *arg;

	if (c == NULL || __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	pthread_mutex_lock(&releaser_lock);
	fn = releaser;
	arg = releaser_arg;
	pthread_mutex_unlock(&releaser_lock);
	if (fn != NULL)
		fn(c, arg);
	else
		px_chain_free(c);
}

/* px_chain_free - unconfigure every entry, free */
void px_chain_free(struct px_chain *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		entry_free(&c->v[i]);
	free(c->v);
	free(c);
}

/* px_chain_find - entry index by name */
int px_chain_find(const struct px_chain *c, const char *name)
{
	size_t i;

	for (i = 0; c != NULL && i < c->n; i++)
		if (strcmp(c->v[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* keep - remember an allocation the conf points into */
static void *keep(struct px_chain_entry *e, void *p)
{
	void **v;

	if (p == NULL || (v = realloc(e->strings, (e->nstrings + 1) * sizeof(*v))) == NULL) {
		free(p);
		return NULL;
	}
	e->strings = (char **)v;
	e->strings[e->nstrings++] = p;
	return p;
}

/* parse_bool - yes/no and friends */
static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };
	size_t i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return (*out = 1), 0;
		if (strcasecmp(s, no[i]) == 0)
			return (*out = 0), 0;
	}
	return -1;
}

/* parse_list - "a, b, c" into a NULL-terminated array kept by e */
static const char *const *parse_list(struct px_chain_entry *e, const char *s)
{
	size_t n = 1, i = 0, len;
	const char *p;
	char **v;

	for (p = s; *p; p++)
		n += *p == ',';
	if ((v = keep(e, calloc(n + 1, sizeof(char *)))) == NULL)
		return NULL;
	for (p = s; *p; p += *p == ',') {
		p += strspn(p, " \t");
		len = strcspn(p, ",");
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len > 0 && (v[i] = keep(e, strndup(p, len))) != NULL)
			i++;
		p += strcspn(p, ",");
	}
	return (const char *const *)v;
}

/* parse_number - INT, DURATION (ms) or SIZE; 0 or -1 with why */
static int parse_number(const struct px_option *o, const char *s, long long *out, const char **why)
{
	unsigned long long u;
	char *end;

	errno = 0;
	if (o->type == PX_OPT_INT) {
		*out = strtoll(s, &end, 10);
		if (errno || end == s || *end) {
			*why = "not a whole number";
			return -1;
		}
	} else if ((o->type == PX_OPT_DURATION ? px_parse_duration_ms(s, &u) : px_parse_size(s, &u))
		   != 0 || u > LLONG_MAX) {
		*why = o->type == PX_OPT_DURATION ? "not a duration (300s, 5m, 2h, 1d)" :
			"not a size (10k, 5M, 1G)";
		return -1;
	} else {
		*out = (long long)u;
	}
	if ((o->min || o->max) && (*out < o->min || *out > o->max)) {
		*why = "out of range";
		return -1;
	}
	return 0;
}

/* set_option - one value into the conf struct */
static int set_option(struct px_chain_entry *e, const struct px_option *o, const char *s,
		      const char **why)
{
	char *field = (char *)e->conf + o->offset;
	long long n;
	int b;

	switch (o->type) {
	case PX_OPT_STRING:
		*(const char **)field = keep(e, strdup(s));
		return 0;
	case PX_OPT_BOOL:
		if (parse_bool(s, &b) < 0)
			return (*why = "not yes or no"), -1;
		*(int *)field = b;
		return 0;
	case PX_OPT_LIST:
		*(const char *const **)field = parse_list(e, s);
		return 0;
	case PX_OPT_INT:
	case PX_OPT_DURATION:
	case PX_OPT_SIZE:
		if (parse_number(o, s, &n, why) < 0)
			return -1;
		*(long long *)field = n;
		return 0;
	default:
		return (*why = "the plugin's option table is broken"), -1;
	}
}

/* option_find - a plugin's option by name */
static const struct px_option *option_find(const struct px_plugin *p, const char *name)
{
	const struct px_option *o;

	for (o = p->options; o != NULL && o->name != NULL; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

/* apply_options - defaults, then the section's values */
static int apply_options(struct px_chain_entry *e, const struct px_plugin_spec *s, char *err,
			 size_t errlen)
{
	const struct px_option *o;
	const char *why = "";
	size_t i;

	for (o = e->plugin->options; o != NULL && o->name != NULL; o++)
		if (o->dflt != NULL && set_option(e, o, o->dflt, &why) < 0) {
			snprintf(err, errlen, "%s:%d: plugin '%s': default of option '%s': %s",
				 s->file, s->line, s->name, o->name, why);
			return -1;
		}
	for (i = 0; i < s->nkv; i++) {
		if ((o = option_find(e->plugin, s->kv[i].key)) == NULL) {
			snprintf(err, errlen, "%s:%d: plugin '%s': unknown option '%s'", s->kv[i].file,
				 s->kv[i].line, s->name, s->kv[i].key);
			return -1;
		}
		if (set_option(e, o, s->kv[i].value, &why) < 0) {
			snprintf(err, errlen, "%s:%d: plugin '%s': option '%s' = '%s': %s",
				 s->kv[i].file, s->kv[i].line, s->name, o->name, s->kv[i].value, why);
			return -1;
		}
	}
	return 0;
}

/* stage_hooks - the stage mask of a plugin */
static unsigned stage_hooks(const struct px_plugin *p)
{
	return (p->on_connect ? 1u << PX_STAGE_CONNECT : 0) | (p->on_helo ? 1u << PX_STAGE_HELO : 0) |
	       (p->on_mail ? 1u << PX_STAGE_MAIL : 0) | (p->on_rcpt ? 1u << PX_STAGE_RCPT : 0) |
	       (p->on_data_end ? 1u << PX_STAGE_DATA_END : 0);
}

static _Thread_local char fact_hostname[256];
static _Thread_local char fact_size[32];

/* px_chain_set_config_facts - see chain.h */
void px_chain_set_config_facts(const char *hostname, size_t message_size_max)
{
	snprintf(fact_hostname, sizeof(fact_hostname), "%s", hostname ? hostname : "");
	snprintf(fact_size, sizeof(fact_size), "%zu", message_size_max);
}

/* px_chain_config_fact - see chain.h */
const char *px_chain_config_fact(const char *key)
{
	if (key != NULL && strcmp(key, "hostname") == 0 && fact_hostname[0])
		return fact_hostname;
	if (key != NULL && strcmp(key, "limits.message_size_max") == 0 && fact_size[0])
		return fact_size;
	return NULL;
}

/* entry_build - everything but the append; p when already loaded */
static int entry_build(struct px_chain_entry *e, const struct px_plugin *p,
		       const struct px_plugin_spec *s, char *err, size_t errlen)
{
	char lerr[1024], cerr[512] = "";

	if ((e->plugin = p ? p : px_plugin_load(s->path, lerr, sizeof(lerr))) == NULL) {
		snprintf(err, errlen, "%s:%d: plugin '%s': %s", s->file, s->line, s->name, lerr);
		return -1;
	}
	e->name = strdup(s->name);
	e->path = strdup(s->path);
	e->conf = calloc(1, e->plugin->conf_size ? e->plugin->conf_size : 1);
	e->timeout_ms = s->timeout_ms;
	e->on_error_accept = s->on_error_accept;
	e->monitor = s->monitor;
	if (!e->name || !e->path || !e->conf) {
		snprintf(err, errlen, "%s:%d: plugin '%s': out of memory", s->file, s->line, s->name);
		return -1;
	}
	if (apply_options(e, s, err, errlen) < 0)
		return -1;
	if (e->plugin->configure != NULL && e->plugin->configure(e->conf, cerr, sizeof(cerr)) != 0) {
		snprintf(err, errlen, "%s:%d: plugin '%s': configure failed: %s", s->file, s->line,
			 s->name, cerr[0] ? cerr : "(no reason given)");
		return -1;
	}
	e->configured = 1;
	return 0;
}

/* chain_append - one plugin at the end */
static int chain_append(struct px_chain *c, const struct px_plugin *p,
			const struct px_plugin_spec *spec, char *err, size_t errlen)
{
	struct px_chain_entry *v = realloc(c->v, (c->n + 1) * sizeof(*v)), *e;
	int rc;

	if (v == NULL) {
		snprintf(err, errlen, "%s:%d: out of memory", spec->file, spec->line);
		return -1;
	}
	c->v = v;
	e = memset(&c->v[c->n], 0, sizeof(*e));
	px_current_plugin_name = spec->name;       /* names the plugin's own log lines */
	rc = entry_build(e, p, spec, err, errlen);
	px_current_plugin_name = NULL;
	if (rc < 0) {
		entry_free(e);
		return -1;
	}
	c->stage_mask |= stage_hooks(e->plugin);
	c->n++;
	return 0;
}

/* px_chain_add - load and append one plugin */
int px_chain_add(struct px_chain *c, const struct px_plugin_spec *spec, char *err, size_t errlen)
{
	return chain_append(c, NULL, spec, err, errlen);
}

int px_chain_add_loaded(struct px_chain *c, const struct px_plugin *p,
			const struct px_plugin_spec *spec, char *err, size_t errlen)
{
	return chain_append(c, p, spec, err, errlen);
}

/* px_chain_notify - on_reset / on_close for each plugin, in chain order */
void px_chain_notify(struct px_chain *c, struct px_txn *t, int closing)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		px_txn_notify(t, (unsigned)i, closing);
}
