/*
 * NAME
 *	example - Postern's example filter plugin
 * SUMMARY
 *	A small, complete plugin to copy from: a sender rule at MAIL, a size
 *	rule and a header rule at the end of DATA, a header added to every
 *	message it checked, and a per-session message counter.
 * SYNOPSIS
 *	plugin "example" {
 *	    reject_senders = "spammer@bad.test, @worse.test"
 *	    header         = "X-Postern-Test"
 *	    header_value   = "reject"
 *	    max_size       = 10M
 *	    add_header     = yes
 *	}
 * DESCRIPTION
 *	MAIL FROM:<addr> whose address is listed in reject_senders, or whose
 *	domain is listed as "@domain", is refused with 550 5.7.1.
 *
 *	At the end of DATA a message bigger than max_size (0 = no limit) is
 *	refused with 552 5.3.4; a message that carries the header field
 *	`header` with the value `header_value` (surrounding white space
 *	and case ignored) is refused with 550 5.7.1. Either rule records
 *	the result "example=match"; a message that passes records
 *	"example=pass". With add_header = yes every message the plugin looked
 *	at gets "X-Postern-Example: checked".
 *
 *	The policy can change what a result means without touching the
 *	plugin, e.g. policy { actions = {"example=match tag"} }.
 *
 *	This file uses only <postern/plugin.h>, exactly as a third party's
 *	plugin would; see doc/plugin-guide.md for the rules it follows.
 * BUILD
 *	cc -shared -fPIC $(pkg-config --cflags postern-plugin) \
 *	    -o example.so example.c
 */

/*
 * The only header a plugin may include from Postern. Everything else is
 * the C library. (In the source tree the build adds -I include and nothing
 * else; installed, the header lives in $(includedir)/postern/plugin.h and
 * pkg-config's --cflags point there.)
 */
#include <postern/plugin.h>

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * The host's services. load() stores the pointer once per process, before
 * anything else runs; it never changes afterwards, so every thread may read
 * it without a lock. It is the only global this plugin has: everything that
 * belongs to a configuration lives in struct example_conf, everything that
 * belongs to a session lives behind host->slot().
 */
static const struct px_host *host;

/*
 * The configuration struct. The host allocates conf_size zeroed bytes per
 * configuration generation, stores each option at its offsetof() (see the
 * table below), then calls configure(), which may fill the fields that are
 * not options ("derived state"). Hooks get it as `const void *conf` and
 * must treat it as read-only: many sessions share it, on many threads.
 */
struct example_conf {
	/* options, filled by the host */
	const char *const *reject_senders;   /* PX_OPT_LIST: NULL-terminated */
	const char *header;                  /* PX_OPT_STRING */
	const char *header_value;            /* PX_OPT_STRING */
	long long max_size;                  /* PX_OPT_SIZE: bytes, 0 = off */
	int add_header;                      /* PX_OPT_BOOL */

	/* derived state, built by configure(), freed by unconfigure() */
	char **senders;                      /* reject_senders, lower-cased */
	size_t nsenders;
};

/*
 * The option table: name, type, default (written as in the config file),
 * min and max (for INT, DURATION, SIZE; both 0 = no limit), where the value
 * goes, and one line of help for `postern check -v`. It ends with {0}.
 * The host rejects an unknown option, or a bad value, with the file and line.
 */
static const struct px_option example_options[] = {
	{ "reject_senders", PX_OPT_LIST, NULL, 0, 0,
	  offsetof(struct example_conf, reject_senders),
	  "addresses (a@b.test) or domains (@b.test) refused at MAIL with 550 5.7.1" },
	{ "header", PX_OPT_STRING, "X-Postern-Test", 0, 0,
	  offsetof(struct example_conf, header),
	  "header field whose value header_value refuses the message (\"\" = off)" },
	{ "header_value", PX_OPT_STRING, "reject", 0, 0,
	  offsetof(struct example_conf, header_value),
	  "value of that header field that refuses the message (case ignored)" },
	{ "max_size", PX_OPT_SIZE, "0", 0, 0,
	  offsetof(struct example_conf, max_size),
	  "refuse bigger messages with 552 5.3.4 (0 = no limit)" },
	{ "add_header", PX_OPT_BOOL, "yes", 0, 0,
	  offsetof(struct example_conf, add_header),
	  "add \"X-Postern-Example: checked\" to every message checked" },
	{ 0 }
};

/*
 * Per-session state, kept behind host->slot(). For one session, this
 * plugin's calls, on_reset and on_close never overlap, not even after a
 * hook overran its budget (the host then holds our next hooks of that
 * session back until the late one returns), so it needs no lock. Hooks of
 * different sessions do run at the same time, which is why this is not a
 * global.
 */
struct example_session {
	unsigned messages;          /* messages checked at data-end */
};

/* ---------------------------------------------------------- helpers --- */

