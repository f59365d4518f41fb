/*
 * NAME
 *	chain_run - run one stage of the chain for one txn
 * DESCRIPTION
 *	A run walks the chain's entries that hook the stage and that no
 *	matching override skips. Each hook call is one job on the worker pool,
 *	with a timer for the plugin's budget on the caller's event base. The
 *	first of these to happen decides:
 *	  the hook returns     its verdict (PX_PENDING: wait for resume)
 *	  host->resume()       the verdict it gives
 *	  the timer            the plugin's on_error; the call is abandoned
 *	                       ("late"): it may end later, and is ignored
 *	An invalid verdict also gets on_error. Then the policy's rules for
 *	what the plugin recorded in this stage may change the verdict, and
 *	monitor mode turns a refusal into a logged "would". NEXT goes on to the
 *	next plugin; anything else ends the stage.
 *
 *	Call lifetimes. A call (struct px_call) is registered on its txn for
 *	its whole life (px_txn_call_begin .. px_txn_call_end), which holds a
 *	txn reference and makes it its plugin's one call on that txn: while it
 *	is in flight, that plugin's next hook on the txn gets on_error at once
 *	("busy"), and its on_reset waits. The call ends on the caller's event
 *	base, when the hook has returned and, for PX_PENDING, resume() came;
 *	or at the budget, if it was still queued (the pool cancels it). The
 *	run stops waiting for it at the budget (call->run = NULL); what a late
 *	call answers then is logged and dropped.
 *
 *	Stuck calls. At the budget a call still running on a worker is
 *	abandoned to the pool, which counts it stuck and starts another worker
 *	(up to its bound). Each chain entry counts its calls past their budget
 *	that have not ended; while that count is at the pool's stuck_max, the
 *	plugin's calls get on_error at once ("overloaded"), for every session,
 *	so that a hung library costs its plugin, never the pool.
 * DIAGNOSTICS
 *	SID plugin name=N stage=S verdict=V ms=T
 *	SID plugin name=N stage=S error=timeout|invalid-verdict|busy|overloaded|
 *	    pool-full|out-of-memory|store action=tempfail|accept
 *	    (store: the hook answered PX_VERDICT_COUNT, "failed", after a
 *	    store call failed in it; filters/store_host.c)
 *	SID monitor would=V plugin=N reply="..."
 *	SID plugin=N stage=S late=yes stuck=yes pool_threads=.. pool_stuck=.. pool_min=.. pool_max=..
 *	SID plugin=N stage=S late=yes verdict=V|resume=V ms=T dropped=yes
 *	SID plugin=N late=yes resume=V call=ID dropped=yes reason=no-call|other-call|resumed-twice
 *	- plugin=N overloaded=yes|no late_calls=K limit=L
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "chain.h"
#include "common/log.h"
#include "workpool.h"

struct px_run {
	struct px_run_ctx ctx;
	struct px_policy_view view;
	enum px_stage stage;
	size_t next;              /* the next entry to look at */
	struct event *timer;
	struct px_call *call;     /* the hook the run waits for */
	px_stage_done done;
	void *arg;
	struct px_stage_outcome out;
	unsigned long long results_base;   /* results recorded in this run have seq >= */
};

/* One hook call; it lives until it ends (call_end), however late */
struct px_call {
	struct px_invocation inv;     /* first: txn.c and the services see this */
	struct px_run *run;           /* waits for it; NULL once it stopped waiting */
	struct px_workpool *pool;
	struct px_job *job;           /* until the worker has returned */
	struct px_chain_entry *entry;
	px_hook_fn hook;
	const void *conf;
	enum px_verdict verdict;      /* the hook's, written by the worker */
	int returned;                 /* call_done ran */
	int overran;                  /* counted in entry->overran */
	struct event *resume_ev;
	struct timespec t0;
};

static void run_next(struct px_run *r);

static const char *const verdict_names[] = {
	"next", "accept", "tempfail", "reject", "discard", "quarantine", "disconnect", "pending"
};

const char *px_verdict_name(enum px_verdict v)
{
	return (unsigned)v < PX_VERDICT_COUNT ? verdict_names[v] : "invalid";
}

