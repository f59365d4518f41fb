/*
 * NAME
 *	policy - turn plugin results into actions; overrides, allow and deny
 * DESCRIPTION
 *	See policy.h. Address list entries: "user@domain" matches that address
 *	(case-insensitive), "@domain" or "domain" every address at that domain,
 *	".domain" every address at its subdomains.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy.h"

static const char *const action_names[] = {
	"none", "accept", "reject", "tempfail", "discard", "quarantine", "disconnect", "tag", "ignore"
};

const char *px_action_name(enum px_action a)
{
	return (unsigned)a <= PX_ACT_IGNORE ? action_names[a] : "?";
}

/* px_action_parse - a name from the table (not "none") */
int px_action_parse(const char *s, enum px_action *out)
{
	unsigned i;

	for (i = PX_ACT_ACCEPT; i <= PX_ACT_IGNORE; i++)
		if (strcasecmp(s, action_names[i]) == 0) {
			*out = (enum px_action)i;
			return 0;
		}
	return -1;
}

/* px_rule_parse - "KEY=RESULT ACTION" */
int px_rule_parse(const char *text, struct px_action_rule *out, const char **why)
{
	const char *eq = strchr(text, '='), *sp;
	char act[32];

	memset(out, 0, sizeof(*out));
	if (eq == NULL || eq == text || (sp = strchr(eq, ' ')) == NULL || sp == eq + 1) {
		*why = "expected \"KEY=RESULT ACTION\", e.g. \"spf=fail reject\"";
		return -1;
	}
	snprintf(act, sizeof(act), "%s", sp + strspn(sp, " "));
	if (px_action_parse(act, &out->action) < 0) {
		*why = "unknown action (accept, reject, tempfail, discard, quarantine, disconnect, "
		       "tag, ignore)";
		return -1;
	}
	out->key = strndup(text, (size_t)(eq - text));
	out->result = strndup(eq + 1, (size_t)(sp - eq - 1));
	return 0;
}

/* domain_of - the part after the last '@', or the whole string */
static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at ? at + 1 : addr;
}

/* entry_matches - one list entry against an address */
static int entry_matches(const char *entry, const char *addr)
{
	const char *dom = domain_of(addr);
	size_t dl = strlen(dom), el = strlen(entry);

	if (entry[0] == '@')
		return strcasecmp(entry + 1, dom) == 0;
	if (entry[0] == '.')
		return dl > el && strcasecmp(dom + dl - el, entry) == 0;
	if (strchr(entry, '@') != NULL)
		return strcasecmp(entry, addr) == 0;
	return strcasecmp(entry, dom) == 0;
}

/* px_address_matches - any entry */
int px_address_matches(char *const *list, size_t n, const char *addr)
{
	size_t i;

	for (i = 0; addr != NULL && i < n; i++)
		if (entry_matches(list[i], addr))
			return 1;
	return 0;
}

/* client_sockaddr - the client's address as a sockaddr; 0 or -1 */
static int client_sockaddr(const char *addr, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (addr == NULL)
		return -1;
	if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

/* lists_match - network, sender or recipient in the lists */
static int lists_match(const struct px_match_lists *l, const struct sockaddr *sa,
		       const char *sender, const char *rcpt)
{
	return (sa != NULL && px_cidr_match_any(l->networks, l->nnetworks, sa)) ||
	       px_address_matches(l->senders, l->nsenders, sender) ||
	       px_address_matches(l->recipients, l->nrecipients, rcpt);
}

/* px_policy_view_for - what applies to this client, sender and recipient */
void px_policy_view_for(const struct px_policy *p, const char *client_addr, const char *sender,
			const char *rcpt, struct px_policy_view *out)
{
	struct sockaddr_storage ss;
	const struct sockaddr *sa = client_sockaddr(client_addr, &ss) == 0 ?
		(const struct sockaddr *)&ss : NULL;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (p == NULL)
		return;
	out->monitor = p->monitor;
	for (i = 0; i < p->noverrides && i < 64; i++) {
		if (!lists_match(&p->overrides[i].match, sa, sender, rcpt))
			continue;
		out->overrides |= (uint64_t)1 << i;
		if (p->overrides[i].monitor >= 0)
			out->monitor = p->overrides[i].monitor;
	}
	out->allow = lists_match(&p->allow, sa, sender, rcpt);
	out->deny = !out->allow && lists_match(&p->deny, sa, sender, rcpt);
}

int px_policy_view_equal(const struct px_policy_view *a, const struct px_policy_view *b)
{
	return a->overrides == b->overrides && a->allow == b->allow && a->monitor == b->monitor;
}

/* px_policy_skips - a matching override lists the plugin in skip */
int px_policy_skips(const struct px_policy *p, const struct px_policy_view *v, const char *plugin)
{
	size_t i, j;

	for (i = 0; p != NULL && i < p->noverrides && i < 64; i++)
		if (v->overrides & ((uint64_t)1 << i))
			for (j = 0; j < p->overrides[i].nskip; j++)
				if (strcmp(p->overrides[i].skip[j], plugin) == 0)
					return 1;
	return 0;
}

/* rules_find - the first rule for (plugin or method, result) */
static enum px_action rules_find(const struct px_action_rule *r, size_t n, const char *plugin,
				 const char *method, const char *result)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((strcasecmp(r[i].key, plugin) == 0 || strcasecmp(r[i].key, method) == 0) &&
		    (strcmp(r[i].result, "*") == 0 || strcasecmp(r[i].result, result) == 0))
			return r[i].action;
	return PX_ACT_NONE;
}

/* px_policy_action - overrides first, then the global rules */
enum px_action px_policy_action(const struct px_policy *p, const struct px_policy_view *v,
				const char *plugin, const char *method, const char *result)
{
	enum px_action a;
	size_t i;

	if (p == NULL)
		return PX_ACT_NONE;
	for (i = 0; i < p->noverrides && i < 64; i++) {
		if (!(v->overrides & ((uint64_t)1 << i)))
			continue;
		a = rules_find(p->overrides[i].actions, p->overrides[i].nactions, plugin, method,
			       result);
		if (a != PX_ACT_NONE)
			return a;
	}
	return rules_find(p->actions, p->nactions, plugin, method, result);
}

/* free_strings, free_rules, free_lists - release parts */
static void free_strings(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void free_rules(struct px_action_rule *r, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(r[i].key);
		free(r[i].result);
	}
	free(r);
}

static void free_lists(struct px_match_lists *l)
{
	free(l->networks);
	free_strings(l->senders, l->nsenders);
	free_strings(l->recipients, l->nrecipients);
}

/* px_policy_free - everything */
void px_policy_free(struct px_policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->noverrides; i++) {
		free(p->overrides[i].name);
		free_lists(&p->overrides[i].match);
		free_strings(p->overrides[i].skip, p->overrides[i].nskip);
		free_rules(p->overrides[i].actions, p->overrides[i].nactions);
	}
	free(p->overrides);
	free_lists(&p->allow);
	free_lists(&p->deny);
	free_rules(p->actions, p->nactions);
	free(p->authserv_id);
	free(p);
}

/* px_policy_decider - how the chain runner asks this policy (doc/layering.md) */
const struct px_chain_decider px_policy_decider = { px_policy_skips, px_policy_action };
