/*
 * NAME
 *	config_plugins - the `plugin "NAME" { }` sections of the configuration
 * DESCRIPTION
 *	A plugin section holds the host's settings for the plugin (path,
 *	timeout, on_error, monitor) and the plugin's own options, which the
 *	host only learns when the plugin is loaded. libconfuse reads the own
 *	options as free-form strings (CFGF_KEYSTRVAL); this module collects
 *	them file by file, in order of first appearance (the chain order), a
 *	later file overriding single keys, and remembers the file and line of
 *	each value so that errors can point at it. -o NAME.OPTION=value is
 *	the last layer. Building the chain loads each plugin and checks every
 *	option against the plugin's own table.
 */
#ifndef PX_POLICY_CONFIG_PLUGINS_H
#define PX_POLICY_CONFIG_PLUGINS_H

#include <stddef.h>
#include <stdio.h>

struct px_chain;
struct px_plugin_sections;

struct px_plugin_sections *px_plugin_sections_new(void);
void px_plugin_sections_free(struct px_plugin_sections *ps);

/* px_plugin_sections_take - the plugin sections of one parsed file (a cfg_t
 * layer); text is the file's text for finding lines. 0, or -1 with err */
int px_plugin_sections_take(struct px_plugin_sections *ps, void *layer, const char *file,
			    const char *text, char *err, size_t errlen);
/* px_plugin_sections_override - "NAME.KEY" = value: 1 applied, 0 no such plugin,
 * -1 bad value (err) */
int px_plugin_sections_override(struct px_plugin_sections *ps, const char *key,
				const char *value, char *err, size_t errlen);
/* px_plugin_sections_chain - load, check and configure, in order. 0 or -1 with err */
int px_plugin_sections_chain(const struct px_plugin_sections *ps, const char *plugin_dir,
			     struct px_chain **out, char *err, size_t errlen);
/* px_plugin_sections_dump - "NAME.KEY = value" lines */
void px_plugin_sections_dump(const struct px_plugin_sections *ps, FILE *fp);

#endif