/* elapsed_ms - since t0 */
static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* run_deliver - on the next loop turn: hand the outcome over, free the run */
static void run_deliver(evutil_socket_t fd, short what, void *arg)
{
	struct px_run *r = arg;

	if (r->timer)
		event_free(r->timer);
	r->done(r->arg, &r->out);
	free(r);
}

/* run_finish - the stage is decided; the caller hears of it from the loop,
 * never from inside px_chain_run or a callback of its own */
static void run_finish(struct px_run *r)
{
	struct timeval now = { 0, 0 };

	if (event_base_once(r->ctx.base, -1, EV_TIMEOUT, run_deliver, r, &now) < 0)
		run_deliver(-1, 0, r);
}

/* default_reply - the reply for a refusing verdict when none was set */
static void default_reply(struct px_stage_outcome *o, enum px_verdict v)
{
	switch (v) {
	case PX_TEMPFAIL:
		o->code = 451; snprintf(o->esc, sizeof(o->esc), "4.7.1");
		snprintf(o->text, sizeof(o->text), "Try again later");
		break;
	case PX_DISCONNECT:
		o->code = 421; snprintf(o->esc, sizeof(o->esc), "4.7.0");
		snprintf(o->text, sizeof(o->text), "Closing the connection");
		break;
	default:
		o->code = 550; snprintf(o->esc, sizeof(o->esc), "5.7.1");
		snprintf(o->text, sizeof(o->text), "Message refused");
	}
}

/* take_reply - the plugin's reply (set_reply) if it fits the verdict */
static void take_reply(struct px_run *r, enum px_verdict v)
{
	struct px_txn *t = r->ctx.txn;
	struct px_stage_outcome *o = &r->out;
	int want = v == PX_TEMPFAIL || v == PX_DISCONNECT ? 4 : 5;

	default_reply(o, v);
	pthread_mutex_lock(&t->lock);
	if (t->reply_code / 100 == want) {
		o->code = t->reply_code;
		if (t->reply_esc[0] == want + '0')
			snprintf(o->esc, sizeof(o->esc), "%s", t->reply_esc);
		if (t->reply_text[0])
			snprintf(o->text, sizeof(o->text), "%s", t->reply_text);
	}
	t->reply_code = 0;
	pthread_mutex_unlock(&t->lock);
}

/* action_verdict - what a policy action means for the stage */
static enum px_verdict action_verdict(enum px_action a, enum px_verdict plugin_v)
{
	switch (a) {
	case PX_ACT_ACCEPT: return PX_ACCEPT;
	case PX_ACT_REJECT: return PX_REJECT;
	case PX_ACT_TEMPFAIL: return PX_TEMPFAIL;
	case PX_ACT_DISCARD: return PX_DISCARD;
	case PX_ACT_QUARANTINE: return PX_QUARANTINE;
	case PX_ACT_DISCONNECT: return PX_DISCONNECT;
	case PX_ACT_TAG:
	case PX_ACT_IGNORE: return PX_NEXT;
	default: return plugin_v;
	}
}

/* decide_action, decide_skips - ask the policy above (struct px_chain_decider) */
static enum px_action decide_action(const struct px_run *r, const char *plugin,
				    const char *method, const char *result)
{
	const struct px_chain_decider *d = r->ctx.decide;

	return d && d->action ? d->action(r->ctx.policy, &r->view, plugin, method, result)
			      : PX_ACT_NONE;
}

static int decide_skips(const struct px_run *r, const char *plugin)
{
	const struct px_chain_decider *d = r->ctx.decide;

	return d && d->skips && d->skips(r->ctx.policy, &r->view, plugin);
}

/* apply_policy - the first rule that matches a result this plugin recorded
 * in this run (not at an earlier RCPT of the transaction, nor at connect) */
