/*
 * NAME
 *	greylist - defer the first delivery attempt of an unknown triplet
 * SYNOPSIS
 *	plugin "greylist" {
 *	    delay          = 5m       # a retry earlier than this is deferred again
 *	    retry_window   = 1d       # a retry later than this starts over
 *	    max_age        = 35d      # a passed triplet is remembered this long
 *	    auto_allow     = 5        # clients that passed this often ...
 *	    auto_allow_age = 7d       # ... are not greylisted for this long (0 = off)
 *	    ipv4_prefix    = 24
 *	    ipv6_prefix    = 64
 *	    spf_domain     = yes      # SPF pass: the sender's domain stands for the network
 *	    allow_networks   = "127.0.0.0/8, ::1/128"
 *	    allow_senders    = "partner.example, @lists.example, alerts@bank.example"
 *	    allow_recipients = "postmaster@, abuse@example.com, @noc.example"
 *	    text           = "Greylisted, please try again later"
 *	    dnswl          = "list.dnswl.org=127.0.[0..255].[1..3], wl.example.net"
 *	}
 * DESCRIPTION
 *	At RCPT, the triplet (client network, sender, recipient) is looked up
 *	in the store (host->store_*, ABI 1.3). The network is the client
 *	address cut to ipv4_prefix / ipv6_prefix; when SPF passed for the
 *	sender (a result spf=pass recorded earlier in the transaction, read
 *	with result_at, ABI 1.2), it is the sender's domain instead, so that a
 *	big sender retrying from another address of its pool is the same
 *	triplet.
 *	  - unknown: remembered for retry_window, and the recipient gets
 *	    451 4.7.1 TEXT (retry in N seconds); result greylist=greylisted
 *	  - known, retried before delay: 451 4.7.1 again (greylisted)
 *	  - known, retried after delay: passes; remembered for max_age, and
 *	    the client network counts one pass (result greylist=pass)
 *	  - passed before: passes, and its max_age starts again
 *	A client network (or SPF domain) whose passes reach auto_allow is
 *	not greylisted at all (greylist=pass reason=auto-allow) until its
 *	counter expires, auto_allow_age after the first pass it counted (a
 *	fixed window: host->store_incr); then it counts again.
 *	Exempt (greylist=skip): authenticated clients, allow_networks (give
 *	it your trusted_networks: plugins do not see the host's), senders and
 *	recipients of the allow lists (an address, "@domain", or a bare domain
 *	that also matches its subdomains; "postmaster@" matches that local
 *	part in every domain), and clients listed on a dnswl zone. The null
 *	sender is greylisted like any other (real MTAs retry their bounces).
 *
 *	DNSWL. Each dnswl entry is ZONE or ZONE=CODES: the client address is
 *	looked up as REVERSED.ZONE (A; IPv6 as nibbles) through the host's
 *	resolver (host->dns_query, ABI 1.2: a blocking call, from the rcpt
 *	hook on a worker, bounded by timeouts.dns; the resolver caches, so the
 *	recipients of a session cost one query). CODES are answers that count,
 *	each octet a number, [A..B] or [A;B;C] (the host splits lists at
 *	commas, so "zone=127.0.0.2,127.0.0.3" is one entry); without CODES,
 *	any 127.0.0.0/8 answer but 127.0.0.255 (DNSWL.org's "query refused").
 *	Listed: greylist=skip reason=dnswl zone=ZONE (logged "dnswl=listed
 *	zone=ZONE client=ADDR"). A lookup that fails
 *	(timeout, SERVFAIL) does not exempt: the client is greylisted.
 *
 *	When the store fails, the hook answers PX_VERDICT_COUNT, "failed":
 *	the section's on_error decides (tempfail by default: 451 4.3.0).
 *
 *	Keys (under the host's "greylist:" prefix), for `postern greylist`:
 *	    t:NET/SENDER/RCPT   "FIRST_MS PASSES" (PASSES 0: waiting)
 *	    c:NET               passes counted for auto_allow (a counter);
 *	                        1000000000 or more: allowed (postern greylist allow)
 *	NET is "192.0.2.0/24", "2001:db8::/64" or "d:example.com"; a key too
 *	long for the store ends in "#HASH" instead of its last characters.
 */
#include <postern/plugin.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "net.h"

