/*
 * NAME
 *	spf_dns - libspf2's DNS layer over Postern's resolver
 * SUMMARY
 *	An SPF_dns_server_t whose lookup() asks host->dns_query(), the one
 *	caching resolver of the process (dns_forward, timeouts.dns), so SPF
 *	shares its cache and its upstream with every other filter, and never
 *	reads /etc/resolv.conf behind the configuration's back.
 * DESCRIPTION
 *	Answers are turned into libspf2's records: TXT rdata (a list of
 *	length-prefixed strings) concatenated into one string (RFC 7208 3.3),
 *	MX and PTR wire names into dotted text, A and AAAA as addresses.
 *	Type 99 (SPF) is answered NO_DATA without a query: RFC 7208 dropped
 *	it, and libspf2 1.2.10 may still ask for it first.
 *
 *	What libspf2 1.2.10 lacks is added here, per check (struct
 *	spf_check, found through spf_current):
 *	- the 10-MX limit (a permerror) and the 10-PTR limit (the first 10
 *	  names are used, never a permerror) of RFC 7208 4.6.4;
 *	- the void-lookup limit (RFC 7208 4.6.4): NXDOMAIN and NODATA answers
 *	  to the lookups of mechanisms (A, AAAA, MX, PTR) are counted; past
 *	  max_void the check ends in permerror (spf.c). TXT lookups are not
 *	  counted: a TXT lookup is either a record fetch (whose void answer
 *	  is already none or permerror) or an exp= lookup, which must not
 *	  count (RFC 7208 6.2);
 *	- a screen for CVE-2023-42118: an SPF record with more than
 *	  max_macros "%{" is never handed to libspf2's macro parser (Debian
 *	  lacks upstream d14abff); the check ends in permerror;
 *	- a space in an exp= text is handed to libspf2 as "%_" (exp_text);
 *	- DNS trouble: a TEMPFAIL (SERVFAIL, timeout) marks the check, and
 *	  every later lookup of the same hook call fails at once, so a hung
 *	  DNS costs one timeouts.dns per hook call, not one per lookup.
 *	  Except in the ptr mechanism and %{p} (RFC 7208 5.5): a failed PTR
 *	  lookup does not match, a failed address lookup of a PTR name skips
 *	  that name; neither is a temperror.
 * DIAGNOSTICS
 *	Through host->log: "dns name=... type=... status=..." at debug,
 *	screening and the void limit at info.
 */
#include "spf_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_T_A 1
#define DNS_T_PTR 12
#define DNS_T_MX 15
#define DNS_T_TXT 16
#define DNS_T_AAAA 28
#define DNS_T_SPF 99

_Thread_local struct spf_check *spf_current;

/* spf_count_macros - the "%{" in a string of len bytes */
unsigned spf_count_macros(const char *s, size_t len)
{
	unsigned n = 0;

	for (size_t i = 0; i + 1 < len; i++)
		if (s[i] == '%' && s[i + 1] == '{')
			n++;
	return n;
}

/* wire_name - a wire-format name (no compression) as dotted text; 0 or -1 */
static int wire_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	while (i < len && p[i] != 0) {
		size_t l = p[i++];

		if (l > 63 || i + l > len || o + l + 2 > outlen)
			return -1;          /* a pointer, or too long: not for us */
		if (o > 0)
			out[o++] = '.';
		memcpy(out + o, p + i, l);
		o += l;
		i += l;
	}
	if (i >= len)
		return -1;                  /* no root label */
	out[o] = '\0';
	return 0;
}

/* txt_join - TXT rdata's strings joined, NUL-terminated, into *out (malloc):
 * 0, -1 when malformed (a string runs past the rdata), -2 when out of memory */
static int txt_join(const unsigned char *p, size_t len, char **out, size_t *outlen)
{
	char *s = malloc(len + 1);
	size_t i = 0, o = 0;

	if (s == NULL)
		return -2;
	while (i < len) {
		size_t l = p[i++];

		if (i + l > len) {
			free(s);
			return -1;
		}
		memcpy(s + o, p + i, l);
		o += l;
		i += l;
	}
	s[o] = '\0';
	*out = s;
	*outlen = o;
	return 0;
}