/* lower_dup - a lower-cased copy of s (malloc), or NULL */
static char *lower_dup(const char *s)
{
	size_t n = strlen(s);
	char *d = malloc(n + 1);

	if (d == NULL)
		return NULL;
	for (size_t i = 0; i <= n; i++)
		d[i] = (char)tolower((unsigned char)s[i]);
	return d;
}

/* sender_listed - does addr match an entry (exact address, or "@domain")? */
static int sender_listed(const struct example_conf *c, const char *addr)
{
	const char *at = strrchr(addr, '@');

	for (size_t i = 0; i < c->nsenders; i++) {
		const char *e = c->senders[i];

		if (e[0] == '@') {
			if (at != NULL && strcasecmp(at, e) == 0)
				return 1;
		} else if (strcasecmp(addr, e) == 0) {
			return 1;
		}
	}
	return 0;
}

/* session - this session's state, created on first use; NULL if no memory */
static struct example_session *session(struct px_txn *txn)
{
	/*
	 * slot() is one pointer per plugin per session, NULL at first. What we
	 * put there is ours to free: on_close() does it. (For memory that only
	 * lives as long as the transaction, host->alloc() is simpler: the host
	 * frees it.)
	 */
	void **slot = host->slot(txn);

	if (*slot == NULL)
		*slot = calloc(1, sizeof(struct example_session));
	return *slot;
}

/*
 * value_is - is the raw header value v (vlen bytes, maybe folded, with the
 * white space after the colon) equal to want, ignoring surrounding white
 * space and case? Folding (CRLF before a space) counts as white space.
 */
static int value_is(const char *v, size_t vlen, const char *want)
{
	size_t wlen = strlen(want);

	while (vlen > 0 && isspace((unsigned char)*v)) {
		v++;
		vlen--;
	}
	while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
		vlen--;
	return vlen == wlen && strncasecmp(v, want, wlen) == 0;
}

/*
 * find_header - does the message carry header field `name` with value
 * `want`? header_count()/header_at() walk the header fields as received;
 * names and values are NOT NUL-terminated: use the lengths.
 */
static int find_header(struct px_txn *txn, const char *name, const char *want)
{
	size_t n = host->header_count(txn), len = strlen(name);

	for (size_t i = 0; i < n; i++) {
		const char *hn, *hv;
		size_t hnlen, hvlen;

		if (host->header_at(txn, i, &hn, &hnlen, &hv, &hvlen) != 0)
			continue;
		if (hnlen == len && strncasecmp(hn, name, len) == 0
		    && value_is(hv, hvlen, want))
			return 1;
	}
	return 0;
}

/* ------------------------------------------------------ life cycle --- */

/* example_load - once per process: keep the host's services */
static int example_load(const struct px_host *h, char *err, size_t errlen)
{
	/*
	 * The host's minor may be newer than ours (never older: the loader
	 * checked). A plugin that needs a service added in ABI 1.N would
	 * check h->abi_minor >= N here and fail with a message otherwise.
	 */
	if (h->abi_major != PX_ABI_MAJOR) {
		snprintf(err, errlen, "host ABI %u.%u, plugin built for %d.%d",
			 h->abi_major, h->abi_minor, PX_ABI_MAJOR, PX_ABI_MINOR);
		return -1;
	}
	host = h;
	return 0;
}

/* example_unconfigure - the generation is gone: free the derived state */
static void example_unconfigure(void *conf)
{
	struct example_conf *c = conf;

	for (size_t i = 0; i < c->nsenders; i++)
		free(c->senders[i]);
	free(c->senders);
	c->senders = NULL;
	c->nsenders = 0;
}

/*
 * example_configure - once per configuration generation (at start, then at
 * each reload): check the options together and build the derived state.
 * On -1 the host reports err (with the plugin's name) and, at a reload,
 * keeps running the previous generation; on start, it refuses to start.
 */
static int example_configure(void *conf, char *err, size_t errlen)
{
	struct example_conf *c = conf;
	size_t n = 0;

	for (const char *const *p = c->reject_senders; p != NULL && *p != NULL; p++)
		n++;
	c->senders = calloc(n + 1, sizeof(char *));
	if (c->senders == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *e = c->reject_senders[i];

		if (strchr(e, '@') == NULL || e[strlen(e) - 1] == '@') {
			snprintf(err, errlen, "reject_senders: '%s' is neither an "
				 "address (user@domain) nor a domain (@domain)", e);
			example_unconfigure(c);
			return -1;
		}
		c->senders[i] = lower_dup(e);
		if (c->senders[i] == NULL) {
			snprintf(err, errlen, "out of memory");
			example_unconfigure(c);
			return -1;
		}
		c->nsenders = i + 1;
	}
	/*
	 * Outside a session there is no txn: log() takes NULL here, and the
	 * line is prefixed with the plugin's name only.
	 */
	host->log(NULL, PX_PRIO_INFO,
		  "configured reject_senders=%zu header=\"%s\" header_value=\"%s\" "
		  "max_size=%lld add_header=%s", c->nsenders,
		  c->header ? c->header : "", c->header_value ? c->header_value : "",
		  c->max_size, c->add_header ? "yes" : "no");
	return 0;
}

