/*
 * NAME
 *	test-chain - unit tests for call lifetimes in the chain runner
 * DESCRIPTION
 *	A real event base and worker pool run stages of a chain built from
 *	plugins defined here (px_chain_add_loaded). Hooks synchronise with the
 *	test on one condition variable, never by sleeping: each wait is for
 *	something that must happen, bounded by WAIT_MS as the failure path;
 *	the only time that passes is the plugins' own budgets, which the event
 *	loop waits out. Checks:
 *	  - a hook overruns its budget, the txn is reset, a new transaction
 *	    runs, the session ends, and only then does the hook write to its
 *	    alloc() memory, record, set a reply, edit headers and return a
 *	    verdict: none of it has any effect (and ASan says nothing);
 *	  - its plugin's next hook on that session is not called (busy), and
 *	    its on_reset waits for the late call, runs once, on the loop's
 *	    thread; on_close comes after it;
 *	  - a late resume after the session ended (1.0 resume and 1.1
 *	    resume_call), and a resume naming another call, are dropped;
 *	  - two PENDING plugins in one stage resumed in the opposite order
 *	    (and in the same order): each verdict is its own plugin's;
 *	  - on_reset during a late call, twice: deferred, once;
 *	  - the pool: hung calls are replaced by new workers, other calls go
 *	    on, and a plugin with stuck_max hung calls gets on_error at once
 *	    until they end;
 *	  - the late acts are logged with plugin=NAME late=yes.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/log.h"
#include "filters/chain.h"
#include "filters/txn.h"
#include "filters/workpool.h"

#define WAIT_MS   10000         /* the failure path of every wait */
#define SHORT_MS  250           /* a budget the tests overrun */
#define LONG_MS   20000         /* a budget nobody reaches */

static const struct px_host *host;

/* Everything the plugins tell the test; under gm, changes signal gc */
static pthread_mutex_t gm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gc;
static struct {
	pthread_t main;
	int go1, go2;                 /* releases for the blocking hooks */
	int entered[4];               /* hook calls per plugin index */
	int after;                    /* the late hook did its acts */
	int resets[4], closes[4];
	int reset_on_main[4];         /* every on_reset ran on the loop's thread */
	int reset_got_fact[4];        /* a deferred on_reset's get() answered */
	int resets_at_close[4];
	void **slot_hook[4], **slot_reset[4];
	char *mem;                    /* the late hook's alloc(), before its budget */
	int late_add_header_rc, late_get_null, late_alloc_ok, late_slot_same;
	struct px_txn *handle[4];     /* what PENDING hooks were given */
	px_call_id id[4];
	int hung;                     /* hook calls of the hang plugin now blocked */
} G;

/* ---------------------------------------------------------- helpers --- */

static void g_lock(void)
{
	pthread_mutex_lock(&gm);
}

static void g_unlock_signal(void)
{
	pthread_cond_broadcast(&gc);
	pthread_mutex_unlock(&gm);
}

/* g_wait - wait (lock held) until *v >= want; 0, or -1 after WAIT_MS */
static int g_wait(const int *v, int want)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += WAIT_MS / 1000;
	while (*v < want)
		if (pthread_cond_timedwait(&gc, &gm, &until) != 0)
			return *v >= want ? 0 : -1;
	return 0;
}

/* wait_for - from the test: until *v >= want, bounded */
static void wait_for(const int *v, int want)
{
	int rc;

	g_lock();
	rc = g_wait(v, want);
	pthread_mutex_unlock(&gm);
	ck_assert_msg(rc == 0, "a hook never got there (%d < %d)", *v, want);
}

static void release(int *gate)
{
	g_lock();
	*gate = 1;
	g_unlock_signal();
}

static int g_get(const int *v)
{
	int x;

	g_lock();
	x = *v;
	pthread_mutex_unlock(&gm);
	return x;
}

/* A fixture: base, pool, chain, and a stage runner */
struct fix {
	struct event_base *base;
	struct px_workpool *pool;
	struct px_chain *chain;
	struct px_stage_outcome out;
	int done;                     /* stage outcomes delivered */
};

static struct fix F;

