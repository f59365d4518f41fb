/*
 * NAME
 *	auth_verify - check SMTP AUTH credentials by asking the backend
 * DESCRIPTION
 *	The backend owns the accounts. px_auth_verify() opens a short SMTP
 *	conversation with it (auth.backend, else the smtp: backend): greeting,
 *	EHLO, "AUTH PLAIN <response>", QUIT, each reply within
 *	timeouts.backend_command. The callback runs once, on the caller's
 *	event base: PX_AUTH_OK (235), PX_AUTH_BAD (535 or another 5xx), or
 *	PX_AUTH_TEMP (anything else: unreachable, 4xx, timeout).
 */
#ifndef PX_PROXY_AUTH_VERIFY_H
#define PX_PROXY_AUTH_VERIFY_H

struct event_base;
struct px_config;

enum { PX_AUTH_OK = 0, PX_AUTH_BAD = 1, PX_AUTH_TEMP = -1 };

typedef void (*px_auth_cb)(void *arg, int result);

void px_auth_verify(struct event_base *base, const struct px_config *cfg, const char *sid,
		    const char *plain_b64, px_auth_cb cb, void *arg);

#endif
