/*
 * NAME
 *	smtp_parse 3 - pure parsers for the SMTP grammar (RFC 5321, 6531, 3461)
 * SYNOPSIS
 *	#include "proxy/smtp_parse.h"
 *
 *	int px_smtp_split_command(char *line, char **verb, char **args,
 *		const char **why);
 *	int px_smtp_parse_path(char *args, const char *prefix, int allow_null,
 *		int allow_postmaster, struct px_smtp_path *out, const char **why);
 *	const char *px_smtp_param_get(const struct px_smtp_path *p,
 *		const char *key, int *present);
 *	int px_smtp_valid_domain(const char *s, int utf8);
 *	int px_smtp_valid_xtext(const char *s);
 *	int px_smtp_reply_line(const char *line, size_t len, int *code,
 *		int *last, const char **text);
 *	size_t px_smtp_enhanced_code(const char *text);
 * DESCRIPTION
 *	Everything here works in place on memory the caller owns: no I/O, no
 *	allocation, no locale. Client input is hostile, so the grammar is the
 *	RFC's, with these deliberate choices:
 * .IP \(bu
 *	Any control character (0x00-0x1f, 0x7f, TAB included) in a command
 *	line is a syntax error, and so is malformed UTF-8. Well-formed UTF-8
 *	is allowed where RFC 6531 allows it (local part, domain U-labels,
 *	ESMTP values); px_smtp_path.utf8 tells the session to demand SMTPUTF8.
 * .IP \(bu
 *	Spaces after "FROM:"/"TO:" and between parameters are tolerated, as in
 *	Postfix; the path itself must be in angle brackets.
 * .IP \(bu
 *	Local parts are Dot-string or Quoted-string exactly (no "a..b").
 *	Domains are LDH labels of 1..63 octets (no "_", no trailing dot).
 *	Address literals are IPv4 or "IPv6:" only; General-address-literal
 *	tags are refused.
 * .IP \(bu
 *	A repeated ESMTP keyword is refused, so that the proxy and the backend
 *	can never read different values for the same parameter.
 * DIAGNOSTICS
 *	Parsers return PX_PARSE_OK or an enum px_parse_status code and set *why
 *	to a short lower-case text that fits after "501 5.5.4 Syntax error: ".
 *	Predicates return 1 (valid) or 0.
 * STANDARDS
 *	RFC 5321 (SMTP), RFC 6531 (SMTPUTF8), RFC 3461 (xtext), RFC 3463
 *	(enhanced status codes), RFC 3629 (UTF-8).
 */
#include <string.h>

#include "proxy/smtp_parse.h"

#define IS_DIGIT(c)  ((c) >= '0' && (c) <= '9')
#define IS_ALPHA(c)  (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_ALNUM(c)  (IS_ALPHA(c) || IS_DIGIT(c))
#define IS_CTL(c)    ((c) < 0x20 || (c) == 0x7f)

/* fail - set *why and return code */
static int fail(const char **why, const char *text, int code)
{
	if (why)
		*why = text;
	return code;
}

/* lower - ASCII lower case, locale-independent */
static int lower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* ncase_eq - compare n bytes ASCII case-insensitively; 1 if equal */
static int ncase_eq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return 0;
	return 1;
}

/* case_eq - whole NUL-terminated strings, ASCII case-insensitively */
static int case_eq(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && ncase_eq(a, b, n);
}

