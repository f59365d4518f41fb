/* idle - a test plugin that hooks no stage: loaded, configured, never
 * called. bench/relay --plugin idle.so against an empty chain shows what an
 * unhooked stage costs (nothing: no hand-off to the worker pool). */
#include <postern/plugin.h>

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "idle",
	.version = "1",
	.description = "test: hooks nothing",
};
