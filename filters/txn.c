/*
 * NAME
 *	txn - the session and transaction as the chain and plugins see them
 * DESCRIPTION
 *	See txn.h. This file holds the txn's lifetime, the calls in flight on
 *	it, on_reset/on_close, the front end's mutators, and the host services
 *	offered to plugins (struct px_host).
 * DIAGNOSTICS
 *	SID plugin=NAME late=yes dropped=record|set_reply|add_header|remove_header ...
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "chain.h"
#include "resolver.h"
#include "spool.h"
#include "store.h"
#include "txn.h"

const char *const px_stage_names[PX_STAGE_COUNT] = {
	"connect", "helo", "mail", "rcpt", "data-end"
};

__thread const char *px_current_plugin_name;

/* A list of allocations freed together (per transaction or per invocation) */
struct px_mem {
	struct px_mem *next;
	max_align_t data[];
};

/* mem_alloc - zeroed memory on list *head */
static void *mem_alloc(struct px_mem **head, size_t size)
{
	struct px_mem *m = calloc(1, sizeof(*m) + size);

	if (m == NULL)
		return NULL;
	m->next = *head;
	*head = m;
	return m->data;
}

/* mem_strndup - a NUL-terminated copy on list *head */
static char *mem_strndup(struct px_mem **head, const char *s, size_t n)
{
	char *p = mem_alloc(head, n + 1);

	if (p != NULL)
		memcpy(p, s, n);
	return p;
}

/* px_mem_free - the whole list */
void px_mem_free(struct px_mem *m)
{
	struct px_mem *next;

	for (; m != NULL; m = next) {
		next = m->next;
		free(m);
	}
}

/* px_txn_new - an empty session, with one handle per plugin */
struct px_txn *px_txn_new(struct px_chain *chain, const char *sid, const char *hostname)
{
	struct px_txn *t = calloc(1, sizeof(*t));
	size_t i, n = chain != NULL ? chain->n : 0;

