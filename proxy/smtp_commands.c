/*
 * NAME
 *	smtp_commands - the command table and the envelope commands
 * DESCRIPTION
 *	One table row per verb: the envelope positions it is allowed in
 *	(CONNECTED, READY, MAIL, RCPT, BDAT; smtp_session_int.h), a check (syntax;
 *	replies and returns -1 on error) and a proceed (the work). A verb that
 *	fails its check never reaches the relay (or, later, a plugin). Every
 *	command line comes through here, AUTH included; a row with mask_args
 *	(AUTH) shows only its first argument in the debug log (the mechanism,
 *	never an initial response that holds a password). Lines reach the
 *	table only in the session state COMMAND (smtp_states.c); a command
 *	that waits (a chain stage, the relay) puts the session in WAIT.
 *
 *	Recipients: a recipient passes the local checks (syntax, parameters,
 *	count, relay permission) and is then relayed live: the first one opens
 *	the backend transaction (MAIL and RCPT together, pipelined), and the
 *	client gets the backend's own reply, code and text. When the backend
 *	refuses our MAIL, that refusal is the answer to the RCPT.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "policy/config.h"
#include "smtp_chain.h"
#include "smtp_session_int.h"

#define B(env) (1u << (env))
#define IN_TXN (B(PX_ENV_MAIL) | B(PX_ENV_RCPT))
#define ANY (B(PX_ENV_CONNECTED) | B(PX_ENV_READY) | IN_TXN | B(PX_ENV_BDAT))
#define OUTSIDE_TXN (B(PX_ENV_CONNECTED) | B(PX_ENV_READY))

struct px_command {
	const char *verb;
	unsigned envelopes;             /* where it is allowed: B(PX_ENV_...) */
	const char *out_of_sequence;    /* 503 text elsewhere */
	int (*check)(struct px_session *s, char *args);
	void (*proceed)(struct px_session *s, char *args);
	enum px_stage stage;            /* the chain stage between check and proceed */
	int mask_args;                  /* debug log: first argument word only */
};

#define NO_STAGE PX_STAGE_COUNT

/* no_args - a verb that takes no argument */
static int no_args(struct px_session *s, char *args)
{
	if (*args == '\0')
		return 0;
	px_session_error(s, 501, "5.5.4", "Syntax error: no arguments allowed");
	return -1;
}

static int any_args(struct px_session *s, char *args)
{
	return 0;
}

/* check_helo - one printable token */
static int check_helo(struct px_session *s, char *args)
{
	size_t i, n = strlen(args);

	while (n > 0 && args[n - 1] == ' ')
		args[--n] = '\0';
	for (i = 0; i < n; i++)
		if ((unsigned char)args[i] <= 0x20 || (unsigned char)args[i] >= 0x7f)
			break;
	if (n == 0 || i < n || n > 255) {
		px_session_error(s, 501, "5.5.4", "Syntax: EHLO hostname");
		return -1;
	}
	/* kept for the stage: the line is gone if the chain parks us */
	snprintf(s->pending_helo, sizeof(s->pending_helo), "%s",
		 s->xclient_helo[0] ? s->xclient_helo : args);
	return 0;
}

/* session_rset - end the transaction here and at the backend */
static void session_rset(struct px_session *s)
{
	if (s->relay != NULL && s->relay_mail_open)
		px_relay_rset(s->relay);
	s->relay_mail_open = 0;
	px_session_txn_reset(s);
	if (s->env != PX_ENV_CONNECTED)
		px_envelope_enter(s, PX_ENV_READY);
}

