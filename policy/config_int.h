/*
 * NAME
 *	config_int - what the files of the configuration share (private)
 * SYNOPSIS
 *	#include "config_int.h"
 * DESCRIPTION
 *	Shared by config.c (the build of a generation), config_engine.c
 *	(libconfuse: errors, merge, files, -o, dump), config_schema.c (the
 *	option tables and their value checks) and config_transport.c (the
 *	transport's option tables). Not for use outside policy/config*.c.
 *
 *	Global state, and why: libconfuse's lexer is one global (flex, not
 *	reentrant), and its error callback takes no user pointer. So every
 *	libconfuse call (init, parse, reading the tree, free) runs under
 *	config_lock, and the error collector of the load in progress sits in
 *	config_errors under the same lock. config_lock covers libconfuse and
 *	nothing else: the plugin chain (dlopen, each plugin's configure(),
 *	which may block) is built after it is released, from the plugin
 *	sections copied out of the tree. The generation counter is atomic.
 */
#ifndef PX_POLICY_CONFIG_INT_H
#define PX_POLICY_CONFIG_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>

#include <confuse.h>

#include "config_plugins.h"
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

/* defined in config_engine.c; see DESCRIPTION */
extern pthread_mutex_t config_lock;
extern struct config_errors *config_errors;
extern struct px_plugin_sections *config_plugins;   /* of the load in progress */

/* ----------------------------------------- errors (config_engine.c) */

/* errors_add - append one line to the collector */
void errors_add(struct config_errors *errs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* opt_error_msg - report "name: msg" through libconfuse (it adds file:line) */
int opt_error_msg(cfg_t *cfg, cfg_opt_t *opt, const char *msg);
/* opt_error - report a bad value of opt through libconfuse (it adds file:line) */
int opt_error(cfg_t *cfg, cfg_opt_t *opt, const char *value, const char *why);
/* config_set_errfunc - route errors of cfg and its sections to config_errfunc */
void config_set_errfunc(cfg_t *cfg);

/* ---------------------------- files and overrides (config_engine.c) */

/* load_file - parse one file and merge it onto merged */
void load_file(cfg_t *merged, const char *file, struct config_errors *errs);
/* load_confd - every conf.d/ *.conf beside path, in strcmp order */
void load_confd(cfg_t *merged, const char *path, struct config_errors *errs);
/* load_overrides - the -o layer, merged last */
void load_overrides(cfg_t *merged, const char *const *ov, size_t n,
		    struct config_errors *errs);

/* ---------------------------------------- schema (config_schema.c) */

enum num_kind { NUM_COUNT, NUM_SIZE, NUM_DURATION };

/* Bounds and units of every int option, by section and name. */
struct num_rule {
	const char *section;    /* "root" for the top level */
	const char *name;
	enum num_kind kind;
	long long min, max;
};

/* num_rule_find - the rule of an int option; NULL for a plain int */
const struct num_rule *num_rule_find(const char *section, const char *name);
/* num_format - a value of kind as it would be written in the file */
char *num_format(enum num_kind kind, long long v, char *buf, size_t len);
/* cb_number - parse callback of every int option: units and bounds */
int cb_number(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
/* str_check - finish a string callback: pass value through or report why */
int str_check(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result,
	      const char *why);
/* text_clean - whether s holds no control bytes (may hold spaces) */
int text_clean(const char *s);
/* backend_free - release what backend_parse filled in */
void backend_free(struct px_backend_spec *b);
/* backend_parse - fill b from "smtp:HOST:PORT" and the other forms */
int backend_parse(const char *text, struct px_backend_spec *b, char *err, size_t errlen);
/* cb_backend - check the backend form */
int cb_backend(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
/* cb_listen - one "ADDR:PORT" */
int cb_listen(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
/* cb_network - one CIDR network */
int cb_network(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
/* cb_path - an absolute path */
int cb_path(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
/* cb_text - free text for a reply line: no control bytes */
int cb_text(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);
/* config_cfg_new - an empty cfg_t with the whole schema and its defaults
 * (config_lock held) */
cfg_t *config_cfg_new(void);

/* ------------------ the transport's option tables (config_transport.c) */

/* cb_choice - one word from a fixed set (also top-level backend_forward) */
int cb_choice(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result);

extern cfg_opt_t listener_opts[];
extern cfg_opt_t tls_opts[];
extern cfg_opt_t backend_tls_opts[];
extern cfg_opt_t auth_opts[];
extern cfg_opt_t pregreet_opts[];

#endif
