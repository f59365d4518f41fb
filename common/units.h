/*
 * NAME
 *	units - numbers with units: durations ("5m", "250ms") and sizes ("64k")
 * DESCRIPTION
 *	One set of unit rules for every reader: the configuration (policy/)
 *	and the plugin option tables (filters/chain.c) parse the same text the
 *	same way. Durations come out in milliseconds (a bare number means
 *	seconds); sizes in bytes (k, M, G are powers of 1024). Parsers return
 *	0, or -1 for malformed text or overflow.
 */
#ifndef PX_COMMON_UNITS_H
#define PX_COMMON_UNITS_H

#include <stddef.h>

#define PX_KIB 1024LL
#define PX_MIB (1024LL * PX_KIB)
#define PX_GIB (1024LL * PX_MIB)
#define PX_MS_SECOND 1000LL
#define PX_MS_MINUTE (60 * PX_MS_SECOND)
#define PX_MS_HOUR (60 * PX_MS_MINUTE)
#define PX_MS_DAY (24 * PX_MS_HOUR)

/* px_parse_duration_ms - "300", "300s", "5m", "2h", "1d", "250ms" */
int px_parse_duration_ms(const char *text, unsigned long long *ms);
/* px_parse_size - "2048", "64k", "50M", "1G" */
int px_parse_size(const char *text, unsigned long long *bytes);
/* px_parse_count - decimal digits only */
int px_parse_count(const char *text, unsigned long long *v);
/* px_format_duration / px_format_size - the largest unit that divides evenly */
char *px_format_duration(long long ms, char *buf, size_t len);
char *px_format_size(long long bytes, char *buf, size_t len);

#endif
