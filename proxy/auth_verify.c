/*
 * NAME
 *	auth_verify - check SMTP AUTH credentials by asking the backend
 * DESCRIPTION
 *	See auth_verify.h. A small state machine on one bufferevent:
 *	GREETING -> EHLO -> AUTH -> done (QUIT is sent, not waited for).
 *	Reply lines are bounded (4096 bytes); a malformed reply is a
 *	temporary failure. The backend address comes from the address cache
 *	(backend_addr.h: resolved at configuration load and in the
 *	background, never on this I/O thread); no address yet is a
 *	temporary failure, and a failed connection refreshes the name.
 * DIAGNOSTICS
 *	"SID auth-verify backend=HOST:PORT reply=CODE".
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth_verify.h"
#include "backend_addr.h"
#include "common/log.h"
#include "common/netaddr.h"
#include "policy/config.h"
#include "reply_reader.h"

#define AV_LINE_MAX 4096

enum av_state { AV_GREETING, AV_EHLO, AV_AUTH };

struct av {
	struct bufferevent *bev;
	enum av_state state;
	char sid[24];
	char host[256], port[16];
	char *hostname;
	char *response;
	px_auth_cb cb;
	void *arg;
	struct px_reply_reader rr;
};

/* av_finish - answer once, send QUIT, free */
static void av_finish(struct av *v, int result, int code)
{
	px_log(PX_LOG_INFO, v->sid, "auth-verify backend=%s:%s reply=%d result=%s", v->host,
	       v->port, code, result == PX_AUTH_OK ? "ok" : result == PX_AUTH_BAD ? "bad" : "temp");
	v->cb(v->arg, result);
	if (v->bev != NULL)
		bufferevent_free(v->bev);   /* QUIT is courtesy: the backend sees EOF */
	free(v->hostname);
	free(v->response);
	free(v);
}

/* av_reply - a complete reply with its code */
static void av_reply(struct av *v, int code)
{
	struct evbuffer *out = bufferevent_get_output(v->bev);

	switch (v->state) {
	case AV_GREETING:
		if (code != 220)
			break;
		evbuffer_add_printf(out, "EHLO %s\r\n", v->hostname);
		v->state = AV_EHLO;
		return;
	case AV_EHLO:
		if (code != 250)
			break;
		evbuffer_add_printf(out, "AUTH PLAIN %s\r\n", v->response);
		v->state = AV_AUTH;
		return;
	case AV_AUTH:
		av_finish(v, code == 235 ? PX_AUTH_OK : code / 100 == 5 ? PX_AUTH_BAD
			  : PX_AUTH_TEMP, code);
		return;
	}
	av_finish(v, PX_AUTH_TEMP, code);
}

/* av_read_cb - each complete reply to the conversation's next step */
static void av_read_cb(struct bufferevent *bev, void *arg)
{
	struct av *v = arg;
	const char *why;
	int rc = px_reply_reader_next(&v->rr, bufferevent_get_input(bev), AV_LINE_MAX, &why);

	if (rc == PX_RR_BAD)
		av_finish(v, PX_AUTH_TEMP, 0);
	else if (rc == PX_RR_DONE)
		av_reply(v, v->rr.code);     /* one reply per step: the next waits for our command */
}

/* av_event_cb - connected, or the conversation broke */
static void av_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct av *v = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	if ((what & BEV_EVENT_ERROR) && v->state == AV_GREETING)
		px_hostport_addr_failed(v->host, v->port);   /* maybe a stale address */
	av_finish(v, PX_AUTH_TEMP, 0);
}

/* av_target - auth.backend, else the smtp: backend */
static int av_target(struct av *v, const struct px_config *cfg)
{
	const char *b = cfg->transport.auth_backend;
	char err[128];

	if (b[0] != 0)
		return px_hostport_split(b + 5, NULL, v->host, sizeof(v->host), v->port,
					 sizeof(v->port), err, sizeof(err));
	if (cfg->backend.kind != PX_BACKEND_SMTP)
		return -1;
	snprintf(v->host, sizeof(v->host), "%s", cfg->backend.host);
	snprintf(v->port, sizeof(v->port), "%s", cfg->backend.port);
	return 0;
}

/* av_connect - the cached address, and start connecting; -1 on failure */
static int av_connect(struct av *v, struct event_base *base, unsigned timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char why[200];

	if (px_hostport_addr(v->host, v->port, &ss, &len, why, sizeof(why)) < 0) {
		px_log(PX_LOG_WARN, v->sid, "auth-verify backend=%s:%s error=\"%s\"", v->host,
		       v->port, why);
		return -1;
	}
	v->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (v->bev == NULL)
		return -1;
	bufferevent_setcb(v->bev, av_read_cb, NULL, av_event_cb, v);
	bufferevent_set_timeouts(v->bev, &tv, &tv);
	bufferevent_enable(v->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(v->bev, (struct sockaddr *)&ss, (int)len) < 0) {
		px_hostport_addr_failed(v->host, v->port);
		return -1;
	}
	return 0;
}

/* px_auth_verify - start; the callback always runs later, from the loop */
void px_auth_verify(struct event_base *base, const struct px_config *cfg, const char *sid,
		    const char *plain_b64, px_auth_cb cb, void *arg)
{
	struct av *v = calloc(1, sizeof(*v));

	if (v == NULL)
		abort();
	snprintf(v->sid, sizeof(v->sid), "%s", sid);
	v->cb = cb;
	v->arg = arg;
	v->hostname = strdup(cfg->hostname);
	v->response = strdup(plain_b64);
	if (v->hostname != NULL && v->response != NULL && av_target(v, cfg) == 0 &&
	    av_connect(v, base, cfg->timeouts.backend_command) == 0)
		return;
	/* failed at once: answer from the loop, never from inside this call */
	if (v->bev == NULL && (v->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) == NULL)
		abort();
	bufferevent_setcb(v->bev, NULL, NULL, av_event_cb, v);
	bufferevent_trigger_event(v->bev, BEV_EVENT_ERROR, BEV_TRIG_DEFER_CALLBACKS);
}
