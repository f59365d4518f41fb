/*
 * NAME
 *	message - a received message, its header index, and what goes out
 * DESCRIPTION
 *	See message.h. The header index treats a line that starts with a space
 *	or tab as a continuation, and stops at the first empty line, at a line
 *	that is not a field, or at the limits.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "message.h"
#include "spool.h"

/* header_section - copy up to the limit of the spool's start */
static int header_section(struct px_headers *h, struct px_spool *spool)
{
	size_t size = px_spool_size(spool);
	ssize_t n;

	if (size > PX_HEADER_BYTES_MAX)
		size = PX_HEADER_BYTES_MAX;
	if ((h->text = malloc(size + 1)) == NULL)
		return -1;
	n = px_spool_read(spool, 0, h->text, size);
	if (n < 0)
		return -1;
	h->text_len = (size_t)n;
	h->text[n] = '\0';
	return 0;
}

/* field_end - end of the field starting at p (after its last CRLF), or NULL */
static const char *field_end(const char *p, const char *end)
{
	const char *nl;

	for (;;) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return NULL;
		p = nl + 1;
		if (p >= end || (*p != ' ' && *p != '\t'))
			return p;
	}
}

/* field_name - length of the field name at p, or 0 if it is not a field */
static size_t field_name(const char *p, const char *end, size_t *colon)
{
	const char *c = p;

	while (c < end && *c != ':' && *c > ' ' && *c < 0x7f)
		c++;
	if (c == p || c >= end || *c != ':')
		return 0;
	*colon = (size_t)(c - p);
	return *colon;
}

/* px_headers_index - fill h from the spool */
int px_headers_index(struct px_headers *h, struct px_spool *spool)
{
	const char *p, *end, *fe;
	size_t namelen, colon;

	memset(h, 0, sizeof(*h));
	if (header_section(h, spool) < 0 || (h->v = calloc(PX_HEADERS_MAX, sizeof(*h->v))) == NULL)
		return -1;
	p = h->text;
	end = h->text + h->text_len;
	while (p < end && h->n < PX_HEADERS_MAX) {
		if ((namelen = field_name(p, end, &colon)) == 0 || (fe = field_end(p, end)) == NULL)
			break;
		h->v[h->n].off = (size_t)(p - h->text);
		h->v[h->n].len = (size_t)(fe - p);
		h->v[h->n].namelen = namelen;
		h->v[h->n].value_off = colon + 1;
		h->n++;
		p = fe;
	}
	return 0;
}

void px_headers_free(struct px_headers *h)
{
	free(h->text);
	free(h->v);
	memset(h, 0, sizeof(*h));
}

/* px_header_name_is - compare a field's name */
int px_header_name_is(const struct px_headers *h, size_t i, const char *name)
{
	return i < h->n && strlen(name) == h->v[i].namelen &&
	       strncasecmp(h->text + h->v[i].off, name, h->v[i].namelen) == 0;
}

/* px_header_value - raw value without the final CRLF */
const char *px_header_value(const struct px_headers *h, size_t i, size_t *len)
{
	const struct px_header *f = &h->v[i];
	size_t l = f->len - f->value_off;

	while (l > 0 && (h->text[f->off + f->value_off + l - 1] == '\n' ||
			 h->text[f->off + f->value_off + l - 1] == '\r'))
		l--;
	*len = l;
	return h->text + f->off + f->value_off;
}

/* px_message_size - prepend + spool - skips */
size_t px_message_size(const struct px_message *m)
{
	size_t size = m->prepend_len + px_spool_size(m->spool), i;

	for (i = 0; i < m->nskips; i++)
		size -= m->skips[i].len;
	return size;
}

/* spool_read_skipping - read the spool's outgoing bytes from out-offset off */
static ssize_t spool_read_skipping(const struct px_message *m, size_t off, char *buf, size_t n)
{
	size_t i, pos = off, limit;

	/* map the outgoing offset to a spool offset, skip by skip */
	for (i = 0; i < m->nskips && m->skips[i].off <= pos; i++)
		pos += m->skips[i].len;
	limit = i < m->nskips ? m->skips[i].off - pos : n;
	if (n > limit)
		n = limit;
	return px_spool_read(m->spool, pos, buf, n);
}

/* px_message_read - the outgoing stream at any offset */
ssize_t px_message_read(const struct px_message *m, size_t off, char *buf, size_t n)
{
	size_t k;

	if (off < m->prepend_len) {
		k = m->prepend_len - off < n ? m->prepend_len - off : n;
		memcpy(buf, m->prepend + off, k);
		return (ssize_t)k;
	}
	return spool_read_skipping(m, off - m->prepend_len, buf, n);
}