/* utf8_lead - sequence length for lead byte c, and the range of the second byte */
static size_t utf8_lead(unsigned c, unsigned *lo, unsigned *hi)
{
	*lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
	*hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	return c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

/* utf8_seq - length of the well-formed UTF-8 sequence at s (RFC 3629, at most
 * avail bytes), 0 if none */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
	unsigned lo, hi;
	size_t n, i;

	if (s[0] < 0x80)
		return 1;
	n = utf8_lead(s[0], &lo, &hi);
	if (n == 0 || n > avail || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* px_smtp_check_line - no NUL or other control character, only well-formed UTF-8 */
int px_smtp_check_line(const char *line, size_t len, const char **why)
{
	const unsigned char *p = (const unsigned char *)line;
	size_t i, n;

	for (i = 0; i < len; i += n) {
		if (IS_CTL(p[i]))
			return fail(why, "control character in command", PX_PARSE_SYNTAX);
		if ((n = utf8_seq(p + i, len - i)) == 0)
			return fail(why, "invalid utf-8 in command", PX_PARSE_SYNTAX);
	}
	return PX_PARSE_OK;
}

/* check_bytes - px_smtp_check_line on a NUL-terminated string */
static int check_bytes(const char *s, const char **why)
{
	return px_smtp_check_line(s, strlen(s), why);
}

/* trim_right - drop trailing spaces in place */
static void trim_right(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == ' ')
		s[--n] = 0;
}

/* px_smtp_split_command - split "VERB args" in place */
int px_smtp_split_command(char *line, char **verb, char **args, const char **why)
{
	char *p;
	int rc;

	*verb = *args = line + strlen(line);
	if ((rc = check_bytes(line, why)) != PX_PARSE_OK)
		return rc;
	if (*line == 0 || *line == ' ')
		return fail(why, "missing command", PX_PARSE_SYNTAX);
	for (p = line; *p && *p != ' '; p++)
		continue;
	*verb = line;
	if (*p)
		*p++ = 0;
	while (*p == ' ')
		p++;
	trim_right(p);
	*args = p;
	return PX_PARSE_OK;
}

/* ---- domains and address literals ----------------------------------- */

/* digits - length of the run of decimal digits at s, at most max+1 looked at */
static size_t digits(const char *s, size_t n, size_t max)
{
	size_t i = 0;

	while (i < n && i <= max && IS_DIGIT(s[i]))
		i++;
	return i;
}

/* valid_ipv4 - RFC 5321 IPv4-address-literal body: 4 Snum 0..255 */
static int valid_ipv4(const char *s, size_t n)
{
	size_t i = 0, d;
	int part, val;

	for (part = 0; part < 4; part++) {
		if (part > 0 && (i >= n || s[i++] != '.'))
			return 0;
		if ((d = digits(s + i, n - i, 3)) == 0 || d > 3)
			return 0;
		for (val = 0; d > 0; d--)
			val = val * 10 + (s[i++] - '0');
		if (val > 255)
			return 0;
	}
	return i == n;
}

/* hexdigits - length of the run of hex digits at s (looks at most 5) */
static size_t hexdigits(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n && i < 5 && (IS_DIGIT(s[i]) || (lower((unsigned char)s[i]) >= 'a'
						       && lower((unsigned char)s[i]) <= 'f')))
		i++;
	return i;
}

/* ipv6_colon - after a group: ":" or "::" (once); -1 on error, 1 at the end */
static int ipv6_colon(const char *s, size_t n, size_t *i, int *dcolon)
{
	if (*i == n)
		return 1;
	if (s[(*i)++] != ':' || *i == n)
		return -1;
	if (s[*i] != ':')
		return 0;
	if ((*dcolon)++)
		return -1;
	return ++*i == n ? 1 : 0;
}

/* valid_ipv6 - RFC 5321 IPv6-addr (full, compressed, with IPv4 tail) */
static int valid_ipv6(const char *s, size_t n)
{
	size_t i = 0, h;
	int groups = 0, dcolon = 0, rc = 0;

	if (n >= 2 && s[0] == ':' && s[1] == ':') {
		dcolon = 1;
		i = 2;
		rc = i == n;
	}
	while (rc == 0) {
		if ((h = hexdigits(s + i, n - i)) == 0 || h > 4)
			return 0;
		if (i + h < n && s[i + h] == '.') {
			if (!valid_ipv4(s + i, n - i))
				return 0;
			groups += 2;
			break;
		}
		groups++;
		i += h;
		if ((rc = ipv6_colon(s, n, &i, &dcolon)) < 0)
			return 0;
	}
	return dcolon ? groups <= 7 : groups == 8;
}

/* valid_literal - "[IPv4]" or "[IPv6:addr]" (length n includes the brackets) */
static int valid_literal(const char *s, size_t n)
{
	if (n < 3 || s[0] != '[' || s[n - 1] != ']')
		return 0;
	s++;
	n -= 2;
	if (n > 5 && ncase_eq(s, "IPv6:", 5))
		return valid_ipv6(s + 5, n - 5);
	return valid_ipv4(s, n);
}

/* label_len - octets of the DNS label at s, 0 if it has a bad character */
static size_t label_len(const char *s, size_t n, int utf8)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n && p[i] != '.') {
		if (IS_ALNUM(p[i]) || p[i] == '-')
			k = 1;
		else if (p[i] < 0x80 || !utf8 || (k = utf8_seq(p + i, n - i)) == 0)
			return 0;
		i += k;
	}
	return i;
}

