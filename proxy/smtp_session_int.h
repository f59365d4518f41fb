/*
 * NAME
 *	smtp_session_int - the session's state, shared by its files
 * DESCRIPTION
 *	smtp_session.c  I/O, replies, the session's lifetime
 *	smtp_states.c   the state machine: the state and deadline tables,
 *	                px_enter_state, deadlines, reading on or off
 *	smtp_commands.c the command table and the envelope commands
 *	smtp_data.c     DATA: reading, spooling, Received, relaying, the summary
 *	smtp_connect.c, smtp_starttls.c, smtp_auth.c, smtp_bdat.c, ...: the
 *	                input handlers of their states and their commands
 *
 *	ONE STATE MACHINE. The session is always in exactly one state; the
 *	state says what its input means and what it is waiting for. Each
 *	state has one row in px_states[] (smtp_states.c): its name (for the
 *	log), its input handler (NULL: it reads nothing, EV_READ is off) and
 *	its deadline kind. px_enter_state() is the only writer of s->state: it
 *	logs "state=OLD next=NEW" at debug, turns reading on or off and sets
 *	the deadline from the row. CLOSING is final.
 *
 *	  NEW            accepted, the opening has not begun
 *	  PROXY_HEADER   reading the PROXY protocol header    (proxy-header)
 *	  GREETING       greeting delay, or the pregreet check's store lookup
 *	                 and 220- line: input now is an early talker (none)
 *	  TLS_HANDSHAKE  the handshake after STARTTLS, or an implicit TLS
 *	                 one still going when the 220 is queued (tls-handshake)
 *	  COMMAND        command lines through the command table (command)
 *	  AUTH           AUTH continuation lines (334 sent)   (command)
 *	  DATA           message text after 354               (data)
 *	  BDAT_CHUNK     the bytes of one BDAT chunk          (data)
 *	  WAIT           parked: a chain stage, the relay or an AUTH check
 *	                 answers; reads nothing, no deadline of its own
 *	  CLOSING        replies flushing, then freed
 *
 *	Opening: NEW -> [PROXY_HEADER] -> GREETING -> COMMAND (the connect
 *	stage in WAIT, then 220) -> ... With implicit TLS the filter is put
 *	in place before GREETING and the handshake goes on underneath; a
 *	220 queued before it is done waits in TLS_HANDSHAKE for it. After
 *	the handshake of STARTTLS (or the implicit one): COMMAND. Everything
 *	that waits for something outside the client (a chain stage, the
 *	relay, the AUTH check) is WAIT, and returns to COMMAND: each such
 *	wait ends with a reply, after which a command is next.
 *
 *	The ENVELOPE is a second, smaller enum (s->env, written only by
 *	px_envelope_enter): where the SMTP transaction stands, which is what
 *	the command table's sequencing needs (RFC 5321 4.1.4):
 *	  CONNECTED  greeting sent, no HELO/EHLO yet
 *	  READY      HELO/EHLO done, no transaction
 *	  MAIL       MAIL accepted, no recipient yet
 *	  RCPT       at least one recipient accepted (by us and the backend);
 *	             stays so while DATA is read and relayed
 *	  BDAT       between BDAT chunks of a message (RFC 3030)
 *	It is not folded into the states because it is orthogonal to them:
 *	a refused BDAT chunk is read (BDAT_CHUNK) in any envelope position,
 *	AUTH and the chain's waits happen at several, and each would need a
 *	state to return to. One coupling is written down where it is made
 *	(state_deadline, smtp_states.c): COMMAND between BDAT chunks keeps the
 *	message's "data" deadline, as a message in progress.
 *
 *	Not states: output back-pressure (output_wait) is a hold on top of
 *	any state that reads: when more than PX_OUTPUT_HIGH reply bytes are
 *	unsent, input processing pauses and the "write" deadline runs; when
 *	the output drains, the same state goes on where it stopped (its
 *	handler, its data). Making it a state would mean remembering which
 *	state to return to, and every state would need a way out into it.
 *	in_flight is not a state either: it says that a chain stage, relay
 *	call or AUTH check still holds a pointer to the session (set in WAIT,
 *	and it outlives WAIT when the session closes meanwhile), so the
 *	session's memory is freed only after that call has answered.
 */
#ifndef PX_PROXY_SMTP_SESSION_INT_H
#define PX_PROXY_SMTP_SESSION_INT_H

#include <stdint.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "data_reader.h"
#include "relay.h"
#include "reply.h"
#include "smtp_parse.h"
#include "filters/chain.h"
#include "filters/txn.h"
#include "policy/outgoing.h"

/* the session's state: see above; rows in px_states[], smtp_states.c */
enum px_state {
	PX_ST_NEW,
	PX_ST_PROXY_HEADER,
	PX_ST_TLS_HANDSHAKE,
	PX_ST_GREETING,
	PX_ST_COMMAND,
	PX_ST_AUTH,
	PX_ST_DATA,
	PX_ST_BDAT_CHUNK,
	PX_ST_WAIT,
	PX_ST_CLOSING,
	PX_ST_COUNT
};

/* what a deadline is for: rows in px_deadlines[], smtp_states.c (the close
 * reason "KIND-deadline", which timeout applies, whether a 421 is sent) */
enum px_deadline {
	PX_DL_NONE,
	PX_DL_PROXY_HEADER,
	PX_DL_TLS_HANDSHAKE,
	PX_DL_COMMAND,
	PX_DL_DATA,
	PX_DL_WRITE,
	PX_DL_COUNT
};

