/*
 * NAME
 *	chain - the plugins of one configuration generation, and running a stage
 * DESCRIPTION
 *	A chain is built once per configuration generation from the plugin
 *	sections, in their order: each entry is a loaded plugin, its parsed
 *	options (its own conf struct, filled from the section) and the host's
 *	settings for it (timeout, on_error, monitor). It is refcounted: the
 *	generation holds it, and so does every txn built on it, so a reload
 *	never pulls a conf struct from under a running session.
 *
 *	px_chain_run() runs one stage for one txn: the plugins that hook the
 *	stage, in order, each on the worker pool with its time budget, the
 *	policy's actions applied to what each recorded, monitor mode applied
 *	last. It answers at once (returns 1) when nothing needs the pool — no
 *	plugin hooks the stage, or the policy lists decide — and otherwise calls
 *	done later on the caller's event base (returns 0). The caller must
 *	keep the txn, the event base and the pool until done has run; a call
 *	that overruns its budget keeps what it needs itself (chain_run.c).
 */
#ifndef PX_FILTERS_CHAIN_H
#define PX_FILTERS_CHAIN_H

#include <stddef.h>

#include "postern/plugin.h"
#include "txn.h"

struct event_base;
struct px_workpool;
struct px_policy;

struct px_chain_entry {
	char *name;               /* the section title */
	char *path;
	const struct px_plugin *plugin;
	void *conf;               /* conf_size bytes, filled from the options */
	char **strings;           /* what the conf's strings and lists point into */
	size_t nstrings;
	unsigned timeout_ms;
	int on_error_accept;      /* on_error = accept (else tempfail) */
	int monitor;
	int configured;
	unsigned overran;         /* calls past their budget, not ended (atomic) */
	int overloaded;           /* overran reached the pool's stuck_max (logged) */
};

struct px_chain {
	int refs;
	struct px_chain_entry *v;
	size_t n;
	unsigned stage_mask;      /* bit per stage that some plugin hooks */
	struct px_chain *release_next;   /* the releaser's list (see below) */
};

/* One "key = value" of a plugin section, with where it was written */
struct px_plugin_kv {
	const char *key, *value;
	const char *file;
	int line;
};

struct px_plugin_spec {
	const char *name;         /* section title */
	const char *path;         /* the .so to load */
	unsigned timeout_ms;
	int on_error_accept;
	int monitor;
	const struct px_plugin_kv *kv;   /* the plugin's own options */
	size_t nkv;
	const char *file;         /* where the section is */
	int line;
};

struct px_chain *px_chain_new(void);
struct px_chain *px_chain_ref(struct px_chain *c);
/* px_chain_unref - the last one calls unconfigure for every entry: at
 * once, or through the releaser when one is set */
void px_chain_unref(struct px_chain *c);
/* px_chain_free - unconfigure every entry and free (the releaser calls it) */
void px_chain_free(struct px_chain *c);
/*
 * px_chain_set_releaser - who frees a chain whose last reference went:
 * unconfigure hooks may be slow (an antivirus engine), and the last
 * reference often goes on an I/O thread (a txn that outlived its session
 * behind a late call). posternd hands it to its main thread; NULL (the
 * default, and at shutdown): free at once.
 */
void px_chain_set_releaser(void (*fn)(struct px_chain *c, void *arg), void *arg);
/*
 * px_chain_set_config_facts - what a plugin's configure() may read with
 * get(NULL, key) on this thread, until the next call: "hostname" and
 * "limits.message_size_max" of the generation being built (policy sets
 * them before it builds the chain; NULL hostname: none)
 */
void px_chain_set_config_facts(const char *hostname, size_t message_size_max);
/* px_chain_config_fact - the value for key, or NULL (see above) */
const char *px_chain_config_fact(const char *key);

