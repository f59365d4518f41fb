/*
 * NAME
 *	greylist_admin - `postern greylist list | allow | purge`
 * SYNOPSIS
 *	postern [-c FILE] greylist list
 *	postern [-c FILE] greylist allow ADDR|ADDR/LEN|DOMAIN [DURATION]
 *	postern [-c FILE] greylist purge [TEXT]
 * DESCRIPTION
 *	Reads and writes the greylist plugin's keys in the configured store
 *	(`store`, the same LMDB directory or Redis that posternd uses; LMDB
 *	may be open in posternd meanwhile). The keys are the plugin's
 *	(plugins/greylist/greylist.c, doc/plugins/greylist.md):
 *	    greylist:t:NET/SENDER/RCPT  "FIRST_MS PASSES"
 *	    greylist:c:NET              passes (a counter); ALLOWED = allowed
 *	list prints one line per triplet, "NET SENDER RCPT waiting|passed
 *	first=TIME passes=N expires=TIME", then one per client network,
 *	"client NET passes=N|allowed expires=TIME".
 *	allow marks a network (an address stands for its /24 or /64) or, as
 *	"d:DOMAIN", a sender domain whose SPF passed, as allowed for DURATION
 *	(default 30d).
 *	purge deletes every greylist key that contains TEXT (case ignored;
 *	all of them without TEXT) and prints purged=N.
 *	Exit status 0, or 1 with a message (the store failed, bad arguments).
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/units.h"
#include "filters/store.h"
#include "greylist_admin.h"

#define ALLOWED 1000000000LL      /* as plugins/greylist/greylist.c */
#define PREFIX "greylist:"

/* when - an absolute ms time as UTC text; "never" for 0 */
static const char *when(unsigned long long ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms == 0)
		return "never";
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/* split_triplet - NET, SENDER, RCPT of "NET/SENDER/RCPT" (NET has a '/'
 * itself unless it is d:DOMAIN); -1 when it is not one */
static int split_triplet(char *k, char **net, char **from, char **rcpt)
{
	char *p = strchr(k, '/');

	if (p == NULL)
		return -1;
	if (strncmp(k, "d:", 2) != 0 && (p = strchr(p + 1, '/')) == NULL)
		return -1;
	*p = '\0';
	*net = k;
	*from = p + 1;
	if ((p = strchr(*from, '/')) == NULL)
		return -1;
	*p = '\0';
	*rcpt = p + 1;
	return 0;
}

static int list_one(void *arg, const char *key, size_t klen, const void *val, size_t vlen,
		    unsigned long long expires)
{
	char k[PX_STORE_KEY_MAX + 1], v[64], t1[32], t2[32], *net, *from, *rcpt;
	long long first = 0, passes = 0;
	const size_t pl = sizeof(PREFIX) - 1;

	(void)arg;
	if (klen <= pl + 2 || klen > PX_STORE_KEY_MAX || vlen >= sizeof(v))
		return 0;
	memcpy(k, key + pl, klen - pl);
	k[klen - pl] = '\0';
	memcpy(v, val, vlen);
	v[vlen] = '\0';
	if (strncmp(k, "t:", 2) == 0 && sscanf(v, "%lld %lld", &first, &passes) == 2 &&
	    split_triplet(k + 2, &net, &from, &rcpt) == 0)
		printf("%s %s %s %s first=%s passes=%lld expires=%s\n", net, from, rcpt,
		       passes ? "passed" : "waiting", when((unsigned long long)first, t1, sizeof(t1)),
		       passes, when(expires, t2, sizeof(t2)));
	else if (strncmp(k, "c:", 2) == 0 && (passes = atoll(v)) >= ALLOWED)
		printf("client %s allowed expires=%s\n", k + 2, when(expires, t2, sizeof(t2)));
	else if (strncmp(k, "c:", 2) == 0)
		printf("client %s passes=%lld expires=%s\n", k + 2, passes,
		       when(expires, t2, sizeof(t2)));
	return 0;
}

/* allow_key - "greylist:c:NET" for an address, a network or a domain */
static int allow_key(const char *what, char *key, size_t len)
{
	unsigned char b[16];
	char ip[64], out[INET6_ADDRSTRLEN], *slash;
	unsigned long plen;
	int v6, i;

	snprintf(ip, sizeof(ip), "%s", what);
	slash = strchr(ip, '/');
	if (slash != NULL)
		*slash = '\0';
	v6 = strchr(ip, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, ip, b) != 1) {
		if (slash != NULL || strchr(what, '.') == NULL || strchr(what, '@') != NULL)
			return -1;
		snprintf(key, len, PREFIX "c:d:%s", what);
	} else {
		plen = slash ? strtoul(slash + 1, NULL, 10) : (v6 ? 64 : 24);
		if (plen > (v6 ? 128UL : 32UL))
			return -1;
		for (i = (int)plen; i < (v6 ? 128 : 32); i++)
			b[i / 8] &= (unsigned char)~(0x80u >> (i % 8));
		inet_ntop(v6 ? AF_INET6 : AF_INET, b, out, sizeof(out));
		snprintf(key, len, PREFIX "c:%s/%lu", out, plen);
	}
	for (i = 0; key[i]; i++)
		key[i] = (char)tolower((unsigned char)key[i]);
	return 0;
}

