/*
 * NAME
 *	config_policy - the policy sections of the configuration
 * DESCRIPTION
 *	The option tables of `policy { }`, `allow { }`, `deny { }`,
 *	`override "NAME" { }` and `plugin "NAME" { }` (for config_schema.c's schema),
 *	their value checks (run while parsing, so errors carry file:line), and
 *	px_policy_build(), which turns the merged sections into a px_policy.
 */
#ifndef PX_POLICY_CONFIG_POLICY_H
#define PX_POLICY_CONFIG_POLICY_H

#include <confuse.h>

#include "policy.h"

extern cfg_opt_t px_policy_opts[];
extern cfg_opt_t px_lists_opts[];
extern cfg_opt_t px_override_opts[];
extern cfg_opt_t px_plugin_opts[];

/* px_policy_build - from the merged cfg; hostname is the default authserv-id */
struct px_policy *px_policy_build(cfg_t *cfg, const char *hostname);

#endif
