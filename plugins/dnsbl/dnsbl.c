/*
 * NAME
 *	dnsbl - DNS block lists: the client's address (DNSBL), the sender's
 *	and the HELO domain (RHSBL), scored or with an action per zone
 * SUMMARY
 *	Looks the client up in every DNSBL zone at connect, and the sender
 *	and HELO domains in every RHSBL zone at MAIL, all lookups of a stage
 *	in parallel (dns_query_async, the hook answers PX_PENDING); decides at
 *	RCPT, so that postmaster@ and abuse@ still get through (as Postfix's
 *	postscreen and Haraka do).
 * SYNOPSIS
 *	plugin "dnsbl" {
 *	    dnsbl        = "zen.example.net=127.0.0.[2..11]*3, bl.example.org*2,
 *	                    strict.example.net:reject"
 *	    rhsbl_sender = "dbl.example.net=127.0.1.[2..99]:reject"
 *	    rhsbl_helo   = "dbl.example.net=127.0.1.[2..99]*2"
 *	    threshold    = 3
 *	    action       = "reject"
 *	    exempt_recipients = "postmaster, abuse"
 *	    on_dns_error = "accept"
 *	}
 * DESCRIPTION
 *	A zone entry is ZONE[=CODES | &MASK][*WEIGHT | :ACTION]:
 *	  CODES   answers that list, each an IPv4 address whose octets may
 *	          be [a..b] ranges and [a;b;c] sets (Postfix's syntax), or
 *	          several codes separated by commas ("zone=127.0.0.2,127.0.0.4");
 *	          default: any 127.0.0.x;
 *	  &MASK   an answer lists when (answer & MASK) != 0 (a dotted quad
 *	          or a number): bit-coded lists;
 *	  *WEIGHT adds WEIGHT (default 1, may be negative) to the score;
 *	  :ACTION reject, tempfail, disconnect, quarantine or none: this
 *	          zone alone decides, whatever the score.
 *	Only answers in 127.0.0.0/8 ever count (a hijacking resolver's web
 *	address does not); 127.255.255.x are the lists' "you are refused"
 *	answers (public resolver, over quota): logged, never a listing.
 *	When the score of the zones that listed reaches `threshold`,
 *	`action` applies; the strongest action wins (disconnect, reject,
 *	tempfail, quarantine, none).
 *
 *	Results, recorded at each RCPT (so that a policy rule acts on that
 *	recipient only), method "dnsbl":
 *	  listed     zone=Z answer=A score=S (one per zone that listed, when
 *	             the client is listed: score reached, or a zone action)
 *	  pass       [score=S] (not listed; S: the score under the threshold)
 *	  temperror  zone=Z (a zone that could not be asked; not a listing)
 *	Recipients in exempt_recipients (a local part: any domain; or an
 *	address) record nothing and always pass.
 * DIAGNOSTICS
 *	dnsbl list=client zone=Z query=Q status=listed answer=A weight=W
 *	dnsbl list=... zone=Z query=Q status=refused answer=127.255.255.254
 *	dnsbl list=... zone=Z query=Q status=temperror dns=tempfail
 *	dnsbl stage=connect client=A zones=N listed=L score=S ms=T
 *	dnsbl rcpt=<R> verdict=V score=S zones="Z1 Z2"
 */
#include <postern/plugin.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define DNS_TYPE_A 1

static const struct px_host *host;

/* What a listing does; the order is the strength (the strongest wins). */
enum act { ACT_SCORE = 0, ACT_NONE, ACT_QUARANTINE, ACT_TEMPFAIL, ACT_REJECT, ACT_DISCONNECT };
static const char *const act_names[] = { "score", "none", "quarantine", "tempfail", "reject",
					 "disconnect" };

enum list { L_CLIENT = 0, L_SENDER, L_HELO, L_COUNT };
static const char *const list_names[] = { "client", "sender", "helo" };

/* One code pattern: the values each octet may have (a bit per value). */
struct code {
	uint8_t ok[4][32];
};

struct zone {
	char *name;               /* lower case, no final dot */
	struct code *codes;       /* NULL: 127.0.0.x */
	size_t ncodes;
	uint32_t mask;            /* != 0: answer & mask */
	long weight;
	enum act act;
};

struct dnsbl_conf {
	/* options */
	const char *const *dnsbl, *const *rhsbl_sender, *const *rhsbl_helo;
	long long threshold;
	const char *action;
	const char *const *exempt;
	const char *on_dns_error;
	int skip_loopback;
	/* derived */
	struct zone *zones[L_COUNT];
	size_t nzones[L_COUNT];
	enum act act;
	int dns_error_tempfail;
};

