/*
 * postern/plugin.h - the whole ABI between Postern and a filter plugin.
 *
 * A plugin is a shared object (built with -module -avoid-version) that
 * exports exactly one symbol, `px_plugin`, a struct px_plugin whose first two
 * fields are the ABI version it was built against. Postern loads it with
 * dlopen(RTLD_NOW | RTLD_LOCAL) and refuses it unless
 *     plugin.abi_major == PX_ABI_MAJOR  and  plugin.abi_minor <= PX_ABI_MINOR
 * (the refusal names both versions). A plugin includes this header only; it
 * never sees Postern's internals, sockets or threads.
 *
 * How hooks run. Each SMTP stage (connect, helo, mail, rcpt, data-end) runs
 * the plugins that hook it, in the order of their `plugin "NAME" { }`
 * sections in postern.conf + conf.d/. A hook runs on a worker thread, never
 * on an I/O thread, so it MAY block (a synchronous DNS or antivirus call);
 * each plugin has a time budget (`timeout`, default 10s). A hook that is too
 * slow, returns a value that is not a px_verdict, or fails, gets the
 * plugin's `on_error` action (tempfail by default, or accept). Hooks of one
 * session never run at the same time, but hooks of different sessions do:
 * keep per-session state in host->slot(), never in globals.
 *
 * What a hook returns decides the stage, unless the policy maps the results
 * the plugin recorded to another action (policy { actions = ... }):
 *     PX_NEXT        no objection; the next plugin runs
 *     PX_ACCEPT      stop this stage here: the rest of the chain is skipped
 *                    for this stage, and the command is accepted
 *     PX_TEMPFAIL    4xx (default 451 4.7.1); set the text with set_reply()
 *     PX_REJECT      5xx (default 550 5.7.1)
 *     PX_DISCARD     accept the message, then drop it (data-end; elsewhere = reject)
 *     PX_QUARANTINE  deliver with "X-Postern-Quarantine: yes" so the backend can file it
 *     PX_DISCONNECT  421 4.7.0 and close the session
 *     PX_PENDING     the plugin started work of its own and will call
 *                    host->resume(txn, verdict) later, from any thread
 *
 * ABI history (newest first; keep this list, as Varnish's vrt.h does):
 *   1.0  initial: stages connect/helo/mail/rcpt/data_end, reset, close;
 *        host services log, get, set_reply, record, add_header,
 *        remove_header, header_count, header_at, message_read,
 *        message_size, alloc, slot, resume.
 *
 * Rules for changing it: appending a host service or a hook at the END of
 * its struct bumps PX_ABI_MINOR; anything else (removal, reordering, a
 * changed meaning) bumps PX_ABI_MAJOR and resets the minor to 0.
 */
#ifndef POSTERN_PLUGIN_H
#define POSTERN_PLUGIN_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PX_ABI_MAJOR 1
#define PX_ABI_MINOR 0

enum px_verdict {
	PX_NEXT = 0,
	PX_ACCEPT,
	PX_TEMPFAIL,
	PX_REJECT,
	PX_DISCARD,
	PX_QUARANTINE,
	PX_DISCONNECT,
	PX_PENDING,
	PX_VERDICT_COUNT          /* not a verdict: anything >= this is invalid */
};

enum px_log_prio { PX_PRIO_ERR = 0, PX_PRIO_WARN, PX_PRIO_INFO, PX_PRIO_DEBUG };

/* The session and its current transaction, as a plugin sees it. Opaque. */
struct px_txn;

/*
 * Options. A plugin lists its options in a table ended by {0}; the host
 * reads them from the plugin's section (and from -o NAME.OPTION=value),
 * checks them, and fills the plugin's configuration struct (conf_size bytes,
 * zeroed) at each field's offset before calling configure():
 *     PX_OPT_STRING    const char *    (NULL when unset with no default)
 *     PX_OPT_INT       long long       (min..max)
 *     PX_OPT_BOOL      int             (yes/no, true/false, on/off, 1/0)
 *     PX_OPT_DURATION  long long, ms   (300s, 5m, 2h, 1d, 250ms; bare = seconds)
 *     PX_OPT_SIZE      long long bytes (10k, 5M, 1G; bare = bytes)
 *     PX_OPT_LIST      const char *const *, NULL-terminated ("a, b, c" in the file)
 * The memory behind strings and lists belongs to the host and lives as long
 * as this configuration generation.
 */
enum px_opt_type {
	PX_OPT_END = 0,
	PX_OPT_STRING,
	PX_OPT_INT,
	PX_OPT_BOOL,
	PX_OPT_DURATION,
	PX_OPT_SIZE,
	PX_OPT_LIST
};

struct px_option {
	const char *name;
	enum px_opt_type type;
	const char *dflt;         /* default, written as in the file; NULL = none */
	long long min, max;       /* INT, DURATION (ms), SIZE (bytes); both 0 = no limit */
	size_t offset;            /* offsetof(struct your_conf, field) */
	const char *help;         /* one line, shown by `postern check -v` */
};

