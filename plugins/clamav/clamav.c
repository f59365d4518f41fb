/*
 * NAME
 *	clamav - Postern's antivirus plugin (libclamav in process, or clamd)
 * SUMMARY
 *	Scans every message at the end of DATA, before it goes to the backend,
 *	so that infected mail is refused in the SMTP session (554 5.7.0 naming
 *	the signature) and no bounce is ever sent. A scan that cannot be
 *	completed (an error, its time budget, a limit) never passes the
 *	message silently: the plugin fails, and its on_error decides
 *	(tempfail by default).
 * SYNOPSIS
 *	plugin "clamav" {
 *	    timeout       = 10s                # the host's budget per scan
 *	    on_error      = "tempfail"
 *	    engine        = "libclamav"        # or "clamd:unix:PATH", "clamd:HOST:PORT"
 *	    database      = "/var/lib/clamav"  # a directory or one file
 *	    max_filesize  = 50M                # >= limits.message_size_max
 *	    max_scansize  = 100M
 *	    max_recursion = 17
 *	    max_files     = 10000
 *	    max_scantime  = 8s                 # below timeout
 *	    reload        = "concurrent"       # or "blocking"
 *	    watch_interval = 60s               # 0: only SIGHUP reloads
 *	}
 * DESCRIPTION
 *	The message is read where the host spooled it (memory or the spool
 *	file) through host->message_read, in the chunks the scanner asks for:
 *	libclamav gets an fmap over a pread callback (cl_fmap_open_handle with
 *	aging, so it keeps a bounded window of pages, not the message), clamd
 *	gets INSTREAM chunks. The ABI offers no file descriptor or mapping of
 *	the spool, so that bounded window is the least copying it allows.
 *
 *	Results (for the policy, and the log): clamav=clean; clamav=infected
 *	(props virus=NAME); clamav=error (props reason=..., when the scan
 *	failed: the hook then fails and on_error decides). The policy can
 *	turn infected into quarantine or tag (policy.actions =
 *	{"clamav=infected quarantine"}); an infected message that is
 *	delivered that way carries X-Postern-Virus: NAME.
 *
 *	engine.c: engines, reload and the database watch; clamd.c: clamd.
 * DIAGNOSTICS
 *	SID plugin=clamav scan result=clean|infected engine=E size=N ms=T [virus=NAME]
 *	SID plugin=clamav scan result=error error=limit limit=filesize|scansize|scantime|
 *	    recursion|files|streamsize|... | error=timeout|scanner|clamd|tmpdir|no-engine|
 *	    reloading|message-read [detail="..."] action=on_error
 *	and engine.c's load and reload lines.
 */
#include "pxclam.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct px_host *clam_host;

struct clam_conf {
	/* options */
	const char *engine;
	const char *database;
	const char *tmpdir;
	long long max_scansize, max_filesize, max_scantime;
	long long max_recursion, max_files;
	const char *reload;
	long long watch_interval;
	long long clamd_timeout, clamd_chunk;
	int add_header;

	/* derived */
	int use_clamd;
	struct clamd_addr clamd;
	struct clam_db *db;
};

#define MB (1024LL * 1024)

static const struct px_option clam_options[] = {
	{ "engine", PX_OPT_STRING, "libclamav", 0, 0, offsetof(struct clam_conf, engine),
	  "libclamav (in process), clamd:unix:PATH or clamd:HOST:PORT" },
	{ "database", PX_OPT_STRING, "/var/lib/clamav", 0, 0, offsetof(struct clam_conf, database),
	  "the signature database: a directory (as freshclam keeps it) or one file" },
	{ "tmpdir", PX_OPT_STRING, "", 0, 0, offsetof(struct clam_conf, tmpdir),
	  "where the private temp directory is made (\"\": $TMPDIR, else /tmp)" },
	{ "max_filesize", PX_OPT_SIZE, "50M", 1024, 4000 * MB,
	  offsetof(struct clam_conf, max_filesize),
	  "largest message, or file inside it, scanned; keep >= limits.message_size_max" },
	{ "max_scansize", PX_OPT_SIZE, "100M", 1024, 4000 * MB,
	  offsetof(struct clam_conf, max_scansize),
	  "most bytes scanned per message, decoded and unpacked content included" },
	{ "max_recursion", PX_OPT_INT, "17", 1, 255, offsetof(struct clam_conf, max_recursion),
	  "deepest nesting of archives and attachments" },
	{ "max_files", PX_OPT_INT, "10000", 1, 1000000, offsetof(struct clam_conf, max_files),
	  "most files inside one message (archive members, attachments)" },
	{ "max_scantime", PX_OPT_DURATION, "8s", 1, 3600000,
	  offsetof(struct clam_conf, max_scantime),
	  "libclamav's time budget per message; keep it below the section's timeout" },
	{ "reload", PX_OPT_STRING, "concurrent", 0, 0, offsetof(struct clam_conf, reload),
	  "concurrent (new engine beside the old) or blocking (one engine in memory)" },
	{ "watch_interval", PX_OPT_DURATION, "60s", 0, 86400000,
	  offsetof(struct clam_conf, watch_interval),
	  "how often a scan looks for a changed database (0: SIGHUP only)" },
	{ "clamd_timeout", PX_OPT_DURATION, "8s", 100, 3600000,
	  offsetof(struct clam_conf, clamd_timeout),
	  "clamd mode: the whole exchange (connect, stream, answer)" },
	{ "clamd_chunk", PX_OPT_SIZE, "64k", 1024, 16 * MB, offsetof(struct clam_conf, clamd_chunk),
	  "clamd mode: INSTREAM chunk size" },
	{ "add_header", PX_OPT_BOOL, "yes", 0, 0, offsetof(struct clam_conf, add_header),
	  "X-Postern-Virus: NAME on an infected message that is delivered (quarantine, tag)" },
	{ 0 }
};

