/*
 * NAME
 *	ratelimit - connections, messages and recipients per client and per
 *	sender domain, per time window, counted in the store
 * SYNOPSIS
 *	plugin "ratelimit" {
 *	    connections        = 60      # per client, per connections_window (0 = off)
 *	    connections_window = 1m
 *	    messages           = 200     # MAIL commands per client, per messages_window
 *	    messages_window    = 1h
 *	    recipients         = 1000    # RCPTs per client, per recipients_window
 *	    recipients_window  = 1h
 *	    domain_messages    = 0       # MAIL per sender domain, per domain_window
 *	    domain_recipients  = 0       # RCPT per sender domain, per domain_window
 *	    domain_window      = 1h
 *	    ipv4_prefix        = 32      # a client is its address, or its network
 *	    ipv6_prefix        = 64
 *	    allow_networks     = "127.0.0.0/8, ::1/128"
 *	}
 * DESCRIPTION
 *	Each limit is a fixed window counter in the store (host->store_incr:
 *	the first count of a window sets its expiry), so with a Redis store
 *	every node of a cluster counts into the same counter and the limit
 *	holds cluster-wide. The attempt that takes a counter past its limit,
 *	and every one after it until the window ends, is refused:
 *	    connection  421 4.7.0 Too many connections from ADDR, try again later
 *	                (and the session is closed)
 *	    MAIL        451 4.7.1 Too many messages from ADDR|DOMAIN, try again later
 *	    RCPT        451 4.7.1 Too many recipients from ADDR|DOMAIN, try again later
 *	with the result ratelimit=exceeded (props limit=connections|messages|
 *	recipients|domain_messages|domain_recipients), for the policy.
 *	Refused attempts count too: a client that keeps trying stays refused
 *	until its window ends. Authenticated clients and allow_networks are not
 *	counted (and nothing is recorded). The null sender has no domain: only the
 *	per-client limits apply to it.
 *
 *	When the store fails, the hook answers PX_VERDICT_COUNT ("failed"):
 *	on_error decides (tempfail by default; "accept" lets mail through
 *	uncounted while the store is down).
 *
 *	Keys (under the host's "ratelimit:" prefix): conn:NET, msg:NET,
 *	rcpt:NET, dmsg:DOMAIN, drcpt:DOMAIN; NET as "192.0.2.7/32".
 */
#include <postern/plugin.h>

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

#define RL_FAILED ((enum px_verdict)PX_VERDICT_COUNT)

static const struct px_host *host;

struct rl_conf {
	long long connections, messages, recipients, domain_messages, domain_recipients;
	long long connections_window, messages_window, recipients_window, domain_window;
	long long ipv4_prefix, ipv6_prefix;
	const char *const *allow_networks;
	struct gl_net *nets;
	size_t nnets;
};

#define DAY 86400000LL
static const struct px_option rl_options[] = {
	{ "connections", PX_OPT_INT, "0", 0, 100000000, offsetof(struct rl_conf, connections),
	  "connections per client per connections_window (0 = no limit)" },
	{ "connections_window", PX_OPT_DURATION, "1m", 1000, 30 * DAY,
	  offsetof(struct rl_conf, connections_window), "the window of connections" },
	{ "messages", PX_OPT_INT, "0", 0, 100000000, offsetof(struct rl_conf, messages),
	  "MAIL commands per client per messages_window (0 = no limit)" },
	{ "messages_window", PX_OPT_DURATION, "1h", 1000, 30 * DAY,
	  offsetof(struct rl_conf, messages_window), "the window of messages" },
	{ "recipients", PX_OPT_INT, "0", 0, 100000000, offsetof(struct rl_conf, recipients),
	  "RCPT commands per client per recipients_window (0 = no limit)" },
	{ "recipients_window", PX_OPT_DURATION, "1h", 1000, 30 * DAY,
	  offsetof(struct rl_conf, recipients_window), "the window of recipients" },
	{ "domain_messages", PX_OPT_INT, "0", 0, 100000000,
	  offsetof(struct rl_conf, domain_messages),
	  "MAIL commands per sender domain per domain_window (0 = no limit)" },
	{ "domain_recipients", PX_OPT_INT, "0", 0, 100000000,
	  offsetof(struct rl_conf, domain_recipients),
	  "RCPT commands per sender domain per domain_window (0 = no limit)" },
	{ "domain_window", PX_OPT_DURATION, "1h", 1000, 30 * DAY,
	  offsetof(struct rl_conf, domain_window), "the window of the sender-domain limits" },
	{ "ipv4_prefix", PX_OPT_INT, "32", 8, 32, offsetof(struct rl_conf, ipv4_prefix),
	  "IPv4 clients are counted by this network" },
	{ "ipv6_prefix", PX_OPT_INT, "64", 16, 128, offsetof(struct rl_conf, ipv6_prefix),
	  "IPv6 clients are counted by this network" },
	{ "allow_networks", PX_OPT_LIST, "127.0.0.0/8, ::1/128", 0, 0,
	  offsetof(struct rl_conf, allow_networks), "clients never counted (ADDR/LEN)" },
	{ 0 }
};