/* valid_domain_n - Domain or address literal, n octets at s */
static int valid_domain_n(const char *s, size_t n, int utf8)
{
	size_t i = 0, k;

	if (n > 0 && s[0] == '[')
		return valid_literal(s, n);
	if (n == 0 || n > PX_SMTP_DOMAIN_MAX)
		return 0;
	for (;;) {
		k = label_len(s + i, n - i, utf8);
		if (k == 0 || k > 63 || s[i] == '-' || s[i + k - 1] == '-')
			return 0;
		i += k;
		if (i == n)
			return 1;
		if (++i == n)
			return 0;          /* trailing dot */
	}
}

/* px_smtp_valid_domain - RFC 5321 Domain or address literal */
int px_smtp_valid_domain(const char *s, int utf8)
{
	return s != NULL && valid_domain_n(s, strlen(s), utf8);
}

/* is_hexup - an RFC 3461 hexchar digit: 0-9 A-F (upper case only) */
static int is_hexup(int c)
{
	return IS_DIGIT(c) || (c >= 'A' && c <= 'F');
}

/* px_smtp_valid_xtext - RFC 3461 xtext */
int px_smtp_valid_xtext(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (s == NULL)
		return 0;
	for (; *p; p++) {
		if (*p == '+') {
			if (!is_hexup(p[1]) || !is_hexup(p[2]))
				return 0;
			p += 2;
		} else if (*p < '!' || *p > '~' || *p == '=') {
			return 0;
		}
	}
	return 1;
}

/* ---- paths ---------------------------------------------------------- */

/* scan_domain - end of the domain or literal at p (stops at any of stop) */
static char *scan_domain(char *p, const char *stop)
{
	if (*p == '[') {
		while (*p && *p != ']')
			p++;
		return *p ? p + 1 : p;
	}
	while (*p && strchr(stop, *p) == NULL)
		p++;
	return p;
}

/* skip_route - skip a source route "@d1,@d2:"; 0 if none, -1 if malformed */
static int skip_route(char **pp)
{
	char *p = *pp, *end;

	if (*p != '@')
		return 0;
	for (;;) {
		if (*p++ != '@')
			return -1;
		end = scan_domain(p, ",:> ");
		if (!valid_domain_n(p, (size_t)(end - p), 1))
			return -1;
		p = end;
		if (*p == ':')
			break;
		if (*p++ != ',')
			return -1;
	}
	*pp = p + 1;
	return 1;
}

/* is_atext - RFC 5322 atext, plus UTF-8 (RFC 6531; checked well-formed earlier) */
static int is_atext(unsigned char c)
{
	return IS_ALNUM(c) || c >= 0x80 || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* skip_quoted - Quoted-string local part; end, or NULL if malformed */
static char *skip_quoted(char *p)
{
	unsigned char c;

	for (p++; (c = (unsigned char)*p) != '"'; p++) {
		if (c == '\\') {
			c = (unsigned char)*++p;
			if (c < 32 || c > 126)
				return NULL;
		} else if (c < 32 || c == 127 || c == '"') {
			return NULL;         /* includes the terminating NUL */
		}
	}
	return p + 1;
}

/* skip_dot_string - Dot-string local part; end, or NULL if malformed */
static char *skip_dot_string(char *p)
{
	for (;;) {
		if (!is_atext((unsigned char)*p))
			return NULL;
		while (is_atext((unsigned char)*p))
			p++;
		if (*p != '.')
			return p;
		p++;
	}
}

/* skip_local - Local-part (RFC 5321 4.1.2); end, or NULL if malformed */
static char *skip_local(char *p)
{
	return *p == '"' ? skip_quoted(p) : skip_dot_string(p);
}

/* path_reset - an empty result */
static void path_reset(struct px_smtp_path *out)
{
	out->buf[0] = 0;
	out->addr = out->local = out->buf;
	out->domain = NULL;
	out->utf8 = 0;
	out->nparams = 0;
}

/* path_store - copy mailbox [m, end) into buf, split at at (NULL: no domain) */
static void path_store(struct px_smtp_path *out, char *m, char *at, char *end)
{
	size_t n = (size_t)(end - m);

	memcpy(out->buf, m, n);
	out->buf[n] = 0;
	out->local = out->buf;
	if (at != NULL) {
		out->buf[at - m] = 0;
		out->domain = out->buf + (at - m) + 1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)m[i] >= 0x80)
			out->utf8 = 1;
}

/* path_prefix - match prefix, skip spaces; pointer to '<', or NULL */
static char *path_prefix(char *args, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strlen(args) < n || !ncase_eq(args, prefix, n))
		return NULL;
	for (args += n; *args == ' '; args++)
		continue;
	return args;
}