static enum px_verdict apply_policy(struct px_run *r, unsigned idx, enum px_verdict v,
				    char *why, size_t whylen)
{
	const struct px_chain_entry *e = &r->ctx.txn->chain->v[idx];
	struct px_txn *t = r->ctx.txn;
	enum px_action a = PX_ACT_NONE;
	struct px_result *res;

	pthread_mutex_lock(&t->lock);
	for (res = t->results; res != NULL && a == PX_ACT_NONE; res = res->next) {
		if (res->plugin != idx || res->stage != r->stage || res->seq < r->results_base)
			continue;
		a = decide_action(r, e->name, res->method, res->result);
		if (a != PX_ACT_NONE)
			snprintf(why, whylen, "%s=%s", res->method, res->result);
	}
	pthread_mutex_unlock(&t->lock);
	if (a == PX_ACT_TAG)
		px_txn_tag(t, why);
	return action_verdict(a, v);
}

/* refusing - a verdict that stops or changes delivery */
static int refusing(enum px_verdict v)
{
	return v != PX_NEXT && v != PX_ACCEPT;
}

/* conclude - a plugin's final verdict for this stage */
static void conclude(struct px_run *r, unsigned idx, enum px_verdict v, long ms)
{
	const struct px_chain_entry *e = &r->ctx.txn->chain->v[idx];
	const char *sid = r->ctx.txn->sid;
	char why[256] = "";
	enum px_verdict pv = apply_policy(r, idx, v, why, sizeof(why));

	if (pv == PX_DISCARD && r->stage != PX_STAGE_DATA_END)
		pv = PX_REJECT;         /* the ABI: discard before data-end is a reject */

	px_log(PX_LOG_INFO, sid, "plugin name=%s stage=%s verdict=%s ms=%ld%s%s%s", e->name,
	       px_stage_names[r->stage], px_verdict_name(v), ms, why[0] ? " policy=" : "", why,
	       pv != v ? " changed" : "");
	if (r->ctx.observe)
		r->ctx.observe(r->ctx.observe_arg, idx, r->stage, v, ms, NULL);
	if (refusing(pv))
		take_reply(r, pv);
	if (refusing(pv) && (r->view.monitor || e->monitor)) {
		px_log(PX_LOG_INFO, sid, "monitor would=%s plugin=%s stage=%s reply=\"%d %s %s\"",
		       px_verdict_name(pv), e->name, px_stage_names[r->stage], r->out.code, r->out.esc,
		       r->out.text);
		pv = PX_NEXT;
	}
	if (pv == PX_QUARANTINE) {
		px_txn_quarantine(r->ctx.txn, e->name);
		pv = PX_NEXT;
	}
	if (pv == PX_NEXT) {
		run_next(r);
		return;
	}
	r->out.verdict = pv;
	snprintf(r->out.plugin, sizeof(r->out.plugin), "%s", e->name);
	run_finish(r);
}

/* on_error - a hook failed: the plugin's on_error decides */
static void on_error(struct px_run *r, unsigned idx, const char *what)
{
	const struct px_chain_entry *e = &r->ctx.txn->chain->v[idx];
	struct px_txn *t = r->ctx.txn;

	px_log(PX_LOG_WARN, t->sid, "plugin name=%s stage=%s error=%s action=%s", e->name,
	       px_stage_names[r->stage], what, e->on_error_accept ? "accept" : "tempfail");
	if (r->ctx.observe)
		r->ctx.observe(r->ctx.observe_arg, idx, r->stage, e->on_error_accept ? PX_NEXT :
			       PX_TEMPFAIL, -1, what);
	if (e->on_error_accept) {
		run_next(r);
		return;
	}
	r->out.verdict = PX_TEMPFAIL;
	r->out.code = 451;
	snprintf(r->out.esc, sizeof(r->out.esc), "4.3.0");
	snprintf(r->out.text, sizeof(r->out.text), "Temporary failure in a filter; try again later");
	snprintf(r->out.plugin, sizeof(r->out.plugin), "%s", e->name);
	if (r->view.monitor || e->monitor) {
		px_log(PX_LOG_INFO, t->sid, "monitor would=tempfail plugin=%s stage=%s reply=\"451 "
		       "4.3.0 %s\"", e->name, px_stage_names[r->stage], r->out.text);
		run_next(r);
		return;
	}
	run_finish(r);
}

