/*
 * NAME
 *	units - durations and sizes as written in postern.conf and plugin options
 * SUMMARY
 *	"5m" -> 300000 ms, "64k" -> 65536 bytes, and back
 * DESCRIPTION
 *	Generic infrastructure in common/, so that the configuration
 *	(policy/) and the plugin option parser (filters/chain.c) share one
 *	set of rules without either depending on the other (doc/layering.md).
 *	Multiplication overflow is an error, never a wrapped value.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/units.h"

/* parse_number - leading decimal digits of s into *v; returns the rest */
static const char *parse_number(const char *s, unsigned long long *v)
{
	*v = 0;
	if (!isdigit((unsigned char)*s))
		return NULL;
	for (; isdigit((unsigned char)*s); s++) {
		if (*v > (~0ULL - 9) / 10)
			return NULL;
		*v = *v * 10 + (unsigned long long)(*s - '0');
	}
	return s;
}

/* scale - v * mult, or -1 on overflow */
static int scale(unsigned long long v, unsigned long long mult, unsigned long long *out)
{
	if (mult != 0 && v > ~0ULL / mult)
		return -1;
	*out = v * mult;
	return 0;
}

/* duration_unit - milliseconds per unit; 0 if unknown */
static unsigned long long duration_unit(const char *u)
{
	static const struct { const char *name; unsigned long long ms; } units[] = {
		{ "", PX_MS_SECOND }, { "ms", 1 }, { "s", PX_MS_SECOND },
		{ "m", PX_MS_MINUTE }, { "h", PX_MS_HOUR }, { "d", PX_MS_DAY },
	};
	size_t i;

	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(u, units[i].name) == 0)
			return units[i].ms;
	return 0;
}

/* px_parse_duration_ms - "300", "300s", "5m", "2h", "1d", "250ms" */
int px_parse_duration_ms(const char *text, unsigned long long *ms)
{
	unsigned long long v, unit;
	const char *rest = text ? parse_number(text, &v) : NULL;

	if (!rest || (unit = duration_unit(rest)) == 0)
		return -1;
	return scale(v, unit, ms);
}

/* size_unit - bytes per unit; 0 if unknown */
static unsigned long long size_unit(const char *u)
{
	if (u[0] == 0)
		return 1;
	if (u[1] != 0)
		return 0;
	switch (u[0]) {
	case 'k': case 'K':
		return PX_KIB;
	case 'm': case 'M':
		return PX_MIB;
	case 'g': case 'G':
		return PX_GIB;
	}
	return 0;
}

/* px_parse_size - "2048", "64k", "50M", "1G" (powers of 1024) */
int px_parse_size(const char *text, unsigned long long *bytes)
{
	unsigned long long v, unit;
	const char *rest = text ? parse_number(text, &v) : NULL;

	if (!rest || (unit = size_unit(rest)) == 0)
		return -1;
	return scale(v, unit, bytes);
}

/* px_format_duration - the largest unit that divides ms evenly */
char *px_format_duration(long long ms, char *buf, size_t len)
{
	if (ms != 0 && ms % PX_MS_DAY == 0)
		snprintf(buf, len, "%lldd", ms / PX_MS_DAY);
	else if (ms != 0 && ms % PX_MS_HOUR == 0)
		snprintf(buf, len, "%lldh", ms / PX_MS_HOUR);
	else if (ms != 0 && ms % PX_MS_MINUTE == 0)
		snprintf(buf, len, "%lldm", ms / PX_MS_MINUTE);
	else if (ms % PX_MS_SECOND == 0)
		snprintf(buf, len, "%llds", ms / PX_MS_SECOND);
	else
		snprintf(buf, len, "%lldms", ms);
	return buf;
}

/* px_format_size - the largest of G, M, k that divides bytes evenly */
char *px_format_size(long long bytes, char *buf, size_t len)
{
	if (bytes != 0 && bytes % PX_GIB == 0)
		snprintf(buf, len, "%lldG", bytes / PX_GIB);
	else if (bytes != 0 && bytes % PX_MIB == 0)
		snprintf(buf, len, "%lldM", bytes / PX_MIB);
	else if (bytes != 0 && bytes % PX_KIB == 0)
		snprintf(buf, len, "%lldk", bytes / PX_KIB);
	else
		snprintf(buf, len, "%lld", bytes);
	return buf;
}

/* px_parse_count - decimal digits only */
int px_parse_count(const char *text, unsigned long long *v)
{
	const char *rest = text ? parse_number(text, v) : NULL;

	return rest && *rest == 0 ? 0 : -1;
}