/* ----------------------------------------------------------- hooks --- */

/*
 * example_mail - MAIL FROM: refuse listed senders.
 * get("mail.from") is the address without <>, "" for the null sender.
 */
static enum px_verdict example_mail(const void *conf, struct px_txn *txn)
{
	const struct example_conf *c = conf;
	const char *from = host->get(txn, "mail.from");
	char *props;
	size_t len;

	if (from == NULL || *from == '\0' || !sender_listed(c, from))
		return PX_NEXT;
	/*
	 * record() tells the policy (and Authentication-Results, for the
	 * registered methods spf, dkim, ...) what we found. "example" is not
	 * a registered method, so it shows in `postern test` and in the
	 * policy ("example=match"), not in Authentication-Results.
	 * alloc() memory lives until the transaction ends: nothing to free.
	 */
	len = strlen(from) + sizeof("smtp.mailfrom=");
	props = host->alloc(txn, len);
	if (props != NULL)
		snprintf(props, len, "smtp.mailfrom=%s", from);
	host->record(txn, "example", "match", props);
	host->log(txn, PX_PRIO_INFO, "rule=sender from=<%s>", from);
	/* set_reply: code, enhanced status code, one line of text */
	host->set_reply(txn, 550, "5.7.1", "Sender refused by the example plugin");
	return PX_REJECT;
}

/*
 * example_data_end - the whole message is readable: size rule, then the
 * header rule, then count it and (optionally) add our header.
 */
static enum px_verdict example_data_end(const void *conf, struct px_txn *txn)
{
	const struct example_conf *c = conf;
	struct example_session *s = session(txn);
	size_t size = host->message_size(txn);

	if (s != NULL)
		s->messages++;
	/*
	 * add_header() prepends a field to the message that goes to the
	 * backend; it is ignored when the message is refused. We add it first,
	 * so that in monitor mode (where a refusal only logs "would=...") the
	 * delivered message still shows it was checked.
	 */
	if (c->add_header && host->add_header(txn, "X-Postern-Example", "checked") != 0)
		host->log(txn, PX_PRIO_WARN, "add_header failed");

	if (c->max_size > 0 && (long long)size > c->max_size) {
		host->record(txn, "example", "match", NULL);
		host->log(txn, PX_PRIO_INFO, "rule=size size=%zu max_size=%lld",
			  size, c->max_size);
		host->set_reply(txn, 552, "5.3.4", "Message too big for the example plugin");
		return PX_REJECT;
	}

	if (c->header != NULL && *c->header != '\0' && c->header_value != NULL
	    && find_header(txn, c->header, c->header_value)) {
		/*
		 * Props are "ptype.property=value" words, as in
		 * Authentication-Results. alloc() memory lives until the
		 * transaction ends: nothing to free.
		 */
		size_t len = strlen(c->header) + strlen(c->header_value) + 16;
		char *props = host->alloc(txn, len);

		if (props != NULL) {
			int n = snprintf(props, len, "header.%s=%s", c->header,
					 c->header_value);

			for (int i = 7; i < n && props[i] != '='; i++)
				props[i] = (char)tolower((unsigned char)props[i]);
		}
		host->record(txn, "example", "match", props);
		host->log(txn, PX_PRIO_INFO, "rule=header header=%s", c->header);
		host->set_reply(txn, 550, "5.7.1", "Message refused by the example plugin");
		return PX_REJECT;
	}

	host->record(txn, "example", "pass", NULL);
	return PX_NEXT;
}

/* example_close - the session ended: log our count and free the slot */
static void example_close(const void *conf, struct px_txn *txn)
{
	void **slot = host->slot(txn);
	struct example_session *s = *slot;

	(void)conf;                     /* not needed here */
	if (s == NULL)
		return;                 /* no message reached data-end */
	host->log(txn, PX_PRIO_DEBUG, "session messages=%u", s->messages);
	free(s);
	*slot = NULL;
}

/* ------------------------------------------------------------ export --- */

/*
 * The one exported symbol. The loader reads abi_major/abi_minor first and
 * refuses the plugin unless the major equals the host's and the minor is
 * not newer; always write PX_ABI_MAJOR/PX_ABI_MINOR, never numbers, so a
 * rebuild against a new header records the right version.
 */
PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "example",
	.version = "1.0",
	.description = "example rules: sender list, size limit, header match",
	.options = example_options,
	.conf_size = sizeof(struct example_conf),
	.load = example_load,
	.configure = example_configure,
	.unconfigure = example_unconfigure,
	.on_mail = example_mail,
	.on_data_end = example_data_end,
	.on_close = example_close,
	/* on_connect, on_helo, on_rcpt, on_reset: NULL, so these stages
	 * cost nothing for this plugin */
};