/* is_spf_record - does the text start with "v=spf1" followed by a space or its end? */
static int is_spf_record(const char *s, size_t len)
{
	return len >= 6 && strncasecmp(s, "v=spf1", 6) == 0 && (len == 6 || s[6] == ' ');
}

/*
 * exp_text - a TXT string that is no SPF record, as libspf2 can compile
 * it: the only other use libspf2 has for a TXT record is an exp= text,
 * and its macro parser (SPF_c_parse_macro) turns a plain space into '%'
 * ("See me." became "See%me."). "%_" is the same space in the macro
 * language, so spaces are written that way. out has room for 2 * len + 1.
 */
static void exp_text(char *out, const char *t, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (t[i] == ' ') {
			out[o++] = '%';
			out[o++] = '_';
		} else {
			out[o++] = t[i];
		}
	}
	out[o] = '\0';
}

/* add_txt - one TXT record into rr at index n; 1 added, 0 skipped, -1 no memory */
static int add_txt(struct spf_check *ck, SPF_dns_rr_t *rr, int n, const char *name,
		   const unsigned char *data, size_t len)
{
	size_t tl, cap;
	char *t;
	int r = txt_join(data, len, &t, &tl), spf;

	if (r < 0)
		return r == -2 ? -1 : 0;
	spf = is_spf_record(t, tl);
	if (spf && spf_count_macros(t, tl) > (unsigned long long)ck->max_macros) {
		ck->screened = 1;
		snprintf(ck->screened_name, sizeof(ck->screened_name), "%s", name);
		free(t);
		return 0;
	}
	cap = 3 * tl + 256;
	if (SPF_dns_rr_buf_realloc(rr, n, cap) != SPF_E_SUCCESS) {
		free(t);
		return -1;
	}
	if (!spf) {
		exp_text(rr->rr[n]->txt, t, tl);
	} else if (spf_record_prepare(t, tl, ck->v6, rr->rr[n]->txt, cap, ck->problem,
				      sizeof(ck->problem)) < 0) {
		/* libspf2 never sees it: the check ends in permerror (spf.c) */
		if (!ck->syntax_error)
			ck->host->log(ck->txn, PX_PRIO_INFO, "record=invalid name=%s why=\"%s\"",
				      name, ck->problem);
		ck->syntax_error = 1;
		snprintf(rr->rr[n]->txt, cap, "v=spf1 ");
	}
	free(t);
	return 1;
}

/* add_name - one MX or PTR record (a name) into rr at index n; 1, 0 or -1 */
static int add_name(SPF_dns_rr_t *rr, int n, int type, const unsigned char *data, size_t len)
{
	char name[1024];
	size_t skip = type == DNS_T_MX ? 2 : 0;

	if (len <= skip || wire_name(data + skip, len - skip, name, sizeof(name)) < 0)
		return 0;
	for (char *p = name; *p; p++)          /* libspf2 compares names case-sensitively */
		*p = (char)tolower((unsigned char)*p);
	if (SPF_dns_rr_buf_realloc(rr, n, strlen(name) + 1) != SPF_E_SUCCESS)
		return -1;
	strcpy(type == DNS_T_MX ? rr->rr[n]->mx : rr->rr[n]->ptr, name);
	return 1;
}

/* add_addr - one A or AAAA record into rr at index n; 1, 0 or -1 */
static int add_addr(SPF_dns_rr_t *rr, int n, int type, const unsigned char *data, size_t len)
{
	size_t want = type == DNS_T_A ? sizeof(struct in_addr) : sizeof(struct in6_addr);

	if (len != want)
		return 0;
	if (SPF_dns_rr_buf_realloc(rr, n, sizeof(SPF_dns_rr_data_t)) != SPF_E_SUCCESS)
		return -1;
	if (type == DNS_T_A)
		memcpy(&rr->rr[n]->a, data, want);
	else
		memcpy(&rr->rr[n]->aaaa, data, want);
	return 1;
}