/* ehlo_reply - the capability list */
static void ehlo_reply(struct px_session *s)
{
	char buf[1024], transport[512];
	int n;

	s->dsn = (px_backend_caps() & PX_CAP_DSN) != 0;
	px_ehlo_transport(s, transport, sizeof(transport));
	n = snprintf(buf, sizeof(buf),
		     "250-%s\r\n250-PIPELINING\r\n250-SIZE %zu\r\n%s%s250-ENHANCEDSTATUSCODES\r\n"
		     "250-8BITMIME\r\n250 SMTPUTF8\r\n",
		     s->cfg->hostname, px_backend_size_min(s->cfg->limits.message_size_max),
		     s->dsn ? "250-DSN\r\n" : "",
		     transport);
	if (n > 0)
		px_session_write(s, buf, (size_t)n);
}

/* do_helo, do_ehlo - greet; both end any transaction */
static void do_hello(struct px_session *s, char *args, int esmtp)
{
	session_rset(s);
	snprintf(s->helo, sizeof(s->helo), "%s", s->pending_helo);
	s->esmtp = esmtp;
	px_log(PX_LOG_INFO, s->sid, "helo=%s esmtp=%s", s->helo, esmtp ? "yes" : "no");
	if (s->env == PX_ENV_CONNECTED)
		px_envelope_enter(s, PX_ENV_READY);
	if (esmtp)
		ehlo_reply(s);
	else
		px_session_reply(s, 250, "", "%s", s->cfg->hostname);
}

static void do_helo(struct px_session *s, char *args)
{
	do_hello(s, args, 0);
}

static void do_ehlo(struct px_session *s, char *args)
{
	do_hello(s, args, 1);
}

/* param_append - add "KEY=value" to a parameter string */
static void param_append(char *buf, size_t size, const char *key, const char *value)
{
	size_t len = strlen(buf);

	snprintf(buf + len, size - len, "%s%s%s%s", len ? " " : "", key, value ? "=" : "",
		 value ? value : "");
}

/* mail_param - validate one MAIL parameter; 0, or -1 after replying */
static int mail_param(struct px_session *s, const struct px_smtp_param *p, char *out, size_t outlen)
{
	const char *k = p->key, *v = p->value;
	char *end;
	unsigned long long size;

	if (strcasecmp(k, "SIZE") == 0 && v != NULL && *v != '\0' && strlen(v) <= 20) {
		size = strtoull(v, &end, 10);
		if (*end != '\0')
			goto bad;
		if (size > px_backend_size_min(s->cfg->limits.message_size_max)) {
			px_session_error(s, 552, "5.3.4", "Message size exceeds fixed limit");
			return -1;
		}
	} else if (strcasecmp(k, "BODY") == 0 && v != NULL) {
		if (strcasecmp(v, "7BIT") != 0 && strcasecmp(v, "8BITMIME") != 0)
			goto bad;
	} else if (strcasecmp(k, "SMTPUTF8") == 0 && v == NULL) {
		s->txn.smtputf8 = 1;
	} else if (strcasecmp(k, "RET") == 0 && s->dsn && v != NULL) {
		if (strcasecmp(v, "FULL") != 0 && strcasecmp(v, "HDRS") != 0)
			goto bad;
	} else if (strcasecmp(k, "ENVID") == 0 && s->dsn && v != NULL) {
		if (strlen(v) > 100 || !px_smtp_valid_xtext(v))
			goto bad;
	} else {
		px_session_error(s, 555, "5.5.4", "Unsupported option: %.64s", k);
		return -1;
	}
	param_append(out, outlen, k, v);
	return 0;
bad:
	px_session_error(s, 501, "5.5.4", "Bad parameter value: %.64s", k);
	return -1;
}

