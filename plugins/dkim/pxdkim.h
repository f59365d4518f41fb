/*
 * NAME
 *	pxdkim.h - the DKIM plugin's own declarations (not part of any ABI)
 * DESCRIPTION
 *	The plugin is four files: dkim.c (options, life cycle, hooks),
 *	verify.c (judging every signature), sign.c (adding ours), dns.c
 *	(libopendkim's resolver hooks on top of host->dns_query). They share
 *	this header and nothing else; only <postern/plugin.h> and
 *	libopendkim's <dkim.h> come from outside.
 */
#ifndef PXDKIM_H
#define PXDKIM_H

#include <postern/plugin.h>

#include <stddef.h>
#include <sys/types.h>

#include <dkim.h>

/* the host's services: set once by load(), read-only afterwards */
extern const struct px_host *pxdkim_host;

/* one signing identity: From domain, selector, private key */
struct pxdkim_key {
	char *domain;             /* lower case, no trailing dot */
	char *selector;
	char *path;               /* where the key came from, for the log */
	unsigned char *pem;       /* the key file's text (PEM), NUL-terminated */
	dkim_alg_t alg;           /* DKIM_SIGN_RSASHA256 or DKIM_SIGN_ED25519SHA256 */
};

/* one network of sign_networks */
struct pxdkim_net {
	int family;               /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned bits;
};

struct pxdkim_conf {
	/* options, filled by the host */
	int verify;                          /* PX_OPT_BOOL */
	long long max_signatures;            /* PX_OPT_INT */
	long long min_key_bits;              /* PX_OPT_INT */
	long long dns_budget_ms;             /* PX_OPT_DURATION */
	int sign;                            /* PX_OPT_BOOL */
	const char *const *sign_keys;        /* PX_OPT_LIST: domain:selector:path[:alg] */
	const char *canonicalization;        /* PX_OPT_STRING: header/body */
	const char *const *sign_networks;    /* PX_OPT_LIST: CIDR */
	const char *const *sign_headers;     /* PX_OPT_LIST: NULL = the library's */
	const char *const *oversign_headers; /* PX_OPT_LIST */

	/* derived state, built by configure(), freed by unconfigure() */
	DKIM_LIB *lib;
	struct pxdkim_key *keys;
	size_t nkeys;
	struct pxdkim_net *nets;
	size_t nnets;
	dkim_canon_t hcanon, bcanon;
};

/* dns.c - route libopendkim's key lookups through host->dns_query */
void pxdkim_dns_install(DKIM_LIB *lib, void *service);
/* the txn whose hook runs on this thread (the DNS hooks see no DKIM handle),
 * and how long from now new lookups may start (ms; 0 = no limit) */
void pxdkim_dns_bind(struct px_txn *txn, long long budget_ms);

/* verify.c - judge every signature of the message, record one result each */
void pxdkim_verify(const struct pxdkim_conf *c, struct px_txn *txn);
/* prescreen: ignore the signatures past max_signatures */
DKIM_CBSTAT pxdkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs);

/* sign.c - sign the message when the client may send as one of our domains */
enum px_verdict pxdkim_sign(const struct pxdkim_conf *c, struct px_txn *txn);
/* test-sign a tiny message with k; 0, or -1 with err set */
int pxdkim_key_check(const struct pxdkim_conf *c, const struct pxdkim_key *k,
		     char *err, size_t errlen);

/* feed the whole message (host->message_read) to d; DKIM_STAT of the end marker */
DKIM_STAT pxdkim_feed(struct px_txn *txn, DKIM *d, int *readerr);

#endif /* PXDKIM_H */