/* prefix_why - the diagnostic for a bad or missing "FROM:" / "TO:" */
static const char *prefix_why(const char *prefix)
{
	return lower((unsigned char)prefix[0]) == 't' ? "expected to:<address>"
		: "expected from:<address>";
}

/* check_domain - lengths and syntax of the domain [d, end) */
static int check_domain(const char *d, const char *end, const char **why)
{
	size_t n = (size_t)(end - d);

	if (n == 0)
		return fail(why, "missing domain", PX_PARSE_SYNTAX);
	if (n > PX_SMTP_DOMAIN_MAX)
		return fail(why, "domain name too long", PX_PARSE_TOO_LONG);
	if (!valid_domain_n(d, n, 1))
		return fail(why, *d == '[' ? "bad address literal" : "bad domain name",
			    PX_PARSE_SYNTAX);
	return PX_PARSE_OK;
}

/* check_local_end - what follows the local part: '@' or a lone postmaster */
static int check_local_end(const char *m, const char *p, int route, int allow_postmaster,
			   const char **why)
{
	if (*p == '@')
		return PX_PARSE_OK;
	if (*p != '>')
		return fail(why, "bad local part", PX_PARSE_SYNTAX);
	if (allow_postmaster && !route && p - m == 10 && ncase_eq(m, "postmaster", 10))
		return PX_PARSE_OK;
	return fail(why, "address has no domain", PX_PARSE_SYNTAX);
}

/* parse_mailbox - Mailbox at m up to '>'; sets *at ('@' or NULL), *gt */
static int parse_mailbox(char *m, int route, int allow_postmaster, char **at, char **gt,
			 const char **why)
{
	char *p, *end;
	int rc;

	if ((p = skip_local(m)) == NULL)
		return fail(why, "bad local part", PX_PARSE_SYNTAX);
	if ((rc = check_local_end(m, p, route, allow_postmaster, why)) != PX_PARSE_OK)
		return rc;
	*at = NULL;
	if (*p == '@') {
		*at = p++;
		end = scan_domain(p, "> ");
		if (*end != '>')
			return fail(why, *end ? "bad domain name" : "missing >", PX_PARSE_SYNTAX);
		if ((rc = check_domain(p, end, why)) != PX_PARSE_OK)
			return rc;
		p = end;
	}
	*gt = p;
	if ((*at != NULL ? *at : p) - m > PX_SMTP_LOCAL_MAX)
		return fail(why, "local part too long", PX_PARSE_TOO_LONG);
	return PX_PARSE_OK;
}

/* parse_addr - "<...>" at lt: null path, or route + mailbox; sets m, at, gt */
static int parse_addr(char *lt, int allow_null, int allow_postmaster, char **m, char **at,
		      char **gt, const char **why)
{
	char *p = lt + 1;
	int route, rc;

	if ((route = skip_route(&p)) < 0)
		return fail(why, "bad source route", PX_PARSE_SYNTAX);
	*m = p;
	*at = NULL;
	if (*p == '>' && !route) {
		*gt = p;
		return allow_null ? PX_PARSE_OK : fail(why, "null address not allowed here",
						       PX_PARSE_SYNTAX);
	}
	if ((rc = parse_mailbox(p, route, allow_postmaster, at, gt, why)) != PX_PARSE_OK)
		return rc;
	if (*gt - lt + 1 > PX_SMTP_PATH_MAX)
		return fail(why, "path too long", PX_PARSE_TOO_LONG);
	return PX_PARSE_OK;
}

/* ---- ESMTP parameters ----------------------------------------------- */

/* param_key - esmtp-keyword at p; returns its end, or NULL if malformed */
static char *param_key(char *p)
{
	if (!IS_ALNUM(*p))
		return NULL;
	while (IS_ALNUM(*p) || *p == '-')
		p++;
	return (*p == 0 || *p == ' ' || *p == '=') ? p : NULL;
}

/* param_value - esmtp-value at p (RFC 5321 + 6531); its end, or NULL */
static char *param_value(char *p)
{
	char *s = p;

	while (*p && *p != ' ' && *p != '=')
		p++;
	return (p == s || *p == '=') ? NULL : p;
}

/* param_seen - 1 if key already appears among the parsed parameters */
static int param_seen(const struct px_smtp_path *out, const char *key)
{
	for (size_t i = 0; i < out->nparams; i++)
		if (case_eq(out->params[i].key, key))
			return 1;
	return 0;
}

