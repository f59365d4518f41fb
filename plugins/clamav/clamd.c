/*
 * NAME
 *	clamd - scan through a clamd daemon (INSTREAM)
 * DESCRIPTION
 *	For sites that already run clamd and want one copy of the signatures
 *	in memory: engine = "clamd:unix:PATH" or "clamd:HOST:PORT". One
 *	connection per message: "zINSTREAM\0", then the message in chunks of
 *	`clamd_chunk` bytes (each a 4-byte big-endian length and the bytes,
 *	read from the spool through host->message_read), then a zero length;
 *	clamd answers one NUL-terminated line:
 *	    stream: OK                      clean
 *	    stream: NAME FOUND              infected (or a limit, when NAME is
 *	                                    Heuristics.Limits.Exceeded.*)
 *	    ... ERROR                       an error; "INSTREAM size limit
 *	                                    exceeded" is the streamsize limit
 *	The whole exchange (connect, send, answer) has one deadline,
 *	`clamd_timeout`; every wait is a poll() bounded by what is left of it.
 *	clamd may answer (a size limit) and close before it has read the whole
 *	stream: a failed send is followed by a read of that answer.
 */
#include "pxclam.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* clamd_parse - see pxclam.h */
int clamd_parse(const char *spec, struct clamd_addr *a, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char host[256];
	const char *port;
	size_t hl;
	int rc;

	snprintf(a->name, sizeof(a->name), "%s", spec);
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)&a->sa;

		if (spec[5] != '/' || strlen(spec + 5) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "clamd socket '%s': an absolute path of at most %zu bytes",
				 spec + 5, sizeof(un->sun_path) - 1);
			return -1;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, spec + 5);
		a->salen = sizeof(*un);
		return 0;
	}
	if (spec[0] == '[') {
		const char *e = strchr(spec, ']');

		if (e == NULL || e[1] != ':') {
			snprintf(err, errlen, "clamd address '%s': [IPv6]:PORT", spec);
			return -1;
		}
		hl = (size_t)(e - spec - 1);
		memcpy(host, spec + 1, hl < sizeof(host) ? hl : sizeof(host) - 1);
		host[hl < sizeof(host) ? hl : sizeof(host) - 1] = '\0';
		port = e + 2;
	} else {
		if ((port = strrchr(spec, ':')) == NULL || port == spec) {
			snprintf(err, errlen, "clamd address '%s': unix:PATH or HOST:PORT", spec);
			return -1;
		}
		hl = (size_t)(port - spec);
		memcpy(host, spec, hl < sizeof(host) ? hl : sizeof(host) - 1);
		host[hl < sizeof(host) ? hl : sizeof(host) - 1] = '\0';
		port++;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	/* configure runs on the main thread, never on an I/O thread */
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0 || res == NULL) {
		snprintf(err, errlen, "clamd address '%s': %s", spec, gai_strerror(rc));
		return -1;
	}
	memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
	a->salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* mono_ms - CLOCK_MONOTONIC in ms */