static const struct px_option dnsbl_options[] = {
	{ "dnsbl", PX_OPT_LIST, NULL, 0, 0, offsetof(struct dnsbl_conf, dnsbl),
	  "zones for the client address: ZONE[=CODES|&MASK][*WEIGHT|:ACTION]" },
	{ "rhsbl_sender", PX_OPT_LIST, NULL, 0, 0, offsetof(struct dnsbl_conf, rhsbl_sender),
	  "zones for the envelope sender's domain (same syntax)" },
	{ "rhsbl_helo", PX_OPT_LIST, NULL, 0, 0, offsetof(struct dnsbl_conf, rhsbl_helo),
	  "zones for the HELO/EHLO domain (same syntax)" },
	{ "threshold", PX_OPT_INT, "1", -1000000, 1000000, offsetof(struct dnsbl_conf, threshold),
	  "score at which the client is listed" },
	{ "action", PX_OPT_STRING, "reject", 0, 0, offsetof(struct dnsbl_conf, action),
	  "what a score >= threshold does: reject tempfail disconnect quarantine none" },
	{ "exempt_recipients", PX_OPT_LIST, "postmaster, abuse", 0, 0,
	  offsetof(struct dnsbl_conf, exempt),
	  "recipients never refused: local parts (any domain) or addresses" },
	{ "on_dns_error", PX_OPT_STRING, "accept", 0, 0, offsetof(struct dnsbl_conf, on_dns_error),
	  "a zone that cannot be asked: accept (not listed, logged) or tempfail" },
	{ "skip_loopback", PX_OPT_BOOL, "yes", 0, 0, offsetof(struct dnsbl_conf, skip_loopback),
	  "do not look up loopback clients (127.0.0.0/8, ::1)" },
	{ 0 }
};

/* One zone's answer for this session (client) or transaction (domains). */
enum hit_state { H_NONE = 0, H_CLEAN, H_LISTED, H_REFUSED, H_TEMP };
struct hit {
	enum hit_state st;
	uint32_t answer;
};

/* Per-session state behind slot(). Written by the lookups of a pending
 * call (on the event loop) and read by later calls (on workers): the
 * host's resume orders them. */
struct session {
	struct hit *hits[L_COUNT];
	char addr[INET6_ADDRSTRLEN];
	char domain[L_COUNT][256];      /* the domain asked, per RHSBL list */
};

/* One stage's lookups, in flight together. */
struct batch;
struct lookup {
	struct batch *b;
	enum list list;
	size_t zi;
	char qname[320];
};
struct batch {
	struct px_txn *txn;
	px_call_id call;
	const struct dnsbl_conf *c;
	struct session *s;
	const char *stage;
	atomic_int left;          /* lookups outstanding, +1 while the hook issues */
	struct timeval t0;
	size_t n;
	struct lookup q[];
};

/* ------------------------------------------------------------ parsing --- */

static void set_bit(uint8_t *ok, unsigned v)
{
	ok[v / 8] |= (uint8_t)(1u << (v % 8));
}

static int has_bit(const uint8_t *ok, unsigned v)
{
	return (ok[v / 8] >> (v % 8)) & 1;
}

/* parse_num - a decimal 0..255 at *p; -1 if none */
static int parse_num(const char **p)
{
	int v = 0, n = 0;

	while (isdigit((unsigned char)**p) && n < 4) {
		v = v * 10 + (**p - '0');
		(*p)++;
		n++;
	}
	return n == 0 || n > 3 || v > 255 ? -1 : v;
}

/* parse_octet - "N" or "[a..b;c;...]" into ok; 0 or -1 */
static int parse_octet(const char **p, uint8_t *ok)
{
	int a, b;

	if (**p != '[') {
		if ((a = parse_num(p)) < 0)
			return -1;
		set_bit(ok, (unsigned)a);
		return 0;
	}
	(*p)++;
	for (;;) {
		if ((a = parse_num(p)) < 0)
			return -1;
		b = a;
		if (strncmp(*p, "..", 2) == 0) {
			*p += 2;
			if ((b = parse_num(p)) < 0 || b < a)
				return -1;
		}
		for (int v = a; v <= b; v++)
			set_bit(ok, (unsigned)v);
		if (**p == ';') {
			(*p)++;
			continue;
		}
		if (**p != ']')
			return -1;
		(*p)++;
		return 0;
	}
}