/* px_chain_add - load, check the options, configure; err gets "file:line: ..." */
int px_chain_add(struct px_chain *c, const struct px_plugin_spec *spec, char *err, size_t errlen);
/* px_chain_add_loaded - the same for a plugin already in memory (spec->path
 * only names it): built-in plugins and the unit tests */
int px_chain_add_loaded(struct px_chain *c, const struct px_plugin *p,
			const struct px_plugin_spec *spec, char *err, size_t errlen);
/* px_chain_notify - on_reset (closing=0) or on_close (closing=1) for every
 * plugin; a plugin with a call in flight on t gets its on_reset when that
 * call ends (px_txn_notify) */
void px_chain_notify(struct px_chain *c, struct px_txn *t, int closing);
/* px_chain_find - the index of the entry called name, or -1 */
int px_chain_find(const struct px_chain *c, const char *name);

/* The stage's result, as the front end answers it */
struct px_stage_outcome {
	enum px_verdict verdict;  /* NEXT or ACCEPT: go on; the others: refuse/act */
	int code;                 /* the reply, when verdict refuses */
	char esc[16];
	char text[512];
	char plugin[64];          /* who decided ("policy" for the lists) */
};

typedef void (*px_stage_done)(void *arg, const struct px_stage_outcome *o);

/* Told of each plugin's verdict (postern test prints them); may be NULL */
typedef void (*px_chain_observer)(void *arg, unsigned plugin, enum px_stage stage,
				  enum px_verdict verdict, long ms, const char *error);

/* What a policy rule does with a result a plugin recorded (the runner maps
 * it onto the stage's verdict) */
enum px_action {
	PX_ACT_NONE = 0,          /* no rule: the plugin's verdict stands */
	PX_ACT_ACCEPT,
	PX_ACT_REJECT,
	PX_ACT_TEMPFAIL,
	PX_ACT_DISCARD,
	PX_ACT_QUARANTINE,
	PX_ACT_DISCONNECT,
	PX_ACT_TAG,               /* deliver, with X-Postern-Tag: KEY=RESULT */
	PX_ACT_IGNORE             /* as if nothing was found */
};

/*
 * The decisions the runner leaves to the policy above it. filters/ does not
 * include policy/ (doc/layering.md): the caller passes the generation's
 * policy as an opaque pointer and these calls (policy/policy.c fills
 * px_policy_decider). A NULL decider skips nothing and changes nothing.
 */
struct px_chain_decider {
	/* skips - a matching override says not to run this plugin */
	int (*skips)(const struct px_policy *p, const struct px_policy_view *v,
		     const char *plugin);
	/* action - the first rule for this result, or PX_ACT_NONE */
	enum px_action (*action)(const struct px_policy *p, const struct px_policy_view *v,
				 const char *plugin, const char *method, const char *result);
};

struct px_run_ctx {
	struct px_txn *txn;
	const struct px_policy *policy;     /* opaque here; given back to decide */
	const struct px_policy_view *view;  /* copied; may be a temporary */
	struct event_base *base;
	struct px_workpool *pool;
	px_chain_observer observe;
	void *observe_arg;
	const struct px_chain_decider *decide;  /* may be NULL */
};

/* px_chain_run - 1 with *now filled, or 0 and done(arg, outcome) later */
int px_chain_run(const struct px_run_ctx *ctx, enum px_stage stage, struct px_stage_outcome *now,
		 px_stage_done done, void *arg);
/* px_chain_resume - host->resume (1.0): end the PX_PENDING call of the
 * plugin behind handle (any thread) */
void px_chain_resume(struct px_txn *handle, enum px_verdict verdict);
/* px_chain_pending - host->pending (1.1): the id of that plugin's call in flight */
px_call_id px_chain_pending(struct px_txn *handle);
/* px_chain_resume_call - host->resume_call (1.1): end the call named by id */
void px_chain_resume_call(struct px_txn *handle, px_call_id id, enum px_verdict verdict);

/* px_verdict_name - "next", "reject", ... */
const char *px_verdict_name(enum px_verdict v);

#endif
