/*
 * NAME
 *	log - key=value log lines that start with a session id
 * SYNOPSIS
 *	#include "common/log.h"
 * DESCRIPTION
 *	Every line is "<sid> key=value key=value ...", so one grep for a session
 *	id shows a whole conversation through every plugin and the relay. Lines
 *	that belong to no session use the id "-". With px_log_open(..., 1) lines
 *	go to stderr (posternd -f, tests); otherwise to syslog, facility mail.
 *	px_log_quote() formats a value so that spaces, quotes and control bytes
 *	from the network cannot forge another key=value pair.
 */
#ifndef PX_COMMON_LOG_H
#define PX_COMMON_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum px_log_level {
	PX_LOG_ERR = 0,
	PX_LOG_WARN,
	PX_LOG_INFO,
	PX_LOG_DEBUG
};

/* px_log_open - choose the destination and the threshold; safe to call again */
void px_log_open(const char *progname, int to_stderr, enum px_log_level level);
/* px_log_set_level - change the threshold (reload) */
void px_log_set_level(enum px_log_level level);
/* px_log_enabled - whether a line at this level would be written */
int px_log_enabled(enum px_log_level level);
/* px_log_level_parse - "error|warning|info|debug" to a level; -1 if unknown */
int px_log_level_parse(const char *name);

/* px_log - one line; sid may be NULL ("-"); fmt gives the key=value part */
void px_log(enum px_log_level level, const char *sid, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void px_vlog(enum px_log_level level, const char *sid, const char *fmt, va_list ap);

/*
 * px_log_quote - write a log-safe rendering of the len bytes at s into out
 * (size outlen, always NUL-terminated). Plain tokens are copied; anything with
 * a space, '"', '=', or a byte outside 0x21..0x7e is put in double quotes with
 * \" \\ and \xNN escapes. Returns out.
 */
char *px_log_quote(char *out, size_t outlen, const char *s, size_t len);

#endif