/* fill - the answer's records into rr; the count, or -1 when out of memory */
static int fill(struct spf_check *ck, SPF_dns_rr_t *rr, const char *name, int type,
		const struct px_dns_answer *ans)
{
	int n = 0;

	for (size_t i = 0; i < ans->count; i++) {
		const unsigned char *d = ans->data[i];
		size_t l = ans->len[i];
		int r;

		if (type == DNS_T_TXT)
			r = add_txt(ck, rr, n, name, d, l);
		else if (type == DNS_T_MX || type == DNS_T_PTR)
			r = add_name(rr, n, type, d, l);
		else
			r = add_addr(rr, n, type, d, l);
		if (r < 0)
			return -1;
		n += r;
	}
	return n;
}

/* new_rr - an answer with no records and this h_errno */
static SPF_dns_rr_t *new_rr(SPF_dns_server_t *d, const char *name, ns_type type, int ttl,
			    int herrno)
{
	return SPF_dns_rr_new_init(d, name, type, ttl, herrno);
}

/* is_follow_up - an address lookup of a name the last MX or PTR answer gave */
static int is_follow_up(const struct spf_check *ck, const char *name, int type)
{
	if (type != DNS_T_A && type != DNS_T_AAAA)
		return 0;
	for (int i = 0; i < ck->nfollow; i++)
		if (strcasecmp(ck->follow[i], name) == 0)
			return 1;
	return 0;
}

/* keep_follow - remember an MX or PTR answer's names (the first 12) */
static void keep_follow(struct spf_check *ck, const SPF_dns_rr_t *rr, int type)
{
	ck->nfollow = 0;
	ck->follow_ptr = type == DNS_T_PTR;
	for (int i = 0; i < rr->num_rr && ck->nfollow < 12; i++)
		snprintf(ck->follow[ck->nfollow++], sizeof(ck->follow[0]), "%s",
			 type == DNS_T_MX ? rr->rr[i]->mx : rr->rr[i]->ptr);
}

/*
 * count_void - a void answer to a term's lookup (RFC 7208 4.6.4): the A,
 * AAAA, MX or PTR lookup of a, mx, ptr, exists. Not counted: TXT (record
 * fetches are none/permerror anyway; exp= must not count) and the address
 * lookups of an MX's or PTR's names (part of that one term; counting them
 * made the result depend on the order of the answer's names).
 */
static void count_void(struct spf_check *ck, const char *name, int type)
{
	if (type == DNS_T_TXT || is_follow_up(ck, name, type))
		return;
	if (++ck->voids > (unsigned long long)ck->max_void && !ck->void_exceeded) {
		ck->void_exceeded = 1;
		ck->host->log(ck->txn, PX_PRIO_INFO, "void-lookups=%u limit=%lld name=%s type=%d",
			      ck->voids, ck->max_void, name, type);
	}
}

/* status_name - for the debug log */
static const char *status_name(enum px_dns_status st)
{
	static const char *const names[] = { "ok", "nxdomain", "nodata", "tempfail", "error" };

	return (unsigned)st <= PX_DNS_ERROR ? names[st] : "?";
}

/*
 * escape_name - a name as presentation-format text: octets a label may
 * hold but text may not (space, control, '\\', '"', '(', ')', ';', 8-bit)
 * as \DDD, as libunbound reads them. SPF macros can put any of them in a
 * name ("%_" is a space). 0, or -1 when it does not fit.
 */
static int escape_name(const char *name, char *out, size_t outlen)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (o + 5 > outlen)
			return -1;
		if (*p <= ' ' || *p >= 0x7f || strchr("\\\"();", *p) != NULL)
			o += (size_t)snprintf(out + o, outlen - o, "\\%03u", *p);
		else
			out[o++] = (char)*p;
	}
	out[o] = '\0';
	return 0;
}

