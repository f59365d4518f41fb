/*
 * NAME
 *	config_engine - libconfuse: errors, files, merge, -o, dump
 * SUMMARY
 *	load, merge per key, override with -o, dump like postconf
 * SYNOPSIS
 *	#include "config_int.h"
 * DESCRIPTION
 *	Every file is parsed on its own into a fresh cfg_t built from the one
 *	schema (config_cfg_new, config_schema.c), then only the options that
 *	file set (CFGF_MODIFIED) are copied onto the merged cfg_t, section by
 *	section; titled sections merge per title. So a conf.d file that says
 *	only "limits { recipients_max = 10 }" leaves every other limit alone.
 *
 *	Before a file is parsed, its lists are preloaded with the merged value
 *	so far (and marked unmodified), so "listen += { ... }" in conf.d
 *	appends to what postern.conf said, while "listen = { ... }" replaces
 *	it. The -o overrides are one more layer, applied last.
 *
 *	Errors of the load in progress are collected in config_errors, under
 *	config_lock (see config_int.h for why that state is global).
 * DIAGNOSTICS
 *	"FILE:LINE: message", "FILE: message" (cannot open), "-o: message".
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <confuse.h>

#include "config_int.h"
#include "config_plugins.h"

#include "policy/config.h"

pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
struct config_errors *config_errors;
struct px_plugin_sections *config_plugins;   /* of the load in progress */

/* ---------------------------------------------------------------- errors */

/* errors_add - append one line to the collector */
void errors_add(struct config_errors *errs, const char *fmt, ...)
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
int opt_error_msg(cfg_t *cfg, cfg_opt_t *opt, const char *msg)
{
	char name[128];

	cfg_error(cfg, "%s: %s", opt_fullname(cfg, opt, name, sizeof(name)), msg);
	return -1;
}

/* opt_error - report a bad value of opt through libconfuse (it adds file:line) */
int opt_error(cfg_t *cfg, cfg_opt_t *opt, const char *value, const char *why)
{
	char name[128];

	cfg_error(cfg, "%s: '%s': %s", opt_fullname(cfg, opt, name, sizeof(name)),
		  value ? value : "", why);
	return -1;
}

/* config_set_errfunc - route errors of cfg and its sections to config_errfunc */
void config_set_errfunc(cfg_t *cfg)
{
	unsigned i, j;

	cfg_set_error_function(cfg, config_errfunc);
	for (i = 0; cfg->opts[i].name; i++)
		for (j = 0; cfg->opts[i].type == CFGT_SEC && j < cfg->opts[i].nvalues; j++)
			config_set_errfunc(cfg->opts[i].values[j]->section);
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
void load_file(cfg_t *merged, const char *file, struct config_errors *errs)
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
void load_confd(cfg_t *merged, const char *path, struct config_errors *errs)
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
void load_overrides(cfg_t *merged, const char *const *ov, size_t n,
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
