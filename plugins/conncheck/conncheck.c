/*
 * NAME
 *	conncheck - connection checks: forward-confirmed reverse DNS (iprev)
 *	and the HELO/EHLO name
 * SUMMARY
 *	iprev (RFC 8601 section 2.7.3): at connect, the PTR names of the
 *	client address, then the A (or AAAA) records of each name, all
 *	looked up through the host's resolver without blocking a worker (the
 *	hook answers PX_PENDING); the result goes into Authentication-Results
 *	as "iprev=RESULT policy.iprev=ADDR (NAME)". HELO: at each HELO/EHLO,
 *	the name is judged without DNS; the result is one the policy can act
 *	on ("helo=forged reject").
 * SYNOPSIS
 *	plugin "conncheck" {
 *	    iprev = yes
 *	    iprev_max_names = 5
 *	    helo = yes
 *	    own_names = "mx.example.com, example.com"    # default: hostname
 *	    own_addresses = "198.51.100.25, 2001:db8::25"
 *	    own_networks = "127.0.0.0/8, ::1/128"
 *	}
 * DESCRIPTION
 *	iprev results (method "iprev", props "policy.iprev=ADDR"):
 *	  pass       a PTR name's A/AAAA records contain the client address
 *	             (the comment names it)
 *	  fail       PTR names exist, but none leads back to the address
 *	  permerror  no PTR record (NXDOMAIN or no data)
 *	  temperror  a lookup failed (SERVFAIL, timeout) before a result
 *	The first iprev_max_names PTR names are checked. Loopback clients are
 *	not checked. Each transaction's Authentication-Results carries the
 *	session's iprev result (it is recorded again at MAIL when the host no
 *	longer holds the one from connect).
 *
 *	HELO results (method "helo", props "smtp.helo=NAME"):
 *	  pass       a host name, or an address literal of the client
 *	  invalid    neither a domain name nor an address literal (a bare
 *	             address, bad characters, an empty label, a bad literal)
 *	  nonfqdn    a name of one label ("localhost", "WIN-PC")
 *	  mismatch   an address literal that is not the client's address
 *	  forged     one of own_names, or a literal of one of own_addresses,
 *	             from a client outside own_networks and own_addresses
 * DIAGNOSTICS
 *	iprev result=R addr=A name=N ptr=K ms=T [reason=...]
 *	helo result=R helo=NAME [reason=...]
 */
#include <postern/plugin.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#define DNS_A 1
#define DNS_PTR 12
#define DNS_AAAA 28
#define MAX_NAMES 10

static const struct px_host *host;

/* An address or a network: family, bytes, prefix length. */
struct net {
	int af;
	unsigned char b[16];
	int bits;
};

struct cc_conf {
	/* options */
	int iprev;
	long long max_names;
	int helo;
	const char *const *own_names;
	const char *const *own_addresses;
	const char *const *own_networks;
	/* derived */
	struct net *own_addr, *own_net;
	size_t nown_addr, nown_net;
};

static const struct px_option cc_options[] = {
	{ "iprev", PX_OPT_BOOL, "yes", 0, 0, offsetof(struct cc_conf, iprev),
	  "check forward-confirmed reverse DNS at connect (iprev)" },
	{ "iprev_max_names", PX_OPT_INT, "5", 1, MAX_NAMES, offsetof(struct cc_conf, max_names),
	  "PTR names whose addresses are looked up" },
	{ "helo", PX_OPT_BOOL, "yes", 0, 0, offsetof(struct cc_conf, helo),
	  "judge the HELO/EHLO name" },
	{ "own_names", PX_OPT_LIST, NULL, 0, 0, offsetof(struct cc_conf, own_names),
	  "our names, which a stranger's HELO must not claim (default: hostname)" },
	{ "own_addresses", PX_OPT_LIST, NULL, 0, 0, offsetof(struct cc_conf, own_addresses),
	  "our addresses, which a stranger's HELO literal must not claim" },
	{ "own_networks", PX_OPT_LIST, "127.0.0.0/8, ::1/128", 0, 0,
	  offsetof(struct cc_conf, own_networks),
	  "clients that may use our names and addresses in HELO" },
	{ 0 }
};

