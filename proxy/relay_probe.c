/*
 * NAME
 *	relay_probe - ask the backend for its capabilities once, at start
 * DESCRIPTION
 *	posternd advertises DSN only when the backend offers it, and must know
 *	that before the first client's EHLO. At start (and only then) the main
 *	thread connects to an smtp:/lmtp: backend, reads the greeting, sends
 *	EHLO/LHLO, notes the capabilities and QUITs, with a short time limit.
 *	This runs before any worker starts, so blocking here stalls nobody. A
 *	backend that is down is logged and not fatal: every later relay
 *	connection updates the capabilities too.
 */
#include "autoconfig.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "policy/config.h"
#include "relay_int.h"
#include "reply_reader.h"
#include "smtp_parse.h"

#define PROBE_TIMEOUT_MS 3000

/* probe_connect - a blocking socket to the backend, or -1 */
static int probe_connect(const struct px_backend_spec *b)
{
	struct addrinfo hints = { 0 }, *res;
	struct sockaddr_un un = { 0 };
	struct timeval tv = { PROBE_TIMEOUT_MS / 1000, 0 };
	int fd;

	if (b->path != NULL) {
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			return -1;
		un.sun_family = AF_UNIX;
		snprintf(un.sun_path, sizeof(un.sun_path), "%s", b->path);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		if (connect(fd, (struct sockaddr *)&un, sizeof(un)) == 0)
			return fd;
		close(fd);
		return -1;
	}
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(b->host, b->port, &hints, &res) != 0)
		return -1;
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/* probe_reply - read one whole reply (the shared reader: rr->text holds its
 * lines' texts for the capability parser); its code, or -1 */
static int probe_reply(int fd, struct px_reply_reader *rr)
{
	char buf[1024], *nl;
	size_t len = 0;
	ssize_t n;
	int rc;

	for (;;) {
		while ((nl = memchr(buf, '\n', len)) != NULL) {
			rc = nl > buf && nl[-1] == '\r' ?
			     px_reply_reader_line(rr, buf, (size_t)(nl - buf) - 1) : PX_RR_BAD;
			if (rc == PX_RR_BAD)
				return -1;
			if (rc == PX_RR_DONE)
				return rr->code;     /* nothing follows a reply we wait for */
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
		if (len == sizeof(buf) || (n = recv(fd, buf + len, sizeof(buf) - len, 0)) <= 0)
			return -1;
		len += (size_t)n;
	}
}

/* px_backend_caps_probe - one short conversation; logs what it learned */
void px_backend_caps_probe(struct event_base *base, const struct px_config *cfg)
{
	struct px_reply_reader rr;
	char cmd[300];
	int fd, code;
	unsigned caps;
	size_t size;

	if (cfg->backend.kind == PX_BACKEND_MAILDIR)
		return;
	if ((fd = probe_connect(&cfg->backend)) < 0) {
		px_log(PX_LOG_WARN, NULL, "probe backend=%s status=unreachable error=\"%s\"",
		       cfg->backend.text, strerror(errno));
		return;
	}
	snprintf(cmd, sizeof(cmd), "%s %s\r\n", cfg->backend.kind == PX_BACKEND_LMTP ? "LHLO" :
		 "EHLO", cfg->hostname);
	px_reply_reader_init(&rr);
	if ((code = probe_reply(fd, &rr)) != 220 ||
	    send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0 ||
	    (code = probe_reply(fd, &rr)) != 250) {
		px_log(PX_LOG_WARN, NULL, "probe backend=%s status=failed reply=%d",
		       cfg->backend.text, code);
		close(fd);
		return;
	}
	caps = px_backend_caps_parse(rr.text, &size);
	px_backend_caps_note(caps, size);
	send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL);
	close(fd);
	px_log(PX_LOG_INFO, NULL, "probe backend=%s status=ok pipelining=%s dsn=%s xclient=%s "
	       "chunking=%s size=%zu", cfg->backend.text, caps & PX_CAP_PIPELINING ? "yes" : "no",
	       caps & PX_CAP_DSN ? "yes" : "no", caps & PX_CAP_XCLIENT ? "yes" : "no",
	       caps & PX_CAP_CHUNKING ? "yes" : "no", size);
}