/* query - one lookup through the host's resolver, as libspf2 wants it */
static SPF_dns_rr_t *query(SPF_dns_server_t *d, struct spf_check *ck, const char *name,
			   ns_type type)
{
	struct px_dns_answer *ans = NULL;
	char text[1100];
	enum px_dns_status st = escape_name(name, text, sizeof(text)) < 0 ? PX_DNS_ERROR :
		ck->host->dns_query(ck->txn, text, (int)type, &ans);
	SPF_dns_rr_t *rr;
	int n, ttl = ans ? (int)ans->ttl : 0;

	ck->lookups++;
	ck->host->log(ck->txn, PX_PRIO_DEBUG, "dns name=%s type=%d status=%s count=%zu", name,
		      (int)type, status_name(st), ans ? ans->count : 0);
	if ((st == PX_DNS_TEMPFAIL || (st == PX_DNS_ERROR && ans == NULL)) &&
	    (type == DNS_T_PTR || (ck->follow_ptr && is_follow_up(ck, name, type)))) {
		/* RFC 7208 5.5: a DNS error in the PTR lookup fails to match
		 * (and %{p} is "unknown"); one in the address lookup of a PTR
		 * name skips that name. Neither is a temperror. */
		rr = new_rr(d, name, type, 0, type == DNS_T_PTR ? HOST_NOT_FOUND : NO_DATA);
		if (type == DNS_T_PTR)
			ck->nfollow = 0;
	} else if (st == PX_DNS_TEMPFAIL || (st == PX_DNS_ERROR && ans == NULL)) {
		ck->tempfail = 1;
		ck->tempfail_mech |= type != DNS_T_TXT;
		*ck->dns_down = 1;
		rr = new_rr(d, name, type, 0, TRY_AGAIN);
	} else if (st == PX_DNS_OK && ans != NULL) {
		rr = new_rr(d, name, type, ttl, NETDB_SUCCESS);
		if (rr != NULL && (n = fill(ck, rr, name, type, ans)) >= 0) {
			rr->num_rr = n;
			if (type == DNS_T_MX && n > 10)
				ck->mx_limit = 1;       /* RFC 7208 4.6.4: permerror */
			if (type == DNS_T_PTR && n > 10)
				rr->num_rr = 10;        /* 4.6.4: the first 10 only (libspf2
							 * would go on to the 11th and fail) */
			if (type == DNS_T_MX || type == DNS_T_PTR)
				keep_follow(ck, rr, type);
			if (n == 0) {
				rr->herrno = NO_DATA;
				count_void(ck, name, type);
			}
		} else if (rr != NULL) {
			SPF_dns_rr_free(rr);
			ck->tempfail = 1;
			rr = new_rr(d, name, type, 0, TRY_AGAIN);
		}
	} else {
		/* NXDOMAIN, NODATA, or a name that cannot be asked (ERROR with
		 * an answer: too long, empty label) - none of it exists */
		rr = new_rr(d, name, type, ttl, st == PX_DNS_NODATA ? NO_DATA : HOST_NOT_FOUND);
		count_void(ck, name, type);
		if (type == DNS_T_MX || type == DNS_T_PTR)
			ck->nfollow = 0;
	}
	ck->host->dns_free(ans);
	return rr;
}

/* has_records - does name have records of type (through query())? 1 or 0 */
static int has_records(SPF_dns_server_t *d, struct spf_check *ck, const char *name, int type,
		       SPF_dns_rr_t **keep)
{
	SPF_dns_rr_t *rr = query(d, ck, name, (ns_type)type);
	int yes;

	if (rr == NULL)
		longjmp(*ck->abort_jmp, 2);
	yes = rr->herrno == NETDB_SUCCESS && rr->num_rr > 0;
	if (keep != NULL)
		*keep = rr;
	else
		SPF_dns_rr_free(rr);
	return yes;
}

/*
 * magic_lookup - the A lookup of an "exists:D.KIND._postern.invalid" that
 * spf_record_prepare wrote for a /0 length: KIND "aaaa" (a//0, IPv6
 * client: D has an AAAA record), "mx-a" / "mx-aaaa" (mx/0, mx//0: one of
 * D's MX hosts, 10 at most, has an address of the client's family). The
 * real lookups go through query() and count as they would; the answer is
 * 127.0.0.2 for yes, NXDOMAIN for no.
 */
