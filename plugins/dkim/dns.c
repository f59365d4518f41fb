/*
 * NAME
 *	dns - libopendkim's key lookups through the host's resolver
 * DESCRIPTION
 *	libopendkim asks for <selector>._domainkey.<domain> TXT through four
 *	hooks (libraries.md 2.3): start writes a raw answer packet into the
 *	library's buffer, waitreply reports its length, cancel frees the
 *	handle (it is called once for every started query), and init/close
 *	are NULL so the built-in res_ninit resolver, which ignores
 *	dkim_dns_nslist() on glibc and is not thread-safe, never runs.
 *
 *	start does the whole lookup at once with host->dns_query (blocking,
 *	bounded by timeouts.dns, served from the process's one cache), so
 *	waitreply never waits. The hooks get no DKIM handle, only the service
 *	pointer shared by every thread; the transaction whose hook is running
 *	on this thread is therefore kept in a thread-local variable, set by
 *	pxdkim_dns_bind() around each verification. That is per call, not
 *	per session: the library calls the hooks synchronously from the
 *	hook's own thread. With it goes a deadline (dns_budget): once it has
 *	passed, no new lookup starts and the signature is a temperror, so a
 *	message with many signatures whose keys' servers never answer cannot
 *	hold a worker for max_signatures x timeouts.dns.
 *
 *	How the library reads what we give it (dkim-keys.c):
 *	  start != 0                -> KEYFAIL   (temperror)
 *	  waitreply DKIM_DNS_ERROR  -> KEYFAIL   (temperror)
 *	  a packet with NXDOMAIN,
 *	  or no answer records      -> NOKEY     (permerror: no key)
 *	so a SERVFAIL or a timeout must never reach it as a packet (an empty
 *	SERVFAIL answer would read as "no key"), and an NXDOMAIN/NODATA answer
 *	must carry its question section (the library checks the type there).
 */
#include "pxdkim.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DNS_HFIXEDSZ 12

/* one started query: what waitreply reports */
struct pxdkim_query {
	int status;               /* DKIM_DNS_SUCCESS or DKIM_DNS_ERROR */
	size_t len;               /* bytes written into the library's buffer */
	int dnssec;               /* DKIM_DNSSEC_* */
};

static _Thread_local struct px_txn *bound_txn;
static _Thread_local long long bound_deadline;    /* CLOCK_MONOTONIC ms; 0 = none */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pxdkim_dns_bind(struct px_txn *txn, long long budget_ms)
{
	bound_txn = txn;
	bound_deadline = txn != NULL && budget_ms > 0 ? now_ms() + budget_ms : 0;
}

/*
 * put_name - qname in wire format at p (at most room bytes); bytes written,
 * or 0 when a label is empty or too long or it does not fit
 */
static size_t put_name(unsigned char *p, size_t room, const char *name)
{
	size_t n = 0;

	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t l = dot ? (size_t)(dot - name) : strlen(name);

		if (l == 0 || l > 63 || n + l + 1 >= room)
			return 0;
		p[n++] = (unsigned char)l;
		memcpy(p + n, name, l);
		n += l;
		name += l + (dot ? 1 : 0);
	}
	if (n + 1 > room)
		return 0;
	p[n++] = 0;
	return n;
}

/*
 * synth_packet - an answer with no records for name/type and rcode (3
 * NXDOMAIN, 0 NODATA), for a host answer that carries no packet; its
 * length, or 0
 */
static size_t synth_packet(unsigned char *buf, size_t buflen, const char *name, int type,
			   int rcode)
{
	size_t n;

	if (buflen < DNS_HFIXEDSZ + 4)
		return 0;
	memset(buf, 0, DNS_HFIXEDSZ);
	buf[2] = 0x81;                    /* QR, RD */
	buf[3] = (unsigned char)(0x80 | (rcode & 0x0f));   /* RA, rcode */
	buf[5] = 1;                       /* QDCOUNT */
	n = put_name(buf + DNS_HFIXEDSZ, buflen - DNS_HFIXEDSZ - 4, name);
	if (n == 0)
		return 0;
	n += DNS_HFIXEDSZ;
	buf[n++] = (unsigned char)(type >> 8);
	buf[n++] = (unsigned char)type;
	buf[n++] = 0;
	buf[n++] = 1;                     /* IN */
	return n;
}

