/*
 * NAME
 *	smtp_parse - pure parsers for the SMTP grammar (RFC 5321, 6531, 3461)
 * DESCRIPTION
 *	No I/O and no allocation: every parser works in place on a NUL-terminated
 *	line the caller owns and points into it. Each returns PX_PARSE_OK or an
 *	error code, and sets *why to a short human text fit for an SMTP reply
 *	("domain name too long"). Hostile input is the normal case here.
 */
#ifndef PX_PROXY_SMTP_PARSE_H
#define PX_PROXY_SMTP_PARSE_H

#include <stddef.h>

#define PX_SMTP_LOCAL_MAX   64    /* RFC 5321 4.5.3.1.1 */
#define PX_SMTP_DOMAIN_MAX  255   /* RFC 5321 4.5.3.1.2 */
#define PX_SMTP_PATH_MAX    256   /* RFC 5321 4.5.3.1.3, incl. < > */
#define PX_SMTP_PARAMS_MAX  16

enum px_parse_status {
	PX_PARSE_OK = 0,
	PX_PARSE_SYNTAX,          /* 501 5.5.4 / 5.1.3 / 5.1.7 */
	PX_PARSE_TOO_LONG,        /* 501 5.5.4 (path) */
	PX_PARSE_TOO_MANY,        /* 501 5.5.4 (parameters) */
	PX_PARSE_BAD_PARAM        /* 501 5.5.4 (ESMTP keyword or value) */
};

/*
 * px_smtp_split_command - split "VERB rest" in place. *verb points at the verb
 * (not upper-cased), *args at the first non-space after it, or at "" when
 * there is none. A line with no verb (empty, or starting with a space)
 * returns PX_PARSE_SYNTAX. Trailing spaces are cut off args; a control
 * character or malformed UTF-8 anywhere is PX_PARSE_SYNTAX (as in
 * px_smtp_check_line).
 */
int px_smtp_split_command(char *line, char **verb, char **args, const char **why);

struct px_smtp_param {
	char *key;                /* ESMTP keyword, as sent */
	char *value;              /* NULL when the parameter has no "=value" */
};

struct px_smtp_path {
	char *addr;               /* mailbox without <>, source route removed; "" = null path */
	char *local;              /* points into a copy inside buf: local part */
	char *domain;             /* domain or address literal; NULL for "" and postmaster */
	int utf8;                 /* a byte >= 0x80 appears in the address */
	struct px_smtp_param params[PX_SMTP_PARAMS_MAX];
	size_t nparams;
	char buf[PX_SMTP_PATH_MAX + 2]; /* storage for local/domain split */
};

/*
 * px_smtp_parse_path - parse "FROM:<addr> params" (prefix "FROM:") or
 * "TO:<addr> params" (prefix "TO:"); the prefix is matched case-insensitively
 * and spaces are allowed after the colon (as Postfix does). allow_null lets
 * "<>" through (MAIL). allow_postmaster lets a bare "<postmaster>" through
 * (RCPT). Quoted local parts and address literals ([192.0.2.1],
 * [IPv6:2001:db8::1]) are accepted; source routes (<@a,@b:u@d>) are dropped.
 */
int px_smtp_parse_path(char *args, const char *prefix, int allow_null, int allow_postmaster,
		       struct px_smtp_path *out, const char **why);

/*
 * px_smtp_check_line - a received command line of len bytes (CRLF already
 * stripped) holds no NUL or other control character (TAB and DEL included)
 * and only well-formed UTF-8. The two functions above apply it themselves,
 * but they see only up to the first NUL: call this first on the line as read.
 */
int px_smtp_check_line(const char *line, size_t len, const char **why);

/* px_smtp_param_get - value of an ESMTP parameter (case-insensitive key); NULL if
 * absent; *present (optional) tells "absent" from "present without value" */
const char *px_smtp_param_get(const struct px_smtp_path *p, const char *key, int *present);

/* px_smtp_valid_domain - RFC 5321 Domain (letters, digits, hyphens, dots; labels
 * 1..63, total <= 255; U-labels allowed when utf8 is set) or an address literal */
int px_smtp_valid_domain(const char *s, int utf8);

/* px_smtp_valid_xtext - RFC 3461 xtext (for ORCPT, ENVID) */
int px_smtp_valid_xtext(const char *s);

/*
 * Backend replies. px_smtp_reply_line parses one line of a (possibly
 * multi-line) reply: "250-text" or "250 text" or "250". Sets *code (200..599),
 * *last (1 for "250 "), and *text (after the separator, may be ""). Returns
 * PX_PARSE_SYNTAX for anything else. len excludes the line's CRLF; a NUL,
 * CR, LF or other control character but TAB in the text is PX_PARSE_SYNTAX.
 */
int px_smtp_reply_line(const char *line, size_t len, int *code, int *last, const char **text);

/* px_smtp_enhanced_code - if text starts with "X.Y.Z " (RFC 3463), the length
 * of "X.Y.Z" (5..11); 0 otherwise */
size_t px_smtp_enhanced_code(const char *text);

#endif
