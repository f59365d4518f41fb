/*
 * NAME
 *	smtp_data - DATA: read, spool, prepend Received, relay, summarise
 * DESCRIPTION
 *	After 354 the client's bytes go through the data reader (end only at
 *	CRLF.CRLF; unstuffing; smuggling flags) into the spool. At the end the
 *	message is refused if the reader saw bare CR/LF, NUL, an over-long line
 *	or too many bytes, or the spool failed; otherwise it is relayed and the
 *	client gets the backend's final reply: 250 only after the backend's 250
 *	(invariant 1, doc/layering.md). Either way one summary line is logged per message; its
 *	reply= is the whole reply, lines joined with " / " (px_reply_summary).
 *
 *	States: the text is read in DATA (px_data_input); the data-end stage
 *	and the relay are waited for in WAIT; the final reply puts the session
 *	back in COMMAND (data_finish). The envelope stays RCPT until then.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/log.h"
#include "filters/spool.h"
#include "policy/config.h"
#include "smtp_chain.h"
#include "smtp_session_int.h"

/* received_date - RFC 5322 date-time, local time with its offset */
static void received_date(char *out, size_t outlen)
{
	time_t now = time(NULL);
	struct tm tm;
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mo[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
					  "Aug", "Sep", "Oct", "Nov", "Dec" };
	long off;

	localtime_r(&now, &tm);
	off = tm.tm_gmtoff / 60;
	snprintf(out, outlen, "%s, %d %s %d %02d:%02d:%02d %c%02ld%02ld", wd[tm.tm_wday], tm.tm_mday,
		 mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 off < 0 ? '-' : '+', labs(off) / 60, labs(off) % 60);
}

/* received_proto - RFC 3848 / RFC 6531 "with" keyword: S for TLS, A for AUTH */
static const char *received_proto(const struct px_session *s, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s", s->txn.smtputf8 ? "UTF8SMTP" : s->esmtp ? "ESMTP" : "SMTP",
		 s->tls ? "S" : "", s->login[0] && s->esmtp ? "A" : "");
	return buf;
}

/* received_tls - Postfix-style "(using TLSv1.3 with cipher ...)" comment, or "" */
static void received_tls(const struct px_session *s, char *buf, size_t len)
{
	buf[0] = 0;
	if (s->tls)
		snprintf(buf, len, "\r\n\t(using %s with cipher %s (%d/%d bits))", s->tls_version,
			 s->tls_cipher, s->tls_bits, s->tls_bits);
}

/* received_build - our trace header (RFC 5321 4.4) */
static char *received_build(const struct px_session *s)
{
	char date[64], addr[80], forpart[PX_SMTP_PATH_MAX + 16] = "", proto[16], tls[160];
	char *out = NULL;

	received_date(date, sizeof(date));
	received_tls(s, tls, sizeof(tls));
	snprintf(addr, sizeof(addr), "%s%s", strchr(s->client_addr, ':') ? "IPv6:" : "",
		 s->client_addr);
	if (s->txn.nrcpts == 1)
		snprintf(forpart, sizeof(forpart), "\r\n\tfor <%s>", s->txn.rcpts[0]);
	if (asprintf(&out, "Received: from %s (%s [%s])%s\r\n\tby %s (Postern) with %s id %s%s;"
		     " %s\r\n", s->helo, s->client_name, addr, tls, s->cfg->hostname,
		     received_proto(s, proto, sizeof(proto)), s->sid, forpart, date) < 0)
		return NULL;
	return out;
}

/* px_data_prepare - the spool and the Received header (DATA and BDAT); 0 or -1 */
int px_data_prepare(struct px_session *s)
{
	struct px_smtp_txn *t = &s->txn;

	t->spool = px_spool_new(s->cfg->spool_dir, s->cfg->limits.spool_memory_max);
	t->received = received_build(s);
	t->spool_err[0] = '\0';
	t->t_data = px_now_ms();
	return t->spool == NULL || t->received == NULL ? -1 : 0;
}