static void setup(void)
{
	char err[256];
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&gc, &ca);
	pthread_condattr_destroy(&ca);
	memset(&G, 0, sizeof(G));
	G.main = pthread_self();
	memset(&F, 0, sizeof(F));
	px_log_open("test-chain", 1, PX_LOG_WARN);
	evthread_use_pthreads();
	host = px_host_services();
	F.base = event_base_new();
	F.pool = px_workpool_new(2, 64, err, sizeof(err));
	F.chain = px_chain_new();
	ck_assert(F.base && F.pool && F.chain);
}

static void teardown(void)
{
	px_chain_unref(F.chain);
	ck_assert_int_eq(px_workpool_free(F.pool), 0);
	event_base_free(F.base);
}

/* add - a plugin at the end of the chain */
static void add(const struct px_plugin *p, const char *name, unsigned timeout_ms, int accept)
{
	struct px_plugin_spec spec = { .name = name, .path = "(built in)", .timeout_ms = timeout_ms,
				       .on_error_accept = accept, .file = __FILE__, .line = 1 };
	char err[256];

	ck_assert_msg(px_chain_add_loaded(F.chain, p, &spec, err, sizeof(err)) == 0, "%s", err);
}

static void stage_done(void *arg, const struct px_stage_outcome *o)
{
	struct fix *f = arg;

	f->out = *o;
	f->done++;
}

/* loop_until - run the loop (one turn at a time) until cond(arg) */
static void loop_until(int (*cond)(void *), void *arg)
{
	while (!cond(arg))
		ck_assert(event_base_loop(F.base, EVLOOP_ONCE) >= 0);
}

static int stage_answered(void *arg)
{
	return F.done >= *(int *)arg;
}

/* run_stage - one stage for t; its outcome in F.out */
static void run_stage(struct px_txn *t, enum px_stage st)
{
	static const struct px_policy_view view;
	struct px_run_ctx ctx = { t, NULL, &view, F.base, F.pool, NULL, NULL, NULL };
	struct px_stage_outcome now;
	int want = F.done + 1;

	if (px_chain_run(&ctx, st, &now, stage_done, &F)) {
		stage_done(&F, &now);
		return;
	}
	loop_until(stage_answered, &want);
}

static int closed(void *arg)
{
	return g_get(&G.closes[*(int *)arg]) > 0;
}

static int no_call(void *arg)
{
	return px_chain_pending(arg) == 0;
}

