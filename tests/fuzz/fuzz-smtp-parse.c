/*
 * NAME
 *	fuzz-smtp-parse - libFuzzer harness for proxy/smtp_parse.c
 * SYNOPSIS
 *	clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *		tests/fuzz/fuzz-smtp-parse.c proxy/smtp_parse.c -o fuzz-smtp-parse
 *	./fuzz-smtp-parse -max_total_time=60
 * DESCRIPTION
 *	The input is one command line (first byte: flags). Every parser runs on
 *	it; on success the results must keep the module's promises, aborting
 *	otherwise:
 * .IP \(bu
 *	a path parsed OK has local part <= 64 and domain <= 255 octets, a
 *	domain that px_smtp_valid_domain accepts, <= 16 parameters with
 *	well-formed keywords and values, a utf8 flag that matches the bytes,
 *	and "FROM:<addr>" built from it parses again to the same address;
 * .IP \(bu
 *	px_smtp_check_line and the NUL-terminated parsers agree on control
 *	characters and UTF-8;
 * .IP \(bu
 *	an "IPv6:" literal without an IPv4 tail is valid exactly when
 *	inet_pton(AF_INET6) accepts it;
 * .IP \(bu
 *	reply lines and enhanced codes stay inside the input.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXLINE 1024

/* check - abort the fuzzer on a broken invariant */
static void check(int cond)
{
	if (!cond)
		abort();
}

/* is_alnum - ASCII letter or digit */
static int is_alnum(int c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* check_params - keywords and values as RFC 5321 says */
static void check_params(const struct px_smtp_path *p)
{
	check(p->nparams <= PX_SMTP_PARAMS_MAX);
	for (size_t i = 0; i < p->nparams; i++) {
		const char *k = p->params[i].key, *v = p->params[i].value;

		check(k != NULL && is_alnum((unsigned char)k[0]));
		for (; *k; k++)
			check(is_alnum((unsigned char)*k) || *k == '-');
		check(px_smtp_param_get(p, p->params[i].key, NULL) == p->params[i].value);
		if (v == NULL)
			continue;
		check(*v != 0 && strpbrk(v, " =") == NULL);
	}
}

/* check_reparse - "FROM:<addr>" parses to the same address */
static void check_reparse(const struct px_smtp_path *p)
{
	char line[MAXLINE];
	struct px_smtp_path again;
	const char *why;

	snprintf(line, sizeof(line), "FROM:<%s>", p->addr);
	check(px_smtp_parse_path(line, "FROM:", 1, 1, &again, &why) == PX_PARSE_OK);
	check(strcmp(again.addr, p->addr) == 0 && strcmp(again.local, p->local) == 0);
	check((again.domain == NULL) == (p->domain == NULL));
	check(p->domain == NULL || strcmp(again.domain, p->domain) == 0);
	check(again.utf8 == p->utf8);
}

/* check_path - the promises of a successful px_smtp_parse_path */
static void check_path(const struct px_smtp_path *p)
{
	int high = 0;

	check(p->addr && p->local);
	check(strlen(p->addr) <= PX_SMTP_PATH_MAX - 2);
	check(strlen(p->local) <= PX_SMTP_LOCAL_MAX);
	if (p->domain) {
		check(strlen(p->domain) <= PX_SMTP_DOMAIN_MAX);
		check(px_smtp_valid_domain(p->domain, 1));
		check(strlen(p->local) + 1 + strlen(p->domain) == strlen(p->addr));
	} else {
		check(p->addr[0] == 0 || strlen(p->addr) == 10);
	}
	for (const char *s = p->addr; *s; s++)
		high |= (unsigned char)*s >= 0x80;
	check(high == p->utf8);
	check_params(p);
	check_reparse(p);
}

/* try_path - parse the line as MAIL and as RCPT arguments */
static void try_path(const char *line, int flags)
{
	char buf[MAXLINE];
	struct px_smtp_path p;
	const char *why = NULL;
	const char *prefix = flags & 2 ? "TO:" : "FROM:";
	int rc;

	snprintf(buf, sizeof(buf), "%s", line);
	rc = px_smtp_parse_path(buf, prefix, flags & 4, flags & 8, &p, &why);
	if (rc == PX_PARSE_OK)
		check_path(&p);
	else
		check(why != NULL && *why != 0);
	if (rc == PX_PARSE_OK && p.addr[0] == 0)
		check(flags & 4);
}

/* try_split - split, then parse the arguments */
static void try_split(const char *line, int flags)
{
	char buf[MAXLINE];
	char *verb, *args;
	const char *why = NULL;
	int rc, ok_line;

	snprintf(buf, sizeof(buf), "%s", line);
	ok_line = px_smtp_check_line(line, strlen(line), &why) == PX_PARSE_OK;
	rc = px_smtp_split_command(buf, &verb, &args, &why);
	check(rc != PX_PARSE_OK || ok_line);
	if (rc != PX_PARSE_OK)
		return;
	check(*verb && strchr(verb, ' ') == NULL && *args != ' ');
	try_path(args, flags);
}

/* try_ipv6 - the literal check agrees with inet_pton for pure-hex forms */
static void try_ipv6(const char *s)
{
	char lit[MAXLINE + 16];
	unsigned char a[16];
	int mine, libc;

	if (strchr(s, '.') || strlen(s) > 64)
		return;
	snprintf(lit, sizeof(lit), "[IPv6:%s]", s);
	mine = px_smtp_valid_domain(lit, 0);
	libc = inet_pton(AF_INET6, s, a) == 1;
	check(mine == libc);
}

/* try_reply - a backend reply line */
static void try_reply(const uint8_t *data, size_t size)
{
	int code, last;
	const char *text;

	if (px_smtp_reply_line((const char *)data, size, &code, &last, &text) != PX_PARSE_OK)
		return;
	check(code >= 200 && code <= 599 && (last == 0 || last == 1));
	check(size == 3 || text == (const char *)data + 4);
}

/* LLVMFuzzerTestOneInput - one command line */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[MAXLINE];
	size_t n;
	size_t e;

	if (size < 1 || size >= MAXLINE)
		return 0;
	n = size - 1;
	memcpy(line, data + 1, n);
	line[n] = 0;
	try_reply(data + 1, n);
	(void)px_smtp_check_line(line, n, NULL);
	try_split(line, data[0]);
	try_path(line, data[0]);
	(void)px_smtp_valid_domain(line, data[0] & 1);
	(void)px_smtp_valid_xtext(line);
	try_ipv6(line);
	e = px_smtp_enhanced_code(line);
	check(e == 0 || (e >= 5 && e <= 9 && line[e] == ' '));
	return 0;
}
