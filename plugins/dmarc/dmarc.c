/*
 * NAME
 *	dmarc - DMARC (RFC 7489) for Postern: verdict recorded, action by policy
 * SYNOPSIS
 *	plugin "spf"  { }                  # earlier in the chain: their results
 *	plugin "dkim" { }                  # are what DMARC judges
 *	plugin "dmarc" {
 *	    report_log   = "/var/lib/postern/dmarc.jsonl"
 *	    skip_trusted = no
 *	}
 *	policy {
 *	    actions = { "dmarc-policy=reject reject",
 *	                "dmarc-policy=quarantine quarantine" }
 *	}
 * DESCRIPTION
 *	At the end of DATA: the RFC5322.From domain (from.c), its policy
 *	record with the organisational-domain fallback (record.c), the SPF
 *	and DKIM results recorded earlier and their alignment (eval.c),
 *	then the verdict. libopendmarc parses the record and selects p or
 *	sp; alignment and pct are ours, because libopendmarc 1.4.2 gets
 *	strict and public-suffix alignment wrong and never applies pct.
 *
 *	The plugin refuses nothing itself (it answers PX_NEXT): it records
 *	  dmarc=pass|fail|none|temperror|permerror
 *	      [reason="..."] header.from=DOMAIN policy.dmarc=reject|quarantine|none
 *	(for Authentication-Results; policy.dmarc is what the domain
 *	publishes for this From), and, when DMARC fails,
 *	  dmarc-policy=reject|quarantine|none  header.from=DOMAIN
 *	(what that policy asks for this message, after pct), and sets the
 *	reply a policy rule refusing the message would send. The policy
 *	(policy.actions, overrides, monitor mode) turns them into actions.
 *	With report_log, each message that met a record (pass or fail)
 *	adds one JSON line there (report.c).
 * DIAGNOSTICS
 *	SID plugin=dmarc result=R from=D record=NAME policy=P disposition=X
 *	    pct=N sampled=yes|no dkim=pass|fail spf=pass|fail
 *	SID plugin=dmarc result=permerror|temperror|none reason="..."
 *	SID plugin=dmarc report_log=PATH error="..."
 */
#include "dmarc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include <netinet/in.h>
#include <opendmarc/dmarc.h>

#define DEFAULT_PSL "/usr/share/publicsuffix/public_suffix_list.dafsa"

const struct px_host *dm_host;

struct dm_conf {
	/* options */
	const char *psl_file;
	const char *report_log;
	long long pct_draw;       /* -1: random; 0..99: fixed (tests) */
	int skip_trusted;         /* no verdict for trusted_networks' mail */
	/* derived, by configure */
	psl_ctx_t *psl;
	int report_open;          /* report_fd is ours */
	int report_fd;
};

static const struct px_option dm_options[] = {
	{ "psl_file", PX_OPT_STRING, NULL, 0, 0, offsetof(struct dm_conf, psl_file),
	  "public suffix list (.dafsa or .dat); default: libpsl's, Debian package publicsuffix" },
	{ "report_log", PX_OPT_STRING, NULL, 0, 0, offsetof(struct dm_conf, report_log),
	  "append one JSON line per evaluated message here, for aggregate reports" },
	{ "pct_draw", PX_OPT_INT, "-1", -1, 99, offsetof(struct dm_conf, pct_draw),
	  "pct sampling: -1 draws at random; N applies the policy when N < pct (tests)" },
	{ "skip_trusted", PX_OPT_BOOL, "no", 0, 0, offsetof(struct dm_conf, skip_trusted),
	  "no evaluation for clients in trusted_networks (get(\"client.trusted\"), ABI 1.3)" },
	{ 0 }
};

/* The facts of one evaluation, for what is recorded, logged and reported */
struct verdict {
	const char *result;       /* pass fail none temperror permerror */
	const char *reason;       /* for A-R reason=, or NULL */
	const char *from;         /* the From domain, or NULL */
	const char *policy;       /* published p/sp for this From, or NULL */
	const char *disposition;  /* fail: after pct */
	int sampled;
};

/* ------------------------------------------------------------ helpers --- */

/* policy_word - libopendmarc's p/sp letter */
static const char *policy_word(int p)
{
	switch (p) {
	case DMARC_RECORD_P_REJECT: return "reject";
	case DMARC_RECORD_P_QUARANTINE: return "quarantine";
	case DMARC_RECORD_P_NONE: return "none";
	default: return NULL;
	}
}

