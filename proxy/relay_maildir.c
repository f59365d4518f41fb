/*
 * NAME
 *	relay_maildir - the embedded backend: deliver into one Maildir
 * DESCRIPTION
 *	maildir:PATH. Every accepted message is written to PATH/tmp/NAME with
 *	LF line ends (the Maildir convention), headed by Return-Path and one
 *	Delivered-To per recipient, fsynced, renamed into PATH/new/NAME, and the
 *	folder is fsynced; only then is 250 answered. tmp/ new/ cur/ are made
 *	when missing. The blocking part runs on the worker pool, never on the
 *	I/O thread. NAME follows the Maildir spec: TIME.MusecPpidQn.HOST,S=SIZE.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "filters/spool.h"
#include "filters/workpool.h"
#include "policy/config.h"
#include "relay_int.h"

struct maildir_job {
	struct px_relay *rl;
	const struct px_message *msg;
	px_relay_cb cb;
	void *arg;
	struct px_reply reply;
};

struct maildir_state {
	struct maildir_job *busy;         /* a delivery on the pool, or NULL */
	int orphaned;                     /* px_relay_free ran while busy */
};

/* ensure_dir - mkdir unless it exists */
static int ensure_dir(const char *path)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	return -1;
}

/* maildir_prepare - PATH and its tmp/ new/ cur/ */
static int maildir_prepare(const char *root, char *err, size_t errlen)
{
	static const char *const sub[] = { "tmp", "new", "cur" };
	char path[4096];
	size_t i;

	if (ensure_dir(root) < 0) {
		snprintf(err, errlen, "mkdir %s: %s", root, strerror(errno));
		return -1;
	}
	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", root, sub[i]);
		if (ensure_dir(path) < 0) {
			snprintf(err, errlen, "mkdir %s: %s", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* maildir_name - a unique file name (without the S= size part) */
static void maildir_name(char *out, size_t outlen)
{
	static unsigned long seq;
	char host[256];
	char safe[512];
	struct timeval tv;
	size_t i, o = 0;

	gettimeofday(&tv, NULL);
	if (gethostname(host, sizeof(host)) < 0)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	for (i = 0; host[i] && o < sizeof(safe) - 5; i++) {
		if (host[i] == '/' || host[i] == ':')
			o += (size_t)snprintf(safe + o, sizeof(safe) - o, "\\%03o", host[i]);
		else
			safe[o++] = host[i];
	}
	safe[o] = '\0';
	snprintf(out, outlen, "%lld.M%06ldP%ldQ%lu.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
		 (long)getpid(), __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED), safe);
}

/* write_lf - write CRLF text as LF text */
static int write_lf(FILE *fp, const char *p, size_t n, int *pending_cr)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (*pending_cr) {
			*pending_cr = 0;
			if (p[i] != '\n' && putc('\r', fp) == EOF)
				return -1;
		}
		if (p[i] == '\r')
			*pending_cr = 1;
		else if (putc(p[i], fp) == EOF)
			return -1;
	}
	return 0;
}

/* write_envelope_headers - Return-Path and Delivered-To */
static int write_envelope_headers(FILE *fp, const struct px_message *msg)
{
	size_t i;

	if (fprintf(fp, "Return-Path: <%s>\n", msg->mail_from) < 0)
		return -1;
	for (i = 0; i < msg->nrcpts; i++)
		if (fprintf(fp, "Delivered-To: %s\n", msg->rcpts[i]) < 0)
			return -1;
	return 0;
}

/* write_message - envelope headers, then the outgoing message */
static int write_message(FILE *fp, const struct px_message *msg)
{
	char buf[65536];
	size_t off = 0;
	ssize_t n;
	int cr = 0;

	if (write_envelope_headers(fp, msg) < 0)
		return -1;
	while ((n = px_message_read(msg, off, buf, sizeof(buf))) > 0) {
		if (write_lf(fp, buf, (size_t)n, &cr) < 0)
			return -1;
		off += (size_t)n;
	}
	if (cr && putc('\r', fp) == EOF)
		return -1;
	return n < 0 ? -1 : 0;
}

