/*
 * NAME
 *	spf_record - check an SPF record against RFC 7208, and write it so
 *	that libspf2 1.2.10 evaluates it as RFC 7208 says
 * SUMMARY
 *	int spf_record_prepare(const char *rec, size_t len, int client_v6,
 *			       char *out, size_t outlen, char *why, size_t whylen);
 * DESCRIPTION
 *	libspf2 1.2.10 follows RFC 4408 and is lenient: it evaluates records
 *	that RFC 7208 says are a permerror (a domain-spec whose top label is
 *	numeric or missing, a leading zero in a CIDR length, two redirect=,
 *	a bad macro, control or non-ASCII characters, "redirect:"), and it
 *	refuses some that are valid (a /0 CIDR length, modifiers before
 *	mechanisms, unknown modifiers with "_" or "." in their names). The
 *	DNS layer hands every v=spf1 record it fetches through here first:
 *
 *	- the whole record is checked against the ABNF of RFC 7208 4.6, 5,
 *	  6 and 7.1; any error makes the check a permerror (as 4.6 says:
 *	  "if there are any syntax errors anywhere in the record");
 *	- a valid record is written out again for libspf2, with the same
 *	  meaning: mechanisms in order, then redirect= and exp= (their place
 *	  carries no meaning, 6); unknown modifiers dropped (they are ignored,
 *	  6); a /0 length (which libspf2 cannot store) replaced by terms that
 *	  mean the same for the client's address family: ip4:X/0 is
 *	  ip4:0.0.0.0/1 ip4:128.0.0.0/1, a:D/0 for an IPv4 client is
 *	  exists:D (D has an A record), and the cases with no libspf2 term of
 *	  their own (a//0 for IPv6, mx/0, mx//0) become exists: of a name
 *	  under "_postern.invalid" that the DNS layer answers itself from the
 *	  real lookups (spf_dns.c, magic_lookup). The CIDR length of the other
 *	  family, which cannot match, is dropped.
 * DIAGNOSTICS
 *	-1 with why ("bad top label in domain-spec 'abc.123'").
 */
#include "spf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* out - an output buffer being filled */
struct out {
	char *p;
	size_t len, cap;
	int overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->overflow = 1;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

/* fail - set why; -1 */
static int fail(char *why, size_t whylen, const char *what, const char *t, size_t n)
{
	snprintf(why, whylen, "%s '%.*s'", what, (int)(n > 80 ? 80 : n), t);
	return -1;
}

/* macro_ok - one macro-string (RFC 7208 7.1); exp: c, r, t allowed. The
 * length consumed by each "%{...}" is checked; 0 or -1 */
static int macro_ok(const char *s, size_t n, int exp)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch != '%') {
			if (ch < 0x21 || ch > 0x7e)
				return -1;
			continue;
		}
		if (++i >= n)
			return -1;
		if (s[i] == '%' || s[i] == '_' || s[i] == '-')
			continue;
		if (s[i] != '{' || ++i >= n)
			return -1;
		if (!strchr(exp ? "slodiphcrtv" : "slodiphv", tolower((unsigned char)s[i])))
			return -1;
		i++;
		if (i < n && s[i] == '0')
			return -1;          /* a DIGIT transformer is nonzero */
		while (i < n && isdigit((unsigned char)s[i]))
			i++;
		if (i < n && (s[i] == 'r' || s[i] == 'R'))
			i++;
		while (i < n && strchr(".-+,/_=", s[i]))
			i++;
		if (i >= n || s[i] != '}')
			return -1;
	}
	return 0;
}

/* toplabel_ok - RFC 7208 7.1 toplabel: alphanumerics with a letter, or
 * an inner dash (xn--...) */
static int toplabel_ok(const char *s, size_t n)
{
	int alpha = 0;

	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (isalpha((unsigned char)s[i]))
			alpha = 1;
		else if (!isdigit((unsigned char)s[i]) && s[i] != '-')
			return 0;
	}
	if (s[0] == '-' || s[n - 1] == '-')
		return 0;
	return alpha || memchr(s, '-', n) != NULL;
}

