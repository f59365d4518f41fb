/*
 * NAME
 *	txn - the session and transaction as the chain and plugins see them
 * DESCRIPTION
 *	See txn.h. This file holds the txn's lifetime, the front end's
 *	mutators, and the host services offered to plugins (struct px_host).
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "chain.h"
#include "spool.h"
#include "txn.h"

const char *const px_stage_names[PX_STAGE_COUNT] = {
	"connect", "helo", "mail", "rcpt", "data-end"
};

__thread struct px_invocation *px_current_invocation;
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

/* px_txn_new - an empty session */
struct px_txn *px_txn_new(struct px_chain *chain, const char *sid, const char *hostname)
{
	struct px_txn *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	if (chain != NULL && chain->n > 0 && (t->slots = calloc(chain->n, sizeof(void *))) == NULL) {
		free(t);
		return NULL;
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

/* txn_clear - forget the transaction's data (lock held) */
static void txn_clear(struct px_txn *t)
{
	struct px_result *r;
	struct px_added_header *h;
	size_t i;

	while ((r = t->results) != NULL) {
		t->results = r->next;
		free(r->method);
		free(r->result);
		free(r->props);
		free(r);
	}
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
	px_mem_free(t->arena);
	t->arena = NULL;
	t->have_view = 0;
	t->txn_allowed = 0;
	t->reply_code = 0;
}

/* px_txn_unref - last reference: plugins' on_close, then free */
void px_txn_unref(struct px_txn *t)
{
	if (t == NULL || __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (t->chain != NULL) {
		px_chain_notify(t->chain, t, 1);
		px_chain_unref(t->chain);
	}
	txn_clear(t);
	free(t->slots);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* px_txn_reset - the transaction ended */
void px_txn_reset(struct px_txn *t)
{
	if (t->chain != NULL)
		px_chain_notify(t->chain, t, 0);
	pthread_mutex_lock(&t->lock);
	txn_clear(t);
	pthread_mutex_unlock(&t->lock);
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

/* live_invocation - the caller's invocation if it may still act (lock held) */
static struct px_invocation *live_invocation(struct px_txn *t)
{
	struct px_invocation *inv = px_current_invocation;

	if (inv == NULL || inv->txn != t)       /* another thread: a PENDING plugin's */
		for (inv = t->pending; inv != NULL && inv->stale; inv = inv->next_pending)
			;
	return (inv != NULL && !inv->stale) ? inv : NULL;
}

/* plugin_name - the name of the plugin behind inv, for logs */
static const char *plugin_name(const struct px_txn *t, const struct px_invocation *inv)
{
	return (t->chain && inv && inv->plugin < t->chain->n) ? t->chain->v[inv->plugin].name : "?";
}

static void host_log(struct px_txn *t, enum px_log_prio prio, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (t == NULL) {                /* load, configure: no session */
		px_log((enum px_log_level)(prio > PX_PRIO_DEBUG ? PX_PRIO_DEBUG : prio), NULL,
		       "plugin=%s %s", px_current_plugin_name ? px_current_plugin_name : "?", line);
		return;
	}
	px_log((enum px_log_level)(prio > PX_PRIO_DEBUG ? PX_PRIO_DEBUG : prio), t->sid,
	       "plugin=%s %s", plugin_name(t, px_current_invocation), line);
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

/* host_get - a copy of a fact, owned by the invocation */
static const char *host_get(struct px_txn *t, const char *key)
{
	struct px_invocation *inv;
	const char *v;
	char *copy = NULL, num[32];

	pthread_mutex_lock(&t->lock);
	if ((inv = live_invocation(t)) != NULL && (v = fact(t, key, num, sizeof(num))) != NULL)
		copy = mem_strndup(&inv->mem, v, strlen(v));
	pthread_mutex_unlock(&t->lock);
	return copy;
}

static void host_set_reply(struct px_txn *t, int code, const char *esc, const char *text)
{
	pthread_mutex_lock(&t->lock);
	if (live_invocation(t) != NULL && code >= 400 && code <= 599) {
		t->reply_code = code;
		snprintf(t->reply_esc, sizeof(t->reply_esc), "%s", esc ? esc : "");
		snprintf(t->reply_text, sizeof(t->reply_text), "%s", text ? text : "");
	}
	pthread_mutex_unlock(&t->lock);
}

static void host_record(struct px_txn *t, const char *method, const char *result,
			const char *props)
{
	struct px_invocation *inv;

	if (method == NULL || result == NULL || !*method || !*result)
		return;
	pthread_mutex_lock(&t->lock);
	if ((inv = live_invocation(t)) != NULL)
		px_txn_record(t, inv->plugin, inv->stage, method, result, props);
	pthread_mutex_unlock(&t->lock);
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

static int host_add_header(struct px_txn *t, const char *name, const char *value)
{
	int rc = -1;

	if (!header_ok(name, value))
		return -1;
	pthread_mutex_lock(&t->lock);
	if (live_invocation(t) != NULL)
		rc = added_append(t, name, value);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static int host_remove_header(struct px_txn *t, const char *name, int index)
{
	size_t i;
	int seen = 0, rc = -1;

	pthread_mutex_lock(&t->lock);
	if (live_invocation(t) != NULL) {
		for (i = 0; i < t->headers.n; i++) {
			if (!px_header_name_is(&t->headers, i, name))
				continue;
			if (index < 0 || seen++ == index) {
				t->headers.v[i].removed = 1;
				rc = 0;
			}
		}
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static size_t host_header_count(struct px_txn *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = live_invocation(t) ? t->headers.n : 0;
	pthread_mutex_unlock(&t->lock);
	return n;
}

static int host_header_at(struct px_txn *t, size_t i, const char **name, size_t *namelen,
			  const char **value, size_t *valuelen)
{
	struct px_invocation *inv;
	const char *v;
	int rc = -1;

	pthread_mutex_lock(&t->lock);
	if ((inv = live_invocation(t)) != NULL && i < t->headers.n) {
		*namelen = t->headers.v[i].namelen;
		*name = mem_strndup(&inv->mem, t->headers.text + t->headers.v[i].off, *namelen);
		v = px_header_value(&t->headers, i, valuelen);
		*value = mem_strndup(&inv->mem, v, *valuelen);
		rc = (*name && *value) ? 0 : -1;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

static ssize_t host_message_read(struct px_txn *t, size_t off, void *buf, size_t len)
{
	ssize_t n = -1;

	pthread_mutex_lock(&t->lock);
	if (live_invocation(t) != NULL && t->spool != NULL)
		n = px_spool_read(t->spool, off, buf, len);
	pthread_mutex_unlock(&t->lock);
	return n;
}

static size_t host_message_size(struct px_txn *t)
{
	size_t n = 0;

	pthread_mutex_lock(&t->lock);
	if (live_invocation(t) != NULL && t->spool != NULL)
		n = px_spool_size(t->spool);
	pthread_mutex_unlock(&t->lock);
	return n;
}

static void *host_alloc(struct px_txn *t, size_t size)
{
	void *p = NULL;

	pthread_mutex_lock(&t->lock);
	if (live_invocation(t) != NULL)
		p = mem_alloc(&t->arena, size);
	pthread_mutex_unlock(&t->lock);
	return p;
}

/* host_slot - per plugin, per session; a stale caller gets a dummy */
static void **host_slot(struct px_txn *t)
{
	static __thread void *dummy;
	struct px_invocation *inv;
	void **slot = &dummy;

	pthread_mutex_lock(&t->lock);
	if ((inv = live_invocation(t)) != NULL && t->slots != NULL)
		slot = &t->slots[inv->plugin];
	pthread_mutex_unlock(&t->lock);
	return slot;
}

static const struct px_host host = {
	PX_ABI_MAJOR, PX_ABI_MINOR,
	host_log, host_get, host_set_reply, host_record, host_add_header, host_remove_header,
	host_header_count, host_header_at, host_message_read, host_message_size, host_alloc,
	host_slot, px_chain_resume
};

const struct px_host *px_host_services(void)
{
	return &host;
}
