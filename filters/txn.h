/*
 * NAME
 *	txn - the session and transaction as the chain and plugins see them
 * DESCRIPTION
 *	One px_txn per SMTP session (or per `postern test` run, or per milter
 *	connection): the front end fills in the facts (client, HELO, envelope,
 *	message) and the chain and the policy read them; plugins reach it only
 *	through the host services (px_host_services()).
 *
 *	Threads. Hooks run on worker threads while the front end waits, so a
 *	txn is touched by one thread at a time, except by a call that overran
 *	its budget ("late"): the front end goes on while the hook may still
 *	run. Every host service and every mutator therefore takes txn->lock.
 *
 *	Plugins never see the txn itself: each gets its own handle for the
 *	session (struct px_txn_plugin.handle, cast to struct px_txn *), so a
 *	service knows which plugin calls it, and, since one plugin's calls on
 *	one session never overlap (chain_run.c makes sure), which call.
 *
 *	Lifetimes. Each call in flight holds a reference on the txn, so the txn,
 *	its lock, its handles and slots live until the last call ends; plugins'
 *	on_close runs when the last reference goes. Strings handed to a hook
 *	are copies owned by its call. The transaction's alloc() memory (the
 *	arena) is freed at reset only when no call is in flight; otherwise it
 *	waits in `old_arenas` until the last call in flight has ended. A reset
 *	while a plugin's call is in flight defers that plugin's on_reset until
 *	the call ends (reset_due).
 */
#ifndef PX_FILTERS_TXN_H
#define PX_FILTERS_TXN_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "postern/plugin.h"
#include "message.h"

enum px_stage {
	PX_STAGE_CONNECT,
	PX_STAGE_HELO,
	PX_STAGE_MAIL,
	PX_STAGE_RCPT,
	PX_STAGE_DATA_END,
	PX_STAGE_COUNT
};
extern const char *const px_stage_names[PX_STAGE_COUNT];

struct event_base;
struct px_chain;
struct px_spool;

struct px_result {
	struct px_result *next;
	unsigned plugin;          /* chain index of the plugin that recorded it */
	enum px_stage stage;
	unsigned long long seq;   /* order of recording in the session (next_result_seq) */
	char *method, *result, *props;
};

struct px_added_header {
	struct px_added_header *next;
	char *name, *value;
};

/* What the policy says for this client/sender/recipient (policy/policy.c) */
struct px_policy_view {
	uint64_t overrides;       /* bit i: override i applies */
	int allow;                /* allow-listed: the chain is skipped */
	int deny;                 /* deny-listed: refused */
	int monitor;              /* evaluate and log only */
};

struct px_mem;
struct px_call;

/* What a call shows the host services (chain_run.c's struct px_call starts
 * with it) */
struct px_invocation {
	struct px_txn *txn;
	unsigned plugin;
	enum px_stage stage;
	unsigned long long id;    /* px_call_id, from txn->next_call_id */
	int stale;                /* late: past its budget, its acts are dropped */
	int waiting;              /* the hook answered PX_PENDING: resume() ends it */
	int resumed;
	enum px_verdict resume_verdict;
	struct px_mem *mem;       /* copies handed to the hook (get, header_at) */
	const char *failed;       /* a host service that failed in this call ("store"):
				     an error verdict is then logged error=store */
};

/* What a plugin is handed as its struct px_txn * */
struct px_txn_handle {
	struct px_txn *txn;
	unsigned plugin;          /* chain index */
};

enum px_notify { PX_NOTIFY_NONE, PX_NOTIFY_NOW, PX_NOTIFY_DEFERRED };

/* One plugin's side of a session (txn->lock) */
struct px_txn_plugin {
	struct px_txn_handle handle;
	void *slot;               /* host->slot() */
	struct px_invocation *call;    /* its hook call in flight, or NULL */
	enum px_notify notify;    /* on_reset / on_close running */
	struct px_mem *notify_mem;     /* copies handed to on_reset / on_close */
	int reset_due;            /* on_reset waits for call to end */
};

