/*
 * NAME
 *	loader - find, check and load a plugin shared object
 * DESCRIPTION
 *	px_plugin_load() refuses a file that is not a regular file or is
 *	writable by others, dlopen()s it with RTLD_NOW | RTLD_LOCAL, looks up
 *	the one exported symbol px_plugin, and refuses it unless its ABI major
 *	equals the host's and its minor is not newer (naming both versions).
 *	The plugin's load() runs once per process; a plugin stays loaded for
 *	the life of the process (reloads call configure() again), so a
 *	loaded .so is never dlclose()d under a running hook.
 */
#ifndef PX_FILTERS_LOADER_H
#define PX_FILTERS_LOADER_H

#include <stddef.h>

struct px_plugin;

/* px_plugin_load - the plugin at path (a name is looked up as DIR/NAME.so) */
const struct px_plugin *px_plugin_load(const char *path, char *err, size_t errlen);
/* px_plugins_unload - every loaded plugin's unload(), at a clean exit (after
 * the worker pool has stopped and every generation is gone) */
void px_plugins_unload(void);
/* px_plugin_path - "dir/name.so" unless name already contains a '/' */
void px_plugin_path(const char *dir, const char *name, char *out, size_t outlen);

#endif
