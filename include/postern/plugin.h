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
 * plugin's `on_error` action (tempfail by default, or accept). Hooks of
 * different sessions run at the same time: keep per-session state in
 * host->slot(), never in globals.
 *
 * Calls. A "call" is one hook invocation, from the moment it starts until it
 * returns, or, when it returns PX_PENDING, until resume() ends it. For one
 * session, one plugin's calls, on_reset and on_close never overlap: they run
 * one after another. After a call has overrun its budget ("late": the
 * session has gone on with on_error), that stays true:
 *   - the plugin's next hooks for that session are not called while the
 *     late call runs: they get on_error at once (log: error=busy);
 *   - an on_reset due meanwhile waits, and runs once after the late call
 *     ended; on_close runs after every call of the session has ended;
 *   - what the late call was given stays valid until it ends: the txn, its
 *     slot(), the strings from get(), the memory from alloc();
 *   - what it does is dropped, and logged "plugin=NAME late=yes": its
 *     verdict or resume(), record(), set_reply(), add_header(),
 *     remove_header(); get() answers NULL and the message services fail.
 * Hooks of different plugins of one session may run at the same time after
 * such an overrun (plugin A late, plugin B's next hook); they share nothing
 * but the host, which locks.
 * A plugin section with too many late calls still running (a fixed share of
 * the worker pool's bound) gets on_error at once, for every session, until
 * they end (log: error=overloaded), so that one hung library costs its own
 * plugin, never the service.
 * on_reset and on_close run on the session's event-loop thread: they must
 * not block (free memory, no I/O).
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
 *     PX_PENDING     the plugin started work of its own and will end the
 *                    call later, from any thread: 1.1, with
 *                    host->resume_call(txn, host->pending(txn), verdict);
 *                    1.0, with host->resume(txn, verdict)
 *
 * ABI history (newest first; keep this list, as Varnish's vrt.h does):
 *   1.3  the key-value store: host services store_get(), store_set(),
 *        store_incr(), store_del() (LMDB on one node, Redis for many; keys
 *        are the plugin's own, the host prefixes them with its name).
 *   1.2  the resolver: host services dns_query() / dns_free() (a blocking
 *        lookup through the process's one caching resolver, for hooks on
 *        workers), dns_query_async() (for hooks that answer PX_PENDING and
 *        for plugins' own threads), and result_count() / result_at() (the
 *        results recorded so far in the transaction, so DMARC can read
 *        SPF's and DKIM's). 1.0 and 1.1 plugins load and run unchanged.
 *   1.1  call lifetimes: host services pending() (the id of the call in
 *        flight, for an answer PX_PENDING) and resume_call() (ends the call
 *        it names; a late or unknown id is dropped and logged). The txn a
 *        plugin is handed is its own for the session (one pointer per
 *        plugin per session), so 1.0's resume(txn) ends exactly that
 *        plugin's call; the rules of "Calls" above. 1.0 plugins load and
 *        run unchanged.
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
#define PX_ABI_MINOR 3

enum px_verdict {
	PX_NEXT = 0,
	PX_ACCEPT,
	PX_TEMPFAIL,
	PX_REJECT,
	PX_DISCARD,
	PX_QUARANTINE,
	PX_DISCONNECT,
	PX_PENDING,
	PX_VERDICT_COUNT          /* not a verdict: anything >= this is invalid and gets
				     on_error. A hook returns PX_VERDICT_COUNT itself to say
				     "I failed" (a store call answered PX_STORE_ERROR): its
				     section's on_error decides (log error=store when a
				     store call of that hook failed) */
};

enum px_log_prio { PX_PRIO_ERR = 0, PX_PRIO_WARN, PX_PRIO_INFO, PX_PRIO_DEBUG };

/* The session and its current transaction, as a plugin sees it. Opaque.
 * Each plugin gets its own pointer for a session: the same one in every
 * hook, on_reset and on_close of that session, valid until on_close returns
 * (or, for a call still PENDING, until resume ends it). */
struct px_txn;

/* px_call_id - names one hook call of one session (ABI 1.1); never 0 */
typedef unsigned long long px_call_id;

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

/*
 * DNS (ABI 1.2). One resolver (libunbound) serves the whole process: its
 * cache is shared by every session and plugin, its upstream is the
 * `dns_forward` setting (else the system's resolv.conf), and every lookup
 * is bounded by `timeouts.dns`. The host warms the cache from the event
 * loop (HELO and MAIL FROM domains' TXT at MAIL, _dmarc and DKIM keys once
 * the headers are read), so the lookups a library makes from a worker
 * mostly hit it. No lookup holds a lock that another lookup waits on.
 */
enum px_dns_status {
	PX_DNS_OK = 0,            /* an answer with data (count >= 1) */
	PX_DNS_NXDOMAIN,          /* the name does not exist */
	PX_DNS_NODATA,            /* the name exists, no record of that type */
	PX_DNS_TEMPFAIL,          /* SERVFAIL, timeout, no upstream: try later */
	PX_DNS_ERROR              /* a bad query (name too long, bad type) */
};

/* px_dns_answer - one lookup's answer; read-only, freed with dns_free() */
struct px_dns_answer {
	enum px_dns_status status;
	int rcode;                /* the DNS rcode (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN);
				     2 for a timeout, -1 for PX_DNS_ERROR (not asked) */
	int type;                 /* the query type (1 A, 16 TXT, 28 AAAA, ...) */
	unsigned ttl;             /* of the answer's records, seconds */
	int secure;               /* DNSSEC-validated (only with a trust anchor) */
	size_t count;             /* records in data[] / len[] */
	const unsigned char *const *data;   /* each record's rdata, wire format */
	const size_t *len;
	const char *canonname;    /* after CNAMEs; NULL when none was followed */
	const unsigned char *packet;         /* the whole answer packet, wire format */
	size_t packet_len;        /* (libopendkim's DNS hooks take this) */
};

/* px_dns_cb - an asynchronous lookup's answer: once, on the event-loop
 * thread of the session of the txn given (or the resolver's own thread
 * when txn was NULL); ans is NULL only when out of memory. Free it with
 * dns_free(). */
typedef void (*px_dns_cb)(void *arg, struct px_dns_answer *ans);

/*
 * The key-value store (ABI 1.3): one per process, shared by every session
 * (and, with Redis, by every node of a cluster): `store = lmdb:/path` (the
 * default, under the spool directory) or `store = redis://[:PASSWORD@]HOST:PORT/DB`.
 * Calls block for at most `timeouts.store`: make them from hooks on workers,
 * never on an event-loop thread (from on_reset/on_close they fail at once).
 * A plugin's keys are its own: the host prefixes each with "PLUGIN-NAME:"
 * (px_plugin.name, not the section title); keys are at most 480 bytes with
 * that prefix, values are bytes (at most 4096). On PX_STORE_ERROR, return
 * PX_VERDICT_COUNT and let on_error decide.
 */
enum px_store_status {
	PX_STORE_OK = 0,
	PX_STORE_NOTFOUND,        /* no such key, or it expired */
	PX_STORE_ERROR            /* the store is down, slow (timeout) or full */
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
	 *   hostname (ours)  client.trusted (yes|no: in trusted_networks; 1.3)
	 * The string is a copy that stays valid until the call ends (the hook
	 * returns, or resume ends its PX_PENDING) or on_reset/on_close returns.
	 * A late call gets NULL. With txn NULL, in configure() only (1.3):
	 *   hostname  limits.message_size_max (of the generation being built)
	 * Every other service called with txn NULL (outside a session) does
	 * nothing and answers as for a call that is over.
	 */
	const char *(*get)(struct px_txn *txn, const char *key);

	/* set_reply - the SMTP reply for a TEMPFAIL/REJECT/DISCONNECT verdict;
	 * code 400..599, esc "X.Y.Z" (may be NULL), text one line */
	void (*set_reply)(struct px_txn *txn, int code, const char *esc, const char *text);

	/*
	 * record - a result for the policy and for Authentication-Results:
	 * method "spf", result "pass", props "smtp.mailfrom=example.com" (may be
	 * NULL or ""). A result recorded by plugin P can be matched by the
	 * policy as "P=result" (and as "method=result"); a policy rule acts on
	 * the results of the call that recorded them (not an earlier RCPT's).
	 * Results recorded at connect and helo belong to the session (every
	 * message of it carries them; a new connect stage, XCLIENT, or a new
	 * EHLO drops them); the others end with the transaction.
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

	/* alloc - zeroed memory, freed when the transaction ends (after
	 * on_reset) and no call of the session is still running; NULL when
	 * out of memory or outside a call */
	void *(*alloc)(struct px_txn *txn, size_t size);
	/* slot - this plugin's own pointer for this session (NULL at first);
	 * the same in every call of the session, late ones included (they
	 * never overlap); free what you keep there in on_close */
	void **(*slot)(struct px_txn *txn);
	/* resume - end this plugin's PX_PENDING call on txn (any thread, once;
	 * may come before the hook has returned). 1.0 plugins; 1.1 plugins
	 * should prefer resume_call. When the call is late, or there is none,
	 * the verdict is dropped and logged (late=yes). */
	void (*resume)(struct px_txn *txn, enum px_verdict verdict);

	/* ---- ABI 1.1 ---- */

	/* pending - in a hook that is about to answer PX_PENDING: the id of
	 * this call, for resume_call(); 0 when the plugin has no call in
	 * flight on txn */
	px_call_id (*pending)(struct px_txn *txn);
	/* resume_call - end the PX_PENDING call `call` (from pending()) with
	 * verdict; any thread, once. An id that is not the plugin's call in
	 * flight (already ended, resumed twice) is dropped and logged; a late
	 * call ends here too, its verdict dropped (late=yes). Until this
	 * returns, your thread may use the services on txn; after it, neither
	 * txn nor the id is yours. */
	void (*resume_call)(struct px_txn *txn, px_call_id call, enum px_verdict verdict);

	/* ---- ABI 1.2 ---- */

	/* dns_query - look name up (type 1 A, 16 TXT, 15 MX, 28 AAAA, 12 PTR,
	 * ...), blocking the calling thread for at most timeouts.dns; for
	 * hooks on workers, and plugins' own threads (txn may be NULL). Returns
	 * the status, and the answer in *ans (NULL on PX_DNS_ERROR when out of
	 * memory) that the caller frees with dns_free(). Never call it on an
	 * event-loop thread (hooks flagged to run there, on_reset, on_close,
	 * dns_query_async callbacks; on the resolver's own thread it answers
	 * PX_DNS_ERROR at once): use dns_query_async. */
	enum px_dns_status (*dns_query)(struct px_txn *txn, const char *name, int type,
					struct px_dns_answer **ans);
	void (*dns_free)(struct px_dns_answer *ans);
	/* dns_query_async - start a lookup; cb(arg, answer) runs once, later
	 * (never inside this call). 0, or -1 when it could not be started
	 * (cb is then never called). A txn whose session ends first still
	 * gets its callback; the txn is then only good for dns_free. */
	int (*dns_query_async)(struct px_txn *txn, const char *name, int type, px_dns_cb cb,
			       void *arg);
	/* result_count / result_at - the results recorded so far in this
	 * transaction (and at connect/helo for the session), in the order they
	 * were recorded: plugin name, method, result, props ("" when none).
	 * The strings live until the call ends. result_at returns 0, or -1
	 * when i is out of range. */
	size_t (*result_count)(struct px_txn *txn);
	int (*result_at)(struct px_txn *txn, size_t i, const char **plugin, const char **method,
			 const char **result, const char **props);

	/* ---- ABI 1.3 ---- */

	/* store_get - the value of key into buf (at most buflen bytes; *len
	 * gets its whole length, which may be more: then it is cut) */
	enum px_store_status (*store_get)(struct px_txn *txn, const char *key, void *buf,
					  size_t buflen, size_t *len);
	/* store_set - key = value for ttl_ms (0: no expiry) */
	enum px_store_status (*store_set)(struct px_txn *txn, const char *key, const void *value,
					  size_t len, unsigned long long ttl_ms);
	/* store_incr - atomically add delta to the integer at key (a missing
	 * or expired key counts as 0) and return the new value in *value;
	 * when the key is created by this call it expires after ttl_ms (0:
	 * never): a fixed window counter */
	enum px_store_status (*store_incr)(struct px_txn *txn, const char *key, long long delta,
					   unsigned long long ttl_ms, long long *value);
	/* store_del - remove key (OK when it was not there) */
	enum px_store_status (*store_del)(struct px_txn *txn, const char *key);
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
	/* on_reset - the transaction ended (after data-end, RSET, a new MAIL).
	 * On the session's event-loop thread; never while a call of this
	 * plugin runs on the session: behind a late call it is deferred until
	 * that call ends, runs once for the resets in between, and get()
	 * there answers NULL (the session may be in a later transaction). */
	void (*on_reset)(const void *conf, struct px_txn *txn);
	/* on_close - the session ended and every call on it has ended: free
	 * what slot() holds. On an event-loop thread. */
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
