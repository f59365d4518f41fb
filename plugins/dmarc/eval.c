/*
 * NAME
 *	eval - SPF and DKIM results, and identifier alignment (RFC 7489 3.1, 4.2)
 * DESCRIPTION
 *	The results come from the plugins that ran before this one in the
 *	chain (ABI 1.2 result_at), never from the message's own
 *	Authentication-Results or Received-SPF fields, which anyone can
 *	write (CVE-2019-20790):
 *	  spf   pass|fail|...  smtp.mailfrom=DOMAIN (or ADDRESS); for the null
 *	        sender, the HELO result: smtp.helo=DOMAIN (RFC 7489 4.1)
 *	  dkim  pass|fail|...  header.d=DOMAIN header.s=SELECTOR, one per signature
 *
 *	Alignment is computed here, not by libopendmarc 1.4.2, whose strict
 *	mode accepts a subdomain and whose relaxed mode aligns d=co.uk with
 *	victim.co.uk (libraries.md 3.5):
 *	  strict   the identifier equals the From domain;
 *	  relaxed  equal, or both have the same organisational domain by
 *	           libpsl (psl_registrable_domain), which is never a public
 *	           suffix: a public suffix aligns with nothing but itself.
 */
#include "dmarc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* prop_get - the value of ptype.property KEY in "k=v k=v" props (a
 * quoted value may hold spaces); 0, or -1 when absent */
static int prop_get(const char *props, const char *key, char *buf, size_t size)
{
	size_t klen = strlen(key);
	const char *p = props;

	while (p != NULL && *p != '\0') {
		const char *v, *end;
		size_t n;

		p += strspn(p, " \t;");
		if (strncasecmp(p, key, klen) == 0 && p[klen] == '=') {
			v = p + klen + 1;
			if (*v == '"') {
				end = strchr(++v, '"');
				end = end ? end : v + strlen(v);
			} else {
				end = v + strcspn(v, " \t;");
			}
			n = (size_t)(end - v) < size ? (size_t)(end - v) : size - 1;
			memcpy(buf, v, n);
			buf[n] = '\0';
			return 0;
		}
		p += strcspn(p, " \t");
	}
	return -1;
}

/* auth_of - a recorded result word */
static enum dm_auth auth_of(const char *r)
{
	if (strcasecmp(r, "pass") == 0)
		return DM_AUTH_PASS;
	if (strcasecmp(r, "fail") == 0 || strcasecmp(r, "softfail") == 0)
		return DM_AUTH_FAIL;
	if (strcasecmp(r, "temperror") == 0)
		return DM_AUTH_TEMPERROR;
	if (strcasecmp(r, "permerror") == 0)
		return DM_AUTH_PERMERROR;
	if (strcasecmp(r, "none") == 0)
		return DM_AUTH_NONE;
	return DM_AUTH_OTHER;
}

/* dm_aligned - see the top of this file */
int dm_aligned(const psl_ctx_t *psl, const char *from, const char *org, const char *id,
	       int strict)
{
	const char *id_org;

	if (strcmp(from, id) == 0)
		return 1;
	if (strict || org == NULL)
		return 0;
	id_org = psl_registrable_domain(psl, id);
	return id_org != NULL && strcmp(id_org, org) == 0;
}

/* ident_set - fill one identifier: its domain (an address: after '@') */
static int ident_set(struct dm_ident *id, const char *value, const char *result)
{
	const char *at = strrchr(value, '@');

	snprintf(id->domain, sizeof(id->domain), "%s", at ? at + 1 : value);
	if (!dm_domain_ok(id->domain))
		return -1;
	snprintf(id->result, sizeof(id->result), "%s", result);
	id->auth = auth_of(result);
	return 0;
}

/* take_spf - the MAIL FROM result; for the null sender, HELO's (RFC 7489
 * 4.1: its smtp.helo, or the postmaster@HELO that RFC 7208 2.4 checks) */
static void take_spf(struct dm_eval *e, const char *result, const char *props, int null_sender)
{
	char v[DM_DOMAIN_MAX + 80];
	const char *key = null_sender ? "smtp.helo" : "smtp.mailfrom";

	if (e->spf.domain[0] != '\0')
		return;                 /* the first one counts */
	if (prop_get(props, key, v, sizeof(v)) < 0 &&
	    (!null_sender || prop_get(props, "smtp.mailfrom", v, sizeof(v)) < 0))
		return;
	if (ident_set(&e->spf, v, result) < 0) {
		memset(&e->spf, 0, sizeof(e->spf));
		return;
	}
	e->spf_scope = null_sender ? "helo" : "mfrom";
}

/* take_dkim - one signature's result */
static void take_dkim(struct dm_eval *e, const char *result, const char *props)
{
	struct dm_ident *id;
	char v[DM_DOMAIN_MAX];

	if (e->ndkim >= DM_MAX_DKIM || prop_get(props, "header.d", v, sizeof(v)) < 0)
		return;
	id = &e->dkim[e->ndkim];
	memset(id, 0, sizeof(*id));
	if (ident_set(id, v, result) < 0)
		return;
	if (prop_get(props, "header.s", id->selector, sizeof(id->selector)) < 0)
		id->selector[0] = '\0';
	e->ndkim++;
}

/* dm_eval_collect - read the transaction's results, then align them */
void dm_eval_collect(struct px_txn *txn, const psl_ctx_t *psl, const char *from,
		     const char *org, int adkim_strict, int aspf_strict, struct dm_eval *e)
{
	const char *mail_from = dm_host->get(txn, "mail.from");
	int null_sender = mail_from != NULL && *mail_from == '\0';
	size_t n = dm_host->result_count(txn), i;

	memset(e, 0, sizeof(*e));
	for (i = 0; i < n; i++) {
		const char *plugin, *method, *result, *props;

		if (dm_host->result_at(txn, i, &plugin, &method, &result, &props) != 0)
			continue;
		if (strcasecmp(method, "spf") == 0)
			take_spf(e, result, props ? props : "", null_sender);
		else if (strcasecmp(method, "dkim") == 0)
			take_dkim(e, result, props ? props : "");
	}
	if (e->spf.domain[0] != '\0') {
		e->spf.aligned = dm_aligned(psl, from, org, e->spf.domain, aspf_strict);
		e->spf_aligned_pass = e->spf.aligned && e->spf.auth == DM_AUTH_PASS;
	}
	for (i = 0; i < e->ndkim; i++) {
		e->dkim[i].aligned = dm_aligned(psl, from, org, e->dkim[i].domain, adkim_strict);
		if (e->dkim[i].aligned && e->dkim[i].auth == DM_AUTH_PASS)
			e->dkim_aligned_pass = 1;
	}
}
