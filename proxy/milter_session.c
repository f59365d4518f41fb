/*
 * NAME
 *	milter_session - libmilter's callbacks: an MTA connection as chain stages
 * DESCRIPTION
 *	Each callback maps to a stage of the chain, as posternd's SMTP
 *	commands do:
 *
 *	  xxfi_negotiate  the connection is created (its generation, its id);
 *	                  only the steps and actions used are asked for
 *	  xxfi_connect    connect: the client's address and name as the MTA
 *	                  saw them ({client_addr} if the MTA sent no address)
 *	  xxfi_helo       helo
 *	  xxfi_envfrom    mail ({auth_authen}: the login; i: the queue id)
 *	  xxfi_envrcpt    rcpt, once per recipient
 *	  xxfi_header     the message, assembled in a spool as posternd's
 *	  xxfi_body       DATA spools it (CRLF line ends, headers as received:
 *	                  SMFIP_HDR_LEADSPC keeps their leading space, DKIM
 *	                  needs the bytes)
 *	  xxfi_eom        data-end, then the header edits (milter_reply.c)
 *	  xxfi_abort      the transaction's reset
 *	  xxfi_close      the connection's end
 *
 *	The callbacks of one connection run one after another, each on any of
 *	libmilter's threads (Debian builds it with a worker pool), so all they
 *	keep is in struct px_mconn behind smfi_setpriv. A stage is a job for
 *	the loop thread; the callback waits for its answer at most
 *	timeouts.milter, and past that answers 451 itself (milter_job.c). At
 *	end of message it calls smfi_progress every 5 s while it waits.
 *
 *	What the MTA owns in milter mode: TLS, AUTH, size and recipient
 *	limits, relay permission and the queue. Postern does not check
 *	relay_domains here; the MTA asked the milter only about recipients
 *	it accepted.
 * DIAGNOSTICS
 *	SID milter connect client=A port=P name=N mta=J daemon=D macro_client=_
 *	SID milter mail from=<F> queue_id=Q
 *	SID milter refuse stage=S by=P reply="C E text" queue_id=Q
 *	SID milter message queue_id=Q client=A from=<F> nrcpt=N size=B action=A reply="..." ms=T
 *	SID milter stage=S deadline=MS action=tempfail queue_id=Q
 *	SID milter stage=S busy=yes action=tempfail queue_id=Q
 *	- milter negotiate error=mta-lacks-actions offered=0x.. needed=0x..
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmilter/mfapi.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "filters/spool.h"
#include "policy/config.h"
#include "milter_int.h"

#define PROGRESS_MS 5000      /* smfi_progress while data-end runs */

/* The macros asked for where the MTA takes a list (SMFIF_SETSYMLIST) */
static const struct {
	int stage;
	const char *list;
} symlists[] = {
	{ SMFIM_CONNECT, "j {daemon_name} _ {client_addr} {client_port}" },
	{ SMFIM_HELO, "{tls_version} {cipher}" },
	{ SMFIM_ENVFROM, "i {auth_authen} {tls_version} {cipher}" },
	{ SMFIM_ENVRCPT, "i" },
	{ SMFIM_EOM, "i" },
};

static unsigned long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

/* macro - a macro's value, or "" */
static const char *macro(SMFICTX *ctx, const char *name)
{
	const char *v = smfi_getsymval(ctx, (char *)name);

	return v ? v : "";
}

/* qid - the queue id for log lines */
static const char *qid(const struct px_mconn *c)
{
	return c->f.queue_id[0] ? c->f.queue_id : "-";
}

/* take_macros - what each stage may bring: the queue id, TLS, the login */
static void take_macros(SMFICTX *ctx, struct px_mconn *c)
{
	const char *v;

	if (*(v = macro(ctx, "i")))
		snprintf(c->f.queue_id, sizeof(c->f.queue_id), "%s", v);
	if (*(v = macro(ctx, "{tls_version}"))) {
		snprintf(c->f.tls_version, sizeof(c->f.tls_version), "%s", v);
		snprintf(c->f.tls_cipher, sizeof(c->f.tls_cipher), "%s", macro(ctx, "{cipher}"));
	}
	if (*(v = macro(ctx, "{auth_authen}")))
		snprintf(c->f.login, sizeof(c->f.login), "%s", v);
}