enum iprev_result { IP_NONE = 0, IP_PASS, IP_FAIL, IP_PERMERROR, IP_TEMPERROR };
static const char *const ip_names[] = { "none", "pass", "fail", "permerror", "temperror" };

/* Per-session state behind slot(). The lookups of the connect call write
 * it (on the event loop); later calls read it (the host's resume orders
 * them). */
struct session {
	enum iprev_result result;
	char addr[INET6_ADDRSTRLEN];
	char name[256];           /* the confirmed name, or the first PTR name */
};

/* One iprev evaluation in flight. */
struct fwd {
	struct iprev *ip;
	char name[256];
	int state;                /* 0 none yet, 1 match, 2 no match, 3 temperror */
};
struct iprev {
	struct px_txn *txn;
	px_call_id call;
	struct session *s;
	struct net client;
	struct timeval t0;
	atomic_int left;
	size_t n, max;            /* PTR names taken, and at most */
	struct fwd f[MAX_NAMES];
};

/* ------------------------------------------------------- addresses --- */

/* parse_addr - an address (v4-mapped v6 becomes v4); 0 or -1 */
static int parse_addr(const char *s, struct net *n)
{
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, s, n->b) == 1) {
		n->af = AF_INET;
		n->bits = 32;
		return 0;
	}
	if (inet_pton(AF_INET6, s, n->b) != 1)
		return -1;
	n->af = AF_INET6;
	n->bits = 128;
	if (memcmp(n->b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) {
		memmove(n->b, n->b + 12, 4);
		memset(n->b + 4, 0, 12);
		n->af = AF_INET;
		n->bits = 32;
	}
	return 0;
}

/* parse_net - "ADDR" or "ADDR/BITS"; 0 or -1 */
static int parse_net(const char *s, struct net *n)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	long bits;

	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	if (parse_addr(buf, n) < 0)
		return -1;
	if (slash == NULL)
		return 0;
	bits = strtol(slash + 1, &end, 10);
	if (end == slash + 1 || *end != '\0' || bits < 0 || bits > (n->af == AF_INET ? 32 : 128))
		return -1;
	n->bits = (int)bits;
	return 0;
}