	if (t == NULL)
		return NULL;
	if (n > 0 && (t->plugins = calloc(n, sizeof(*t->plugins))) == NULL) {
		free(t);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		t->plugins[i].handle.txn = t;
		t->plugins[i].handle.plugin = (unsigned)i;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->refs = 1;
	t->chain = chain ? px_chain_ref(chain) : NULL;
	snprintf(t->sid, sizeof(t->sid), "%s", sid);
	snprintf(t->hostname, sizeof(t->hostname), "%s", hostname);
	return t;
}

struct px_txn *px_txn_ref(struct px_txn *t)
{
	__atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
	return t;
}

struct px_txn *px_txn_for(struct px_txn *t, unsigned idx)
{
	return (struct px_txn *)(void *)&t->plugins[idx].handle;
}

/* mem_append - move list *from to the front of *to */
static void mem_append(struct px_mem **to, struct px_mem **from)
{
	struct px_mem *m = *from;

	if (m == NULL)
		return;
	while (m->next != NULL)
		m = m->next;
	m->next = *to;
	*to = *from;
	*from = NULL;
}

#define SESSION_STAGES ((1u << PX_STAGE_CONNECT) | (1u << PX_STAGE_HELO))

/* results_drop - free the results of the stages in mask (lock held) */
static void results_drop(struct px_txn *t, unsigned mask)
{
	struct px_result **pp = &t->results, *r;

	while ((r = *pp) != NULL) {
		if (!(mask & (1u << r->stage))) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		free(r->method);
		free(r->result);
		free(r->props);
		free(r);
	}
}

/* px_txn_results_restart - see txn.h */
void px_txn_results_restart(struct px_txn *t, enum px_stage stage)
{
	if (stage != PX_STAGE_CONNECT && stage != PX_STAGE_HELO)
		return;
	pthread_mutex_lock(&t->lock);
	results_drop(t, stage == PX_STAGE_CONNECT ? SESSION_STAGES : 1u << PX_STAGE_HELO);
	pthread_mutex_unlock(&t->lock);
}

/* px_txn_result_seq - see txn.h */
unsigned long long px_txn_result_seq(struct px_txn *t)
{
	unsigned long long seq;

	pthread_mutex_lock(&t->lock);
	seq = t->next_result_seq;
	pthread_mutex_unlock(&t->lock);
	return seq;
}

/* txn_clear - forget the transaction's data (lock held): its results (the
 * session's too when all), header edits, envelope. The arena goes now only
 * if no call is in flight: a late hook may still write to it. */
static void txn_clear(struct px_txn *t, int all)
{
	struct px_added_header *h;
	size_t i;

	results_drop(t, all ? ~0u : ~SESSION_STAGES);
	while ((h = t->added) != NULL) {
		t->added = h->next;
		free(h->name);
		free(h->value);
		free(h);
	}
	for (i = 0; i < t->nrcpts; i++)
		free(t->rcpts[i]);
	free(t->rcpts);
	t->rcpts = NULL;
	t->nrcpts = 0;
	free(t->mail_from);
	free(t->rcpt);
	t->mail_from = t->rcpt = NULL;
	px_headers_free(&t->headers);
	t->spool = NULL;
	if (t->calls > 0) {
		mem_append(&t->old_arenas, &t->arena);
	} else {
		px_mem_free(t->arena);
		t->arena = NULL;
	}
	t->have_view = 0;
	t->txn_allowed = 0;
	t->reply_code = 0;
}

/* px_txn_unref - last reference: plugins' on_close, then free. No call is
 * in flight then: each holds a reference. */
void px_txn_unref(struct px_txn *t)
{
	if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (t->chain != NULL)
		px_chain_notify(t->chain, t, 1);
	txn_clear(t, 1);
	px_mem_free(t->old_arenas);
	if (t->chain != NULL)
		px_chain_unref(t->chain);
	free(t->plugins);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* px_txn_reset - the transaction ended */
void px_txn_reset(struct px_txn *t)
{
	if (t->chain != NULL)
		px_chain_notify(t->chain, t, 0);
	pthread_mutex_lock(&t->lock);
	txn_clear(t, 0);
	pthread_mutex_unlock(&t->lock);
}

/* notify_run - one plugin's on_reset or on_close, its services set up */
static void notify_run(struct px_txn *t, unsigned idx, int closing, enum px_notify how)
{
	const struct px_chain_entry *e = &t->chain->v[idx];
	struct px_txn_plugin *ps = &t->plugins[idx];
	struct px_mem *mem;

	pthread_mutex_lock(&t->lock);
	ps->notify = how;
	pthread_mutex_unlock(&t->lock);
	if (closing)
		e->plugin->on_close(e->conf, px_txn_for(t, idx));
	else
		e->plugin->on_reset(e->conf, px_txn_for(t, idx));
	pthread_mutex_lock(&t->lock);
	ps->notify = PX_NOTIFY_NONE;
	mem = ps->notify_mem;
	ps->notify_mem = NULL;
	pthread_mutex_unlock(&t->lock);
	px_mem_free(mem);
}

/* px_txn_notify - on_reset now, or when the plugin's call in flight ends */
void px_txn_notify(struct px_txn *t, unsigned idx, int closing)
{
	const struct px_plugin *p = t->chain->v[idx].plugin;
	int due;

	if ((closing ? p->on_close : p->on_reset) == NULL)
		return;
	pthread_mutex_lock(&t->lock);
	due = !closing && t->plugins[idx].call != NULL;
	if (due)
		t->plugins[idx].reset_due = 1;
	pthread_mutex_unlock(&t->lock);
	if (!due)
		notify_run(t, idx, closing, PX_NOTIFY_NOW);
}

/* px_txn_call_begin - one call per plugin per txn at a time */
int px_txn_call_begin(struct px_txn *t, struct px_invocation *inv)
{
	struct px_txn_plugin *ps = &t->plugins[inv->plugin];
	int rc = -1;

	pthread_mutex_lock(&t->lock);
	if (ps->call == NULL) {
		inv->txn = px_txn_ref(t);
		inv->id = ++t->next_call_id;
		ps->call = inv;
		t->calls++;
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* px_txn_call_end - the deferred on_reset, the old arenas, the reference */
void px_txn_call_end(struct px_txn *t, struct px_invocation *inv)
{
	struct px_txn_plugin *ps = &t->plugins[inv->plugin];
	struct px_mem *old = NULL, *mem;
	int due;

	pthread_mutex_lock(&t->lock);
	if (ps->call == inv)
		ps->call = NULL;
	due = ps->reset_due;
	ps->reset_due = 0;
	mem = inv->mem;
	inv->mem = NULL;
	pthread_mutex_unlock(&t->lock);
	px_mem_free(mem);
	if (due)
		notify_run(t, inv->plugin, 0, PX_NOTIFY_DEFERRED);
	pthread_mutex_lock(&t->lock);
	if (--t->calls == 0) {
		old = t->old_arenas;
		t->old_arenas = NULL;
	}
	pthread_mutex_unlock(&t->lock);
	px_mem_free(old);
	inv->txn = NULL;
	px_txn_unref(t);
}

/* set_str - replace a fixed-size string field under the lock */
static void set_str(struct px_txn *t, char *field, size_t size, const char *value)
{
	pthread_mutex_lock(&t->lock);
	snprintf(field, size, "%s", value ? value : "");
	pthread_mutex_unlock(&t->lock);
}

void px_txn_set_client(struct px_txn *t, const char *addr, unsigned port, const char *name)
{
	set_str(t, t->client_addr, sizeof(t->client_addr), addr);
	set_str(t, t->client_name, sizeof(t->client_name), name ? name : "unknown");
	t->client_port = port;
}

void px_txn_set_trusted(struct px_txn *t, int trusted)
{
	pthread_mutex_lock(&t->lock);
	t->trusted = trusted != 0;
	pthread_mutex_unlock(&t->lock);
}

void px_txn_set_helo(struct px_txn *t, const char *helo)
{
	set_str(t, t->helo, sizeof(t->helo), helo);
}

void px_txn_set_tls(struct px_txn *t, const char *version, const char *cipher)
{
	set_str(t, t->tls_version, sizeof(t->tls_version), version);
	set_str(t, t->tls_cipher, sizeof(t->tls_cipher), cipher);
	t->tls = version != NULL;
}

void px_txn_set_login(struct px_txn *t, const char *login)
{
	set_str(t, t->auth_login, sizeof(t->auth_login), login);
}

/* replace_dup - *field = strdup(value) under the lock */
static void replace_dup(struct px_txn *t, char **field, const char *value)
{
	char *copy = value ? strdup(value) : NULL;

	pthread_mutex_lock(&t->lock);
	free(*field);
	*field = copy;
	pthread_mutex_unlock(&t->lock);
}

void px_txn_set_mail(struct px_txn *t, const char *from)
{
	replace_dup(t, &t->mail_from, from);
}

void px_txn_set_rcpt(struct px_txn *t, const char *rcpt)
{
	replace_dup(t, &t->rcpt, rcpt);
}

/* px_txn_add_rcpt - an accepted recipient; 0 or -1 */
int px_txn_add_rcpt(struct px_txn *t, const char *rcpt)
{
	char *copy = strdup(rcpt), **v;

	if (copy == NULL)
		return -1;
	pthread_mutex_lock(&t->lock);
	v = realloc(t->rcpts, (t->nrcpts + 1) * sizeof(*v));
	if (v != NULL) {
		v[t->nrcpts++] = copy;
		t->rcpts = v;
	}
	pthread_mutex_unlock(&t->lock);
	if (v == NULL)
		free(copy);
	return v ? 0 : -1;
}

/* px_txn_set_message - borrow the spool, index the headers */
int px_txn_set_message(struct px_txn *t, struct px_spool *spool)
{
	int rc;

	pthread_mutex_lock(&t->lock);
	px_headers_free(&t->headers);
	t->spool = spool;
	rc = px_headers_index(&t->headers, spool);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* px_txn_record - append a result (lock held by the caller or not needed) */
void px_txn_record(struct px_txn *t, unsigned plugin, enum px_stage stage, const char *method,
		   const char *result, const char *props)
{
	struct px_result *r = calloc(1, sizeof(*r)), **tail;

	if (r == NULL)
		return;
	r->plugin = plugin;
	r->stage = stage;
	r->seq = t->next_result_seq++;
	r->method = strdup(method);
	r->result = strdup(result);
	r->props = props && *props ? strdup(props) : NULL;
	for (tail = &t->results; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
}

void px_txn_clear_reply(struct px_txn *t)
{
	pthread_mutex_lock(&t->lock);
	t->reply_code = 0;
	t->reply_esc[0] = t->reply_text[0] = '\0';
	pthread_mutex_unlock(&t->lock);
}

/* ---------------------------------------------------------- host services */

enum svc_state {
	SVC_NONE,                 /* the plugin has no call here: nothing to act on */
	SVC_LATE,                 /* a late call, or a deferred on_reset */
	SVC_LIVE                  /* a call within its budget, or on_reset/on_close now */
};

/* What a service call may do, found from the plugin's handle */
struct svc {
	struct px_txn *t;
	unsigned plugin;
	enum svc_state st;
	int hook;                 /* inside a hook call (not on_reset/on_close) */
	enum px_stage stage;      /* of the hook call */
	struct px_mem **mem;      /* where copies for the caller go */
};

/* no_txn - what a service called with txn NULL sees: nothing to act on */
static struct px_txn no_txn = { .lock = PTHREAD_MUTEX_INITIALIZER };

/* svc_enter - lock the txn behind handle; say how far its caller may act
 * (NULL: no session, SVC_NONE) */
static struct px_txn *svc_enter(struct px_txn *handle, struct svc *s)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	struct px_txn_plugin *ps;
	struct px_invocation *inv;

	memset(s, 0, sizeof(*s));
	if (handle == NULL) {         /* load/configure, a plugin's own thread: no session */
		s->t = &no_txn;
		pthread_mutex_lock(&s->t->lock);
		return s->t;
	}
	s->t = h->txn;
	s->plugin = h->plugin;
	pthread_mutex_lock(&s->t->lock);
	ps = &s->t->plugins[h->plugin];
	inv = ps->call;
	if (ps->notify != PX_NOTIFY_NONE) {
		s->st = ps->notify == PX_NOTIFY_NOW ? SVC_LIVE : SVC_LATE;
		s->mem = &ps->notify_mem;
	} else if (inv != NULL) {
		s->st = inv->stale ? SVC_LATE : SVC_LIVE;
		s->hook = 1;
		s->stage = inv->stage;
		s->mem = &inv->mem;
	}
	return s->t;
}

static void svc_leave(struct svc *s)
{
	pthread_mutex_unlock(&s->t->lock);
}

/* acting - may the caller change the transaction (a live hook)? A late
 * caller's act is dropped and logged (lock held) */
static int acting(struct svc *s, const char *what, const char *detail)
{
	char q[160];

	if (s->st == SVC_LIVE && s->hook)
		return 1;
	if (s->st == SVC_LATE)
		px_log(PX_LOG_INFO, s->t->sid, "plugin=%s late=yes dropped=%s%s%s",
		       s->t->chain->v[s->plugin].name, what, detail ? " what=" : "",
		       detail ? px_log_quote(q, sizeof(q), detail, strlen(detail)) : "");
	return 0;
}

static void host_log(struct px_txn *handle, enum px_log_prio prio, const char *fmt, ...)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	enum px_log_level level = (enum px_log_level)(prio > PX_PRIO_DEBUG ? PX_PRIO_DEBUG : prio);
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (handle == NULL)             /* load, configure: no session */
		px_log(level, NULL, "plugin=%s %s",
		       px_current_plugin_name ? px_current_plugin_name : "?", line);
	else                            /* sid and chain are fixed for the txn's life */
		px_log(level, h->txn->sid, "plugin=%s %s", h->txn->chain->v[h->plugin].name, line);
}

/* fact - the value behind a key (lock held); scratch for numbers */
static const char *fact(struct px_txn *t, const char *key, char *num, size_t numlen)
{
	unsigned long i;
	char *end;

	if (!strcmp(key, "session.id")) return t->sid;
	if (!strcmp(key, "hostname")) return t->hostname;
	if (!strcmp(key, "client.addr")) return t->client_addr;
	if (!strcmp(key, "client.name")) return t->client_name;
	if (!strcmp(key, "helo")) return t->helo[0] ? t->helo : NULL;
	if (!strcmp(key, "tls")) return t->tls ? "yes" : "no";
	if (!strcmp(key, "tls.version")) return t->tls ? t->tls_version : NULL;
	if (!strcmp(key, "tls.cipher")) return t->tls ? t->tls_cipher : NULL;
	if (!strcmp(key, "auth.login")) return t->auth_login[0] ? t->auth_login : NULL;
	if (!strcmp(key, "client.trusted")) return t->trusted ? "yes" : "no";
	if (!strcmp(key, "mail.from")) return t->mail_from;
	if (!strcmp(key, "rcpt")) return t->rcpt;
	if (!strcmp(key, "client.port")) {
		snprintf(num, numlen, "%u", t->client_port);
		return num;
	}
	if (!strcmp(key, "rcpt.count")) {
		snprintf(num, numlen, "%zu", t->nrcpts);
		return num;
	}
	if (!strcmp(key, "message.size")) {
		if (t->spool == NULL)
			return NULL;
		snprintf(num, numlen, "%zu", px_spool_size(t->spool));
		return num;
	}
	if (!strncmp(key, "rcpt.", 5) && key[5] >= '0' && key[5] <= '9') {
		i = strtoul(key + 5, &end, 10);
		return (*end == '\0' && i < t->nrcpts) ? t->rcpts[i] : NULL;
	}
	return NULL;
}

/* host_get - a copy of a fact, owned by the call (or on_reset/on_close) */
static const char *host_get(struct px_txn *handle, const char *key)
{
	struct svc s;
	struct px_txn *t;
	const char *v;
	char *copy = NULL, num[32];

	if (handle == NULL)           /* configure(): the generation's facts */
		return px_chain_config_fact(key);
	t = svc_enter(handle, &s);
	if (s.st == SVC_LIVE && (v = fact(t, key, num, sizeof(num))) != NULL)
		copy = mem_strndup(s.mem, v, strlen(v));
	svc_leave(&s);
	return copy;
}

static void host_set_reply(struct px_txn *handle, int code, const char *esc, const char *text)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);

	if (acting(&s, "set_reply", text) && code >= 400 && code <= 599) {
		t->reply_code = code;
		snprintf(t->reply_esc, sizeof(t->reply_esc), "%s", esc ? esc : "");
		snprintf(t->reply_text, sizeof(t->reply_text), "%s", text ? text : "");
	}
	svc_leave(&s);
}

static void host_record(struct px_txn *handle, const char *method, const char *result,
			const char *props)
{
	struct svc s;
	struct px_txn *t;
	char what[128];

	if (method == NULL || result == NULL || !*method || !*result)
		return;
	snprintf(what, sizeof(what), "%s=%s", method, result);
	t = svc_enter(handle, &s);
	if (acting(&s, "record", what))
		px_txn_record(t, s.plugin, s.stage, method, result, props);
	svc_leave(&s);
}

/* header_ok - a field name a plugin may add (printable, no ':'), and a value
 * whose only line breaks are folds (CRLF followed by a space or tab) */
static int header_ok(const char *name, const char *value)
{
	const char *p;

	if (name == NULL || value == NULL || *name == '\0' || strlen(name) > 76)
		return 0;
	for (p = name; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == ':')
			return 0;
	for (p = value; *p; p++) {
		if (*p == '\n')
			return 0;
		if (*p == '\r') {
			if (p[1] != '\n' || (p[2] != ' ' && p[2] != '\t'))
				return 0;
			p++;
		}
	}
	return 1;
}

/* added_append - one more header to prepend (lock held) */
static int added_append(struct px_txn *t, const char *name, const char *value)
{
	struct px_added_header *h = calloc(1, sizeof(*h)), **tail;

	if (h == NULL || (h->name = strdup(name)) == NULL || (h->value = strdup(value)) == NULL) {
		if (h)
			free(h->name);
		free(h);
		return -1;
	}
	for (tail = &t->added; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = h;
	return 0;
}

/* px_txn_add_header - host side */
int px_txn_add_header(struct px_txn *t, const char *name, const char *value)
{
	int rc;

	pthread_mutex_lock(&t->lock);
	rc = added_append(t, name, value);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void px_txn_tag(struct px_txn *t, const char *what)
{
	px_txn_add_header(t, "X-Postern-Tag", what);
}

void px_txn_quarantine(struct px_txn *t, const char *plugin)
{
	char v[128];

	snprintf(v, sizeof(v), "yes (%s)", plugin);
	px_txn_add_header(t, "X-Postern-Quarantine", v);
}

static int host_add_header(struct px_txn *handle, const char *name, const char *value)
{
	struct svc s;
	struct px_txn *t;
	int rc = -1;

	if (!header_ok(name, value))
		return -1;
	t = svc_enter(handle, &s);
	if (acting(&s, "add_header", name))
		rc = added_append(t, name, value);
	svc_leave(&s);
	return rc;
}

static int host_remove_header(struct px_txn *handle, const char *name, int index)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	size_t i;
	int seen = 0, rc = -1;

	if (name != NULL && acting(&s, "remove_header", name)) {
		for (i = 0; i < t->headers.n; i++) {
			if (!px_header_name_is(&t->headers, i, name))
				continue;
			if (index < 0 || seen++ == index) {
				t->headers.v[i].removed = 1;
				rc = 0;
			}
		}
	}
	svc_leave(&s);
	return rc;
}

/* reading - may the caller read the message (a live hook)? (lock held) */
static int reading(const struct svc *s)
{
	return s->st == SVC_LIVE && s->hook;
}

static size_t host_header_count(struct px_txn *handle)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	size_t n = reading(&s) ? t->headers.n : 0;

	svc_leave(&s);
	return n;
}

static int host_header_at(struct px_txn *handle, size_t i, const char **name, size_t *namelen,
			  const char **value, size_t *valuelen)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	const char *v;
	int rc = -1;

	if (reading(&s) && i < t->headers.n) {
		*namelen = t->headers.v[i].namelen;
		*name = mem_strndup(s.mem, t->headers.text + t->headers.v[i].off, *namelen);
		v = px_header_value(&t->headers, i, valuelen);
		*value = mem_strndup(s.mem, v, *valuelen);
		rc = (*name && *value) ? 0 : -1;
	}
	svc_leave(&s);
	return rc;
}

static ssize_t host_message_read(struct px_txn *handle, size_t off, void *buf, size_t len)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	ssize_t n = -1;