/* progress - keep the MTA waiting (its content timeout) */
static void progress(void *arg)
{
	smfi_progress(arg);
}

/* refusal_log - a stage the chain refused */
static void refusal_log(const struct px_mconn *c, enum px_stage st,
			const struct px_stage_outcome *o)
{
	if (o->verdict == PX_NEXT || o->verdict == PX_ACCEPT || o->verdict == PX_QUARANTINE)
		return;
	px_log(PX_LOG_INFO, c->sid, "milter refuse stage=%s by=%s verdict=%s reply=\"%d %s %s\" "
	       "queue_id=%s", px_stage_names[st], o->plugin, px_verdict_name(o->verdict), o->code,
	       o->esc, o->text, qid(c));
}

/* run_stage - hand the stage to the loop and answer the MTA; *out gets
 * the outcome when it came (NULL: not wanted) */
static sfsistat run_stage(SMFICTX *ctx, struct px_mconn *c, enum px_stage st,
			  struct px_stage_outcome *out)
{
	struct px_mjob *job;
	sfsistat rc;

	if (__atomic_load_n(&c->busy, __ATOMIC_ACQUIRE)) {
		px_log(PX_LOG_WARN, c->sid, "milter stage=%s busy=yes action=tempfail queue_id=%s",
		       px_stage_names[st], qid(c));
		return px_mreply_tempfail(ctx, "busy");
	}
	if ((job = px_mjob_new(c, PX_MJ_STAGE, st)) == NULL)
		return px_mreply_tempfail(ctx, "memory");
	if (st == PX_STAGE_DATA_END) {
		job->spool = c->spool;        /* the job owns it now */
		job->spool_error = c->spool_error;
		c->spool = NULL;
	}
	__atomic_store_n(&c->busy, 1, __ATOMIC_RELEASE);
	px_mloop_submit(px_milter.loop, job);
	if (px_mjob_wait(job, c->cfg->timeouts.milter, st == PX_STAGE_DATA_END ? PROGRESS_MS : 0,
			 progress, ctx) < 0) {
		px_log(PX_LOG_WARN, c->sid, "milter stage=%s deadline=%u action=tempfail "
		       "queue_id=%s", px_stage_names[st], c->cfg->timeouts.milter, qid(c));
		return px_mreply_tempfail(ctx, "deadline");   /* the loop frees the job */
	}
	refusal_log(c, st, &job->out);
	rc = st == PX_STAGE_DATA_END ? px_mreply_eom(ctx, c, &job->out, &job->edits)
				     : px_mreply_stage(ctx, c, st, &job->out);
	if (out != NULL)
		*out = job->out;
	c->quarantined = job->edits.quarantine[0] != '\0';
	px_mjob_free(job);
	return rc;
}

/* conn_new - a connection on the current generation */
static struct px_mconn *conn_new(void)
{
	struct px_mconn *c = calloc(1, sizeof(*c));
	unsigned long long id;

	if (c == NULL)
		return NULL;
	pthread_mutex_lock(&px_milter.lock);
	c->cfg = px_config_ref(px_milter.cfg);
	id = ++px_milter.next_id;
	pthread_mutex_unlock(&px_milter.lock);
	/* the process start and a counter: unique, and sortable in the log */
	snprintf(c->sid, sizeof(c->sid), "%08lx%08llx", (unsigned long)time(NULL), id & 0xffffffffULL);
	return c;
}

/* wanted_steps - the protocol flags for this generation's chain */
static unsigned long wanted_steps(const struct px_mconn *c, unsigned long offered)
{
	unsigned long want = SMFIP_NOUNKNOWN | SMFIP_HDR_LEADSPC;

	/* Every step the MTA sends gets a reply: no SMFIP_NR_*, and DATA and
	 * EOH are not skipped. A step without a reply, or macros sent for a
	 * skipped step (Postfix sends the DATA macros even with SMFIP_NODATA),
	 * leaves the MTA's next small write waiting behind its Nagle for our
	 * delayed ACK: 40 ms per message (bench/milter measured it). A reply
	 * costs a loopback round trip and acknowledges at once. */
	if (!c->want_body)
		want |= SMFIP_NOBODY;     /* headers still: our A-R, forged ones removed */
	return want & offered;
}

