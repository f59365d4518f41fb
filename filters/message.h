/*
 * NAME
 *	message - a received message, its header index, and what goes out
 * DESCRIPTION
 *	The spool holds the message as received (RFC 5322, CRLF, unstuffed).
 *	px_headers_index() reads its header section once and records where
 *	each field starts and ends; plugins read fields through that index.
 *
 *	What goes to the backend is built, never copied into a new buffer:
 *	the prepended lines (our Received, Authentication-Results, headers
 *	plugins added), then the spool with the removed header fields skipped.
 *	px_message_read() serves that stream at any offset, so the SMTP relay,
 *	the LMTP relay and the maildir writer all send exactly the same bytes.
 */
#ifndef PX_FILTERS_MESSAGE_H
#define PX_FILTERS_MESSAGE_H

#include <stddef.h>
#include <sys/types.h>

struct px_spool;

#define PX_HEADERS_MAX      1000          /* fields indexed; more are body to us */
#define PX_HEADER_BYTES_MAX (1024 * 1024) /* header section read for the index */

struct px_header {
	size_t off;          /* where "Name:" starts in the spool */
	size_t len;          /* the whole field including its final CRLF */
	size_t namelen;      /* bytes of Name (before ':', trailing space trimmed) */
	size_t value_off;    /* after the ':' (relative to off) */
	int removed;
};

struct px_headers {
	char *text;          /* a copy of the header section (NUL-terminated) */
	size_t text_len;
	struct px_header *v;
	size_t n;
};

/* px_headers_index - index the header section of the spooled message; 0 or -1 */
int px_headers_index(struct px_headers *h, struct px_spool *spool);
void px_headers_free(struct px_headers *h);
/* px_header_name_is - case-insensitive compare of field i's name */
int px_header_name_is(const struct px_headers *h, size_t i, const char *name);
/* px_header_value - field i's raw value (after ':'), without the final CRLF */
const char *px_header_value(const struct px_headers *h, size_t i, size_t *len);

/* A byte range of the spool to leave out */
struct px_skip {
	size_t off, len;
};

/* The message as it goes to the backend */
struct px_message {
	const char *prepend;      /* CRLF-terminated header lines, may be "" */
	size_t prepend_len;
	struct px_spool *spool;
	const struct px_skip *skips;  /* sorted by off, not overlapping */
	size_t nskips;
	const char *mail_from;    /* for maildir's Return-Path; "" for <> */
	const char *const *rcpts; /* accepted recipients */
	size_t nrcpts;
};

/* px_message_size - bytes of the outgoing stream */
size_t px_message_size(const struct px_message *m);
/* px_message_read - n bytes of the outgoing stream from off; 0 at end, -1 error */
ssize_t px_message_read(const struct px_message *m, size_t off, char *buf, size_t n);

#endif