static int cmd_allow(struct px_store *s, int argc, char **argv)
{
	char key[PX_STORE_KEY_MAX + 1], num[24];
	unsigned long long ttl = 30ULL * 86400000ULL;
	int n;

	if (argc < 2 || argc > 3 || allow_key(argv[1], key, sizeof(key)) < 0 ||
	    (argc == 3 && px_parse_duration_ms(argv[2], &ttl) < 0)) {
		fprintf(stderr, "usage: postern greylist allow ADDR|ADDR/LEN|DOMAIN [DURATION]\n");
		return 1;
	}
	n = snprintf(num, sizeof(num), "%lld", ALLOWED);
	if (px_store_set(s, key, strlen(key), num, (size_t)n, ttl) != PX_STORE_OK) {
		fprintf(stderr, "postern: greylist allow: the store failed (%s)\n",
			px_store_spec(s));
		return 1;
	}
	printf("allowed %s for %llus\n", key + sizeof(PREFIX) + 1, ttl / 1000);
	return 0;
}

struct purge {
	const char *text;
	char **keys;
	size_t n, cap;
	int oom;
};

/* contains - text in s[0..n) (case ignored) */
static int contains(const char *s, size_t n, const char *text)
{
	size_t m = strlen(text), i;

	for (i = 0; i + m <= n; i++)
		if (strncasecmp(s + i, text, m) == 0)
			return 1;
	return 0;
}

static int purge_one(void *arg, const char *key, size_t klen, const void *val, size_t vlen,
		     unsigned long long expires)
{
	struct purge *p = arg;
	char **v;

	(void)val;
	(void)vlen;
	(void)expires;
	if (p->text != NULL && !contains(key, klen, p->text))
		return 0;
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		if ((v = realloc(p->keys, p->cap * sizeof(*v))) == NULL) {
			p->oom = 1;
			return 1;
		}
		p->keys = v;
	}
	if ((p->keys[p->n] = strndup(key, klen)) == NULL) {
		p->oom = 1;
		return 1;
	}
	p->n++;
	return 0;
}

/* cmd_purge - collect, then delete (LMDB: no write inside the scan) */
static int cmd_purge(struct px_store *s, int argc, char **argv)
{
	struct purge p = { .text = argc > 1 ? argv[1] : NULL };
	size_t i, done = 0;
	int rc = 0;

	if (argc > 2) {
		fprintf(stderr, "usage: postern greylist purge [TEXT]\n");
		return 1;
	}
	if (px_store_scan(s, PREFIX, purge_one, &p) != PX_STORE_OK || p.oom)
		rc = 1;
	for (i = 0; i < p.n; i++) {
		if (rc == 0 && px_store_del(s, p.keys[i], strlen(p.keys[i])) == PX_STORE_OK)
			done++;
		else
			rc = 1;
		free(p.keys[i]);
	}
	free(p.keys);
	printf("purged=%zu\n", done);
	if (rc)
		fprintf(stderr, "postern: greylist purge: the store failed (%s)\n",
			px_store_spec(s));
	return rc;
}

int px_greylist_admin(int argc, char **argv)
{
	struct px_store *s = px_store_acquire();
	int rc = 1;

	if (s == NULL || argc < 1) {
		fprintf(stderr, "usage: postern greylist list | allow ADDR|DOMAIN [DURATION] | "
			"purge [TEXT]\n");
	} else if (strcmp(argv[0], "list") == 0 && argc == 1) {
		rc = px_store_scan(s, PREFIX, list_one, NULL) == PX_STORE_OK ? 0 : 1;
		if (rc)
			fprintf(stderr, "postern: greylist list: the store failed (%s)\n",
				px_store_spec(s));
	} else if (strcmp(argv[0], "allow") == 0) {
		rc = cmd_allow(s, argc, argv);
	} else if (strcmp(argv[0], "purge") == 0) {
		rc = cmd_purge(s, argc, argv);
	} else {
		fprintf(stderr, "postern greylist: unknown command '%s' (list, allow, purge)\n",
			argv[0]);
	}
	px_store_release(s);
	return rc;
}