static sfsistat x_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
			    unsigned long f3, unsigned long *pf0, unsigned long *pf1,
			    unsigned long *pf2, unsigned long *pf3)
{
	const unsigned long need = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
	struct px_mconn *c;
	size_t i;

	(void)f2;
	(void)f3;
	if ((f0 & need) != need) {
		px_log(PX_LOG_ERR, NULL, "milter negotiate error=mta-lacks-actions offered=0x%lx "
		       "needed=0x%lx", f0, need);
		return SMFIS_REJECT;          /* libmilter ends the connection */
	}
	if ((c = conn_new()) == NULL)
		return SMFIS_TEMPFAIL;
	c->want_body = c->cfg->chain != NULL &&
		       (c->cfg->chain->stage_mask & (1u << PX_STAGE_DATA_END)) != 0;
	c->actions = f0 & (need | SMFIF_QUARANTINE | SMFIF_SETSYMLIST);
	*pf0 = c->actions;
	*pf1 = wanted_steps(c, f1);
	*pf2 = *pf3 = 0;
	c->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
	for (i = 0; (c->actions & SMFIF_SETSYMLIST) && i < sizeof(symlists) / sizeof(symlists[0]);
	     i++)
		smfi_setsymlist(ctx, symlists[i].stage, (char *)symlists[i].list);
	smfi_setpriv(ctx, c);
	return SMFIS_CONTINUE;
}

/* client_from - the address (and port) from the MTA's sockaddr or macro */
static void client_from(struct px_mconn *c, SMFICTX *ctx, const struct sockaddr *sa)
{
	const char *m;

	c->f.client_addr[0] = '\0';
	if (sa != NULL && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)) {
		px_sockaddr_ntop(sa, c->f.client_addr, sizeof(c->f.client_addr));
		c->f.client_port = px_sockaddr_port(sa);
		c->f.trusted = px_config_is_trusted(c->cfg, sa);
		return;
	}
	if (*(m = macro(ctx, "{client_addr}")) != '\0') {
		struct sockaddr_storage ss;
		struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;

		snprintf(c->f.client_addr, sizeof(c->f.client_addr), "%s", m);
		c->f.client_port = (unsigned)strtoul(macro(ctx, "{client_port}"), NULL, 10);
		memset(&ss, 0, sizeof(ss));
		if (inet_pton(AF_INET, m, &v4->sin_addr) == 1)
			v4->sin_family = AF_INET;
		else if (inet_pton(AF_INET6, m, &v6->sin6_addr) == 1)
			v6->sin6_family = AF_INET6;
		c->f.trusted = ss.ss_family != 0 && px_config_is_trusted(c->cfg,
									 (struct sockaddr *)&ss);
	}
}

static sfsistat x_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	struct px_mconn *c = smfi_getpriv(ctx);

	if (c == NULL)
		return px_mreply_tempfail(ctx, "no-connection");
	client_from(c, ctx, (const struct sockaddr *)hostaddr);
	/* posternd says "unknown" for a client without a verified name, as Postfix
	 * does; Sendmail gives "[192.0.2.1]" */
	snprintf(c->f.client_name, sizeof(c->f.client_name), "%s",
		 hostname && *hostname && *hostname != '[' ? hostname : "unknown");
	px_log(PX_LOG_INFO, c->sid, "milter connect client=%s port=%u name=%s mta=%s daemon=%s "
	       "macro_client=\"%s\"", c->f.client_addr[0] ? c->f.client_addr : "-", c->f.client_port,
	       c->f.client_name, *macro(ctx, "j") ? macro(ctx, "j") : "-",
	       *macro(ctx, "{daemon_name}") ? macro(ctx, "{daemon_name}") : "-", macro(ctx, "_"));
	return run_stage(ctx, c, PX_STAGE_CONNECT, NULL);
}

