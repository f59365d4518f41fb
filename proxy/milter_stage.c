/*
 * NAME
 *	milter_stage - the loop thread's side of postern-milter: the txn and the chain
 * DESCRIPTION
 *	Runs the jobs the callbacks hand over (milter_int.h): each stage job
 *	puts the facts it carries into the connection's txn, computes the
 *	policy view exactly as posternd and `postern test` do (connect and
 *	HELO: the client; MAIL: + sender; RCPT: + that recipient, and a
 *	recipient whose view differs from the first accepted one's gets 452
 *	4.5.3; data-end: the transaction's view), runs the stage with
 *	px_chain_run on this loop's base and the pool, and answers the job.
 *	At data-end the message's header edits come from the same code as
 *	posternd's (policy/outgoing.c), turned into what libmilter applies:
 *	fields to insert at the top (CRs stripped) and fields to delete by
 *	their index among the fields of their name, highest first.
 *
 *	Lifetimes: the txn lives from the connect job to the close job; a close
 *	or an abort that arrives while a stage still runs (its callback gave
 *	up waiting) takes effect when that stage ends.
 * DIAGNOSTICS
 *	SID milter policy=different rcpt=<R> action=defer
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "dns_warm.h"
#include "filters/spool.h"
#include "policy/config.h"
#include "policy/outgoing.h"
#include "policy/policy.h"
#include "milter_int.h"

static void stage_end(struct px_mjob *job, const struct px_stage_outcome *o);

/* conn_free - the connection's last act: plugins' on_reset and on_close
 * (as posternd ends a session), the generation */
static void conn_free(struct px_mconn *c)
{
	if (c->txn != NULL)
		px_txn_reset(c->txn);
	px_txn_unref(c->txn);
	px_config_unref(c->cfg);
	free(c);
}

/* outcome_set - a refusal decided here, not by a plugin */
static void outcome_set(struct px_stage_outcome *o, enum px_verdict v, int code,
			const char *esc, const char *text)
{
	memset(o, 0, sizeof(*o));
	o->verdict = v;
	o->code = code;
	snprintf(o->esc, sizeof(o->esc), "%s", esc);
	snprintf(o->text, sizeof(o->text), "%s", text);
	snprintf(o->plugin, sizeof(o->plugin), "milter");
}

/* refuses - anything but go on */
static int refuses(const struct px_stage_outcome *o)
{
	return o->verdict != PX_NEXT && o->verdict != PX_ACCEPT && o->verdict != PX_QUARANTINE;
}

/* facts_apply - what the MTA told us, into the txn */
static void facts_apply(struct px_mconn *c, const struct px_mfacts *f, enum px_stage st)
{
	struct px_txn *t = c->txn;
	int open;

	if (st == PX_STAGE_CONNECT) {
		px_txn_set_client(t, f->client_addr, f->client_port,
				  f->client_name[0] ? f->client_name : NULL);
		px_txn_set_trusted(t, f->trusted);
	}
	if (st == PX_STAGE_HELO)
		px_txn_set_helo(t, f->helo);
	px_txn_set_tls(t, f->tls_version[0] ? f->tls_version : NULL,
		       f->tls_version[0] ? f->tls_cipher : NULL);
	px_txn_set_login(t, f->login[0] ? f->login : NULL);
	if (st == PX_STAGE_MAIL) {
		pthread_mutex_lock(&t->lock);
		open = t->mail_from != NULL;   /* a transaction no abort ended */
		pthread_mutex_unlock(&t->lock);
		if (open)
			px_txn_reset(t);
		px_txn_set_mail(t, f->from);
	}
	if (st == PX_STAGE_RCPT)
		px_txn_set_rcpt(t, f->rcpt);
}

/* stage_view - the policy view of the stage (smtp_chain.c's rules) */
static void stage_view(struct px_mconn *c, const struct px_mfacts *f, enum px_stage st,
		       struct px_policy_view *v)
{
	const struct px_policy *p = c->cfg->policy;