/* domain_spec_ok - macro-string domain-end; 0 or -1 */
static int domain_spec_ok(const char *s, size_t n)
{
	size_t end = n, dot;

	if (n == 0 || macro_ok(s, n, 0) < 0)
		return -1;
	if (s[n - 1] == '}') {
		/* ends in a macro-expand: find its "%{" */
		for (size_t i = n - 1; i-- > 0;)
			if (s[i] == '%' && s[i + 1] == '{' && (i == 0 || s[i - 1] != '%'))
				return 0;
		return -1;
	}
	if (n >= 2 && s[n - 2] == '%' && strchr("%_-", s[n - 1]))
		return 0;                   /* "%%" "%_" "%-" are macro-expands too */
	if (s[end - 1] == '.')
		end--;                      /* one trailing dot */
	for (dot = end; dot > 0 && s[dot - 1] != '.'; dot--)
		;
	if (dot == 0)
		return -1;                  /* no "." toplabel */
	return toplabel_ok(s + dot, end - dot) ? 0 : -1;
}

/* cidr_len - "/N" digits at s (n bytes) with no leading zero, max; the value or -1 */
static int cidr_len(const char *s, size_t n, int max)
{
	int v = 0;

	if (n == 0 || n > 3 || (s[0] == '0' && n > 1))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/*
 * split_cidr - a mechanism's argument "domain-spec dual-cidr-length" (or
 * just a dual-cidr-length): the domain part's length, and the IPv4 and
 * IPv6 lengths (-1 when absent); -1 when a length is malformed
 */
static int split_cidr(const char *s, size_t n, size_t *dlen, int *c4, int *c6)
{
	size_t i = n;

	*c4 = *c6 = -1;
	while (i > 0 && isdigit((unsigned char)s[i - 1]))
		i--;
	if (i == n || i == 0 || s[i - 1] != '/') {
		*dlen = n;
		return 0;
	}
	if (i >= 2 && s[i - 2] == '/') {        /* "//N" */
		if ((*c6 = cidr_len(s + i, n - i, 128)) < 0)
			return -1;
		n = i - 2;
		i = n;
		while (i > 0 && isdigit((unsigned char)s[i - 1]))
			i--;
		if (i == n || i == 0 || s[i - 1] != '/') {
			*dlen = n;
			return 0;
		}
	}
	if ((*c4 = cidr_len(s + i, n - i, 32)) < 0)
		return -1;
	*dlen = i - 1;
	return 0;
}

/* ip4_ok - dotted quad, no leading zeros */
static int ip4_ok(const char *s, size_t n)
{
	char buf[16];
	struct in_addr a;
	int parts = 0;

	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	for (const char *p = buf; *p; parts++) {
		size_t l = strspn(p, "0123456789");

		if (l == 0 || l > 3 || (p[0] == '0' && l > 1))
			return 0;
		p += l;
		if (*p == '.')
			p++;
	}
	return parts == 4 && inet_pton(AF_INET, buf, &a) == 1;
}

static int ip6_ok(const char *s, size_t n)
{
	char buf[64];
	struct in6_addr a;

	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	return inet_pton(AF_INET6, buf, &a) == 1;
}

struct term {
	char q[2];                  /* qualifier, "" or "+" "-" "~" "?" */
	const char *name;           /* mechanism name as written */
	size_t namelen;
	const char *arg;            /* after ':' or the name, "" if none */
	size_t arglen;
	int colon;                  /* arg started with ':' */
};

/* write_zero - the terms for a /0 on an a or mx mechanism */
static void write_zero(struct out *o, const struct term *t, int is_mx, int v6, const char *d,
		       size_t dl)
{
	puts_(o, " ");
	puts_(o, t->q);
	puts_(o, "exists:");
	if (dl == 0)
		puts_(o, "%{d}");
	else
		put(o, d, d[dl - 1] == '.' ? dl - 1 : dl);
	if (is_mx)
		puts_(o, v6 ? ".mx-aaaa" SPF_MAGIC_SUFFIX : ".mx-a" SPF_MAGIC_SUFFIX);
	else if (v6)
		puts_(o, ".aaaa" SPF_MAGIC_SUFFIX);
}

/* mech_a_mx - a or mx: check, and write for libspf2 */
static int mech_a_mx(struct out *o, const struct term *t, int is_mx, int v6, char *why,
		     size_t whylen)
{
	const char *d = t->colon ? t->arg : "";
	size_t dl;
	int c4, c6, rel;
	char c[8];

	if (split_cidr(t->arg, t->arglen, &dl, &c4, &c6) < 0)
		return fail(why, whylen, "bad CIDR length in", t->arg, t->arglen);
	if (!t->colon && dl != 0)
		return fail(why, whylen, "unknown mechanism", t->name, t->namelen + t->arglen);
	if (t->colon && domain_spec_ok(d, dl) < 0)
		return fail(why, whylen, "bad domain-spec", d, dl);
	if (!t->colon)
		dl = 0;
	rel = v6 ? c6 : c4;
	if (rel == 0) {
		write_zero(o, t, is_mx, v6, d, dl);
		return 0;
	}
	puts_(o, " ");
	puts_(o, t->q);
	puts_(o, is_mx ? "mx" : "a");
	if (dl > 0) {
		puts_(o, ":");
		put(o, d, dl);
	}
	if (rel > 0) {
		snprintf(c, sizeof(c), "%s%d", v6 ? "//" : "/", rel);
		puts_(o, c);
	}
	return 0;
}

/* mech_ip - ip4 or ip6: check, and write (a /0 as two /1) */
static int mech_ip(struct out *o, const struct term *t, int six, char *why, size_t whylen)
{
	const char *slash = t->colon ? memchr(t->arg, '/', t->arglen) : NULL;
	size_t al = slash ? (size_t)(slash - t->arg) : t->arglen;
	int c = -1;

	if (!t->colon || !(six ? ip6_ok(t->arg, al) : ip4_ok(t->arg, al)))
		return fail(why, whylen, "bad address in", t->name, t->namelen + t->arglen + 1);
	if (slash != NULL && (c = cidr_len(slash + 1, t->arglen - al - 1, six ? 128 : 32)) < 0)
		return fail(why, whylen, "bad CIDR length in", t->arg, t->arglen);
	puts_(o, " ");
	if (c == 0) {
		puts_(o, t->q);
		puts_(o, six ? "ip6:::/1 " : "ip4:0.0.0.0/1 ");
		puts_(o, t->q);
		puts_(o, six ? "ip6:8000::/1" : "ip4:128.0.0.0/1");
		return 0;
	}
	puts_(o, t->q);
	put(o, t->name, t->namelen + 1 + t->arglen);
	return 0;
}

/* mechanism - one mechanism term: check it and write it for libspf2 */
static int mechanism(struct out *o, struct term *t, int v6, char *why, size_t whylen)
{
	const char *n = t->name;
	size_t nl = t->namelen;

#define IS(w) (nl == sizeof(w) - 1 && strncasecmp(n, w, nl) == 0)
	if (IS("a"))
		return mech_a_mx(o, t, 0, v6, why, whylen);
	if (IS("mx"))
		return mech_a_mx(o, t, 1, v6, why, whylen);
	if (IS("ip4"))
		return mech_ip(o, t, 0, why, whylen);
	if (IS("ip6"))
		return mech_ip(o, t, 1, why, whylen);
	if (IS("all")) {
		if (t->colon || t->arglen != 0)
			return fail(why, whylen, "unknown mechanism", n, nl + t->arglen);
	} else if (IS("include") || IS("exists")) {
		if (!t->colon || domain_spec_ok(t->arg, t->arglen) < 0)
			return fail(why, whylen, "bad domain-spec in", n, nl + t->arglen + 1);
	} else if (IS("ptr")) {
		if (t->colon ? domain_spec_ok(t->arg, t->arglen) < 0 : t->arglen != 0)
			return fail(why, whylen, "bad domain-spec in", n, nl + t->arglen + 1);
	} else {
		return fail(why, whylen, "unknown mechanism", n, nl + t->arglen + (t->colon ? 1 : 0));
	}
#undef IS
	puts_(o, " ");
	puts_(o, t->q);
	put(o, n, nl + t->arglen + (t->colon ? 1 : 0));
	return 0;
}

/* modifier_name_ok - ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) */
static int modifier_name_ok(const char *s, size_t n)
{
	if (n == 0 || !isalpha((unsigned char)s[0]))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("-_.", s[i]))
			return 0;
	return 1;
}

