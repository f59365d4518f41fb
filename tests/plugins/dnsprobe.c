/* dnsprobe - a test plugin for the resolver host services (ABI 1.2). At
 * MAIL it looks up the MAIL FROM domain (with `prefix` in front, if set),
 * type `type` (A, AAAA, MX, TXT, PTR or a number; default TXT), either
 * with the blocking dns_query (mode = "sync", the default) or with
 * dns_query_async from a hook that answers PX_PENDING (mode = "async").
 * It logs
 *     plugin=dnsprobe lookup name=N type=T mode=M status=S rcode=R count=C ms=MS data="..."
 * records dnsprobe=STATUS (props "dns.data=..."), and at data-end adds
 * "X-Dnsprobe: status=S count=C data=..." to the message. It always answers
 * PX_NEXT (tempfail = "yes": PX_TEMPFAIL when the lookup did not answer). */
#include <postern/plugin.h>

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct probe_conf {
	const char *type;
	const char *mode;
	const char *prefix;
	int tempfail;
	int qtype;                /* derived */
	int async;
};

static const struct px_option probe_options[] = {
	{ "type", PX_OPT_STRING, "TXT", 0, 0, offsetof(struct probe_conf, type),
	  "query type: A, AAAA, MX, TXT, PTR or a number" },
	{ "mode", PX_OPT_STRING, "sync", 0, 0, offsetof(struct probe_conf, mode),
	  "sync (dns_query) or async (dns_query_async from a pending hook)" },
	{ "prefix", PX_OPT_STRING, NULL, 0, 0, offsetof(struct probe_conf, prefix),
	  "put in front of the MAIL FROM domain" },
	{ "tempfail", PX_OPT_BOOL, "no", 0, 0, offsetof(struct probe_conf, tempfail),
	  "answer tempfail when the lookup did not answer" },
	{ 0 }
};

static const char *const status_names[] = { "ok", "nxdomain", "nodata", "tempfail", "error" };

static const struct px_host *host;

/* Per session (slot) */
struct probe {
	struct px_txn *txn;
	px_call_id call;
	int tempfail;
	char name[300];
	struct timespec t0;
	char summary[600];
};

static int probe_load(const struct px_host *h, char *err, size_t errlen)
{
	if (h->abi_minor < 2) {
		snprintf(err, errlen, "needs a host with ABI 1.2 (DNS)");
		return -1;
	}
	host = h;
	return 0;
}

static int probe_configure(void *conf, char *err, size_t errlen)
{
	struct probe_conf *c = conf;
	static const struct { const char *n; int t; } types[] = {
		{ "A", 1 }, { "NS", 2 }, { "CNAME", 5 }, { "PTR", 12 }, { "MX", 15 }, { "TXT", 16 },
		{ "AAAA", 28 },
	};
	char *end;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(c->type, types[i].n) == 0)
			c->qtype = types[i].t;
	if (c->qtype == 0) {
		c->qtype = (int)strtol(c->type, &end, 10);
		if (*end != '\0' || c->qtype <= 0 || c->qtype > 65535) {
			snprintf(err, errlen, "type: '%s' is not a DNS type", c->type);
			return -1;
		}
	}
	if (strcmp(c->mode, "sync") != 0 && strcmp(c->mode, "async") != 0) {
		snprintf(err, errlen, "mode: '%s' is neither sync nor async", c->mode);
		return -1;
	}
	c->async = strcmp(c->mode, "async") == 0;
	return 0;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* rdata_text - a printable rendering of the first record */
static void rdata_text(const struct px_dns_answer *a, char *out, size_t outlen)
{
	const unsigned char *d;
	size_t n, i, o = 0;

	out[0] = '\0';
	if (a == NULL || a->count == 0)
		return;
	d = a->data[0];
	n = a->len[0];
	if (a->type == 1 && n == 4) {
		inet_ntop(AF_INET, d, out, (socklen_t)outlen);
	} else if (a->type == 28 && n == 16) {
		inet_ntop(AF_INET6, d, out, (socklen_t)outlen);
	} else if (a->type == 16) {       /* character-strings, concatenated */
		for (i = 0; i < n; i += (size_t)d[i] + 1)
			for (size_t j = 1; j <= d[i] && i + j < n && o + 1 < outlen; j++) {
				unsigned char ch = d[i + j];

				out[o++] = (ch >= ' ' && ch < 0x7f && ch != '"' && ch != '\\') ? (char)ch
					   : '?';
			}
		out[o] = '\0';
	} else {
		snprintf(out, outlen, "len=%zu", n);
	}
}

