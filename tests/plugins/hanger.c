/* hanger - a test plugin that hangs, as a blocking library does when its
 * DNS server never answers: on MAIL FROM:<hang_from> its hook blocks for
 * hang_ms (default 10 minutes: "forever" for a test, yet bounded; the
 * thread also goes when posternd exits), then answers PX_REJECT, which is
 * late by then and must be dropped. Every other
 * sender gets PX_NEXT at once, with the result hanger=pass. The host must
 * give the hung sender on_error at the budget, keep every other session's
 * chain flowing while more calls hang than the pool has workers, and give
 * the plugin on_error at once when too many of its calls are stuck. */
#include <postern/plugin.h>

#include <errno.h>
#include <stddef.h>
#include <strings.h>
#include <time.h>

struct hanger_conf {
	const char *hang_from;
	long long hang_ms;
};

static const struct px_option hanger_options[] = {
	{ "hang_from", PX_OPT_STRING, "stuck@hung.test", 0, 0,
	  offsetof(struct hanger_conf, hang_from), "the sender whose mail hangs the hook" },
	{ "hang_ms", PX_OPT_INT, "600000", 0, 3600000,
	  offsetof(struct hanger_conf, hang_ms), "how long the hook hangs (ms)" },
	{ 0 }
};

static const struct px_host *host;

static int hanger_load(const struct px_host *h, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	host = h;
	return 0;
}

/* hang - block for ms, whatever signals come */
static void hang(long long ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
}

static enum px_verdict hanger_mail(const void *conf, struct px_txn *txn)
{
	const struct hanger_conf *c = conf;
	const char *from = host->get(txn, "mail.from");

	if (from != NULL && c->hang_from != NULL && strcasecmp(from, c->hang_from) == 0) {
		host->log(txn, PX_PRIO_INFO, "hang ms=%lld", c->hang_ms);
		hang(c->hang_ms);
		host->record(txn, "hanger", "hung", NULL);     /* late: dropped */
		return PX_REJECT;                              /* late: dropped */
	}
	host->record(txn, "hanger", "pass", NULL);
	return PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "hanger",
	.version = "0",
	.description = "test: on_mail hangs on one sender's mail",
	.options = hanger_options,
	.conf_size = sizeof(struct hanger_conf),
	.load = hanger_load,
	.on_mail = hanger_mail,
};