/* fsync_dir - make the rename durable */
static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* deliver_file - write tmp/NAME, fsync, rename to new/NAME,S=size */
static int deliver_file(const char *root, const struct px_message *msg, char *name, size_t namelen,
			char *err, size_t errlen)
{
	char tmp[4096], dst[4096], base[300];
	struct stat st;
	FILE *fp;
	int ok;

	maildir_name(base, sizeof(base));
	snprintf(tmp, sizeof(tmp), "%s/tmp/%s", root, base);
	if ((fp = fopen(tmp, "wxe")) == NULL) {
		snprintf(err, errlen, "open %s: %s", tmp, strerror(errno));
		return -1;
	}
	ok = write_message(fp, msg) == 0 && fflush(fp) == 0 && fsync(fileno(fp)) == 0 &&
	     fstat(fileno(fp), &st) == 0;
	if (fclose(fp) != 0 || !ok) {
		snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	snprintf(name, namelen, "%s,S=%lld", base, (long long)st.st_size);
	snprintf(dst, sizeof(dst), "%s/new/%s", root, name);
	if (rename(tmp, dst) < 0) {
		snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	snprintf(tmp, sizeof(tmp), "%s/new", root);
	if (fsync_dir(tmp) < 0) {
		snprintf(err, errlen, "fsync %s: %s", tmp, strerror(errno));
		return -1;
	}
	return 0;
}

/* maildir_work - on a worker thread: the whole delivery */
static void maildir_work(void *arg)
{
	struct maildir_job *job = arg;
	const char *root = job->rl->cfg->backend.path;
	char err[512], name[400];

	if (maildir_prepare(root, err, sizeof(err)) < 0 ||
	    deliver_file(root, job->msg, name, sizeof(name), err, sizeof(err)) < 0)
		px_reply_set(&job->reply, 451, "4.3.0", "Temporary failure writing the mailbox: %s",
			     err);
	else
		px_reply_set(&job->reply, 250, "2.0.0", "Ok: stored as %s", name);
}

/* maildir_done - back on the session's base */
static void maildir_done(void *arg)
{
	struct maildir_job *job = arg;
	struct px_relay *rl = job->rl;
	struct maildir_state *st = rl->impl;

	st->busy = NULL;
	if (st->orphaned) {
		free(st);
		free(rl);
	} else {
		job->cb(job->arg, &job->reply);
	}
	free(job);
}

/* maildir_ok - MAIL and RCPT: the local checks already passed */
static void maildir_mail(struct px_relay *rl, const char *cmd, const char *params,
			 px_relay_cb cb, void *arg)
{
	struct px_reply r;

	px_reply_set(&r, 250, "2.1.0", "Ok");
	px_relay_defer(rl, cb, arg, &r);
}

static void maildir_rcpt(struct px_relay *rl, const char *cmd, const char *params,
			 px_relay_cb cb, void *arg)
{
	struct px_reply r;

	px_reply_set(&r, 250, "2.1.5", "Ok");
	px_relay_defer(rl, cb, arg, &r);
}

/* maildir_data - hand the delivery to the pool */
static void maildir_data(struct px_relay *rl, const struct px_message *msg, px_relay_cb cb,
			 void *arg)
{
	struct maildir_state *st = rl->impl;
	struct maildir_job *job = calloc(1, sizeof(*job));
	struct px_reply r;

	if (job != NULL) {
		job->rl = rl;
		job->msg = msg;
		job->cb = cb;
		job->arg = arg;
		if (px_workpool_submit(rl->pool, rl->base, maildir_work, maildir_done, job) == 0) {
			st->busy = job;
			return;
		}
		free(job);
	}
	px_reply_set(&r, 451, "4.3.2", "Server busy, try again later");
	px_relay_defer(rl, cb, arg, &r);
}

static void maildir_rset(struct px_relay *rl)
{
}

/* maildir_free - a delivery in flight finishes, then the relay goes */
static void maildir_free(struct px_relay *rl)
{
	struct maildir_state *st = rl->impl;

	if (st->busy != NULL) {
		st->orphaned = 1;
		return;
	}
	free(st);
	free(rl);
}

const struct px_relay_ops px_relay_maildir_ops = {
	maildir_mail, maildir_rcpt, maildir_data, maildir_rset, maildir_free
};

/* px_relay_maildir_init - state for one session */
int px_relay_maildir_init(struct px_relay *rl)
{
	if ((rl->impl = calloc(1, sizeof(struct maildir_state))) == NULL)
		return -1;
	rl->ops = &px_relay_maildir_ops;
	return 0;
}
