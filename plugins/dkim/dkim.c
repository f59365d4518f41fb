/*
 * NAME
 *	dkim - DKIM verification (every signature) and optional signing
 * SUMMARY
 *	At the end of DATA: verify every DKIM-Signature of the message with
 *	libopendkim, key lookups through the host's resolver, and record one
 *	"dkim" result per signature (or dkim=none); then, for mail our own
 *	users send, add our signature.
 * SYNOPSIS
 *	plugin "dkim" {
 *	    verify           = yes
 *	    max_signatures   = 8
 *	    min_key_bits     = 1024
 *	    dns_budget       = 6s
 *	    sign             = no
 *	    sign_keys        = "example.com:sel1:/etc/postern/dkim/example.com.pem"
 *	    canonicalization = "relaxed/relaxed"
 *	    sign_networks    = "192.0.2.0/24, 2001:db8::/32"
 *	    sign_headers     = ""
 *	    oversign_headers = "From"
 *	}
 * DESCRIPTION
 *	See doc/plugins/dkim.md for every option and the result vocabulary;
 *	verify.c, sign.c and dns.c for how each part works.
 *
 *	One DKIM_LIB per configuration generation, built by configure()
 *	(options, prescreen and DNS hooks set before any hook can use it:
 *	libopendkim does not lock them) and shared read-only by every worker
 *	thread (a DKIM_LIB may be used by several threads at once; each
 *	message gets its own handle).
 */
#include "pxdkim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define KEY_FILE_MAX (64 * 1024)

const struct px_host *pxdkim_host;

static const struct px_option pxdkim_options[] = {
	{ "verify", PX_OPT_BOOL, "yes", 0, 0, offsetof(struct pxdkim_conf, verify),
	  "verify every DKIM signature and record dkim=... for each" },
	{ "max_signatures", PX_OPT_INT, "8", 1, 64, offsetof(struct pxdkim_conf, max_signatures),
	  "signatures checked per message; later ones are ignored (logged)" },
	{ "min_key_bits", PX_OPT_INT, "1024", 1024, 16384,
	  offsetof(struct pxdkim_conf, min_key_bits),
	  "shorter RSA keys fail (RFC 8301: at least 1024)" },
	{ "dns_budget", PX_OPT_DURATION, "6s", 0, 600000,
	  offsetof(struct pxdkim_conf, dns_budget_ms),
	  "no new key lookup starts this long after the first (0 = no limit)" },
	{ "sign", PX_OPT_BOOL, "no", 0, 0, offsetof(struct pxdkim_conf, sign),
	  "sign mail from authenticated clients and sign_networks" },
	{ "sign_keys", PX_OPT_LIST, NULL, 0, 0, offsetof(struct pxdkim_conf, sign_keys),
	  "domain:selector:/path/to/key.pem[:algorithm], one per From domain "
	  "(the algorithm follows from the key)" },
	{ "canonicalization", PX_OPT_STRING, "relaxed/relaxed", 0, 0,
	  offsetof(struct pxdkim_conf, canonicalization),
	  "c= of our signatures: header/body, each simple or relaxed" },
	{ "sign_networks", PX_OPT_LIST, NULL, 0, 0, offsetof(struct pxdkim_conf, sign_networks),
	  "client networks (CIDR) whose mail is signed without AUTH" },
	{ "sign_headers", PX_OPT_LIST, NULL, 0, 0, offsetof(struct pxdkim_conf, sign_headers),
	  "header fields to sign (must include From); unset = RFC 6376 5.4.1's list "
	  "+ Message-ID, Sender, MIME-Version, Content-*" },
	{ "oversign_headers", PX_OPT_LIST, "From", 0, 0,
	  offsetof(struct pxdkim_conf, oversign_headers),
	  "header fields signed once more than present, so none can be added" },
	{ 0 }
};

/*
 * The fields we sign when sign_headers is unset: RFC 6376 5.4.1's list
 * (libopendkim's dkim_should_signhdrs) and the ones that say what the body
 * is and which message it is. Trace fields and other signatures are left
 * out: they change on the way.
 */
static const char *const default_signhdrs[] = {
	"from", "reply-to", "subject", "date", "to", "cc", "resent-date", "resent-from",
	"resent-sender", "resent-to", "resent-cc", "in-reply-to", "references", "list-id",
	"list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
	"list-archive", "message-id", "sender", "mime-version", "content-type",
	"content-transfer-encoding", "content-id", "content-description", NULL
};

