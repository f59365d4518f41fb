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
#include "filters/chain.h"
#include "filters/txn.h"
#include "policy/outgoing.h"

enum px_state {
	PX_S_CONNECTED,
	PX_S_READY,
	PX_S_MAIL,
	PX_S_RCPT,
	PX_S_DATA,
	PX_S_DATA_END,
	PX_S_BDAT,          /* between BDAT chunks (RFC 3030); smtp_bdat.c */
	PX_S_NSTATES
};

struct px_smtp_txn {
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
	struct event *deadline;                /* the current wait must end by then */
	const char *deadline_why;              /* "command", "write", "tls-handshake"; NULL: off */
	struct event *linger;                  /* a closing session is freed by then */
	int peer_eof;                          /* the client sent FIN / close_notify */
	int tls_shut;                          /* our close_notify is queued */
	int output_wait;                       /* input paused: the client is not reading */
	int output_overflow;                   /* write nothing more: dropping the client */
	int free_scheduled;                    /* session_free runs on the next loop turn */
	size_t data_mark;                      /* message bytes at the last "data" deadline */
	struct px_relay *relay;
	int relay_mail_open;                   /* our MAIL is open at the backend */
	int relay_lost;                        /* the backend lost a transaction that had
						  recipients: 4xx until RSET/MAIL anew */
	struct px_reply relay_mail_reply;
	int dsn;                               /* DSN was advertised in EHLO */
	struct px_smtp_path path;              /* scratch: the MAIL/RCPT being handled */
	char rcpt_params[512];                 /* scratch: its validated parameters */
	char pending_rcpt[PX_SMTP_PATH_MAX + 1];
	struct px_smtp_txn txn;

	/* transport (issue 3) */
	const struct px_listener *listener;    /* in cfg: its generation's settings */
	struct px_tls *tls_ctx;                /* cfg's contexts (attached to it), or NULL */
	struct sockaddr_storage count_sa;      /* the address counted by the server */
	char server_addr[64];                  /* where the client connected (DESTADDR) */
	unsigned server_port;
	int opening;                           /* PROXY header / greeting not done yet */
	int proxy_wait;                        /* waiting for the PROXY header */
	struct event *greet_timer;
	int tls;                               /* TLS is up */
	int tls_pending;                       /* handshake in progress */
	struct px_session *live_next, *live_prev;  /* every live session (shutdown) */
	struct evbuffer_cb_entry *drain_cb;    /* waiting for the TLS socket side to drain */
	int drain_scheduled;
	char tls_version[32];
	char tls_cipher[64];
	int tls_bits;
	int normalize_bare;                    /* a legacy network: bare LF/CR -> CRLF */
	int xclient_ok;                        /* may send XCLIENT */
	char client_name[256];                 /* reverse name (XCLIENT NAME), "unknown" */
	char proto[16];                        /* SMTP/ESMTP..., for XCLIENT PROTO */
	char login[256];                       /* SASL login, "" if none */
	int auth_step;                         /* smtp_auth.c: continuation expected */
	char auth_user[256];
	char *auth_resp;                       /* decoded PLAIN response */
	size_t bdat_left;                      /* chunk bytes still to read */
	int bdat_last;                         /* the chunk being read is LAST */
	int bdat_discard;                      /* read and drop this chunk */
	int bdat_used;                         /* the transaction uses BDAT */
	struct px_reply bdat_reply;            /* the answer once a dropped chunk is read */
	char xclient_helo[256];                /* XCLIENT HELO: wins over a later EHLO */

	/* the plugin chain and the policy (issue 4): smtp_chain.c */
	struct px_txn *ptx;                    /* what plugins see of this session */
	struct px_policy_view stage_view;      /* the view of the stage being run */
	void (*stage_cont)(struct px_session *, const struct px_stage_outcome *);
	void (*staged)(struct px_session *, char *);   /* the command waiting for its stage */
	char pending_helo[256];                /* HELO/EHLO argument, during its stage */
	char pending_from[PX_SMTP_PATH_MAX + 1];   /* MAIL address, during its stage */
	struct px_outgoing outgoing;           /* header edits of the message being relayed */
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
void px_session_deadline(struct px_session *s, const char *why, unsigned ms);
struct px_relay *px_session_relay(struct px_session *s);
void px_session_txn_reset(struct px_session *s);
uint64_t px_now_ms(void);

void px_session_resume(struct px_session *s);
void px_session_set_callbacks(struct px_session *s);
void px_session_set_server(struct px_session *s, int fd);
void px_session_tls_failed(struct px_session *s);

/* smtp_connect.c: the opening (PROXY header, implicit TLS, greeting delay) */
void px_session_open(struct px_session *s);
void px_session_opening_input(struct px_session *s);
void px_session_set_client(struct px_session *s, const struct sockaddr *sa);

/* smtp_guard.c: early talkers and unauthorised pipelining */
int px_guard_pipelining(struct px_session *s, const char *line);

/* smtp_starttls.c */
void px_session_starttls(struct px_session *s, char *args);
int px_session_tls_wrap(struct px_session *s);
void px_session_tls_up(struct px_session *s);
void px_session_reset(struct px_session *s);
size_t px_ehlo_transport(struct px_session *s, char *buf, size_t size);
int px_session_require_tls(struct px_session *s);

/* smtp_xclient.c */
void px_session_xclient(struct px_session *s, char *args);

/* smtp_bdat.c */
void px_session_bdat(struct px_session *s, char *args);
int px_bdat_input(struct px_session *s);

/* smtp_auth.c */
int px_session_auth_check(struct px_session *s, char *args);
void px_session_auth(struct px_session *s, char *args);
void px_session_auth_line(struct px_session *s, char *line);

/* smtp_data.c (shared with BDAT) */
int px_data_prepare(struct px_session *s);
void px_data_complete(struct px_session *s);

/* smtp_commands.c */
void px_session_command(struct px_session *s, char *line);

/* smtp_data.c */
void px_data_begin(struct px_session *s);
int px_data_input(struct px_session *s);

#endif