/* a hook's "I failed" (plugin-guide section 6): the section's on_error */
#define GL_FAILED ((enum px_verdict)PX_VERDICT_COUNT)
#define KEY_MAX 400
/* c:NET at or above this: allowed by `postern greylist allow`, whatever auto_allow */
#define GL_ALLOWED 1000000000LL

static const struct px_host *host;

struct gl_conf {
	long long delay, retry_window, max_age, auto_allow_age;   /* ms */
	long long auto_allow, ipv4_prefix, ipv6_prefix;
	int spf_domain;
	const char *const *allow_networks, *const *allow_senders, *const *allow_recipients;
	const char *text;
	const char *const *dnswl;
	/* derived */
	struct gl_net *nets;
	size_t nnets;
	struct gl_wl *wls;
	size_t nwls;
};

/* one dnswl zone: the answers that count, a bitmap per octet */
struct gl_code {
	unsigned char ok[4][32];
};
struct gl_wl {
	char zone[256];
	struct gl_code *codes;    /* NULL: 127.0.0.0/8 but 127.0.0.255 */
	size_t ncodes;
};

static const struct px_option gl_options[] = {
	{ "delay", PX_OPT_DURATION, "5m", 0, 86400000LL, offsetof(struct gl_conf, delay),
	  "a retry sooner than this after the first attempt is deferred again" },
	{ "retry_window", PX_OPT_DURATION, "1d", 1000, 30 * 86400000LL,
	  offsetof(struct gl_conf, retry_window),
	  "how long a first attempt waits for its retry (then it is forgotten)" },
	{ "max_age", PX_OPT_DURATION, "35d", 1000, 3650 * 86400000LL,
	  offsetof(struct gl_conf, max_age), "how long a triplet that passed is remembered" },
	{ "auto_allow", PX_OPT_INT, "5", 0, 1000000, offsetof(struct gl_conf, auto_allow),
	  "passes after which a client network is not greylisted any more (0 = never)" },
	{ "auto_allow_age", PX_OPT_DURATION, "7d", 1000, 3650 * 86400000LL,
	  offsetof(struct gl_conf, auto_allow_age),
	  "how long the passes of a client network are counted and it stays allowed" },
	{ "ipv4_prefix", PX_OPT_INT, "24", 8, 32, offsetof(struct gl_conf, ipv4_prefix),
	  "IPv4 clients are counted by this network" },
	{ "ipv6_prefix", PX_OPT_INT, "64", 16, 128, offsetof(struct gl_conf, ipv6_prefix),
	  "IPv6 clients are counted by this network" },
	{ "spf_domain", PX_OPT_BOOL, "yes", 0, 0, offsetof(struct gl_conf, spf_domain),
	  "when SPF passed, the sender's domain replaces the client network" },
	{ "allow_networks", PX_OPT_LIST, "127.0.0.0/8, ::1/128", 0, 0,
	  offsetof(struct gl_conf, allow_networks), "clients never greylisted (ADDR/LEN)" },
	{ "allow_senders", PX_OPT_LIST, NULL, 0, 0, offsetof(struct gl_conf, allow_senders),
	  "senders never greylisted: address, @domain, or domain (with subdomains)" },
	{ "allow_recipients", PX_OPT_LIST, NULL, 0, 0,
	  offsetof(struct gl_conf, allow_recipients),
	  "recipients never greylisted: address, local@ (any domain), @domain, or domain" },
	{ "text", PX_OPT_STRING, "Greylisted, please try again later", 0, 0,
	  offsetof(struct gl_conf, text), "the text of the 451 4.7.1 reply" },
	{ "dnswl", PX_OPT_LIST, NULL, 0, 0, offsetof(struct gl_conf, dnswl),
	  "DNSWL zones whose listed clients are not greylisted: ZONE or ZONE=CODES" },
	{ 0 }
};

/* lower_zone - in place */
static void lower_zone(char *z)
{
	for (; *z; z++)
		*z = (char)tolower((unsigned char)*z);
}

static int gl_load(const struct px_host *h, char *err, size_t errlen)
{
	if (h->abi_minor < 3) {
		snprintf(err, errlen, "needs a host with ABI 1.3 (the store)");
		return -1;
	}
	host = h;
	return 0;
}

static void gl_unconfigure(void *conf)
{
	struct gl_conf *c = conf;

	free(c->nets);
	c->nets = NULL;
	c->nnets = 0;
	for (size_t i = 0; i < c->nwls; i++)
		free(c->wls[i].codes);
	free(c->wls);
	c->wls = NULL;
	c->nwls = 0;
}