/* Services the host offers. Every call takes the txn the hook was given. */
struct px_host {
	unsigned abi_major, abi_minor;

	/* log - a key=value line, prefixed with the session id and plugin name;
	 * txn may be NULL (in load and configure, where there is no session) */
	void (*log)(struct px_txn *txn, enum px_log_prio prio, const char *fmt, ...)
		__attribute__((format(printf, 3, 4)));

	/*
	 * get - a fact about the session; NULL when unknown. Keys:
	 *   session.id  client.addr  client.port  client.name  helo  tls (yes|no)
	 *   tls.version  tls.cipher  auth.login  mail.from ("" for <>)
	 *   rcpt (the recipient being checked, at rcpt)  rcpt.count
	 *   rcpt.N (N = 0 .. rcpt.count-1, accepted so far)  message.size
	 *   hostname (ours)
	 * The string stays valid until the hook returns.
	 */
	const char *(*get)(struct px_txn *txn, const char *key);

	/* set_reply - the SMTP reply for a TEMPFAIL/REJECT/DISCONNECT verdict;
	 * code 400..599, esc "X.Y.Z" (may be NULL), text one line */
	void (*set_reply)(struct px_txn *txn, int code, const char *esc, const char *text);

	/*
	 * record - a result for the policy and for Authentication-Results:
	 * method "spf", result "pass", props "smtp.mailfrom=example.com" (may be
	 * NULL or ""). A result recorded by plugin P can be matched by the
	 * policy as "P=result" (and as "method=result").
	 */
	void (*record)(struct px_txn *txn, const char *method, const char *result,
		       const char *props);

	/* add_header - prepend "Name: value" to the message (data-end only); 0 or -1 */
	int (*add_header)(struct px_txn *txn, const char *name, const char *value);
	/* remove_header - drop the index-th (0-based) header called name as
	 * counted by header_at, or every one when index < 0 (data-end only) */
	int (*remove_header)(struct px_txn *txn, const char *name, int index);
	/* header_count / header_at - the message's header fields as received;
	 * value is raw (folded, without the CRLF that ends the field) */
	size_t (*header_count)(struct px_txn *txn);
	int (*header_at)(struct px_txn *txn, size_t i, const char **name, size_t *namelen,
			 const char **value, size_t *valuelen);
	/* message_read - the message as received (headers and body, CRLF lines,
	 * unstuffed); returns bytes read, 0 at the end, -1 on error (data-end only) */
	ssize_t (*message_read)(struct px_txn *txn, size_t offset, void *buf, size_t len);
	size_t (*message_size)(struct px_txn *txn);

	/* alloc - zeroed memory freed when the transaction ends */
	void *(*alloc)(struct px_txn *txn, size_t size);
	/* slot - this plugin's own pointer for this session (NULL at first);
	 * free what you keep there in on_close */
	void **(*slot)(struct px_txn *txn);
	/* resume - finish a hook that returned PX_PENDING (any thread, once) */
	void (*resume)(struct px_txn *txn, enum px_verdict verdict);
};

typedef enum px_verdict (*px_hook_fn)(const void *conf, struct px_txn *txn);

struct px_plugin {
	/* These two come first and never move: the loader reads them first. */
	unsigned abi_major, abi_minor;
	const char *name;           /* the default section title */
	const char *version;
	const char *description;
	const struct px_option *options;   /* may be NULL */
	size_t conf_size;                  /* bytes of your configuration struct */

	/* load - once per process, before any configure; keep host */
	int (*load)(const struct px_host *host, char *err, size_t errlen);
	/* configure - once per configuration generation (start, each reload):
	 * conf holds the parsed options; build derived state in it. 0 or -1 */
	int (*configure)(void *conf, char *err, size_t errlen);
	/* unconfigure - the generation is gone: free what configure built */
	void (*unconfigure)(void *conf);
	void (*unload)(void);

	/* One hook per stage; NULL = not interested (costs nothing). */
	px_hook_fn on_connect;
	px_hook_fn on_helo;
	px_hook_fn on_mail;
	px_hook_fn on_rcpt;
	px_hook_fn on_data_end;     /* the message is readable */
	/* on_reset - the transaction ended (after data-end, RSET, a new MAIL) */
	void (*on_reset)(const void *conf, struct px_txn *txn);
	/* on_close - the session ended: free what slot() holds */
	void (*on_close)(const void *conf, struct px_txn *txn);
	/* ABI 1.1+ hooks are appended here. */
};

/* Define your plugin with this; it is the one symbol the loader looks for. */
#define PX_PLUGIN_EXPORT __attribute__((visibility("default"))) const struct px_plugin px_plugin
#define PX_PLUGIN_SYMBOL "px_plugin"

#ifdef __cplusplus
}
#endif

#endif /* POSTERN_PLUGIN_H */