/* px_data_begin - 354, and get ready to read */
void px_data_begin(struct px_session *s)
{
	struct px_smtp_txn *t = &s->txn;
	const struct px_limits *l = &s->cfg->limits;

	if (px_data_prepare(s) < 0) {
		px_session_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	px_data_reader_init(&t->reader, l->text_line_max, l->message_size_max, s->normalize_bare);
	if (s->relay != NULL)
		px_relay_set_bdat(s->relay, 0);
	px_session_set_timeout(s, s->cfg->timeouts.data);
	px_enter_state(s, PX_ST_DATA);
	px_session_reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
}

/* spool_sink - the reader's output goes to the spool, until the spool fails */
static int spool_sink(void *arg, const char *p, size_t n)
{
	struct px_smtp_txn *t = arg;

	if (t->spool_err[0] == '\0')
		px_spool_write(t->spool, p, n, t->spool_err, sizeof(t->spool_err));
	return 0;
}

/* rcpt_list - "<a>,<b>" for the summary */
static void rcpt_list(const struct px_smtp_txn *t, char *out, size_t outlen)
{
	size_t i, len = 0;

	out[0] = '\0';
	for (i = 0; i < t->nrcpts && len < outlen; i++)
		len += (size_t)snprintf(out + len, outlen - len, "%s<%s>", i ? "," : "", t->rcpts[i]);
}

/* data_summary - the one line per message, with the whole final reply
 * (every line: Exim's queue id may be on a later one), quoted */
static void data_summary(struct px_session *s, const struct px_reply *r)
{
	const struct px_smtp_txn *t = &s->txn;
	char rcpts[2048], line[PX_REPLY_MAX], q[PX_REPLY_MAX + 256];
	const char *status = r->code / 100 == 2 ? "delivered" :
			     r->code / 100 == 4 ? "deferred" : "rejected";

	rcpt_list(t, rcpts, sizeof(rcpts));
	px_reply_summary(r, line, sizeof(line));
	px_log(PX_LOG_INFO, s->sid, "message client=%s helo=%s from=<%s> nrcpt=%zu rcpt=%s size=%zu "
	       "status=%s reply=%s ms=%llu", s->client_addr, s->helo, t->from, t->nrcpts, rcpts,
	       t->reader.size, status, px_log_quote(q, sizeof(q), line, strlen(line)),
	       (unsigned long long)(px_now_ms() - t->t_data));
}

/* data_finish - reply, summarise, end the transaction: commands again */
static void data_finish(struct px_session *s, const struct px_reply *r)
{
	data_summary(s, r);
	if (r->code / 100 == 2)
		s->messages++;
	px_session_txn_reset(s);
	px_envelope_enter(s, PX_ENV_READY);
	px_session_set_timeout(s, s->cfg->timeouts.command);
	px_enter_state(s, PX_ST_COMMAND);
	px_session_send(s, r);
}

/* data_relayed - the backend's final reply */
static void data_relayed(void *arg, const struct px_reply *r)
{
	struct px_session *s = arg;

	s->relay_mail_open = 0;      /* the backend's transaction ended with "." */
	data_finish(s, r);
	px_session_unpark(s);
}

/* data_refusal - the reply for a message we will not relay, or 0 */
static int data_refusal(struct px_session *s, struct px_reply *r)
{
	const struct px_smtp_txn *t = &s->txn;
	unsigned f = t->reader.flags;

	if (f & PX_DATA_TOO_BIG)
		px_reply_set(r, 552, "5.3.4", "Error: message too big (limit %zu bytes)",
			     s->cfg->limits.message_size_max);
	else if ((f & (PX_DATA_BARE_LF | PX_DATA_BARE_CR)) && !s->normalize_bare)
		px_reply_set(r, 554, "5.5.2", "Error: bare %s received; lines must end with CRLF "
			     "(RFC 5321 2.3.8)", (f & PX_DATA_BARE_LF) ? "LF" : "CR");
	else if (f & PX_DATA_NUL)
		px_reply_set(r, 554, "5.6.0", "Error: NUL byte in message");
	else if (f & PX_DATA_LONG_LINE)
		px_reply_set(r, 554, "5.6.0", "Error: line longer than %zu bytes (RFC 5321 4.5.3.1.6)",
			     s->cfg->limits.text_line_max);
	else if (t->spool_err[0] != '\0')
		px_reply_set(r, 451, "4.3.0", "Error: cannot store the message; try again later");
	else
		return 0;
	return 1;
}

/* data_drop - the message will not be relayed: end the backend's transaction */
static void data_drop(struct px_session *s, const struct px_reply *r)
{
	if (s->relay_mail_open)
		px_relay_rset(s->relay);
	s->relay_mail_open = 0;
	data_finish(s, r);
}

/* data_relay - the header edits, then the message to the backend */
static void data_relay(struct px_session *s)
{
	struct px_smtp_txn *t = &s->txn;
	struct px_reply r;

	if (px_outgoing_build(s->ptx, s->cfg->policy, t->received, &s->outgoing) < 0) {
		px_reply_set(&r, 451, "4.3.0", "Error: out of memory; try again later");
		data_drop(s, &r);
		return;
	}
	t->msg.prepend = s->outgoing.prepend;
	t->msg.prepend_len = s->outgoing.prepend_len;
	t->msg.skips = s->outgoing.skips;
	t->msg.nskips = s->outgoing.nskips;
	t->msg.spool = t->spool;
	t->msg.mail_from = t->from;
	t->msg.rcpts = (const char *const *)t->rcpts;
	t->msg.nrcpts = t->nrcpts;
	px_session_park(s);
	px_relay_data(s->relay, &t->msg, data_relayed, s);
}

/* data_chain_done - the data-end stage decided */
static void data_chain_done(struct px_session *s, const struct px_stage_outcome *o)
{
	struct px_reply r;

	if (o->verdict == PX_DISCARD) {
		px_log(PX_LOG_INFO, s->sid, "discard by=%s", o->plugin);
		px_reply_set(&r, 250, "2.0.0", "Ok: discarded");
		data_drop(s, &r);
		return;
	}
	if (!px_outcome_refuses(o)) {
		data_relay(s);
		return;
	}
	if (o->verdict == PX_DISCONNECT) {
		px_reply_set(&r, 421, "4.7.0", "%s %s", s->cfg->hostname, o->text);
		data_drop(s, &r);
		px_session_close(s, "plugin-disconnect");
		return;
	}
	px_reply_set(&r, o->code ? o->code : 550, o->esc[0] ? o->esc : "5.7.1", "%s", o->text);
	px_log(PX_LOG_INFO, s->sid, "refuse stage=data-end by=%s verdict=%s", o->plugin,
	       px_verdict_name(o->verdict));
	data_drop(s, &r);
}

/* data_end - the message is read: refuse it, or relay it */
static void data_end(struct px_session *s)
{
	struct px_smtp_txn *t = &s->txn;
	struct px_reply r;

	if (data_refusal(s, &r)) {
		if (t->spool_err[0])
			px_log(PX_LOG_ERR, s->sid, "spool error=\"%s\"", t->spool_err);
		data_drop(s, &r);
		return;
	}
	if (px_txn_set_message(s->ptx, t->spool) < 0) {
		px_reply_set(&r, 451, "4.3.0", "Error: out of memory; try again later");
		data_drop(s, &r);
		return;
	}
	px_session_stage(s, PX_STAGE_DATA_END, data_chain_done);
}

/* px_data_input - DATA's handler: feed buffered input; 1 to go on, 0
 * when more must arrive */
int px_data_input(struct px_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[8];
	int i, n, done = 0;
	size_t total = 0;
	long used;

	n = evbuffer_peek(in, -1, NULL, v, 8);
	if (n <= 0)
		return 0;
	for (i = 0; i < n && i < 8 && !done; i++) {
		/* spool_sink never stops the reader (a spool error is remembered and
		 * answered at the end), so the reader consumes or ends; never -1 */
		used = px_data_reader_feed(&s->txn.reader, v[i].iov_base, v[i].iov_len, spool_sink,
					   &s->txn, &done);
		if (used < 0)
			break;
		total += (size_t)used;
	}
	evbuffer_drain(in, total);
	if (done)
		data_end(s);
	return done || evbuffer_get_length(in) > 0;
}

/* px_data_complete - a BDAT LAST message is in: the same end as DATA's */
void px_data_complete(struct px_session *s)
{
	if (s->relay != NULL)
		px_relay_set_bdat(s->relay, 1);
	data_end(s);
}
