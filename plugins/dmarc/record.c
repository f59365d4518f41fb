/*
 * NAME
 *	record - the DMARC policy record (RFC 7489 section 6.6.3)
 * DESCRIPTION
 *	TXT _dmarc.FROM through the host's resolver (ABI 1.2 dns_query: the
 *	process's one libunbound cache, bounded by timeouts.dns); when that
 *	name has no DMARC record (NXDOMAIN, no TXT, or no TXT that starts
 *	with v=DMARC1), TXT _dmarc.ORG, ORG being the organisational domain
 *	libpsl gives (never a public suffix, and only when it differs from
 *	FROM). Each TXT record's strings are joined; only records that begin
 *	with "v=DMARC1" count; more than one of them at a name means DMARC
 *	does not apply. A failed lookup (SERVFAIL, timeout) is a temporary
 *	error: the caller records dmarc=temperror.
 *
 *	libopendmarc never touches DNS here: its own resolver cannot be
 *	pointed at our upstream reliably (libraries.md 3.3).
 */
#include "dmarc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_TYPE_TXT 16

enum lookup { LK_FOUND, LK_NONE, LK_MULTIPLE, LK_TEMPFAIL };

/* txt_join - the character-strings of one TXT rdata, joined; NULL when
 * malformed, holding a NUL, or out of memory */
static char *txt_join(const unsigned char *rd, size_t len)
{
	char *out = malloc(len + 1);
	size_t i = 0, n = 0;

	if (out == NULL)
		return NULL;
	while (i < len) {
		size_t l = rd[i++];

		if (l > len - i || memchr(rd + i, '\0', l) != NULL) {
			free(out);
			return NULL;
		}
		memcpy(out + n, rd + i, l);
		n += l;
		i += l;
	}
	out[n] = '\0';
	return out;
}

/* is_dmarc - "v=DMARC1" first, then the end, white space or ';' */
static int is_dmarc(const char *t)
{
	t += strspn(t, " \t");
	if (*t != 'v' && *t != 'V')
		return 0;
	t++;
	t += strspn(t, " \t");
	if (*t++ != '=')
		return 0;
	t += strspn(t, " \t");
	if (strncasecmp(t, "DMARC1", 6) != 0)
		return 0;
	t += 6;
	return *t == '\0' || *t == ';' || *t == ' ' || *t == '\t';
}

/* lookup - the DMARC records at _dmarc.DOMAIN */
static enum lookup lookup(struct px_txn *txn, const char *domain, char *name, size_t namelen,
			  char **text)
{
	struct px_dns_answer *ans = NULL;
	enum px_dns_status st;
	enum lookup rc = LK_NONE;
	size_t i;

	*text = NULL;
	snprintf(name, namelen, "_dmarc.%s", domain);
	if (strlen(name) > 253)
		return LK_NONE;         /* no such name can exist */
	st = dm_host->dns_query(txn, name, DNS_TYPE_TXT, &ans);
	if (st == PX_DNS_TEMPFAIL || (st == PX_DNS_ERROR) || (st == PX_DNS_OK && ans == NULL))
		rc = LK_TEMPFAIL;
	for (i = 0; st == PX_DNS_OK && ans != NULL && i < ans->count; i++) {
		char *t = txt_join(ans->data[i], ans->len[i]);

		if (t == NULL || !is_dmarc(t)) {
			free(t);
			continue;
		}
		if (*text != NULL) {
			free(t);
			rc = LK_MULTIPLE;
			break;
		}
		*text = t;
		rc = LK_FOUND;
	}
	if (rc != LK_FOUND) {
		free(*text);
		*text = NULL;
	}
	if (ans != NULL)
		dm_host->dns_free(ans);
	return rc;
}

/* dm_record_fetch - the From domain first, then its organisational domain */
void dm_record_fetch(struct px_txn *txn, const char *from, const char *org,
		     struct dm_record *out)
{
	static const enum dm_record_status map[] = {
		[LK_FOUND] = DM_REC_FOUND, [LK_NONE] = DM_REC_NONE,
		[LK_MULTIPLE] = DM_REC_MULTIPLE, [LK_TEMPFAIL] = DM_REC_TEMPFAIL,
	};
	enum lookup rc;

	memset(out, 0, sizeof(*out));
	rc = lookup(txn, from, out->where, sizeof(out->where), &out->text);
	if (rc == LK_NONE && org != NULL && strcmp(org, from) != 0) {
		rc = lookup(txn, org, out->where, sizeof(out->where), &out->text);
		out->at_org = 1;
	}
	out->status = map[rc];
}

void dm_record_free(struct dm_record *r)
{
	free(r->text);
	r->text = NULL;
}
