/*
 * NAME
 *	config - postern.conf + conf.d, read with libconfuse into one generation
 * SYNOPSIS
 *	#include "policy/config.h"
 * DESCRIPTION
 *	px_config_load() reads FILE (postern.conf), then every *.conf in the
 *	conf.d directory beside it in lexical order (a missing conf.d is fine), then the
 *	-o overrides, and builds one immutable, refcounted generation. A later
 *	file overrides single keys, never whole sections: each file is parsed on
 *	its own against the schema, and only the options it set (CFGF_MODIFIED)
 *	are copied onto the result, section by section. An override is
 *	"key=value" or "section.key=value"; a list value is comma-separated.
 *
 *	Durations accept a unit: 300s, 5m, 2h, 1d, 250ms; a bare number means
 *	seconds. Sizes accept k, M, G (powers of 1024); a bare number means bytes.
 *
 *	Sessions hold a reference to the generation they started with
 *	(px_config_ref/px_config_unref), so a reload never changes a running
 *	session. What the transport builds per generation (TLS contexts) is
 *	attached to it, so one reference holds both.
 * DIAGNOSTICS
 *	Every error is one line "file:line: message" (or "-o: message" for an
 *	override) appended to err; px_config_load returns -1 and no generation.
 */
#ifndef PX_POLICY_CONFIG_H
#define PX_POLICY_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include "common/netaddr.h"
#include "common/units.h"   /* px_parse_duration_ms, px_parse_size */
#include "filters/resolver.h"          /* struct px_resolver_conf */
#include "policy/config_transport.h"   /* struct px_transport, px_listener */

struct px_chain;
struct px_policy;
struct px_plugin_sections;

enum px_backend_kind {
	PX_BACKEND_SMTP,
	PX_BACKEND_LMTP,        /* host:port, or unix socket when path is set */
	PX_BACKEND_MAILDIR
};

struct px_backend_spec {
	enum px_backend_kind kind;
	char *host;             /* smtp/lmtp over TCP */
	char *port;
	char *path;             /* lmtp:unix:PATH, maildir:PATH */
	char *text;             /* as written, for logs */
};

struct px_limits {
	size_t command_line_max;        /* bytes incl. CRLF; 512 minimum (RFC 5321 4.5.3.1.4) */
	size_t text_line_max;           /* bytes incl. CRLF, DATA and BDAT; 1M (1000 = RFC 5321) */
	size_t message_size_max;        /* SIZE advertised and enforced */
	unsigned recipients_max;        /* per message */
	unsigned errors_max;            /* per session, then 421 */
	unsigned connections_max;       /* in total */
	unsigned connections_per_client_max;
	size_t spool_memory_max;        /* spool in memory up to this, then a temp file */
};

struct px_timeouts {                    /* all in milliseconds */
	unsigned command;               /* client idle between commands */
	unsigned data;                  /* client idle during DATA */
	unsigned session;               /* whole session */
	unsigned backend_connect;
	unsigned backend_command;       /* each backend reply to a command */
	unsigned backend_data;          /* backend reply after end of data */
	unsigned dns;                   /* each DNS lookup (also dns.timeout_ms) */
	unsigned store;                 /* each store call (filters/store.h) */
	unsigned milter;                /* postern-milter: a stage's answer to the MTA */
};

struct px_config {
	int refs;                       /* atomic; see px_config_ref */
	unsigned long generation;       /* 1, 2, ... per successful load */
	char *path;                     /* the main file as given */

	char *hostname;                 /* greeting, Received; default gethostname() */
	char **listen;                  /* "ADDR:PORT" */
	size_t nlisten;
	unsigned workers;               /* event-loop threads; 0 in file means one per core */
	struct px_backend_spec backend;
	char **relay_domains;           /* lower case, no trailing dot */
	size_t nrelay_domains;
	struct px_cidr *trusted_networks;
	size_t ntrusted_networks;
	char *spool_dir;
	char *store;                    /* the store's spec; default lmdb:SPOOL_DIR/store */
	int log_level;                  /* enum px_log_level */
	char *greeting;                 /* text after "220 hostname " */
	int vrfy_enabled;               /* 0: VRFY answers 252 */
	char *milter_socket;            /* postern-milter: inet:PORT@ADDR, unix:PATH */

	struct px_limits limits;
	struct px_timeouts timeouts;
	struct px_transport transport;  /* policy/config_transport.h */
	struct px_resolver_conf dns;    /* dns_forward (NULL-terminated), timeouts.dns */

	void *cfg;                      /* the merged cfg_t, for later sections and dumps */

	/* the plugin chain and the policy (filters/chain.h, policy/policy.h) */
	char *plugin_dir;
	struct px_chain *chain;
	struct px_policy *policy;
	struct px_plugin_sections *plugins;   /* as written, for dumps */

	/* what a front end built for this generation (posternd: its TLS
	 * contexts), freed with it; see px_config_attach */
	void *attached;
	void (*attached_free)(void *);
	struct px_config *release_next;       /* on a releaser's queue */
};

/*
 * px_config_load - read path (+ conf.d beside it) and overrides into *out.
 * Returns 0, or -1 with one "file:line: message" line per error in err.
 */
int px_config_load(const char *path, const char *const *overrides, size_t noverrides,
		   struct px_config **out, char *err, size_t errlen);

/*
 * px_config_set_load_hook - fn runs on every generation px_config_load builds,
 * on the loading thread, before the generation is returned (at start and at
 * each reload). The program's own work on a new configuration goes there:
 * posternd resolves the backend name (proxy/backend_addr.c), since the
 * configuration itself knows no transport. NULL removes it.
 */
typedef void (*px_config_hook)(const struct px_config *cfg);
void px_config_set_load_hook(px_config_hook fn);

struct px_config *px_config_ref(struct px_config *cfg);
/* px_config_unref - the last reference frees the generation, or hands it to
 * the releaser (px_config_set_releaser) */
void px_config_unref(struct px_config *cfg);

/*
 * px_config_attach - give a generation that nobody else holds yet an object
 * that lives and dies with it (free_fn runs when the generation is freed);
 * -1 when one is attached already. px_config_attached - that object, or NULL.
 */
int px_config_attach(struct px_config *cfg, void *obj, void (*free_fn)(void *));
void *px_config_attached(const struct px_config *cfg);

/*
 * px_config_set_releaser - from now on the last px_config_unref of a
 * generation calls fn(cfg, arg) instead of freeing it, on whatever thread
 * dropped it; fn hands it to a thread that may block and that thread calls
 * px_config_free. posternd's I/O threads end sessions, so its main thread
 * frees generations (proxy/server.c). NULL: free at once (the default).
 */
typedef void (*px_config_releaser)(struct px_config *cfg, void *arg);
void px_config_set_releaser(px_config_releaser fn, void *arg);
/* px_config_free - free a released generation now (plugin unconfigure, cfg_free) */
void px_config_free(struct px_config *cfg);

/* px_config_dump - every effective setting as "name = value" lines, like postconf */
void px_config_dump(const struct px_config *cfg, FILE *fp);

/* px_milter_socket_check - NULL when v is a milter_socket value, else why not */
const char *px_milter_socket_check(const char *v);

/* px_config_is_relay_domain - case-insensitive exact match against relay_domains */
int px_config_is_relay_domain(const struct px_config *cfg, const char *domain);
/* px_config_is_trusted - client address lies in trusted_networks */
int px_config_is_trusted(const struct px_config *cfg, const struct sockaddr *client);

#endif
