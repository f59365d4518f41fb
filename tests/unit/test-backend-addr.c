/*
 * NAME
 *	test-backend-addr - unit tests for proxy/backend_addr.c
 * DESCRIPTION
 *	A scripted resolver (answers from a table, can be slowed down or made
 *	to fail, counts its calls) stands in for getaddrinfo. Checks: a name
 *	resolved at load is served from the cache; px_backend_addr never
 *	waits for a slow resolver; a connection failure re-resolves in the
 *	background and the next lookup sees the new address; a failed
 *	re-resolution keeps the last good address; a name never resolved
 *	answers "cannot resolve" and starts a resolution; background
 *	resolutions are not repeated within the retry interval; IP literals
 *	and unix paths never reach the resolver; concurrent lookups from many
 *	threads are safe (run under TSan/ASan builds too).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "policy/config.h"
#include "proxy/backend_addr.h"

#define RETRY_MS 100

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static char fake_addr[64] = "192.0.2.1";   /* what the fake resolver answers */
static int fake_fail;                        /* answer "not found" instead */
static unsigned fake_delay_ms;               /* sleep before answering */
static unsigned fake_calls;

/* sleep_ms - nanosleep for ms */
static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* now_ms - monotonic milliseconds */
static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* fake_resolve - the scripted resolver */
static int fake_resolve(const char *host, const char *port, struct sockaddr_storage *ss,
			socklen_t *len, char *why, size_t whylen)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	char addr[64];
	unsigned delay;
	int fail;

	pthread_mutex_lock(&fake_lock);
	fake_calls++;
	snprintf(addr, sizeof(addr), "%s", fake_addr);
	fail = fake_fail;
	delay = fake_delay_ms;
	pthread_mutex_unlock(&fake_lock);
	if (delay)
		sleep_ms(delay);
	if (fail) {
		snprintf(why, whylen, "cannot resolve %s: not found", host);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	in->sin_family = AF_INET;
	in->sin_port = htons((unsigned short)atoi(port));
	inet_pton(AF_INET, addr, &in->sin_addr);
	*len = sizeof(*in);
	return 0;
}

/* fake_set - script the next answers */
static void fake_set(const char *addr, int fail, unsigned delay_ms)
{
	pthread_mutex_lock(&fake_lock);
	snprintf(fake_addr, sizeof(fake_addr), "%s", addr);
	fake_fail = fail;
	fake_delay_ms = delay_ms;
	pthread_mutex_unlock(&fake_lock);
}

/* fake_count - calls so far */
static unsigned fake_count(void)
{
	unsigned n;

	pthread_mutex_lock(&fake_lock);
	n = fake_calls;
	pthread_mutex_unlock(&fake_lock);
	return n;
}

/* backend - a configuration naming host:port (or a unix path) */
static void backend(struct px_config *cfg, const char *host, const char *port, const char *path)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->backend.kind = path ? PX_BACKEND_LMTP : PX_BACKEND_SMTP;
	cfg->backend.host = (char *)host;
	cfg->backend.port = (char *)port;
	cfg->backend.path = (char *)path;
	cfg->backend.text = (char *)"test";
}

/* addr_of - the IPv4 address px_backend_addr gives, "" when it fails */
static const char *addr_of(const struct px_config *cfg, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char why[256];

	out[0] = 0;
	if (px_backend_addr(cfg, &ss, &len, why, sizeof(why)) == 0 && ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)outlen);
	return out;
}

/* wait_addr - poll (bounded) until px_backend_addr gives want */
static int wait_addr(const struct px_config *cfg, const char *want)
{
	char got[64];

	for (int i = 0; i < 300; i++) {
		if (strcmp(addr_of(cfg, got, sizeof(got)), want) == 0)
			return 1;
		sleep_ms(10);
	}
	return 0;
}

static void setup(void)
{
	fake_set("192.0.2.1", 0, 0);
	px_backend_addr_set_resolver(fake_resolve, RETRY_MS);
}

START_TEST(test_load_then_cached)
{
	struct px_config cfg;
	char got[64];
	unsigned calls;

	backend(&cfg, "mx.load.test", "25", NULL);
	px_backend_addr_load(&cfg);
	calls = fake_count();
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	ck_assert_uint_eq(fake_count(), calls);           /* served from the cache */
}
END_TEST

START_TEST(test_never_blocks)
{
	struct px_config cfg;
	char got[64];
	uint64_t t0;

	backend(&cfg, "mx.slow.test", "25", NULL);
	px_backend_addr_load(&cfg);
	fake_set("192.0.2.2", 0, 600);                    /* a slow name server */
	px_backend_addr_failed(&cfg);
	t0 = now_ms();
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");   /* the old one, now */
	px_backend_addr_failed(&cfg);
	ck_assert_uint_lt(now_ms() - t0, 200);
	ck_assert(wait_addr(&cfg, "192.0.2.2"));          /* then the new one */
}
END_TEST