/* ------------------------------------------------------- configure --- */

static int parse_alg(const char *s, dkim_alg_t *alg)
{
	if (strcasecmp(s, "rsa-sha256") == 0)
		*alg = DKIM_SIGN_RSASHA256;
	else if (strcasecmp(s, "ed25519-sha256") == 0)
		*alg = DKIM_SIGN_ED25519SHA256;
	else
		return -1;
	return 0;
}

static int parse_canon1(const char *s, size_t n, dkim_canon_t *c)
{
	if (n == 6 && strncasecmp(s, "simple", 6) == 0)
		*c = DKIM_CANON_SIMPLE;
	else if (n == 7 && strncasecmp(s, "relaxed", 7) == 0)
		*c = DKIM_CANON_RELAXED;
	else
		return -1;
	return 0;
}

/* parse_canon - "header/body" or "header" (body simple, RFC 6376 3.5) */
static int parse_canon(struct pxdkim_conf *c, char *err, size_t errlen)
{
	const char *s = c->canonicalization, *slash = strchr(s, '/');

	if (parse_canon1(s, slash ? (size_t)(slash - s) : strlen(s), &c->hcanon) < 0 ||
	    (slash && parse_canon1(slash + 1, strlen(slash + 1), &c->bcanon) < 0)) {
		snprintf(err, errlen, "canonicalization: '%s' is not header/body with each "
			 "simple or relaxed", s);
		return -1;
	}
	if (slash == NULL)
		c->bcanon = DKIM_CANON_SIMPLE;
	return 0;
}

