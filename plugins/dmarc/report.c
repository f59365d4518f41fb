/*
 * NAME
 *	report - one JSON line per DMARC-evaluated message (report_log)
 * DESCRIPTION
 *	What an aggregate report (RFC 7489 7.2, appendix C) is built from,
 *	one object per line, every field always present (null when unknown):
 *
 *	  {"time":1764000000,"session":"4f1c0d2e9a7b3c11","source_ip":"192.0.2.7",
 *	   "envelope_from":"example.net","header_from":"example.com",
 *	   "policy_domain":"example.com","rua":["mailto:agg@example.com"],
 *	   "result":"fail","p":"reject","sp":null,"pct":100,"adkim":"r","aspf":"r",
 *	   "policy":"reject","disposition":"reject","sampled":true,
 *	   "alignment":{"dkim":"fail","spf":"fail"},
 *	   "spf":{"domain":"example.net","scope":"mfrom","result":"pass","aligned":false},
 *	   "dkim":[{"domain":"example.org","selector":"s1","result":"pass","aligned":false}]}
 *
 *	"policy" is the one the domain publishes for this From (p, or sp for a
 *	subdomain under its organisational domain's record); "disposition"
 *	what that policy asks for this message once pct has sampled it. The
 *	line is written with one write() to a file opened O_APPEND, so lines
 *	of concurrent sessions never mix.
 */
#include "dmarc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct jbuf {
	char *s;
	size_t len, cap;
	int oom;
};

/* jb_add - append n bytes */
static void jb_add(struct jbuf *b, const char *s, size_t n)
{
	char *p;

	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 1024) + n;

		if ((p = realloc(b->s, cap)) == NULL) {
			b->oom = 1;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void jb_raw(struct jbuf *b, const char *s)
{
	jb_add(b, s, strlen(s));
}

/* jb_str - a JSON string, or null */
static void jb_str(struct jbuf *b, const char *s)
{
	char esc[8];

	if (s == NULL) {
		jb_raw(b, "null");
		return;
	}
	jb_raw(b, "\"");
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			jb_add(b, esc, 2);
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			jb_raw(b, esc);
		} else {
			jb_add(b, s, 1);
		}
	}
	jb_raw(b, "\"");
}

/* jb_kv - ,"key":"value" (first: no comma) */
static void jb_kv(struct jbuf *b, const char *key, const char *value, int first)
{
	if (!first)
		jb_raw(b, ",");
	jb_str(b, key);
	jb_raw(b, ":");
	jb_str(b, value);
}

/* jb_ident - one SPF or DKIM identifier */
static void jb_ident(struct jbuf *b, const struct dm_ident *id, const char *scope, int dkim)
{
	jb_raw(b, "{");
	jb_kv(b, "domain", id->domain, 1);
	if (dkim)
		jb_kv(b, "selector", id->selector[0] ? id->selector : NULL, 0);
	else
		jb_kv(b, "scope", scope, 0);
	jb_kv(b, "result", id->result, 0);
	jb_raw(b, id->aligned ? ",\"aligned\":true}" : ",\"aligned\":false}");
}

/* dm_report_write - see above; 0 or -1 */
int dm_report_write(int fd, const struct dm_report *r)
{
	struct jbuf b = { 0 };
	char num[64];
	size_t i;
	ssize_t w;

	snprintf(num, sizeof(num), "{\"time\":%lld", (long long)time(NULL));
	jb_raw(&b, num);
	jb_kv(&b, "session", r->session, 0);
	jb_kv(&b, "source_ip", r->source_ip, 0);
	jb_kv(&b, "envelope_from", r->envelope_from, 0);
	jb_kv(&b, "header_from", r->header_from, 0);
	jb_kv(&b, "policy_domain", r->policy_domain, 0);
	jb_raw(&b, ",\"rua\":[");
	for (i = 0; r->rua != NULL && r->rua[i] != NULL; i++) {
		if (i > 0)
			jb_raw(&b, ",");
		jb_str(&b, r->rua[i]);
	}
	jb_raw(&b, "]");
	jb_kv(&b, "result", r->result, 0);
	jb_kv(&b, "p", r->p, 0);
	jb_kv(&b, "sp", r->sp, 0);
	snprintf(num, sizeof(num), ",\"pct\":%d", r->pct);
	jb_raw(&b, num);
	jb_kv(&b, "adkim", r->adkim, 0);
	jb_kv(&b, "aspf", r->aspf, 0);
	jb_kv(&b, "policy", r->policy, 0);
	jb_kv(&b, "disposition", r->disposition, 0);
	jb_raw(&b, r->sampled ? ",\"sampled\":true" : ",\"sampled\":false");
	jb_raw(&b, ",\"alignment\":{");
	jb_kv(&b, "dkim", r->eval->dkim_aligned_pass ? "pass" : "fail", 1);
	jb_kv(&b, "spf", r->eval->spf_aligned_pass ? "pass" : "fail", 0);
	jb_raw(&b, "},\"spf\":");
	if (r->eval->spf.domain[0] != '\0')
		jb_ident(&b, &r->eval->spf, r->eval->spf_scope, 0);
	else
		jb_raw(&b, "null");
	jb_raw(&b, ",\"dkim\":[");
	for (i = 0; i < r->eval->ndkim; i++) {
		if (i > 0)
			jb_raw(&b, ",");
		jb_ident(&b, &r->eval->dkim[i], NULL, 1);
	}
	jb_raw(&b, "]}\n");
	if (b.oom) {
		free(b.s);
		return -1;
	}
	w = write(fd, b.s, b.len);
	free(b.s);
	return w == (ssize_t)b.len ? 0 : -1;
}