	if (reading(&s) && t->spool != NULL)
		n = px_spool_read(t->spool, off, buf, len);
	svc_leave(&s);
	return n;
}

static size_t host_message_size(struct px_txn *handle)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	size_t n = 0;

	if (reading(&s) && t->spool != NULL)
		n = px_spool_size(t->spool);
	svc_leave(&s);
	return n;
}

/* host_alloc - the transaction's arena, late calls included: it is not
 * freed while any call is in flight */
static void *host_alloc(struct px_txn *handle, size_t size)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	void *p = NULL;

	if (s.st != SVC_NONE)
		p = mem_alloc(&t->arena, size);
	svc_leave(&s);
	return p;
}

/* host_slot - per plugin, per session; the same for a late call, since a
 * plugin's calls on one session never overlap */
static void **host_slot(struct px_txn *handle)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	static _Thread_local void *no_slot;

	if (h == NULL) {              /* no session: a scratch slot of this thread */
		no_slot = NULL;
		return &no_slot;
	}
	return &h->txn->plugins[h->plugin].slot;
}

/* ------------------------------------------------------ DNS, results (1.2) */

/* host_dns_query - blocking; any thread but an event loop's; txn may be NULL */
static enum px_dns_status host_dns_query(struct px_txn *handle, const char *name, int type,
					 struct px_dns_answer **ans)
{
	return px_dns_lookup(name, type, ans);
}