static sfsistat x_helo(SMFICTX *ctx, char *helo)
{
	struct px_mconn *c = smfi_getpriv(ctx);

	if (c == NULL)
		return px_mreply_tempfail(ctx, "no-connection");
	snprintf(c->f.helo, sizeof(c->f.helo), "%s", helo ? helo : "");
	take_macros(ctx, c);
	return run_stage(ctx, c, PX_STAGE_HELO, NULL);
}

/* path_copy - "<a@b>" (or a@b) without the brackets */
static void path_copy(char *out, size_t outlen, const char *arg)
{
	size_t n;

	if (arg == NULL)
		arg = "";
	n = strlen(arg);
	if (n >= 2 && arg[0] == '<' && arg[n - 1] == '>') {
		arg++;
		n -= 2;
	}
	snprintf(out, outlen, "%.*s", (int)n, arg);
}

/* message_forget - the callbacks' side of a transaction */
static void message_forget(struct px_mconn *c)
{
	px_spool_free(c->spool);
	c->spool = NULL;
	c->in_body = c->prev_cr = c->spool_error = 0;
	c->nrcpts = 0;
}

static sfsistat x_envfrom(SMFICTX *ctx, char **argv)
{
	struct px_mconn *c = smfi_getpriv(ctx);

	if (c == NULL)
		return px_mreply_tempfail(ctx, "no-connection");
	message_forget(c);
	c->f.queue_id[0] = '\0';
	take_macros(ctx, c);
	path_copy(c->f.from, sizeof(c->f.from), argv ? argv[0] : NULL);
	c->f.have_from = 1;
	c->t_mail = now_ms();
	px_log(PX_LOG_INFO, c->sid, "milter mail from=<%s> queue_id=%s", c->f.from, qid(c));
	return run_stage(ctx, c, PX_STAGE_MAIL, NULL);
}

static sfsistat x_envrcpt(SMFICTX *ctx, char **argv)
{
	struct px_mconn *c = smfi_getpriv(ctx);
	sfsistat rc;

	if (c == NULL)
		return px_mreply_tempfail(ctx, "no-connection");
	take_macros(ctx, c);
	path_copy(c->f.rcpt, sizeof(c->f.rcpt), argv ? argv[0] : NULL);
	rc = run_stage(ctx, c, PX_STAGE_RCPT, NULL);
	if (rc == SMFIS_CONTINUE)
		c->nrcpts++;
	return rc;
}

/* spool_put - message bytes into the spool, bare LF made CRLF (Postfix
 * sends folded header values with LF only); bounded by message_size_max */
static void spool_put(struct px_mconn *c, const char *p, size_t n)
{
	char buf[8192], err[256];
	size_t i, o = 0;

	if (c->spool_error)
		return;
	if (c->spool == NULL &&
	    (c->spool = px_spool_new(c->cfg->spool_dir, c->cfg->limits.spool_memory_max)) == NULL) {
		c->spool_error = 1;
		return;
	}
	for (i = 0; i <= n; i++) {
		if (o + 2 > sizeof(buf) || (i == n && o > 0)) {
			if (px_spool_write(c->spool, buf, o, err, sizeof(err)) < 0) {
				px_log(PX_LOG_ERR, c->sid, "milter spool error=\"%s\" queue_id=%s", err,
				       qid(c));
				c->spool_error = 1;
				return;
			}
			o = 0;
		}
		if (i == n)
			break;
		if (p[i] == '\n' && !c->prev_cr)
			buf[o++] = '\r';
		buf[o++] = p[i];
		c->prev_cr = p[i] == '\r';
	}
	if (px_spool_size(c->spool) > c->cfg->limits.message_size_max)
		c->spool_error = 2;
}

static sfsistat x_header(SMFICTX *ctx, char *name, char *value)
{
	struct px_mconn *c = smfi_getpriv(ctx);

	if (c != NULL && name != NULL) {
		spool_put(c, name, strlen(name));
		spool_put(c, c->leadspc ? ":" : ": ", c->leadspc ? 1 : 2);
		spool_put(c, value ? value : "", value ? strlen(value) : 0);
		spool_put(c, "\r\n", 2);
	}
	return SMFIS_CONTINUE;
}

