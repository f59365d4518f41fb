/*
 * NAME
 *	spf - Postern's SPF plugin (RFC 7208), on libspf2
 * SUMMARY
 *	Checks the MAIL FROM identity at MAIL (the HELO identity for the null
 *	sender, and optionally as a result of its own), records the result
 *	for the policy and for Authentication-Results, refuses on fail and
 *	defers on temperror by default, and can add Received-SPF.
 * SYNOPSIS
 *	plugin "spf" {
 *	    explanation        = "%{o} does not designate %{i} as a permitted sender"
 *	    received_spf       = no
 *	    helo_check         = no
 *	    skip_authenticated = yes
 *	    skip_trusted       = no
 *	    max_void_lookups   = 2
 *	    max_macros         = 16
 *	}
 * DESCRIPTION
 *	Results, recorded as method "spf" (so the policy matches "spf=RESULT"):
 *	    pass fail softfail neutral none temperror permerror
 *	with props "smtp.mailfrom=DOMAIN", or "smtp.helo=NAME" for the HELO
 *	identity. The plugin's own verdict, for the MAIL FROM identity (the
 *	HELO identity for the null sender), is the default mapping:
 *	    fail       reject    550 5.7.23 SPF: <explanation>
 *	    temperror  tempfail  451 4.7.24 (RFC 7372)
 *	    others     next
 *	and a rule in policy.actions replaces it ("spf=fail tag",
 *	"spf=softfail quarantine", "spf=permerror reject": the reply set here,
 *	550 5.7.23 for softfail and 550 5.7.24 for permerror, is then used).
 *
 *	libspf2's traps (doc/plugins/spf.md): its DNS errors and syntax errors
 *	come back as "invalid" and are mapped to temperror / permerror here;
 *	its SPF_error() aborts the process, so our handler jumps back to the
 *	check instead (which ends in temperror); its default explanation
 *	names the dead openspf.org, so ours is set; a loopback client always
 *	passes in libspf2. The DNS layer (spf_dns.c) adds the void-lookup
 *	limit and the CVE-2023-42118 screen.
 * BUILD
 *	Against <postern/plugin.h> only, and -lspf2 (Makefile.am).
 */
#include "spf_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The host's services; set once by load(), read-only afterwards. */
static const struct px_host *host;

struct spf_conf {
	/* options */
	const char *explanation;
	int received_spf;
	int helo_check;
	int skip_authenticated;
	int skip_trusted;
	long long max_void_lookups;
	long long max_macros;

	/* derived state (configure) */
	SPF_dns_server_t *dns;
	SPF_server_t *server;
};

static const struct px_option spf_options[] = {
	{ "explanation", PX_OPT_STRING, "%{o} does not designate %{i} as a permitted sender",
	  0, 0, offsetof(struct spf_conf, explanation),
	  "text of a fail when the domain gives no exp= (SPF macros allowed)" },
	{ "received_spf", PX_OPT_BOOL, "no", 0, 0, offsetof(struct spf_conf, received_spf),
	  "add a Received-SPF header field per identity checked" },
	{ "helo_check", PX_OPT_BOOL, "no", 0, 0, offsetof(struct spf_conf, helo_check),
	  "also check and record the HELO identity when the sender is not null" },
	{ "skip_authenticated", PX_OPT_BOOL, "yes", 0, 0,
	  offsetof(struct spf_conf, skip_authenticated),
	  "no check for clients that authenticated (SMTP AUTH, XCLIENT LOGIN)" },
	{ "skip_trusted", PX_OPT_BOOL, "no", 0, 0, offsetof(struct spf_conf, skip_trusted),
	  "no check for clients in trusted_networks (get(\"client.trusted\"), ABI 1.3)" },
	{ "max_void_lookups", PX_OPT_INT, "2", 0, 100, offsetof(struct spf_conf, max_void_lookups),
	  "void DNS answers allowed per check before permerror (RFC 7208 4.6.4)" },
	{ "max_macros", PX_OPT_INT, "16", 1, 1000, offsetof(struct spf_conf, max_macros),
	  "macros (%{) allowed in one record before permerror (CVE-2023-42118)" },
	{ 0 }
};