static int rl_load(const struct px_host *h, char *err, size_t errlen)
{
	if (h->abi_minor < 3) {
		snprintf(err, errlen, "needs a host with ABI 1.3 (the store)");
		return -1;
	}
	host = h;
	return 0;
}

static void rl_unconfigure(void *conf)
{
	struct rl_conf *c = conf;

	free(c->nets);
	c->nets = NULL;
	c->nnets = 0;
}

static int rl_configure(void *conf, char *err, size_t errlen)
{
	struct rl_conf *c = conf;
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
			rl_unconfigure(c);
			return -1;
		}
		c->nnets++;
	}
	host->log(NULL, PX_PRIO_INFO, "connections=%lld messages=%lld recipients=%lld "
		  "domain_messages=%lld domain_recipients=%lld", c->connections, c->messages,
		  c->recipients, c->domain_messages, c->domain_recipients);
	return 0;
}

/* client - the client's counting name (NET), or 0 when it is not counted */
static int client(const struct rl_conf *c, struct px_txn *txn, char *net, size_t size)
{
	const char *addr = host->get(txn, "client.addr");
	struct gl_addr a;

	if (addr == NULL || gl_addr_parse(addr, &a) < 0 || host->get(txn, "auth.login") != NULL)
		return 0;
	for (size_t i = 0; i < c->nnets; i++)
		if (gl_net_has(&c->nets[i], &a))
			return 0;
	gl_net_text(&a, (unsigned)(a.family == AF_INET ? c->ipv4_prefix : c->ipv6_prefix), net,
		    size);
	return 1;
}

/* count - one more in key's window: 1 over the limit, 0 within, -1 failed */
static int count(struct px_txn *txn, const char *kind, const char *who, long long limit,
		 long long window)
{
	char key[400];
	long long v;
	int i;

	if (limit <= 0)
		return 0;
	snprintf(key, sizeof(key), "%s:%s", kind, who);
	for (i = 0; key[i]; i++)
		key[i] = (char)tolower((unsigned char)key[i]);
	if (host->store_incr(txn, key, 1, (unsigned long long)window, &v) != PX_STORE_OK)
		return -1;
	return v > limit;
}

/* refuse - the reply, the result and the log line of a limit */
static enum px_verdict refuse(struct px_txn *txn, int code, const char *esc, const char *what,
			      const char *limit, const char *who, long long n)
{
	char text[512], props[64];

	snprintf(text, sizeof(text), "Too many %s from %s, try again later", what, who);
	snprintf(props, sizeof(props), "limit=%s", limit);
	host->set_reply(txn, code, esc, text);
	host->record(txn, "ratelimit", "exceeded", props);
	host->log(txn, PX_PRIO_INFO, "exceeded=%s who=%s limit=%lld", limit, who, n);
	return code == 421 ? PX_DISCONNECT : PX_TEMPFAIL;
}

static enum px_verdict rl_connect(const void *conf, struct px_txn *txn)
{
	const struct rl_conf *c = conf;
	char net[64];
	int rc;

	if (c->connections <= 0 || !client(c, txn, net, sizeof(net)))
		return PX_NEXT;
	if ((rc = count(txn, "conn", net, c->connections, c->connections_window)) < 0)
		return RL_FAILED;
	return rc ? refuse(txn, 421, "4.7.0", "connections", "connections", net, c->connections)
		: PX_NEXT;
}

/* stage - the per-client and per-domain counters of MAIL or RCPT */
static enum px_verdict stage(const struct rl_conf *c, struct px_txn *txn, int rcpt)
{
	const char *from = host->get(txn, "mail.from"), *at;
	const char *what = rcpt ? "recipients" : "messages";
	long long lim = rcpt ? c->recipients : c->messages;
	long long dlim = rcpt ? c->domain_recipients : c->domain_messages;
	char net[64];
	int rc;

	if (!client(c, txn, net, sizeof(net)))
		return PX_NEXT;
	if ((rc = count(txn, rcpt ? "rcpt" : "msg", net, lim,
			rcpt ? c->recipients_window : c->messages_window)) < 0)
		return RL_FAILED;
	if (rc)
		return refuse(txn, 451, "4.7.1", what, what, net, lim);
	if (from == NULL || (at = strrchr(from, '@')) == NULL || at[1] == '\0')
		return PX_NEXT;
	if ((rc = count(txn, rcpt ? "drcpt" : "dmsg", at + 1, dlim, c->domain_window)) < 0)
		return RL_FAILED;
	return rc ? refuse(txn, 451, "4.7.1", what, rcpt ? "domain_recipients" : "domain_messages",
			   at + 1, dlim) : PX_NEXT;
}

static enum px_verdict rl_mail(const void *conf, struct px_txn *txn)
{
	return stage(conf, txn, 0);
}

static enum px_verdict rl_rcpt(const void *conf, struct px_txn *txn)
{
	return stage(conf, txn, 1);
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "ratelimit",
	.version = "1.0",
	.description = "connections, messages and recipients per client and sender domain",
	.options = rl_options,
	.conf_size = sizeof(struct rl_conf),
	.load = rl_load,
	.configure = rl_configure,
	.unconfigure = rl_unconfigure,
	.on_connect = rl_connect,
	.on_mail = rl_mail,
	.on_rcpt = rl_rcpt,
};
