/*
 * NAME
 *	config_policy - the policy sections of the configuration
 * DESCRIPTION
 *	See config_policy.h. Rules ("KEY=RESULT ACTION"), networks and
 *	monitor values are checked by parse callbacks, so a bad one is a
 *	"file:line:" error like any other.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/netaddr.h"
#include "config_policy.h"

/* cb_rule - "KEY=RESULT ACTION" */
static int cb_rule(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct px_action_rule r;
	const char *why = "";

	if (px_rule_parse(value, &r, &why) < 0) {
		cfg_error(cfg, "%s: '%s': %s", opt->name, value, why);
		return -1;
	}
	free(r.key);
	free(r.result);
	*(const char **)result = value;
	return 0;
}

/* cb_net - a CIDR network */
static int cb_net(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct px_cidr c;
	char err[200];

	if (px_cidr_parse(value, &c, err, sizeof(err)) < 0) {
		cfg_error(cfg, "%s: '%s': %s", opt->name, value, err);
		return -1;
	}
	*(const char **)result = value;
	return 0;
}

/* cb_tristate - "yes", "no" or "" (unset) */
static int cb_tristate(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	static const char *const ok[] = { "", "yes", "no", "true", "false", "on", "off" };
	size_t i;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcasecmp(value, ok[i]) == 0) {
			*(const char **)result = value;
			return 0;
		}
	cfg_error(cfg, "%s: '%s': expected yes or no", opt->name, value);
	return -1;
}

cfg_opt_t px_policy_opts[] = {
	CFG_STR("authserv_id", NULL, CFGF_NONE),
	CFG_BOOL("monitor", cfg_false, CFGF_NONE),
	CFG_BOOL("verdict_headers", cfg_false, CFGF_NONE),
	CFG_STR_LIST_CB("actions", NULL, CFGF_NONE, cb_rule),
	CFG_END()
};

cfg_opt_t px_lists_opts[] = {
	CFG_STR_LIST_CB("networks", NULL, CFGF_NONE, cb_net),
	CFG_STR_LIST("senders", NULL, CFGF_NONE),
	CFG_STR_LIST("recipients", NULL, CFGF_NONE),
	CFG_END()
};

cfg_opt_t px_override_opts[] = {
	CFG_STR_LIST_CB("client_networks", NULL, CFGF_NONE, cb_net),
	CFG_STR_LIST("sender_domains", NULL, CFGF_NONE),
	CFG_STR_LIST("senders", NULL, CFGF_NONE),
	CFG_STR_LIST("recipient_domains", NULL, CFGF_NONE),
	CFG_STR_LIST("recipients", NULL, CFGF_NONE),
	CFG_STR_CB("monitor", "", CFGF_NONE, cb_tristate),
	CFG_STR_LIST("skip", NULL, CFGF_NONE),
	CFG_STR_LIST_CB("actions", NULL, CFGF_NONE, cb_rule),
	CFG_END()
};

/* The host's keys; the plugin's own options are free-form (CFGF_KEYSTRVAL).
 * config_plugins.c relies on these four coming first, in this order. */
cfg_opt_t px_plugin_opts[] = {
	CFG_STR("path", NULL, CFGF_NONE),
	CFG_STR("timeout", "10s", CFGF_NONE),
	CFG_STR("on_error", "tempfail", CFGF_NONE),
	CFG_STR_CB("monitor", "no", CFGF_NONE, cb_tristate),
	CFG_END()
};

/* strings_add - append the values of list opt to *v */
static int strings_add(cfg_t *sec, const char *opt, char ***v, size_t *n)
{
	unsigned i, k = cfg_size(sec, opt);
	char **nv;

	if (k == 0)
		return 0;
	if ((nv = realloc(*v, (*n + k) * sizeof(*nv))) == NULL)
		return -1;
	*v = nv;
	for (i = 0; i < k; i++)
		if ((nv[(*n)++] = strdup(cfg_getnstr(sec, opt, i))) == NULL)
			return -1;
	return 0;
}

