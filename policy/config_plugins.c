/*
 * NAME
 *	config_plugins - the `plugin "NAME" { }` sections of the configuration
 * DESCRIPTION
 *	See config_plugins.h. The host's own keys in a section are path,
 *	timeout (default 10s), on_error (tempfail | accept) and monitor.
 */
#include "autoconfig.h"

#include <confuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_plugins.h"
#include "filters/chain.h"
#include "filters/loader.h"
#include "policy/config.h"

#define HOST_KEYS 4          /* path, timeout, on_error, monitor: the first opts */
#define DEFAULT_TIMEOUT_MS 10000

struct kv {
	char *key, *value, *file;
	int line;
};

struct section {
	char *title, *file;
	int line;
	struct kv host[HOST_KEYS];   /* indexed like the host keys */
	struct kv *kv;
	size_t nkv;
};

struct px_plugin_sections {
	struct section *v;
	size_t n;
};

static const char *const host_keys[HOST_KEYS] = { "path", "timeout", "on_error", "monitor" };

struct px_plugin_sections *px_plugin_sections_new(void)
{
	return calloc(1, sizeof(struct px_plugin_sections));
}

/* kv_clear - one value */
static void kv_clear(struct kv *kv)
{
	free(kv->key);
	free(kv->value);
	free(kv->file);
	memset(kv, 0, sizeof(*kv));
}

/* px_plugin_sections_free - everything */
void px_plugin_sections_free(struct px_plugin_sections *ps)
{
	size_t i, j;

	if (ps == NULL)
		return;
	for (i = 0; i < ps->n; i++) {
		for (j = 0; j < HOST_KEYS; j++)
			kv_clear(&ps->v[i].host[j]);
		for (j = 0; j < ps->v[i].nkv; j++)
			kv_clear(&ps->v[i].kv[j]);
		free(ps->v[i].kv);
		free(ps->v[i].title);
		free(ps->v[i].file);
	}
	free(ps->v);
	free(ps);
}

/* section_get - the section called title, appended when new */
static struct section *section_get(struct px_plugin_sections *ps, const char *title,
				   const char *file, int line)
{
	struct section *v;
	size_t i;

	for (i = 0; i < ps->n; i++)
		if (strcmp(ps->v[i].title, title) == 0)
			return &ps->v[i];
	if ((v = realloc(ps->v, (ps->n + 1) * sizeof(*v))) == NULL)
		return NULL;
	ps->v = v;
	v = memset(&ps->v[ps->n], 0, sizeof(*v));
	v->title = strdup(title);
	v->file = strdup(file);
	v->line = line;
	if (v->title == NULL || v->file == NULL)
		return NULL;
	ps->n++;
	return v;
}

/* kv_set - replace *kv with key = value from file:line */
static int kv_set(struct kv *kv, const char *key, const char *value, const char *file, int line)
{
	kv_clear(kv);
	kv->key = strdup(key);
	kv->value = strdup(value);
	kv->file = strdup(file);
	kv->line = line;
	return kv->key && kv->value && kv->file ? 0 : -1;
}

/* option_set - a plugin option: replace the same key, or append */
static int option_set(struct section *s, const char *key, const char *value, const char *file,
		      int line)
{
	struct kv *v;
	size_t i;

	for (i = 0; i < s->nkv; i++)
		if (strcmp(s->kv[i].key, key) == 0)
			return kv_set(&s->kv[i], key, value, file, line);
	if ((v = realloc(s->kv, (s->nkv + 1) * sizeof(*v))) == NULL)
		return -1;
	s->kv = v;
	memset(&s->kv[s->nkv], 0, sizeof(*v));
	return kv_set(&s->kv[s->nkv++], key, value, file, line);
}

/* next_line - the line after p, or NULL */
static const char *next_line(const char *p)
{
	const char *nl = strchr(p, '\n');

	return nl ? nl + 1 : NULL;
}

/* opens_section - the line at p starts `plugin "TITLE"` (needle: "\"TITLE\"") */
static int opens_section(const char *p, const char *needle)
{
	const char *hit = strstr(p, needle);

	return strncmp(p, "plugin", 6) == 0 && hit != NULL && hit < p + strcspn(p, "\n");
}

/* sets_key - the line at p starts "KEY =" */
static int sets_key(const char *p, const char *key)
{
	size_t k = strlen(key);

	return strncmp(p, key, k) == 0 && (p[k] == ' ' || p[k] == '\t' || p[k] == '=');
}

/* line_of - the line of the section titled title in text, or (key given) of
 * "key =" inside it; dflt when not found. libconfuse keeps no line per key. */
static int line_of(const char *text, const char *title, const char *key, int dflt)
{
	char needle[300];
	const char *line, *p;
	int n, in = 0;

	snprintf(needle, sizeof(needle), "\"%s\"", title);
	for (line = text, n = 1; line != NULL && *line; line = next_line(line), n++) {
		p = line + strspn(line, " \t");
		if (!in) {
			in = opens_section(p, needle);
			if (in && key == NULL)
				return n;
		} else if (key != NULL && sets_key(p, key)) {
			return n;
		}
	}
	return dflt;
}

/* take_section - one parsed plugin section of a file */
static int take_section(struct px_plugin_sections *ps, cfg_t *sec, const char *file,
			const char *text)
{
	const char *title = cfg_title(sec);
	struct section *s = section_get(ps, title, file, line_of(text, title, NULL, sec->line));
	cfg_opt_t *o;
	unsigned i;
	int line;

	if (s == NULL)
		return -1;
	for (i = 0; (o = &sec->opts[i])->name != NULL; i++) {
		if (o->nvalues == 0 || (i < HOST_KEYS && !(o->flags & CFGF_MODIFIED)))
			continue;
		line = line_of(text, title, o->name, sec->line);
		if (i < HOST_KEYS ? kv_set(&s->host[i], o->name, cfg_opt_getnstr(o, 0), file, line)
				  : option_set(s, o->name, cfg_opt_getnstr(o, 0), file, line))
			return -1;
	}
	return 0;
}