/* in_net - is a in network n? */
static int in_net(const struct net *a, const struct net *n)
{
	int full = n->bits / 8, rest = n->bits % 8;

	if (a->af != n->af || memcmp(a->b, n->b, (size_t)full) != 0)
		return 0;
	return rest == 0 || ((a->b[full] ^ n->b[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

static int same_addr(const struct net *a, const struct net *b)
{
	return a->af == b->af && memcmp(a->b, b->b, a->af == AF_INET ? 4 : 16) == 0;
}

/* ------------------------------------------------------- life cycle --- */

static int cc_load(const struct px_host *h, char *err, size_t errlen)
{
	if (h->abi_major != PX_ABI_MAJOR || h->abi_minor < 2) {
		snprintf(err, errlen, "needs a host with ABI 1.2 or later (the resolver); this "
			 "host has %u.%u", h->abi_major, h->abi_minor);
		return -1;
	}
	host = h;
	return 0;
}

static void cc_unconfigure(void *conf)
{
	struct cc_conf *c = conf;

	free(c->own_addr);
	free(c->own_net);
	c->own_addr = c->own_net = NULL;
	c->nown_addr = c->nown_net = 0;
}

/* nets - parse a list of networks (addresses when plain) */
static int nets(const char *opt, const char *const *in, int plain, struct net **out, size_t *n,
		char *err, size_t errlen)
{
	size_t k = 0;

	for (const char *const *p = in; p != NULL && *p != NULL; p++)
		k++;
	if ((*out = calloc(k + 1, sizeof(struct net))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (*n = 0; *n < k; (*n)++)
		if ((plain ? parse_addr(in[*n], &(*out)[*n]) : parse_net(in[*n], &(*out)[*n])) < 0) {
			snprintf(err, errlen, "%s: '%s' is not %s", opt, in[*n],
				 plain ? "an IP address" : "an address or a network (ADDR/BITS)");
			return -1;
		}
	return 0;
}

static int cc_configure(void *conf, char *err, size_t errlen)
{
	struct cc_conf *c = conf;

	if (nets("own_addresses", c->own_addresses, 1, &c->own_addr, &c->nown_addr, err,
		 errlen) < 0 ||
	    nets("own_networks", c->own_networks, 0, &c->own_net, &c->nown_net, err, errlen) < 0) {
		cc_unconfigure(c);
		return -1;
	}
	host->log(NULL, PX_PRIO_INFO, "configured iprev=%s iprev_max_names=%lld helo=%s "
		  "own_addresses=%zu own_networks=%zu", c->iprev ? "yes" : "no", c->max_names,
		  c->helo ? "yes" : "no", c->nown_addr, c->nown_net);
	return 0;
}

static struct session *session(struct px_txn *txn)
{
	void **slot = host->slot(txn);

	if (*slot == NULL)
		*slot = calloc(1, sizeof(struct session));
	return *slot;
}

static void cc_close(const void *conf, struct px_txn *txn)
{
	void **slot = host->slot(txn);

	(void)conf;
	free(*slot);
	*slot = NULL;
}

/* ------------------------------------------------------------ iprev --- */

/* ptr_name - the reverse name of an address */
static void ptr_name(const struct net *a, char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (a->af == AF_INET) {
		snprintf(out, len, "%u.%u.%u.%u.in-addr.arpa", a->b[3], a->b[2], a->b[1], a->b[0]);
		return;
	}
	for (int i = 15; i >= 0 && o + 5 < len; i--) {
		out[o++] = hex[a->b[i] & 0xf];
		out[o++] = '.';
		out[o++] = hex[a->b[i] >> 4];
		out[o++] = '.';
	}
	snprintf(out + o, len - o, "ip6.arpa");
}

/* wire_name - rdata holding an uncompressed name into dotted lower case
 * text without the final dot; 0, or -1 (compressed, bad, odd characters) */
static int wire_name(const unsigned char *d, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	while (i < len) {
		size_t l = d[i++];

		if (l == 0)
			break;
		if (l > 63 || i + l > len || o + l + 2 > outlen)
			return -1;
		if (o > 0)
			out[o++] = '.';
		for (size_t k = 0; k < l; k++) {
			unsigned char ch = d[i + k];

			if (!isalnum(ch) && ch != '-' && ch != '_')
				return -1;
			out[o++] = (char)tolower(ch);
		}
		i += l;
	}
	if (o == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

static long elapsed_ms(const struct timeval *t0)
{
	struct timeval now;

	gettimeofday(&now, NULL);
	return (now.tv_sec - t0->tv_sec) * 1000L + (now.tv_usec - t0->tv_usec) / 1000L;
}

/* iprev_props - "policy.iprev=ADDR (NAME)"; an IPv6 address is quoted,
 * since ':' may not appear in an RFC 2045 token (RFC 8601's pvalue) */
static void iprev_props(const struct session *s, char *out, size_t len)
{
	const char *q = strchr(s->addr, ':') != NULL ? "\"" : "";

	if (s->name[0] != '\0' && s->result == IP_PASS)
		snprintf(out, len, "policy.iprev=%s%s%s (%s)", q, s->addr, q, s->name);
	else
		snprintf(out, len, "policy.iprev=%s%s%s", q, s->addr, q);
}

/* iprev_end - the result is known: record it, log it, end the call */
static void iprev_end(struct iprev *ip, enum iprev_result r, const char *reason)
{
	struct session *s = ip->s;
	char props[400];

	s->result = r;
	iprev_props(s, props, sizeof(props));
	host->record(ip->txn, "iprev", ip_names[r], props);
	host->log(ip->txn, PX_PRIO_INFO, "iprev result=%s addr=%s name=%s ptr=%zu ms=%ld%s%s",
		  ip_names[r], s->addr, s->name[0] ? s->name : "-", ip->n, elapsed_ms(&ip->t0),
		  reason ? " reason=" : "", reason ? reason : "");
	host->resume_call(ip->txn, ip->call, PX_NEXT);
	free(ip);
}

/* fwd_all_in - every forward lookup has answered */
static void fwd_all_in(struct iprev *ip)
{
	int temp = 0;

	for (size_t i = 0; i < ip->n; i++) {
		if (ip->f[i].state == 1) {
			snprintf(ip->s->name, sizeof(ip->s->name), "%s", ip->f[i].name);
			iprev_end(ip, IP_PASS, NULL);
			return;
		}
		temp += ip->f[i].state == 3;
	}
	if (temp)
		iprev_end(ip, IP_TEMPERROR, "forward-lookup-failed");
	else
		iprev_end(ip, IP_FAIL, "no-name-leads-back");
}

static void fwd_done_one(struct iprev *ip)
{
	if (atomic_fetch_sub(&ip->left, 1) == 1)
		fwd_all_in(ip);
}

/* fwd_answered - A/AAAA of one PTR name */
static void fwd_answered(void *arg, struct px_dns_answer *ans)
{
	struct fwd *f = arg;
	struct iprev *ip = f->ip;
	size_t alen = ip->client.af == AF_INET ? 4 : 16;

	if (ans == NULL || ans->status == PX_DNS_TEMPFAIL || ans->status == PX_DNS_ERROR) {
		f->state = 3;
	} else {
		f->state = 2;
		for (size_t i = 0; ans->status == PX_DNS_OK && i < ans->count; i++)
			if (ans->len[i] == alen && memcmp(ans->data[i], ip->client.b, alen) == 0)
				f->state = 1;
	}
	if (ans != NULL)
		host->dns_free(ans);
	fwd_done_one(ip);
}

/* ptr_answered - the PTR names: look each one up, in parallel */
static void ptr_answered(void *arg, struct px_dns_answer *ans)
{
	struct iprev *ip = arg;
	int type = ip->client.af == AF_INET ? DNS_A : DNS_AAAA;

	if (ans == NULL || ans->status == PX_DNS_TEMPFAIL || ans->status == PX_DNS_ERROR) {
		if (ans != NULL)
			host->dns_free(ans);
		iprev_end(ip, IP_TEMPERROR, "ptr-lookup-failed");
		return;
	}
	if (ans->status != PX_DNS_OK) {
		host->dns_free(ans);
		iprev_end(ip, IP_PERMERROR, "no-ptr");
		return;
	}
	for (size_t i = 0; i < ans->count && ip->n < ip->max; i++)
		if (wire_name(ans->data[i], ans->len[i], ip->f[ip->n].name,
			      sizeof(ip->f[ip->n].name)) == 0)
			ip->f[ip->n++].ip = ip;
	host->dns_free(ans);
	if (ip->n == 0) {
		iprev_end(ip, IP_FAIL, "no-usable-ptr-name");
		return;
	}
	snprintf(ip->s->name, sizeof(ip->s->name), "%s", ip->f[0].name);
	atomic_init(&ip->left, (int)ip->n + 1);
	for (size_t i = 0; i < ip->n; i++)
		if (host->dns_query_async(ip->txn, ip->f[i].name, type, fwd_answered, &ip->f[i]) < 0) {
			ip->f[i].state = 3;
			fwd_done_one(ip);
		}
	fwd_done_one(ip);
}

/* cc_connect - start the iprev evaluation */
static enum px_verdict cc_connect(const void *conf, struct px_txn *txn)
{
	const struct cc_conf *c = conf;
	const char *addr = host->get(txn, "client.addr");
	struct session *s = session(txn);
	struct iprev *ip;
	char rev[80];

	if (s == NULL)
		return PX_NEXT;
	memset(s, 0, sizeof(*s));           /* XCLIENT runs connect again: a new client */
	if (!c->iprev || addr == NULL)
		return PX_NEXT;
	if ((ip = calloc(1, sizeof(*ip))) == NULL)
		return PX_NEXT;
	if (parse_addr(addr, &ip->client) < 0 ||
	    (ip->client.af == AF_INET && ip->client.b[0] == 127) ||
	    (ip->client.af == AF_INET6 && memcmp(ip->client.b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1",
						 16) == 0)) {
		free(ip);
		return PX_NEXT;                 /* loopback: nothing to confirm */
	}
	inet_ntop(ip->client.af, ip->client.b, s->addr, sizeof(s->addr));
	ip->txn = txn;
	ip->s = s;
	ip->max = (size_t)c->max_names;
	ip->call = host->pending(txn);
	gettimeofday(&ip->t0, NULL);
	ptr_name(&ip->client, rev, sizeof(rev));
	if (host->dns_query_async(txn, rev, DNS_PTR, ptr_answered, ip) < 0) {
		s->result = IP_TEMPERROR;
		free(ip);
		host->log(txn, PX_PRIO_WARN, "iprev result=temperror addr=%s reason=not-started",
			  s->addr);
		iprev_props(s, rev, sizeof(rev));
		host->record(txn, "iprev", "temperror", rev);
		return PX_NEXT;
	}
	return PX_PENDING;
}

/* cc_mail - the session's iprev result in this transaction too */
static enum px_verdict cc_mail(const void *conf, struct px_txn *txn)
{
	struct session *s = *host->slot(txn);
	size_t n = host->result_count(txn);
	char props[400];

	(void)conf;
	if (s == NULL || s->result == IP_NONE)
		return PX_NEXT;
	for (size_t i = 0; i < n; i++) {
		const char *p, *m, *r, *pr;

		if (host->result_at(txn, i, &p, &m, &r, &pr) == 0 && strcmp(m, "iprev") == 0)
			return PX_NEXT;         /* the host kept the one from connect */
	}
	iprev_props(s, props, sizeof(props));
	host->record(txn, "iprev", ip_names[s->result], props);
	return PX_NEXT;
}

/* ------------------------------------------------------------- HELO --- */

/* stranger - is the client neither us nor one of own_networks? */
static int stranger(const struct cc_conf *c, const struct net *client)
{
	for (size_t i = 0; i < c->nown_net; i++)
		if (in_net(client, &c->own_net[i]))
			return 0;
	for (size_t i = 0; i < c->nown_addr; i++)
		if (same_addr(client, &c->own_addr[i]))
			return 0;
	return 1;
}

/* own_address - is a one of own_addresses? */
static int own_address(const struct cc_conf *c, const struct net *a)
{
	for (size_t i = 0; i < c->nown_addr; i++)
		if (same_addr(a, &c->own_addr[i]))
			return 1;
	return 0;
}

/* same_name - a equals b, case and a final dot ignored */
static int same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	la -= la > 0 && a[la - 1] == '.';
	lb -= lb > 0 && b[lb - 1] == '.';
	return la == lb && la > 0 && strncasecmp(a, b, la) == 0;
}

/* own_name - is name one of own_names (default: our hostname)? */
static int own_name(const struct cc_conf *c, struct px_txn *txn, const char *name)
{
	const char *hn;

	if (c->own_names == NULL || c->own_names[0] == NULL)
		return (hn = host->get(txn, "hostname")) != NULL && same_name(name, hn);
	for (const char *const *p = c->own_names; *p != NULL; p++)
		if (same_name(name, *p))
			return 1;
	return 0;
}

/* name_syntax - 0 a domain of several labels, 1 of one label, -1 invalid */
static int name_syntax(const char *s)
{
	size_t n = strlen(s), label = 0, labels = 0;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -1;
	for (size_t i = 0; i <= n; i++) {
		unsigned char ch = i < n ? (unsigned char)s[i] : '.';

		if (ch == '.') {
			if (label == 0 || s[i - 1] == '-')
				return -1;
			labels++;
			label = 0;
		} else if (isalnum(ch) || ch == '_' || (ch == '-' && label > 0)) {
			if (++label > 63)
				return -1;
		} else {
			return -1;
		}
	}
	return labels > 1 ? 0 : 1;
}

/* judge_literal - "[1.2.3.4]" or "[IPv6:...]" */
static const char *judge_literal(const struct cc_conf *c, const char *helo, const struct net *cl,
				 int have_client, const char **reason)
{
	char buf[INET6_ADDRSTRLEN + 8];
	size_t n = strlen(helo);
	const char *in;
	struct net a;

	if (n < 3 || helo[n - 1] != ']' || n - 2 >= sizeof(buf))
		return (*reason = "bad-address-literal"), "invalid";
	memcpy(buf, helo + 1, n - 2);
	buf[n - 2] = '\0';
	in = buf;
	if (strncasecmp(in, "IPv6:", 5) == 0) {
		in += 5;
		if (strchr(in, ':') == NULL || parse_addr(in, &a) < 0)
			return (*reason = "bad-address-literal"), "invalid";
	} else if (strchr(in, ':') != NULL || parse_addr(in, &a) < 0) {
		return (*reason = "bad-address-literal"), "invalid";
	}
	if (have_client && same_addr(&a, cl))
		return "pass";
	if (own_address(c, &a) && (!have_client || stranger(c, cl)))
		return (*reason = "our-address"), "forged";
	return (*reason = "not-the-client-address"), "mismatch";
}

/* cc_helo - judge the HELO/EHLO name */
static enum px_verdict cc_helo(const void *conf, struct px_txn *txn)
{
	const struct cc_conf *c = conf;
	const char *helo = host->get(txn, "helo"), *addr = host->get(txn, "client.addr");
	const char *result = "pass", *reason = NULL;
	struct net cl, tmp;
	int have_client = addr != NULL && parse_addr(addr, &cl) == 0;
	char props[300];
	int syn;

	if (!c->helo || helo == NULL || *helo == '\0')
		return PX_NEXT;
	if (helo[0] == '[') {
		result = judge_literal(c, helo, &cl, have_client, &reason);
	} else if (parse_addr(helo, &tmp) == 0) {
		result = "invalid";
		reason = "address-without-brackets";
	} else if ((syn = name_syntax(helo)) < 0) {
		result = "invalid";
		reason = "not-a-domain-name";
	} else if (own_name(c, txn, helo) && (!have_client || stranger(c, &cl))) {
		result = "forged";
		reason = "our-name";
	} else if (syn == 1) {
		result = "nonfqdn";
		reason = "one-label";
	}
	/* props are one token: a HELO with odd characters is cut at the first */
	snprintf(props, sizeof(props), "smtp.helo=%.*s", (int)strcspn(helo, " \t;()\"\\"), helo);
	host->record(txn, "helo", result, props);
	host->log(txn, reason ? PX_PRIO_INFO : PX_PRIO_DEBUG, "helo result=%s helo=\"%.200s\"%s%s",
		  result, helo, reason ? " reason=" : "", reason ? reason : "");
	return PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "conncheck",
	.version = "1.0",
	.description = "connection checks: iprev (forward-confirmed reverse DNS), HELO name",
	.options = cc_options,
	.conf_size = sizeof(struct cc_conf),
	.load = cc_load,
	.configure = cc_configure,
	.unconfigure = cc_unconfigure,
	.on_connect = cc_connect,
	.on_helo = cc_helo,
	.on_mail = cc_mail,
	.on_close = cc_close,
};