/* networks_build - parse an already checked list */
static int networks_build(cfg_t *sec, const char *opt, struct px_match_lists *l)
{
	unsigned i, k = cfg_size(sec, opt);
	char err[200];

	if (k == 0)
		return 0;
	if ((l->networks = calloc(k, sizeof(*l->networks))) == NULL)
		return -1;
	for (i = 0; i < k; i++)
		if (px_cidr_parse(cfg_getnstr(sec, opt, i), &l->networks[l->nnetworks++], err,
				  sizeof(err)) < 0)
			return -1;
	return 0;
}

/* rules_build - the checked rules */
static int rules_build(cfg_t *sec, struct px_action_rule **out, size_t *n)
{
	unsigned i, k = cfg_size(sec, "actions");
	const char *why;

	if (k == 0)
		return 0;
	if ((*out = calloc(k, sizeof(**out))) == NULL)
		return -1;
	for (i = 0; i < k; i++, (*n)++)
		if (px_rule_parse(cfg_getnstr(sec, "actions", i), &(*out)[i], &why) < 0)
			return -1;
	return 0;
}

/* lists_build - allow { } and deny { } */
static int lists_build(cfg_t *sec, struct px_match_lists *l)
{
	return networks_build(sec, "networks", l) < 0 ||
	       strings_add(sec, "senders", &l->senders, &l->nsenders) < 0 ||
	       strings_add(sec, "recipients", &l->recipients, &l->nrecipients) < 0 ? -1 : 0;
}

/* tristate - "" -1, yes 1, no 0 */
static int tristate(const char *s)
{
	if (s == NULL || *s == '\0')
		return -1;
	return !strcasecmp(s, "yes") || !strcasecmp(s, "true") || !strcasecmp(s, "on");
}

/* override_build - one override section */
static int override_build(cfg_t *sec, struct px_override *o)
{
	struct px_match_lists *m = &o->match;

	o->name = strdup(cfg_title(sec));
	o->monitor = tristate(cfg_getstr(sec, "monitor"));
	return o->name == NULL || networks_build(sec, "client_networks", m) < 0 ||
	       strings_add(sec, "sender_domains", &m->senders, &m->nsenders) < 0 ||
	       strings_add(sec, "senders", &m->senders, &m->nsenders) < 0 ||
	       strings_add(sec, "recipient_domains", &m->recipients, &m->nrecipients) < 0 ||
	       strings_add(sec, "recipients", &m->recipients, &m->nrecipients) < 0 ||
	       strings_add(sec, "skip", &o->skip, &o->nskip) < 0 ||
	       rules_build(sec, &o->actions, &o->nactions) < 0 ? -1 : 0;
}

/* policy_main - the policy { } section */
static int policy_main(cfg_t *sec, struct px_policy *p, const char *hostname)
{
	const char *id = cfg_getstr(sec, "authserv_id");

	p->authserv_id = strdup(id && *id ? id : hostname);
	p->monitor = cfg_getbool(sec, "monitor") == cfg_true;
	p->verdict_headers = cfg_getbool(sec, "verdict_headers") == cfg_true;
	return p->authserv_id == NULL || rules_build(sec, &p->actions, &p->nactions) < 0 ? -1 : 0;
}

/* px_policy_build - the whole policy; NULL on out of memory */
struct px_policy *px_policy_build(cfg_t *cfg, const char *hostname)
{
	struct px_policy *p = calloc(1, sizeof(*p));
	unsigned i, n = cfg_size(cfg, "override");

	if (p == NULL)
		return NULL;
	if (policy_main(cfg_getsec(cfg, "policy"), p, hostname) < 0 ||
	    lists_build(cfg_getsec(cfg, "allow"), &p->allow) < 0 ||
	    lists_build(cfg_getsec(cfg, "deny"), &p->deny) < 0 ||
	    (n > 0 && (p->overrides = calloc(n, sizeof(*p->overrides))) == NULL)) {
		px_policy_free(p);
		return NULL;
	}
	for (i = 0; i < n && i < 64; i++, p->noverrides++)
		if (override_build(cfg_getnsec(cfg, "override", i), &p->overrides[i]) < 0) {
			p->noverrides++;
			px_policy_free(p);
			return NULL;
		}
	return p;
}
