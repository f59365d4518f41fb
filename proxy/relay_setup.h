/*
 * NAME
 *	relay_setup - STARTTLS, XCLIENT and XFORWARD towards the backend
 * DESCRIPTION
 *	Helpers for relay_smtp.c's setup steps (rs_steps[]); see relay_setup.c.
 */
#ifndef PX_PROXY_RELAY_SETUP_H
#define PX_PROXY_RELAY_SETUP_H

#include <stddef.h>

struct bufferevent;
struct px_relay;

enum { PX_FWD_NONE, PX_FWD_XCLIENT, PX_FWD_XFORWARD };

int px_relay_forward_kind(const struct px_relay *rl, unsigned caps);
int px_relay_forward_line(const struct px_relay *rl, int kind, const char *ehlo, char *out,
			  size_t len);
int px_relay_tls_wanted(const struct px_relay *rl, unsigned caps);
struct bufferevent *px_relay_tls_wrap(struct px_relay *rl, struct bufferevent *bev);
void px_relay_tls_log(struct px_relay *rl, struct bufferevent *bev);

#endif