/* parse_param - one "KEY[=VALUE]" at *pp, NUL-terminated in place */
static int parse_param(char **pp, struct px_smtp_param *prm, const char **why)
{
	char *p = *pp, *end;
	int has_value;

	if ((end = param_key(p)) == NULL)
		return fail(why, "bad parameter keyword", PX_PARSE_BAD_PARAM);
	prm->key = p;
	prm->value = NULL;
	has_value = *end == '=';
	p = end + (*end != 0);
	*end = 0;
	if (has_value) {
		if ((end = param_value(p)) == NULL)
			return fail(why, "bad parameter value", PX_PARSE_BAD_PARAM);
		prm->value = p;
		p = end + (*end != 0);
		*end = 0;
	}
	*pp = p;
	return PX_PARSE_OK;
}

/* parse_params - space-separated ESMTP parameters after the path */
static int parse_params(char *p, struct px_smtp_path *out, const char **why)
{
	struct px_smtp_param prm;
	int rc;

	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == 0)
			return PX_PARSE_OK;
		if (out->nparams == PX_SMTP_PARAMS_MAX)
			return fail(why, "too many parameters", PX_PARSE_TOO_MANY);
		if ((rc = parse_param(&p, &prm, why)) != PX_PARSE_OK)
			return rc;
		if (param_seen(out, prm.key))
			return fail(why, "duplicate parameter", PX_PARSE_BAD_PARAM);
		out->params[out->nparams++] = prm;
	}
}

/* px_smtp_parse_path - "FROM:<addr> params" / "TO:<addr> params" */
int px_smtp_parse_path(char *args, const char *prefix, int allow_null, int allow_postmaster,
		       struct px_smtp_path *out, const char **why)
{
	char *lt, *m, *at, *gt;
	int rc;

	path_reset(out);
	if ((rc = check_bytes(args, why)) != PX_PARSE_OK)
		return rc;
	if ((lt = path_prefix(args, prefix)) == NULL)
		return fail(why, prefix_why(prefix), PX_PARSE_SYNTAX);
	if (*lt != '<')
		return fail(why, *lt ? "address must be in <>" : "missing address",
			    PX_PARSE_SYNTAX);
	rc = parse_addr(lt, allow_null, allow_postmaster, &m, &at, &gt, why);
	if (rc != PX_PARSE_OK)
		return rc;
	if (gt[1] != 0 && gt[1] != ' ')
		return fail(why, "garbage after address", PX_PARSE_SYNTAX);
	path_store(out, m, at, gt);
	*gt = 0;
	out->addr = m;
	return parse_params(gt + 1, out, why);
}

/* px_smtp_param_get - value of an ESMTP parameter, case-insensitive key */
const char *px_smtp_param_get(const struct px_smtp_path *p, const char *key, int *present)
{
	for (size_t i = 0; i < p->nparams; i++) {
		if (case_eq(p->params[i].key, key)) {
			if (present)
				*present = 1;
			return p->params[i].value;
		}
	}
	if (present)
		*present = 0;
	return NULL;
}

/* ---- backend replies ------------------------------------------------ */

/* reply_text_ok - reply text: no NUL, CR, LF or other control but TAB */
static int reply_text_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (IS_CTL(c) && c != '\t')
			return 0;
	}
	return 1;
}

/* px_smtp_reply_line - one line of a backend reply, without its CRLF */
int px_smtp_reply_line(const char *line, size_t len, int *code, int *last, const char **text)
{
	if (line == NULL || len < 3)
		return PX_PARSE_SYNTAX;
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5' || !IS_DIGIT(line[2]))
		return PX_PARSE_SYNTAX;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return PX_PARSE_SYNTAX;
	if (len > 3 && !reply_text_ok(line + 4, len - 4))
		return PX_PARSE_SYNTAX;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	*last = len == 3 || line[3] == ' ';
	*text = len == 3 ? "" : line + 4;
	return PX_PARSE_OK;
}

/* px_smtp_enhanced_code - length of a leading "X.Y.Z " (RFC 3463), or 0 */
size_t px_smtp_enhanced_code(const char *text)
{
	size_t i = 2, d;

	if (text == NULL || (text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.')
		return 0;
	if ((d = digits(text + i, 4, 3)) == 0 || d > 3 || text[i + d] != '.')
		return 0;
	i += d + 1;
	if ((d = digits(text + i, 4, 3)) == 0 || d > 3 || text[i + d] != ' ')
		return 0;
	return i + d;
}
