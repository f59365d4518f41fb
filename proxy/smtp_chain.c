/*
 * NAME
 *	smtp_chain - where the SMTP session meets the plugin chain and the policy
 * DESCRIPTION
 *	See smtp_chain.h. The views: connect and HELO see the client only;
 *	MAIL the client and sender; RCPT the client, sender and that
 *	recipient. A transaction keeps the view of its first accepted
 *	recipient, and a recipient whose view differs is answered 452 4.5.3
 *	("try again in another transaction"), so that every message is
 *	handled under exactly its recipients' policy. End of data uses the
 *	transaction's view.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "dns_warm.h"
#include "policy/config.h"
#include "policy/policy.h"
#include "server.h"
#include "smtp_chain.h"
#include "smtp_session_int.h"

/* px_session_chain_open - one txn for the whole session */
int px_session_chain_open(struct px_session *s)
{
	s->ptx = px_txn_new(s->cfg->chain, s->sid, s->cfg->hostname);
	return s->ptx ? 0 : -1;
}

void px_session_chain_close(struct px_session *s)
{
	px_txn_unref(s->ptx);
	s->ptx = NULL;
}

/* sync_facts - what the session knows now, for plugins to read */
static void sync_facts(struct px_session *s)
{
	struct px_txn *t = s->ptx;

	px_txn_set_client(t, s->client_addr, s->client_port,
			  s->client_name[0] ? s->client_name : NULL);
	px_txn_set_trusted(t, s->trusted);
	px_txn_set_helo(t, s->helo);
	px_txn_set_tls(t, s->tls ? s->tls_version : NULL, s->tls ? s->tls_cipher : NULL);
	px_txn_set_login(t, s->login);
}

/* stage_view - the policy view for a stage */
static void stage_view(struct px_session *s, enum px_stage st, struct px_policy_view *v)
{
	const struct px_policy *p = s->cfg->policy;

	switch (st) {
	case PX_STAGE_MAIL:
		px_policy_view_for(p, s->client_addr, s->pending_from, NULL, v);
		break;
	case PX_STAGE_RCPT:
		px_policy_view_for(p, s->client_addr, s->txn.from, s->pending_rcpt, v);
		break;
	case PX_STAGE_DATA_END:
		*v = s->ptx->view;
		break;
	default:
		px_policy_view_for(p, s->client_addr, NULL, NULL, v);
	}
}

/* stage_done - a stage that ran on the pool has answered */
static void stage_done(void *arg, const struct px_stage_outcome *o)
{
	struct px_session *s = arg;
	px_stage_cont cont = s->stage_cont;

	s->stage_cont = NULL;
	px_session_wait_done(s);       /* the stage's wait is over ... */
	if (!px_session_gone(s))
		cont(s, o);
	if (s->state != PX_ST_WAIT)    /* ... unless cont waits again (the relay) */
		px_session_unpark(s);
}

/* policy_split - 452 for a recipient whose policy differs from the first one's */
static int policy_split(struct px_session *s, const struct px_policy_view *v)
{
	if (!s->ptx->have_view || px_policy_view_equal(v, &s->ptx->view))
		return 0;
	px_log(PX_LOG_INFO, s->sid, "rcpt to=<%s> policy=different action=defer", s->pending_rcpt);
	px_session_reply(s, 452, "4.5.3", "Recipient has a different policy; try again in "
			 "another transaction");
	return 1;
}

/* px_session_stage - run one stage, continue with its outcome */
void px_session_stage(struct px_session *s, enum px_stage st, px_stage_cont cont)
{
	struct px_run_ctx ctx = { s->ptx, s->cfg->policy, &s->stage_view, s->base,
				  px_server_pool(s->srv), NULL, NULL, &px_policy_decider };
	struct px_stage_outcome now;

	sync_facts(s);
	if (st == PX_STAGE_HELO)
		px_txn_set_helo(s->ptx, s->pending_helo);
	if (st == PX_STAGE_MAIL)
		px_txn_set_mail(s->ptx, s->pending_from);
	px_dns_warm(s->ptx, s->base, st);   /* its loop; warm the cache at MAIL and data-end */
	stage_view(s, st, &s->stage_view);
	if (st == PX_STAGE_RCPT && policy_split(s, &s->stage_view))
		return;
	if (px_chain_run(&ctx, st, &now, stage_done, s)) {
		cont(s, &now);
		return;
	}
	s->stage_cont = cont;
	px_session_park(s);
}

/* px_outcome_refuses - anything but go on */
int px_outcome_refuses(const struct px_stage_outcome *o)
{
	return o->verdict != PX_NEXT && o->verdict != PX_ACCEPT && o->verdict != PX_QUARANTINE;
}

/* px_session_refuse - the chain's reply */
void px_session_refuse(struct px_session *s, const struct px_stage_outcome *o)
{
	int code = o->code ? o->code : 550;

	px_log(PX_LOG_INFO, s->sid, "refuse by=%s verdict=%s reply=\"%d %s %s\"", o->plugin,
	       px_verdict_name(o->verdict), code, o->esc, o->text);
	if (o->verdict == PX_DISCONNECT) {
		px_session_reply(s, 421, "4.7.0", "%s %s", s->cfg->hostname, o->text);
		px_session_close(s, "plugin-disconnect");
		return;
	}
	px_session_reply(s, code, o->esc, "%s", o->text);
}

/* greet_after_chain - 220, or the connect stage's refusal and close */
static void greet_after_chain(struct px_session *s, const struct px_stage_outcome *o)
{
	if (!px_outcome_refuses(o)) {
		px_session_reply(s, 220, "", "%s %s", s->cfg->hostname, s->cfg->greeting);
		/* implicit TLS: the 220 waits in the filter for the handshake */
		if (px_session_tls_pending(s))
			px_enter_state(s, PX_ST_TLS_HANDSHAKE);
		return;
	}
	if (o->verdict == PX_TEMPFAIL || o->verdict == PX_DISCONNECT)
		px_session_reply(s, 421, "4.7.0", "%s %s", s->cfg->hostname, o->text);
	else
		px_session_reply(s, 554, o->esc[0] == '5' ? o->esc : "5.7.1", "%s %s",
				 s->cfg->hostname, o->text);
	px_log(PX_LOG_INFO, s->sid, "refuse stage=connect by=%s verdict=%s", o->plugin,
	       px_verdict_name(o->verdict));
	px_session_close(s, "refused-at-connect");
}

/* px_session_greet - the connect stage, then the greeting */
void px_session_greet(struct px_session *s)
{
	px_session_stage(s, PX_STAGE_CONNECT, greet_after_chain);
}