/* results_from - how many results t holds from plugin idx, and in all */
static int results_from(struct px_txn *t, unsigned idx, int *all)
{
	struct px_result *r;
	int n = 0;

	*all = 0;
	pthread_mutex_lock(&t->lock);
	for (r = t->results; r != NULL; r = r->next) {
		++*all;
		n += r->plugin == idx;
	}
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* index_of - the chain index behind a plugin's handle */
static unsigned index_of(struct px_txn *txn)
{
	return ((struct px_txn_handle *)(void *)txn)->plugin;
}

/* ---------------------------------------------------------- plugins --- */

/* notify hooks, shared: count, and note where and what */
static void any_reset(const void *conf, struct px_txn *txn)
{
	unsigned i = index_of(txn);
	void **slot = host->slot(txn);
	const char *from = host->get(txn, "mail.from");

	(void)conf;
	g_lock();
	G.resets[i]++;
	G.reset_on_main[i] += pthread_equal(pthread_self(), G.main) != 0;
	G.reset_got_fact[i] += from != NULL;
	G.slot_reset[i] = slot;
	g_unlock_signal();
}

static void any_close(const void *conf, struct px_txn *txn)
{
	unsigned i = index_of(txn);

	(void)conf;
	g_lock();
	G.closes[i]++;
	G.resets_at_close[i] = G.resets[i];
	g_unlock_signal();
}

/* late: takes alloc() memory, then blocks past its budget; released once,
 * it tries every act; released again (after the session ended), it writes
 * its memory once more and answers REJECT */
static enum px_verdict late_hook(const void *conf, struct px_txn *txn)
{
	unsigned i = index_of(txn);
	char *mem = host->alloc(txn, 256), *more;
	void **slot = host->slot(txn);

	(void)conf;
	g_lock();
	G.entered[i]++;
	G.mem = mem;
	G.slot_hook[i] = slot;
	g_unlock_signal();
	g_lock();
	(void)g_wait(&G.go1, 1);
	pthread_mutex_unlock(&gm);

	memset(mem, 'x', 256);                    /* the transaction has been reset */
	host->record(txn, "late", "fail", "smtp.mailfrom=late.test");
	host->set_reply(txn, 550, "5.7.1", "late reply");
	G.late_add_header_rc = host->add_header(txn, "X-Late", "yes");
	(void)host->remove_header(txn, "Subject", -1);
	G.late_get_null = host->get(txn, "mail.from") == NULL;
	more = host->alloc(txn, 64);
	G.late_alloc_ok = more != NULL;
	if (more != NULL)
		memset(more, 'z', 64);
	G.late_slot_same = host->slot(txn) == slot;
	*slot = mem;                              /* the plugin's own state: still its own */

	g_lock();
	G.after = 1;
	g_unlock_signal();
	g_lock();
	(void)g_wait(&G.go2, 1);
	pthread_mutex_unlock(&gm);
	memset(mem, 'y', 256);                    /* the session has ended */
	if (more != NULL)
		memset(more, 'w', 64);
	return PX_REJECT;
}

static const struct px_plugin late_plugin = {
	.abi_major = PX_ABI_MAJOR, .abi_minor = PX_ABI_MINOR, .name = "late", .version = "0",
	.on_mail = late_hook, .on_reset = any_reset, .on_close = any_close,
};

/* quick: records and goes on */
static enum px_verdict quick_hook(const void *conf, struct px_txn *txn)
{
	unsigned i = index_of(txn);

	(void)conf;
	host->record(txn, "quick", "pass", NULL);
	g_lock();
	G.entered[i]++;
	g_unlock_signal();
	return PX_NEXT;
}

static const struct px_plugin quick_plugin = {
	.abi_major = PX_ABI_MAJOR, .abi_minor = PX_ABI_MINOR, .name = "quick", .version = "0",
	.on_mail = quick_hook, .on_rcpt = quick_hook, .on_reset = any_reset,
	.on_close = any_close,
};

/* pending: keeps its handle and call id, answers PX_PENDING */
static enum px_verdict pending_hook(const void *conf, struct px_txn *txn)
{
	unsigned i = index_of(txn);

	(void)conf;
	g_lock();
	G.handle[i] = txn;
	if (F.chain->v[i].plugin->abi_minor >= 1)     /* a 1.0 plugin cannot */
		G.id[i] = host->pending(txn);
	G.entered[i]++;
	g_unlock_signal();
	return PX_PENDING;
}

static const struct px_plugin pending11_plugin = {
	.abi_major = PX_ABI_MAJOR, .abi_minor = 1, .name = "pending11", .version = "0",
	.on_rcpt = pending_hook, .on_reset = any_reset, .on_close = any_close,
};

/* the same plugin as a 1.0 one would be: it can only resume(txn) */
static const struct px_plugin pending10_plugin = {
	.abi_major = PX_ABI_MAJOR, .abi_minor = 0, .name = "pending10", .version = "0",
	.on_rcpt = pending_hook, .on_reset = any_reset, .on_close = any_close,
};

/* hang: blocks (until go1) on mail from hang@ — a hung library */
static enum px_verdict hang_hook(const void *conf, struct px_txn *txn)
{
	const char *from = host->get(txn, "mail.from");
	unsigned i = index_of(txn);

	(void)conf;
	g_lock();
	G.entered[i]++;
	if (from != NULL && strncmp(from, "hang@", 5) == 0) {
		G.hung++;
		pthread_cond_broadcast(&gc);
		(void)g_wait(&G.go1, 1);
		G.hung--;
	}
	g_unlock_signal();
	return PX_NEXT;
}

static const struct px_plugin hang_plugin = {
	.abi_major = PX_ABI_MAJOR, .abi_minor = PX_ABI_MINOR, .name = "hang", .version = "0",
	.on_mail = hang_hook, .on_close = any_close,
};

/* ------------------------------------------------------------ tests --- */

/* A late hook, the txn reset, a new transaction, the session's end: the
 * late acts change nothing, and its memory stays valid until it returns */
START_TEST(test_late_hook_reset_and_session_end)
{
	struct px_txn *t;
	int all, zero = 0;

	add(&late_plugin, "late", SHORT_MS, 1);           /* on_error = accept */
	add(&quick_plugin, "quick", LONG_MS, 0);
	t = px_txn_new(F.chain, "00000000000000a1", "mx.test");
	px_txn_set_mail(t, "first@client.test");
	run_stage(t, PX_STAGE_MAIL);                       /* late overruns, quick runs */
	ck_assert_int_eq(F.out.verdict, PX_NEXT);
	ck_assert_int_eq(g_get(&G.entered[0]), 1);
	ck_assert_int_eq(g_get(&G.entered[1]), 1);

	px_txn_reset(t);                                   /* RSET while late runs */
	ck_assert_int_eq(g_get(&G.resets[0]), 0);          /* deferred */
	ck_assert_int_eq(g_get(&G.resets[1]), 1);
	px_txn_set_mail(t, "second@client.test");
	run_stage(t, PX_STAGE_MAIL);                       /* late is busy: on_error at once */
	ck_assert_int_eq(F.out.verdict, PX_NEXT);
	ck_assert_int_eq(g_get(&G.entered[0]), 1);         /* not called again */
	ck_assert_int_eq(g_get(&G.entered[1]), 2);

	release(&G.go1);                                   /* the late acts */
	wait_for(&G.after, 1);
	ck_assert_int_eq(results_from(t, 0, &all), 0);
	ck_assert_int_eq(all, 1);                          /* quick's, of this transaction */
	pthread_mutex_lock(&t->lock);
	ck_assert_ptr_null(t->added);
	ck_assert_int_eq(t->reply_code, 0);
	pthread_mutex_unlock(&t->lock);
	ck_assert_int_eq(G.late_add_header_rc, -1);
	ck_assert(G.late_get_null);
	ck_assert(G.late_alloc_ok);
	ck_assert(G.late_slot_same);

	px_txn_reset(t);                                   /* the session ends */
	px_txn_unref(t);
	ck_assert_int_eq(g_get(&G.closes[0]), 0);          /* the late call holds the txn */
	ck_assert_int_eq(g_get(&G.closes[1]), 0);
	release(&G.go2);                                   /* writes its memory, says REJECT */
	loop_until(closed, &zero);
	ck_assert_int_eq(F.done, 2);                       /* the late REJECT went nowhere */
	ck_assert_int_eq(g_get(&G.resets[0]), 1);          /* once, for both resets */
	ck_assert_int_eq(g_get(&G.reset_on_main[0]), 1);
	ck_assert_int_eq(g_get(&G.reset_got_fact[0]), 0);  /* deferred: no facts */
	ck_assert_int_eq(g_get(&G.resets_at_close[0]), 1); /* on_close after it */
	ck_assert_int_eq(g_get(&G.resets[1]), 2);
	ck_assert_int_eq(g_get(&G.closes[0]), 1);
	ck_assert_int_eq(g_get(&G.closes[1]), 1);
}
END_TEST

/* resumer - a thread of the plugin's own: acts, then ends the call */
struct resumer {
	struct px_txn *handle;        /* NULL: plugin who's, once wait_entered's hook ran */
	int who, wait_entered;
	px_call_id id;                /* 0: the 1.0 way, resume(txn); else the 1.1 way */
	px_call_id wrong;             /* first, a resume_call naming another call */
	enum px_verdict v;
	int code;
	const char *text;
	struct resumer *then;         /* and then this one, on the same thread */
	pthread_t thr;
};

static void resume_one(struct resumer *r)
{
	if (r->handle == NULL) {
		g_lock();
		(void)g_wait(&G.entered[r->wait_entered], 1);
		r->handle = G.handle[r->who];
		r->id = r->id ? G.id[r->who] : 0;
		pthread_mutex_unlock(&gm);
	}
	host->set_reply(r->handle, r->code, NULL, r->text);
	host->record(r->handle, "resumer", "done", NULL);
	if (r->wrong)
		host->resume_call(r->handle, r->wrong, PX_ACCEPT);
	if (r->id)
		host->resume_call(r->handle, r->id, r->v);
	else
		host->resume(r->handle, r->v);
}

static void *resumer_main(void *arg)
{
	struct resumer *r;

	for (r = arg; r != NULL; r = r->then)
		resume_one(r);
	return NULL;
}

/* A PENDING call past its budget, resumed after the session has ended:
 * 1.1 (resume_call, after one naming another call) and 1.0 (resume) */
START_TEST(test_late_resume_after_session_end)
{
	const struct px_plugin *plugins[2] = { &pending11_plugin, &pending10_plugin };
	int k;

	for (k = 0; k < 2; k++) {
		struct px_chain *c = px_chain_new();
		struct px_txn *t;
		struct resumer r = { .v = PX_REJECT, .code = 550, .text = "late" };
		int idx = 0;
		px_call_id id;

		px_chain_unref(F.chain);
		F.chain = c;
		memset(&G.closes, 0, sizeof(G.closes));
		memset(&G.entered, 0, sizeof(G.entered));
		add(plugins[k], plugins[k]->name, SHORT_MS, 0);
		t = px_txn_new(F.chain, "00000000000000b1", "mx.test");
		px_txn_set_mail(t, "a@client.test");
		px_txn_set_rcpt(t, "b@example.test");
		run_stage(t, PX_STAGE_RCPT);
		ck_assert_int_eq(F.out.verdict, PX_TEMPFAIL);      /* on_error at the budget */
		ck_assert_str_eq(F.out.plugin, plugins[k]->name);
		ck_assert_str_eq(F.out.esc, "4.3.0");
		g_lock();
		r.handle = G.handle[0];
		id = G.id[0];
		pthread_mutex_unlock(&gm);
		ck_assert(id != 0);
		px_txn_reset(t);
		px_txn_unref(t);                                   /* the session is gone */
		ck_assert_int_eq(g_get(&G.closes[0]), 0);
		if (k == 0) {
			r.id = id;
			r.wrong = id + 1;
		}
		ck_assert_int_eq(pthread_create(&r.thr, NULL, resumer_main, &r), 0);
		pthread_join(r.thr, NULL);
		loop_until(closed, &idx);
		ck_assert_int_eq(F.done, k + 1);                   /* no second answer */
		ck_assert_int_eq(g_get(&G.closes[0]), 1);
	}
}
END_TEST

/* Two PENDING plugins of one stage: the first overruns (on_error accept),
 * the second waits; resumed second-then-first and first-then-second, the
 * stage's verdict and reply are the second's, and the first's late resume
 * lands on no other call */
START_TEST(test_two_pending_resumed_in_either_order)
{
	int order;

	add(&pending10_plugin, "first", SHORT_MS, 1);
	add(&pending11_plugin, "second", LONG_MS, 0);
	for (order = 0; order < 2; order++) {
		/* both wait for second's hook: by then first is late */
		struct resumer a = { .who = 0, .wait_entered = 1, .id = 0, .v = PX_DISCONNECT,
				     .code = 421, .text = "first late" };
		struct resumer b = { .who = 1, .wait_entered = 1, .id = 1, .v = PX_REJECT,
				     .code = 550, .text = "second says no" };
		struct resumer *head = order == 0 ? &b : &a;
		struct px_txn *t, *ha;
		int all;

		memset(&G.entered, 0, sizeof(G.entered));
		memset(&G.handle, 0, sizeof(G.handle));
		if (order == 0)
			b.then = &a;
		else
			a.then = &b;
		t = px_txn_new(F.chain, "00000000000000c1", "mx.test");
		px_txn_set_mail(t, "a@client.test");
		px_txn_set_rcpt(t, "b@example.test");
		ck_assert_int_eq(pthread_create(&head->thr, NULL, resumer_main, head), 0);
		run_stage(t, PX_STAGE_RCPT);
		ck_assert_int_eq(F.out.verdict, PX_REJECT);
		ck_assert_str_eq(F.out.plugin, "second");
		ck_assert_int_eq(F.out.code, 550);
		ck_assert_str_eq(F.out.text, "second says no");
		pthread_join(head->thr, NULL);
		g_lock();
		ha = G.handle[0];
		pthread_mutex_unlock(&gm);
		ck_assert_ptr_nonnull(ha);
		loop_until(no_call, ha);                           /* first's call has ended */
		ck_assert_int_eq(F.done, order + 1);
		ck_assert_int_eq(results_from(t, 0, &all), 0);     /* first's record: dropped */
		ck_assert_int_eq(results_from(t, 1, &all), 1);
		px_txn_reset(t);
		px_txn_unref(t);
	}
	ck_assert_int_eq(g_get(&G.closes[0]), 2);
	ck_assert_int_eq(g_get(&G.closes[1]), 2);
}
END_TEST

/* on_reset while the plugin's call is late: deferred, once, after it */
START_TEST(test_on_reset_during_late_call)
{
	struct px_txn *t;
	int zero = 0;

	add(&late_plugin, "late", SHORT_MS, 0);
	add(&quick_plugin, "quick", LONG_MS, 0);
	t = px_txn_new(F.chain, "00000000000000d1", "mx.test");
	px_txn_set_mail(t, "a@client.test");
	run_stage(t, PX_STAGE_MAIL);
	ck_assert_int_eq(F.out.verdict, PX_TEMPFAIL);
	ck_assert_str_eq(F.out.plugin, "late");
	px_txn_reset(t);
	px_txn_reset(t);
	ck_assert_int_eq(g_get(&G.resets[0]), 0);
	ck_assert_int_eq(g_get(&G.resets[1]), 2);
	release(&G.go1);
	release(&G.go2);
	loop_until(no_call, px_txn_for(t, 0));
	ck_assert_int_eq(g_get(&G.resets[0]), 1);
	ck_assert_int_eq(g_get(&G.reset_on_main[0]), 1);
	ck_assert_int_eq(g_get(&G.reset_got_fact[0]), 0);
	g_lock();
	ck_assert_ptr_eq(G.slot_reset[0], G.slot_hook[0]);
	ck_assert_ptr_eq(*G.slot_reset[0], G.mem);        /* what the late call left there */
	pthread_mutex_unlock(&gm);
	*px_host_services()->slot(px_txn_for(t, 0)) = NULL;
	px_txn_set_mail(t, "b@client.test");
	px_txn_reset(t);                                  /* no call now: at once, with facts */
	ck_assert_int_eq(g_get(&G.resets[0]), 2);
	ck_assert_int_eq(g_get(&G.reset_got_fact[0]), 1);
	px_txn_unref(t);
	ck_assert(closed(&zero));
}
END_TEST

/* hung calls cost a worker each, replaced; at stuck_max the plugin gets
 * on_error at once, without its hook, until they end */
START_TEST(test_pool_replaces_stuck_and_overload)
{
	struct px_txn *t[8], *ok;
	struct px_workpool_stats st;
	unsigned max = px_workpool_stuck_max(F.pool), i;
	char sid[17];
	int entered, zero = 0;

	ck_assert_uint_ge(max, 3);
	add(&hang_plugin, "hang", SHORT_MS, 0);
	ck_assert_uint_le(max, 8);
	for (i = 0; i < max; i++) {
		snprintf(sid, sizeof(sid), "00000000000000e%x", i);
		t[i] = px_txn_new(F.chain, sid, "mx.test");
		px_txn_set_mail(t[i], "hang@slow.test");
		run_stage(t[i], PX_STAGE_MAIL);
		ck_assert_int_eq(F.out.verdict, PX_TEMPFAIL);
		wait_for(&G.hung, (int)i + 1);
		px_workpool_stats(F.pool, &st);
		ck_assert_uint_eq(st.stuck, i + 1);
		ck_assert_uint_ge(st.threads, st.stuck + st.min);  /* replaced */
		if (i + 1 == max - 1) {           /* more hung than the pool's minimum */
			ck_assert_uint_gt(st.stuck, st.min);
			ok = px_txn_new(F.chain, "00000000000000f0", "mx.test");
			px_txn_set_mail(ok, "fine@fast.test");
			run_stage(ok, PX_STAGE_MAIL);
			ck_assert_int_eq(F.out.verdict, PX_NEXT);   /* a new worker took it */
			px_txn_unref(ok);
		}
	}
	ck_assert_uint_eq(__atomic_load_n(&F.chain->v[0].overran, __ATOMIC_ACQUIRE), max);
	entered = g_get(&G.entered[0]);
	ok = px_txn_new(F.chain, "00000000000000f1", "mx.test");
	px_txn_set_mail(ok, "fine@fast.test");
	run_stage(ok, PX_STAGE_MAIL);                      /* overloaded: at once */
	ck_assert_int_eq(F.out.verdict, PX_TEMPFAIL);
	ck_assert_str_eq(F.out.plugin, "hang");
	ck_assert_int_eq(g_get(&G.entered[0]), entered);   /* its hook was not called */

	release(&G.go1);
	for (i = 0; i < max; i++)
		px_txn_unref(t[i]);
	while (__atomic_load_n(&F.chain->v[0].overran, __ATOMIC_ACQUIRE) > 0)
		ck_assert(event_base_loop(F.base, EVLOOP_ONCE) >= 0);
	run_stage(ok, PX_STAGE_MAIL);                      /* drained: runs again */
	ck_assert_int_eq(F.out.verdict, PX_NEXT);
	ck_assert_int_eq(g_get(&G.entered[0]), entered + 1);
	px_txn_unref(ok);
	ck_assert_int_eq(g_get(&G.closes[0]), (int)max + 2);
	(void)zero;
}
END_TEST

/* read_all - a file's text (malloc) */
static char *read_all(FILE *f)
{
	long n;
	char *s;

	fflush(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s = calloc(1, (size_t)n + 1);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(fread(s, 1, (size_t)n, f), n);
	return s;
}

/* The late acts and the late verdict are logged, naming the plugin */
START_TEST(test_late_acts_logged)
{
	FILE *cap = tmpfile();
	struct px_txn *t;
	char *log;
	int saved = dup(2), zero = 0;

	ck_assert(cap != NULL && saved >= 0);
	add(&late_plugin, "slowpoke", SHORT_MS, 0);
	px_log_open("test-chain", 1, PX_LOG_DEBUG);
	t = px_txn_new(F.chain, "00000000000000a9", "mx.test");
	px_txn_set_mail(t, "a@client.test");
	dup2(fileno(cap), 2);
	run_stage(t, PX_STAGE_MAIL);
	px_txn_reset(t);
	px_txn_unref(t);
	release(&G.go1);
	release(&G.go2);
	loop_until(closed, &zero);
	dup2(saved, 2);
	close(saved);
	log = read_all(cap);
	fclose(cap);
	fputs(log, stderr);
	ck_assert_msg(strstr(log, "plugin name=slowpoke stage=mail error=timeout action=tempfail"),
		      "%s", log);
	ck_assert_msg(strstr(log, "plugin=slowpoke late=yes dropped=record"), "%s", log);
	ck_assert_msg(strstr(log, "plugin=slowpoke late=yes dropped=set_reply"), "%s", log);
	ck_assert_msg(strstr(log, "plugin=slowpoke late=yes dropped=add_header"), "%s", log);
	ck_assert_msg(strstr(log, "plugin=slowpoke late=yes dropped=remove_header"), "%s", log);
	ck_assert_msg(strstr(log, "plugin=slowpoke stage=mail late=yes verdict=reject"), "%s", log);
	ck_assert_msg(strstr(log, "plugin=slowpoke stage=mail late=yes stuck=yes"), "%s", log);
	free(log);
}
END_TEST

/* chain_suite - every test case above */
static Suite *chain_suite(void)
{
	Suite *s = suite_create("chain");
	TCase *tc = tcase_create("lifetimes");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_late_hook_reset_and_session_end);
	tcase_add_test(tc, test_late_resume_after_session_end);
	tcase_add_test(tc, test_two_pending_resumed_in_either_order);
	tcase_add_test(tc, test_on_reset_during_late_call);
	tcase_add_test(tc, test_pool_replaces_stuck_and_overload);
	tcase_add_test(tc, test_late_acts_logged);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(chain_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
