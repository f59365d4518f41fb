/*
 * NAME
 *	pxclam.h - the clamav plugin's own interfaces (engine, clamd, scan)
 * DESCRIPTION
 *	clamav.c is the plugin (options, configure, the data-end hook and
 *	what a scan's outcome becomes); engine.c owns libclamav engines, their
 *	reload and the database watch; clamd.c speaks INSTREAM to a clamd.
 *	Both scanners read the spooled message through host->message_read in
 *	bounded chunks and report a struct clam_outcome.
 */
#ifndef PX_PLUGIN_CLAMAV_H
#define PX_PLUGIN_CLAMAV_H

#include <postern/plugin.h>

#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

extern const struct px_host *clam_host;

/* What one scan found */
enum clam_status {
	CLAM_CLEAN = 0,
	CLAM_INFECTED,            /* name: the signature */
	CLAM_LIMIT,               /* name: which limit (filesize, scansize, scantime, ...) */
	CLAM_ERROR                /* name: what failed */
};

struct clam_outcome {
	enum clam_status status;
	char name[256];
	char detail[256];         /* more about an error, "" when none */
};

/* The engine settings: one database and its limits */
struct clam_params {
	const char *database;     /* a directory or one file */
	const char *tmpdir;       /* parent of the private temp directory */
	long long max_scansize, max_filesize, max_scantime_ms;
	long long max_recursion, max_files;
	long long watch_ms;       /* 0: no watch */
	int blocking;             /* reload = "blocking" */
};

struct clam_db;

/* clam_engine_init - once per process (load): cl_init, the log callback */
int clam_engine_init(char *err, size_t errlen);
/*
 * clam_db_get - the shared database for these settings: a new one (loaded
 * and compiled now), or the one an earlier generation uses, reloaded now
 * when its files changed since it was loaded (a SIGHUP). -1 with err when
 * the load fails; the database in use, if any, is then unchanged.
 */
struct clam_db *clam_db_get(const struct clam_params *p, char *err, size_t errlen);
/* clam_db_put - a generation lets go of it; the last one frees it */
void clam_db_put(struct clam_db *db);
/* clam_db_scan - scan txn's message with the database's current engine */
void clam_db_scan(struct clam_db *db, struct px_txn *txn, size_t size, struct clam_outcome *out);

/* A clamd to scan with (engine = "clamd:unix:PATH" or "clamd:HOST:PORT") */
struct clamd_addr {
	struct sockaddr_storage sa;
	socklen_t salen;
	char name[300];           /* as configured, for the log */
	long long timeout_ms;     /* the whole exchange */
	size_t chunk;             /* INSTREAM chunk size */
};

/* clamd_parse - "unix:PATH" or "HOST:PORT" (HOST an address or a name,
 * resolved now; "[v6]:PORT"); 0, or -1 with err */
int clamd_parse(const char *spec, struct clamd_addr *a, char *err, size_t errlen);
/* clamd_scan - INSTREAM the message to clamd, within a->timeout_ms */
void clamd_scan(const struct clamd_addr *a, struct px_txn *txn, size_t size,
		struct clam_outcome *out);
/* clam_classify - a signature name: a limit (Heuristics.Limits.Exceeded.*)
 * or a virus; fills out */
void clam_classify(const char *virname, struct clam_outcome *out);

#endif
