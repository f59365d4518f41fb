/*
 * NAME
 *	loader - find, check and load a plugin shared object
 * DESCRIPTION
 *	See loader.h. Loaded plugins are kept in a process-wide list keyed by
 *	device and inode, so the same file named two ways loads once.
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "loader.h"
#include "postern/plugin.h"
#include "txn.h"

struct loaded {
	struct loaded *next;
	dev_t dev;
	ino_t ino;
	const struct px_plugin *plugin;
};

static pthread_mutex_t loader_lock = PTHREAD_MUTEX_INITIALIZER;
static struct loaded *loaded_list;

/* px_plugin_path - resolve a bare name in the plugin directory */
void px_plugin_path(const char *dir, const char *name, char *out, size_t outlen)
{
	if (strchr(name, '/') != NULL)
		snprintf(out, outlen, "%s", name);
	else
		snprintf(out, outlen, "%s/%s.so", dir, name);
}

/* file_check - a regular file nobody else may write */
static int file_check(const char *path, struct stat *st, char *err, size_t errlen)
{
	if (stat(path, st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return -1;
	}
	if (st->st_mode & S_IWOTH) {
		snprintf(err, errlen, "%s: refused: the file is writable by others (mode %03o)",
			 path, (unsigned)(st->st_mode & 0777));
		return -1;
	}
	return 0;
}

/* abi_check - major equal, minor not newer */
static int abi_check(const char *path, const struct px_plugin *p, char *err, size_t errlen)
{
	if (p->abi_major == PX_ABI_MAJOR && p->abi_minor <= PX_ABI_MINOR)
		return 0;
	snprintf(err, errlen, "%s: refused: plugin ABI %u.%u is not compatible with this host's "
		 "ABI %u.%u (major must be equal, minor not newer)", path, p->abi_major,
		 p->abi_minor, PX_ABI_MAJOR, PX_ABI_MINOR);
	return -1;
}

/* open_plugin - dlopen, dlsym, ABI check, load() */
static const struct px_plugin *open_plugin(const char *path, char *err, size_t errlen)
{
	const struct px_plugin *p;
	char lerr[512] = "";
	void *h;

	if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		snprintf(err, errlen, "%s: cannot load: %s", path, dlerror());
		return NULL;
	}
	if ((p = dlsym(h, PX_PLUGIN_SYMBOL)) == NULL) {
		snprintf(err, errlen, "%s: refused: it does not export %s", path, PX_PLUGIN_SYMBOL);
	} else if (abi_check(path, p, err, errlen) == 0) {
		if (p->name == NULL || p->name[0] == '\0')
			snprintf(err, errlen, "%s: refused: the plugin has no name", path);
		else if (p->load != NULL && p->load(px_host_services(), lerr, sizeof(lerr)) != 0)
			snprintf(err, errlen, "%s: load failed: %s", path, lerr[0] ? lerr : "(no reason)");
		else
			return p;
	}
	dlclose(h);
	return NULL;
}

/* px_plugin_load - once per file per process */
const struct px_plugin *px_plugin_load(const char *path, char *err, size_t errlen)
{
	const struct px_plugin *p = NULL;
	struct loaded *l;
	struct stat st;

	if (file_check(path, &st, err, errlen) < 0)
		return NULL;
	pthread_mutex_lock(&loader_lock);
	for (l = loaded_list; l != NULL; l = l->next)
		if (l->dev == st.st_dev && l->ino == st.st_ino)
			p = l->plugin;
	if (p == NULL && (p = open_plugin(path, err, errlen)) != NULL &&
	    (l = calloc(1, sizeof(*l))) != NULL) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		l->plugin = p;
		l->next = loaded_list;
		loaded_list = l;
		px_log(PX_LOG_INFO, NULL, "plugin load name=%s version=%s abi=%u.%u path=%s", p->name,
		       p->version ? p->version : "?", p->abi_major, p->abi_minor, path);
	}
	pthread_mutex_unlock(&loader_lock);
	return p;
}

/* px_plugins_unload - once, at exit */
void px_plugins_unload(void)
{
	struct loaded *l;

	pthread_mutex_lock(&loader_lock);
	while ((l = loaded_list) != NULL) {
		loaded_list = l->next;
		if (l->plugin->unload != NULL)
			l->plugin->unload();
		free(l);
	}
	pthread_mutex_unlock(&loader_lock);
}
