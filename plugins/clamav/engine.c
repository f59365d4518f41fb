/*
 * NAME
 *	engine - libclamav engines, shared by every worker, and their reload
 * DESCRIPTION
 *	A struct clam_db is one database with one set of engine settings
 *	(limits, temp directory). It holds the current engine: loaded and
 *	compiled once, then read-only, and scanned by every worker at the same
 *	time (libclamav allows that on a compiled engine). Each scan holds a
 *	reference to the engine it started with, so a reload can swap in a new
 *	engine while scans go on; the old one is freed when its last scan ends.
 *
 *	The signatures are the process's, not a generation's: a generation
 *	whose settings equal an earlier one's shares its clam_db (a registry
 *	keyed by the settings), so a SIGHUP that changes nothing about the
 *	scanner does not build a second engine, and one that finds the
 *	database changed reloads it for every generation at once. A reload
 *	that changes the settings builds a new clam_db; the old generation
 *	keeps its own until its sessions end.
 *
 *	Reloads come from two places: configure() of a new generation (SIGHUP,
 *	on the main thread), and the watch: a scan (on a worker) that finds
 *	watch_ms gone since the last check compares the database's files
 *	(name, inode, size, mtime) with those of the engine in use, and on a
 *	change starts a loader thread, so no worker waits for the load.
 *	reload = "concurrent" (the default) builds the new engine beside the
 *	old one; "blocking" waits for the scans in flight, frees the old
 *	engine, then loads (scans meanwhile wait, within their time budget),
 *	so that only one engine is ever in memory. A load that fails keeps the
 *	old engine (concurrent) and is logged with libclamav's reason; the same
 *	files are not tried again until they change.
 *
 *	libclamav writes temp files even when it scans from memory (the mail
 *	parser). Each clam_db has a private directory, DIR/postern-clamav.RANDOM
 *	(mode 0700), made by the first scan: scans run after posternd gave up
 *	root, configure() before, so the directory belongs to the user that
 *	scans.
 DIAGNOSTICS
 *	- plugin=clamav engine=loaded database=P signatures=N ms=T reload=M why=start|hup
 *	- plugin=clamav reload status=ok|failed database=P why=hup [error="..."] [keeping=old|none]
 *	- plugin=clamav reload status=unchanged database=P (SIGHUP, same files)
 *	SID plugin=clamav reload status=started database=P why=watch
 *	SID plugin=clamav reload status=ok database=P why=watch engine=loaded ...
 *	SID plugin=clamav reload status=failed database=P why=watch error="..." keeping=old|none
 *	    (the loader thread's outcome, logged by the next scan: the host
 *	    cannot name a line from a thread of ours)
 */
#include "pxclam.h"

#include <clamav.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* One compiled engine; refs: the db's own (while current) + each scan */
struct clam_engine {
	struct cl_engine *cl;
	unsigned refs;
	unsigned sigs;
};

struct clam_db {
	struct clam_db *next;     /* the registry */
	unsigned users;           /* generations (confs) that use it */
	char *key;                /* the settings, as one string */
	struct clam_params p;     /* strings owned: database, tmpdir */
	char tmp[4096];           /* the private temp directory */

