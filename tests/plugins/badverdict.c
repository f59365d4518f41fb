/* badverdict - a test plugin whose MAIL hook returns 42, which is no
 * px_verdict: the host must apply the plugin's on_error. */
#include <postern/plugin.h>

static enum px_verdict badverdict_mail(const void *conf, struct px_txn *txn)
{
	(void)conf;
	(void)txn;
	return (enum px_verdict)42;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "badverdict",
	.version = "0",
	.description = "test: on_mail returns an invalid verdict (42)",
	.on_mail = badverdict_mail,
};