/* parse_term - one term (no spaces) into t; 1 modifier, 0 mechanism */
static int parse_term(const char *s, size_t n, struct term *t)
{
	size_t i = 0, nl;

	memset(t, 0, sizeof(*t));
	nl = strcspn(s, "=:/ ");
	if (nl < n && s[nl] == '=') {
		t->name = s;
		t->namelen = nl;
		t->arg = s + nl + 1;
		t->arglen = n - nl - 1;
		return 1;
	}
	if (n > 0 && strchr("+-~?", s[0])) {
		t->q[0] = s[0];
		i = 1;
	}
	t->name = s + i;
	nl = strcspn(s + i, ":/ ");
	if (nl > n - i)
		nl = n - i;
	t->namelen = nl;
	t->colon = i + nl < n && s[i + nl] == ':';
	t->arg = s + i + nl + (t->colon ? 1 : 0);
	t->arglen = n - i - nl - (t->colon ? 1 : 0);
	return 0;
}

/* modifier - one modifier: redirect= and exp= kept (once each), others
 * checked and dropped */
static int modifier(const struct term *t, const char **redirect, size_t *rlen,
		    const char **exp, size_t *elen, char *why, size_t whylen)
{
	const char *n = t->name;
	size_t nl = t->namelen;

	if (!modifier_name_ok(n, nl))
		return fail(why, whylen, "bad modifier name", n, nl);
	if (nl == 8 && strncasecmp(n, "redirect", 8) == 0) {
		if (*redirect != NULL || domain_spec_ok(t->arg, t->arglen) < 0)
			return fail(why, whylen, "bad or second redirect=", t->arg, t->arglen);
		*redirect = n;
		*rlen = nl + 1 + t->arglen;
	} else if (nl == 3 && strncasecmp(n, "exp", 3) == 0) {
		if (*exp != NULL || domain_spec_ok(t->arg, t->arglen) < 0)
			return fail(why, whylen, "bad or second exp=", t->arg, t->arglen);
		*exp = n;
		*elen = nl + 1 + t->arglen;
	} else if (macro_ok(t->arg, t->arglen, 1) < 0) {
		return fail(why, whylen, "bad macro in modifier", n, nl + 1 + t->arglen);
	}
	return 0;
}