/* px_plugin_sections_take - every plugin section of a layer */
int px_plugin_sections_take(struct px_plugin_sections *ps, void *layer, const char *file,
			    const char *text, char *err, size_t errlen)
{
	cfg_t *cfg = layer;
	unsigned i, n = cfg_size(cfg, "plugin");

	for (i = 0; i < n; i++)
		if (take_section(ps, cfg_getnsec(cfg, "plugin", i), file, text) < 0) {
			snprintf(err, errlen, "%s: out of memory", file);
			return -1;
		}
	return 0;
}

/* px_plugin_sections_override - -o NAME.KEY=value */
int px_plugin_sections_override(struct px_plugin_sections *ps, const char *key,
				const char *value, char *err, size_t errlen)
{
	const char *dot = strchr(key, '.');
	size_t i, j;

	for (i = 0; dot != NULL && i < ps->n; i++) {
		if (strlen(ps->v[i].title) != (size_t)(dot - key) ||
		    strncmp(ps->v[i].title, key, (size_t)(dot - key)) != 0)
			continue;
		for (j = 0; j < HOST_KEYS; j++)
			if (strcmp(dot + 1, host_keys[j]) == 0)
				return kv_set(&ps->v[i].host[j], dot + 1, value, "-o", 0) ? -1 : 1;
		if (option_set(&ps->v[i], dot + 1, value, "-o", 0) < 0) {
			snprintf(err, errlen, "-o: out of memory");
			return -1;
		}
		return 1;
	}
	return 0;
}

/* host_settings - timeout, on_error, monitor of a section into spec */
static int host_settings(const struct section *s, struct px_plugin_spec *spec, char *err,
			 size_t errlen)
{
	const struct kv *t = &s->host[1], *e = &s->host[2], *m = &s->host[3];
	unsigned long long ms = DEFAULT_TIMEOUT_MS;

	if (t->value && (px_parse_duration_ms(t->value, &ms) != 0 || ms == 0 || ms > 3600000)) {
		snprintf(err, errlen, "%s:%d: plugin '%s': timeout '%s': not a duration from 1ms to 1h",
			 t->file, t->line, s->title, t->value);
		return -1;
	}
	spec->timeout_ms = (unsigned)ms;
	if (e->value && strcasecmp(e->value, "accept") && strcasecmp(e->value, "tempfail")) {
		snprintf(err, errlen, "%s:%d: plugin '%s': on_error '%s': expected tempfail or accept",
			 e->file, e->line, s->title, e->value);
		return -1;
	}
	spec->on_error_accept = e->value && strcasecmp(e->value, "accept") == 0;
	spec->monitor = m->value && (!strcasecmp(m->value, "yes") || !strcasecmp(m->value, "true") ||
				     !strcasecmp(m->value, "on") || !strcmp(m->value, "1"));
	return 0;
}

/* section_chain - one section into the chain */
static int section_chain(const struct section *s, const char *plugin_dir, struct px_chain *c,
			 char *err, size_t errlen)
{
	struct px_plugin_spec spec = { 0 };
	struct px_plugin_kv *kv = calloc(s->nkv + 1, sizeof(*kv));
	char path[4096];
	size_t i;
	int rc;

	if (kv == NULL)
		return -1;
	for (i = 0; i < s->nkv; i++)
		kv[i] = (struct px_plugin_kv){ s->kv[i].key, s->kv[i].value, s->kv[i].file,
					       s->kv[i].line };
	px_plugin_path(plugin_dir, s->host[0].value ? s->host[0].value : s->title, path,
		       sizeof(path));
	spec.name = s->title;
	spec.path = path;
	spec.kv = kv;
	spec.nkv = s->nkv;
	spec.file = s->file;
	spec.line = s->line;
	rc = host_settings(s, &spec, err, errlen) < 0 ? -1 : px_chain_add(c, &spec, err, errlen);
	free(kv);
	return rc;
}

/* px_plugin_sections_chain - the chain of this generation */
int px_plugin_sections_chain(const struct px_plugin_sections *ps, const char *plugin_dir,
			     struct px_chain **out, char *err, size_t errlen)
{
	struct px_chain *c = px_chain_new();
	size_t i;

	*out = NULL;
	if (c == NULL)
		return -1;
	for (i = 0; i < ps->n; i++)
		if (section_chain(&ps->v[i], plugin_dir, c, err, errlen) < 0) {
			px_chain_unref(c);
			return -1;
		}
	*out = c;
	return 0;
}

/* px_plugin_sections_dump - effective plugin settings */
void px_plugin_sections_dump(const struct px_plugin_sections *ps, FILE *fp)
{
	size_t i, j;

	for (i = 0; ps != NULL && i < ps->n; i++) {
		for (j = 0; j < HOST_KEYS; j++)
			if (ps->v[i].host[j].value)
				fprintf(fp, "plugin.%s.%s = %s\n", ps->v[i].title, host_keys[j],
					ps->v[i].host[j].value);
		for (j = 0; j < ps->v[i].nkv; j++)
			fprintf(fp, "plugin.%s.%s = %s\n", ps->v[i].title, ps->v[i].kv[j].key,
				ps->v[i].kv[j].value);
	}
}
