/*
 * NAME
 *	test-config - unit tests of policy/config.c
 * DESCRIPTION
 *	Defaults; the shipped postern.conf + conf.d (they load cleanly, and
 *	their commented values are the real defaults); conf.d order and
 *	single-key override inside a section; errors with file:line; units;
 *	-o overrides; backend forms; relay domains; trusted networks; dump.
 *	Fixtures live in tests/unit/data/config/; others are written to a
 *	fresh mkdtemp() directory per test.
 */
#ifdef HAVE_CONFIG_H
#include "autoconfig.h"
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "common/log.h"
#include "filters/chain.h"
#include "policy/config.h"

#ifndef TEST_SRCDIR
#define TEST_SRCDIR "."
#endif
#define FIXTURES TEST_SRCDIR "/tests/unit/data/config"

static char tmpdir[64];
static char err[8192];

/* ---------------------------------------------------------------- helpers */

/* rm_entry - nftw callback that removes one entry */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* setup - a fresh temporary directory per test */
static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/px-test-config-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* teardown - remove the temporary directory */
static void teardown(void)
{
	nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* tmp_path - "tmpdir/rel" in a static buffer (one of four, rotating) */
static const char *tmp_path(const char *rel)
{
	static char bufs[4][512];
	static int next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s/%s", tmpdir, rel);
	return b;
}

/* write_file - write text to tmpdir/rel, creating conf.d/ when named */
static const char *write_file(const char *rel, const char *text)
{
	const char *path = tmp_path(rel);
	FILE *fp;

	if (strncmp(rel, "conf.d/", 7) == 0)
		mkdir(tmp_path("conf.d"), 0700);
	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* load_ok - load path with overrides; the test fails with err otherwise */
static struct px_config *load_ok(const char *path, const char *const *ov, size_t n)
{
	struct px_config *c = NULL;

	ck_assert_msg(px_config_load(path, ov, n, &c, err, sizeof(err)) == 0, "%s: %s", path, err);
	ck_assert_ptr_nonnull(c);
	return c;
}

/* load_fails - loading fails; err holds the messages */
static void load_fails(const char *path, const char *const *ov, size_t n)
{
	struct px_config *c = (struct px_config *)&c;

	ck_assert_msg(px_config_load(path, ov, n, &c, err, sizeof(err)) == -1, "%s loaded", path);
	ck_assert_ptr_null(c);
	ck_assert_msg(err[0] != 0, "no error text");
}

/* one_override - load the minimal fixture with a single -o */
static struct px_config *one_override(const char *ov)
{
	return load_ok(FIXTURES "/minimal/postern.conf", &ov, 1);
}

/* dump_of - px_config_dump into a malloc'd string */
static char *dump_of(const struct px_config *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(fp);
	px_config_dump(c, fp);
	fclose(fp);
	return text;
}

/* has_line - whether text holds line as a whole line */
static int has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0))
			return 1;
	return 0;
}

/* sa_of - fill ss with "ADDR" (v4 or v6) */
static const struct sockaddr *sa_of(struct sockaddr_storage *ss, const char *addr)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, addr, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
	} else {
		ck_assert_int_eq(inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)ss)->sin6_addr), 1);
		ss->ss_family = AF_INET6;
	}
	return (const struct sockaddr *)ss;
}

/* ------------------------------------------------------------ defaults */

START_TEST(defaults)
{
	struct px_config *c = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);
	char host[256] = "";

	gethostname(host, sizeof(host) - 1);
	ck_assert_str_eq(c->hostname, host);
	ck_assert_uint_eq(c->nlisten, 1);
	ck_assert_str_eq(c->listen[0], "0.0.0.0:25");
	ck_assert_ptr_null(c->listen[1]);
	ck_assert_uint_ge(c->workers, 1);
	ck_assert_int_eq(c->backend.kind, PX_BACKEND_MAILDIR);
	ck_assert_str_eq(c->backend.path, "/var/lib/postern/maildir");
	ck_assert_str_eq(c->backend.text, "maildir:/var/lib/postern/maildir");
	ck_assert_uint_eq(c->nrelay_domains, 0);
	ck_assert_uint_eq(c->ntrusted_networks, 2);
	ck_assert_str_eq(c->spool_dir, "/var/spool/postern");
	ck_assert_int_eq(c->log_level, PX_LOG_INFO);
	ck_assert_str_eq(c->greeting, "ESMTP Postern");
	ck_assert_int_eq(c->vrfy_enabled, 0);
	ck_assert_int_eq(c->refs, 1);
	ck_assert_str_eq(c->path, FIXTURES "/minimal/postern.conf");
	px_config_unref(c);
}
END_TEST

