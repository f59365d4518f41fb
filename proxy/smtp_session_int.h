/*
 * NAME
 *	smtp_session_int - the session's state, shared by its three files
 * DESCRIPTION
 *	smtp_session.c  I/O, the state machine, replies, the session's lifetime
 *	smtp_commands.c the command table and the envelope commands
 *	smtp_data.c     DATA: reading, spooling, Received, relaying, the summary
 *
 *	States (px_enter_state is the only writer, and logs each transition):
 *	  CONNECTED  greeting sent, no HELO/EHLO yet
 *	  READY      HELO/EHLO done, no transaction
 *	  MAIL       MAIL accepted, no recipient yet
 *	  RCPT       at least one recipient accepted (by us and the backend)
 *	  DATA       reading the message
 *	  DATA_END   message read; waiting for the relay's final reply
 *	A session is "parked" while it waits for the relay; it reads no command
 *	then, and resumes with whatever the client pipelined meanwhile.
 */
#ifndef PX_PROXY_SMTP_SESSION_INT_H
#define PX_PROXY_SMTP_SESSION_INT_H

#include <stdint.h>
#include <sys/socket.h>

#include "data_reader.h"
#include "relay.h"
#include "reply.h"
#include "smtp_parse.h"

enum px_state {
	PX_S_CONNECTED,
	PX_S_READY,
	PX_S_MAIL,
	PX_S_RCPT,
	PX_S_DATA,
	PX_S_DATA_END,
	PX_S_NSTATES
};

struct px_txn {
	char from[PX_SMTP_PATH_MAX + 1];      /* "" for <> */
	char mail_cmd[PX_SMTP_PATH_MAX + 16];  /* "MAIL FROM:<...>" for the backend */
	char mail_params[512];                 /* validated, for the backend */
	int smtputf8;
	char **rcpts;                          /* accepted by us and the backend */
	size_t nrcpts;
	unsigned rcpt_attempts;                /* RCPT commands in this transaction */
	struct px_spool *spool;
	struct px_data_reader reader;
	char spool_err[256];
	char *received;                        /* our Received: header, CRLF lines */
	struct px_message msg;
	uint64_t t_data;                       /* when DATA began, ms */
};

struct px_session {
	char sid[17];
	struct px_server *srv;
	struct event_base *base;
	struct bufferevent *bev;
	struct px_config *cfg;                 /* the generation it started with */
	struct sockaddr_storage client_sa;
	char client_addr[64];
	unsigned client_port;
	int trusted;
	enum px_state state;
	int esmtp;
	char helo[256];
	unsigned errors;
	unsigned messages;
	int parked;                            /* waiting for the relay */
	int closing;                           /* QUIT, timeout, or the client left */
	int discard_line;                      /* skipping an over-long command line */
	struct event *session_timer;
	struct px_relay *relay;
	int relay_mail_open;                   /* our MAIL is open at the backend */
	struct px_reply relay_mail_reply;
	int dsn;                               /* DSN was advertised in EHLO */
	struct px_smtp_path path;              /* scratch: the MAIL/RCPT being handled */
	char rcpt_params[512];                 /* scratch: its validated parameters */
	char pending_rcpt[PX_SMTP_PATH_MAX + 1];
	struct px_txn txn;
};

/* smtp_session.c */
void px_enter_state(struct px_session *s, enum px_state next);
void px_session_reply(struct px_session *s, int code, const char *esc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void px_session_error(struct px_session *s, int code, const char *esc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void px_session_send(struct px_session *s, const struct px_reply *r);
void px_session_write(struct px_session *s, const char *p, size_t n);
void px_session_close(struct px_session *s, const char *reason);
void px_session_park(struct px_session *s);
void px_session_unpark(struct px_session *s);
int px_session_gone(struct px_session *s);
void px_session_set_timeout(struct px_session *s, unsigned ms);
struct px_relay *px_session_relay(struct px_session *s);
void px_txn_reset(struct px_session *s);
uint64_t px_now_ms(void);

/* smtp_commands.c */
void px_session_command(struct px_session *s, char *line);

/* smtp_data.c */
void px_data_begin(struct px_session *s);
int px_data_input(struct px_session *s);

#endif
