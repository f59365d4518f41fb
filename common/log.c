/*
 * NAME
 *	log - key=value log lines that start with a session id
 * SUMMARY
 *	one write per line, to stderr or to syslog (facility mail)
 * DESCRIPTION
 *	px_log() formats "<sid> key=value ..." into one buffer and hands it to
 *	the destination in a single call: write(2) on stderr, prefixed with
 *	"progname[pid]: " so tests can grep for it, or syslog(3), which adds
 *	its own ident and pid. Lines never interleave, and a line longer than
 *	PX_LOG_LINE_MAX is cut and ends in "...".
 *
 *	Global state, and why: the destination (progname, stderr or syslog)
 *	set by px_log_open() is guarded by a read-write lock, because syslog
 *	keeps a pointer to the ident; the threshold is an atomic int, so a
 *	reload can change it while other threads log.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "common/log.h"

#define PX_LOG_LINE_MAX 4096
#define PX_LOG_NAME_MAX 64

static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;
static char log_name[PX_LOG_NAME_MAX] = "postern";
static int log_to_stderr = 1;
static int log_level = PX_LOG_INFO;

static const char *const log_level_names[] = {
	[PX_LOG_ERR] = "error",
	[PX_LOG_WARN] = "warning",
	[PX_LOG_INFO] = "info",
	[PX_LOG_DEBUG] = "debug",
};

/* log_clamp - keep a level inside the enum */
static int log_clamp(int level)
{
	if (level < PX_LOG_ERR)
		return PX_LOG_ERR;
	if (level > PX_LOG_DEBUG)
		return PX_LOG_DEBUG;
	return level;
}

/* px_log_open - choose the destination and the threshold; safe to call again */
void px_log_open(const char *progname, int to_stderr, enum px_log_level level)
{
	const char *base = progname ? strrchr(progname, '/') : NULL;

	pthread_rwlock_wrlock(&log_lock);
	if (!log_to_stderr)
		closelog();
	if (progname)
		snprintf(log_name, sizeof(log_name), "%s", base ? base + 1 : progname);
	log_to_stderr = to_stderr != 0;
	if (!log_to_stderr)
		openlog(log_name, LOG_PID | LOG_NDELAY, LOG_MAIL);
	pthread_rwlock_unlock(&log_lock);
	px_log_set_level(level);
}

/* px_log_set_level - change the threshold (reload) */
void px_log_set_level(enum px_log_level level)
{
	__atomic_store_n(&log_level, log_clamp((int)level), __ATOMIC_RELAXED);
}

/* px_log_enabled - whether a line at this level would be written */
int px_log_enabled(enum px_log_level level)
{
	return (int)level <= __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

/* px_log_level_parse - "error|warning|info|debug" to a level; -1 if unknown */
int px_log_level_parse(const char *name)
{
	int i;

	for (i = PX_LOG_ERR; name && i <= PX_LOG_DEBUG; i++)
		if (strcasecmp(name, log_level_names[i]) == 0)
			return i;
	return -1;
}

/* log_syslog_prio - our level to a syslog priority */
static int log_syslog_prio(enum px_log_level level)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

	return prio[log_clamp((int)level)];
}

/* log_mark_cut - end a truncated line with "..." */
static size_t log_mark_cut(char *buf, size_t size)
{
	memcpy(buf + size - 4, "...", 4);
	return size - 1;
}

/* log_format - "<sid> " then the caller's text; returns the length kept */
static size_t log_format(char *buf, size_t size, size_t off, const char *sid,
			 const char *fmt, va_list ap)
{
	int n;

	n = snprintf(buf + off, size - off, "%s ", sid ? sid : "-");
	if (n < 0 || (size_t)n >= size - off)
		return log_mark_cut(buf, size);
	off += (size_t)n;
	n = vsnprintf(buf + off, size - off, fmt, ap);
	if (n < 0)
		return off;
	if ((size_t)n >= size - off)
		return log_mark_cut(buf, size);
	return off + (size_t)n;
}

/* log_prefix - "progname[pid]: " for stderr lines; returns its length */
static size_t log_prefix(char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s[%ld]: ", log_name, (long)getpid());

	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

/* log_write_stderr - one write(2) of "progname[pid]: line\n" */
static void log_write_stderr(char *line, size_t len)
{
	ssize_t rc;

	line[len++] = '\n';
	rc = write(STDERR_FILENO, line, len);
	(void)rc;
}

/* px_vlog - one line; sid may be NULL ("-"); fmt gives the key=value part */
void px_vlog(enum px_log_level level, const char *sid, const char *fmt, va_list ap)
{
	char buf[PX_LOG_LINE_MAX + 1];
	size_t off = 0, len;

	if (!px_log_enabled(level))
		return;
	pthread_rwlock_rdlock(&log_lock);
	if (log_to_stderr)
		off = log_prefix(buf, PX_LOG_LINE_MAX / 4);
	len = log_format(buf, PX_LOG_LINE_MAX, off, sid, fmt, ap);
	if (log_to_stderr)
		log_write_stderr(buf, len);
	else
		syslog(log_syslog_prio(level), "%s", buf);
	pthread_rwlock_unlock(&log_lock);
}

/* px_log - printf-style front end of px_vlog */
void px_log(enum px_log_level level, const char *sid, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	px_vlog(level, sid, fmt, ap);
	va_end(ap);
}

/* quote_plain - whether a value can be written without quotes */
static int quote_plain(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x21 || c > 0x7e || c == '"' || c == '=')
			return 0;
	}
	return 1;
}

/* quote_char - the escaped form of one byte inside quotes */
static size_t quote_char(char *unit, unsigned char c)
{
	if (c == '"' || c == '\\')
		return (size_t)snprintf(unit, 5, "\\%c", c);
	if (c < 0x20 || c > 0x7e)
		return (size_t)snprintf(unit, 5, "\\x%02x", c);
	unit[0] = (char)c;
	return 1;
}

/* px_log_quote - log-safe rendering of s; see log.h */
char *px_log_quote(char *out, size_t outlen, const char *s, size_t len)
{
	char unit[5];
	size_t o = 0, i, n;

	if (outlen == 0)
		return out;
	if (quote_plain(s, len)) {
		n = len < outlen - 1 ? len : outlen - 1;
		memcpy(out, s, n);
		out[n] = 0;
		return out;
	}
	if (outlen < 3) {
		out[0] = 0;
		return out;
	}
	out[o++] = '"';
	for (i = 0; i < len; i++) {
		n = quote_char(unit, (unsigned char)s[i]);
		if (o + n + 2 > outlen)
			break;
		memcpy(out + o, unit, n);
		o += n;
	}
	out[o++] = '"';
	out[o] = 0;
	return out;
}
