/* pending - a test plugin whose RCPT hook answers PX_PENDING, then, from a
 * detached thread of its own, waits delay_ms (default 200) and calls
 * host->resume(txn, V) with V named by the option `verdict` (next, accept,
 * tempfail, reject, discard, quarantine, disconnect; default next).
 * It declares ABI 1.0 and ends its call the 1.0 way, resume(txn, V): the
 * host must keep such plugins working (the txn it is handed is its own, so
 * resume ends exactly its call). */
#include <postern/plugin.h>

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct pending_conf {
	const char *verdict;        /* option */
	long long delay_ms;         /* option */
	enum px_verdict v;          /* derived by configure */
};

static const struct px_option pending_options[] = {
	{ "verdict", PX_OPT_STRING, "next", 0, 0, offsetof(struct pending_conf, verdict),
	  "verdict given to resume()" },
	{ "delay_ms", PX_OPT_INT, "200", 0, 600000, offsetof(struct pending_conf, delay_ms),
	  "how long before resume() (ms)" },
	{ 0 }
};

static const char *const names[] = { "next", "accept", "tempfail", "reject", "discard",
				     "quarantine", "disconnect" };

static const struct px_host *host;

struct job {
	struct px_txn *txn;
	enum px_verdict v;
	long long delay_ms;
};

static int pending_load(const struct px_host *h, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	host = h;
	return 0;
}

static int pending_configure(void *conf, char *err, size_t errlen)
{
	struct pending_conf *c = conf;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(c->verdict, names[i]) == 0) {
			c->v = (enum px_verdict)i;
			return 0;
		}
	}
	snprintf(err, errlen, "verdict: unknown verdict '%s'", c->verdict);
	return -1;
}

static void *later(void *arg)
{
	struct job *j = arg;
	struct timespec ts = { (time_t)(j->delay_ms / 1000), (long)(j->delay_ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
	host->resume(j->txn, j->v);
	free(j);
	return NULL;
}

static enum px_verdict pending_rcpt(const void *conf, struct px_txn *txn)
{
	const struct pending_conf *c = conf;
	struct job *j = malloc(sizeof(*j));
	pthread_t t;
	pthread_attr_t a;

	if (j == NULL)
		return PX_TEMPFAIL;
	j->txn = txn;
	j->v = c->v;
	j->delay_ms = c->delay_ms;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, later, j) != 0) {
		pthread_attr_destroy(&a);
		free(j);
		return PX_TEMPFAIL;
	}
	pthread_attr_destroy(&a);
	return PX_PENDING;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = 0,             /* a 1.0 plugin: uses only 1.0 services */
	.name = "pending",
	.version = "0",
	.description = "test: on_rcpt answers PX_PENDING and resumes from its own thread",
	.options = pending_options,
	.conf_size = sizeof(struct pending_conf),
	.load = pending_load,
	.configure = pending_configure,
	.on_rcpt = pending_rcpt,
};