/* body_start - the blank line between header and body, once */
static void body_start(struct px_mconn *c)
{
	if (c->in_body)
		return;
	c->in_body = 1;
	c->prev_cr = 0;
	spool_put(c, "\r\n", 2);
}

/* x_data, x_eoh - nothing to do; answered so that the MTA never waits
 * for an ACK (wanted_steps) */
static sfsistat x_data(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static sfsistat x_eoh(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE;
}

static sfsistat x_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct px_mconn *c = smfi_getpriv(ctx);

	if (c != NULL) {
		body_start(c);
		spool_put(c, (const char *)buf, len);
	}
	return SMFIS_CONTINUE;
}

/* summary - the one line per message */
static void summary(const struct px_mconn *c, size_t size, const struct px_stage_outcome *o,
		    sfsistat rc)
{
	const char *action = rc == SMFIS_DISCARD ? "discard" : rc == SMFIS_REJECT ? "reject" :
			     rc == SMFIS_TEMPFAIL ? "tempfail" : c->quarantined ? "quarantine" :
			     "accept";
	int ok = rc == SMFIS_CONTINUE || rc == SMFIS_DISCARD;

	px_log(PX_LOG_INFO, c->sid, "milter message queue_id=%s client=%s from=<%s> nrcpt=%zu "
	       "size=%zu action=%s reply=\"%d %s %s\" ms=%llu", qid(c), c->f.client_addr,
	       c->f.from, c->nrcpts, size, action, ok ? 250 : o->code, ok ? "2.0.0" : o->esc,
	       ok ? (rc == SMFIS_DISCARD ? "Ok: discarded" : "Ok") : o->text,
	       now_ms() - c->t_mail);
}

static sfsistat x_eom(SMFICTX *ctx)
{
	struct px_mconn *c = smfi_getpriv(ctx);
	struct px_stage_outcome o;
	size_t size;
	sfsistat rc;

	if (c == NULL)
		return px_mreply_tempfail(ctx, "no-connection");
	take_macros(ctx, c);
	body_start(c);                    /* no body callback (SMFIP_NOBODY, empty body) */
	size = c->spool ? px_spool_size(c->spool) : 0;
	memset(&o, 0, sizeof(o));
	o.verdict = PX_TEMPFAIL;
	o.code = 451;
	rc = run_stage(ctx, c, PX_STAGE_DATA_END, &o);
	summary(c, size, &o, rc);
	message_forget(c);
	return rc;
}

static sfsistat x_abort(SMFICTX *ctx)
{
	struct px_mconn *c = smfi_getpriv(ctx);
	struct px_mjob *job;

	if (c == NULL)
		return SMFIS_CONTINUE;
	message_forget(c);
	if ((job = px_mjob_new(c, PX_MJ_RESET, PX_STAGE_MAIL)) != NULL)
		px_mloop_submit(px_milter.loop, job);
	return SMFIS_CONTINUE;
}

static sfsistat x_close(SMFICTX *ctx)
{
	struct px_mconn *c = smfi_getpriv(ctx);
	struct px_mjob *job;

	if (c == NULL)
		return SMFIS_CONTINUE;
	smfi_setpriv(ctx, NULL);
	message_forget(c);
	if ((job = px_mjob_new(c, PX_MJ_CLOSE, PX_STAGE_CONNECT)) != NULL)
		px_mloop_submit(px_milter.loop, job);
	/* else (out of memory) the connection is leaked, never touched again */
	return SMFIS_CONTINUE;
}

struct smfiDesc px_milter_desc = {
	.xxfi_name = "postern",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_SETSYMLIST,
	.xxfi_connect = x_connect,
	.xxfi_helo = x_helo,
	.xxfi_envfrom = x_envfrom,
	.xxfi_envrcpt = x_envrcpt,
	.xxfi_header = x_header,
	.xxfi_eoh = x_eoh,
	.xxfi_body = x_body,
	.xxfi_eom = x_eom,
	.xxfi_abort = x_abort,
	.xxfi_close = x_close,
	.xxfi_unknown = NULL,
	.xxfi_data = x_data,
	.xxfi_negotiate = x_negotiate,
};
