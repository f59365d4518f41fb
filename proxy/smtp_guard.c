/*
 * NAME
 *	smtp_guard - unauthorised pipelining (RFC 2920, as Postfix 3.9 does)
 * DESCRIPTION
 *	A client may send a command before the reply to the previous one only
 *	when it said EHLO and we announced PIPELINING, and never right behind
 *	a command that must end a group (EHLO, HELO, DATA, AUTH, NOOP, VRFY,
 *	EXPN, ETRN, XCLIENT): its reply changes what may follow. A command
 *	processed while more input is already buffered was pipelined; when
 *	that was not allowed the client is desynchronised (or is smuggling),
 *	and it gets "554 5.5.0 Error: SMTP protocol synchronization" and the
 *	session ends, before the command runs.
 *
 *	STARTTLS is the exception: what was pipelined behind it is discarded
 *	(smtp_starttls.c), never executed. Early talkers (input before the
 *	greeting) are caught in smtp_connect.c. AUTH continuation lines (state
 *	AUTH) never come here: they answer a 334, they are not commands.
 * DIAGNOSTICS
 *	"SID reject reason=unauth-pipelining command=VERB pending=N".
 */
#include "autoconfig.h"

#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/log.h"
#include "smtp_session_int.h"

/* ends_group - a verb after which nothing may be pipelined */
static int ends_group(const char *line)
{
	static const char *const verbs[] = {
		"EHLO", "HELO", "DATA", "AUTH", "NOOP", "VRFY", "EXPN", "ETRN", "XCLIENT", NULL
	};
	size_t n = strcspn(line, " "), i;

	for (i = 0; verbs[i] != NULL; i++)
		if (strlen(verbs[i]) == n && strncasecmp(line, verbs[i], n) == 0)
			return 1;
	return 0;
}

/* is_starttls - the one command whose pipelined tail is discarded instead */
static int is_starttls(const char *line)
{
	return strncasecmp(line, "STARTTLS", 8) == 0 && (line[8] == 0 || line[8] == ' ');
}

/* px_guard_pipelining - 0 to go on, -1 after refusing and closing */
int px_guard_pipelining(struct px_session *s, const char *line)
{
	size_t pending = evbuffer_get_length(bufferevent_get_input(s->bev));
	char q[80];

	if (pending == 0 || is_starttls(line))
		return 0;
	if (s->esmtp && s->env != PX_ENV_CONNECTED && !ends_group(line))
		return 0;
	px_log(PX_LOG_INFO, s->sid, "reject reason=unauth-pipelining command=%s pending=%zu "
	       "client=%s", px_log_quote(q, sizeof(q), line, strcspn(line, " ")), pending,
	       s->client_addr);
	px_session_reply(s, 554, "5.5.0", "Error: SMTP protocol synchronization");
	px_session_close(s, "unauth-pipelining");
	return -1;
}
