/* nosymbol - a test plugin that exports a struct under the wrong name and
 * no px_plugin: the loader must refuse it ("does not export px_plugin"). */
#include <postern/plugin.h>

__attribute__((visibility("default"))) const struct px_plugin px_plugin_v1 = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "nosymbol",
	.version = "0",
	.description = "test: exports px_plugin_v1 instead of px_plugin",
};