/* An asynchronous lookup holds a reference on its txn until the answer has
 * been handed over, so the txn outlives a session that ends first */
struct dns_wait {
	px_dns_cb cb;
	void *arg;
	struct px_txn *t;         /* referenced; NULL for txn NULL */
};

/* dns_wait_done - on the session's loop (or the resolver's thread) */
static void dns_wait_done(void *arg, struct px_dns_answer *ans)
{
	struct dns_wait *w = arg;

	w->cb(w->arg, ans);
	px_txn_unref(w->t);
	free(w);
}

/* dns_wait_drop - the resolver stopped before the answer could be delivered */
static void dns_wait_drop(void *arg)
{
	struct dns_wait *w = arg;

	px_txn_unref(w->t);
	free(w);
}

static int host_dns_query_async(struct px_txn *handle, const char *name, int type,
				px_dns_cb cb, void *arg)
{
	const struct px_txn_handle *h = (const struct px_txn_handle *)(const void *)handle;
	struct dns_wait *w;
	struct event_base *base = NULL;

	if (cb == NULL || (w = calloc(1, sizeof(*w))) == NULL)
		return -1;
	w->cb = cb;
	w->arg = arg;
	if (h != NULL) {
		w->t = px_txn_ref(h->txn);
		base = px_txn_base(h->txn);
	}
	if (px_dns_lookup_async(base, name, type, dns_wait_done, dns_wait_drop, w) < 0) {
		px_txn_unref(w->t);
		free(w);
		return -1;
	}
	return 0;
}