/* parse_code - one pattern of exactly n bytes at s; 0 or -1 */
static int parse_code(const char *s, size_t n, struct code *out)
{
	char buf[256];
	const char *p = buf;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	memset(out, 0, sizeof(*out));
	for (int i = 0; i < 4; i++) {
		if (parse_octet(&p, out->ok[i]) < 0)
			return -1;
		if (i < 3 && *p++ != '.')
			return -1;
	}
	return *p == '\0' ? 0 : -1;
}

/* parse_mask - a dotted quad or a number */
static int parse_mask(const char *s, size_t n, uint32_t *out)
{
	char buf[64], *end;
	struct in_addr a;
	unsigned long v;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (strchr(buf, '.') != NULL) {
		if (inet_pton(AF_INET, buf, &a) != 1)
			return -1;
		*out = ntohl(a.s_addr);
	} else {
		v = strtoul(buf, &end, 0);
		if (*end != '\0' || v == 0 || v > 0xffffffffUL)
			return -1;
		*out = (uint32_t)v;
	}
	return *out ? 0 : -1;
}

/* parse_act - an action name; -1 if unknown (ACT_SCORE is not one) */
static int parse_act(const char *s, size_t n)
{
	for (int a = ACT_NONE; a <= ACT_DISCONNECT; a++)
		if (strlen(act_names[a]) == n && strncasecmp(s, act_names[a], n) == 0)
			return a;
	return -1;
}

/* valid_zone - a domain name: letters, digits, '-', '_', dots between labels */
static int valid_zone(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 200 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (isalnum(ch) || ch == '-' || ch == '_') {
			if (++label > 63)
				return 0;
		} else {
			return 0;
		}
	}
	return 1;
}

/* parse_zone - one entry (continuations already joined); 0 or -1 with err */
static int parse_zone(const char *e, struct zone *z, char *err, size_t errlen)
{
	size_t n = strcspn(e, "=&*:");
	const char *p = e + n, *tail;

	memset(z, 0, sizeof(*z));
	z->weight = 1;
	if (!valid_zone(e, n)) {
		snprintf(err, errlen, "'%s': '%.*s' is not a zone name", e, (int)n, e);
		return -1;
	}
	if ((z->name = strndup(e, n)) == NULL)
		goto oom;
	for (char *c = z->name; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	tail = p + strcspn(p, "*:");
	if (*p == '=') {
		size_t nc = 1;

		for (const char *q = p + 1; q < tail; q++)
			nc += *q == ',';
		if ((z->codes = calloc(nc, sizeof(struct code))) == NULL)
			goto oom;
		for (const char *q = p + 1; q <= tail;) {
			size_t len = strcspn(q, ",*:");

			if (q + len > tail)
				len = (size_t)(tail - q);
			if (parse_code(q, len, &z->codes[z->ncodes]) < 0) {
				snprintf(err, errlen, "'%s': '%.*s' is not an answer code (127.0.0.2, "
					 "127.0.0.[2..11], 127.0.0.[2;4])", e, (int)len, q);
				return -1;
			}
			z->ncodes++;
			q += len + 1;
		}
	} else if (*p == '&') {
		if (parse_mask(p + 1, (size_t)(tail - p - 1), &z->mask) < 0) {
			snprintf(err, errlen, "'%s': '%.*s' is not a mask (0.0.0.4, or 4)", e,
				 (int)(tail - p - 1), p + 1);
			return -1;
		}
	}
	if (*tail == '*') {
		char *end;

		z->weight = strtol(tail + 1, &end, 10);
		if (end == tail + 1 || *end != '\0' || z->weight < -1000000 || z->weight > 1000000) {
			snprintf(err, errlen, "'%s': the weight '%s' is not a whole number", e, tail + 1);
			return -1;
		}
	} else if (*tail == ':') {
		int a = parse_act(tail + 1, strlen(tail + 1));

		if (a < 0) {
			snprintf(err, errlen, "'%s': unknown action '%s' (reject tempfail disconnect "
				 "quarantine none)", e, tail + 1);
			return -1;
		}
		z->act = (enum act)a;
	} else if (*tail != '\0') {
		snprintf(err, errlen, "'%s': unexpected '%s'", e, tail);
		return -1;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* is_continuation - a list element that only carries more answer codes
 * ("zone=127.0.0.2,127.0.0.4": the host splits lists at commas) */
static int is_continuation(const char *s)
{
	size_t n = strcspn(s, "*:");

	return n > 0 && strspn(s, "0123456789.[];") == n;
}

static void zones_free(struct zone *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].codes);
	}
	free(v);
}