/* check_mail - syntax, parameters, size */
static int check_mail(struct px_session *s, char *args)
{
	const char *why = "bad address syntax";
	size_t i;

	if (px_session_require_tls(s) < 0)
		return -1;
	s->txn.mail_params[0] = '\0';
	if (px_smtp_parse_path(args, "FROM:", 1, 0, &s->path, &why) != PX_PARSE_OK) {
		px_session_error(s, 501, "5.1.7", "Bad sender address syntax: %s", why);
		return -1;
	}
	if (!s->esmtp && s->path.nparams > 0) {
		px_session_error(s, 555, "5.5.4", "Parameters need EHLO");
		return -1;
	}
	for (i = 0; i < s->path.nparams; i++)
		if (mail_param(s, &s->path.params[i], s->txn.mail_params,
			       sizeof(s->txn.mail_params)) < 0)
			return -1;
	if (s->path.utf8 && !s->txn.smtputf8) {
		px_session_error(s, 553, "5.6.7", "Non-ASCII address needs the SMTPUTF8 parameter");
		return -1;
	}
	snprintf(s->pending_from, sizeof(s->pending_from), "%s", s->path.addr);
	return 0;
}

/* do_mail - the transaction opens here; the backend hears of it at RCPT */
static void do_mail(struct px_session *s, char *args)
{
	struct px_smtp_txn *t = &s->txn;

	snprintf(t->from, sizeof(t->from), "%s", s->pending_from);
	px_txn_set_mail(s->ptx, t->from);
	snprintf(t->mail_cmd, sizeof(t->mail_cmd), "MAIL FROM:<%s>", t->from);
	px_log(PX_LOG_INFO, s->sid, "mail from=<%s> params=\"%s\"", t->from, t->mail_params);
	px_envelope_enter(s, PX_ENV_MAIL);
	px_session_reply(s, 250, "2.1.0", "Ok");
}

/* rcpt_param - validate NOTIFY and ORCPT (DSN) */
static int rcpt_param(struct px_session *s, const struct px_smtp_param *p, char *out, size_t outlen)
{
	const char *v = p->value;

	if (s->dsn && v != NULL && strcasecmp(p->key, "NOTIFY") == 0) {
		if (strspn(v, "NEVERSUCCESFAILURDLYnevrsucfailurdly,") != strlen(v) || *v == '\0')
			goto bad;
	} else if (s->dsn && v != NULL && strcasecmp(p->key, "ORCPT") == 0) {
		if (strchr(v, ';') == NULL || strlen(v) > 500 || !px_smtp_valid_xtext(strchr(v, ';') + 1))
			goto bad;
	} else {
		px_session_error(s, 555, "5.5.4", "Unsupported option: %.64s", p->key);
		return -1;
	}
	param_append(out, outlen, p->key, v);
	return 0;
bad:
	px_session_error(s, 501, "5.5.4", "Bad parameter value: %.64s", p->key);
	return -1;
}

/* relay_allowed - no open relay: trusted clients, or our own domains */
static int relay_allowed(struct px_session *s, const struct px_smtp_path *p)
{
	if (s->trusted || s->login[0] || p->domain == NULL)  /* <postmaster> is always ours */
		return 1;
	return px_config_is_relay_domain(s->cfg, p->domain);
}

/* check_rcpt - syntax, parameters, count, relay permission */
static int check_rcpt(struct px_session *s, char *args)
{
	const char *why = "bad address syntax";
	size_t i;

	s->txn.rcpt_attempts++;
	s->rcpt_params[0] = '\0';
	if (s->relay_lost) {
		px_session_reply(s, 451, "4.4.2", "Backend transaction lost; send RSET and start "
				 "over");
		return -1;
	}
	if (px_smtp_parse_path(args, "TO:", 0, 1, &s->path, &why) != PX_PARSE_OK) {
		px_session_error(s, 501, "5.1.3", "Bad recipient address syntax: %s", why);
		return -1;
	}
	for (i = 0; i < s->path.nparams; i++)
		if (rcpt_param(s, &s->path.params[i], s->rcpt_params, sizeof(s->rcpt_params)) < 0)
			return -1;
	if (s->txn.nrcpts >= s->cfg->limits.recipients_max) {
		px_session_reply(s, 452, "4.5.3", "Error: too many recipients");
		return -1;
	}
	if (!relay_allowed(s, &s->path)) {
		px_log(PX_LOG_INFO, s->sid, "reject rcpt=<%s> reason=relay-denied client=%s",
		       s->path.addr, s->client_addr);
		px_session_error(s, 554, "5.7.1", "<%s>: Relay access denied", s->path.addr);
		return -1;
	}
	snprintf(s->pending_rcpt, sizeof(s->pending_rcpt), "%s", s->path.addr);
	px_txn_set_rcpt(s->ptx, s->pending_rcpt);
	return 0;
}