/* read_key - the key file's text, NUL-terminated (malloc); NULL with err */
static unsigned char *read_key(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	size_t n;
	struct stat st;

	if (f == NULL) {
		snprintf(err, errlen, "sign_keys: %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH))
		pxdkim_host->log(NULL, PX_PRIO_WARN, "sign_keys: %s is readable by everyone "
				 "(chmod o-r it)", path);
	buf = malloc(KEY_FILE_MAX + 1);
	n = buf ? fread(buf, 1, KEY_FILE_MAX + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n == 0 || n > KEY_FILE_MAX) {
		snprintf(err, errlen, "sign_keys: %s: %s", path, buf == NULL ? "out of memory"
			 : n == 0 ? "empty or unreadable" : "too big for a key");
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static void key_free(struct pxdkim_key *k)
{
	free(k->domain);
	free(k->selector);
	free(k->path);
	free(k->pem);
}

/* no_passphrase - an encrypted key is refused, never prompted for */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

/*
 * key_alg - what the PEM key is (OpenSSL): RSA (and at least min_key_bits)
 * gives rsa-sha256, Ed25519 gives ed25519-sha256; 0, or -1 with err set
 */
static int key_alg(const struct pxdkim_conf *c, struct pxdkim_key *k, char *err,
		   size_t errlen)
{
	BIO *b = BIO_new_mem_buf(k->pem, -1);
	EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
	int rc = -1, bits;

	BIO_free(b);
	if (pk == NULL) {
		snprintf(err, errlen, "sign_keys: %s: not a PEM private key (or encrypted)",
			 k->path);
		return -1;
	}
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		bits = EVP_PKEY_get_bits(pk);
		k->alg = DKIM_SIGN_RSASHA256;
		if (bits < c->min_key_bits)
			snprintf(err, errlen, "sign_keys: %s: an RSA key of %d bits; at least "
				 "min_key_bits (%lld) are needed (RFC 8301)", k->path, bits,
				 c->min_key_bits);
		else
			rc = 0;
		break;
	case EVP_PKEY_ED25519:
		k->alg = DKIM_SIGN_ED25519SHA256;
		rc = 0;
		break;
	default:
		snprintf(err, errlen, "sign_keys: %s: neither an RSA nor an Ed25519 key", k->path);
	}
	EVP_PKEY_free(pk);
	return rc;
}

/* parse_key - one sign_keys entry: domain:selector:path[:algorithm] */
static int parse_key(const struct pxdkim_conf *c, const char *e, struct pxdkim_key *k,
		     char *err, size_t errlen)
{
	char *copy = strdup(e), *f[4] = { 0 }, *p, *save = NULL;
	dkim_alg_t want = DKIM_SIGN_UNKNOWN;
	size_t n = 0;
	int rc = -1;

	if (copy == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (p = strtok_r(copy, ":", &save); p != NULL && n < 4; p = strtok_r(NULL, ":", &save))
		f[n++] = p;
	if (n < 3 || p != NULL) {
		snprintf(err, errlen, "sign_keys: '%s' is not domain:selector:/path/to/key[:"
			 "algorithm]", e);
	} else if (f[3] != NULL && parse_alg(f[3], &want) < 0) {
		snprintf(err, errlen, "sign_keys: '%s': algorithm '%s' is neither rsa-sha256 "
			 "nor ed25519-sha256", e, f[3]);
	} else {
		for (p = f[0]; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		if (f[0][0] != '\0' && f[0][strlen(f[0]) - 1] == '.')
			f[0][strlen(f[0]) - 1] = '\0';
		k->domain = strdup(f[0]);
		k->selector = strdup(f[1]);
		k->path = strdup(f[2]);
		if (k->domain == NULL || k->selector == NULL || k->path == NULL)
			snprintf(err, errlen, "out of memory");
		else if ((k->pem = read_key(k->path, err, errlen)) != NULL &&
			 key_alg(c, k, err, errlen) == 0) {
			if (want != DKIM_SIGN_UNKNOWN && want != k->alg)
				snprintf(err, errlen, "sign_keys: '%s': %s is an %s key", e, k->path,
					 k->alg == DKIM_SIGN_RSASHA256 ? "RSA" : "Ed25519");
			else
				rc = 0;
		}
	}
	free(copy);
	return rc;
}

static size_t list_len(const char *const *l)
{
	size_t n = 0;

	while (l != NULL && l[n] != NULL)
		n++;
	return n;
}

static int build_keys(struct pxdkim_conf *c, char *err, size_t errlen)
{
	size_t n = list_len(c->sign_keys);

	if (c->sign && n == 0) {
		snprintf(err, errlen, "sign = yes needs sign_keys");
		return -1;
	}
	if (n > 0 && (c->keys = calloc(n, sizeof(*c->keys))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (parse_key(c, c->sign_keys[i], &c->keys[i], err, errlen) < 0) {
			key_free(&c->keys[i]);
			return -1;
		}
		c->nkeys = i + 1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(c->keys[j].domain, c->keys[i].domain) == 0) {
				snprintf(err, errlen, "sign_keys: domain %s is listed twice",
					 c->keys[i].domain);
				return -1;
			}
	}
	return 0;
}

/* parse_net - "addr/bits" or "addr" */
static int parse_net(const char *e, struct pxdkim_net *n)
{
	char buf[64], *slash, *end;
	unsigned long bits;

	if (strlen(e) >= sizeof(buf))
		return -1;
	strcpy(buf, e);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash = '\0';
	n->family = strchr(buf, ':') ? AF_INET6 : AF_INET;
	if (inet_pton(n->family, buf, n->addr) != 1)
		return -1;
	bits = n->family == AF_INET6 ? 128 : 32;
	if (slash != NULL) {
		unsigned long max = bits;

		errno = 0;
		bits = strtoul(slash + 1, &end, 10);
		if (errno || end == slash + 1 || *end != '\0' || bits > max)
			return -1;
	}
	n->bits = (unsigned)bits;
	return 0;
}

static int build_nets(struct pxdkim_conf *c, char *err, size_t errlen)
{
	size_t n = list_len(c->sign_networks);

	if (n > 0 && (c->nets = calloc(n, sizeof(*c->nets))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (parse_net(c->sign_networks[i], &c->nets[i]) < 0) {
			snprintf(err, errlen, "sign_networks: '%s' is not an address or "
				 "address/bits", c->sign_networks[i]);
			return -1;
		}
		c->nnets = i + 1;
	}
	return 0;
}

static int has_from(const char *const *l)
{
	for (size_t i = 0; l != NULL && l[i] != NULL; i++)
		if (strcasecmp(l[i], "From") == 0)
			return 1;
	return 0;
}

/* build_lib - the generation's DKIM_LIB, fully set up before any hook runs */
static int build_lib(struct pxdkim_conf *c, char *err, size_t errlen)
{
	unsigned flags = DKIM_LIBFLAGS_FIXCRLF;
	unsigned minbits = (unsigned)c->min_key_bits;

	if ((c->lib = dkim_init(NULL, NULL)) == NULL) {
		snprintf(err, errlen, "dkim_init failed");
		return -1;
	}
	if (!dkim_libfeature(c->lib, DKIM_FEATURE_SHA256) ||
	    !dkim_libfeature(c->lib, DKIM_FEATURE_ED25519)) {
		snprintf(err, errlen, "libopendkim lacks sha256 or ed25519 support");
		return -1;
	}
	if (dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) ||
	    dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits,
			 sizeof(minbits)) ||
	    dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS,
			 c->sign_headers ? (void *)c->sign_headers : (void *)default_signhdrs,
			 sizeof(char **)) ||
	    (c->oversign_headers != NULL && c->oversign_headers[0] != NULL &&
	     dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS,
			  (void *)c->oversign_headers, sizeof(char **))) ||
	    dkim_set_prescreen(c->lib, pxdkim_prescreen) != DKIM_STAT_OK) {
		snprintf(err, errlen, "libopendkim refused an option");
		return -1;
	}
	pxdkim_dns_install(c->lib, c);
	return 0;
}

static void pxdkim_unconfigure(void *conf)
{
	struct pxdkim_conf *c = conf;

	for (size_t i = 0; i < c->nkeys; i++)
		key_free(&c->keys[i]);
	free(c->keys);
	free(c->nets);
	if (c->lib != NULL)
		dkim_close(c->lib);
	c->keys = NULL;
	c->nets = NULL;
	c->lib = NULL;
	c->nkeys = c->nnets = 0;
}

static int pxdkim_configure(void *conf, char *err, size_t errlen)
{
	struct pxdkim_conf *c = conf;

	if (c->sign_headers != NULL && c->sign_headers[0] != NULL &&
	    !has_from(c->sign_headers)) {
		snprintf(err, errlen, "sign_headers must include From (RFC 6376 5.4)");
		return -1;
	}
	if (c->sign_headers != NULL && c->sign_headers[0] == NULL)
		c->sign_headers = NULL;
	if (parse_canon(c, err, errlen) < 0 || build_lib(c, err, errlen) < 0 ||
	    build_keys(c, err, errlen) < 0 || build_nets(c, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; c->sign && i < c->nkeys; i++)
		if (pxdkim_key_check(c, &c->keys[i], err, errlen) < 0)
			goto fail;
	pxdkim_host->log(NULL, PX_PRIO_INFO, "configured verify=%s sign=%s keys=%zu "
			 "sign_networks=%zu max_signatures=%lld min_key_bits=%lld "
			 "dns_budget_ms=%lld canonicalization=%s", c->verify ? "yes" : "no",
			 c->sign ? "yes" : "no", c->nkeys, c->nnets, c->max_signatures,
			 c->min_key_bits, c->dns_budget_ms,
			 c->canonicalization);
	return 0;
fail:
	pxdkim_unconfigure(c);
	return -1;
}

static int pxdkim_load(const struct px_host *h, char *err, size_t errlen)
{
	/* dns_query (ABI 1.2) is how every key is fetched */
	if (h->abi_major != PX_ABI_MAJOR || h->abi_minor < 2 || h->dns_query == NULL ||
	    h->dns_free == NULL) {
		snprintf(err, errlen, "host ABI %u.%u lacks dns_query (needs %d.2)",
			 h->abi_major, h->abi_minor, PX_ABI_MAJOR);
		return -1;
	}
	pxdkim_host = h;
	return 0;
}

/* ----------------------------------------------------------- hooks --- */

static enum px_verdict pxdkim_data_end(const void *conf, struct px_txn *txn)
{
	const struct pxdkim_conf *c = conf;

	if (c->verify)
		pxdkim_verify(c, txn);
	return c->sign ? pxdkim_sign(c, txn) : PX_NEXT;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "dkim",
	.version = "1.0",
	.description = "DKIM: verify every signature (RFC 6376, 8301, 8463); sign our users' mail",
	.options = pxdkim_options,
	.conf_size = sizeof(struct pxdkim_conf),
	.load = pxdkim_load,
	.configure = pxdkim_configure,
	.unconfigure = pxdkim_unconfigure,
	.on_data_end = pxdkim_data_end,
};
