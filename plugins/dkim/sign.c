/*
 * NAME
 *	sign - add our DKIM-Signature to mail our own users send
 * DESCRIPTION
 *	A message is signed when all of these hold:
 *	  - sign = yes;
 *	  - the client may send as us: it authenticated (get("auth.login")),
 *	    or the host says it is in trusted_networks (get("client.trusted")
 *	    = "yes", a key the host does not offer yet), or its address is in
 *	    this plugin's sign_networks;
 *	  - the message has exactly one From field with one address, and that
 *	    address's domain is one of sign_keys (exact match, any case).
 *	The signature covers the message as received (RFC 6376 5.4.1's
 *	header list and Message-ID, MIME-Version, Content-*, unless
 *	sign_headers is set; From oversigned), with the
 *	key, selector and algorithm of that domain. libopendkim's
 *	dkim_getsighdr_d() gives the value already folded; it goes to
 *	host->add_header() with CRLF folds (libraries.md 2.2: never add a CR
 *	where there is one). A signing error tempfails the message (451
 *	4.7.0): delivering it unsigned could get it refused downstream under
 *	its domain's DMARC policy.
 */
#include "pxdkim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define SIGHDR "DKIM-Signature"

/* net_match - is addr (text) inside one of sign_networks? */
static int net_match(const struct pxdkim_conf *c, const char *addr)
{
	unsigned char a[16];
	int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;

	if (inet_pton(fam, addr, a) != 1)
		return 0;
	for (size_t i = 0; i < c->nnets; i++) {
		const struct pxdkim_net *n = &c->nets[i];
		unsigned full = n->bits / 8, rest = n->bits % 8;

		if (n->family != fam || memcmp(a, n->addr, full) != 0)
			continue;
		if (rest == 0 || ((a[full] ^ n->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0)
			return 1;
	}
	return 0;
}

/* may_sign - may this client send as our domains? why it may, or NULL */
static const char *may_sign(const struct pxdkim_conf *c, struct px_txn *txn)
{
	const struct px_host *h = pxdkim_host;
	const char *login = h->get(txn, "auth.login");
	const char *trusted = h->get(txn, "client.trusted");
	const char *addr = h->get(txn, "client.addr");

	if (login != NULL && *login != '\0')
		return "auth";
	if (trusted != NULL && strcmp(trusted, "yes") == 0)
		return "trusted";
	if (addr != NULL && net_match(c, addr))
		return "network";
	return NULL;
}

/*
 * from_domain - the domain of the one address in the one From field,
 * lower-cased into out; 0, or -1 (none, several fields or addresses)
 */
static int from_domain(struct px_txn *txn, char *out, size_t outlen)
{
	const struct px_host *h = pxdkim_host;
	size_t nh = h->header_count(txn), nfrom = 0, vl = 0, fl = 0, nl, i, o = 0;
	const char *v = NULL, *name, *val, *at = NULL, *end;
	int depth = 0, quoted = 0, angles = 0, commas = 0;

	for (i = 0; i < nh; i++)
		if (h->header_at(txn, i, &name, &nl, &val, &vl) == 0 && nl == 4 &&
		    strncasecmp(name, "From", 4) == 0 && nfrom++ == 0)
			v = val, fl = vl;
	if (nfrom != 1 || v == NULL)
		return -1;
	for (end = v + fl; v < end; v++) {       /* the last '@' outside comments and quotes */
		if (*v == '"' && depth == 0)
			quoted = !quoted;
		else if (quoted)
			continue;
		else if (*v == '(')
			depth++;
		else if (*v == ')' && depth > 0)
			depth--;
		else if (depth == 0 && *v == '<')
			angles++;
		else if (depth == 0 && *v == ',')
			commas++;
		else if (depth == 0 && *v == '@')
			at = v;
	}
	if (at == NULL || angles > 1 || (angles == 0 && commas > 0))
		return -1;
	for (at++; at < end && o + 1 < outlen; at++) {
		if (*at == '>' || *at == ' ' || *at == '\t' || *at == '\r' || *at == '\n' ||
		    *at == '(' || *at == ',' || *at == ';')
			break;
		out[o++] = (char)tolower((unsigned char)*at);
	}
	out[o] = '\0';
	return o > 0 ? 0 : -1;
}

static const struct pxdkim_key *key_for(const struct pxdkim_conf *c, const char *domain)
{
	for (size_t i = 0; i < c->nkeys; i++)
		if (strcasecmp(c->keys[i].domain, domain) == 0)
			return &c->keys[i];
	return NULL;
}

/* crlf_folds - the library's value with every fold as CRLF + WSP (malloc) */
static char *crlf_folds(const unsigned char *v, size_t len)
{
	char *out = malloc(2 * len + 1);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\r')
			continue;               /* re-added before its LF */
		if (v[i] == '\n')
			out[o++] = '\r';
		out[o++] = (char)v[i];
	}
	out[o] = '\0';
	return out;
}

/*
 * sign_with - sign what feed() gives with k; the folded header value
 * (malloc) or NULL with err set
 */
static char *sign_with(const struct pxdkim_conf *c, const struct pxdkim_key *k,
		       const char *id, struct px_txn *txn, const unsigned char *msg,
		       size_t msglen, char *err, size_t errlen)
{
	DKIM_STAT st;
	DKIM *d = dkim_sign(c->lib, (const unsigned char *)id, NULL, (dkim_sigkey_t)k->pem,
			    (const unsigned char *)k->selector,
			    (const unsigned char *)k->domain, c->hcanon, c->bcanon, k->alg, -1,
			    &st);
	unsigned char *hv = NULL;
	size_t hl = 0;
	char *value = NULL;
	int readerr = 0;

	if (d == NULL) {
		snprintf(err, errlen, "dkim_sign: %s", dkim_getresultstr(st));
		return NULL;
	}
	if (txn != NULL) {
		st = pxdkim_feed(txn, d, &readerr);
	} else {
		st = dkim_chunk(d, (unsigned char *)msg, msglen);
		if (st == DKIM_STAT_OK)
			st = dkim_chunk(d, NULL, 0);
	}
	if (st == DKIM_STAT_OK)
		st = dkim_eom(d, NULL);
	if (st == DKIM_STAT_OK)
		st = dkim_getsighdr_d(d, strlen(SIGHDR ": "), &hv, &hl);
	if (st == DKIM_STAT_OK && (value = crlf_folds(hv, hl)) == NULL)
		st = DKIM_STAT_NORESOURCE;
	if (st != DKIM_STAT_OK) {
		const char *e = dkim_geterror(d);

		snprintf(err, errlen, "%s%s%s", readerr ? "message unreadable"
			 : dkim_getresultstr(st), e && *e ? ": " : "", e ? e : "");
	}
	dkim_free(d);
	return value;
}

int pxdkim_key_check(const struct pxdkim_conf *c, const struct pxdkim_key *k, char *err,
		     size_t errlen)
{
	char msg[512], e[256];
	char *v;
	int n = snprintf(msg, sizeof(msg), "From: <postmaster@%s>\r\nSubject: key check\r\n"
			 "\r\nkey check\r\n", k->domain);

	if (n < 0 || (size_t)n >= sizeof(msg)) {
		snprintf(err, errlen, "sign_keys: domain '%s' is too long", k->domain);
		return -1;
	}
	v = sign_with(c, k, "configure", NULL, (const unsigned char *)msg, (size_t)n, e,
		      sizeof(e));
	if (v == NULL) {
		snprintf(err, errlen, "sign_keys: cannot sign for %s with %s: %s", k->domain,
			 k->path, e);
		return -1;
	}
	free(v);
	return 0;
}

enum px_verdict pxdkim_sign(const struct pxdkim_conf *c, struct px_txn *txn)
{
	const struct px_host *h = pxdkim_host;
	const struct pxdkim_key *k;
	const char *why = may_sign(c, txn), *sid;
	char domain[256], err[512];
	char *value;

	if (why == NULL)
		return PX_NEXT;
	if (from_domain(txn, domain, sizeof(domain)) < 0) {
		h->log(txn, PX_PRIO_INFO, "sign skipped=yes reason=\"no single From address\"");
		return PX_NEXT;
	}
	if ((k = key_for(c, domain)) == NULL) {
		h->log(txn, PX_PRIO_DEBUG, "sign skipped=yes from_domain=%s reason=\"no key\"",
		       domain);
		return PX_NEXT;
	}
	sid = h->get(txn, "session.id");
	value = sign_with(c, k, sid ? sid : "postern", txn, NULL, 0, err, sizeof(err));
	if (value == NULL || h->add_header(txn, SIGHDR, value) != 0) {
		h->log(txn, PX_PRIO_ERR, "sign error=\"%s\" d=%s s=%s", value ? "add_header failed"
		       : err, k->domain, k->selector);
		free(value);
		h->set_reply(txn, 451, "4.7.0", "Could not DKIM-sign the message, try again later");
		return PX_TEMPFAIL;
	}
	h->log(txn, PX_PRIO_INFO, "sign d=%s s=%s a=%s client=%s", k->domain, k->selector,
	       k->alg == DKIM_SIGN_ED25519SHA256 ? "ed25519-sha256" : "rsa-sha256", why);
	free(value);
	return PX_NEXT;
}