static long long mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_fd - poll fd for ev until deadline; 0, or -1 (timeout, errno ETIMEDOUT) */
static int wait_fd(int fd, short ev, long long deadline)
{
	struct pollfd p = { fd, ev, 0 };
	long long left;
	int n;

	for (;;) {
		if ((left = deadline - mono_ms()) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* send_all - all n bytes before the deadline; 0 or -1 */
static int send_all(int fd, const void *buf, size_t n, long long deadline)
{
	const char *p = buf;
	ssize_t w;

	while (n > 0) {
		if (wait_fd(fd, POLLOUT, deadline) < 0)
			return -1;
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* connect_to - a non-blocking connection within the deadline, or -1 */
static int connect_to(const struct clamd_addr *a, long long deadline)
{
	int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int soerr = 0;
	socklen_t sl = sizeof(soerr);

	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)&a->sa, a->salen) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EAGAIN)
		goto fail;
	if (wait_fd(fd, POLLOUT, deadline) < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
		errno = soerr ? soerr : errno;
		goto fail;
	}
	return fd;
fail:
	soerr = errno;
	close(fd);
	errno = soerr;
	return -1;
}

/* read_answer - clamd's line, up to its NUL, before the deadline */
static int read_answer(int fd, char *buf, size_t len, long long deadline)
{
	size_t got = 0;
	ssize_t n;

	while (got + 1 < len) {
		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
		n = recv(fd, buf + got, len - 1 - got, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\0', got) != NULL || memchr(buf, '\n', got) != NULL)
			break;
	}
	buf[got] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (got == 0) {
		errno = ECONNRESET;
		return -1;
	}
	return 0;
}

/* stream - the INSTREAM body: chunks from the spool, then the zero chunk;
 * 0, -1 on a send error (errno), -2 when the message could not be read */
static int stream(int fd, const struct clamd_addr *a, struct px_txn *txn, size_t size,
		  char *buf, long long deadline)
{
	size_t off = 0;
	uint32_t len;
	ssize_t n;

	while (off < size) {
		if ((n = clam_host->message_read(txn, off, buf + 4, a->chunk)) <= 0)
			return -2;
		len = htonl((uint32_t)n);
		memcpy(buf, &len, 4);
		if (send_all(fd, buf, (size_t)n + 4, deadline) < 0)
			return -1;
		off += (size_t)n;
	}
	len = 0;
	return send_all(fd, &len, 4, deadline);
}

/* answer_parse - clamd's line into out */
static void answer_parse(const char *ans, struct clam_outcome *out)
{
	size_t n = strlen(ans);
	const char *v = strncmp(ans, "stream: ", 8) == 0 ? ans + 8 : ans;

	if (strcmp(v, "OK") == 0) {
		out->status = CLAM_CLEAN;
	} else if (n > 6 && strcmp(ans + n - 6, " FOUND") == 0) {
		char name[256];

		snprintf(name, sizeof(name), "%.*s", (int)(ans + n - 6 - v), v);
		clam_classify(name, out);
	} else if (strstr(ans, "size limit exceeded") != NULL) {
		out->status = CLAM_LIMIT;
		snprintf(out->name, sizeof(out->name), "streamsize");
		snprintf(out->detail, sizeof(out->detail), "clamd: %s", ans);
	} else {
		out->status = CLAM_ERROR;
		snprintf(out->name, sizeof(out->name), "clamd");
		snprintf(out->detail, sizeof(out->detail), "clamd: %s", ans);
	}
}

/* fail - an error outcome naming what and errno */
static void fail(struct clam_outcome *out, const char *what, const struct clamd_addr *a, int e)
{
	out->status = CLAM_ERROR;
	snprintf(out->name, sizeof(out->name), "%s", e == ETIMEDOUT ? "timeout" : "clamd");
	snprintf(out->detail, sizeof(out->detail), "%s %s: %s", what, a->name, strerror(e));
}

/* clamd_scan - see pxclam.h */
void clamd_scan(const struct clamd_addr *a, struct px_txn *txn, size_t size,
		struct clam_outcome *out)
{
	long long deadline = mono_ms() + a->timeout_ms;
	char ans[512];
	char *buf;
	int fd, rc, e;

	memset(out, 0, sizeof(*out));
	if ((buf = malloc(a->chunk + 4)) == NULL) {
		snprintf(out->name, sizeof(out->name), "out-of-memory");
		out->status = CLAM_ERROR;
		return;
	}
	if ((fd = connect_to(a, deadline)) < 0) {
		fail(out, "connect", a, errno);
		free(buf);
		return;
	}
	if (send_all(fd, "zINSTREAM", 10, deadline) < 0) {
		fail(out, "send", a, errno);
	} else if ((rc = stream(fd, a, txn, size, buf, deadline)) == -2) {
		out->status = CLAM_ERROR;
		snprintf(out->name, sizeof(out->name), "message-read");
	} else {
		e = errno;
		/* after a failed send clamd may still have said why (a limit) */
		if (read_answer(fd, ans, sizeof(ans), rc < 0 ? mono_ms() + 1000 < deadline ?
				mono_ms() + 1000 : deadline : deadline) == 0)
			answer_parse(ans, out);
		else
			fail(out, rc < 0 ? "send" : "answer", a, rc < 0 ? e : errno);
	}
	close(fd);
	free(buf);
}