enum identity { ID_MAILFROM, ID_HELO };

/* outcome - what one check found */
struct outcome {
	int done;                  /* a check ran */
	enum identity id;
	SPF_result_t result;       /* never INVALID */
	char domain[256];          /* the identity's domain (A-R props) */
	char expl[256];            /* fail/softfail: the explanation; errors: why */
	char received[768];        /* the Received-SPF value */
};

/* session - behind slot(): this transaction's Received-SPF values */
struct session {
	char *received[2];
};

/* ---------------------------------------------------- libspf2 logging --- */

/*
 * libspf2 logs through four global function pointers. The error handler
 * must not return (libspf2 goes on as if it had aborted): it jumps back to
 * the start of the check in progress (spf_check_run / guarded calls in
 * configure), which ends in temperror. The memory libspf2 held at that
 * moment is lost; the process lives.
 */
__attribute__((noreturn)) static void on_spf_error(const char *file, int line, const char *msg)
{
	struct spf_check *ck = spf_current;

	if (host != NULL)
		host->log(ck ? ck->txn : NULL, PX_PRIO_ERR,
			  "libspf2 error=\"%s\" at=%s:%d action=abandon-check", msg ? msg : "",
			  file ? file : "?", line);
	if (ck != NULL && ck->abort_jmp != NULL)
		longjmp(*ck->abort_jmp, 1);
	/* Not reached: every call into libspf2 runs with a jump target set.
	 * Ending the thread keeps the process (the host replaces a stuck worker). */
	pthread_exit(NULL);
}

static void on_spf_warning(const char *file, int line, const char *msg)
{
	struct spf_check *ck = spf_current;

	(void)file;
	(void)line;
	if (host != NULL)
		host->log(ck ? ck->txn : NULL, PX_PRIO_DEBUG, "libspf2 warning=\"%s\"",
			  msg ? msg : "");
}

static void on_spf_debug(const char *file, int line, const char *msg)
{
	(void)file;
	(void)line;
	(void)msg;
}

/* ------------------------------------------------------------ helpers --- */

/* result_name - RFC 7208 / RFC 8601 words */
static const char *result_name(SPF_result_t r)
{
	switch (r) {
	case SPF_RESULT_PASS: return "pass";
	case SPF_RESULT_FAIL: return "fail";
	case SPF_RESULT_SOFTFAIL: return "softfail";
	case SPF_RESULT_NEUTRAL: return "neutral";
	case SPF_RESULT_NONE: return "none";
	case SPF_RESULT_TEMPERROR: return "temperror";
	default: return "permerror";
	}
}

/* clean_copy - s as one line of printable ASCII, at most outlen-1 bytes */
static void clean_copy(char *out, size_t outlen, const char *s)
{
	size_t o = 0;

	for (; s != NULL && *s != '\0' && o + 1 < outlen; s++)
		out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	out[o] = '\0';
}

/*
 * upper_escapes - "%3d" as "%3D": libspf2 URL-escapes macros (RFC 7208
 * 7.3) with lower-case hex digits; RFC 3986 2.1 asks for upper case.
 */
static void upper_escapes(char *s)
{
	for (; s[0] && s[1] && s[2]; s++)
		if (s[0] == '%' && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
			s[1] = (char)toupper((unsigned char)s[1]);
			s[2] = (char)toupper((unsigned char)s[2]);
			s += 2;
		}
}

/* labels_ok - a domain of at least two labels of 1..63 octets, 253 at most */
static int labels_ok(const char *d)
{
	size_t len = 0, labels = 0;

	for (const char *p = d;; p++) {
		if (*p == '.' || *p == '\0') {
			if (len == 0) {
				if (*p == '\0' && labels > 0)
					break;      /* a trailing dot is allowed */
				return 0;
			}
			if (len > 63)
				return 0;
			labels++;
			len = 0;
			if (*p == '\0')
				break;
		} else {
			len++;
		}
	}
	return labels >= 2 && strlen(d) <= 253;
}

