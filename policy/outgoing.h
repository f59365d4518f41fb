/*
 * NAME
 *	outgoing - the header edits a message gets after its data-end stage
 * DESCRIPTION
 *	Used by every front end (posternd, postern test, and later the
 *	milter), so that the same message gets the same headers everywhere:
 *	  - every incoming Authentication-Results carrying our authserv-id is
 *	    removed (RFC 8601 section 5), and so is every incoming X-Postern-*
 *	    field (they are ours to set);
 *	  - one Authentication-Results is added when the chain has any plugin
 *	    (with none, Postern is a plain proxy): registered methods (spf,
 *	    dkim, dmarc, iprev, auth, arc) in that fixed order, each in the
 *	    order recorded, or "none"; a result that is not a token is left
 *	    out, control characters in properties become spaces;
 *	  - then the headers plugins added, tags and quarantine marks, in order;
 *	  - then, with policy.verdict_headers, X-Postern-Results.
 *	The front end puts its own trace header (Received) above all of them.
 */
#ifndef PX_POLICY_OUTGOING_H
#define PX_POLICY_OUTGOING_H

#include <stddef.h>

#include "filters/message.h"
#include "filters/txn.h"
#include "policy.h"

struct px_outgoing {
	char **names, **values;   /* the added fields, top first (trace header excluded) */
	size_t n;
	char *prepend;            /* trace header + added fields, as CRLF text */
	size_t prepend_len;
	struct px_skip *skips;    /* removed fields, as spool ranges */
	size_t nskips;
};

/* px_outgoing_build - decide the edits; trace may be NULL. 0 or -1 */
int px_outgoing_build(struct px_txn *t, const struct px_policy *p, const char *trace,
		      struct px_outgoing *out);
void px_outgoing_free(struct px_outgoing *out);

/* px_authres_value - the value of our Authentication-Results (malloc'd),
 * "AUTHSERV-ID;\r\n\tspf=pass smtp.mailfrom=...;..." or "AUTHSERV-ID; none" */
char *px_authres_value(const struct px_txn *t, const char *authserv_id);

/* px_authres_id_is - whether an A-R value starts with this authserv-id */
int px_authres_id_is(const char *value, size_t len, const char *authserv_id);

#endif
