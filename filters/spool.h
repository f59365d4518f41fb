/*
 * NAME
 *	spool - one message's bytes: memory up to a threshold, then a temp file
 * DESCRIPTION
 *	The session writes the message here as it arrives (RFC 5322 text,
 *	unstuffed, CRLF line ends). Up to mem_max bytes stay in memory; past that
 *	everything moves to an unlinked file in dir (O_TMPFILE where the file
 *	system has it, else mkstemp + unlink), so a crash leaves nothing behind
 *	and no other user can read it. Readers use px_spool_read at any offset;
 *	the relay, the maildir writer and the data-end plugins all read the same
 *	bytes. Not thread-safe: one owner at a time (the owner may hand it to a
 *	worker thread and take it back).
 */
#ifndef PX_FILTERS_SPOOL_H
#define PX_FILTERS_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

struct px_spool;

struct px_spool *px_spool_new(const char *dir, size_t mem_max);
/* px_spool_write - append; 0, or -1 with err (disk full, no dir) */
int px_spool_write(struct px_spool *sp, const char *p, size_t n, char *err, size_t errlen);
/* px_spool_size - bytes written so far */
size_t px_spool_size(const struct px_spool *sp);
/* px_spool_read - copy up to n bytes from off; returns bytes copied, 0 at end, -1 on error */
ssize_t px_spool_read(struct px_spool *sp, size_t off, char *buf, size_t n);
/* px_spool_on_disk - 1 if the message moved to a temp file */
int px_spool_on_disk(const struct px_spool *sp);
void px_spool_free(struct px_spool *sp);

#endif
