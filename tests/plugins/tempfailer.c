/* tempfailer - a test plugin that tempfails every RCPT with its own reply,
 * 451 4.7.1 greylisted (test), as a greylisting plugin would. */
#include <postern/plugin.h>

static const struct px_host *host;

static int tempfailer_load(const struct px_host *h, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	host = h;
	return 0;
}

static enum px_verdict tempfailer_rcpt(const void *conf, struct px_txn *txn)
{
	(void)conf;
	host->set_reply(txn, 451, "4.7.1", "greylisted (test)");
	return PX_TEMPFAIL;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "tempfailer",
	.version = "0",
	.description = "test: on_rcpt says 451 4.7.1 greylisted (test)",
	.load = tempfailer_load,
	.on_rcpt = tempfailer_rcpt,
};