/* rcpt_mail_done - the backend's answer to our MAIL */
static void rcpt_mail_done(void *arg, const struct px_reply *r)
{
	struct px_session *s = arg;

	s->relay_mail_reply = *r;
}

/* rcpt_add - remember an accepted recipient */
static void rcpt_add(struct px_session *s, const char *addr)
{
	struct px_smtp_txn *t = &s->txn;
	char **v = realloc(t->rcpts, (t->nrcpts + 1) * sizeof(*v));

	if (v == NULL || (v[t->nrcpts] = strdup(addr)) == NULL)
		abort();
	t->rcpts = v;
	t->nrcpts++;
}

/* rcpt_policy_fix - the first accepted recipient fixes the transaction's view */
static void rcpt_policy_fix(struct px_session *s)
{
	px_txn_add_rcpt(s->ptx, s->pending_rcpt);
	if (!s->ptx->have_view) {
		s->ptx->view = s->stage_view;
		s->ptx->have_view = 1;
	}
}

/* rcpt_done - the backend's answer to the RCPT */
static void rcpt_done(void *arg, const struct px_reply *r)
{
	struct px_session *s = arg;
	const struct px_reply *answer = r;
	struct px_reply lost;
	char line[256];

	if (s->relay_mail_reply.code / 100 != 2)
		answer = &s->relay_mail_reply;
	if (!px_relay_in_transaction(s->relay)) {
		/* the backend's transaction is gone: with recipients accepted on
		 * it (or this one), they are void, so the rest of this
		 * transaction gets 4xx until the client starts over (invariant 1, doc/layering.md);
		 * with none, the next RCPT opens a new one */
		s->relay_mail_open = 0;
		if (s->txn.nrcpts > 0 || answer->code / 100 == 2) {
			if (!s->relay_lost)
				px_log(PX_LOG_WARN, s->sid, "relay transaction-lost rcpts=%zu",
				       s->txn.nrcpts + (answer->code / 100 == 2));
			s->relay_lost = 1;
		}
	}
	if (s->relay_lost && answer->code / 100 == 2) {
		px_reply_set(&lost, 451, "4.4.2", "Backend transaction lost; send RSET and "
			     "start over");
		answer = &lost;
	}
	px_log(PX_LOG_INFO, s->sid, "rcpt to=<%s> reply=\"%s\"", s->pending_rcpt,
	       px_reply_summary(answer, line, sizeof(line)));
	if (!px_session_gone(s)) {
		if (answer->code / 100 == 2) {
			rcpt_add(s, s->pending_rcpt);
			rcpt_policy_fix(s);
			px_envelope_enter(s, PX_ENV_RCPT);
		}
		px_session_send(s, answer);
	}
	px_session_unpark(s);
}