START_TEST(defaults_limits_timeouts)
{
	struct px_config *c = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);

	ck_assert_uint_eq(c->limits.command_line_max, 2048);
	ck_assert_uint_eq(c->limits.text_line_max, 1024 * 1024);
	ck_assert_uint_eq(c->limits.message_size_max, 50 * 1024 * 1024);
	ck_assert_uint_eq(c->limits.recipients_max, 1000);
	ck_assert_uint_eq(c->limits.errors_max, 20);
	ck_assert_uint_eq(c->limits.connections_max, 1000);
	ck_assert_uint_eq(c->limits.connections_per_client_max, 50);
	ck_assert_uint_eq(c->limits.spool_memory_max, 1024 * 1024);
	ck_assert_uint_eq(c->timeouts.command, 300000);
	ck_assert_uint_eq(c->timeouts.data, 600000);
	ck_assert_uint_eq(c->timeouts.session, 3600000);
	ck_assert_uint_eq(c->timeouts.backend_connect, 30000);
	ck_assert_uint_eq(c->timeouts.backend_command, 300000);
	ck_assert_uint_eq(c->timeouts.backend_data, 600000);
	px_config_unref(c);
}
END_TEST

START_TEST(generation_and_refs)
{
	struct px_config *a = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);
	struct px_config *b = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);
	struct px_config *bad = NULL;

	ck_assert_uint_eq(b->generation, a->generation + 1);
	ck_assert_int_eq(px_config_load(FIXTURES "/badkey/postern.conf", NULL, 0, &bad, err,
					sizeof(err)), -1);
	px_config_unref(b);
	b = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);
	ck_assert_uint_eq(b->generation, a->generation + 2);
	ck_assert_ptr_eq(px_config_ref(a), a);
	ck_assert_int_eq(a->refs, 2);
	px_config_unref(a);
	ck_assert_int_eq(a->refs, 1);
	px_config_unref(a);
	px_config_unref(b);
	px_config_unref(NULL);
}
END_TEST

/* ------------------------------------------------------------- shipped */

/* The shipped conf.d turns spf, dkim and dmarc on (found in plugin_dir: the
 * build's plugins/built, see Makefile.am) and appends the DMARC rules to
 * policy.actions; everything else is the defaults. */
static const char *const shipped_ov[] = { "plugin_dir=" TEST_BUILDDIR "/plugins/built" };
#define SHIPPED_ACTIONS "policy.actions = dmarc-policy=reject reject, " \
	"dmarc-policy=quarantine quarantine, dmarc=temperror tempfail, dmarc=permerror reject"

/* shipped_differences - check and drop what the shipped files add to the defaults */
static void shipped_differences(struct px_config *c, char *dump)
{
	char *p = strstr(dump, SHIPPED_ACTIONS "\n"), *q;

	ck_assert_msg(p != NULL && (p == dump || p[-1] == '\n'), "%s", dump);
	q = p + strlen(SHIPPED_ACTIONS);
	memmove(p + strlen("policy.actions ="), q, strlen(q) + 1);
	/* the plugin sections' keys come last in the dump */
	ck_assert(has_line(dump, "plugin.spf.skip_trusted = yes"));
	ck_assert(has_line(dump, "plugin.dmarc.skip_trusted = yes"));
	ck_assert_ptr_nonnull(p = strstr(dump, "\nplugin."));
	p[1] = '\0';
	ck_assert_ptr_nonnull(c->chain);
	ck_assert_uint_eq(c->chain->n, 3);
	ck_assert_str_eq(c->chain->v[0].name, "dkim");
	ck_assert_str_eq(c->chain->v[1].name, "spf");
	ck_assert_str_eq(c->chain->v[2].name, "dmarc");
}

START_TEST(shipped_config_loads)
{
	struct px_config *c = load_ok(TEST_SRCDIR "/postern.conf", shipped_ov, 1);
	struct px_config *d = load_ok(FIXTURES "/minimal/postern.conf", shipped_ov, 1);
	char *a = dump_of(c), *b = dump_of(d);

	ck_assert_str_eq(err, "");
	shipped_differences(c, a);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	px_config_unref(c);
	px_config_unref(d);
}
END_TEST

