/*
 * NAME
 *	smtp_auth - SMTP AUTH PLAIN and LOGIN, verified by the backend
 * DESCRIPTION
 *	Offered on listeners with auth = true, and only over TLS: AUTH before
 *	TLS gets 538 5.7.11. PLAIN (with or without an initial response) and
 *	LOGIN are read here; the credentials go to the backend as one
 *	"AUTH PLAIN" (auth_verify.c), because the backend owns the accounts.
 *	235 2.7.0 on success: the login then allows relaying and goes to the
 *	backend in XCLIENT LOGIN=. 535 5.7.8 on bad credentials, counted per
 *	client address: after auth.failures_max failures within
 *	auth.failure_window every AUTH from that address gets 454 4.7.0
 *	until the window has passed. AUTH is a row of the command table
 *	(smtp_commands.c): px_session_auth_check is its check, and the table's
 *	debug log shows the mechanism only, never an initial response.
 *	Once a 334 is out the session is in state AUTH: its continuation lines
 *	come here directly (px_session_auth_input) and are never logged; the
 *	exchange ends back in COMMAND, or in WAIT while the backend checks
 *	the credentials (auth_verify.c). auth_step says which answer the 334
 *	asked for. Passwords
 *	are never logged; the user name is logged quoted (px_log_quote), so a
 *	CR or LF decoded from base64 cannot start a forged log line.
 * STANDARDS
 *	RFC 4954 (SMTP AUTH), RFC 4616 (PLAIN), RFC 3848 (ESMTPSA).
 * DIAGNOSTICS
 *	"SID auth mechanism=PLAIN user=NAME result=ok|bad|temp client=ADDR"
 *	(NAME quoted when it holds a space, quote, '=' or a control byte),
 *	"SID auth result=throttled client=ADDR".
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "auth_throttle.h"
#include "auth_verify.h"
#include "common/log.h"
#include "policy/config.h"
#include "smtp_session_int.h"

#define AUTH_FIELD_MAX 255

enum { STEP_NONE, STEP_PLAIN, STEP_LOGIN_USER, STEP_LOGIN_PASS };

/* b64_decode - into out (NUL-terminated, may contain NULs); length or -1 */
static int b64_decode(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in), pad = 0;
	int len;

	if (n == 0 || n % 4 != 0 || n / 4 * 3 + 1 > outlen)
		return -1;
	pad = (in[n - 1] == '=') + (in[n - 2] == '=');
	len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
	if (len < 0 || (size_t)len < pad)
		return -1;
	len -= (int)pad;
	out[len] = 0;
	return len;
}

/* auth_ask - a 334 challenge: the next line is an answer (state AUTH) */
static void auth_ask(struct px_session *s, int step, const char *wire)
{
	s->auth_step = step;
	px_enter_state(s, PX_ST_AUTH);
	px_session_write(s, wire, strlen(wire));
}

/* auth_end - end the exchange with a reply: commands again */
static void auth_end(struct px_session *s, int code, const char *esc, const char *text)
{
	s->auth_step = STEP_NONE;
	px_enter_state(s, PX_ST_COMMAND);
	if (code / 100 == 5)
		px_session_error(s, code, esc, "%s", text);
	else
		px_session_reply(s, code, esc, "%s", text);
}

/* auth_done - the backend's verdict */
static void auth_done(void *arg, int result)
{
	struct px_session *s = arg;
	const struct px_transport *t = &s->cfg->transport;
	char user[4 * AUTH_FIELD_MAX + 3];

	px_log_quote(user, sizeof(user), s->auth_user, strlen(s->auth_user));
	px_log(PX_LOG_INFO, s->sid, "auth mechanism=PLAIN user=%s result=%s client=%s", user,
	       result == PX_AUTH_OK ? "ok" : result == PX_AUTH_BAD ? "bad" : "temp",
	       s->client_addr);
	if (!px_session_gone(s) && result == PX_AUTH_OK) {
		px_auth_succeeded((struct sockaddr *)&s->client_sa);
		snprintf(s->login, sizeof(s->login), "%s", s->auth_user);
		auth_end(s, 235, "2.7.0", "Authentication successful");
	} else if (!px_session_gone(s) && result == PX_AUTH_BAD) {
		px_auth_failed((struct sockaddr *)&s->client_sa, t->auth_failure_window);
		auth_end(s, 535, "5.7.8", "Error: authentication failed: credentials invalid");
	} else if (!px_session_gone(s)) {
		auth_end(s, 454, "4.7.0", "Temporary authentication failure; try again later");
	}
	free(s->auth_resp);
	s->auth_resp = NULL;
	px_session_unpark(s);
}