/* summarize - log, record, keep the summary; what the hook answers */
static enum px_verdict summarize(const struct probe_conf *c, struct probe *p,
				 enum px_dns_status st, struct px_dns_answer *a)
{
	char data[400], props[440];
	const char *sname = (unsigned)st <= PX_DNS_ERROR ? status_names[st] : "?";

	rdata_text(a, data, sizeof(data));
	host->log(p->txn, PX_PRIO_INFO, "lookup name=%s type=%d mode=%s status=%s rcode=%d "
		  "count=%zu ttl=%u ms=%ld data=\"%s\"", p->name, c->qtype, c->mode, sname,
		  a ? a->rcode : -1, a ? a->count : 0, a ? a->ttl : 0, ms_since(&p->t0), data);
	snprintf(props, sizeof(props), "dns.data=%s", data[0] ? data : "-");
	host->record(p->txn, "dnsprobe", sname, props);
	snprintf(p->summary, sizeof(p->summary), "status=%s count=%zu data=%s", sname,
		 a ? a->count : 0, data[0] ? data : "-");
	if (a != NULL)
		host->dns_free(a);
	if (c->tempfail && st == PX_DNS_TEMPFAIL) {
		host->set_reply(p->txn, 451, "4.4.3", "DNS lookup failed, try again later");
		return PX_TEMPFAIL;
	}
	return PX_NEXT;
}

/* async_done - on the session's event loop: end the pending call */
static void async_done(void *arg, struct px_dns_answer *a)
{
	struct probe *p = arg;
	const struct probe_conf c = { .mode = "async", .qtype = a ? a->type : 0,
				      .tempfail = p->tempfail };
	enum px_verdict v = summarize(&c, p, a ? a->status : PX_DNS_ERROR, a);

	host->resume_call(p->txn, p->call, v);
}

static enum px_verdict probe_mail(const void *conf, struct px_txn *txn)
{
	const struct probe_conf *c = conf;
	void **slot = host->slot(txn);
	struct probe *p = *slot;
	const char *from = host->get(txn, "mail.from"), *at;
	struct px_dns_answer *a = NULL;
	enum px_dns_status st;

	if (p == NULL && (p = *slot = calloc(1, sizeof(*p))) == NULL)
		return PX_TEMPFAIL;
	p->txn = txn;
	p->summary[0] = '\0';
	if (from == NULL || (at = strrchr(from, '@')) == NULL)
		return PX_NEXT;
	snprintf(p->name, sizeof(p->name), "%s%s", c->prefix ? c->prefix : "", at + 1);
	clock_gettime(CLOCK_MONOTONIC, &p->t0);
	if (c->async) {
		p->call = host->pending(txn);
		p->tempfail = c->tempfail;
		if (host->dns_query_async(txn, p->name, c->qtype, async_done, p) < 0)
			return PX_TEMPFAIL;
		return PX_PENDING;
	}
	st = host->dns_query(txn, p->name, c->qtype, &a);
	return summarize(c, p, st, a);
}

static enum px_verdict probe_data_end(const void *conf, struct px_txn *txn)
{
	struct probe *p = *host->slot(txn);

	if (p != NULL && p->summary[0])
		host->add_header(txn, "X-Dnsprobe", p->summary);
	return PX_NEXT;
}

static void probe_close(const void *conf, struct px_txn *txn)
{
	void **slot = host->slot(txn);

	free(*slot);
	*slot = NULL;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "dnsprobe",
	.version = "0",
	.description = "test: looks up the MAIL FROM domain through the host's resolver",
	.options = probe_options,
	.conf_size = sizeof(struct probe_conf),
	.load = probe_load,
	.configure = probe_configure,
	.on_mail = probe_mail,
	.on_data_end = probe_data_end,
	.on_close = probe_close,
};