	switch (st) {
	case PX_STAGE_MAIL:
		px_policy_view_for(p, f->client_addr, f->from, NULL, v);
		break;
	case PX_STAGE_RCPT:
		px_policy_view_for(p, f->client_addr, f->from, f->rcpt, v);
		break;
	case PX_STAGE_DATA_END:
		if (c->txn->have_view) {
			*v = c->txn->view;
			break;
		}
		px_policy_view_for(p, f->client_addr, f->from, NULL, v);
		break;
	default:
		px_policy_view_for(p, f->client_addr, NULL, NULL, v);
	}
}

/* strip_cr - a copy without CR: libmilter's MTA side adds its own line ends */
static char *strip_cr(const char *s)
{
	char *out = malloc(strlen(s) + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (; *s; s++)
		if (*s != '\r')
			*o++ = *s;
	*o = '\0';
	return out;
}

/* edits_add - the fields to insert, top first */
static int edits_add(struct px_medits *e, const struct px_outgoing *out)
{
	size_t i;

	if (out->n == 0)
		return 0;
	if ((e->add = calloc(out->n, sizeof(*e->add))) == NULL)
		return -1;
	for (i = 0; i < out->n; i++) {
		e->add[i].name = strdup(out->names[i]);
		e->add[i].value = strip_cr(out->values[i]);
		e->nadd++;
		if (e->add[i].name == NULL || e->add[i].value == NULL)
			return -1;
		if (strcasecmp(out->names[i], "X-Postern-Quarantine") == 0)
			snprintf(e->quarantine, sizeof(e->quarantine), "%s", e->add[i].value +
				 strspn(e->add[i].value, " \t"));
	}
	return 0;
}

/* edits_del - the removed fields, each by its index among its name's
 * fields (1-based, as the MTA counts them), last first so that no
 * deletion moves an index still to come (txn lock held) */
static int edits_del(struct px_medits *e, const struct px_headers *h)
{
	size_t i, j, n = 0;

	for (i = 0; i < h->n; i++)
		n += h->v[i].removed != 0;
	if (n == 0)
		return 0;
	if ((e->del = calloc(n, sizeof(*e->del))) == NULL)
		return -1;
	for (i = h->n; i-- > 0;) {
		int idx = 1;

		if (!h->v[i].removed)
			continue;
		for (j = 0; j < i; j++)
			idx += h->v[j].namelen == h->v[i].namelen &&
			       strncasecmp(h->text + h->v[j].off, h->text + h->v[i].off,
					   h->v[i].namelen) == 0;
		if ((e->del[e->ndel].name = strndup(h->text + h->v[i].off, h->v[i].namelen)) == NULL)
			return -1;
		e->del[e->ndel++].index = idx;
	}
	return 0;
}

/* edits_build - posternd's header edits (outgoing.c), for libmilter */
static int edits_build(struct px_mconn *c, struct px_medits *e)
{
	struct px_outgoing out;
	int rc;

	if (px_outgoing_build(c->txn, c->cfg->policy, NULL, &out) < 0)
		return -1;
	rc = edits_add(e, &out);
	pthread_mutex_lock(&c->txn->lock);
	if (rc == 0)
		rc = edits_del(e, &c->txn->headers);
	pthread_mutex_unlock(&c->txn->lock);
	px_outgoing_free(&out);
	return rc;
}

/* stage_done - the chain's answer, on this loop */
static void stage_done(void *arg, const struct px_stage_outcome *o)
{
	struct px_mjob *job = arg;

	job->c->running = 0;
	stage_end(job, o);
}

/* stage_after - what the outcome means for the txn; 1 when it ended the
 * transaction */
static int stage_after(struct px_mjob *job)
{
	struct px_mconn *c = job->c;

	if (job->stage == PX_STAGE_RCPT && !refuses(&job->out)) {
		px_txn_add_rcpt(c->txn, job->f.rcpt);
		if (!c->txn->have_view) {
			c->txn->view = c->view;
			c->txn->have_view = 1;
		}
	}
	if (job->stage != PX_STAGE_DATA_END)
		return 0;
	if (!refuses(&job->out) && job->out.verdict != PX_DISCARD &&
	    edits_build(c, &job->edits) < 0)
		outcome_set(&job->out, PX_TEMPFAIL, 451, "4.3.0",
			    "Error: out of memory; try again later");
	px_txn_reset(c->txn);       /* the message is done: lets go of the spool */
	return 1;
}

/* stage_end - answer the job; a close or reset that waited takes effect */
static void stage_end(struct px_mjob *job, const struct px_stage_outcome *o)
{
	struct px_mconn *c = job->c;

	job->out = *o;
	if (c->txn != NULL && !c->closing && !stage_after(job) && c->reset_due)
		px_txn_reset(c->txn);
	c->reset_due = 0;
	__atomic_store_n(&c->busy, 0, __ATOMIC_RELEASE);
	if (c->closing)               /* its waiter gave up before the close came */
		conn_free(c);
	px_mjob_answer(job);          /* job may be gone now */
}

/* stage_prepare - the txn ready for the stage; 0, or 1 with *o decided here */
static int stage_prepare(struct px_mjob *job, struct px_stage_outcome *o)
{
	struct px_mconn *c = job->c;
	char text[128];

	if (c->txn == NULL && job->stage == PX_STAGE_CONNECT)
		c->txn = px_txn_new(c->cfg->chain, c->sid, c->cfg->hostname);
	if (c->txn == NULL) {
		outcome_set(o, PX_TEMPFAIL, 451, "4.3.0", "Error: out of memory; try again later");
		return 1;
	}
	facts_apply(c, &job->f, job->stage);
	if (job->stage == PX_STAGE_DATA_END) {
		if (job->spool_error == 2) {
			snprintf(text, sizeof(text), "Error: message too big (limit %zu bytes)",
				 c->cfg->limits.message_size_max);
			outcome_set(o, PX_REJECT, 552, "5.3.4", text);
			return 1;
		}
		if (job->spool_error || px_txn_set_message(c->txn, job->spool) < 0) {
			outcome_set(o, PX_TEMPFAIL, 451, "4.3.0",
				    "Error: cannot store the message; try again later");
			return 1;
		}
	}
	stage_view(c, &job->f, job->stage, &c->view);
	if (job->stage == PX_STAGE_RCPT && c->txn->have_view &&
	    !px_policy_view_equal(&c->view, &c->txn->view)) {
		px_log(PX_LOG_INFO, c->sid, "milter policy=different rcpt=<%s> action=defer "
		       "queue_id=%s", job->f.rcpt, job->f.queue_id[0] ? job->f.queue_id : "-");
		outcome_set(o, PX_TEMPFAIL, 452, "4.5.3", "Recipient has a different policy; try "
			    "again in another transaction");
		return 1;
	}
	return 0;
}

/* stage_start - run one stage of the chain */
static void stage_start(struct px_mjob *job)
{
	struct px_mconn *c = job->c;
	struct event_base *base = px_mloop_base(px_milter.loop);
	struct px_run_ctx ctx = { NULL, c->cfg->policy, &c->view, base, px_milter.pool, NULL,
				  NULL, &px_policy_decider };
	struct px_stage_outcome now;

	if (stage_prepare(job, &now)) {
		stage_end(job, &now);
		return;
	}
	ctx.txn = c->txn;
	px_dns_warm(c->txn, base, job->stage);   /* and asynchronous answers come here */
	c->running = 1;
	if (px_chain_run(&ctx, job->stage, &now, stage_done, job)) {
		c->running = 0;
		stage_end(job, &now);
	}
}

/* px_mstage_run - one job, on the loop thread */
void px_mstage_run(struct px_mjob *job)
{
	struct px_mconn *c = job->c;

	switch (job->kind) {
	case PX_MJ_STAGE:
		stage_start(job);
		return;
	case PX_MJ_RESET:
		if (c->running)
			c->reset_due = 1;
		else if (c->txn != NULL)
			px_txn_reset(c->txn);
		break;
	case PX_MJ_CLOSE:
		if (c->running)
			c->closing = 1;
		else
			conn_free(c);
		break;
	}
	px_mjob_free(job);
}