/* auth_check - user and password, as "\0user\0pass" base64, to the backend */
static void auth_check(struct px_session *s, const char *user, const char *pass)
{
	char raw[2 * AUTH_FIELD_MAX + 3];
	size_t ul = strlen(user), pl = strlen(pass);

	if (ul == 0 || ul > AUTH_FIELD_MAX || pl > AUTH_FIELD_MAX) {
		auth_end(s, 535, "5.7.8", "Error: authentication failed: credentials invalid");
		return;
	}
	if (user != s->auth_user)
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", user);
	raw[0] = 0;
	memcpy(raw + 1, user, ul);
	raw[ul + 1] = 0;
	memcpy(raw + ul + 2, pass, pl);
	if ((s->auth_resp = malloc(4 * ((ul + pl + 2) / 3 + 1) + 1)) == NULL) {
		auth_end(s, 454, "4.7.0", "Temporary authentication failure");
		return;
	}
	EVP_EncodeBlock((unsigned char *)s->auth_resp, (unsigned char *)raw, (int)(ul + pl + 2));
	OPENSSL_cleanse(raw, sizeof(raw));
	s->auth_step = STEP_NONE;
	px_session_park(s);
	px_auth_verify(s->base, s->cfg, s->sid, s->auth_resp, auth_done, s);
}

/* auth_plain - "authzid\0authcid\0passwd" (RFC 4616) */
static void auth_plain(struct px_session *s, const char *b64)
{
	char buf[3 * AUTH_FIELD_MAX + 8];
	int n = b64_decode(b64, buf, sizeof(buf));
	const char *authcid, *pass;

	if (n < 0 || (authcid = memchr(buf, 0, (size_t)n)) == NULL ||
	    (pass = memchr(authcid + 1, 0, (size_t)(buf + n - authcid - 1))) == NULL) {
		auth_end(s, 501, "5.5.2", "Error: invalid PLAIN response");
		return;
	}
	authcid++;
	pass++;
	if (buf[0] != 0 && strcmp(buf, authcid) != 0)
		auth_end(s, 535, "5.7.8", "Error: authentication failed: authorization identity "
			 "differs");
	else
		auth_check(s, authcid, pass);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* px_session_auth_check - the AUTH row's check: why AUTH cannot start
 * now (replied), -1; or 0 */
int px_session_auth_check(struct px_session *s, char *args)
{
	const struct px_transport *t = &s->cfg->transport;

	if (s->listener == NULL || !s->listener->auth)
		px_session_error(s, 503, "5.5.1", "Error: authentication not enabled");
	else if (!s->tls)
		px_session_error(s, 538, "5.7.11", "Encryption required for requested "
				 "authentication mechanism");
	else if (s->env != PX_ENV_READY)
		px_session_error(s, 503, "5.5.1", s->env == PX_ENV_CONNECTED ?
				 "Error: send EHLO first" : "Error: MAIL transaction in progress");
	else if (s->login[0])
		px_session_error(s, 503, "5.5.1", "Error: already authenticated");
	else if (px_auth_throttled((struct sockaddr *)&s->client_sa, t->auth_failures_max,
				   t->auth_failure_window)) {
		px_log(PX_LOG_INFO, s->sid, "auth result=throttled client=%s", s->client_addr);
		px_session_reply(s, 454, "4.7.0", "Error: too many failed authentication attempts; "
				 "try again later");
	} else if (*args == 0)
		px_session_error(s, 501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
	else
		return 0;
	return -1;
}

/* px_session_auth - "AUTH mechanism [initial-response]", past its check */
void px_session_auth(struct px_session *s, char *args)
{
	char *mech = args, *initial = strchr(args, ' ');

	if (initial != NULL)
		*initial++ = 0;
	if (strcasecmp(mech, "PLAIN") == 0 && initial != NULL) {
		auth_plain(s, strcmp(initial, "=") == 0 ? "" : initial);
	} else if (strcasecmp(mech, "PLAIN") == 0) {
		auth_ask(s, STEP_PLAIN, "334 \r\n");
	} else if (strcasecmp(mech, "LOGIN") == 0 && initial == NULL) {
		auth_ask(s, STEP_LOGIN_USER, "334 VXNlcm5hbWU6\r\n");
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		s->auth_step = STEP_LOGIN_USER;
		px_session_auth_line(s, initial);
	} else {
		px_session_error(s, 504, "5.5.4", "Unsupported authentication mechanism");
	}
}

/* px_session_auth_line - a continuation line of the exchange (AUTH), or
 * LOGIN's initial response */
void px_session_auth_line(struct px_session *s, char *line)
{
	char buf[AUTH_FIELD_MAX + 4];

	if (strcmp(line, "*") == 0) {
		auth_end(s, 501, "5.7.0", "Authentication aborted");
		return;
	}
	if (s->auth_step == STEP_PLAIN) {
		auth_plain(s, line);
		return;
	}
	if (b64_decode(line, buf, sizeof(buf)) < 0 || strlen(buf) == 0) {
		auth_end(s, 501, "5.5.2", "Error: invalid LOGIN response");
		return;
	}
	if (s->auth_step == STEP_LOGIN_USER) {
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", buf);
		auth_ask(s, STEP_LOGIN_PASS, "334 UGFzc3dvcmQ6\r\n");
		return;
	}
	auth_check(s, s->auth_user, buf);
	OPENSSL_cleanse(buf, sizeof(buf));
}