/* parse_list - every entry of one list option */
static int parse_list(const char *opt, const char *const *in, struct zone **out, size_t *nout,
		      char *err, size_t errlen)
{
	size_t n = 0, k = 0;
	struct zone *v;
	char e[1024], why[900];

	for (const char *const *p = in; p != NULL && *p != NULL; p++)
		n++;
	*out = NULL;
	*nout = 0;
	if (n == 0)
		return 0;
	if ((v = calloc(n, sizeof(*v))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i = k) {
		if (is_continuation(in[i])) {
			snprintf(err, errlen, "%s: '%s' is answer codes with no zone before them",
				 opt, in[i]);
			zones_free(v, *nout);
			return -1;
		}
		snprintf(e, sizeof(e), "%s", in[i]);
		for (k = i + 1; k < n && is_continuation(in[k]); k++)
			snprintf(e + strlen(e), sizeof(e) - strlen(e), ",%s", in[k]);
		if (parse_zone(e, &v[*nout], why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: %s", opt, why);
			free(v[*nout].name);
			free(v[*nout].codes);
			zones_free(v, *nout);
			return -1;
		}
		(*nout)++;
	}
	*out = v;
	return 0;
}

/* ---------------------------------------------------------- life cycle --- */

static int dnsbl_load(const struct px_host *h, char *err, size_t errlen)
{
	if (h->abi_major != PX_ABI_MAJOR || h->abi_minor < 2) {
		snprintf(err, errlen, "needs a host with ABI 1.2 or later (the resolver); this "
			 "host has %u.%u", h->abi_major, h->abi_minor);
		return -1;
	}
	host = h;
	return 0;
}

static void dnsbl_unconfigure(void *conf)
{
	struct dnsbl_conf *c = conf;

	for (int l = 0; l < L_COUNT; l++) {
		zones_free(c->zones[l], c->nzones[l]);
		c->zones[l] = NULL;
		c->nzones[l] = 0;
	}
}

static int dnsbl_configure(void *conf, char *err, size_t errlen)
{
	struct dnsbl_conf *c = conf;
	const char *const *opts[L_COUNT] = { c->dnsbl, c->rhsbl_sender, c->rhsbl_helo };
	static const char *const names[L_COUNT] = { "dnsbl", "rhsbl_sender", "rhsbl_helo" };
	int a = parse_act(c->action, strlen(c->action));

	if (a < 0) {
		snprintf(err, errlen, "action: unknown action '%s' (reject tempfail disconnect "
			 "quarantine none)", c->action);
		return -1;
	}
	c->act = (enum act)a;
	if (strcmp(c->on_dns_error, "accept") != 0 && strcmp(c->on_dns_error, "tempfail") != 0) {
		snprintf(err, errlen, "on_dns_error: '%s' is neither \"accept\" nor \"tempfail\"",
			 c->on_dns_error);
		return -1;
	}
	c->dns_error_tempfail = strcmp(c->on_dns_error, "tempfail") == 0;
	for (int l = 0; l < L_COUNT; l++)
		if (parse_list(names[l], opts[l], &c->zones[l], &c->nzones[l], err, errlen) < 0) {
			dnsbl_unconfigure(c);
			return -1;
		}
	host->log(NULL, PX_PRIO_INFO, "configured dnsbl=%zu rhsbl_sender=%zu rhsbl_helo=%zu "
		  "threshold=%lld action=%s on_dns_error=%s", c->nzones[L_CLIENT],
		  c->nzones[L_SENDER], c->nzones[L_HELO], c->threshold, act_names[c->act],
		  c->on_dns_error);
	return 0;
}

/* ------------------------------------------------------------ session --- */

static struct session *session(const struct dnsbl_conf *c, struct px_txn *txn)
{
	void **slot = host->slot(txn);
	struct session *s = *slot;

	if (s != NULL)
		return s;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	for (int l = 0; l < L_COUNT; l++)
		if (c->nzones[l] > 0 && (s->hits[l] = calloc(c->nzones[l], sizeof(struct hit))) == NULL) {
			for (int k = 0; k < l; k++)
				free(s->hits[k]);
			free(s);
			return NULL;
		}
	*slot = s;
	return s;
}

static void clear_hits(const struct dnsbl_conf *c, struct session *s, enum list l)
{
	if (s->hits[l] != NULL)
		memset(s->hits[l], 0, c->nzones[l] * sizeof(struct hit));
	s->domain[l][0] = '\0';
}

static void dnsbl_close(const void *conf, struct px_txn *txn)
{
	void **slot = host->slot(txn);
	struct session *s = *slot;

	(void)conf;
	if (s == NULL)
		return;
	for (int l = 0; l < L_COUNT; l++)
		free(s->hits[l]);
	free(s);
	*slot = NULL;
}

/* ------------------------------------------------------------ lookups --- */

/* code_matches - does answer a (host order) list in zone z? */
static int code_matches(const struct zone *z, uint32_t a)
{
	if (z->mask != 0)
		return (a & z->mask) != 0;
	if (z->codes == NULL)
		return (a >> 8) == 0x7f0000;       /* 127.0.0.x */
	for (size_t i = 0; i < z->ncodes; i++) {
		int ok = 1;

		for (int o = 0; o < 4 && ok; o++)
			ok = has_bit(z->codes[i].ok[o], (a >> (24 - 8 * o)) & 0xff);
		if (ok)
			return 1;
	}
	return 0;
}

static void addr_text(uint32_t a, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

/* judge - one zone's answer into its hit */
static void judge(const struct zone *z, const struct px_dns_answer *ans, struct hit *h)
{
	uint32_t refused = 0;

	h->st = H_CLEAN;
	if (ans == NULL) {
		h->st = H_TEMP;
		return;
	}
	if (ans->status == PX_DNS_TEMPFAIL || ans->status == PX_DNS_ERROR) {
		h->st = H_TEMP;
		return;
	}
	if (ans->status != PX_DNS_OK)
		return;
	for (size_t i = 0; i < ans->count; i++) {
		const unsigned char *d = ans->data[i];
		uint32_t a;

		if (ans->len[i] != 4)
			continue;
		a = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
		if ((a >> 24) != 127)
			continue;                      /* never a listing: a hijacked answer */
		if ((a >> 8) == 0x7fffff) {
			refused = a;                   /* 127.255.255.x: the list refuses us */
			continue;
		}
		if (code_matches(z, a)) {
			h->st = H_LISTED;
			h->answer = a;
			return;
		}
	}
	if (refused != 0) {
		h->st = H_REFUSED;
		h->answer = refused;
	}
}

static long elapsed_ms(const struct timeval *t0)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (now.tv_sec - t0->tv_sec) * 1000L + (now.tv_usec - t0->tv_usec) / 1000L;
}

/* finish - every lookup is in: log the stage, end the call */
static void finish(struct batch *b)
{
	int listed = 0, temp = 0;
	long score = 0;

	for (size_t i = 0; i < b->n; i++) {
		const struct lookup *q = &b->q[i];
		const struct hit *h = &b->s->hits[q->list][q->zi];

		listed += h->st == H_LISTED;
		temp += h->st == H_TEMP;
		if (h->st == H_LISTED && b->c->zones[q->list][q->zi].act == ACT_SCORE)
			score += b->c->zones[q->list][q->zi].weight;
	}
	host->log(b->txn, PX_PRIO_INFO, "dnsbl stage=%s zones=%zu listed=%d temperror=%d "
		  "score=%ld ms=%ld", b->stage, b->n, listed, temp, score, elapsed_ms(&b->t0));
	host->resume_call(b->txn, b->call, PX_NEXT);
	free(b);
}

static void done_one(struct batch *b)
{
	if (atomic_fetch_sub(&b->left, 1) == 1)
		finish(b);
}

/* answered - one zone's answer (on the session's event loop) */
static void answered(void *arg, struct px_dns_answer *ans)
{
	struct lookup *q = arg;
	struct batch *b = q->b;
	const struct zone *z = &b->c->zones[q->list][q->zi];
	struct hit *h = &b->s->hits[q->list][q->zi];
	char a[16], how[32];

	judge(z, ans, h);
	addr_text(h->answer, a, sizeof(a));
	switch (h->st) {
	case H_LISTED:
		if (z->act == ACT_SCORE)
			snprintf(how, sizeof(how), "weight=%ld", z->weight);
		else
			snprintf(how, sizeof(how), "action=%s", act_names[z->act]);
		host->log(b->txn, PX_PRIO_INFO, "dnsbl list=%s zone=%s query=%s status=listed "
			  "answer=%s %s", list_names[q->list], z->name, q->qname, a, how);
		break;
	case H_REFUSED:
		host->log(b->txn, PX_PRIO_WARN, "dnsbl list=%s zone=%s query=%s status=refused "
			  "answer=%s (the list refuses our queries: blocked or over quota; not a "
			  "listing)", list_names[q->list], z->name, q->qname, a);
		break;
	case H_TEMP:
		host->log(b->txn, PX_PRIO_WARN, "dnsbl list=%s zone=%s query=%s status=temperror "
			  "dns=%s (not listed)", list_names[q->list], z->name, q->qname,
			  ans == NULL ? "nomem" : ans->status == PX_DNS_ERROR ? "error" : "tempfail");
		break;
	default:
		host->log(b->txn, PX_PRIO_DEBUG, "dnsbl list=%s zone=%s query=%s status=clean",
			  list_names[q->list], z->name, q->qname);
	}
	if (ans != NULL)
		host->dns_free(ans);
	done_one(b);
}

/* run_batch - start every lookup of b; PX_PENDING, or PX_NEXT with none */
static enum px_verdict run_batch(struct batch *b)
{
	if (b->n == 0) {
		free(b);
		return PX_NEXT;
	}
	b->call = host->pending(b->txn);
	gettimeofday(&b->t0, NULL);
	atomic_init(&b->left, (int)b->n + 1);
	for (size_t i = 0; i < b->n; i++) {
		struct lookup *q = &b->q[i];

		if (host->dns_query_async(b->txn, q->qname, DNS_TYPE_A, answered, q) < 0) {
			b->s->hits[q->list][q->zi].st = H_TEMP;
			host->log(b->txn, PX_PRIO_WARN, "dnsbl list=%s zone=%s query=%s "
				  "status=temperror dns=not-started (not listed)", list_names[q->list],
				  b->c->zones[q->list][q->zi].name, q->qname);
			done_one(b);
		}
	}
	done_one(b);            /* the hook's own share: the last one ends the call */
	return PX_PENDING;
}

static struct batch *batch_new(const struct dnsbl_conf *c, struct px_txn *txn,
			       struct session *s, size_t max, const char *stage)
{
	struct batch *b = calloc(1, sizeof(*b) + max * sizeof(struct lookup));

	if (b == NULL)
		return NULL;
	b->txn = txn;
	b->c = c;
	b->s = s;
	b->stage = stage;
	return b;
}

/* add_lookups - one query per zone of list l for name (reversed address
 * or domain) */
static void add_lookups(struct batch *b, enum list l, const char *name)
{
	for (size_t i = 0; i < b->c->nzones[l]; i++) {
		struct lookup *q = &b->q[b->n];
		int n = snprintf(q->qname, sizeof(q->qname), "%s.%s", name, b->c->zones[l][i].name);

		if (n < 0 || (size_t)n >= sizeof(q->qname) || n > 253)
			continue;                      /* too long for DNS: cannot be listed */
		q->b = b;
		q->list = l;
		q->zi = i;
		b->n++;
	}
}

/* reverse_addr - the DNSBL form of a client address; 0, or -1 */
static int reverse_addr(const char *addr, char *out, size_t len, int skip_loopback)
{
	unsigned char b[16];
	static const char hex[] = "0123456789abcdef";

	if (inet_pton(AF_INET, addr, b) == 1) {
		if (skip_loopback && b[0] == 127)
			return -1;
		snprintf(out, len, "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, b) != 1 || len < 64)
		return -1;
	if (skip_loopback && memcmp(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0)
		return -1;
	if (memcmp(b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {        /* v4-mapped */
		char v4[16];

		snprintf(v4, sizeof(v4), "%u.%u.%u.%u", b[12], b[13], b[14], b[15]);
		return reverse_addr(v4, out, len, skip_loopback);
	}
	for (int i = 15, o = 0; i >= 0; i--) {
		out[o++] = hex[b[i] & 0xf];
		out[o++] = '.';
		out[o++] = hex[b[i] >> 4];
		out[o++] = i ? '.' : '\0';
	}
	return 0;
}

/* domain_of - a lookup-able domain: lower case, no final dot; 0 or -1 */
static int domain_of(const char *in, char *out, size_t len)
{
	size_t n = strlen(in);

	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n >= len || !valid_zone(in, n) || strchr(in, '.') == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[n] = '\0';
	return 0;
}

/* -------------------------------------------------------------- hooks --- */

/* dnsbl_connect - the client address in every DNSBL zone, in parallel */
static enum px_verdict dnsbl_connect(const void *conf, struct px_txn *txn)
{
	const struct dnsbl_conf *c = conf;
	const char *addr = host->get(txn, "client.addr");
	struct session *s;
	struct batch *b;
	char rev[80];

	if (c->nzones[L_CLIENT] == 0 || (s = session(c, txn)) == NULL)
		return PX_NEXT;
	clear_hits(c, s, L_CLIENT);         /* XCLIENT runs connect again: a new client */
	s->addr[0] = '\0';
	if (addr == NULL || reverse_addr(addr, rev, sizeof(rev), c->skip_loopback) < 0)
		return PX_NEXT;
	snprintf(s->addr, sizeof(s->addr), "%s", addr);
	if ((b = batch_new(c, txn, s, c->nzones[L_CLIENT], "connect")) == NULL)
		return PX_NEXT;
	add_lookups(b, L_CLIENT, rev);
	return run_batch(b);
}

/* dnsbl_mail - the sender's and the HELO domain in the RHSBL zones */
static enum px_verdict dnsbl_mail(const void *conf, struct px_txn *txn)
{
	const struct dnsbl_conf *c = conf;
	const char *from = host->get(txn, "mail.from"), *helo = host->get(txn, "helo");
	const char *at = from ? strrchr(from, '@') : NULL;
	struct session *s;
	struct batch *b;

	if (c->nzones[L_SENDER] + c->nzones[L_HELO] == 0 || (s = session(c, txn)) == NULL)
		return PX_NEXT;
	clear_hits(c, s, L_SENDER);
	clear_hits(c, s, L_HELO);
	b = batch_new(c, txn, s, c->nzones[L_SENDER] + c->nzones[L_HELO], "mail");
	if (b == NULL)
		return PX_NEXT;
	if (c->nzones[L_SENDER] && at != NULL &&
	    domain_of(at + 1, s->domain[L_SENDER], sizeof(s->domain[L_SENDER])) == 0)
		add_lookups(b, L_SENDER, s->domain[L_SENDER]);
	if (c->nzones[L_HELO] && helo != NULL &&
	    domain_of(helo, s->domain[L_HELO], sizeof(s->domain[L_HELO])) == 0)
		add_lookups(b, L_HELO, s->domain[L_HELO]);
	return run_batch(b);
}

/* exempt - is this recipient never refused? */
static int exempt(const struct dnsbl_conf *c, const char *rcpt)
{
	const char *at = strrchr(rcpt, '@');
	size_t local = at ? (size_t)(at - rcpt) : strlen(rcpt);

	for (const char *const *e = c->exempt; e != NULL && *e != NULL; e++) {
		if (strchr(*e, '@') != NULL ? strcasecmp(*e, rcpt) == 0
		    : strlen(*e) == local && strncasecmp(*e, rcpt, local) == 0)
			return 1;
	}
	return 0;
}

/* The verdict at RCPT, from every hit of the session and transaction. */
struct tally {
	long score;
	enum act act;             /* the strongest zone action that listed */
	int listed, temp;
	enum list first;          /* the first list that listed (for the reply) */
	const struct zone *zone;  /* its zone */
};

static void tally(const struct dnsbl_conf *c, const struct session *s, struct tally *t)
{
	memset(t, 0, sizeof(*t));
	for (int l = 0; l < L_COUNT; l++)
		for (size_t i = 0; s->hits[l] != NULL && i < c->nzones[l]; i++) {
			const struct zone *z = &c->zones[l][i];
			const struct hit *h = &s->hits[l][i];

			t->temp += h->st == H_TEMP;
			if (h->st != H_LISTED)
				continue;
			if (t->listed++ == 0) {
				t->first = (enum list)l;
				t->zone = z;
			}
			if (z->act == ACT_SCORE)
				t->score += z->weight;
			else if (z->act > t->act)
				t->act = z->act;
		}
}

/* reply - the SMTP reply for a listing */
static void reply(struct px_txn *txn, const struct session *s, const struct tally *t, enum act a)
{
	char text[512];
	int tempfail = a == ACT_TEMPFAIL;

	if (t->first == L_CLIENT)
		snprintf(text, sizeof(text), "Service unavailable; client [%s] blocked using %s",
			 s->addr, t->zone->name);
	else
		snprintf(text, sizeof(text), "Service unavailable; %s %s blocked using %s",
			 t->first == L_SENDER ? "sender domain" : "HELO name", s->domain[t->first],
			 t->zone->name);
	host->set_reply(txn, tempfail ? 451 : 554, tempfail ? "4.7.1" : "5.7.1", text);
}

/* record_listed - one "listed" result per zone that listed */
static void record_listed(const struct dnsbl_conf *c, struct px_txn *txn, const struct session *s,
			  long score, char *zones, size_t zlen)
{
	zones[0] = '\0';
	for (int l = 0; l < L_COUNT; l++)
		for (size_t i = 0; s->hits[l] != NULL && i < c->nzones[l]; i++) {
			char props[400], a[16];

			if (s->hits[l][i].st != H_LISTED)
				continue;
			addr_text(s->hits[l][i].answer, a, sizeof(a));
			snprintf(props, sizeof(props), "zone=%s answer=%s list=%s score=%ld",
				 c->zones[l][i].name, a, list_names[l], score);
			host->record(txn, "dnsbl", "listed", props);
			snprintf(zones + strlen(zones), zlen - strlen(zones), "%s%s",
				 zones[0] ? " " : "", c->zones[l][i].name);
		}
}

static enum px_verdict verdict_of(enum act a)
{
	switch (a) {
	case ACT_REJECT: return PX_REJECT;
	case ACT_TEMPFAIL: return PX_TEMPFAIL;
	case ACT_DISCONNECT: return PX_DISCONNECT;
	case ACT_QUARANTINE: return PX_QUARANTINE;
	default: return PX_NEXT;
	}
}

/* dnsbl_rcpt - decide for this recipient */
static enum px_verdict dnsbl_rcpt(const void *conf, struct px_txn *txn)
{
	const struct dnsbl_conf *c = conf;
	struct session *s = *host->slot(txn);
	const char *rcpt = host->get(txn, "rcpt"), *login = host->get(txn, "auth.login");
	struct tally t;
	enum act a = ACT_NONE;
	char zones[512], props[300];

	if (s == NULL)
		return PX_NEXT;                 /* nothing was looked up */
	tally(c, s, &t);
	if (t.listed > 0 && t.score >= c->threshold && c->act > a)
		a = c->act;
	if (t.act > a)
		a = t.act;
	if (login != NULL && *login != '\0')
		return PX_NEXT;                 /* an authenticated user, on any network */
	if (rcpt != NULL && exempt(c, rcpt)) {
		if (t.listed)
			host->log(txn, PX_PRIO_INFO, "dnsbl rcpt=<%s> exempt=yes score=%ld", rcpt,
				  t.score);
		return PX_NEXT;
	}
	if (t.listed > 0 && (t.score >= c->threshold || t.act != ACT_SCORE)) {
		record_listed(c, txn, s, t.score, zones, sizeof(zones));
		host->log(txn, PX_PRIO_INFO, "dnsbl rcpt=<%s> verdict=%s score=%ld zones=\"%s\"",
			  rcpt ? rcpt : "", act_names[a], t.score, zones);
		reply(txn, s, &t, a);
		return verdict_of(a);
	}
	if (t.temp > 0) {
		for (int l = 0; l < L_COUNT; l++)
			for (size_t i = 0; s->hits[l] != NULL && i < c->nzones[l]; i++)
				if (s->hits[l][i].st == H_TEMP) {
					snprintf(props, sizeof(props), "zone=%s list=%s",
						 c->zones[l][i].name, list_names[l]);
					host->record(txn, "dnsbl", "temperror", props);
				}
		if (c->dns_error_tempfail) {
			host->set_reply(txn, 451, "4.4.3", "Temporary DNS failure checking a block "
					"list; try again later");
			return PX_TEMPFAIL;
		}
		return PX_NEXT;
	}
	if (t.listed > 0)
		snprintf(props, sizeof(props), "score=%ld", t.score);
	else
		props[0] = '\0';
	host->record(txn, "dnsbl", "pass", props);
	return PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "dnsbl",
	.version = "1.0",
	.description = "DNSBL (client address) and RHSBL (sender, HELO domain) zones",
	.options = dnsbl_options,
	.conf_size = sizeof(struct dnsbl_conf),
	.load = dnsbl_load,
	.configure = dnsbl_configure,
	.unconfigure = dnsbl_unconfigure,
	.on_connect = dnsbl_connect,
	.on_mail = dnsbl_mail,
	.on_rcpt = dnsbl_rcpt,
	.on_close = dnsbl_close,
};