/* answer - the run takes a call's verdict (hook return or resume) */
static void answer(struct px_run *r, unsigned idx, enum px_verdict v, long ms,
		   const char *failed)
{
	evtimer_del(r->timer);
	if ((unsigned)v >= PX_VERDICT_COUNT || v == PX_PENDING)  /* failed: a service said so */
		on_error(r, idx, failed && v == PX_VERDICT_COUNT ? failed : "invalid-verdict");
	else
		conclude(r, idx, v, ms);
}

/* overran_add - one more (+1) or one less (-1) call of e past its budget;
 * logs when the plugin becomes overloaded and when it is not any more */
static void overran_add(struct px_chain_entry *e, struct px_workpool *pool, int delta)
{
	unsigned max = px_workpool_stuck_max(pool);
	unsigned n = delta > 0 ? __atomic_add_fetch(&e->overran, 1, __ATOMIC_ACQ_REL) :
		__atomic_sub_fetch(&e->overran, 1, __ATOMIC_ACQ_REL);

	if (delta > 0 && n >= max && !__atomic_exchange_n(&e->overloaded, 1, __ATOMIC_ACQ_REL))
		px_log(PX_LOG_WARN, NULL, "plugin=%s overloaded=yes late_calls=%u limit=%u "
		       "action=on_error", e->name, n, max);
	else if (delta < 0 && n < max && __atomic_exchange_n(&e->overloaded, 0, __ATOMIC_ACQ_REL))
		px_log(PX_LOG_WARN, NULL, "plugin=%s overloaded=no late_calls=%u limit=%u", e->name,
		       n, max);
}

/* call_end - the call is over: nothing of it runs any more. On the base. */
static void call_end(struct px_call *c)
{
	if (c->overran)
		overran_add(c->entry, c->pool, -1);   /* before the txn (and chain) may go */
	if (c->resume_ev)
		event_free(c->resume_ev);
	px_txn_call_end(c->inv.txn, &c->inv);
	free(c);
}

/* call_finish - the call has its answer: to the run if it still waits,
 * else (late) logged and dropped; then the call ends */
static void call_finish(struct px_call *c, enum px_verdict v, int resumed)
{
	struct px_run *r = c->run;
	unsigned idx = c->inv.plugin;
	long ms = elapsed_ms(&c->t0);
	const char *failed = c->inv.failed;   /* static strings: they outlive c */

	if (r != NULL) {
		c->run = NULL;
		r->call = NULL;
	} else {
		px_log(PX_LOG_WARN, c->inv.txn->sid, "plugin=%s stage=%s late=yes %s=%s ms=%ld "
		       "dropped=yes", c->entry->name, px_stage_names[c->inv.stage],
		       resumed ? "resume" : "verdict", px_verdict_name(v), ms);
	}
	call_end(c);                  /* first: the plugin is free for its next call */
	if (r != NULL)
		answer(r, idx, v, ms, failed);
}

/* call_work - on a worker thread */
static void call_work(void *arg)
{
	struct px_call *c = arg;

	c->verdict = c->hook(c->conf, px_txn_for(c->inv.txn, c->inv.plugin));
}

/* call_done - back on the base: the hook returned. A PENDING call (even a
 * late one) stays until resume() ends it: the plugin may still use the txn. */
static void call_done(void *arg)
{
	struct px_call *c = arg;
	struct px_txn *t = c->inv.txn;
	enum px_verdict v = c->verdict;
	int resumed;

	c->job = NULL;
	c->returned = 1;
	pthread_mutex_lock(&t->lock);
	resumed = c->inv.resumed;
	if (v == PX_PENDING && resumed)
		v = c->inv.resume_verdict;
	else if (v == PX_PENDING)
		c->inv.waiting = 1;
	pthread_mutex_unlock(&t->lock);
	if (c->verdict == PX_PENDING && !resumed)
		return;                       /* resume() will come */
	call_finish(c, v, c->verdict == PX_PENDING);
}

/* call_resumed - back on the base: resume() after the hook returned PENDING */
static void call_resumed(evutil_socket_t fd, short what, void *arg)
{
	struct px_call *c = arg;
	enum px_verdict v;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&c->inv.txn->lock);
	v = c->inv.resume_verdict;
	pthread_mutex_unlock(&c->inv.txn->lock);
	call_finish(c, v, 1);
}