/* answer_copy - the host's answer into the library's buffer; its length or 0 */
static size_t answer_copy(const struct px_dns_answer *a, enum px_dns_status st,
			  const char *name, int type, unsigned char *buf, size_t buflen)
{
	if (a != NULL && a->packet != NULL && a->packet_len >= DNS_HFIXEDSZ) {
		if (a->packet_len > buflen)
			return 0;
		memcpy(buf, a->packet, a->packet_len);
		return a->packet_len;
	}
	if (st == PX_DNS_OK)              /* data but no packet: cannot hand it on */
		return 0;
	return synth_packet(buf, buflen, name, type, st == PX_DNS_NXDOMAIN ? 3 : 0);
}

static const char *status_name(enum px_dns_status st)
{
	switch (st) {
	case PX_DNS_OK: return "ok";
	case PX_DNS_NXDOMAIN: return "nxdomain";
	case PX_DNS_NODATA: return "nodata";
	case PX_DNS_TEMPFAIL: return "tempfail";
	case PX_DNS_ERROR: return "error";
	}
	return "?";
}

/* q_start - the lookup, done here and now */
static int q_start(void *srv, int type, unsigned char *query, unsigned char *buf,
		   size_t buflen, void **qh)
{
	const struct px_host *h = pxdkim_host;
	struct px_dns_answer *a = NULL;
	struct pxdkim_query *q;
	enum px_dns_status st;
	const char *name = (const char *)query;

	(void)srv;
	if (bound_deadline != 0 && now_ms() >= bound_deadline) {
		h->log(bound_txn, PX_PRIO_INFO, "dns name=%s skipped=yes reason=dns_budget", name);
		return -1;                /* KEYFAIL: temperror, no lookup started */
	}
	st = h->dns_query(bound_txn, name, type, &a);
	h->log(bound_txn, PX_PRIO_DEBUG, "dns name=%s type=%d status=%s", name, type,
	       status_name(st));
	if (st == PX_DNS_TEMPFAIL || st == PX_DNS_ERROR) {
		if (a != NULL)
			h->dns_free(a);
		return -1;                /* KEYFAIL: temperror */
	}
	if ((q = calloc(1, sizeof(*q))) == NULL) {
		if (a != NULL)
			h->dns_free(a);
		return -1;
	}
	q->len = answer_copy(a, st, name, type, buf, buflen);
	q->status = q->len > 0 ? DKIM_DNS_SUCCESS : DKIM_DNS_ERROR;
	q->dnssec = a != NULL && a->secure ? DKIM_DNSSEC_SECURE : DKIM_DNSSEC_UNKNOWN;
	if (a != NULL)
		h->dns_free(a);
	*qh = q;
	return 0;
}

/* q_waitreply - the answer is there already */
static int q_waitreply(void *srv, void *qh, struct timeval *timeout, size_t *bytes,
		       int *error, int *dnssec)
{
	const struct pxdkim_query *q = qh;

	(void)srv;
	(void)timeout;
	if (bytes != NULL)
		*bytes = q->len;
	if (error != NULL)
		*error = 0;
	if (dnssec != NULL)
		*dnssec = q->dnssec;
	return q->status;
}

/* q_cancel - free the handle (called for every started query) */
static int q_cancel(void *srv, void *qh)
{
	(void)srv;
	free(qh);
	return 0;
}

void pxdkim_dns_install(DKIM_LIB *lib, void *service)
{
	dkim_dns_set_init(lib, NULL);
	dkim_dns_set_close(lib, NULL);
	(void)dkim_dns_set_query_service(lib, service);
	dkim_dns_set_query_start(lib, q_start);
	dkim_dns_set_query_waitreply(lib, q_waitreply);
	dkim_dns_set_query_cancel(lib, q_cancel);
}
