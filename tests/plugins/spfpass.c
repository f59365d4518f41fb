/* spfpass - a test plugin that records "spf=pass smtp.mailfrom=DOMAIN" at
 * MAIL for every sender with a domain, as the SPF plugin does when the
 * sender's SPF record lists the client; the greylist tests use it to see
 * the sender's domain replace the client network. */
#include <postern/plugin.h>

#include <stdio.h>
#include <string.h>

static const struct px_host *host;

static int spfpass_load(const struct px_host *h, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	host = h;
	return 0;
}

static enum px_verdict spfpass_mail(const void *conf, struct px_txn *txn)
{
	const char *from = host->get(txn, "mail.from"), *at;
	char props[300];

	(void)conf;
	if (from == NULL || (at = strrchr(from, '@')) == NULL)
		return PX_NEXT;
	snprintf(props, sizeof(props), "smtp.mailfrom=%s", at + 1);
	host->record(txn, "spf", "pass", props);
	return PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "spfpass",
	.version = "1.0",
	.description = "test: spf=pass for every sender",
	.load = spfpass_load,
	.on_mail = spfpass_mail,
};