/* resume - end the plugin's call in flight on the txn behind handle, if it
 * is the one named (by_id). Any thread. Nothing of the txn is touched after
 * the unlock: the base may end the call, and free the txn, at once. */
static void resume(struct px_txn *handle, int by_id, px_call_id id, enum px_verdict v)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	struct px_txn *t;
	struct px_invocation *inv;
	struct px_call *c = NULL;
	const char *why = NULL;

	if (h == NULL)
		return;                   /* no session: no call to end */
	t = h->txn;
	pthread_mutex_lock(&t->lock);
	inv = t->plugins[h->plugin].call;
	if (inv == NULL)
		why = "no-call";
	else if (by_id && inv->id != id)
		why = "other-call";
	else if (inv->resumed)
		why = "resumed-twice";
	if (why != NULL) {
		px_log(PX_LOG_WARN, t->sid, "plugin=%s late=yes resume=%s call=%llu dropped=yes "
		       "reason=%s", t->chain->v[h->plugin].name, px_verdict_name(v),
		       by_id ? id : (inv ? inv->id : 0), why);
	} else {
		inv->resumed = 1;
		inv->resume_verdict = v;
		if (inv->waiting)
			c = (struct px_call *)inv;    /* call_done has run: wake the base */
	}
	pthread_mutex_unlock(&t->lock);
	if (c != NULL)                /* c lives until its resume_ev has run */
		event_active(c->resume_ev, EV_TIMEOUT, 0);
}

void px_chain_resume(struct px_txn *handle, enum px_verdict verdict)
{
	resume(handle, 0, 0, verdict);
}

void px_chain_resume_call(struct px_txn *handle, px_call_id id, enum px_verdict verdict)
{
	resume(handle, 1, id, verdict);
}

px_call_id px_chain_pending(struct px_txn *handle)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	struct px_invocation *inv;
	px_call_id id;

	if (h == NULL)
		return 0;
	pthread_mutex_lock(&h->txn->lock);
	inv = h->txn->plugins[h->plugin].call;
	id = inv != NULL ? inv->id : 0;
	pthread_mutex_unlock(&h->txn->lock);
	return id;
}

/* log_stuck - a call abandoned on a worker */
static void log_stuck(const struct px_call *c)
{
	struct px_workpool_stats st;

	px_workpool_stats(c->pool, &st);
	px_log(PX_LOG_WARN, c->inv.txn->sid, "plugin=%s stage=%s late=yes stuck=yes "
	       "pool_threads=%u pool_stuck=%u pool_min=%u pool_max=%u", c->entry->name,
	       px_stage_names[c->inv.stage], st.threads, st.stuck, st.min, st.max);
}

/* run_timeout - the plugin overran its budget: the run goes on with
 * on_error, and the call is left to end by itself */
static void run_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct px_run *r = arg;
	struct px_call *c = r->call;
	struct px_txn *t = r->ctx.txn;
	unsigned idx = c->inv.plugin;
	enum px_job_fate fate = PX_JOB_FINISHED;

	(void)fd;
	(void)what;
	pthread_mutex_lock(&t->lock);
	c->inv.stale = 1;
	pthread_mutex_unlock(&t->lock);
	c->run = NULL;
	r->call = NULL;
	if (!c->returned)
		fate = px_workpool_abandon(c->pool, c->job);
	if (fate == PX_JOB_CANCELLED) {
		c->job = NULL;
		call_end(c);              /* it never ran */
	} else {
		c->overran = 1;
		overran_add(c->entry, c->pool, +1);
		if (fate == PX_JOB_STUCK)
			log_stuck(c);
	}
	on_error(r, idx, "timeout");
}