START_TEST(test_failure_reresolves)
{
	struct px_config cfg;
	char got[64];

	backend(&cfg, "mx.moved.test", "25", NULL);
	px_backend_addr_load(&cfg);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	fake_set("192.0.2.9", 0, 0);                      /* the backend moved */
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");   /* no reason to look */
	px_backend_addr_failed(&cfg);
	ck_assert(wait_addr(&cfg, "192.0.2.9"));
}
END_TEST

START_TEST(test_failed_lookup_keeps_address)
{
	struct px_config cfg;
	unsigned calls;
	char got[64];

	backend(&cfg, "mx.keep.test", "25", NULL);
	px_backend_addr_load(&cfg);
	fake_set("192.0.2.1", 1, 0);                      /* the name server fails */
	calls = fake_count();
	px_backend_addr_failed(&cfg);
	for (int i = 0; i < 300 && fake_count() == calls; i++)
		sleep_ms(10);
	sleep_ms(20);
	ck_assert_uint_gt(fake_count(), calls);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	/* a reload that cannot resolve keeps it too */
	px_backend_addr_load(&cfg);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
}
END_TEST

START_TEST(test_unknown_name)
{
	struct px_config cfg;
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256];

	backend(&cfg, "mx.never.test", "25", NULL);
	fake_set("192.0.2.1", 1, 0);
	px_backend_addr_load(&cfg);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "cannot resolve mx.never.test") != NULL, "why=%s", why);
	/* not loaded at all: the first lookup says so and starts resolving */
	backend(&cfg, "mx.late.test", "25", NULL);
	fake_set("192.0.2.7", 0, 0);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "mx.late.test") != NULL, "why=%s", why);
	ck_assert(wait_addr(&cfg, "192.0.2.7"));
}
END_TEST

START_TEST(test_retry_interval)
{
	struct px_config cfg;
	unsigned calls;

	backend(&cfg, "mx.storm.test", "25", NULL);
	px_backend_addr_load(&cfg);
	calls = fake_count();
	for (int i = 0; i < 50; i++)                      /* a burst of failed connections */
		px_backend_addr_failed(&cfg);
	sleep_ms(RETRY_MS / 2);
	ck_assert_uint_eq(fake_count(), calls + 1);
	sleep_ms(RETRY_MS);
	px_backend_addr_failed(&cfg);
	for (int i = 0; i < 300 && fake_count() < calls + 2; i++)
		sleep_ms(10);
	ck_assert_uint_eq(fake_count(), calls + 2);
}
END_TEST

START_TEST(test_literals_and_paths)
{
	struct px_config cfg;
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256], got[64];
	unsigned calls = fake_count();
	char longpath[200];

	backend(&cfg, "198.51.100.5", "2525", NULL);
	px_backend_addr_load(&cfg);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "198.51.100.5");
	px_backend_addr_failed(&cfg);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), 0);
	ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port), 2525);
	backend(&cfg, "::1", "25", NULL);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), 0);
	ck_assert_int_eq(ss.ss_family, AF_INET6);
	backend(&cfg, NULL, NULL, "/run/lmtp.sock");
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), 0);
	ck_assert_int_eq(ss.ss_family, AF_UNIX);
	ck_assert_str_eq(((struct sockaddr_un *)&ss)->sun_path, "/run/lmtp.sock");
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = 0;
	backend(&cfg, NULL, NULL, longpath);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), -1);
	sleep_ms(20);
	ck_assert_uint_eq(fake_count(), calls);           /* no lookup for any of them */
}
END_TEST

/* hammer - lookups and failures from one thread */
static void *hammer(void *arg)
{
	const struct px_config *cfg = arg;
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256];

	for (int i = 0; i < 20000; i++) {
		if (px_backend_addr(cfg, &ss, &len, why, sizeof(why)) != 0)
			return (void *)1;
		if (i % 1000 == 0)
			px_backend_addr_failed(cfg);
	}
	return NULL;
}

START_TEST(test_threads)
{
	struct px_config cfg;
	pthread_t t[4];
	void *rc;

	backend(&cfg, "mx.busy.test", "25", NULL);
	px_backend_addr_load(&cfg);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &cfg), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], &rc);
		ck_assert_ptr_null(rc);
	}
}
END_TEST

/* addr_suite - every test case above */
static Suite *addr_suite(void)
{
	Suite *s = suite_create("backend_addr");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_load_then_cached);
	tcase_add_test(tc, test_never_blocks);
	tcase_add_test(tc, test_failure_reresolves);
	tcase_add_test(tc, test_failed_lookup_keeps_address);
	tcase_add_test(tc, test_unknown_name);
	tcase_add_test(tc, test_retry_interval);
	tcase_add_test(tc, test_literals_and_paths);
	tcase_add_test(tc, test_threads);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return s;
}

/* main - run the suite; nonzero exit on any failure */
int main(void)
{
	SRunner *sr = srunner_create(addr_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
