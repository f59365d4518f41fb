/* badmajor - a test plugin built for an ABI major this host does not speak
 * (PX_ABI_MAJOR + 1): the loader must refuse it, naming both versions. */
#include <postern/plugin.h>

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR + 1,
	.abi_minor = 0,
	.name = "badmajor",
	.version = "0",
	.description = "test: ABI major from the future",
};
