/*
 * NAME
 *	spool - one message's bytes: memory up to a threshold, then a temp file
 * DESCRIPTION
 *	See spool.h. The memory part grows by doubling up to mem_max; the switch
 *	to disk writes what is in memory to the file and frees it.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"

struct px_spool {
	char *dir;
	size_t mem_max;
	char *mem;
	size_t mem_alloc;
	size_t size;
	int fd;
};

/* px_spool_new - an empty spool */
struct px_spool *px_spool_new(const char *dir, size_t mem_max)
{
	struct px_spool *sp = calloc(1, sizeof(*sp));

	if (sp == NULL)
		return NULL;
	if ((sp->dir = strdup(dir)) == NULL) {
		free(sp);
		return NULL;
	}
	sp->mem_max = mem_max;
	sp->fd = -1;
	return sp;
}

/* spool_open_file - an unlinked, private temp file in dir */
static int spool_open_file(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	int fd;

#ifdef O_TMPFILE
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
#endif
	snprintf(path, sizeof(path), "%s/spool.XXXXXX", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "spool: cannot create a file in %s: %s", dir, strerror(errno));
		return -1;
	}
	unlink(path);
	return fd;
}

/* write_all - write n bytes or fail */
static int write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* spool_to_disk - move the memory part into a new temp file */
static int spool_to_disk(struct px_spool *sp, char *err, size_t errlen)
{
	if ((sp->fd = spool_open_file(sp->dir, err, errlen)) < 0)
		return -1;
	if (write_all(sp->fd, sp->mem, sp->size) < 0) {
		snprintf(err, errlen, "spool: write to %s: %s", sp->dir, strerror(errno));
		return -1;
	}
	free(sp->mem);
	sp->mem = NULL;
	sp->mem_alloc = 0;
	return 0;
}

/* spool_grow - make room for n more bytes in memory */
static int spool_grow(struct px_spool *sp, size_t n, char *err, size_t errlen)
{
	size_t want = sp->mem_alloc ? sp->mem_alloc : 16384;
	char *p;

	while (want < sp->size + n)
		want *= 2;
	if ((p = realloc(sp->mem, want)) == NULL) {
		snprintf(err, errlen, "spool: out of memory");
		return -1;
	}
	sp->mem = p;
	sp->mem_alloc = want;
	return 0;
}

/* px_spool_write - append to memory or file */
int px_spool_write(struct px_spool *sp, const char *p, size_t n, char *err, size_t errlen)
{
	if (sp->fd < 0 && sp->size + n > sp->mem_max && spool_to_disk(sp, err, errlen) < 0)
		return -1;
	if (sp->fd >= 0) {
		if (write_all(sp->fd, p, n) < 0) {
			snprintf(err, errlen, "spool: write to %s: %s", sp->dir, strerror(errno));
			return -1;
		}
	} else {
		if (sp->size + n > sp->mem_alloc && spool_grow(sp, n, err, errlen) < 0)
			return -1;
		memcpy(sp->mem + sp->size, p, n);
	}
	sp->size += n;
	return 0;
}

/* px_spool_size - bytes so far */
size_t px_spool_size(const struct px_spool *sp)
{
	return sp->size;
}

/* px_spool_on_disk - whether a temp file holds the message */
int px_spool_on_disk(const struct px_spool *sp)
{
	return sp->fd >= 0;
}

/* px_spool_read - random access read */
ssize_t px_spool_read(struct px_spool *sp, size_t off, char *buf, size_t n)
{
	ssize_t r;

	if (off >= sp->size)
		return 0;
	if (n > sp->size - off)
		n = sp->size - off;
	if (sp->fd < 0) {
		memcpy(buf, sp->mem + off, n);
		return (ssize_t)n;
	}
	do
		r = pread(sp->fd, buf, n, (off_t)off);
	while (r < 0 && errno == EINTR);
	return r;
}

/* px_spool_free - release memory and the file */
void px_spool_free(struct px_spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->fd >= 0)
		close(sp->fd);
	free(sp->mem);
	free(sp->dir);
	free(sp);
}
