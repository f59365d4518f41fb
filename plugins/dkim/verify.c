/*
 * NAME
 *	verify - judge every DKIM signature of a message, one result each
 * DESCRIPTION
 *	The message (host->message_read: CRLF lines, unstuffed) is fed to one
 *	libopendkim verifying handle; the key lookups happen inside, through
 *	dns.c. Then every signature in dkim_getsiglist() is judged on its own
 *	(libraries.md 2.1): DKIM_SIG_CHECK, never the PASSED flag alone (a
 *	changed body still sets PASSED), and the overall status of
 *	dkim_eom() is not a verdict either (it only says "one was good").
 *
 *	Results (RFC 8601 2.7.1; RFC 6376 6.1 for which failure is which):
 *	  pass       the signature and the body hash verify, with an
 *	             acceptable algorithm and key
 *	  fail       it does not verify (changed body, changed signed header),
 *	             or it is not acceptable under RFC 8301: rsa-sha1, or an
 *	             RSA key shorter than min_key_bits (at least 1024)
 *	  permerror  it cannot be verified, and asking again will not help:
 *	             no key in DNS (NXDOMAIN/NODATA), a revoked key (p=), a
 *	             malformed signature or key record, an expired signature
 *	  temperror  the key lookup failed (SERVFAIL, timeout): try later
 *	  policy     it verifies but breaks a local rule (a header that must
 *	             be signed is not)
 *	  neutral    anything else (not processed)
 *	  none       (once) the message carries no signature
 *	Props: reason="..." (all but pass), header.d, header.s, header.a (the
 *	signature's a=, RFC 8601 2.7.1), header.b (the first 8 characters of
 *	b=, RFC 6008), as Authentication-Results shows them.
 */
#include "pxdkim.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define READ_CHUNK 65536

struct judgement {
	const char *result;
	char reason[160];         /* "" for pass */
};

DKIM_STAT pxdkim_feed(struct px_txn *txn, DKIM *d, int *readerr)
{
	unsigned char *buf = malloc(READ_CHUNK);
	DKIM_STAT st = DKIM_STAT_OK;
	size_t off = 0;
	ssize_t n;

	*readerr = 0;
	if (buf == NULL) {
		*readerr = 1;
		return DKIM_STAT_NORESOURCE;
	}
	while ((n = pxdkim_host->message_read(txn, off, buf, READ_CHUNK)) > 0) {
		off += (size_t)n;
		if ((st = dkim_chunk(d, buf, (size_t)n)) != DKIM_STAT_OK)
			break;
	}
	free(buf);
	if (n < 0) {
		*readerr = 1;
		return DKIM_STAT_INTERNAL;
	}
	return st == DKIM_STAT_OK ? dkim_chunk(d, NULL, 0) : st;
}

DKIM_CBSTAT pxdkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	const struct pxdkim_conf *c = dkim_get_user_context(dkim);

	for (int i = 0; c != NULL && i < nsigs; i++)
		if (i >= c->max_signatures)
			dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
}

/* judge_rfc8301 - the algorithm and key rules; 1 when they decided */
static int judge_rfc8301(const struct pxdkim_conf *c, DKIM_SIGINFO *s, struct judgement *j)
{
	dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
	unsigned bits = 0;
	int have_bits = dkim_sig_getkeysize(s, &bits) == DKIM_STAT_OK;

	(void)dkim_sig_getsignalg(s, &alg);
	if (alg == DKIM_SIGN_RSASHA1) {
		j->result = "fail";
		snprintf(j->reason, sizeof(j->reason), "rsa-sha1 is not acceptable (RFC 8301)");
		return 1;
	}
	if (dkim_sig_geterror(s) == DKIM_SIGERROR_KEYTOOSMALL ||
	    (alg == DKIM_SIGN_RSASHA256 && have_bits && bits > 0 &&
	     (long long)bits < c->min_key_bits)) {
		j->result = "fail";
		if (have_bits && bits > 0)
			snprintf(j->reason, sizeof(j->reason),
				 "key too small: %u bits, at least %lld required (RFC 8301)",
				 bits, c->min_key_bits);
		else
			snprintf(j->reason, sizeof(j->reason),
				 "key too small: at least %lld bits required (RFC 8301)",
				 c->min_key_bits);
		return 1;
	}
	return 0;
}