/* clam_classify - see pxclam.h */
void clam_classify(const char *virname, struct clam_outcome *out)
{
	static const char *const limits[][2] = {
		{ "MaxFileSize", "filesize" }, { "MaxScanSize", "scansize" },
		{ "MaxScanTime", "scantime" }, { "MaxRecursion", "recursion" },
		{ "MaxFiles", "files" },
	};
	const char *pre = "Heuristics.Limits.Exceeded";
	size_t i, n = strlen(pre);

	if (virname == NULL || strncmp(virname, pre, n) == 0) {
		const char *what = virname == NULL ? "unknown" :
			virname[n] == '.' ? virname + n + 1 : virname + n;

		out->status = CLAM_LIMIT;
		snprintf(out->name, sizeof(out->name), "%s", what);
		for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
			if (strncmp(what, limits[i][0], strlen(limits[i][0])) == 0)
				snprintf(out->name, sizeof(out->name), "%s", limits[i][1]);
		snprintf(out->detail, sizeof(out->detail), "%s", virname ? virname : "");
		return;
	}
	out->status = CLAM_INFECTED;
	/* one token of printable ASCII: it goes into a reply line and a header */
	for (i = 0; virname[i] != '\0' && i + 1 < sizeof(out->name); i++)
		out->name[i] = isgraph((unsigned char)virname[i]) ? virname[i] : '_';
	out->name[i] = '\0';
}

/* -------------------------------------------------------------- hooks --- */

static int clam_load(const struct px_host *h, char *err, size_t errlen)
{
	clam_host = h;
	return clam_engine_init(err, errlen);
}

/* clam_configure - check the options, then the engine: load the database
 * (or find it loaded), or resolve clamd's address */
/* warn_size_limits - at start and reload: the host accepts messages that
 * this plugin would not scan whole (each of them gets on_error) */
static void warn_size_limits(const struct clam_conf *c)
{
	const char *m = clam_host->get(NULL, "limits.message_size_max");
	long long max = m ? atoll(m) : 0;

	if (max > c->max_filesize || max > c->max_scansize)
		clam_host->log(NULL, PX_PRIO_WARN, "limits disagree=yes at=configure "
			       "message_size_max=%lld max_filesize=%lld max_scansize=%lld: messages "
			       "over max_filesize/max_scansize get on_error; set them to at least "
			       "limits.message_size_max", max, c->max_filesize, c->max_scansize);
}

static int clam_configure(void *conf, char *err, size_t errlen)
{
	struct clam_conf *c = conf;
	struct clam_params p;
	const char *tmp = c->tmpdir[0] ? c->tmpdir : getenv("TMPDIR");

	if (strcmp(c->reload, "concurrent") != 0 && strcmp(c->reload, "blocking") != 0) {
		snprintf(err, errlen, "reload = '%s': concurrent or blocking", c->reload);
		return -1;
	}
	if (strncmp(c->engine, "clamd:", 6) == 0) {
		c->use_clamd = 1;
		c->clamd.timeout_ms = c->clamd_timeout;
		c->clamd.chunk = (size_t)c->clamd_chunk;
		if (clamd_parse(c->engine + 6, &c->clamd, err, errlen) < 0)
			return -1;
		clam_host->log(NULL, PX_PRIO_INFO, "engine=clamd address=%s timeout_ms=%lld chunk=%lld",
			       c->clamd.name, c->clamd_timeout, c->clamd_chunk);
		return 0;
	}
	if (strcmp(c->engine, "libclamav") != 0) {
		snprintf(err, errlen, "engine = '%s': libclamav, clamd:unix:PATH or clamd:HOST:PORT",
			 c->engine);
		return -1;
	}
	if (tmp == NULL || tmp[0] == '\0')
		tmp = "/tmp";
	if (c->database[0] != '/' || tmp[0] != '/') {
		snprintf(err, errlen, "database and tmpdir must be absolute paths");
		return -1;
	}
	if (c->max_scantime > 0xffffffffLL) {
		snprintf(err, errlen, "max_scantime is too long");
		return -1;
	}
	memset(&p, 0, sizeof(p));
	p.database = c->database;
	p.tmpdir = tmp;
	p.max_scansize = c->max_scansize;
	p.max_filesize = c->max_filesize;
	p.max_scantime_ms = c->max_scantime;
	p.max_recursion = c->max_recursion;
	p.max_files = c->max_files;
	p.watch_ms = c->watch_interval;
	p.blocking = strcmp(c->reload, "blocking") == 0;
	if ((c->db = clam_db_get(&p, err, errlen)) == NULL)
		return -1;
	clam_host->log(NULL, PX_PRIO_INFO, "engine=libclamav database=%s max_filesize=%lld "
		       "max_scansize=%lld max_scantime_ms=%lld max_recursion=%lld max_files=%lld "
		       "reload=%s watch_ms=%lld (a message over max_filesize is not scanned: "
		       "on_error; keep it >= limits.message_size_max)", c->database, c->max_filesize,
		       c->max_scansize, c->max_scantime, c->max_recursion, c->max_files, c->reload,
		       c->watch_interval);
	warn_size_limits(c);
	return 0;
}