/* do_rcpt - relay it live */
static void do_rcpt(struct px_session *s, char *args)
{
	struct px_relay *rl = px_session_relay(s);
	char cmd[PX_SMTP_PATH_MAX + 16];

	if (rl == NULL) {
		px_session_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	if (!s->relay_mail_open) {
		s->relay_mail_reply.code = 0;
		px_relay_mail(rl, s->txn.mail_cmd, s->txn.mail_params, rcpt_mail_done, s);
		s->relay_mail_open = 1;
	}
	snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>", s->pending_rcpt);
	px_session_park(s);
	px_relay_rcpt(rl, cmd, s->rcpt_params, rcpt_done, s);
}

/* do_data - 354, then smtp_data.c reads the message */
static void do_data(struct px_session *s, char *args)
{
	if (s->env == PX_ENV_RCPT && (s->relay_lost || (s->relay != NULL &&
					!px_relay_in_transaction(s->relay)))) {
		s->relay_lost = 1;
		px_session_reply(s, 451, "4.4.2", "Backend transaction lost; send RSET and start "
				 "over");
		return;
	}
	if (s->env != PX_ENV_RCPT) {
		if (s->txn.rcpt_attempts > 0)
			px_session_error(s, 554, "5.5.1", "Error: no valid recipients");
		else
			px_session_error(s, 503, "5.5.1", "Error: need RCPT command");
		return;
	}
	px_data_begin(s);
}

static void do_rset(struct px_session *s, char *args)
{
	session_rset(s);
	px_session_reply(s, 250, "2.0.0", "Ok");
}

static void do_noop(struct px_session *s, char *args)
{
	px_session_reply(s, 250, "2.0.0", "Ok");
}

static void do_quit(struct px_session *s, char *args)
{
	px_session_reply(s, 221, "2.0.0", "Bye");
	px_session_close(s, "quit");
}

static void do_vrfy(struct px_session *s, char *args)
{
	px_session_reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt "
			 "delivery");
}

static void do_help(struct px_session *s, char *args)
{
	px_session_reply(s, 214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT "
			 "VRFY HELP");
}

static void do_not_implemented(struct px_session *s, char *args)
{
	px_session_error(s, 502, "5.5.1", "Error: command not implemented");
}

/* do_forbidden - an HTTP client or proxy probe: not a mail client */
static void do_forbidden(struct px_session *s, char *args)
{
	px_session_reply(s, 221, "2.7.0", "Error: this is an SMTP server; goodbye");
	px_session_close(s, "forbidden-command");
}

static const struct px_command commands[] = {
	{ "HELO", ANY, NULL, check_helo, do_helo, PX_STAGE_HELO, 0 },
	{ "EHLO", ANY, NULL, check_helo, do_ehlo, PX_STAGE_HELO, 0 },
	{ "MAIL", B(PX_ENV_READY), NULL, check_mail, do_mail, PX_STAGE_MAIL, 0 },
	{ "RCPT", IN_TXN, "Error: need MAIL command", check_rcpt, do_rcpt, PX_STAGE_RCPT, 0 },
	{ "DATA", IN_TXN, "Error: need RCPT command", no_args, do_data, NO_STAGE, 0 },
	{ "RSET", ANY, NULL, no_args, do_rset, NO_STAGE, 0 },
	{ "NOOP", ANY, NULL, any_args, do_noop, NO_STAGE, 0 },
	{ "QUIT", ANY, NULL, any_args, do_quit, NO_STAGE, 0 },
	{ "VRFY", ANY, NULL, any_args, do_vrfy, NO_STAGE, 0 },
	{ "HELP", ANY, NULL, any_args, do_help, NO_STAGE, 0 },
	{ "EXPN", ANY, NULL, any_args, do_not_implemented, NO_STAGE, 0 },
	{ "STARTTLS", OUTSIDE_TXN, NULL, any_args, px_session_starttls, NO_STAGE, 0 },
	{ "AUTH", OUTSIDE_TXN | IN_TXN, NULL, px_session_auth_check, px_session_auth, NO_STAGE, 1 },
	{ "BDAT", ANY, NULL, any_args, px_session_bdat, NO_STAGE, 0 },
	{ "ETRN", ANY, NULL, any_args, do_not_implemented, NO_STAGE, 0 },
	{ "TURN", ANY, NULL, any_args, do_not_implemented, NO_STAGE, 0 },
	{ "XCLIENT", OUTSIDE_TXN, NULL, any_args, px_session_xclient, NO_STAGE, 0 },
	{ "XFORWARD", ANY, NULL, any_args, do_not_implemented, NO_STAGE, 0 },
	{ "GET", ANY, NULL, any_args, do_forbidden, NO_STAGE, 0 },
	{ "POST", ANY, NULL, any_args, do_forbidden, NO_STAGE, 0 },
	{ "HEAD", ANY, NULL, any_args, do_forbidden, NO_STAGE, 0 },
	{ "PUT", ANY, NULL, any_args, do_forbidden, NO_STAGE, 0 },
	{ "CONNECT", ANY, NULL, any_args, do_forbidden, NO_STAGE, 0 },
};

