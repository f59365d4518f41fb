/*
 * NAME
 *	smtp_data - DATA: read, spool, prepend Received, relay, summarise
 * DESCRIPTION
 *	After 354 the client's bytes go through the data reader (end only at
 *	CRLF.CRLF; unstuffing; smuggling flags) into the spool. At the end the
 *	message is refused if the reader saw bare CR/LF, NUL, an over-long line
 *	or too many bytes, or the spool failed; otherwise it is relayed and the
 *	client gets the backend's final reply: 250 only after the backend's 250
 *	(invariant 1). Either way one summary line is logged per message.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/log.h"
#include "filters/spool.h"
#include "policy/config.h"
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

/* received_proto - RFC 3848 / RFC 6531 "with" keyword */
static const char *received_proto(const struct px_session *s)
{
	if (s->txn.smtputf8)
		return "UTF8SMTP";
	return s->esmtp ? "ESMTP" : "SMTP";
}

/* received_build - our trace header (RFC 5321 4.4) */
static char *received_build(const struct px_session *s)
{
	char date[64], addr[80], forpart[PX_SMTP_PATH_MAX + 16] = "";
	char *out = NULL;

	received_date(date, sizeof(date));
	snprintf(addr, sizeof(addr), "%s%s", strchr(s->client_addr, ':') ? "IPv6:" : "",
		 s->client_addr);
	if (s->txn.nrcpts == 1)
		snprintf(forpart, sizeof(forpart), "\r\n\tfor <%s>", s->txn.rcpts[0]);
	if (asprintf(&out, "Received: from %s (unknown [%s])\r\n\tby %s (Postern) with %s id %s%s;"
		     " %s\r\n", s->helo, addr, s->cfg->hostname, received_proto(s), s->sid, forpart,
		     date) < 0)
		return NULL;
	return out;
}

/* px_data_begin - 354, and get ready to read */
void px_data_begin(struct px_session *s)
{
	struct px_txn *t = &s->txn;
	const struct px_limits *l = &s->cfg->limits;

	t->spool = px_spool_new(s->cfg->spool_dir, l->spool_memory_max);
	t->received = received_build(s);
	if (t->spool == NULL || t->received == NULL) {
		px_session_reply(s, 451, "4.3.0", "Error: out of memory");
		return;
	}
	px_data_reader_init(&t->reader, l->text_line_max, l->message_size_max, 0);
	t->spool_err[0] = '\0';
	t->t_data = px_now_ms();
	px_enter_state(s, PX_S_DATA);
	px_session_set_timeout(s, s->cfg->timeouts.data);
	px_session_reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
}

/* spool_sink - the reader's output goes to the spool, until the spool fails */
static int spool_sink(void *arg, const char *p, size_t n)
{
	struct px_txn *t = arg;

	if (t->spool_err[0] == '\0')
		px_spool_write(t->spool, p, n, t->spool_err, sizeof(t->spool_err));
	return 0;
}

/* rcpt_list - "<a>,<b>" for the summary */
static void rcpt_list(const struct px_txn *t, char *out, size_t outlen)
{
	size_t i, len = 0;

	out[0] = '\0';
	for (i = 0; i < t->nrcpts && len < outlen; i++)
		len += (size_t)snprintf(out + len, outlen - len, "%s<%s>", i ? "," : "", t->rcpts[i]);
}

/* data_summary - the one line per message */
static void data_summary(struct px_session *s, const struct px_reply *r)
{
	const struct px_txn *t = &s->txn;
	char rcpts[2048], line[512], q[600];
	const char *status = r->code / 100 == 2 ? "delivered" :
			     r->code / 100 == 4 ? "deferred" : "rejected";

	rcpt_list(t, rcpts, sizeof(rcpts));
	px_reply_summary(r, line, sizeof(line));
	px_log(PX_LOG_INFO, s->sid, "message client=%s helo=%s from=<%s> nrcpt=%zu rcpt=%s size=%zu "
	       "status=%s reply=%s ms=%llu", s->client_addr, s->helo, t->from, t->nrcpts, rcpts,
	       t->reader.size, status, px_log_quote(q, sizeof(q), line, strlen(line)),
	       (unsigned long long)(px_now_ms() - t->t_data));
}

/* data_finish - reply, summarise, end the transaction */
static void data_finish(struct px_session *s, const struct px_reply *r)
{
	data_summary(s, r);
	if (r->code / 100 == 2)
		s->messages++;
	px_txn_reset(s);
	px_enter_state(s, PX_S_READY);
	px_session_set_timeout(s, s->cfg->timeouts.command);
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
	const struct px_txn *t = &s->txn;
	unsigned f = t->reader.flags;

	if (f & PX_DATA_TOO_BIG)
		px_reply_set(r, 552, "5.3.4", "Error: message too big (limit %zu bytes)",
			     s->cfg->limits.message_size_max);
	else if (f & (PX_DATA_BARE_LF | PX_DATA_BARE_CR))
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

/* data_end - the message is read: refuse it, or relay it */
static void data_end(struct px_session *s)
{
	struct px_txn *t = &s->txn;
	struct px_reply r;

	if (data_refusal(s, &r)) {
		if (t->spool_err[0])
			px_log(PX_LOG_ERR, s->sid, "spool error=\"%s\"", t->spool_err);
		if (s->relay_mail_open)
			px_relay_rset(s->relay);
		s->relay_mail_open = 0;
		data_finish(s, &r);
		return;
	}
	t->msg.prepend = t->received;
	t->msg.prepend_len = strlen(t->received);
	t->msg.spool = t->spool;
	t->msg.mail_from = t->from;
	t->msg.rcpts = (const char *const *)t->rcpts;
	t->msg.nrcpts = t->nrcpts;
	px_enter_state(s, PX_S_DATA_END);
	px_session_park(s);
	px_relay_data(s->relay, &t->msg, data_relayed, s);
}

/* px_data_input - feed buffered input; 1 to go on, 0 when more must arrive */
int px_data_input(struct px_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[8];
	int i, n, done = 0;
	size_t total = 0;

	n = evbuffer_peek(in, -1, NULL, v, 8);
	if (n <= 0)
		return 0;
	for (i = 0; i < n && i < 8 && !done; i++)
		total += (size_t)px_data_reader_feed(&s->txn.reader, v[i].iov_base, v[i].iov_len,
						     spool_sink, &s->txn, &done);
	evbuffer_drain(in, total);
	if (done)
		data_end(s);
	return done || evbuffer_get_length(in) > 0;
}