static void clam_unconfigure(void *conf)
{
	struct clam_conf *c = conf;

	clam_db_put(c->db);
	c->db = NULL;
}

/* elapsed_ms - since t0 */
static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (long)((t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000);
}

/* too_big - a message the engine would not read whole: a limit, without
 * scanning (libclamav would skip it, and that must not pass as clean) */
static int too_big(const struct clam_conf *c, struct px_txn *txn, size_t size,
		   struct clam_outcome *out)
{
	const char *which = (long long)size > c->max_filesize ? "filesize" :
		(long long)size > c->max_scansize ? "scansize" : NULL;

	if (which == NULL)
		return 0;
	memset(out, 0, sizeof(*out));
	out->status = CLAM_LIMIT;
	snprintf(out->name, sizeof(out->name), "%s", which);
	snprintf(out->detail, sizeof(out->detail), "message of %zu bytes, max_%s=%lld", size, which,
		 which[0] == 'f' ? c->max_filesize : c->max_scansize);
	clam_host->log(txn, PX_PRIO_WARN, "limits disagree=yes message_size=%zu max_%s=%lld: "
		       "limits.message_size_max lets in messages this plugin cannot scan; set "
		       "max_filesize and max_scansize to at least limits.message_size_max", size,
		       which, which[0] == 'f' ? c->max_filesize : c->max_scansize);
	return 1;
}

/* outcome - what the scan found becomes a result, a reply and a verdict */
static enum px_verdict outcome(const struct clam_conf *c, struct px_txn *txn, size_t size,
			       long ms, const struct clam_outcome *o)
{
	const char *eng = c->use_clamd ? "clamd" : "libclamav";
	char props[320], text[400];

	switch (o->status) {
	case CLAM_CLEAN:
		clam_host->record(txn, "clamav", "clean", NULL);
		clam_host->log(txn, PX_PRIO_INFO, "scan result=clean engine=%s size=%zu ms=%ld", eng,
			       size, ms);
		return PX_NEXT;
	case CLAM_INFECTED:
		snprintf(props, sizeof(props), "virus=%s", o->name);
		clam_host->record(txn, "clamav", "infected", props);
		clam_host->log(txn, PX_PRIO_INFO, "scan result=infected engine=%s size=%zu ms=%ld "
			       "virus=%s", eng, size, ms, o->name);
		if (c->add_header)
			clam_host->add_header(txn, "X-Postern-Virus", o->name);
		snprintf(text, sizeof(text), "Message refused: virus %s found", o->name);
		clam_host->set_reply(txn, 554, "5.7.0", text);
		return PX_REJECT;
	case CLAM_LIMIT:
		snprintf(props, sizeof(props), "reason=limit.%s", o->name);
		clam_host->record(txn, "clamav", "error", props);
		clam_host->log(txn, PX_PRIO_WARN, "scan result=error error=limit limit=%s engine=%s "
			       "size=%zu ms=%ld detail=\"%s\" action=on_error", o->name, eng, size, ms,
			       o->detail);
		break;
	case CLAM_ERROR:
	default:
		snprintf(props, sizeof(props), "reason=%s", o->name);
		clam_host->record(txn, "clamav", "error", props);
		clam_host->log(txn, PX_PRIO_WARN, "scan result=error error=%s engine=%s size=%zu "
			       "ms=%ld detail=\"%s\" action=on_error", o->name, eng, size, ms,
			       o->detail);
		break;
	}
	return (enum px_verdict)PX_VERDICT_COUNT;     /* "I failed": on_error decides */
}

/* clam_data_end - scan the spooled message */
static enum px_verdict clam_data_end(const void *conf, struct px_txn *txn)
{
	const struct clam_conf *c = conf;
	size_t size = clam_host->message_size(txn);
	struct clam_outcome o;
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (c->use_clamd)
		clamd_scan(&c->clamd, txn, size, &o);
	else if (!too_big(c, txn, size, &o))
		clam_db_scan(c->db, txn, size, &o);
	return outcome(c, txn, size, elapsed_ms(&t0), &o);
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "clamav",
	.version = "1.0",
	.description = "virus scanning at the end of DATA (libclamav in process, or clamd)",
	.options = clam_options,
	.conf_size = sizeof(struct clam_conf),
	.load = clam_load,
	.configure = clam_configure,
	.unconfigure = clam_unconfigure,
	.on_data_end = clam_data_end,
};