/* run_call - hand one hook to the pool, unless the plugin may not run now */
static void run_call(struct px_run *r, size_t idx, px_hook_fn hook)
{
	struct px_chain_entry *e = &r->ctx.txn->chain->v[idx];
	struct timeval tv = { e->timeout_ms / 1000, (e->timeout_ms % 1000) * 1000 };
	struct px_txn *t = r->ctx.txn;
	struct px_call *c;

	if (__atomic_load_n(&e->overran, __ATOMIC_ACQUIRE) >= px_workpool_stuck_max(r->ctx.pool)) {
		on_error(r, (unsigned)idx, "overloaded");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->resume_ev = event_new(r->ctx.base, -1, 0, call_resumed, c)) == NULL) {
		free(c);
		on_error(r, (unsigned)idx, "out-of-memory");
		return;
	}
	c->inv.plugin = (unsigned)idx;
	c->inv.stage = r->stage;
	c->run = r;
	c->pool = r->ctx.pool;
	c->entry = e;
	c->hook = hook;
	c->conf = e->conf;
	if (px_txn_call_begin(t, &c->inv) < 0) {      /* its late call still runs */
		event_free(c->resume_ev);
		free(c);
		on_error(r, (unsigned)idx, "busy");
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &c->t0);
	r->call = c;
	evtimer_add(r->timer, &tv);
	if ((c->job = px_workpool_submit_job(c->pool, r->ctx.base, call_work, call_done, c)) == NULL) {
		evtimer_del(r->timer);
		r->call = NULL;
		call_end(c);
		on_error(r, (unsigned)idx, "pool-full");
	}
}

/* entry_hook - the entry's hook for the stage, or NULL */
static px_hook_fn entry_hook(const struct px_chain_entry *e, enum px_stage st)
{
	const struct px_plugin *p = e->plugin;
	px_hook_fn hooks[PX_STAGE_COUNT] = { p->on_connect, p->on_helo, p->on_mail, p->on_rcpt,
					     p->on_data_end };

	return hooks[st];
}

/* run_next - the next plugin that wants this stage, or the end */
static void run_next(struct px_run *r)
{
	const struct px_chain *ch = r->ctx.txn->chain;
	px_hook_fn hook;

	while (r->next < ch->n) {
		size_t idx = r->next++;

		hook = entry_hook(&ch->v[idx], r->stage);
		if (hook == NULL || decide_skips(r, ch->v[idx].name))
			continue;
		px_txn_clear_reply(r->ctx.txn);
		run_call(r, idx, hook);
		return;
	}
	r->out.verdict = PX_NEXT;
	run_finish(r);
}

/* shortcut - the allow and deny lists; 1 when they decide */
static int shortcut(const struct px_run_ctx *ctx, struct px_stage_outcome *o)
{
	memset(o, 0, sizeof(*o));
	if (ctx->view->deny) {
		o->verdict = PX_REJECT;
		o->code = 554;
		snprintf(o->esc, sizeof(o->esc), "5.7.1");
		snprintf(o->text, sizeof(o->text), "Access denied");
		snprintf(o->plugin, sizeof(o->plugin), "policy");
		return 1;
	}
	o->verdict = PX_NEXT;
	return ctx->view->allow || ctx->txn->txn_allowed;
}

/* px_chain_run - one stage */
int px_chain_run(const struct px_run_ctx *ctx, enum px_stage stage, struct px_stage_outcome *now,
		 px_stage_done done, void *arg)
{
	const struct px_chain *ch = ctx->txn->chain;
	struct px_run *r;

	if (shortcut(ctx, now))
		return 1;
	if (ch == NULL || !(ch->stage_mask & (1u << stage)))
		return 1;                     /* nobody hooks it: no hand-off */
	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->timer = evtimer_new(ctx->base, run_timeout, r)) == NULL) {
		free(r);
		now->verdict = PX_TEMPFAIL;
		now->code = 451;
		snprintf(now->esc, sizeof(now->esc), "4.3.0");
		snprintf(now->text, sizeof(now->text), "Out of memory; try again later");
		return 1;
	}
	r->ctx = *ctx;
	r->view = *ctx->view;
	r->ctx.view = &r->view;
	r->stage = stage;
	r->done = done;
	r->arg = arg;
	px_txn_results_restart(ctx->txn, stage);
	r->results_base = px_txn_result_seq(ctx->txn);
	run_next(r);
	return 0;
}
