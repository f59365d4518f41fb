/*
 * NAME
 *	from - the RFC5322.From domain (RFC 7489 section 6.6.1)
 * DESCRIPTION
 *	DMARC judges the domain of the author: the message's one From field.
 *	A message with no From field, with several, or with one that names
 *	mailboxes in more than one domain has no single author domain: that
 *	is a status the caller records (dmarc=permerror with a reason), so
 *	the policy can refuse it. Mailboxes of one domain are that domain.
 *
 *	The field is read as RFC 5322 writes it (display names, quoted
 *	strings, comments, angle addresses, groups, obsolete routes), never
 *	by searching for '@': `From: "a@b.example" <c@d.example>` is
 *	d.example.
 */
#include "dmarc.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The mailbox being read: what is outside comments and angle brackets,
 * and what is inside the angle brackets */
struct mbox {
	char text[512], angle[512];
	size_t ntext, nangle;
	int has_angle, overflow;
};

/* The domains found so far */
struct from_acc {
	char domain[DM_DOMAIN_MAX];
	int n, mixed, bad, nodomain;
};

static const char *const reasons[] = {
	[DM_FROM_OK] = "",
	[DM_FROM_NONE] = "no From header field",
	[DM_FROM_MULTIPLE_FIELDS] = "more than one From header field",
	[DM_FROM_MULTIPLE_DOMAINS] = "From header field names mailboxes in several domains",
	[DM_FROM_NO_DOMAIN] = "no domain in the From header field",
	[DM_FROM_BAD_DOMAIN] = "the From domain is not a valid DNS name",
};

/* dm_from_reason - the words for an A-R reason= */
const char *dm_from_reason(enum dm_from_status s)
{
	return (unsigned)s < sizeof(reasons) / sizeof(reasons[0]) ? reasons[s] : "?";
}

/* dm_domain_ok - lower-case in place, drop one final dot; a DNS name of
 * LDH labels (and '_'), 1..63 octets each, 253 in all, two labels at least */
int dm_domain_ok(char *d)
{
	size_t n = strlen(d), label = 0, labels = 1, i;

	if (n > 0 && d[n - 1] == '.')
		d[--n] = '\0';
	if (n == 0 || n > 253)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		d[i] = (char)tolower(c);
		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
			labels++;
			continue;
		}
		if (!isalnum(c) && c != '-' && c != '_')
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && labels >= 2;
}

/* put - one character into the mailbox being read */
static void put(struct mbox *m, int in_angle, char c)
{
	char *buf = in_angle ? m->angle : m->text;
	size_t *n = in_angle ? &m->nangle : &m->ntext;

	if (*n + 1 >= sizeof(m->text)) {
		m->overflow = 1;
		return;
	}
	buf[(*n)++] = c;
	buf[*n] = '\0';
}

/* trim - white space off both ends, in place */
static char *trim(char *s)
{
	char *e = s + strlen(s);

	while (*s == ' ' || *s == '\t')
		s++;
	while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return s;
}

/* spec_domain - the domain of an addr-spec (after an obsolete route) */
static char *spec_domain(char *spec)
{
	char *colon = NULL, *at = NULL, *p;
	int quoted = 0;

	for (p = spec; *p != '\0'; p++) {
		if (*p == '\\' && quoted && p[1] != '\0')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == ':')
			colon = p;
		else if (!quoted && *p == '@')
			at = p;
	}
	if (colon != NULL && (at == NULL || at < colon))
		return NULL;            /* a route without a mailbox */
	return at != NULL ? at + 1 : NULL;
}

/* mbox_end - one mailbox read: note its domain */
static void mbox_end(struct mbox *m, struct from_acc *acc)
{
	char *spec = trim(m->has_angle ? m->angle : m->text), *dom, *p, clean[DM_DOMAIN_MAX];
	size_t n = 0;

	if (m->overflow) {
		acc->bad = 1;
	} else if (*spec != '\0' || m->has_angle) {
		dom = spec_domain(spec);
		if (dom == NULL) {
			acc->nodomain = 1;
		} else {
			for (p = dom; *p != '\0'; p++)   /* obsolete FWS inside the domain */
				if (*p != ' ' && *p != '\t' && n + 1 < sizeof(clean))
					clean[n++] = *p;
			clean[n] = '\0';
			if (!dm_domain_ok(clean))
				acc->bad = 1;
			else if (acc->n++ == 0)
				memcpy(acc->domain, clean, n + 1);
			else if (strcmp(acc->domain, clean) != 0)
				acc->mixed = 1;
		}
	}
	memset(m, 0, sizeof(*m));
}

/* dm_from_parse - walk one From value: quotes, comments, <>, groups */
enum dm_from_status dm_from_parse(const char *v, size_t len, char *domain, size_t size)
{
	struct mbox m;
	struct from_acc acc;
	int quoted = 0, comment = 0, angle = 0;
	size_t i;

	memset(&m, 0, sizeof(m));
	memset(&acc, 0, sizeof(acc));
	for (i = 0; i < len; i++) {
		char c = v[i];

		if (c == '\r' || c == '\n')
			continue;       /* unfold */
		if (comment) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				comment++;
			else if (c == ')')
				comment--;
			continue;
		}
		if (quoted) {
			put(&m, angle, c);
			if (c == '\\' && i + 1 < len)
				put(&m, angle, v[++i]);
			else if (c == '"')
				quoted = 0;
			continue;
		}
		switch (c) {
		case '"':
			quoted = 1;
			put(&m, angle, c);
			break;
		case '(':
			comment = 1;
			put(&m, angle, ' ');
			break;
		case '<':
			angle = 1;
			m.has_angle = 1;
			m.nangle = 0;
			m.angle[0] = '\0';
			break;
		case '>':
			angle = 0;
			break;
		case ':':
			if (angle) {
				put(&m, angle, c);
				break;
			}
			memset(&m, 0, sizeof(m));   /* a group's display name */
			break;
		case ',':
		case ';':
			if (angle) {
				put(&m, angle, c);
				break;
			}
			mbox_end(&m, &acc);
			break;
		default:
			put(&m, angle, c);
		}
	}
	mbox_end(&m, &acc);
	if (acc.bad)
		return DM_FROM_BAD_DOMAIN;
	if (acc.mixed)
		return DM_FROM_MULTIPLE_DOMAINS;
	if (acc.n == 0)
		return DM_FROM_NO_DOMAIN;
	snprintf(domain, size, "%s", acc.domain);
	return DM_FROM_OK;
}

/* dm_from_domain - find the one From field, then parse it */
enum dm_from_status dm_from_domain(struct px_txn *txn, char *domain, size_t size)
{
	size_t n = dm_host->header_count(txn), i, found = 0, flen = 0;
	const char *fval = NULL;

	for (i = 0; i < n; i++) {
		const char *name, *value;
		size_t nlen, vlen;

		if (dm_host->header_at(txn, i, &name, &nlen, &value, &vlen) != 0)
			continue;
		if (nlen == 4 && strncasecmp(name, "From", 4) == 0) {
			if (found++ == 0) {
				fval = value;
				flen = vlen;
			}
		}
	}
	if (found == 0)
		return DM_FROM_NONE;
	if (found > 1)
		return DM_FROM_MULTIPLE_FIELDS;
	return dm_from_parse(fval, flen, domain, size);
}