/* judge_error - a signature that did not pass, by its error */
static void judge_error(DKIM_SIGINFO *s, struct judgement *j)
{
	int err = dkim_sig_geterror(s);
	const char *why = NULL;

	j->result = "permerror";
	switch (err) {
	case DKIM_SIGERROR_BADSIG:
		j->result = "fail";
		why = dkim_sig_getbh(s) == DKIM_SIGBH_MISMATCH ? "body hash did not verify"
			: "signature did not verify";
		break;
	case DKIM_SIGERROR_OK:
		if (dkim_sig_getbh(s) == DKIM_SIGBH_MISMATCH) {
			j->result = "fail";
			why = "body hash did not verify";
		} else {
			j->result = "neutral";
			why = (dkim_sig_getflags(s) & DKIM_SIGFLAG_PROCESSED) ? "not verified"
				: "not processed";
		}
		break;
	case DKIM_SIGERROR_KEYFAIL:
		j->result = "temperror";
		why = "key lookup failed";
		break;
	case DKIM_SIGERROR_NOKEY:
		why = "no key for signature";
		break;
	case DKIM_SIGERROR_KEYREVOKED:
		why = "key revoked";
		break;
	case DKIM_SIGERROR_MBSFAILED:
		j->result = "policy";
		break;
	case DKIM_SIGERROR_UNKNOWN:
		j->result = "neutral";
		break;
	default:
		break;
	}
	if (why == NULL)
		why = dkim_sig_geterrorstr(err);
	snprintf(j->reason, sizeof(j->reason), "%s", why ? why : "unknown error");
}

static void judge(const struct pxdkim_conf *c, DKIM_SIGINFO *s, struct judgement *j)
{
	j->reason[0] = '\0';
	if (judge_rfc8301(c, s, j))
		return;
	if (DKIM_SIG_CHECK(s)) {
		j->result = "pass";
		return;
	}
	judge_error(s, j);
}

/* is_token_char - may c stand in an unquoted A-R value (RFC 2045 token)? */
static int is_token_char(unsigned char ch)
{
	return ch > ' ' && ch < 0x7f && strchr("()<>@,;:\\\"/[]?=", ch) == NULL;
}

/* put_value - " ptype.prop=value", quoted when it needs to be; untrusted text */
static void put_value(char *out, size_t outlen, const char *prop, const char *v)
{
	size_t n = strlen(out), i;
	int quote = *v == '\0';

	for (i = 0; v[i] != '\0'; i++)
		if (!is_token_char((unsigned char)v[i]))
			quote = 1;
	n += (size_t)snprintf(out + n, n < outlen ? outlen - n : 0, "%s%s=%s", n ? " " : "",
			      prop, quote ? "\"" : "");
	for (i = 0; v[i] != '\0' && n + 3 < outlen; i++) {
		unsigned char ch = (unsigned char)v[i];

		if (ch < ' ' || ch >= 0x7f)
			continue;
		if (ch == '"' || ch == '\\')
			out[n++] = '\\';
		out[n++] = (char)ch;
	}
	if (quote && n + 1 < outlen)
		out[n++] = '"';
	if (n < outlen)
		out[n] = '\0';
}

/* b_prefix - the first 8 base64 characters of b= (FWS removed) */
static void b_prefix(DKIM_SIGINFO *s, char out[9])
{
	const unsigned char *b = dkim_sig_gettagvalue(s, 0, (unsigned char *)"b");
	size_t n = 0;

	for (; b != NULL && *b != '\0' && n < 8; b++)
		if (isalnum(*b) || *b == '+' || *b == '/')
			out[n++] = (char)*b;
	out[n] = '\0';
}

