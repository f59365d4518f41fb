/*
 * NAME
 *	outgoing - the header edits a message gets after its data-end stage
 * DESCRIPTION
 *	See outgoing.h.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filters/chain.h"
#include "outgoing.h"

/* The methods of the Authentication-Results header, in its order: the
 * message authentication methods first, as DMARC builds on SPF and DKIM
 * (RFC 7489 11.2), then the client's (iprev, auth), then ARC */
static const char *const registered[] = { "spf", "dkim", "dmarc", "iprev", "auth", "arc" };
#define NREGISTERED (sizeof(registered) / sizeof(registered[0]))

/* skip_cfws - spaces, folds and (comments) */
static const char *skip_cfws(const char *p, const char *end)
{
	int depth = 0;

	for (; p < end; p++) {
		if (*p == '(')
			depth++;
		else if (*p == ')' && depth > 0)
			depth--;
		else if (depth == 0 && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			break;
	}
	return p;
}

/* px_authres_id_is - compare the leading authserv-id */
int px_authres_id_is(const char *value, size_t len, const char *authserv_id)
{
	const char *end = value + len, *p = skip_cfws(value, end), *q;
	size_t n;

	if (p < end && *p == '"') {
		q = memchr(p + 1, '"', (size_t)(end - p - 1));
		if (q == NULL)
			return 0;
		p++;
	} else {
		for (q = p; q < end && !strchr(" \t\r\n;(", *q); q++)
			;
	}
	n = (size_t)(q - p);
	return n == strlen(authserv_id) && strncasecmp(p, authserv_id, n) == 0;
}

/* mark_removed - incoming A-R with our id, and incoming X-Postern-* */
static void mark_removed(struct px_headers *h, const char *authserv_id)
{
	const char *v;
	size_t i, len;

	for (i = 0; i < h->n; i++) {
		if (h->v[i].namelen > 10 && strncasecmp(h->text + h->v[i].off, "X-Postern-", 10) == 0)
			h->v[i].removed = 1;
		if (!px_header_name_is(h, i, "Authentication-Results"))
			continue;
		v = px_header_value(h, i, &len);
		if (px_authres_id_is(v, len, authserv_id))
			h->v[i].removed = 1;
	}
}

/* buf_add - append to a growing string; -1 on failure */
static int buf_add(char **buf, size_t *len, const char *s)
{
	size_t n = strlen(s);
	char *p = realloc(*buf, *len + n + 1);

	if (p == NULL)
		return -1;
	memcpy(p + *len, s, n + 1);
	*buf = p;
	*len += n;
	return 0;
}

/* is_token - an RFC 8601 method or result: letters, digits, '-', '_' */
static int is_token(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && *s != '-' && *s != '_')
			return 0;
	return 1;
}

/* props_add - a result's reason and properties, on one line: control
 * characters (a plugin's CR or LF) become spaces, runs of white space one */
static int props_add(char **buf, size_t *len, const char *props)
{
	char *c = malloc(strlen(props) + 2), *o = c;
	int rc;

	if (c == NULL)
		return -1;
	*o++ = ' ';
	for (; *props != '\0'; props++) {
		char ch = (unsigned char)*props < 0x20 || *props == 0x7f ? ' ' : *props;

		if (ch == ' ' && o[-1] == ' ')
			continue;
		*o++ = ch;
	}
	while (o > c && o[-1] == ' ')
		o--;
	*o = '\0';
	rc = buf_add(buf, len, c);
	free(c);
	return rc;
}