/* command_find - the table row for a verb */
static const struct px_command *command_find(const char *verb)
{
	size_t i;

	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcasecmp(commands[i].verb, verb) == 0)
			return &commands[i];
	return NULL;
}

/* sequence_error - the 503 a verb gets in the wrong envelope position */
static void sequence_error(struct px_session *s, const struct px_command *c)
{
	if (s->env == PX_ENV_BDAT)
		px_session_error(s, 503, "5.5.1", "Error: BDAT transaction in progress; only BDAT, "
				 "RSET, NOOP or QUIT now");
	else if (s->env == PX_ENV_CONNECTED && strcasecmp(c->verb, "MAIL") == 0)
		px_session_error(s, 503, "5.5.1", "Error: send HELO/EHLO first");
	else if (strcasecmp(c->verb, "MAIL") == 0)
		px_session_error(s, 503, "5.5.1", "Error: nested MAIL command");
	else
		px_session_error(s, 503, "5.5.1", "%s", c->out_of_sequence ? c->out_of_sequence :
				 "Error: bad sequence of commands");
}

/* staged_cont - after the command's stage: refuse, or do the work. The
 * command's line is gone by now; its check kept what the work needs. */
static void staged_cont(struct px_session *s, const struct px_stage_outcome *o)
{
	void (*proceed)(struct px_session *, char *) = s->staged;

	s->staged = NULL;
	if (px_outcome_refuses(o)) {
		px_session_refuse(s, o);
		return;
	}
	proceed(s, NULL);
}

/* command_log - the debug line of a command, before any parsing; a row
 * with mask_args shows its first argument word, then "***" for the rest */
static void command_log(struct px_session *s, const char *line)
{
	const struct px_command *c;
	char verb[16], shown[600], q[600];
	size_t vlen = strcspn(line, " "), n = strlen(line);
	const char *a, *rest = "";

	if (!px_log_enabled(PX_LOG_DEBUG))
		return;
	snprintf(verb, sizeof(verb), "%.*s", vlen < sizeof(verb) ? (int)vlen : 0, line);
	if ((c = command_find(verb)) != NULL && c->mask_args) {
		a = line + vlen + strspn(line + vlen, " ");
		n = (size_t)(a + strcspn(a, " ") - line);
		if (line[n + strspn(line + n, " ")] != 0)
			rest = " ***";
	}
	snprintf(shown, sizeof(shown), "%.*s%s", (int)(n < sizeof(shown) ? n : sizeof(shown)),
		 line, rest);
	px_log(PX_LOG_DEBUG, s->sid, "command=%s", px_log_quote(q, sizeof(q), shown,
								 strlen(shown)));
}

/* px_session_command - one command line, dispatched through the table */
void px_session_command(struct px_session *s, char *line)
{
	const struct px_command *c;
	const char *why;
	char *verb, *args;

	command_log(s, line);
	if (px_smtp_split_command(line, &verb, &args, &why) != PX_PARSE_OK) {
		px_session_error(s, 500, "5.5.2", "Error: bad syntax");
		return;
	}
	if ((c = command_find(verb)) == NULL) {
		px_session_error(s, 500, "5.5.2", "Error: command not recognized");
		return;
	}
	if (!(c->envelopes & B(s->env))) {
		sequence_error(s, c);
		return;
	}
	if (c->check(s, args) != 0)
		return;
	if (c->stage == NO_STAGE) {
		c->proceed(s, args);
		return;
	}
	s->staged = c->proceed;
	px_session_stage(s, c->stage, staged_cont);
}
