/*
 * NAME
 *	dmarc.h - the DMARC plugin's own parts (RFC 7489)
 * DESCRIPTION
 *	The plugin is split along the steps of an evaluation:
 *	  from.c     the RFC5322.From domain of the message
 *	  record.c   the _dmarc TXT record, with the organisational-domain
 *	             fallback, through the host's resolver
 *	  eval.c     the SPF and DKIM results other plugins recorded, and
 *	             identifier alignment, computed here with libpsl
 *	  report.c   one JSON line per evaluated message, for aggregate reports
 *	  dmarc.c    options, life cycle, the data-end hook: the verdict, the
 *	             library's policy selection, pct, what is recorded
 *	Only <postern/plugin.h> is Postern's; the rest is libopendmarc
 *	(record parsing, p/sp selection) and libpsl (organisational domains).
 */
#ifndef PX_PLUGIN_DMARC_H
#define PX_PLUGIN_DMARC_H

#include <postern/plugin.h>

#include <stddef.h>

#include <libpsl.h>

#define DM_DOMAIN_MAX 254         /* 253 octets and the NUL */
#define DM_MAX_DKIM 16            /* DKIM signatures looked at per message */

extern const struct px_host *dm_host;

/* ---- from.c ---- */

enum dm_from_status {
	DM_FROM_OK,               /* one domain, in dm_from.domain */
	DM_FROM_NONE,             /* no From field */
	DM_FROM_MULTIPLE_FIELDS,  /* more than one From field */
	DM_FROM_MULTIPLE_DOMAINS, /* one field, mailboxes in several domains */
	DM_FROM_NO_DOMAIN,        /* no mailbox with a domain */
	DM_FROM_BAD_DOMAIN        /* a domain that is no DNS name (or not ASCII) */
};

/* dm_from_domain - the RFC5322.From domain (lower case) into domain;
 * the status says why there is none */
enum dm_from_status dm_from_domain(struct px_txn *txn, char *domain, size_t size);
/* dm_from_parse - the same for one field value (raw, maybe folded) */
enum dm_from_status dm_from_parse(const char *value, size_t len, char *domain, size_t size);
const char *dm_from_reason(enum dm_from_status s);
/* dm_domain_ok - lower-case it in place and check it is a DNS name */
int dm_domain_ok(char *d);

/* ---- record.c ---- */

enum dm_record_status {
	DM_REC_FOUND,             /* text holds the one v=DMARC1 record */
	DM_REC_NONE,              /* none at the From domain nor its org domain */
	DM_REC_MULTIPLE,          /* several v=DMARC1 records: DMARC not applied */
	DM_REC_TEMPFAIL           /* the lookup failed: try later */
};

struct dm_record {
	enum dm_record_status status;
	char *text;               /* malloc'd, when FOUND */
	char where[DM_DOMAIN_MAX + 8];   /* the name it was found at (or failed at) */
	int at_org;               /* found at the organisational domain */
};

/* dm_record_fetch - _dmarc.FROM, else _dmarc.ORG (org may be NULL) */
void dm_record_fetch(struct px_txn *txn, const char *from, const char *org,
		     struct dm_record *out);
void dm_record_free(struct dm_record *r);

/* ---- eval.c ---- */

enum dm_auth { DM_AUTH_NONE = 0, DM_AUTH_PASS, DM_AUTH_FAIL, DM_AUTH_TEMPERROR,
	       DM_AUTH_PERMERROR, DM_AUTH_OTHER };

struct dm_ident {
	char domain[DM_DOMAIN_MAX];
	char selector[64];        /* DKIM: header.s */
	char result[32];          /* as recorded */
	enum dm_auth auth;
	int aligned;              /* the identifier aligns with the From domain */
};

struct dm_eval {
	struct dm_ident spf;      /* spf.domain[0] == 0: no SPF result */
	const char *spf_scope;    /* "mfrom" or "helo" */
	struct dm_ident dkim[DM_MAX_DKIM];
	size_t ndkim;
	int spf_aligned_pass, dkim_aligned_pass;
};

/* dm_eval_collect - the spf and dkim results recorded before us, each
 * with its alignment to from (org: its organisational domain, or NULL) */
void dm_eval_collect(struct px_txn *txn, const psl_ctx_t *psl, const char *from,
		     const char *org, int adkim_strict, int aspf_strict, struct dm_eval *out);
/* dm_aligned - identifier alignment (RFC 7489 3.1) */
int dm_aligned(const psl_ctx_t *psl, const char *from, const char *org, const char *id,
	       int strict);

/* ---- report.c ---- */

struct dm_report {
	const char *session, *source_ip, *envelope_from, *header_from, *policy_domain;
	const char *result, *policy, *p, *sp, *disposition, *adkim, *aspf;
	int pct, sampled;
	const char *const *rua;
	const struct dm_eval *eval;
};

/* dm_report_write - one JSON line to fd (one write: lines never mix) */
int dm_report_write(int fd, const struct dm_report *r);

#endif