static SPF_dns_rr_t *magic_lookup(SPF_dns_server_t *d, struct spf_check *ck, const char *name)
{
	char dom[1024];
	const char *kind;
	size_t n = strlen(name) - strlen(SPF_MAGIC_SUFFIX);
	SPF_dns_rr_t *rr, *mx = NULL;
	int yes = 0;

	snprintf(dom, sizeof(dom), "%.*s", (int)n, name);
	if ((kind = strrchr(dom, '.')) == NULL)
		return new_rr(d, name, DNS_T_A, 0, HOST_NOT_FOUND);
	dom[kind - dom] = '\0';
	kind++;
	if (strcmp(kind, "aaaa") == 0) {
		yes = has_records(d, ck, dom, DNS_T_AAAA, NULL);
	} else if (has_records(d, ck, dom, DNS_T_MX, &mx) && !ck->mx_limit) {
		for (int i = 0; i < mx->num_rr && i < 10 && !yes && !ck->tempfail; i++)
			yes = has_records(d, ck, mx->rr[i]->mx,
					  strcmp(kind, "mx-a") == 0 ? DNS_T_A : DNS_T_AAAA, NULL);
	}
	if (mx != NULL)
		SPF_dns_rr_free(mx);
	if (ck->tempfail)
		return new_rr(d, name, DNS_T_A, 0, TRY_AGAIN);
	if (!yes)
		return new_rr(d, name, DNS_T_A, 0, HOST_NOT_FOUND);
	rr = new_rr(d, name, DNS_T_A, 0, NETDB_SUCCESS);
	if (rr != NULL && SPF_dns_rr_buf_realloc(rr, 0, sizeof(SPF_dns_rr_data_t)) == 0) {
		rr->rr[0]->a.s_addr = htonl(0x7f000002);
		rr->num_rr = 1;
	}
	return rr;
}

/* is_magic - a name spf_record_prepare made up */
static int is_magic(const char *name)
{
	size_t n = strlen(name), m = strlen(SPF_MAGIC_SUFFIX);

	return n > m && strcasecmp(name + n - m, SPF_MAGIC_SUFFIX) == 0;
}

/* truncate_name - RFC 7208 7.3: a name over 253 octets loses labels on the left */
static const char *truncate_name(const char *name)
{
	while (strlen(name) > 253 && strchr(name, '.') != NULL)
		name = strchr(name, '.') + 1;
	return name;
}

/* layer_lookup - libspf2's lookup(): never NULL (libspf2 does not check) */
static SPF_dns_rr_t *layer_lookup(SPF_dns_server_t *d, const char *name, ns_type type,
				  int should_cache)
{
	struct spf_check *ck = spf_current;
	SPF_dns_rr_t *rr = NULL;

	(void)should_cache;                 /* the host's resolver caches */
	if (type == DNS_T_SPF || (type != DNS_T_A && type != DNS_T_AAAA && type != DNS_T_TXT &&
				  type != DNS_T_MX && type != DNS_T_PTR))
		rr = new_rr(d, name, type, 0, NO_DATA);
	else if (ck == NULL || ck->tempfail || *ck->dns_down) {
		if (ck != NULL) {
			ck->tempfail = 1;
			ck->tempfail_mech |= type != DNS_T_TXT;
		}
		rr = new_rr(d, name, type, 0, TRY_AGAIN);
	}
	else if (ck->void_exceeded || ck->screened || ck->syntax_error || ck->mx_limit)
		rr = new_rr(d, name, type, 0, HOST_NOT_FOUND);  /* permerror already: stop asking */
	else if (type == DNS_T_A && is_magic(name))
		rr = magic_lookup(d, ck, name);
	else
		rr = query(d, ck, truncate_name(name), type);
	if (rr == NULL && ck != NULL)
		longjmp(*ck->abort_jmp, 2);          /* out of memory: abandon the check */
	return rr;
}

/* layer_destroy - the layer itself (SPF_dns_free) */
static void layer_destroy(SPF_dns_server_t *d)
{
	free(d);
}

SPF_dns_server_t *spf_dns_layer_new(void)
{
	SPF_dns_server_t *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return NULL;
	d->destroy = layer_destroy;
	d->lookup = layer_lookup;
	d->name = "postern";
	return d;
}