/* record_sig - one signature's result and its log line */
static void record_sig(const struct pxdkim_conf *c, struct px_txn *txn, DKIM_SIGINFO *s)
{
	const struct px_host *h = pxdkim_host;
	const char *d = (const char *)dkim_sig_getdomain(s);
	const char *sel = (const char *)dkim_sig_getselector(s);
	const unsigned char *a = dkim_sig_gettagvalue(s, 0, (unsigned char *)"a");
	struct judgement j;
	char b[9], props[768] = "";
	unsigned bits = 0;

	judge(c, s, &j);
	b_prefix(s, b);
	if (j.reason[0] != '\0')
		put_value(props, sizeof(props), "reason", j.reason);
	if (d != NULL)
		put_value(props, sizeof(props), "header.d", d);
	if (sel != NULL)
		put_value(props, sizeof(props), "header.s", sel);
	if (a != NULL)
		put_value(props, sizeof(props), "header.a", (const char *)a);
	if (b[0] != '\0')
		put_value(props, sizeof(props), "header.b", b);
	h->record(txn, "dkim", j.result, props);
	(void)dkim_sig_getkeysize(s, &bits);
	h->log(txn, PX_PRIO_INFO, "verify result=%s d=%s s=%s a=%s bits=%u%s%s%s", j.result,
	       d ? d : "-", sel ? sel : "-", a ? (const char *)a : "-", bits,
	       j.reason[0] ? " reason=\"" : "", j.reason, j.reason[0] ? "\"" : "");
}

/* has_signature_field - does the message carry a DKIM-Signature field? */
static int has_signature_field(struct px_txn *txn)
{
	size_t n = pxdkim_host->header_count(txn);

	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t nl, vl;

		if (pxdkim_host->header_at(txn, i, &name, &nl, &value, &vl) == 0 &&
		    nl == 14 && strncasecmp(name, "DKIM-Signature", 14) == 0)
			return 1;
	}
	return 0;
}

/* record_whole - one result for a message whose signatures could not be listed */
static void record_whole(struct px_txn *txn, DKIM *d, const char *result, const char *why)
{
	const char *e = dkim_geterror(d);
	char props[256] = "", reason[200];

	snprintf(reason, sizeof(reason), "%s%s%s", why, e && *e ? ": " : "", e ? e : "");
	put_value(props, sizeof(props), "reason", reason);
	pxdkim_host->record(txn, "dkim", result, props);
	pxdkim_host->log(txn, PX_PRIO_INFO, "verify result=%s %s", result, props);
}

void pxdkim_verify(const struct pxdkim_conf *c, struct px_txn *txn)
{
	const struct px_host *h = pxdkim_host;
	DKIM_STAT st;
	DKIM_SIGINFO **sigs = NULL;
	DKIM *d;
	int n = 0, readerr, ignored = 0;
	const char *sid = h->get(txn, "session.id");

	d = dkim_verify(c->lib, (const unsigned char *)(sid ? sid : "postern"), NULL, &st);
	if (d == NULL) {
		h->log(txn, PX_PRIO_ERR, "verify error=\"dkim_verify: %s\"",
		       dkim_getresultstr(st));
		h->record(txn, "dkim", "temperror", "reason=\"verifier unavailable\"");
		return;
	}
	(void)dkim_set_user_context(d, (void *)c);
	pxdkim_dns_bind(txn, c->dns_budget_ms);
	st = pxdkim_feed(txn, d, &readerr);
	if (st == DKIM_STAT_NOSIG) {
		h->record(txn, "dkim", "none", NULL);
	} else if (readerr) {
		record_whole(txn, d, "temperror", "message unreadable");
	} else {
		if (st == DKIM_STAT_OK)
			(void)dkim_eom(d, NULL);
		if (dkim_getsiglist(d, &sigs, &n) != DKIM_STAT_OK || n == 0) {
			if (has_signature_field(txn))
				record_whole(txn, d, "permerror", "signatures not usable");
			else
				h->record(txn, "dkim", "none", NULL);
		}
		for (int i = 0; i < n; i++) {
			if (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE)
				ignored++;
			else
				record_sig(c, txn, sigs[i]);
		}
		if (ignored > 0)
			h->log(txn, PX_PRIO_INFO, "verify signatures=%d ignored=%d "
			       "max_signatures=%lld", n, ignored, c->max_signatures);
	}
	pxdkim_dns_bind(NULL, 0);
	dkim_free(d);
}