int spf_record_prepare(const char *rec, size_t len, int client_v6, char *buf, size_t buflen,
		       char *why, size_t whylen)
{
	struct out o = { buf, 0, buflen, 0 };
	const char *redirect = NULL, *exp = NULL;
	size_t rlen = 0, elen = 0, i = 6;

	buf[0] = '\0';
	for (size_t k = 0; k < len; k++)
		if ((unsigned char)rec[k] < 0x20 || (unsigned char)rec[k] > 0x7e)
			return fail(why, whylen, "control or non-ASCII character in", rec,
				    len);
	puts_(&o, "v=spf1");
	while (i < len) {
		struct term t;
		size_t n;

		while (i < len && rec[i] == ' ')
			i++;
		if (i >= len)
			break;
		n = strcspn(rec + i, " ");
		if (n > len - i)
			n = len - i;
		if (parse_term(rec + i, n, &t)) {
			if (modifier(&t, &redirect, &rlen, &exp, &elen, why, whylen) < 0)
				return -1;
		} else if (mechanism(&o, &t, client_v6, why, whylen) < 0) {
			return -1;
		}
		i += n;
	}
	if (redirect != NULL) {
		puts_(&o, " ");
		put(&o, redirect, rlen);
	}
	if (exp != NULL) {
		puts_(&o, " ");
		put(&o, exp, elen);
	}
	if (o.len == 6)
		puts_(&o, " ");             /* libspf2 looks for "v=spf1 " */
	if (o.overflow)
		return fail(why, whylen, "record too long", rec, len);
	return 0;
}
