/* sleeper - a test plugin whose RCPT hook blocks for sleep_ms milliseconds
 * (default 5000), then says PX_NEXT. With a smaller `timeout` the host must
 * answer the RCPT after the budget with the plugin's on_error, and the
 * session must go on. */
#include <postern/plugin.h>

#include <stddef.h>
#include <time.h>

struct sleeper_conf {
	long long sleep_ms;
};

static const struct px_option sleeper_options[] = {
	{ "sleep_ms", PX_OPT_INT, "5000", 0, 600000,
	  offsetof(struct sleeper_conf, sleep_ms), "how long on_rcpt sleeps (ms)" },
	{ 0 }
};

static enum px_verdict sleeper_rcpt(const void *conf, struct px_txn *txn)
{
	const struct sleeper_conf *c = conf;
	struct timespec ts = { (time_t)(c->sleep_ms / 1000), (long)(c->sleep_ms % 1000) * 1000000L };

	(void)txn;
	while (nanosleep(&ts, &ts) != 0)
		;                       /* EINTR: sleep the rest */
	return PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "sleeper",
	.version = "0",
	.description = "test: on_rcpt sleeps sleep_ms",
	.options = sleeper_options,
	.conf_size = sizeof(struct sleeper_conf),
	.on_rcpt = sleeper_rcpt,
};
