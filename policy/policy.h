/*
 * NAME
 *	policy - turn plugin results into actions; overrides, allow and deny
 * DESCRIPTION
 *	The policy of a configuration generation, read from its `policy { }`,
 *	`allow { }`, `deny { }` and `override "NAME" { }` sections.
 *
 *	A view is what applies to one client, sender and recipient: which
 *	overrides match (any of their lists), whether an allow or deny list
 *	matches (allow is checked first and wins), and whether monitor mode is
 *	on (globally or by a matching override). A transaction takes the view
 *	of its first accepted recipient; a recipient with another view gets
 *	452 4.5.3, so every message gets exactly its recipients' policy.
 *
 *	Actions: a rule "KEY=RESULT ACTION" matches a result recorded by the
 *	plugin called KEY or with the method KEY. Rules of matching overrides
 *	come first (in their order), then policy.actions; the first match wins.
 */
#ifndef PX_POLICY_POLICY_H
#define PX_POLICY_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "common/netaddr.h"
#include "filters/chain.h"   /* enum px_action, struct px_chain_decider */

struct px_action_rule {
	char *key, *result;       /* result "*" matches any */
	enum px_action action;
};

struct px_match_lists {
	struct px_cidr *networks;
	size_t nnetworks;
	char **senders;           /* "a@b", "@domain", "domain", ".domain" */
	size_t nsenders;
	char **recipients;
	size_t nrecipients;
};

struct px_override {
	char *name;
	struct px_match_lists match;  /* client_networks, sender_domains+senders, recipient_domains+recipients */
	int monitor;              /* -1 unset */
	char **skip;
	size_t nskip;
	struct px_action_rule *actions;
	size_t nactions;
};

struct px_policy {
	char *authserv_id;
	int monitor;
	int verdict_headers;
	struct px_action_rule *actions;
	size_t nactions;
	struct px_match_lists allow, deny;
	struct px_override *overrides;
	size_t noverrides;        /* at most 64 */
};

/* px_policy_view_for - sender and rcpt may be NULL (not known yet) */
void px_policy_view_for(const struct px_policy *p, const char *client_addr, const char *sender,
			const char *rcpt, struct px_policy_view *out);
int px_policy_view_equal(const struct px_policy_view *a, const struct px_policy_view *b);
/* px_policy_skips - a matching override says not to run this plugin */
int px_policy_skips(const struct px_policy *p, const struct px_policy_view *v, const char *plugin);
/* px_policy_action - the action for a result, or PX_ACT_NONE */
enum px_action px_policy_action(const struct px_policy *p, const struct px_policy_view *v,
				const char *plugin, const char *method, const char *result);

int px_action_parse(const char *s, enum px_action *out);
const char *px_action_name(enum px_action a);
/* px_rule_parse - "KEY=RESULT ACTION"; 0, or -1 with why */
int px_rule_parse(const char *text, struct px_action_rule *out, const char **why);
/* px_address_matches - an address against "a@b" / "@dom" / "dom" / ".dom" entries */
int px_address_matches(char *const *list, size_t n, const char *addr);

void px_policy_free(struct px_policy *p);

/* px_policy_decider - px_policy_skips and px_policy_action, for the chain
 * runner (struct px_run_ctx.decide): filters/ asks, policy/ answers */
extern const struct px_chain_decider px_policy_decider;

#endif
