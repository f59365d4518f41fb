/*
 * NAME
 *	milter_int - postern-milter's connection, its facts, and the stage jobs
 * DESCRIPTION
 *	Three kinds of thread meet here (doc/milter-postfix.md, "Protocol details"):
 *	  libmilter's threads   run the smfiDesc callbacks (milter_session.c);
 *	                        a connection's callbacks come one after another
 *	                        but each on any thread, so everything of a
 *	                        connection lives in struct px_mconn, behind
 *	                        smfi_setpriv;
 *	  the loop thread       one libevent base (milter_loop.c): every txn
 *	                        operation, the chain runner's timers and
 *	                        resumes, on_reset and on_close (milter_stage.c);
 *	  the pool's workers    the plugin hooks, as in posternd.
 *	A callback never touches the txn: it copies what it learnt into a job
 *	(struct px_mjob: the facts as they are now), hands the job to the loop
 *	and waits for the job's answer on a condition variable, at most
 *	timeouts.milter; past that it answers 451 itself and abandons the job,
 *	which the loop frees when the chain ends (a plugin's own budget runs
 *	out first in any sane configuration: the chain's on_error).
 *
 *	Ownership: the connection is created in xxfi_negotiate and freed by the
 *	loop thread after xxfi_close, once no job of it is running. The spool
 *	is written by the callbacks (header, body) and given to the loop with
 *	the data-end job, which frees it after the transaction's reset.
 */
#ifndef PX_PROXY_MILTER_INT_H
#define PX_PROXY_MILTER_INT_H

#include <pthread.h>
#include <stddef.h>

#include "filters/chain.h"
#include "filters/txn.h"

struct px_config;
struct px_spool;
struct px_mloop;
struct px_workpool;

#define PX_MADDR_MAX 64
#define PX_MNAME_MAX 256
#define PX_MPATH_MAX 1024   /* MAIL FROM / RCPT TO path, as the MTA gave it */

/* What the MTA told us so far, copied into each job */
struct px_mfacts {
	char client_addr[PX_MADDR_MAX];
	unsigned client_port;
	char client_name[PX_MNAME_MAX];
	int trusted;
	char helo[PX_MNAME_MAX];
	char tls_version[32], tls_cipher[64];
	char login[PX_MNAME_MAX];
	char from[PX_MPATH_MAX];
	int have_from;
	char rcpt[PX_MPATH_MAX];
	char queue_id[64];
};

/* The process: the loop, the pool, the current generation */
struct px_milter {
	pthread_mutex_t lock;
	struct px_config *cfg;        /* the generation new connections get */
	struct px_mloop *loop;
	struct px_workpool *pool;
	unsigned long long next_id;   /* connection ids */
};

extern struct px_milter px_milter;

/* One header edit the MTA is asked to make at end of message */
struct px_medit {
	char *name, *value;   /* value: CR-free, as smfi_insheader takes it */
	int index;            /* removal: the field's index among its name (1-based) */
};

struct px_medits {
	struct px_medit *add;     /* top first */
	size_t nadd;
	struct px_medit *del;     /* highest index first for each name */
	size_t ndel;
	char quarantine[256];     /* "" or the reason */
};

enum px_mjob_kind { PX_MJ_STAGE, PX_MJ_RESET, PX_MJ_CLOSE };

/* One hand-off to the loop. A stage job is waited for; reset and close
 * are not (the loop frees them). */
struct px_mjob {
	struct px_mjob *next;     /* the loop's queue */
	enum px_mjob_kind kind;
	struct px_mconn *c;
	enum px_stage stage;
	struct px_mfacts f;
	struct px_spool *spool;   /* data-end: the message (the job owns it) */
	int spool_error;          /* data-end: the spool failed or grew too big */
	/* the answer */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int answered, abandoned;
	struct px_stage_outcome out;
	struct px_medits edits;   /* data-end, when the message goes on */
};

/* One MTA connection (smfi_setpriv) */
struct px_mconn {
	char sid[17];
	struct px_config *cfg;    /* referenced: the generation of the connection */
	/* libmilter's threads only */
	unsigned long actions;    /* negotiated SMFIF_* */
	int leadspc;              /* SMFIP_HDR_LEADSPC: header values keep their space */
	int want_body;            /* a plugin reads the message */
	struct px_mfacts f;
	struct px_spool *spool;
	int in_body, prev_cr, spool_error;
	int quarantined;          /* the last message was (for its summary) */
	size_t nrcpts;
	unsigned long long t_mail; /* ms, for the summary */
	/* both: set by a callback before it hands a stage over, cleared by the
	 * loop when the stage ends (atomic); a stage job abandoned past its
	 * deadline keeps it set, and the next stage is answered 451 at once */
	int busy;
	/* the loop thread only */
	struct px_txn *txn;
	struct px_policy_view view;   /* of the stage being run */
	int running;              /* a chain stage is in flight */
	int closing;              /* close came while running: free at its end */
	int reset_due;            /* an abort came while running: reset at its end */
};

/* milter_loop.c */
struct px_mloop *px_mloop_start(char *err, size_t errlen);
/* px_mloop_submit - run job on the loop thread (FIFO); any thread */
void px_mloop_submit(struct px_mloop *l, struct px_mjob *job);
struct event_base *px_mloop_base(struct px_mloop *l);
void px_mloop_stop(struct px_mloop *l);
void px_mloop_free(struct px_mloop *l);

/* milter_stage.c: on the loop thread */
void px_mstage_run(struct px_mjob *job);

/* milter_job.c */
struct px_mjob *px_mjob_new(struct px_mconn *c, enum px_mjob_kind kind, enum px_stage st);
/* px_mjob_answer - the loop's answer; frees an abandoned job */
void px_mjob_answer(struct px_mjob *job);
/* px_mjob_wait - wait for the answer until deadline_ms (0 when it came),
 * calling progress every slice_ms when set; -1 past the deadline: the job
 * is abandoned (the loop frees it) */
int px_mjob_wait(struct px_mjob *job, unsigned deadline_ms, unsigned slice_ms,
		 void (*progress)(void *), void *arg);
void px_mjob_free(struct px_mjob *job);
void px_medits_free(struct px_medits *e);

/* milter_reply.c: verdicts to libmilter */
struct smfi_str;
int px_mreply_stage(struct smfi_str *ctx, struct px_mconn *c, enum px_stage st,
		    const struct px_stage_outcome *o);
int px_mreply_eom(struct smfi_str *ctx, struct px_mconn *c, const struct px_stage_outcome *o,
		  const struct px_medits *e);
int px_mreply_tempfail(struct smfi_str *ctx, const char *why);

#endif
