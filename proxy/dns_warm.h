/*
 * NAME
 *	dns_warm - warm the resolver's cache from the event loop
 * SYNOPSIS
 *	#include "dns_warm.h"
 * DESCRIPTION
 *	The filters' libraries (libspf2, libopendkim, ...) look names up
 *	synchronously on workers; the lookups they will surely make are
 *	started here, asynchronously and without waiting, as soon as the
 *	names are known, so that theirs mostly hit the cache (design.md):
 *	  at MAIL      TXT of the HELO domain and of the MAIL FROM domain
 *	  at data-end  TXT of _dmarc.<From domain>, and of <s>._domainkey.<d>
 *	               for each DKIM-Signature (at most 8)
 *	Answers are discarded (on the resolver's thread). Nothing is asked
 *	when no plugin hooks a later stage, or for names that are not
 *	domains (address literals, a null sender).
 *
 *	px_dns_warm also tells the txn which event loop the session runs on,
 *	so that plugins' dns_query_async answers arrive there; the session
 *	calls it at the start of every stage.
 */
#ifndef PX_PROXY_DNS_WARM_H
#define PX_PROXY_DNS_WARM_H

#include "filters/txn.h"

struct event_base;

/* px_dns_warm - before stage st runs for t, on the loop base */
void px_dns_warm(struct px_txn *t, struct event_base *base, enum px_stage st);

#endif
