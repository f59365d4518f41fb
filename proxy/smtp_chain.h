/*
 * NAME
 *	smtp_chain - where the SMTP session meets the plugin chain and the policy
 * DESCRIPTION
 *	Each stage (connect before the greeting, HELO/EHLO, MAIL, RCPT, end
 *	of data) runs between a command's syntax check and its work: the
 *	session hands the facts to its px_txn, computes the policy view, runs
 *	the stage (parked if a plugin has to run on the pool), and continues
 *	with the outcome. A stage no plugin hooks answers at once, with no
 *	hand-off.
 */
#ifndef PX_PROXY_SMTP_CHAIN_H
#define PX_PROXY_SMTP_CHAIN_H

#include "filters/chain.h"

struct px_session;

typedef void (*px_stage_cont)(struct px_session *s, const struct px_stage_outcome *o);

/* px_session_chain_open - the session's txn; 0 or -1 */
int px_session_chain_open(struct px_session *s);
void px_session_chain_close(struct px_session *s);
/* px_session_stage - run stage st, then cont (now, or later after parking) */
void px_session_stage(struct px_session *s, enum px_stage st, px_stage_cont cont);
/* px_session_refuse - answer a refusing outcome (DISCONNECT also closes) */
void px_session_refuse(struct px_session *s, const struct px_stage_outcome *o);
/* px_session_greet - the connect stage, then 220 (or the refusal) */
void px_session_greet(struct px_session *s);
/* px_outcome_refuses - the outcome stops the command */
int px_outcome_refuses(const struct px_stage_outcome *o);

#endif