/* px_authres_value - "id; m=r props; ..." or "id; none" */
char *px_authres_value(const struct px_txn *t, const char *id)
{
	const struct px_result *r;
	char *buf = NULL;
	size_t len = 0, i, n = 0;

	if (buf_add(&buf, &len, id) < 0)
		return NULL;
	for (i = 0; i < NREGISTERED; i++) {
		for (r = t->results; r != NULL; r = r->next) {
			if (strcasecmp(r->method, registered[i]) != 0 || !is_token(r->result))
				continue;
			if (buf_add(&buf, &len, ";\r\n\t") < 0 ||
			    buf_add(&buf, &len, registered[i]) < 0 || buf_add(&buf, &len, "=") < 0 ||
			    buf_add(&buf, &len, r->result) < 0 ||
			    (r->props != NULL && props_add(&buf, &len, r->props) < 0)) {
				free(buf);
				return NULL;
			}
			n++;
		}
	}
	if (n == 0 && buf_add(&buf, &len, "; none") < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* results_value - every result, for X-Postern-Results */
static char *results_value(const struct px_txn *t)
{
	const struct px_result *r;
	char *buf = NULL, item[1024];
	size_t len = 0;

	if (buf_add(&buf, &len, "") < 0)
		return NULL;
	for (r = t->results; r != NULL; r = r->next) {
		snprintf(item, sizeof(item), "%s%s=%s", len ? "; " : "", r->method, r->result);
		if (buf_add(&buf, &len, item) < 0)
			return NULL;
	}
	return len ? buf : (free(buf), strdup("none"));
}

/* out_add - one field, taking ownership of value */
static int out_add(struct px_outgoing *o, const char *name, char *value)
{
	char **n = realloc(o->names, (o->n + 1) * sizeof(*n)), **v;

	if (n == NULL)
		return free(value), -1;
	o->names = n;
	if ((v = realloc(o->values, (o->n + 1) * sizeof(*v))) == NULL)
		return free(value), -1;
	o->values = v;
	if (value == NULL || (o->names[o->n] = strdup(name)) == NULL)
		return free(value), -1;
	o->values[o->n++] = value;
	return 0;
}

/* fields_build - the added fields in order */
static int fields_build(struct px_txn *t, const struct px_policy *p, struct px_outgoing *o)
{
	const struct px_added_header *h;

	/* with no plugin at all Postern is a plain proxy: only its trace header */
	if (t->chain != NULL && t->chain->n > 0 &&
	    out_add(o, "Authentication-Results", px_authres_value(t, p->authserv_id)) < 0)
		return -1;
	for (h = t->added; h != NULL; h = h->next)
		if (out_add(o, h->name, strdup(h->value)) < 0)
			return -1;
	if (p->verdict_headers && out_add(o, "X-Postern-Results", results_value(t)) < 0)
		return -1;
	return 0;
}

/* prepend_build - trace + fields as text */
static int prepend_build(struct px_outgoing *o, const char *trace)
{
	size_t i;

	if (buf_add(&o->prepend, &o->prepend_len, trace ? trace : "") < 0)
		return -1;
	for (i = 0; i < o->n; i++)
		if (buf_add(&o->prepend, &o->prepend_len, o->names[i]) < 0 ||
		    buf_add(&o->prepend, &o->prepend_len, ": ") < 0 ||
		    buf_add(&o->prepend, &o->prepend_len, o->values[i]) < 0 ||
		    buf_add(&o->prepend, &o->prepend_len, "\r\n") < 0)
			return -1;
	return 0;
}

/* skips_build - the removed fields as spool ranges, in order */
static int skips_build(const struct px_headers *h, struct px_outgoing *o)
{
	size_t i;

	if ((o->skips = calloc(h->n ? h->n : 1, sizeof(*o->skips))) == NULL)
		return -1;
	for (i = 0; i < h->n; i++)
		if (h->v[i].removed) {
			o->skips[o->nskips].off = h->v[i].off;
			o->skips[o->nskips++].len = h->v[i].len;
		}
	return 0;
}

/* px_outgoing_build - all of the above */
int px_outgoing_build(struct px_txn *t, const struct px_policy *p, const char *trace,
		      struct px_outgoing *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&t->lock);
	mark_removed(&t->headers, p->authserv_id);
	rc = fields_build(t, p, out) < 0 || prepend_build(out, trace) < 0 ||
	     skips_build(&t->headers, out) < 0 ? -1 : 0;
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* px_outgoing_free - release */
void px_outgoing_free(struct px_outgoing *o)
{
	size_t i;

	for (i = 0; i < o->n; i++) {
		free(o->names[i]);
		free(o->values[i]);
	}
	free(o->names);
	free(o->values);
	free(o->prepend);
	free(o->skips);
	memset(o, 0, sizeof(*o));
}