/* uncomment_copy - copy src to tmpdir/rel, turning "#key = value" into a setting */
static void uncomment_copy(const char *src, const char *rel)
{
	FILE *in = fopen(src, "r"), *out = fopen(tmp_path(rel), "w");
	char line[1024];
	size_t ws;

	ck_assert_ptr_nonnull(in);
	ck_assert_ptr_nonnull(out);
	while (fgets(line, sizeof(line), in)) {
		ws = strspn(line, " \t");
		if (line[ws] == '#' && line[ws + 1] >= 'a' && line[ws + 1] <= 'z'
		    && strstr(line, " = "))
			memmove(line + ws, line + ws + 1, strlen(line + ws));
		fputs(line, out);
	}
	fclose(in);
	fclose(out);
}

/* confd_filter - the shipped *.conf files */
static int confd_filter(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

START_TEST(shipped_comments_are_defaults)
{
	struct px_config *c, *d;
	struct dirent **list;
	char src[512], rel[512], *a, *b;
	int i, n;

	uncomment_copy(TEST_SRCDIR "/postern.conf", "postern.conf");
	mkdir(tmp_path("conf.d"), 0700);
	n = scandir(TEST_SRCDIR "/conf.d", &list, confd_filter, alphasort);
	ck_assert_int_ge(n, 5);
	for (i = 0; i < n; i++) {
		snprintf(src, sizeof(src), "%s/conf.d/%s", TEST_SRCDIR, list[i]->d_name);
		snprintf(rel, sizeof(rel), "conf.d/%s", list[i]->d_name);
		uncomment_copy(src, rel);
		free(list[i]);
	}
	free(list);
	c = load_ok(tmp_path("postern.conf"), shipped_ov, 1);
	d = load_ok(FIXTURES "/minimal/postern.conf", shipped_ov, 1);
	a = dump_of(c);
	b = dump_of(d);
	shipped_differences(c, a);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	px_config_unref(c);
	px_config_unref(d);
}
END_TEST

/* ------------------------------------------------------------- layering */

START_TEST(confd_order_and_single_key_override)
{
	struct px_config *c = load_ok(FIXTURES "/layered/postern.conf", NULL, 0);

	/* postern.conf set 1, A (10-a) 100, B (20-b) 200: B wins */
	ck_assert_uint_eq(c->limits.recipients_max, 200);
	/* only A set errors_max: B's limits section does not reset it */
	ck_assert_uint_eq(c->limits.errors_max, 7);
	/* only postern.conf set message_size_max */
	ck_assert_uint_eq(c->limits.message_size_max, 10 * 1024 * 1024);
	/* nobody set it */
	ck_assert_uint_eq(c->limits.connections_max, 1000);
	/* strcmp order: "9-last.conf" comes after "20-b.conf" */
	ck_assert_str_eq(c->greeting, "nine");
	/* "+=" in B appends to the list from postern.conf */
	ck_assert_uint_eq(c->nlisten, 2);
	ck_assert_str_eq(c->listen[0], "127.0.0.1:2525");
	ck_assert_str_eq(c->listen[1], "[::1]:2525");
	px_config_unref(c);
}
END_TEST

START_TEST(list_assign_replaces)
{
	struct px_config *c;

	write_file("postern.conf", "listen = { \"127.0.0.1:1\", \"127.0.0.1:2\" }\n");
	write_file("conf.d/10-x.conf", "listen = { \"127.0.0.1:3\" }\nrelay_domains = {}\n");
	c = load_ok(tmp_path("postern.conf"), NULL, 0);
	ck_assert_uint_eq(c->nlisten, 1);
	ck_assert_str_eq(c->listen[0], "127.0.0.1:3");
	ck_assert_uint_eq(c->nrelay_domains, 0);
	px_config_unref(c);
}
END_TEST

START_TEST(missing_confd_and_missing_file)
{
	struct px_config *c;

	write_file("postern.conf", "vrfy = yes\n");
	c = load_ok(tmp_path("postern.conf"), NULL, 0);
	ck_assert_int_eq(c->vrfy_enabled, 1);
	px_config_unref(c);
	load_fails(tmp_path("nonexistent.conf"), NULL, 0);
	ck_assert_msg(strstr(err, "nonexistent.conf: No such file or directory") != NULL, "%s", err);
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(unknown_key_names_file_and_line)
{
	const char *want = FIXTURES "/badkey/postern.conf:3: ";

	load_fails(FIXTURES "/badkey/postern.conf", NULL, 0);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got '%s'", err);
	ck_assert_ptr_nonnull(strstr(err, "no_such_key"));
	ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

START_TEST(errors_of_every_file)
{
	const char *first = FIXTURES "/twobad/postern.conf:3: timeouts.data: '10x'";
	const char *second = "\n" FIXTURES "/twobad/conf.d/10-bad.conf:4: limits.command_line_max";

	load_fails(FIXTURES "/twobad/postern.conf", NULL, 0);
	ck_assert_msg(strncmp(err, first, strlen(first)) == 0, "got '%s'", err);
	ck_assert_msg(strstr(err, second) != NULL, "got '%s'", err);
}
END_TEST

START_TEST(unknown_key_in_section_and_conf_d)
{
	write_file("postern.conf", "# ok\n");
	write_file("conf.d/20-x.conf", "# c\n// c\n/* c\n c */\nlimits {\n\t# c\n\tnope = 1\n}\n");
	load_fails(tmp_path("postern.conf"), NULL, 0);
	ck_assert_msg(strstr(err, "conf.d/20-x.conf:7: ") != NULL, "got '%s'", err);
	ck_assert_ptr_nonnull(strstr(err, "nope"));
}
END_TEST

/* Bad values: the file's text, the line named, and a part of the message. */
static const struct bad_value {
	const char *text;
	int line;
	const char *why;
} bad_values[] = {
	{ "timeouts {\n\tcommand = 5x\n}\n", 2, "timeouts.command: '5x': not a duration" },
	{ "timeouts {\n\tdata = 0\n}\n", 2, "too small" },
	{ "timeouts {\n\tsession = 2d\n}\n", 2, "too large (maximum 1d)" },
	{ "timeouts {\n\tcommand = 5 m\n}\n", 2, "'m'" },
	{ "timeouts {\n\tcommand = -5\n}\n", 2, "not a duration" },
	{ "limits {\n\tmessage_size_max = 5Q\n}\n", 2, "not a size" },
	{ "limits {\n\ttext_line_max = 999\n}\n", 2, "too small (minimum 1000)" },
	{ "limits {\n\tcommand_line_max = 511\n}\n", 2, "too small (minimum 512)" },
	{ "limits {\n\trecipients_max = 0\n}\n", 2, "limits.recipients_max" },
	{ "limits {\n\terrors_max = 1k\n}\n", 2, "not a number" },
	{ "\nworkers = -1\n", 2, "workers" },
	{ "log_level = loud\n", 1, "log_level: 'loud'" },
	{ "listen = { \"0.0.0.0\" }\n", 1, "missing port" },
	{ "listen = {\n\"0.0.0.0:25\",\n\"[::1]:x\" }\n", 3, "listen" },
	{ "trusted_networks = { \"10.0.0.0/33\" }\n", 1, "trusted_networks" },
	{ "trusted_networks = { \"10.0.0.1/8\" }\n", 1, "beyond the /8 prefix" },
	{ "relay_domains = { \"bad domain\" }\n", 1, "relay_domains" },
	{ "relay_domains = { \"a..b\" }\n", 1, "not a domain name" },
	{ "spool_dir = relative/dir\n", 1, "spool_dir" },
	{ "hostname = \"a b\"\n", 1, "hostname" },
	{ "greeting = \"a\\r\\nb\"\n", 1, "control characters" },
	{ "vrfy = maybe\n", 1, "vrfy" },
	{ "backend = \"smtp:mx.example.com\"\n", 1, "missing port" },
	{ "\nlimits {\n\trecipients_max = 5\n", 2, "'{' is never closed" },
	{ "listen = { \"0.0.0.0:25\",\n\t\"[::1]:25\n", 2, "unterminated string" },
	{ "greeting = 'x\\'\n", 1, "unterminated string" },
	{ "limits = 5\n", 1, "" },
	{ "\n\n/* never closed\n", 3, "unterminated" },
};

START_TEST(bad_value_names_file_and_line)
{
	const struct bad_value *b = &bad_values[_i];
	char want[600];

	snprintf(want, sizeof(want), "%s:%d: ", tmp_path("postern.conf"), b->line);
	write_file("postern.conf", b->text);
	load_fails(tmp_path("postern.conf"), NULL, 0);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "case %d: want '%s', got '%s'",
		      _i, want, err);
	ck_assert_msg(strstr(err, b->why) != NULL, "case %d: '%s' not in '%s'", _i, b->why, err);
}
END_TEST

/* ----------------------------------------------------------------- units */

START_TEST(quoted_and_bare_units)
{
	struct px_config *c;

	write_file("postern.conf", "timeouts {\n\tcommand = 90\n\tdata = \"2m\"\n"
		   "\tsession = 1d\n\tbackend_connect = 250ms\n\tbackend_command = 2h\n}\n"
		   "limits {\n\tmessage_size_max = \"1G\"\n\tspool_memory_max = 64k\n"
		   "\tcommand_line_max = 4096\n\ttext_line_max = 2k\n}\n");
	c = load_ok(tmp_path("postern.conf"), NULL, 0);
	ck_assert_uint_eq(c->timeouts.command, 90000);
	ck_assert_uint_eq(c->timeouts.data, 120000);
	ck_assert_uint_eq(c->timeouts.session, 86400000);
	ck_assert_uint_eq(c->timeouts.backend_connect, 250);
	ck_assert_uint_eq(c->timeouts.backend_command, 7200000);
	ck_assert_uint_eq(c->timeouts.backend_data, 600000);
	ck_assert_uint_eq(c->limits.message_size_max, 1024UL * 1024 * 1024);
	ck_assert_uint_eq(c->limits.spool_memory_max, 64 * 1024);
	ck_assert_uint_eq(c->limits.command_line_max, 4096);
	ck_assert_uint_eq(c->limits.text_line_max, 2048);
	px_config_unref(c);
}
END_TEST

START_TEST(parse_duration)
{
	static const struct { const char *text; unsigned long long ms; } good[] = {
		{ "0", 0 }, { "300", 300000 }, { "300s", 300000 }, { "5m", 300000 },
		{ "2h", 7200000 }, { "1d", 86400000 }, { "250ms", 250 }, { "0ms", 0 },
	};
	static const char *const bad[] = {
		"", "s", "5x", "5 m", " 5m", "5m ", "-5", "+5", "1.5h", "5M", "5mss",
		"99999999999999999999", "18446744073709551615d", "0x10",
	};
	unsigned long long v;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(px_parse_duration_ms(good[i].text, &v) == 0, "'%s'", good[i].text);
		ck_assert_uint_eq(v, good[i].ms);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(px_parse_duration_ms(bad[i], &v) != 0, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(parse_size)
{
	static const struct { const char *text; unsigned long long bytes; } good[] = {
		{ "0", 0 }, { "2048", 2048 }, { "64k", 65536 }, { "64K", 65536 },
		{ "50M", 52428800 }, { "1G", 1073741824 }, { "1g", 1073741824 },
	};
	static const char *const bad[] = {
		"", "M", "1.5M", "5Q", "5MB", "5 M", "-1", "18446744073709551615G",
		"99999999999999999999",
	};
	unsigned long long v;
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(px_parse_size(good[i].text, &v) == 0, "'%s'", good[i].text);
		ck_assert_uint_eq(v, good[i].bytes);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(px_parse_size(bad[i], &v) != 0, "accepted '%s'", bad[i]);
}
END_TEST

/* ------------------------------------------------------------- overrides */

START_TEST(override_beats_files)
{
	const char *ov[] = { "limits.recipients_max=5", " greeting = hello there ",
			     "timeouts.command=\"45s\"", "vrfy=yes" };
	struct px_config *c = load_ok(FIXTURES "/layered/postern.conf", ov, 4);

	ck_assert_uint_eq(c->limits.recipients_max, 5);
	ck_assert_uint_eq(c->limits.errors_max, 7);
	ck_assert_str_eq(c->greeting, "hello there");
	ck_assert_uint_eq(c->timeouts.command, 45000);
	ck_assert_int_eq(c->vrfy_enabled, 1);
	px_config_unref(c);
}
END_TEST

START_TEST(override_last_wins)
{
	const char *ov[] = { "limits.errors_max=3", "limits.errors_max=4" };
	struct px_config *c = load_ok(FIXTURES "/minimal/postern.conf", ov, 2);

	ck_assert_uint_eq(c->limits.errors_max, 4);
	px_config_unref(c);
}
END_TEST

START_TEST(override_list)
{
	const char *ov[] = { "listen=127.0.0.1:25, [::1]:2525 ,0.0.0.0:587", "relay_domains=" };
	struct px_config *c = load_ok(FIXTURES "/layered/postern.conf", ov, 2);

	ck_assert_uint_eq(c->nlisten, 3);
	ck_assert_str_eq(c->listen[0], "127.0.0.1:25");
	ck_assert_str_eq(c->listen[1], "[::1]:2525");
	ck_assert_str_eq(c->listen[2], "0.0.0.0:587");
	ck_assert_uint_eq(c->nrelay_domains, 0);
	px_config_unref(c);
}
END_TEST

START_TEST(override_errors)
{
	const char *ov[] = { "nope=1", "limits.nope=2", "limits=3", "nosuch.key=4", "noequals",
			     "timeouts.command=forever", "listen=1.2.3.4:25,bad" };

	load_fails(FIXTURES "/minimal/postern.conf", ov, 7);
	ck_assert_msg(strncmp(err, "-o: unknown setting 'nope'\n", 27) == 0, "got '%s'", err);
	ck_assert_ptr_nonnull(strstr(err, "\n-o: unknown setting 'limits.nope'\n"));
	ck_assert_ptr_nonnull(strstr(err, "\n-o: unknown setting 'limits'\n"));
	ck_assert_ptr_nonnull(strstr(err, "\n-o: unknown setting 'nosuch.key'\n"));
	ck_assert_ptr_nonnull(strstr(err, "\n-o: 'noequals': expected key=value\n"));
	ck_assert_ptr_nonnull(strstr(err, "\n-o: timeouts.command: 'forever'"));
	ck_assert_ptr_nonnull(strstr(err, "\n-o: listen: 'bad'"));
}
END_TEST

/* ---------------------------------------------------------------- backend */

START_TEST(backend_forms)
{
	struct px_config *c;

	c = one_override("backend=smtp:127.0.0.1:2525");
	ck_assert_int_eq(c->backend.kind, PX_BACKEND_SMTP);
	ck_assert_str_eq(c->backend.host, "127.0.0.1");
	ck_assert_str_eq(c->backend.port, "2525");
	ck_assert_ptr_null(c->backend.path);
	ck_assert_str_eq(c->backend.text, "smtp:127.0.0.1:2525");
	px_config_unref(c);
	c = one_override("backend=smtp:[2001:db8::25]:25");
	ck_assert_int_eq(c->backend.kind, PX_BACKEND_SMTP);
	ck_assert_str_eq(c->backend.host, "2001:db8::25");
	ck_assert_str_eq(c->backend.port, "25");
	px_config_unref(c);
	c = one_override("backend=lmtp:imap.example.com:24");
	ck_assert_int_eq(c->backend.kind, PX_BACKEND_LMTP);
	ck_assert_str_eq(c->backend.host, "imap.example.com");
	ck_assert_str_eq(c->backend.port, "24");
	ck_assert_ptr_null(c->backend.path);
	px_config_unref(c);
	c = one_override("backend=lmtp:unix:/run/dovecot/lmtp");
	ck_assert_int_eq(c->backend.kind, PX_BACKEND_LMTP);
	ck_assert_str_eq(c->backend.path, "/run/dovecot/lmtp");
	ck_assert_ptr_null(c->backend.host);
	px_config_unref(c);
	c = one_override("backend=maildir:/srv/mail");
	ck_assert_int_eq(c->backend.kind, PX_BACKEND_MAILDIR);
	ck_assert_str_eq(c->backend.path, "/srv/mail");
	px_config_unref(c);
}
END_TEST

START_TEST(backend_errors)
{
	static const char *const bad[] = {
		"backend=smtp:mx.example.com", "backend=smtp:[::1", "backend=smtp::25",
		"backend=lmtp:unix:relative", "backend=lmtp:unix:", "backend=maildir:",
		"backend=maildir:srv/mail", "backend=foo:bar", "backend=", "backend=smtp:2001:db8::1:25",
		"backend=smtp:host:99999",
	};
	char file[300];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		load_fails(FIXTURES "/minimal/postern.conf", &bad[i], 1);
		ck_assert_msg(strncmp(err, "-o: backend: ", 13) == 0, "%s: got '%s'", bad[i], err);
	}
	snprintf(file, sizeof(file), "\n\nbackend = \"%s\"\n", "lmtp:mx");
	write_file("postern.conf", file);
	load_fails(tmp_path("postern.conf"), NULL, 0);
	snprintf(file, sizeof(file), "%s:3: backend: ", tmp_path("postern.conf"));
	ck_assert_msg(strncmp(err, file, strlen(file)) == 0, "got '%s'", err);
}
END_TEST

/* ----------------------------------------------------------------- relay */

START_TEST(relay_domains)
{
	struct px_config *c = one_override("relay_domains=Example.COM., .Sub.Example.org");

	ck_assert_uint_eq(c->nrelay_domains, 2);
	ck_assert_str_eq(c->relay_domains[0], "example.com");
	ck_assert_str_eq(c->relay_domains[1], ".sub.example.org");
	ck_assert(px_config_is_relay_domain(c, "example.com"));
	ck_assert(px_config_is_relay_domain(c, "EXAMPLE.com."));
	ck_assert(!px_config_is_relay_domain(c, "a.example.com"));
	ck_assert(!px_config_is_relay_domain(c, "example.com.."));
	ck_assert(!px_config_is_relay_domain(c, "xexample.com"));
	ck_assert(!px_config_is_relay_domain(c, "example.co"));
	ck_assert(!px_config_is_relay_domain(c, "sub.example.org"));
	ck_assert(px_config_is_relay_domain(c, "a.sub.example.org"));
	ck_assert(px_config_is_relay_domain(c, "X.A.Sub.Example.Org."));
	ck_assert(!px_config_is_relay_domain(c, "badsub.example.org"));
	ck_assert(!px_config_is_relay_domain(c, ""));
	ck_assert(!px_config_is_relay_domain(c, "."));
	ck_assert(!px_config_is_relay_domain(c, NULL));
	px_config_unref(c);
}
END_TEST

START_TEST(relay_domains_none)
{
	struct px_config *c = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);

	ck_assert(!px_config_is_relay_domain(c, "example.com"));
	ck_assert(!px_config_is_relay_domain(c, "localhost"));
	px_config_unref(c);
}
END_TEST

START_TEST(trusted_networks)
{
	struct px_config *c = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);
	struct sockaddr_storage ss;

	ck_assert(px_config_is_trusted(c, sa_of(&ss, "127.0.0.1")));
	ck_assert(px_config_is_trusted(c, sa_of(&ss, "127.9.9.9")));
	ck_assert(px_config_is_trusted(c, sa_of(&ss, "::1")));
	ck_assert(px_config_is_trusted(c, sa_of(&ss, "::ffff:127.0.0.1")));
	ck_assert(!px_config_is_trusted(c, sa_of(&ss, "192.0.2.1")));
	ck_assert(!px_config_is_trusted(c, sa_of(&ss, "::2")));
	px_config_unref(c);
	c = one_override("trusted_networks=192.0.2.0/24, 2001:db8::/32");
	ck_assert(!px_config_is_trusted(c, sa_of(&ss, "127.0.0.1")));
	ck_assert(px_config_is_trusted(c, sa_of(&ss, "::ffff:192.0.2.200")));
	ck_assert(px_config_is_trusted(c, sa_of(&ss, "2001:db8::9")));
	px_config_unref(c);
}
END_TEST

/* pregreet_auto_is_port_25 - the check's switch: auto (the default) is on
 * for listeners on port 25, a listener section's own word wins, and the
 * delay and memory have their defaults */
START_TEST(pregreet_auto_is_port_25)
{
	struct px_config *c;

	write_file("postern.conf", "listen = { \"127.0.0.1:25\", \"127.0.0.1:2525\" }\n"
		   "listener \"a\" {\n address = \"127.0.0.1:26\"\n pregreet = yes\n}\n"
		   "listener \"b\" {\n address = \"[::1]:25\"\n pregreet = no\n}\n"
		   "listener \"c\" {\n address = \"[::1]:25\"\n}\n");
	write_file("conf.d/10-x.conf", "listener \"c\" {\n address = \"[::1]:2526\"\n}\n");
	c = load_ok(tmp_path("postern.conf"), NULL, 0);
	ck_assert_uint_eq(c->transport.nlisteners, 5);
	ck_assert_int_eq(c->transport.listeners[0].pregreet, 1);
	ck_assert_int_eq(c->transport.listeners[1].pregreet, 0);
	ck_assert_int_eq(c->transport.listeners[2].pregreet, 1);
	ck_assert_int_eq(c->transport.listeners[3].pregreet, 0);
	ck_assert_int_eq(c->transport.listeners[4].pregreet, 0);
	ck_assert_uint_eq(c->transport.pregreet_delay, 6000);
	ck_assert(c->transport.greet_ttl == 86400000ULL);
	ck_assert(c->transport.pregreet_fail_ttl == 3600000ULL);
	px_config_unref(c);
	write_file("postern.conf", "listen = { \"127.0.0.1:25\" }\npregreet {\n enable = no\n"
		   " delay = 2s\n greet_ttl = 0\n}\n");
	unlink(tmp_path("conf.d/10-x.conf"));
	c = load_ok(tmp_path("postern.conf"), NULL, 0);
	ck_assert_int_eq(c->transport.listeners[0].pregreet, 0);
	ck_assert_uint_eq(c->transport.pregreet_delay, 2000);
	ck_assert(c->transport.greet_ttl == 0);
	px_config_unref(c);
}
END_TEST

/* ------------------------------------------------------------------ dump */

START_TEST(dump_lines)
{
	struct px_config *c = load_ok(FIXTURES "/minimal/postern.conf", NULL, 0);
	char *d = dump_of(c);

	ck_assert_msg(has_line(d, "listen = 0.0.0.0:25"), "%s", d);
	ck_assert(has_line(d, "backend = maildir:/var/lib/postern/maildir"));
	ck_assert(has_line(d, "relay_domains ="));
	ck_assert(has_line(d, "trusted_networks = 127.0.0.0/8, ::1/128"));
	ck_assert(has_line(d, "vrfy = no"));
	ck_assert(has_line(d, "log_level = info"));
	ck_assert(has_line(d, "limits.recipients_max = 1000"));
	ck_assert(has_line(d, "limits.message_size_max = 50M"));
	ck_assert(has_line(d, "limits.text_line_max = 1M"));
	ck_assert(has_line(d, "timeouts.command = 5m"));
	ck_assert(has_line(d, "timeouts.session = 1h"));
	ck_assert(has_line(d, "timeouts.backend_connect = 30s"));
	free(d);
	px_config_unref(c);
}
END_TEST

/* dump_lines_of - split a dump into its lines, each a valid -o argument as is */
static size_t dump_lines_of(char *dump, char **ov, size_t max)
{
	char *line, *save = NULL;
	size_t n = 0;

	for (line = strtok_r(dump, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save))
		ov[n++] = line;
	return n;
}

START_TEST(dump_round_trips_through_overrides)
{
	const char *ov[] = { "relay_domains=a.example, .b.example", "timeouts.command=250ms",
			     "backend=lmtp:unix:/run/lmtp", "limits.message_size_max=1025",
			     "vrfy=yes", "greeting=Hi there" };
	struct px_config *a = load_ok(FIXTURES "/layered/postern.conf", ov, 6), *b;
	char *da = dump_of(a), *copy = strdup(da), *db, *list[64];
	size_t n = dump_lines_of(copy, list, 64);

	b = load_ok(FIXTURES "/minimal/postern.conf", (const char *const *)list, n);
	db = dump_of(b);
	ck_assert_str_eq(da, db);
	ck_assert(has_line(da, "timeouts.command = 250ms"));
	ck_assert(has_line(da, "limits.message_size_max = 1025"));
	free(da);
	free(db);
	free(copy);
	px_config_unref(a);
	px_config_unref(b);
}
END_TEST

/* ----------------------------------------------------------------- suite */

/* config_suite - every test above, each with its own temporary directory */
static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, defaults_limits_timeouts);
	tcase_add_test(tc, generation_and_refs);
	tcase_add_test(tc, shipped_config_loads);
	tcase_add_test(tc, shipped_comments_are_defaults);
	tcase_add_test(tc, confd_order_and_single_key_override);
	tcase_add_test(tc, list_assign_replaces);
	tcase_add_test(tc, missing_confd_and_missing_file);
	tcase_add_test(tc, unknown_key_names_file_and_line);
	tcase_add_test(tc, errors_of_every_file);
	tcase_add_test(tc, unknown_key_in_section_and_conf_d);
	tcase_add_loop_test(tc, bad_value_names_file_and_line, 0,
			    (int)(sizeof(bad_values) / sizeof(bad_values[0])));
	tcase_add_test(tc, quoted_and_bare_units);
	tcase_add_test(tc, parse_duration);
	tcase_add_test(tc, parse_size);
	tcase_add_test(tc, override_beats_files);
	tcase_add_test(tc, override_last_wins);
	tcase_add_test(tc, override_list);
	tcase_add_test(tc, override_errors);
	tcase_add_test(tc, backend_forms);
	tcase_add_test(tc, backend_errors);
	tcase_add_test(tc, relay_domains);
	tcase_add_test(tc, relay_domains_none);
	tcase_add_test(tc, trusted_networks);
	tcase_add_test(tc, pregreet_auto_is_port_25);
	tcase_add_test(tc, dump_lines);
	tcase_add_test(tc, dump_round_trips_through_overrides);
	suite_add_tcase(s, tc);
	return s;
}

/* main - run the suite; non-zero exit if any test failed */
int main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