/* quotable - a copy fit for an RFC 8601 quoted-string (no '"' nor '\') */
static char *quotable(struct px_txn *txn, const char *s)
{
	size_t n = strlen(s), i;
	char *c = dm_host->alloc(txn, n + 1);

	if (c == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		c[i] = (s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20) ? '\'' : s[i];
	return c;
}

/* record_verdict - what the policy and Authentication-Results get */
static void record_verdict(struct px_txn *txn, const struct verdict *v)
{
	const char *reason = v->reason ? quotable(txn, v->reason) : NULL;
	size_t len = 64 + (reason ? strlen(reason) : 0) + 2 * DM_DOMAIN_MAX;
	char *props = dm_host->alloc(txn, len), *dprops = dm_host->alloc(txn, len);
	int n = 0;

	if (props == NULL || dprops == NULL) {
		dm_host->record(txn, "dmarc", v->result, NULL);
		return;
	}
	if (reason != NULL)
		n += snprintf(props + n, len - (size_t)n, "reason=\"%s\"", reason);
	if (v->from != NULL)
		n += snprintf(props + n, len - (size_t)n, "%sheader.from=%s", n ? " " : "", v->from);
	if (v->policy != NULL)
		snprintf(props + n, len - (size_t)n, "%spolicy.dmarc=%s", n ? " " : "", v->policy);
	dm_host->record(txn, "dmarc", v->result, props);
	if (v->disposition != NULL) {
		snprintf(dprops, len, "header.from=%s", v->from);
		dm_host->record(txn, "dmarc-policy", v->disposition, dprops);
	}
}

/* reply_for - the reply a refusing rule sends (take_reply keeps it only
 * when its class fits the action) */
static void reply_for(struct px_txn *txn, const struct verdict *v)
{
	char text[400];

	if (strcmp(v->result, "fail") == 0) {
		snprintf(text, sizeof(text), "Message refused: the DMARC policy of %s "
			 "(p=%s) does not authorize it", v->from, v->policy ? v->policy : "?");
		dm_host->set_reply(txn, 550, "5.7.1", text);
	} else if (strcmp(v->result, "temperror") == 0) {
		snprintf(text, sizeof(text), "Temporary failure looking up the DMARC policy%s%s",
			 v->from ? " of " : "", v->from ? v->from : "");
		dm_host->set_reply(txn, 451, "4.4.3", text);
	} else if (strcmp(v->result, "permerror") == 0) {
		snprintf(text, sizeof(text), "Message refused: DMARC: %s", v->reason);
		dm_host->set_reply(txn, 550, "5.7.1", text);
	}
}

/* finish - record, reply, log */
static enum px_verdict finish(struct px_txn *txn, const struct verdict *v, const char *where)
{
	record_verdict(txn, v);
	reply_for(txn, v);
	if (v->reason != NULL)
		dm_host->log(txn, PX_PRIO_INFO, "result=%s from=%s reason=\"%s\"", v->result,
			     v->from ? v->from : "-", v->reason);
	else if (v->disposition == NULL && strcmp(v->result, "pass") != 0)
		dm_host->log(txn, PX_PRIO_INFO, "result=%s from=%s record=%s", v->result,
			     v->from ? v->from : "-", where ? where : "-");
	return PX_NEXT;
}

/* draw - 0..99, uniform */
static int draw(const struct dm_conf *c)
{
	unsigned v;

	if (c->pct_draw >= 0)
		return (int)c->pct_draw;
	do {
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
			return 0;       /* no randomness: apply the policy */
	} while (v >= 4294967200u);     /* 4294967200 = 100 * 42949672 */
	return (int)(v % 100);
}

/* apply_pct - RFC 7489 6.6.4: a message pct does not select gets the
 * next policy down (reject -> quarantine -> none) */
static const char *apply_pct(const struct dm_conf *c, const char *disp, int pct, int *sampled)
{
	*sampled = 1;
	if (pct >= 100 || strcmp(disp, "none") == 0)
		return disp;
	if (draw(c) < pct)
		return disp;
	*sampled = 0;
	return strcmp(disp, "reject") == 0 ? "quarantine" : "none";
}

/* ------------------------------------------------------------ the hook --- */

/* report - the JSON line, when report_log is set */
static void report(const struct dm_conf *c, struct px_txn *txn, DMARC_POLICY_T *pctx,
		   const struct verdict *v, const struct dm_record *rec, const struct dm_eval *e,
		   int pct, int p, int sp, int adkim, int aspf)
{
	char adk[2] = { (char)adkim, 0 }, asp[2] = { (char)aspf, 0 };
	const char *mf = dm_host->get(txn, "mail.from"), *at = mf ? strrchr(mf, '@') : NULL;
	struct dm_report r = {
		.session = dm_host->get(txn, "session.id"),
		.source_ip = dm_host->get(txn, "client.addr"),
		.envelope_from = at ? at + 1 : (mf && *mf ? mf : NULL),
		.header_from = v->from,
		.policy_domain = rec->where + strlen("_dmarc."),
		.result = v->result, .policy = v->policy, .p = policy_word(p), .sp = policy_word(sp),
		.disposition = v->disposition ? v->disposition : "none",
		.adkim = adk, .aspf = asp, .pct = pct, .sampled = v->sampled,
		.rua = (const char *const *)opendmarc_policy_fetch_rua(pctx, NULL, 0, 1),
		.eval = e,
	};

	if (c->report_open && dm_report_write(c->report_fd, &r) < 0)
		dm_host->log(txn, PX_PRIO_WARN, "report_log=%s error=\"%s\"", c->report_log,
			     strerror(errno));
}

/* judge - a record was found: parse it, align, decide */
static enum px_verdict judge(const struct dm_conf *c, struct px_txn *txn, const char *from,
			     const char *org, const struct dm_record *rec)
{
	const char *ip = dm_host->get(txn, "client.addr");
	DMARC_POLICY_T *pctx = opendmarc_policy_connect_init((u_char *)(ip ? ip : "0.0.0.0"),
							     ip && strchr(ip, ':') ? 1 : 0);
	struct verdict v = { .from = from };
	struct dm_eval e;
	int rc, pct = 100, p = 0, sp = 0, adkim = 'r', aspf = 'r', pol;
	char why[200];

	if (pctx == NULL) {
		v.result = "temperror";
		v.reason = "out of memory";
		return finish(txn, &v, rec->where);
	}
	opendmarc_policy_store_from_domain(pctx, (u_char *)from);
	/* the From domain, never the org domain: store_dmarc copies it over
	 * the From domain it was given (libraries.md 3.5) */
	rc = opendmarc_policy_store_dmarc(pctx, (u_char *)rec->text, (u_char *)from,
					  rec->at_org ? (u_char *)org : NULL);
	if (rc != DMARC_PARSE_OKAY) {
		snprintf(why, sizeof(why), "invalid DMARC record at %s: %s", rec->where,
			 opendmarc_policy_status_to_str(rc));
		v.result = "permerror";
		v.reason = why;
		finish(txn, &v, rec->where);
		opendmarc_policy_connect_shutdown(pctx);
		return PX_NEXT;
	}
	opendmarc_policy_fetch_pct(pctx, &pct);
	opendmarc_policy_fetch_p(pctx, &p);
	opendmarc_policy_fetch_sp(pctx, &sp);
	opendmarc_policy_fetch_adkim(pctx, &adkim);
	opendmarc_policy_fetch_aspf(pctx, &aspf);
	pol = opendmarc_get_policy_token_used(pctx) == DMARC_USED_POLICY_IS_SP ? sp : p;
	v.policy = policy_word(pol);
	dm_eval_collect(txn, c->psl, from, org, adkim == DMARC_RECORD_A_STRICT,
			aspf == DMARC_RECORD_A_STRICT, &e);
	if (e.dkim_aligned_pass || e.spf_aligned_pass) {
		v.result = "pass";
		v.sampled = 1;
	} else {
		/* nothing aligned stored: the library's own (buggy) alignment
		 * cannot pass it, and it picks p or sp */
		rc = opendmarc_get_policy_to_enforce(pctx);
		v.result = "fail";
		v.disposition = rc == DMARC_POLICY_REJECT ? "reject" :
				rc == DMARC_POLICY_QUARANTINE ? "quarantine" : "none";
		v.disposition = apply_pct(c, v.disposition, pct, &v.sampled);
	}
	finish(txn, &v, rec->where);
	dm_host->log(txn, PX_PRIO_INFO, "result=%s from=%s record=%s policy=%s disposition=%s "
		     "pct=%d sampled=%s dkim=%s spf=%s", v.result, from, rec->where,
		     v.policy ? v.policy : "-", v.disposition ? v.disposition : "-", pct,
		     v.sampled ? "yes" : "no", e.dkim_aligned_pass ? "pass" : "fail",
		     e.spf_aligned_pass ? "pass" : "fail");
	report(c, txn, pctx, &v, rec, &e, pct, p, sp, adkim, aspf);
	opendmarc_policy_connect_shutdown(pctx);
	return PX_NEXT;
}

/* dm_data_end - From, record, verdict */
static enum px_verdict dm_data_end(const void *conf, struct px_txn *txn)
{
	const struct dm_conf *c = conf;
	struct verdict v = { 0 };
	struct dm_record rec;
	char from[DM_DOMAIN_MAX], why[DM_DOMAIN_MAX + 80];
	const char *org;
	const char *trusted = dm_host->get(txn, "client.trusted");
	enum dm_from_status fs;
	enum px_verdict rv;

	if (c->skip_trusted && trusted != NULL && strcmp(trusted, "yes") == 0) {
		dm_host->log(txn, PX_PRIO_DEBUG, "skipped=trusted");
		return PX_NEXT;
	}
	fs = dm_from_domain(txn, from, sizeof(from));
	if (fs != DM_FROM_OK) {
		v.result = "permerror";
		v.reason = dm_from_reason(fs);
		return finish(txn, &v, NULL);
	}
	v.from = from;
	org = psl_registrable_domain(c->psl, from);
	dm_record_fetch(txn, from, org, &rec);
	switch (rec.status) {
	case DM_REC_FOUND:
		rv = judge(c, txn, from, org, &rec);
		dm_record_free(&rec);
		return rv;
	case DM_REC_TEMPFAIL:
		snprintf(why, sizeof(why), "DNS lookup of %s failed", rec.where);
		v.result = "temperror";
		v.reason = why;
		break;
	case DM_REC_MULTIPLE:
		snprintf(why, sizeof(why), "several DMARC records at %s", rec.where);
		v.result = "none";
		v.reason = why;
		break;
	default:
		v.result = "none";
	}
	dm_record_free(&rec);
	return finish(txn, &v, rec.where);
}

/* --------------------------------------------------------- life cycle --- */

static OPENDMARC_LIB_T dm_lib;     /* libopendmarc keeps a pointer to it */

/* dm_load - once per process: the 1.2 services, the library */
static int dm_load(const struct px_host *h, char *err, size_t errlen)
{
	if (h->abi_major != PX_ABI_MAJOR || h->abi_minor < 2 || h->dns_query == NULL ||
	    h->result_at == NULL) {
		snprintf(err, errlen, "host ABI %u.%u lacks dns_query/result_at (ABI 1.2)",
			 h->abi_major, h->abi_minor);
		return -1;
	}
	dm_host = h;
	/* no TLD file: the library never looks up organisational domains
	 * here (we give it ours), nor aligns anything that could pass */
	memset(&dm_lib, 0, sizeof(dm_lib));
	dm_lib.tld_type = OPENDMARC_TLD_TYPE_NONE;
	if (opendmarc_policy_library_init(&dm_lib) != DMARC_PARSE_OKAY) {
		snprintf(err, errlen, "opendmarc_policy_library_init failed");
		return -1;
	}
	return 0;
}

static void dm_unload(void)
{
	opendmarc_policy_library_shutdown(&dm_lib);
}

/* dm_unconfigure - the generation is gone */
static void dm_unconfigure(void *conf)
{
	struct dm_conf *c = conf;

	if (c->psl != NULL)
		psl_free(c->psl);
	c->psl = NULL;
	if (c->report_open)
		close(c->report_fd);
	c->report_open = 0;
}

/* dm_configure - the list, the report file */
static int dm_configure(void *conf, char *err, size_t errlen)
{
	struct dm_conf *c = conf;
	const char *psl = c->psl_file;

	if (psl == NULL || *psl == '\0')
		psl = psl_dist_filename() && *psl_dist_filename() ? psl_dist_filename() : DEFAULT_PSL;
	if ((c->psl = psl_load_file(psl)) == NULL) {
		snprintf(err, errlen, "psl_file: cannot load the public suffix list %s "
			 "(Debian package publicsuffix)", psl);
		return -1;
	}
	if (c->report_log != NULL && *c->report_log != '\0') {
		c->report_fd = open(c->report_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (c->report_fd < 0) {
			snprintf(err, errlen, "report_log: %s: %s", c->report_log, strerror(errno));
			dm_unconfigure(c);
			return -1;
		}
		c->report_open = 1;
	}
	dm_host->log(NULL, PX_PRIO_INFO, "configured psl_file=%s report_log=%s pct_draw=%lld "
		     "skip_trusted=%s", psl, c->report_log ? c->report_log : "-", c->pct_draw,
		     c->skip_trusted ? "yes" : "no");
	return 0;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "dmarc",
	.version = "1.0",
	.description = "DMARC (RFC 7489): records dmarc= and dmarc-policy= for the policy",
	.options = dm_options,
	.conf_size = sizeof(struct dm_conf),
	.load = dm_load,
	.configure = dm_configure,
	.unconfigure = dm_unconfigure,
	.unload = dm_unload,
	.on_data_end = dm_data_end,
};