/* host_result_count - results recorded so far, for a live call */
static size_t host_result_count(struct px_txn *handle)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	const struct px_result *r;
	size_t n = 0;

	if (s.st == SVC_LIVE)
		for (r = t->results; r != NULL; r = r->next)
			n++;
	svc_leave(&s);
	return n;
}

/* host_result_at - the i-th, as copies owned by the call */
static int host_result_at(struct px_txn *handle, size_t i, const char **plugin,
			  const char **method, const char **result, const char **props)
{
	struct svc s;
	struct px_txn *t = svc_enter(handle, &s);
	const struct px_result *r = NULL;
	const char *name;
	int rc = -1;

	if (s.st == SVC_LIVE)
		for (r = t->results; r != NULL && i > 0; r = r->next)
			i--;
	if (r != NULL) {
		name = t->chain != NULL ? t->chain->v[r->plugin].name : "";
		*plugin = mem_strndup(s.mem, name, strlen(name));
		*method = mem_strndup(s.mem, r->method, strlen(r->method));
		*result = mem_strndup(s.mem, r->result, strlen(r->result));
		*props = mem_strndup(s.mem, r->props ? r->props : "", r->props ? strlen(r->props) : 0);
		rc = *plugin && *method && *result && *props ? 0 : -1;
	}
	svc_leave(&s);
	return rc;
}

void px_txn_set_base(struct px_txn *t, struct event_base *base)
{
	__atomic_store_n(&t->base, base, __ATOMIC_RELEASE);
}

struct event_base *px_txn_base(struct px_txn *t)
{
	return __atomic_load_n(&t->base, __ATOMIC_ACQUIRE);
}

static const struct px_host host = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.log = host_log,
	.get = host_get,
	.set_reply = host_set_reply,
	.record = host_record,
	.add_header = host_add_header,
	.remove_header = host_remove_header,
	.header_count = host_header_count,
	.header_at = host_header_at,
	.message_read = host_message_read,
	.message_size = host_message_size,
	.alloc = host_alloc,
	.slot = host_slot,
	.resume = px_chain_resume,
	.pending = px_chain_pending,
	.resume_call = px_chain_resume_call,
	.dns_query = host_dns_query,
	.dns_free = px_dns_answer_free,
	.dns_query_async = host_dns_query_async,
	.result_count = host_result_count,
	.result_at = host_result_at,
	.store_get = px_host_store_get,
	.store_set = px_host_store_set,
	.store_incr = px_host_store_incr,
	.store_del = px_host_store_del,
};

const struct px_host *px_host_services(void)
{
	return &host;
}
