/*
 * NAME
 *	dns_warm - warm the resolver's cache from the event loop
 * DESCRIPTION
 *	See dns_warm.h. The names are copied out of the txn under its lock,
 *	then each lookup is queued to the resolver (px_dns_lookup_async with
 *	no base: the answer is dropped on the resolver's thread), which never
 *	blocks the loop.
 * DIAGNOSTICS
 *	SID dns warm stage=mail|data-end names=N (debug)
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "dns_warm.h"
#include "filters/chain.h"
#include "filters/resolver.h"

#define WARM_MAX 10
#define DKIM_MAX 8
#define DNS_T_TXT 16

struct names {
	char v[WARM_MAX][256];
	size_t n;
};

/* discard - a warming answer: its only use was the cache */
static void discard(void *arg, struct px_dns_answer *ans)
{
	px_dns_answer_free(ans);
}

/* domain_ok - letters, digits, '-', '_', dots; one dot at least; no address literal */
static int domain_ok(const char *d, size_t n)
{
	size_t i;

	if (n == 0 || n > 253 || d[0] == '.' || d[n - 1] == '.' || memchr(d, '.', n) == NULL)
		return 0;
	for (i = 0; i < n; i++)
		if (!(isalnum((unsigned char)d[i]) || d[i] == '-' || d[i] == '_' ||
		      (d[i] == '.' && d[i + 1] != '.')))
			return 0;
	return 1;
}

/* selector_ok - a DKIM selector: labels of letters, digits, '-', '_' */
static int selector_ok(const char *s)
{
	const char *p;

	if (*s == '\0' || *s == '.')
		return 0;
	for (p = s; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_' ||
		      (*p == '.' && p[1] != '.' && p[1] != '\0')))
			return 0;
	return 1;
}

/* add - prefix + domain (lower case), once */
static void add(struct names *nm, const char *prefix, const char *d, size_t n)
{
	char name[256];
	size_t i, p = strlen(prefix);

	if (nm->n == WARM_MAX || !domain_ok(d, n) || p + n >= sizeof(name))
		return;
	memcpy(name, prefix, p);
	for (i = 0; i < n; i++)
		name[p + i] = (char)tolower((unsigned char)d[i]);
	name[p + n] = '\0';
	for (i = 0; i < nm->n; i++)
		if (strcmp(nm->v[i], name) == 0)
			return;
	memcpy(nm->v[nm->n++], name, p + n + 1);
}

/* addr_domain - the domain of the first address in text[0..n) ("a@b",
 * "Name <a@b>"); *dlen 0 when none */
static const char *addr_domain(const char *text, size_t n, size_t *dlen)
{
	const char *lt = memchr(text, '<', n), *end = text + n, *at = NULL, *p, *d;

	if (lt != NULL)
		text = lt + 1;
	for (p = text; p < end && *p != '>' && *p != ',' && *p != ';'; p++)
		if (*p == '@')
			at = p;
	*dlen = 0;
	if (at == NULL)
		return text;
	for (d = at + 1; d < p && (isalnum((unsigned char)*d) || *d == '-' || *d == '.' ||
				  *d == '_'); d++)
		;
	*dlen = (size_t)(d - (at + 1));
	return at + 1;
}

/* dkim_tag - the value of tag (d, s) in a DKIM-Signature, white space dropped */
static size_t dkim_tag(const char *v, size_t n, char tag, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	while (i < n) {
		while (i < n && isspace((unsigned char)v[i]))
			i++;
		if (i + 1 < n && v[i] == tag) {
			size_t j = i + 1;

			while (j < n && isspace((unsigned char)v[j]))
				j++;
			if (j < n && v[j] == '=') {
				for (j++; j < n && v[j] != ';'; j++)
					if (!isspace((unsigned char)v[j]) && o + 1 < outlen)
						out[o++] = v[j];
				out[o] = '\0';
				return o;
			}
		}
		while (i < n && v[i] != ';')
			i++;
		i++;
	}
	return 0;
}

/* mail_names - HELO and MAIL FROM domains (t->lock held) */
static void mail_names(struct px_txn *t, struct names *nm)
{
	const char *at;

	add(nm, "", t->helo, strlen(t->helo));
	if (t->mail_from != NULL && (at = strrchr(t->mail_from, '@')) != NULL)
		add(nm, "", at + 1, strlen(at + 1));
}

/* header_names - _dmarc.<From>, DKIM keys (t->lock held) */
static void header_names(struct px_txn *t, struct names *nm)
{
	const struct px_headers *h = &t->headers;
	char d[256], s[128], prefix[160];
	const char *v, *dom;
	size_t i, len, dlen, dkim = 0;
	int from_seen = 0;

	for (i = 0; i < h->n; i++) {
		v = px_header_value(h, i, &len);
		if (!from_seen && px_header_name_is(h, i, "From")) {
			from_seen = 1;
			dom = addr_domain(v, len, &dlen);
			add(nm, "_dmarc.", dom, dlen);
		} else if (dkim < DKIM_MAX && px_header_name_is(h, i, "DKIM-Signature")) {
			dkim++;
			if (dkim_tag(v, len, 'd', d, sizeof(d)) == 0 ||
			    dkim_tag(v, len, 's', s, sizeof(s)) == 0 || !selector_ok(s))
				continue;
			snprintf(prefix, sizeof(prefix), "%s._domainkey.", s);
			add(nm, prefix, d, strlen(d));
		}
	}
}

void px_dns_warm(struct px_txn *t, struct event_base *base, enum px_stage st)
{
	struct names nm;
	unsigned later;
	size_t i;

	if (t == NULL)
		return;
	px_txn_set_base(t, base);
	if (t->chain == NULL || (st != PX_STAGE_MAIL && st != PX_STAGE_DATA_END))
		return;
	later = t->chain->stage_mask & ~((1u << st) - 1);    /* this stage and after */
	if (later == 0)
		return;
	nm.n = 0;
	pthread_mutex_lock(&t->lock);
	if (!t->txn_allowed) {
		if (st == PX_STAGE_MAIL)
			mail_names(t, &nm);
		else
			header_names(t, &nm);
	}
	pthread_mutex_unlock(&t->lock);
	for (i = 0; i < nm.n; i++)
		(void)px_dns_lookup_async(NULL, nm.v[i], DNS_T_TXT, discard, NULL, NULL);
	if (nm.n > 0)
		px_log(PX_LOG_DEBUG, t->sid, "dns warm stage=%s names=%zu first=%s",
		       px_stage_names[st], nm.n, nm.v[0]);
}