/* ---------------------------------------------------------------- dnswl */

/* octet_parse - "N", "[A..B]" or "[A;B;C]" into a bitmap; 0 or -1 */
static int octet_parse(const char *p, size_t n, unsigned char ok[32])
{
	char buf[64], *e, *q;
	unsigned long a, b;

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, p, n);
	buf[n] = 0;
	if (buf[0] != '[') {
		a = strtoul(buf, &e, 10);
		if (*e || a > 255 || !isdigit((unsigned char)buf[0]))
			return -1;
		ok[a / 8] |= (unsigned char)(1u << (a % 8));
		return 0;
	}
	if (buf[n - 1] != ']')
		return -1;
	buf[n - 1] = 0;
	if ((q = strstr(buf + 1, "..")) != NULL) {
		a = strtoul(buf + 1, &e, 10);
		if (e != q || !isdigit((unsigned char)buf[1]))
			return -1;
		b = strtoul(q + 2, &e, 10);
		if (*e || !isdigit((unsigned char)q[2]) || a > b || b > 255)
			return -1;
		for (; a <= b; a++)
			ok[a / 8] |= (unsigned char)(1u << (a % 8));
		return 0;
	}
	for (q = buf + 1; *q;) {
		a = strtoul(q, &e, 10);
		if (e == q || a > 255 || (*e && *e != ';'))
			return -1;
		ok[a / 8] |= (unsigned char)(1u << (a % 8));
		q = *e ? e + 1 : e;
	}
	return 0;
}

/* code_parse - "127.0.0.2", "127.0.[0..255].[1..3]"; 0 or -1 */
static int code_parse(const char *p, struct gl_code *code)
{
	memset(code, 0, sizeof(*code));
	for (int o = 0; o < 4; o++) {
		const char *close = *p == '[' ? strchr(p, ']') : NULL;
		size_t n = close ? (size_t)(close - p) + 1 : o < 3 ? strcspn(p, ".") : strlen(p);

		if ((o < 3 && p[n] != '.') || octet_parse(p, n, code->ok[o]) < 0)
			return -1;
		p += n + (o < 3);
	}
	return 0;
}