/*
 * identity_domain - the domain check_host() would start from (RFC 7208
 * 4.3): the part after the last '@', or the HELO name; 0 when it is a
 * domain at all (not a literal, an FQDN with labels of 1..63 octets),
 * else -1: the result is then "none" without a lookup.
 */
static int identity_domain(const char *ident, char *out, size_t outlen)
{
	const char *at = strrchr(ident, '@');
	const char *d = at ? at + 1 : ident;

	if (*d == '\0' || *d == '[' || strlen(d) >= outlen)
		return -1;
	snprintf(out, outlen, "%s", d);
	return labels_ok(out) ? 0 : -1;
}

/* prop_value - a props value as a dot-atom, or quoted when it is not one */
static void prop_value(char *out, size_t outlen, const char *v)
{
	size_t o = 0;
	int atom = *v != '\0';

	for (const char *p = v; *p; p++)
		if (!(isalnum((unsigned char)*p) || strchr("!#$%&'*+-/=?^_`{|}~.@", *p)))
			atom = 0;
	if (atom) {
		clean_copy(out, outlen, v);
		return;
	}
	out[o++] = '"';
	for (const char *p = v; *p && o + 3 < outlen; p++) {
		if (*p == '"' || *p == '\\')
			out[o++] = '\\';
		out[o++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* ------------------------------------------------------------- checks --- */

/* received_comment - the comment of Received-SPF (RFC 7208 9.1) */
static void received_comment(char *out, size_t outlen, const struct outcome *o,
			     const char *me, const char *ip)
{
	const char *d = o->domain[0] ? o->domain : "unknown";

	switch (o->result) {
	case SPF_RESULT_PASS:
		snprintf(out, outlen, "%s: domain of %s designates %s as permitted sender", me, d, ip);
		break;
	case SPF_RESULT_FAIL:
		snprintf(out, outlen, "%s: domain of %s does not designate %s as permitted sender",
			 me, d, ip);
		break;
	case SPF_RESULT_SOFTFAIL:
		snprintf(out, outlen, "%s: domain of transitioning %s does not designate %s as "
			 "permitted sender", me, d, ip);
		break;
	case SPF_RESULT_NEUTRAL:
		snprintf(out, outlen, "%s: %s is neither permitted nor denied by domain of %s", me,
			 ip, d);
		break;
	case SPF_RESULT_NONE:
		snprintf(out, outlen, "%s: domain of %s does not designate permitted sender hosts",
			 me, d);
		break;
	case SPF_RESULT_TEMPERROR:
		snprintf(out, outlen, "%s: temporary error in processing during lookup of %s", me, d);
		break;
	default:
		snprintf(out, outlen, "%s: permanent error in processing domain of %s", me, d);
	}
}

/* make_received - the Received-SPF value for o */
static void make_received(struct outcome *o, struct px_txn *txn, const char *ip,
			  const char *helo, const char *ident)
{
	const char *me = host->get(txn, "hostname");
	char comment[384], from[300], h[300], who[260];

	clean_copy(who, sizeof(who), me ? me : "postern");
	received_comment(comment, sizeof(comment), o, who, ip);
	prop_value(from, sizeof(from), ident);
	prop_value(h, sizeof(h), helo && *helo ? helo : "unknown");
	snprintf(o->received, sizeof(o->received),
		 "%s (%s) client-ip=%s; envelope-from=%s; helo=%s; receiver=%s; identity=%s;",
		 result_name(o->result), comment, ip, from, h, who,
		 o->id == ID_HELO ? "helo" : "mailfrom");
}

/*
 * map_result - libspf2's answer, and what our DNS layer saw, as an
 * RFC 7208 result. libspf2 says INVALID for DNS errors (SPF_E_DNS_ERROR)
 * and for syntax errors; our layer knows of void lookups past the limit,
 * screened records, and lookups that failed temporarily.
 */
static SPF_result_t map_result(const struct spf_check *ck, SPF_result_t r, SPF_errcode_t err)
{
	if (ck->void_exceeded || ck->screened || ck->syntax_error || ck->mx_limit)
		return SPF_RESULT_PERMERROR;
	if (ck->tempfail_mech)
		return SPF_RESULT_TEMPERROR;   /* a mechanism could not be evaluated */
	if (r == SPF_RESULT_INVALID)
		return err == SPF_E_DNS_ERROR || ck->tempfail ? SPF_RESULT_TEMPERROR
							      : SPF_RESULT_PERMERROR;
	return r;
}

/* error_why - why the result is an error, for the reply and the log */
static void error_why(const struct spf_check *ck, SPF_errcode_t err, struct outcome *o)
{
	if (ck->screened)
		snprintf(o->expl, sizeof(o->expl), "record of %s has more than %lld macros",
			 ck->screened_name, ck->max_macros);
	else if (ck->syntax_error)
		snprintf(o->expl, sizeof(o->expl), "invalid SPF record: %s", ck->problem);
	else if (ck->mx_limit)
		snprintf(o->expl, sizeof(o->expl), "more than 10 MX names");
	else if (ck->void_exceeded)
		snprintf(o->expl, sizeof(o->expl), "more than %lld void DNS lookups",
			 ck->max_void);
	else if (o->result == SPF_RESULT_TEMPERROR)
		snprintf(o->expl, sizeof(o->expl), "DNS lookup failed");
	else
		clean_copy(o->expl, sizeof(o->expl), SPF_strerror(err));
}

/*
 * query - the libspf2 part of one check; every libspf2 call of a check is
 * here, under the jump target that spf_check_run set. Fills o->result
 * (raw), o->expl.
 */
static void query(const struct spf_conf *c, struct spf_check *ck, const char *ip, int v6,
		  const char *helo, const char *ident, struct outcome *o)
{
	SPF_request_t *req = SPF_request_new(c->server);
	SPF_response_t *resp = NULL;
	SPF_errcode_t err;
	SPF_result_t r;
	const char *e;

	if (req == NULL)
		longjmp(*ck->abort_jmp, 2);
	if ((v6 ? SPF_request_set_ipv6_str(req, ip) : SPF_request_set_ipv4_str(req, ip)) != 0 ||
	    (helo != NULL && *helo != '\0' && SPF_request_set_helo_dom(req, helo) != 0) ||
	    SPF_request_set_env_from(req, ident) != 0) {
		SPF_request_free(req);
		o->result = SPF_RESULT_NONE;   /* not an identity libspf2 can check */
		return;
	}
	err = SPF_request_query_mailfrom(req, &resp);
	r = resp ? SPF_response_result(resp) : SPF_RESULT_INVALID;
	o->result = map_result(ck, r, err);
	if (o->result == SPF_RESULT_FAIL || o->result == SPF_RESULT_SOFTFAIL) {
		e = resp ? SPF_response_get_explanation(resp) : NULL;
		clean_copy(o->expl, sizeof(o->expl), e);
		upper_escapes(o->expl);
	} else if (o->result == SPF_RESULT_TEMPERROR || o->result == SPF_RESULT_PERMERROR) {
		error_why(ck, err, o);
	}
	ck->host->log(ck->txn, PX_PRIO_DEBUG, "check identity=%s libspf2=%d err=%d lookups=%u "
		      "voids=%u result=%s", ident, (int)r, (int)err, ck->lookups, ck->voids,
		      result_name(o->result));
	if (resp != NULL)
		SPF_response_free(resp);
	SPF_request_free(req);
}

/*
 * spf_check_run - one check of one identity, with the jump target for
 * libspf2's errors set and our thread's check published to the DNS layer
 * for its span. A jump back (libspf2 error, out of memory) is temperror.
 */
static void spf_check_run(const struct spf_conf *c, struct px_txn *txn, int *dns_down,
			  const char *ip, int v6, const char *helo, const char *ident,
			  struct outcome *o)
{
	jmp_buf jb;
	struct spf_check ck;

	memset(&ck, 0, sizeof(ck));
	ck.host = host;
	ck.txn = txn;
	ck.max_void = c->max_void_lookups;
	ck.max_macros = c->max_macros;
	ck.dns_down = dns_down;
	ck.v6 = v6;
	ck.abort_jmp = &jb;
	spf_current = &ck;
	if (setjmp(jb) == 0) {
		query(c, &ck, ip, v6, helo, ident, o);
	} else {
		o->result = SPF_RESULT_TEMPERROR;
		snprintf(o->expl, sizeof(o->expl), "internal error in the SPF library");
	}
	spf_current = NULL;
}

/* check - one identity: "none" without libspf2 when it is no domain */
static void check(const struct spf_conf *c, struct px_txn *txn, int *dns_down, enum identity id,
		  const char *ip, int v6, const char *helo, const char *ident, struct outcome *o)
{
	o->done = 1;
	o->id = id;
	if (identity_domain(ident, o->domain, sizeof(o->domain)) < 0)
		o->result = SPF_RESULT_NONE;
	else if (*dns_down) {
		o->result = SPF_RESULT_TEMPERROR;  /* this call's DNS is down already */
		snprintf(o->expl, sizeof(o->expl), "DNS lookup failed");
	} else
		spf_check_run(c, txn, dns_down, ip, v6, helo, ident, o);
	if (o->domain[0] == '\0')
		clean_copy(o->domain, sizeof(o->domain), strrchr(ident, '@') ?
			   strrchr(ident, '@') + 1 : ident);
	make_received(o, txn, ip, helo, ident);
}

/* ---------------------------------------------------- results, replies --- */

/* record_outcome - spf=RESULT smtp.mailfrom=DOMAIN (or smtp.helo=NAME) */
static void record_outcome(struct px_txn *txn, const struct outcome *o, const char *helo)
{
	char v[300], props[320];

	prop_value(v, sizeof(v), o->id == ID_HELO ? helo : o->domain);
	snprintf(props, sizeof(props), "%s=%s", o->id == ID_HELO ? "smtp.helo" : "smtp.mailfrom",
		 v);
	host->record(txn, "spf", result_name(o->result), props);
	host->log(txn, PX_PRIO_INFO, "result=%s identity=%s domain=%s%s%s%s",
		  result_name(o->result), o->id == ID_HELO ? "helo" : "mailfrom", o->domain,
		  o->expl[0] ? " reason=\"" : "", o->expl, o->expl[0] ? "\"" : "");
}

/* set_reply_for - the reply for a result the policy may turn into a refusal; 1 if set */
static int set_reply_for(struct px_txn *txn, const struct outcome *o)
{
	char text[400];

	switch (o->result) {
	case SPF_RESULT_FAIL:
	case SPF_RESULT_SOFTFAIL:
		snprintf(text, sizeof(text), "SPF: %s", o->expl[0] ? o->expl : "sender not permitted");
		host->set_reply(txn, 550, "5.7.23", text);
		return 1;
	case SPF_RESULT_PERMERROR:
		snprintf(text, sizeof(text), "SPF: permanent error for %s: %s", o->domain, o->expl);
		host->set_reply(txn, 550, "5.7.24", text);
		return 1;
	case SPF_RESULT_TEMPERROR:
		snprintf(text, sizeof(text), "SPF: temporary error for %s: %s; try again later",
			 o->domain, o->expl);
		host->set_reply(txn, 451, "4.7.24", text);
		return 1;
	default:
		return 0;
	}
}

/* verdict - the default mapping, for the primary identity's result */
static enum px_verdict verdict(struct px_txn *txn, const struct outcome *primary,
			       const struct outcome *helo)
{
	/* the reply any policy action on these results would use */
	if (!set_reply_for(txn, primary) && helo->done)
		set_reply_for(txn, helo);
	switch (primary->result) {
	case SPF_RESULT_FAIL: return PX_REJECT;
	case SPF_RESULT_TEMPERROR: return PX_TEMPFAIL;
	default: return PX_NEXT;
	}
}

/* ------------------------------------------------------------ session --- */

static void session_clear(struct session *s)
{
	for (int i = 0; i < 2; i++) {
		free(s->received[i]);
		s->received[i] = NULL;
	}
}

/* keep_received - remember o's Received-SPF value for data-end */
static void keep_received(const struct spf_conf *c, struct px_txn *txn, const struct outcome *o,
			  int i)
{
	void **slot = host->slot(txn);
	struct session *s;

	if (!c->received_spf || !o->done)
		return;
	if (*slot == NULL)
		*slot = calloc(1, sizeof(struct session));
	if ((s = *slot) == NULL)
		return;
	free(s->received[i]);
	s->received[i] = strdup(o->received);
}

/* -------------------------------------------------------------- hooks --- */

/* client_ip - the client address for libspf2 into out (an IPv4-mapped
 * IPv6 address as IPv4): 4, 6, or 0 when it is no address */
static int client_ip(const char *ip, char *out, size_t outlen)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (inet_pton(AF_INET, ip, &a4) == 1) {
		snprintf(out, outlen, "%s", ip);
		return 4;
	}
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return 0;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		memcpy(&a4, &a6.s6_addr[12], 4);
		return inet_ntop(AF_INET, &a4, out, (socklen_t)outlen) ? 4 : 0;
	}
	snprintf(out, outlen, "%s", ip);
	return 6;
}

/*
 * spf_mail - MAIL FROM: check the sender's domain (the HELO name for the
 * null sender), and the HELO name too with helo_check.
 */
static enum px_verdict spf_mail(const void *conf, struct px_txn *txn)
{
	const struct spf_conf *c = conf;
	const char *addr = host->get(txn, "client.addr");
	const char *helo = host->get(txn, "helo");
	const char *from = host->get(txn, "mail.from");
	const char *trusted;
	struct outcome mf, he;
	char ip[INET6_ADDRSTRLEN];
	int fam, dns_down = 0;

	memset(&mf, 0, sizeof(mf));
	memset(&he, 0, sizeof(he));
	if (*host->slot(txn) != NULL)
		session_clear(*host->slot(txn));
	if (c->skip_authenticated && host->get(txn, "auth.login") != NULL) {
		host->log(txn, PX_PRIO_DEBUG, "skipped=authenticated");
		return PX_NEXT;
	}
	if (c->skip_trusted && (trusted = host->get(txn, "client.trusted")) != NULL &&
	    strcmp(trusted, "yes") == 0) {
		host->log(txn, PX_PRIO_DEBUG, "skipped=trusted");
		return PX_NEXT;
	}
	if (addr == NULL || from == NULL || (fam = client_ip(addr, ip, sizeof(ip))) == 0) {
		host->log(txn, PX_PRIO_WARN, "skipped=no-client-address");
		return PX_NEXT;
	}
	if (*from != '\0') {
		check(c, txn, &dns_down, ID_MAILFROM, ip, fam == 6, helo, from, &mf);
		record_outcome(txn, &mf, helo);
		keep_received(c, txn, &mf, 0);
		if (c->helo_check && helo != NULL && *helo != '\0' && !dns_down) {
			check(c, txn, &dns_down, ID_HELO, ip, fam == 6, helo, helo, &he);
			record_outcome(txn, &he, helo);
			keep_received(c, txn, &he, 1);
		}
		return verdict(txn, &mf, &he);
	}
	if (helo == NULL || *helo == '\0') {
		host->log(txn, PX_PRIO_INFO, "skipped=null-sender-without-helo");
		return PX_NEXT;
	}
	/* the null sender: the HELO identity stands for MAIL FROM (RFC 7208 2.4) */
	check(c, txn, &dns_down, ID_HELO, ip, fam == 6, helo, helo, &he);
	record_outcome(txn, &he, helo);
	keep_received(c, txn, &he, 1);
	return verdict(txn, &he, &mf);
}

/* spf_data_end - add the Received-SPF fields kept at MAIL */
static enum px_verdict spf_data_end(const void *conf, struct px_txn *txn)
{
	struct session *s = *host->slot(txn);

	(void)conf;
	if (s == NULL)
		return PX_NEXT;
	for (int i = 1; i >= 0; i--)       /* prepended: mailfrom ends up first */
		if (s->received[i] != NULL && host->add_header(txn, "Received-SPF",
							       s->received[i]) < 0)
			host->log(txn, PX_PRIO_WARN, "add_header=failed field=Received-SPF");
	session_clear(s);
	return PX_NEXT;
}

static void spf_reset(const void *conf, struct px_txn *txn)
{
	(void)conf;
	if (*host->slot(txn) != NULL)
		session_clear(*host->slot(txn));
}

static void spf_close(const void *conf, struct px_txn *txn)
{
	void **slot = host->slot(txn);

	(void)conf;
	if (*slot != NULL) {
		session_clear(*slot);
		free(*slot);
		*slot = NULL;
	}
}

/* --------------------------------------------------------- life cycle --- */

static int spf_load(const struct px_host *h, char *err, size_t errlen)
{
	if (h->abi_major != PX_ABI_MAJOR || h->abi_minor < 2 || h->dns_query == NULL ||
	    h->dns_free == NULL) {
		snprintf(err, errlen, "needs a host with ABI 1.2 and its resolver (dns_query); "
			 "this host has %u.%u", h->abi_major, h->abi_minor);
		return -1;
	}
	host = h;
	SPF_error_handler = on_spf_error;
	SPF_warning_handler = on_spf_warning;
	SPF_info_handler = on_spf_warning;
	SPF_debug_handler = on_spf_debug;
	return 0;
}

static void spf_unconfigure(void *conf)
{
	struct spf_conf *c = conf;

	if (c->server != NULL)
		SPF_server_free(c->server);
	if (c->dns != NULL)
		SPF_dns_free(c->dns);     /* SPF_server_free does not free it */
	c->server = NULL;
	c->dns = NULL;
}

/*
 * macro_text - the explanation option as libspf2 compiles it (malloc): it
 * parses the text like a record's term, so a space must be written "%_"
 * there; admins write plain spaces.
 */
static char *macro_text(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++) {
		if (*s == ' ') {
			*o++ = '%';
			*o++ = '_';
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
	return out;
}

/* build_server - the per-configuration SPF_server_t; 0, or -1 with err set */
static int build_server(struct spf_conf *c, char *err, size_t errlen)
{
	SPF_response_t *resp = NULL;
	SPF_errcode_t e;
	char *text;

	if ((c->dns = spf_dns_layer_new()) == NULL ||
	    (c->server = SPF_server_new_dns(c->dns, 0)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((text = macro_text(c->explanation ? c->explanation : "")) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	e = SPF_server_set_explanation(c->server, text, &resp);
	free(text);
	if (resp != NULL)
		SPF_response_free(resp);
	if (e != SPF_E_SUCCESS) {
		snprintf(err, errlen, "explanation '%s': %s", c->explanation ? c->explanation : "",
			 SPF_strerror(e));
		return -1;
	}
	return 0;
}

static int spf_configure(void *conf, char *err, size_t errlen)
{
	struct spf_conf *c = conf;
	struct spf_check ck;
	jmp_buf jb;
	int rc;

	memset(&ck, 0, sizeof(ck));
	ck.host = host;
	ck.abort_jmp = &jb;
	spf_current = &ck;
	if (setjmp(jb) == 0) {
		rc = build_server(c, err, errlen);
	} else {
		snprintf(err, errlen, "libspf2 failed to set up (see the log)");
		rc = -1;
	}
	spf_current = NULL;
	if (rc < 0) {
		spf_unconfigure(c);
		return -1;
	}
	host->log(NULL, PX_PRIO_INFO, "configured received_spf=%s helo_check=%s "
		  "skip_authenticated=%s skip_trusted=%s max_void_lookups=%lld max_macros=%lld",
		  c->received_spf ? "yes" : "no", c->helo_check ? "yes" : "no",
		  c->skip_authenticated ? "yes" : "no", c->skip_trusted ? "yes" : "no",
		  c->max_void_lookups, c->max_macros);
	return 0;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "spf",
	.version = "1.0",
	.description = "SPF (RFC 7208) of MAIL FROM and HELO, on libspf2",
	.options = spf_options,
	.conf_size = sizeof(struct spf_conf),
	.load = spf_load,
	.configure = spf_configure,
	.unconfigure = spf_unconfigure,
	.on_mail = spf_mail,
	.on_data_end = spf_data_end,
	.on_reset = spf_reset,
	.on_close = spf_close,
};