/* where the SMTP transaction stands: see above */
enum px_envelope {
	PX_ENV_CONNECTED,
	PX_ENV_READY,
	PX_ENV_MAIL,
	PX_ENV_RCPT,
	PX_ENV_BDAT,
	PX_ENV_COUNT
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
	enum px_state state;                   /* px_enter_state is the only writer */
	enum px_envelope env;                  /* px_envelope_enter is the only writer */
	int esmtp;
	char helo[256];
	unsigned errors;
	unsigned messages;
	int in_flight;                         /* a stage, relay call or AUTH check holds us */
	int discard_line;                      /* skipping an over-long command line */
	struct event *session_timer;
	struct event *deadline;                /* the current wait must end by then */
	enum px_deadline deadline_kind;        /* what it is for; PX_DL_NONE: off */
	struct event *linger;                  /* a closing session is freed by then */
	int peer_eof;                          /* the client sent FIN / close_notify */
	int tls_shut;                          /* our close_notify is queued */
	int output_wait;                       /* hold: input paused, the client is not reading */
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
	struct event *greet_timer;
	int tls;                               /* TLS is up */
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
	int auth_step;                         /* smtp_auth.c: which answer AUTH awaits */
	char auth_user[256];
	char *auth_resp;                       /* decoded PLAIN response */
	size_t bdat_left;                      /* chunk bytes still to read */
	int bdat_last;                         /* the chunk being read is LAST */
	int bdat_discard;                      /* read and drop this chunk */
	int bdat_used;                         /* the transaction uses BDAT */
	struct px_reply bdat_reply;            /* the answer once a dropped chunk is read */
	char xclient_helo[256];                /* XCLIENT HELO: wins over a later EHLO */
	struct px_pregreet *pregreet;          /* the store lookup GREETING waits for */
	struct event *pregreet_timer;          /* ... for at most timeouts.store */
	int pregreet_on;                       /* the pregreet check applies */
	int pregreet_testing;                  /* the 220- line is out, the delay runs */
	uint64_t pregreet_t0;                  /* when the 220- line went out, ms */

	/* the plugin chain and the policy (issue 4): smtp_chain.c */
	struct px_txn *ptx;                    /* what plugins see of this session */
	struct px_policy_view stage_view;      /* the view of the stage being run */
	void (*stage_cont)(struct px_session *, const struct px_stage_outcome *);
	void (*staged)(struct px_session *, char *);   /* the command waiting for its stage */
	char pending_helo[256];                /* HELO/EHLO argument, during its stage */
	char pending_from[PX_SMTP_PATH_MAX + 1];   /* MAIL address, during its stage */
	char *line;                            /* one command line (command_line_max + 1),
						  allocated at the first line, reused */
	int line_busy;                         /* a handler is using it */
	struct px_outgoing outgoing;           /* header edits of the message being relayed */
};

/* smtp_states.c: the state machine */
void px_enter_state(struct px_session *s, enum px_state next);
void px_envelope_enter(struct px_session *s, enum px_envelope next);
int px_state_reads(const struct px_session *s);
int px_state_input(struct px_session *s);
int px_state_dialogue(const struct px_session *s);
void px_state_reading(struct px_session *s);
void px_state_deadline(struct px_session *s);
void px_deadline_met(struct px_session *s);
void px_deadline_expired(evutil_socket_t fd, short what, void *arg);

/* smtp_session.c */
void px_session_reply(struct px_session *s, int code, const char *esc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void px_session_error(struct px_session *s, int code, const char *esc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void px_session_send(struct px_session *s, const struct px_reply *r);
void px_session_write(struct px_session *s, const char *p, size_t n);
void px_session_close(struct px_session *s, const char *reason);
void px_session_abort(struct px_session *s, const char *reason);
void px_session_park(struct px_session *s);
void px_session_wait_done(struct px_session *s);
void px_session_unpark(struct px_session *s);
int px_session_gone(struct px_session *s);
void px_session_set_timeout(struct px_session *s, unsigned ms);
struct px_relay *px_session_relay(struct px_session *s);
void px_session_txn_reset(struct px_session *s);
uint64_t px_now_ms(void);
void px_session_resume(struct px_session *s);
int px_session_command_input(struct px_session *s);
int px_session_auth_input(struct px_session *s);

void px_session_set_callbacks(struct px_session *s);
void px_session_set_server(struct px_session *s, int fd);
void px_session_tls_failed(struct px_session *s);

/* smtp_connect.c: the opening (PROXY header, implicit TLS, greeting delay) */
void px_session_open(struct px_session *s);
int px_proxy_header_input(struct px_session *s);
int px_greeting_input(struct px_session *s);
void px_greeting_after(struct px_session *s, unsigned ms);

/* smtp_pregreet.c: the pregreet check, remembered in the store */
int px_pregreet_begin(struct px_session *s);
void px_pregreet_early(struct px_session *s);
void px_pregreet_passed(struct px_session *s);
void px_pregreet_free(struct px_session *s);
void px_session_set_client(struct px_session *s, const struct sockaddr *sa);

/* smtp_guard.c: early talkers and unauthorised pipelining */
int px_guard_pipelining(struct px_session *s, const char *line);

/* smtp_starttls.c */
void px_session_starttls(struct px_session *s, char *args);
int px_session_tls_wrap(struct px_session *s);
int px_session_tls_pending(struct px_session *s);
int px_tls_handshake_input(struct px_session *s);
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