/* zone_ok - a DNS name: labels of letters, digits, '-', '_' */
static int zone_ok(const char *z, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > 200 || z[0] == '.' || z[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (z[i] == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (!isalnum((unsigned char)z[i]) && z[i] != '-' && z[i] != '_') {
			return 0;
		} else if (++label > 63) {
			return 0;
		}
	}
	return 1;
}

/* wl_add_code - one more answer code for zone w; 0 or -1 */
static int wl_add_code(struct gl_wl *w, const char *text, char *err, size_t errlen)
{
	struct gl_code *v = realloc(w->codes, (w->ncodes + 1) * sizeof(*v));

	if (v == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	w->codes = v;
	if (code_parse(text, &v[w->ncodes]) < 0) {
		snprintf(err, errlen, "dnswl: '%s' is not an answer code (127.0.0.2, "
			 "127.0.[0..255].[1..3], 127.0.0.[2;4])", text);
		return -1;
	}
	w->ncodes++;
	return 0;
}

/* wl_configure - the dnswl entries; a bare code continues the zone before */
static int wl_configure(struct gl_conf *c, char *err, size_t errlen)
{
	size_t n = 0;

	for (const char *const *p = c->dnswl; p && *p; p++)
		n++;
	if (n > 0 && (c->wls = calloc(n, sizeof(*c->wls))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (const char *const *p = c->dnswl; p && *p; p++) {
		const char *e = *p, *eq = strchr(e, '=');
		size_t zl = eq ? (size_t)(eq - e) : strlen(e);
		struct gl_wl *w;

		if (!eq && c->nwls > 0 && c->wls[c->nwls - 1].codes != NULL &&
		    isdigit((unsigned char)e[0]) && code_parse(e, &(struct gl_code){ 0 }) == 0) {
			if (wl_add_code(&c->wls[c->nwls - 1], e, err, errlen) < 0)
				return -1;
			continue;
		}
		if (!zone_ok(e, zl)) {
			snprintf(err, errlen, "dnswl: '%s': '%.*s' is not a zone name", e, (int)zl, e);
			return -1;
		}
		w = &c->wls[c->nwls++];
		snprintf(w->zone, sizeof(w->zone), "%.*s", (int)zl, e);
		lower_zone(w->zone);
		if (eq && wl_add_code(w, eq + 1, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static int gl_configure(void *conf, char *err, size_t errlen)
{
	struct gl_conf *c = conf;
	size_t n = 0;

	for (const char *const *p = c->allow_networks; p && *p; p++)
		n++;
	if (n > 0 && (c->nets = calloc(n, sizeof(*c->nets))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (const char *const *p = c->allow_networks; p && *p; p++) {
		if (gl_net_parse(*p, &c->nets[c->nnets]) < 0) {
			snprintf(err, errlen, "allow_networks: '%s' is not ADDR or ADDR/LEN", *p);
			gl_unconfigure(c);
			return -1;
		}
		c->nnets++;
	}
	if (c->delay >= c->retry_window) {
		snprintf(err, errlen, "delay must be shorter than retry_window");
		gl_unconfigure(c);
		return -1;
	}
	if (c->text == NULL || strpbrk(c->text, "\r\n") != NULL) {
		snprintf(err, errlen, "text: one line");
		gl_unconfigure(c);
		return -1;
	}
	if (wl_configure(c, err, errlen) < 0) {
		gl_unconfigure(c);
		return -1;
	}
	host->log(NULL, PX_PRIO_INFO, "delay_ms=%lld retry_window_ms=%lld max_age_ms=%lld "
		  "auto_allow=%lld dnswl_zones=%zu", c->delay, c->retry_window, c->max_age,
		  c->auto_allow, c->nwls);
	return 0;
}

/* ------------------------------------------------------------ matching */

/* domain_of - what follows the last '@', or "" */
static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : "";
}

/* domain_in - d is dom or one of its subdomains (case ignored) */
static int domain_in(const char *d, const char *dom)
{
	size_t n = strlen(d), m = strlen(dom);

	if (m == 0 || n < m || strcasecmp(d + n - m, dom) != 0)
		return 0;
	return n == m || d[n - m - 1] == '.';
}

/* addr_listed - addr against "a@b", "local@", "@domain", "domain" entries */
static int addr_listed(const char *const *list, const char *addr)
{
	const char *dom = domain_of(addr), *at;

	for (; list && *list; list++) {
		const char *e = *list;

		if ((at = strchr(e, '@')) == NULL) {
			if (domain_in(dom, e))
				return 1;
		} else if (at == e) {
			if (strcasecmp(dom, e + 1) == 0)
				return 1;
		} else if (at[1] == '\0') {
			if (strncasecmp(addr, e, (size_t)(at - e + 1)) == 0)
				return 1;
		} else if (strcasecmp(addr, e) == 0) {
			return 1;
		}
	}
	return 0;
}

/* spf_passed - a result spf=pass in this transaction */
static int spf_passed(struct px_txn *txn)
{
	size_t i, n = host->result_count(txn);
	const char *plugin, *method, *result, *props;

	for (i = 0; i < n; i++)
		if (host->result_at(txn, i, &plugin, &method, &result, &props) == 0 &&
		    strcmp(method, "spf") == 0 && strcmp(result, "pass") == 0)
			return 1;
	return 0;
}

/* lower - in place */
static void lower(char *s)
{
	for (; *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* fnv64 - the hash that keeps an over-long key unique */
static uint64_t fnv64(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* triplet_key - "t:NET/SENDER/RCPT", lower-cased, hashed when too long */
static void triplet_key(char *key, size_t size, const char *net, const char *from,
			const char *rcpt)
{
	char full[1024];

	snprintf(full, sizeof(full), "t:%s/%s/%s", net, from, rcpt);
	lower(full);
	if (strlen(full) < KEY_MAX) {
		snprintf(key, size, "%s", full);
		return;
	}
	snprintf(key, size, "%.*s#%016" PRIx64, KEY_MAX - 20, full, fnv64(full));
}

/* ------------------------------------------------------------- the hook */

struct gl_entry {
	long long first;          /* ms since the epoch */
	long long passes;
};

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* entry_get - the triplet's entry: 1 found, 0 not, -1 the store failed */
static int entry_get(struct px_txn *txn, const char *key, struct gl_entry *e)
{
	char buf[64];
	size_t len;
	enum px_store_status st = host->store_get(txn, key, buf, sizeof(buf) - 1, &len);

	if (st == PX_STORE_ERROR)
		return -1;
	if (st == PX_STORE_NOTFOUND)
		return 0;
	buf[len < sizeof(buf) - 1 ? len : sizeof(buf) - 1] = '\0';
	if (sscanf(buf, "%lld %lld", &e->first, &e->passes) != 2)
		return 0;             /* not ours: start over */
	return 1;
}

static int entry_put(struct px_txn *txn, const char *key, const struct gl_entry *e,
		     long long ttl)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "%lld %lld", e->first, e->passes);

	return host->store_set(txn, key, buf, (size_t)n, (unsigned long long)ttl) == PX_STORE_OK
		? 0 : -1;
}

/* defer - 451 4.7.1 with the time left */
static enum px_verdict defer(const struct gl_conf *c, struct px_txn *txn, const char *key,
			     long long left_ms)
{
	char text[600];

	snprintf(text, sizeof(text), "%s (retry in %llds)", c->text, (left_ms + 999) / 1000);
	host->set_reply(txn, 451, "4.7.1", text);
	host->record(txn, "greylist", "greylisted", NULL);
	host->log(txn, PX_PRIO_INFO, "greylisted=yes key=\"%s\" retry_in_s=%lld", key,
		  (left_ms + 999) / 1000);
	return PX_TEMPFAIL;
}

/* exempt - why the recipient is not greylisted, or NULL */
static const char *exempt(const struct gl_conf *c, struct px_txn *txn, const char *from,
			  const char *rcpt, const struct gl_addr *a)
{
	if (host->get(txn, "auth.login") != NULL)
		return "authenticated";
	for (size_t i = 0; i < c->nnets; i++)
		if (gl_net_has(&c->nets[i], a))
			return "allow-network";
	if (*from && addr_listed(c->allow_senders, from))
		return "allow-sender";
	if (addr_listed(c->allow_recipients, rcpt))
		return "allow-recipient";
	return NULL;
}

/* reversed - the DNSxL form of an address ("4.3.2.1", IPv6 nibbles) */
static int reversed(const char *addr, char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t o = 0;

	if (inet_pton(AF_INET, addr, b) == 1) {
		snprintf(out, len, "%u.%u.%u.%u", b[3], b[2], b[1], b[0]);
		return 0;
	}
	if (inet_pton(AF_INET6, addr, b) != 1 || len < 64)
		return -1;
	if (memcmp(b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		snprintf(out, len, "%u.%u.%u.%u", b[15], b[14], b[13], b[12]);
		return 0;
	}
	for (int i = 15; i >= 0; i--) {
		out[o++] = hex[b[i] & 0xf];
		out[o++] = '.';
		out[o++] = hex[b[i] >> 4];
		out[o++] = i ? '.' : '\0';
	}
	return 0;
}

/* code_counts - an A answer (network order) that lists in w */
static int code_counts(const struct gl_wl *w, const unsigned char *a)
{
	if (w->codes == NULL)
		return a[0] == 127 && !(a[1] == 0 && a[2] == 0 && a[3] == 255);
	for (size_t i = 0; i < w->ncodes; i++) {
		int o;

		for (o = 0; o < 4 && (w->codes[i].ok[o][a[o] / 8] & (1u << (a[o] % 8))); o++)
			;
		if (o == 4)
			return 1;
	}
	return 0;
}

/* dnswl_listed - the first dnswl zone that lists the client, or NULL */
static const char *dnswl_listed(const struct gl_conf *c, struct px_txn *txn, const char *addr)
{
	char rev[80], name[400];

	if (c->nwls == 0 || reversed(addr, rev, sizeof(rev)) < 0)
		return NULL;
	for (size_t i = 0; i < c->nwls; i++) {
		const struct gl_wl *w = &c->wls[i];
		struct px_dns_answer *ans = NULL;
		enum px_dns_status st;
		int hit = 0;

		snprintf(name, sizeof(name), "%s.%s", rev, w->zone);
		st = host->dns_query(txn, name, 1, &ans);
		for (size_t j = 0; st == PX_DNS_OK && ans && j < ans->count && !hit; j++)
			hit = ans->len[j] == 4 && code_counts(w, ans->data[j]);
		if (st == PX_DNS_TEMPFAIL || st == PX_DNS_ERROR)
			host->log(txn, PX_PRIO_INFO, "dnswl zone=%s error=%s", w->zone,
				  st == PX_DNS_TEMPFAIL ? "tempfail" : "query");
		if (ans)
			host->dns_free(ans);
		if (hit)
			return w->zone;
	}
	return NULL;
}

/* client_net - the triplet's first part: the network, or d:DOMAIN */
static void client_net(const struct gl_conf *c, struct px_txn *txn, const struct gl_addr *a,
		       const char *from, char *net, size_t size)
{
	if (c->spf_domain && *domain_of(from) && spf_passed(txn))
		snprintf(net, size, "d:%s", domain_of(from));
	else
		gl_net_text(a, (unsigned)(a->family == AF_INET ? c->ipv4_prefix : c->ipv6_prefix),
			    net, size);
}

/* auto_allowed - the network passed often enough: 1, 0, -1 store failed */
static int auto_allowed(const struct gl_conf *c, struct px_txn *txn, const char *ckey)
{
	char buf[32];
	size_t len;
	long long v;
	enum px_store_status st;

	st = host->store_get(txn, ckey, buf, sizeof(buf) - 1, &len);
	if (st == PX_STORE_ERROR)
		return -1;
	if (st == PX_STORE_NOTFOUND)
		return 0;
	buf[len < sizeof(buf) - 1 ? len : sizeof(buf) - 1] = '\0';
	v = atoll(buf);
	return v >= GL_ALLOWED || (c->auto_allow > 0 && v >= c->auto_allow);
}

static enum px_verdict gl_rcpt(const void *conf, struct px_txn *txn)
{
	const struct gl_conf *c = conf;
	const char *addr = host->get(txn, "client.addr"), *from = host->get(txn, "mail.from");
	const char *rcpt = host->get(txn, "rcpt"), *why;
	char net[300], key[KEY_MAX + 32], ckey[320];
	struct gl_addr a;
	struct gl_entry e;
	long long now = now_ms(), v;
	int rc;

	if (addr == NULL || from == NULL || rcpt == NULL || gl_addr_parse(addr, &a) < 0)
		return PX_NEXT;
	if ((why = exempt(c, txn, from, rcpt, &a)) != NULL) {
		host->record(txn, "greylist", "skip", why);
		return PX_NEXT;
	}
	if ((why = dnswl_listed(c, txn, addr)) != NULL) {
		char props[300];

		snprintf(props, sizeof(props), "reason=dnswl zone=%s", why);
		host->record(txn, "greylist", "skip", props);
		host->log(txn, PX_PRIO_INFO, "dnswl=listed zone=%s client=%s", why, addr);
		return PX_NEXT;
	}
	client_net(c, txn, &a, from, net, sizeof(net));
	snprintf(ckey, sizeof(ckey), "c:%s", net);
	lower(ckey);
	if ((rc = auto_allowed(c, txn, ckey)) != 0) {
		if (rc < 0)
			return GL_FAILED;
		host->record(txn, "greylist", "pass", "reason=auto-allow");
		return PX_NEXT;
	}
	triplet_key(key, sizeof(key), net, *from ? from : "<>", rcpt);
	if ((rc = entry_get(txn, key, &e)) < 0)
		return GL_FAILED;
	if (rc == 0) {                        /* first sight */
		e.first = now;
		e.passes = 0;
		if (entry_put(txn, key, &e, c->retry_window) < 0)
			return GL_FAILED;
		return defer(c, txn, key, c->delay);
	}
	if (e.passes == 0 && now - e.first < c->delay)
		return defer(c, txn, key, c->delay - (now - e.first));
	if (e.passes == 0 && c->auto_allow > 0 &&
	    host->store_incr(txn, ckey, 1, (unsigned long long)c->auto_allow_age, &v) != PX_STORE_OK)
		return GL_FAILED;
	e.passes++;
	if (entry_put(txn, key, &e, c->max_age) < 0)
		return GL_FAILED;
	host->record(txn, "greylist", "pass", e.passes == 1 ? "reason=retried" : "reason=known");
	if (e.passes == 1)
		host->log(txn, PX_PRIO_INFO, "greylisted=passed key=\"%s\" waited_s=%lld", key,
			  (now - e.first) / 1000);
	return PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "greylist",
	.version = "1.0",
	.description = "defer the first attempt of an unknown (network, sender, recipient)",
	.options = gl_options,
	.conf_size = sizeof(struct gl_conf),
	.load = gl_load,
	.configure = gl_configure,
	.unconfigure = gl_unconfigure,
	.on_rcpt = gl_rcpt,
};