	pthread_mutex_t lock;     /* everything below */
	pthread_cond_t cond;      /* blocking reload: scans drain / wait */
	struct clam_engine *cur;  /* NULL only after a failed blocking reload */
	unsigned scans;           /* in flight */
	int paused;               /* a blocking reload is under way */
	int tmp_ready;
	unsigned long long loaded_fp;   /* the files of the engine in use */
	unsigned long long failed_fp;   /* files that failed to load (0: none) */
	long long next_check_ms;        /* the watch's next look */
	int loader;               /* 0 none, 1 running, 2 ended (join it) */
	char report[900];         /* the loader's outcome, for the next scan to log */
	enum px_log_prio report_prio;
	pthread_t loader_thread;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct clam_db *registry;

/* now_ms - CLOCK_MONOTONIC in ms */
static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * What libclamav says while this thread loads a database: its first error
 * (which line of which file) goes into the load's error text. The loader
 * thread logs nothing itself (the host names a line from a thread of ours
 * "plugin=?"); its outcome is logged by the next scan.
 */
static __thread struct {
	int active, quiet;
	char first[300];
} capture;

/* clam_msg - libclamav's messages into our log; context is the txn of
 * the scan (NULL while loading) */
static void clam_msg(enum cl_msg sev, const char *full, const char *msg, void *ctx)
{
	enum px_log_prio prio = sev == CL_MSG_ERROR ? PX_PRIO_WARN :
		sev == CL_MSG_WARN ? PX_PRIO_INFO : PX_PRIO_DEBUG;
	size_t n = strcspn(msg, "\n");

	(void)full;
	if (ctx == NULL && capture.active && sev == CL_MSG_ERROR && capture.first[0] == '\0')
		snprintf(capture.first, sizeof(capture.first), "%.*s", (int)(n > 250 ? 250 : n), msg);
	if (ctx == NULL && capture.quiet)
		return;
	clam_host->log((struct px_txn *)ctx, prio, "libclamav=\"%.*s\"", (int)(n > 400 ? 400 : n),
		       msg);
}

/* clam_engine_init - cl_init once; libclamav's log callback is process-wide
 * and must be set before any thread scans */
int clam_engine_init(char *err, size_t errlen)
{
	cl_error_t rc;

	cl_set_clcb_msg(clam_msg);
	if ((rc = cl_init(CL_INIT_DEFAULT)) != CL_SUCCESS) {
		snprintf(err, errlen, "cl_init: %s", cl_strerror(rc));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------- fingerprint --- */

/* fnv - FNV-1a over n bytes, continuing h */
static unsigned long long fnv(unsigned long long h, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n--)
		h = (h ^ *c++) * 1099511628211ULL;
	return h;
}

/* fp_stat - mix one file's identity into h */
static unsigned long long fp_stat(unsigned long long h, const char *name, const struct stat *st)
{
	long long v[5] = { (long long)st->st_ino, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
			   st->st_mtim.tv_nsec, (long long)st->st_mode };

	h = fnv(h, name, strlen(name) + 1);
	return fnv(h, v, sizeof(v));
}

/* fingerprint - the database's files as one number (names, inodes, sizes,
 * mtimes), so that a replaced, rewritten, added or removed file changes it;
 * 1 when it cannot be read (never 0) */
static unsigned long long fingerprint(const char *path)
{
	unsigned long long h = 1469598103934665603ULL;
	char sub[4096];
	struct dirent *d;
	struct stat st;
	DIR *dir;

	if (stat(path, &st) != 0)
		return 1;
	h = fp_stat(h, path, &st);
	if (!S_ISDIR(st.st_mode) || (dir = opendir(path)) == NULL)
		return h ? h : 1;
	while ((d = readdir(dir)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, d->d_name);
		if (stat(sub, &st) == 0)
			h ^= fp_stat(1469598103934665603ULL, d->d_name, &st);   /* order-free */
	}
	closedir(dir);
	return h ? h : 1;
}

/* ------------------------------------------------------------ engines --- */

/* engine_set - one numeric limit; -1 with err */
static int engine_set(struct cl_engine *e, enum cl_engine_field f, long long v, const char *what,
		      char *err, size_t errlen)
{
	cl_error_t rc = cl_engine_set_num(e, f, v);

	if (rc != CL_SUCCESS)
		snprintf(err, errlen, "setting %s=%lld: %s", what, v, cl_strerror(rc));
	return rc == CL_SUCCESS ? 0 : -1;
}

/* engine_build - a new compiled engine for db's settings, or NULL with err;
 * *fp gets the files' fingerprint taken before the load */
static struct clam_engine *engine_build(struct clam_db *db, unsigned long long *fp, char *err,
					size_t errlen)
{
	const struct clam_params *p = &db->p;
	struct clam_engine *ce = calloc(1, sizeof(*ce));
	struct cl_engine *e = cl_engine_new();
	cl_error_t rc;

	*fp = fingerprint(p->database);
	capture.active = 1;
	capture.first[0] = '\0';
	if (ce == NULL || e == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (engine_set(e, CL_ENGINE_MAX_SCANSIZE, p->max_scansize, "max_scansize", err, errlen) ||
	    engine_set(e, CL_ENGINE_MAX_FILESIZE, p->max_filesize, "max_filesize", err, errlen) ||
	    engine_set(e, CL_ENGINE_MAX_RECURSION, p->max_recursion, "max_recursion", err, errlen) ||
	    engine_set(e, CL_ENGINE_MAX_FILES, p->max_files, "max_files", err, errlen) ||
	    engine_set(e, CL_ENGINE_MAX_SCANTIME, p->max_scantime_ms, "max_scantime", err, errlen))
		goto fail;
	if ((rc = cl_load(p->database, e, &ce->sigs, CL_DB_STDOPT)) != CL_SUCCESS) {
		snprintf(err, errlen, "cannot load %s: %s", p->database, cl_strerror(rc));
		goto fail;
	}
	if (ce->sigs == 0) {      /* an empty engine finds nothing: that is no scanner */
		snprintf(err, errlen, "%s holds no signatures", p->database);
		goto fail;
	}
	if ((rc = cl_engine_compile(e)) != CL_SUCCESS) {
		snprintf(err, errlen, "cannot compile %s: %s", p->database, cl_strerror(rc));
		goto fail;
	}
	/* The load used the system's temp directory; scans use ours (set
	 * before any thread can see this engine) */
	if ((rc = cl_engine_set_str(e, CL_ENGINE_TMPDIR, db->tmp)) != CL_SUCCESS) {
		snprintf(err, errlen, "setting the temp directory: %s", cl_strerror(rc));
		goto fail;
	}
	ce->cl = e;
	ce->refs = 1;
	capture.active = 0;
	return ce;
fail:
	if (capture.first[0] != '\0') {
		size_t l = strlen(err);

		snprintf(err + l, errlen - l, " (%s)", capture.first);
	}
	capture.active = 0;
	if (e != NULL)
		cl_engine_free(e);
	free(ce);
	return NULL;
}

/* engine_unref - one reference less; the last frees the engine (on this
 * thread: a worker after the last scan, or the main thread) */
static void engine_unref(struct clam_engine *ce)
{
	if (ce != NULL && __atomic_sub_fetch(&ce->refs, 1, __ATOMIC_ACQ_REL) == 0) {
		cl_engine_free(ce->cl);
		free(ce);
	}
}

/* db_load - build an engine and put it in; 0, or -1 with err (the engine
 * in use is kept, unless a blocking reload already let it go) */
static int db_load(struct clam_db *db, const char *why, char *err, size_t errlen)
{
	struct clam_engine *ce, *old = NULL;
	unsigned long long fp;
	long long t0 = now_ms();
	int blocking;

	pthread_mutex_lock(&db->lock);
	blocking = db->p.blocking;
	if (blocking && db->cur != NULL) {
		db->paused = 1;                 /* new scans wait */
		while (db->scans > 0)
			pthread_cond_wait(&db->cond, &db->lock);
		old = db->cur;
		db->cur = NULL;
	}
	pthread_mutex_unlock(&db->lock);
	engine_unref(old);                      /* blocking: freed here, no scan holds it */

	ce = engine_build(db, &fp, err, errlen);

	pthread_mutex_lock(&db->lock);
	if (ce != NULL) {
		old = db->cur;
		db->cur = ce;
		db->loaded_fp = fp;
		db->failed_fp = 0;
	} else {
		old = NULL;
		db->failed_fp = fp;
	}
	db->paused = 0;
	pthread_cond_broadcast(&db->cond);
	pthread_mutex_unlock(&db->lock);
	engine_unref(old);                      /* concurrent: when its last scan ends */
	if (ce != NULL)
		snprintf(err, errlen, "engine=loaded database=%s signatures=%u ms=%lld reload=%s "
			 "why=%s", db->p.database, ce->sigs, now_ms() - t0,
			 blocking ? "blocking" : "concurrent", why);
	if (ce != NULL && !capture.quiet)
		clam_host->log(NULL, PX_PRIO_INFO, "%s", err);
	return ce != NULL ? 0 : -1;
}

/* ----------------------------------------------------------- registry --- */

/* params_key - the engine's settings as one string (what makes two dbs the
 * same; reload and watch_interval are not: the newest generation's apply) */
static char *params_key(const struct clam_params *p)
{
	size_t n = strlen(p->database) + strlen(p->tmpdir) + 8 * 24;
	char *k = malloc(n);

	if (k != NULL)
		snprintf(k, n, "%s|%s|%lld|%lld|%lld|%lld|%lld", p->database, p->tmpdir,
			 p->max_scansize, p->max_filesize, p->max_scantime_ms, p->max_recursion,
			 p->max_files);
	return k;
}

/* tmp_name - DIR/postern-clamav.RANDOM: not guessable, so nobody can make
 * it first */
static int tmp_name(struct clam_db *db, char *err, size_t errlen)
{
	unsigned char r[8];
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, r, sizeof(r)) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(r)) {
		snprintf(err, errlen, "cannot read /dev/urandom: %s", strerror(errno));
		return -1;
	}
	snprintf(db->tmp, sizeof(db->tmp), "%s/postern-clamav.%02x%02x%02x%02x%02x%02x%02x%02x",
		 db->p.tmpdir, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
	return 0;
}

/* db_free - the last generation let go: no scan runs any more */
static void db_free(struct clam_db *db)
{
	if (db->loader != 0)
		pthread_join(db->loader_thread, NULL);
	engine_unref(db->cur);
	if (db->tmp_ready && rmdir(db->tmp) != 0 && errno != ENOENT)
		clam_host->log(NULL, PX_PRIO_WARN, "tmpdir=%s remove=failed error=\"%s\"", db->tmp,
			       strerror(errno));
	pthread_cond_destroy(&db->cond);
	pthread_mutex_destroy(&db->lock);
	free((char *)db->p.database);
	free((char *)db->p.tmpdir);
	free(db->key);
	free(db);
}

/* db_new - a database with its first engine, or NULL with err */
static struct clam_db *db_new(const struct clam_params *p, char *key, char *err, size_t errlen)
{
	struct clam_db *db = calloc(1, sizeof(*db));

	if (db == NULL) {
		free(key);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	db->key = key;
	db->p = *p;
	db->p.database = strdup(p->database);
	db->p.tmpdir = strdup(p->tmpdir);
	pthread_mutex_init(&db->lock, NULL);
	pthread_cond_init(&db->cond, NULL);
	db->next_check_ms = now_ms() + p->watch_ms;
	if (db->p.database == NULL || db->p.tmpdir == NULL) {
		snprintf(err, errlen, "out of memory");
		db_free(db);
		return NULL;
	}
	if (tmp_name(db, err, errlen) < 0 || db_load(db, "start", err, errlen) < 0) {
		db_free(db);
		return NULL;
	}
	return db;
}

/* loader_main - the watch's reload, off the workers; the next scan logs
 * how it went */
static void *loader_main(void *arg)
{
	struct clam_db *db = arg;
	char err[512] = "";
	int rc, have;

	capture.quiet = 1;
	rc = db_load(db, "watch", err, sizeof(err));
	pthread_mutex_lock(&db->lock);
	have = db->cur != NULL;
	if (rc < 0) {
		db->report_prio = PX_PRIO_WARN;
		snprintf(db->report, sizeof(db->report), "reload status=failed database=%s "
			 "why=watch error=\"%s\" keeping=%s", db->p.database, err,
			 have ? "old" : "none");
	} else {
		db->report_prio = PX_PRIO_INFO;
		snprintf(db->report, sizeof(db->report), "reload status=ok database=%s why=watch %s",
			 db->p.database, err);
	}
	db->loader = 2;
	pthread_mutex_unlock(&db->lock);
	return NULL;
}

/* reload_on_hup - a new generation with the same settings: reload when the
 * files changed since the engine in use was loaded (or it has none) */
static int reload_on_hup(struct clam_db *db, char *err, size_t errlen)
{
	unsigned long long fp = fingerprint(db->p.database);
	int same;

	pthread_mutex_lock(&db->lock);
	same = db->cur != NULL && fp == db->loaded_fp;
	pthread_mutex_unlock(&db->lock);
	if (same) {
		clam_host->log(NULL, PX_PRIO_INFO, "reload status=unchanged database=%s",
			       db->p.database);
		return 0;
	}
	if (db_load(db, "hup", err, errlen) < 0) {
		pthread_mutex_lock(&db->lock);
		same = db->cur != NULL;
		pthread_mutex_unlock(&db->lock);
		clam_host->log(NULL, PX_PRIO_WARN, "reload status=failed database=%s why=hup "
			       "error=\"%s\" keeping=%s", db->p.database, err, same ? "old" : "none");
		return -1;
	}
	clam_host->log(NULL, PX_PRIO_INFO, "reload status=ok database=%s why=hup", db->p.database);
	return 0;
}

/* clam_db_get - see pxclam.h (configure: the main thread, or postern) */
struct clam_db *clam_db_get(const struct clam_params *p, char *err, size_t errlen)
{
	char *key = params_key(p);
	struct clam_db *db;

	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_lock(&registry_lock);
	for (db = registry; db != NULL && strcmp(db->key, key) != 0; db = db->next)
		;
	if (db != NULL) {
		free(key);
		pthread_mutex_lock(&db->lock);
		db->p.blocking = p->blocking;
		db->p.watch_ms = p->watch_ms;
		pthread_mutex_unlock(&db->lock);
		if (reload_on_hup(db, err, errlen) < 0)
			db = NULL;
		else
			db->users++;
	} else if ((db = db_new(p, key, err, errlen)) != NULL) {
		db->users = 1;
		db->next = registry;
		registry = db;
	}
	pthread_mutex_unlock(&registry_lock);
	return db;
}

/* clam_db_put - see pxclam.h (unconfigure: the main thread) */
void clam_db_put(struct clam_db *db)
{
	struct clam_db **pp;

	if (db == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	if (--db->users > 0) {
		pthread_mutex_unlock(&registry_lock);
		return;
	}
	for (pp = &registry; *pp != NULL && *pp != db; pp = &(*pp)->next)
		;
	if (*pp == db)
		*pp = db->next;
	pthread_mutex_unlock(&registry_lock);
	db_free(db);
}

/* ---------------------------------------------------------------- scan --- */

/* watch - at most every watch_ms, one scan looks at the files; a change
 * starts the loader (lock held) */
static void watch(struct clam_db *db, struct px_txn *txn)
{
	long long now = now_ms();
	unsigned long long fp;

	if (db->report[0] != '\0') {
		clam_host->log(txn, db->report_prio, "%s", db->report);
		db->report[0] = '\0';
	}
	if (db->p.watch_ms <= 0 || now < db->next_check_ms || db->loader == 1)
		return;
	db->next_check_ms = now + db->p.watch_ms;
	fp = fingerprint(db->p.database);       /* a few stat()s */
	if (fp == db->loaded_fp || fp == db->failed_fp)
		return;
	if (db->loader == 2)
		pthread_join(db->loader_thread, NULL);   /* ended: returns at once */
	db->loader = 0;
	if (pthread_create(&db->loader_thread, NULL, loader_main, db) != 0) {
		clam_host->log(txn, PX_PRIO_WARN, "reload status=failed database=%s why=watch "
			       "error=\"cannot start a thread\" keeping=old", db->p.database);
		return;
	}
	db->loader = 1;
	clam_host->log(txn, PX_PRIO_INFO, "reload status=started database=%s why=watch",
		       db->p.database);
}

/* tmp_ready - make the private temp directory (mode 0700, ours); a
 * directory of that name that is not ours, or not private, is refused
 * (lock held) */
static int tmp_ready(struct clam_db *db, struct clam_outcome *out)
{
	struct stat st;

	if (db->tmp_ready && lstat(db->tmp, &st) == 0)
		return 0;
	if (mkdir(db->tmp, 0700) != 0 && errno != EEXIST) {
		out->status = CLAM_ERROR;
		snprintf(out->name, sizeof(out->name), "tmpdir");
		snprintf(out->detail, sizeof(out->detail), "mkdir %s: %s", db->tmp, strerror(errno));
		return -1;
	}
	if (lstat(db->tmp, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077) != 0) {
		out->status = CLAM_ERROR;
		snprintf(out->name, sizeof(out->name), "tmpdir");
		snprintf(out->detail, sizeof(out->detail), "%s is not a private directory of uid %u",
			 db->tmp, (unsigned)geteuid());
		return -1;
	}
	db->tmp_ready = 1;
	return 0;
}

/* engine_take - the engine to scan with, with a reference; NULL when a
 * blocking reload did not end within wait_ms or left none (out filled) */
static struct clam_engine *engine_take(struct clam_db *db, struct px_txn *txn, long long wait_ms,
				       struct clam_outcome *out)
{
	struct clam_engine *ce = NULL;
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_ms / 1000;
	until.tv_nsec += (wait_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&db->lock);
	watch(db, txn);
	while (db->paused && pthread_cond_timedwait(&db->cond, &db->lock, &until) == 0)
		;
	if (db->paused) {
		out->status = CLAM_ERROR;
		snprintf(out->name, sizeof(out->name), "reloading");
	} else if (db->cur == NULL) {
		out->status = CLAM_ERROR;
		snprintf(out->name, sizeof(out->name), "no-engine");
		snprintf(out->detail, sizeof(out->detail), "the last load of %s failed",
			 db->p.database);
	} else if (tmp_ready(db, out) == 0) {
		ce = db->cur;
		__atomic_add_fetch(&ce->refs, 1, __ATOMIC_ACQ_REL);
		db->scans++;
	}
	pthread_mutex_unlock(&db->lock);
	return ce;
}

/* engine_give - the scan ended */
static void engine_give(struct clam_db *db, struct clam_engine *ce)
{
	pthread_mutex_lock(&db->lock);
	if (--db->scans == 0 && db->paused)
		pthread_cond_broadcast(&db->cond);
	pthread_mutex_unlock(&db->lock);
	engine_unref(ce);
}

/* The fmap's reader: the spooled message, through the host, in the chunks
 * libclamav asks for (it keeps a few pages, not the message) */
struct reader {
	struct px_txn *txn;
	size_t size;
	int failed;
};

static off_t read_cb(void *handle, void *buf, size_t count, off_t offset)
{
	struct reader *r = handle;
	size_t got = 0;
	ssize_t n;

	while (got < count && (size_t)offset + got < r->size) {
		n = clam_host->message_read(r->txn, (size_t)offset + got, (char *)buf + got,
					    count - got);
		if (n <= 0) {
			if (n < 0)
				r->failed = 1;
			break;
		}
		got += (size_t)n;
	}
	return r->failed && got == 0 ? -1 : (off_t)got;
}

/* clam_db_scan - see pxclam.h */
void clam_db_scan(struct clam_db *db, struct px_txn *txn, size_t size, struct clam_outcome *out)
{
	struct reader r = { txn, size, 0 };
	struct cl_scan_options o;
	struct clam_engine *ce;
	unsigned long scanned = 0;
	const char *vir = NULL;
	cl_fmap_t *map;
	cl_error_t rc;

	memset(out, 0, sizeof(*out));
	if ((ce = engine_take(db, txn, db->p.max_scantime_ms, out)) == NULL)
		return;
	memset(&o, 0, sizeof(o));
	o.general = CL_SCAN_GENERAL_HEURISTICS;
	o.parse = ~0u;
	o.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX;    /* limits are named, not passed */
	if ((map = cl_fmap_open_handle(&r, 0, size, read_cb, 1)) == NULL) {
		out->status = CLAM_ERROR;
		snprintf(out->name, sizeof(out->name), "fmap");
	} else {
		rc = cl_scanmap_callback(map, "message.eml", &vir, &scanned, ce->cl, &o, txn);
		cl_fmap_close(map);
		if (r.failed) {
			out->status = CLAM_ERROR;
			snprintf(out->name, sizeof(out->name), "message-read");
		} else if (rc == CL_VIRUS) {
			clam_classify(vir, out);
		} else if (rc != CL_CLEAN) {
			out->status = rc == CL_ETIMEOUT ? CLAM_LIMIT : CLAM_ERROR;
			snprintf(out->name, sizeof(out->name), "%s",
				 rc == CL_ETIMEOUT ? "scantime" : "scanner");
			snprintf(out->detail, sizeof(out->detail), "%s", cl_strerror(rc));
		}
	}
	engine_give(db, ce);
}
