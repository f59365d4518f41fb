/* recorder - a test plugin that records fixed results at data-end, for the
 * Authentication-Results tests. Option `results` is a list of
 * "method=result [props]" items, recorded in the order given, e.g.
 *     results = "dkim=pass header.d=a.test, spf=fail smtp.mailfrom=b.test" */
#include <postern/plugin.h>

#include <stddef.h>
#include <stdio.h>
#include <string.h>

struct recorder_conf {
	const char *const *results;
};

static const struct px_option recorder_options[] = {
	{ "results", PX_OPT_LIST, NULL, 0, 0, offsetof(struct recorder_conf, results),
	  "\"method=result props\" items recorded at data-end" },
	{ 0 }
};

static const struct px_host *host;

static int recorder_load(const struct px_host *h, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	host = h;
	return 0;
}

static int recorder_configure(void *conf, char *err, size_t errlen)
{
	const struct recorder_conf *c = conf;

	for (const char *const *r = c->results; r != NULL && *r != NULL; r++) {
		const char *eq = strchr(*r, '=');

		if (eq == NULL || eq == *r || eq[1] == '\0' || eq[1] == ' ') {
			snprintf(err, errlen, "results: '%s' is not method=result [props]", *r);
			return -1;
		}
	}
	return 0;
}

static enum px_verdict recorder_data_end(const void *conf, struct px_txn *txn)
{
	const struct recorder_conf *c = conf;

	for (const char *const *r = c->results; r != NULL && *r != NULL; r++) {
		const char *eq = strchr(*r, '='), *sp = strchr(eq, ' ');
		size_t mlen = (size_t)(eq - *r), rlen = sp ? (size_t)(sp - eq - 1) : strlen(eq + 1);
		char *method = host->alloc(txn, mlen + 1), *result = host->alloc(txn, rlen + 1);

		if (method == NULL || result == NULL)
			return PX_TEMPFAIL;
		memcpy(method, *r, mlen);
		memcpy(result, eq + 1, rlen);
		host->record(txn, method, result, sp ? sp + 1 : NULL);
	}
	return PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "recorder",
	.version = "0",
	.description = "test: records the results named in its options at data-end",
	.options = recorder_options,
	.conf_size = sizeof(struct recorder_conf),
	.load = recorder_load,
	.configure = recorder_configure,
	.on_data_end = recorder_data_end,
};
