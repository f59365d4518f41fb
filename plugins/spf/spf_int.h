/*
 * spf_int.h - what the two files of the SPF plugin share (not installed)
 *
 * spf.c is the plugin (options, hooks, results, replies); spf_dns.c is the
 * libspf2 DNS layer that answers libspf2's lookups through the host's
 * resolver (host->dns_query) and adds what libspf2 1.2.10 lacks: the
 * RFC 7208 void-lookup limit and a screen against records with absurd
 * macro counts (CVE-2023-42118).
 */
#ifndef POSTERN_PLUGIN_SPF_INT_H
#define POSTERN_PLUGIN_SPF_INT_H

#include <postern/plugin.h>

#include <setjmp.h>

/* <spf2/spf.h> is not self-contained: these must come first. */
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <spf2/spf.h>

/*
 * spf_check - the state of one check_host() evaluation (one identity of
 * one transaction), on the stack of the hook that runs it.
 *
 * libspf2 calls our DNS layer with no argument of ours (its DNS layer is
 * shared by every request of a configuration), so the layer finds the
 * check through spf_current, a thread-local pointer: a check runs from
 * start to end on the one worker thread that runs the hook, and the
 * pointer is set only for the span of that run (spf_check_run).
 */
struct spf_check {
	const struct px_host *host;
	struct px_txn *txn;
	long long max_void;        /* void lookups allowed (RFC 7208 4.6.4) */
	long long max_macros;      /* "%{" per record before we refuse it */

	/* what the DNS layer saw */
	unsigned lookups;          /* queries sent to the host's resolver */
	unsigned voids;            /* NXDOMAIN / NODATA answers to mechanism lookups */
	int void_exceeded;         /* voids went past max_void: permerror */
	int v6;                    /* the client's address is IPv6 */
	int screened;              /* a record had too many macros: permerror */
	int syntax_error;          /* a record is not RFC 7208's: permerror */
	int mx_limit;              /* an mx had more than 10 names: permerror */
	int tempfail;              /* a lookup failed temporarily */
	int tempfail_mech;         /* ... one of a mechanism (not TXT): temperror */
	int *dns_down;             /* shared by the checks of one hook call:
	                            * after a TEMPFAIL, no more queries */
	char screened_name[256];   /* where, for the log */
	char problem[200];         /* the syntax error, for the log and reply */
	/* the names of the last MX or PTR answer: their address lookups are
	 * part of that term, and not void lookups of their own */
	char follow[12][256];
	int nfollow;
	int follow_ptr;            /* ... and they came from a PTR answer */

	jmp_buf *abort_jmp;        /* SPF_error() lands here (spf.c) */
};

extern _Thread_local struct spf_check *spf_current;

/*
 * Names under this suffix are never asked: the DNS layer answers them
 * itself (spf_dns.c, magic_lookup) for the terms spf_record_prepare writes
 * in place of /0 lengths. ".invalid" cannot exist (RFC 6761).
 */
#define SPF_MAGIC_SUFFIX "._postern.invalid"

/* spf_record_prepare - check a v=spf1 record (len bytes) against RFC 7208
 * and write it for libspf2 into buf; 0, or -1 with why (spf_record.c) */
int spf_record_prepare(const char *rec, size_t len, int client_v6, char *buf, size_t buflen,
		       char *why, size_t whylen);

/* spf_dns_layer_new - the DNS layer (shared by all requests); NULL if no memory */
SPF_dns_server_t *spf_dns_layer_new(void);

/* spf_count_macros - the "%{" in a TXT string of len bytes */
unsigned spf_count_macros(const char *s, size_t len);

#endif