struct px_txn {
	pthread_mutex_t lock;
	int refs;
	struct px_chain *chain;   /* referenced: on_close needs it */
	char sid[17];
	char hostname[256];
	char client_addr[64];
	unsigned client_port;
	char client_name[256];
	char helo[256];
	int tls;
	char tls_version[32], tls_cipher[64];
	char auth_login[256];
	int trusted;              /* the client is in trusted_networks */
	char *mail_from;          /* NULL before MAIL; "" for <> */
	char **rcpts;             /* accepted */
	size_t nrcpts;
	char *rcpt;               /* being checked (rcpt stage) */
	struct px_spool *spool;   /* borrowed from the front end (data-end) */
	struct px_headers headers;
	struct px_result *results;
	struct px_added_header *added;
	int reply_code;
	char reply_esc[16];
	char reply_text[512];
	struct px_txn_plugin *plugins;  /* one per chain entry */
	struct px_mem *arena;     /* host->alloc, per transaction */
	struct px_mem *old_arenas;      /* ended transactions' arenas, while calls run */
	unsigned calls;           /* calls in flight */
	unsigned long long next_call_id;
	unsigned long long next_result_seq;
	struct px_policy_view view;     /* the transaction's (its first recipient's) */
	int have_view;
	int txn_allowed;          /* allow-listed sender or network: no chain */
	struct event_base *base;  /* the session's event loop: dns_query_async answers
				     there (NULL: on the resolver's thread) */
};

/* px_txn_new - one reference; chain may be NULL (no plugins) */
struct px_txn *px_txn_new(struct px_chain *chain, const char *sid, const char *hostname);
struct px_txn *px_txn_ref(struct px_txn *t);
/* px_txn_unref - the last one runs on_close for every plugin and frees */
void px_txn_unref(struct px_txn *t);

/* Front-end mutators (lock taken inside) */
void px_txn_set_client(struct px_txn *t, const char *addr, unsigned port, const char *name);
void px_txn_set_trusted(struct px_txn *t, int trusted);
void px_txn_set_helo(struct px_txn *t, const char *helo);
void px_txn_set_tls(struct px_txn *t, const char *version, const char *cipher);
void px_txn_set_login(struct px_txn *t, const char *login);
void px_txn_set_mail(struct px_txn *t, const char *from);
void px_txn_set_rcpt(struct px_txn *t, const char *rcpt);    /* the one being checked */
int px_txn_add_rcpt(struct px_txn *t, const char *rcpt);     /* accepted */
/* px_txn_set_message - the spooled message; indexes its headers */
int px_txn_set_message(struct px_txn *t, struct px_spool *spool);
/* px_txn_reset - end the transaction: on_reset for every plugin, then clear */
void px_txn_reset(struct px_txn *t);

/* px_txn_set_base - the event loop the session runs on (atomic; set by the
 * front end before any hook may ask for an asynchronous lookup) */
void px_txn_set_base(struct px_txn *t, struct event_base *base);
struct event_base *px_txn_base(struct px_txn *t);

/* px_txn_tag - the policy's "tag": X-Postern-Tag: WHAT */
void px_txn_tag(struct px_txn *t, const char *what);
/* px_txn_quarantine - deliver with X-Postern-Quarantine naming the plugin */
void px_txn_quarantine(struct px_txn *t, const char *plugin);
/* px_txn_add_header - append to the headers to prepend (host side, no checks) */
int px_txn_add_header(struct px_txn *t, const char *name, const char *value);

/* Results and edits, for the policy and the outgoing message */
void px_txn_record(struct px_txn *t, unsigned plugin, enum px_stage stage, const char *method,
		   const char *result, const char *props);
/*
 * Results recorded at connect and helo belong to the session: a reset keeps
 * them (iprev, a HELO check, reach every message of the session); the rest
 * belong to the transaction. px_txn_results_restart - a stage runs anew:
 * connect (XCLIENT's new identity) drops the session's results, helo (EHLO
 * again) the helo ones. px_txn_result_seq - the seq the next result gets.
 */
void px_txn_results_restart(struct px_txn *t, enum px_stage stage);
unsigned long long px_txn_result_seq(struct px_txn *t);
void px_txn_clear_reply(struct px_txn *t);

/* px_host_services - the table every plugin's load() receives */
const struct px_host *px_host_services(void);
/* px_txn_for - the handle plugin idx is given for t */
struct px_txn *px_txn_for(struct px_txn *t, unsigned idx);

/* Calls (chain_run.c). px_txn_call_begin - inv becomes its plugin's call in
 * flight (gets an id, holds a reference); 0, or -1 when the plugin already
 * has one on t (a late call: the new one must not run) */
int px_txn_call_begin(struct px_txn *t, struct px_invocation *inv);
/* px_txn_call_end - inv has ended: the plugin's deferred on_reset runs, and
 * old arenas go when it was the last call; drops inv's reference (on the
 * front end's thread) */
void px_txn_call_end(struct px_txn *t, struct px_invocation *inv);

/* px_txn_notify - on_reset (closing=0) or on_close of plugin idx, with its
 * services set up; a reset while the plugin has a call in flight only marks
 * it due. In chain.c's px_chain_notify */
void px_txn_notify(struct px_txn *t, unsigned idx, int closing);

/* The plugin section being loaded or configured on this thread, for its logs */
extern __thread const char *px_current_plugin_name;
void px_mem_free(struct px_mem *m);

#endif
