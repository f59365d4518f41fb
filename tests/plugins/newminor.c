/* newminor - a test plugin that claims an ABI minor newer than the host's
 * (it may use services the host lacks): the loader must refuse it. */
#include <postern/plugin.h>

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR + 1,
	.name = "newminor",
	.version = "0",
	.description = "test: ABI minor newer than the host's",
};
