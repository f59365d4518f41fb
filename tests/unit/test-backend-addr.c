/*
 * NAME
 *	test-backend-addr - unit tests for proxy/backend_addr.c
 * DESCRIPTION
 *	A scripted resolver (answers from a table, can be made to fail or to
 *	block until the test releases it, counts its calls per name) stands
 *	in for getaddrinfo, and an observer (px_backend_addr_set_observer)
 *	counts the background resolutions started and done per name. Tests
 *	synchronise with the resolver thread on a condition variable, never
 *	by sleeping: each wait is for an event that must happen, bounded by
 *	WAIT_MS as the failure path. Checks: a name resolved at load is
 *	served from the cache; px_backend_addr never waits for a blocked
 *	resolver; a connection failure re-resolves in the background and the
 *	next lookup sees the new address; a failed re-resolution keeps the
 *	last good address; a name never resolved answers "cannot resolve"
 *	and starts a resolution; a burst of failures starts one resolution,
 *	and none starts again within the retry interval; IP literals and
 *	unix paths never reach the resolver; concurrent lookups from many
 *	threads are safe (run under TSan/ASan builds too).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "policy/config.h"
#include "proxy/backend_addr.h"

#define RETRY_MS       100      /* the retry interval for most tests */
#define STORM_RETRY_MS 500      /* for test_retry_interval */
#define WAIT_MS        5000     /* the failure path of every wait */

/* what happened to one name; under fake_lock */
struct name_stats {
	char host[64];
	unsigned calls;                      /* resolver calls, at load too */
	unsigned starts;                     /* background resolutions started */
	unsigned dones;                      /* ... and stored in the cache */
	int last_rc;                         /* the last stored one's result */
};

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fake_cond;             /* any change below; CLOCK_MONOTONIC */
static char fake_addr[64] = "192.0.2.1";   /* what the fake resolver answers */
static int fake_fail;                        /* answer "not found" instead */
static int fake_hold;                        /* block until released */
static struct name_stats stats[32];
static unsigned total_starts;                /* every name */

/* now_ms - monotonic milliseconds */
static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* deadline - the CLOCK_MONOTONIC time ms from now, for pthread_cond_timedwait */
static struct timespec deadline(unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* stats_of - host's counters, created on first use; fake_lock held */
static struct name_stats *stats_of(const char *host)
{
	size_t i;

	for (i = 0; i < sizeof(stats) / sizeof(stats[0]) && stats[i].host[0]; i++)
		if (strcmp(stats[i].host, host) == 0)
			return &stats[i];
	ck_assert_msg(i < sizeof(stats) / sizeof(stats[0]), "too many names");
	snprintf(stats[i].host, sizeof(stats[i].host), "%s", host);
	return &stats[i];
}

/* fake_resolve - the scripted resolver */
static int fake_resolve(const char *host, const char *port, struct sockaddr_storage *ss,
			socklen_t *len, char *why, size_t whylen)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	char addr[64];
	int fail;

	pthread_mutex_lock(&fake_lock);
	stats_of(host)->calls++;
	pthread_cond_broadcast(&fake_cond);
	while (fake_hold)                            /* until fake_release */
		pthread_cond_wait(&fake_cond, &fake_lock);
	snprintf(addr, sizeof(addr), "%s", fake_addr);
	fail = fake_fail;
	pthread_mutex_unlock(&fake_lock);
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

/* observe - the backend_addr observer: count, and wake the test */
static void observe(enum px_backend_addr_event ev, const char *host, const char *port, int rc)
{
	struct name_stats *st;

	(void)port;
	pthread_mutex_lock(&fake_lock);
	st = stats_of(host);
	if (ev == PX_BACKEND_ADDR_STARTED) {
		st->starts++;
		total_starts++;
	} else {
		st->dones++;
		st->last_rc = rc;
	}
	pthread_cond_broadcast(&fake_cond);
	pthread_mutex_unlock(&fake_lock);
}

/* fake_set - script the next answers */
static void fake_set(const char *addr, int fail)
{
	pthread_mutex_lock(&fake_lock);
	snprintf(fake_addr, sizeof(fake_addr), "%s", addr);
	fake_fail = fail;
	pthread_mutex_unlock(&fake_lock);
}

/* fake_block - hold the resolver (1) or let it, and any it holds, go (0) */
static void fake_block(int hold)
{
	pthread_mutex_lock(&fake_lock);
	fake_hold = hold;
	pthread_cond_broadcast(&fake_cond);
	pthread_mutex_unlock(&fake_lock);
}

/* count - one counter of host's (offsetof in struct name_stats) */
static unsigned count(const char *host, size_t field)
{
	unsigned n;

	pthread_mutex_lock(&fake_lock);
	n = *(unsigned *)((char *)stats_of(host) + field);
	pthread_mutex_unlock(&fake_lock);
	return n;
}

/* wait_count - wait (at most WAIT_MS) until that counter reaches n; 1, or 0 on timeout */
static int wait_count(const char *host, size_t field, unsigned n)
{
	struct timespec until = deadline(WAIT_MS);
	int rc = 0;

	pthread_mutex_lock(&fake_lock);
	while (*(unsigned *)((char *)stats_of(host) + field) < n && rc == 0)
		rc = pthread_cond_timedwait(&fake_cond, &fake_lock, &until);
	rc = *(unsigned *)((char *)stats_of(host) + field) >= n;
	pthread_mutex_unlock(&fake_lock);
	return rc;
}

#define CALLS  offsetof(struct name_stats, calls)
#define STARTS offsetof(struct name_stats, starts)
#define DONES  offsetof(struct name_stats, dones)

/* last_rc - the result of host's last background resolution */
static int last_rc(const char *host)
{
	int rc;

	pthread_mutex_lock(&fake_lock);
	rc = stats_of(host)->last_rc;
	pthread_mutex_unlock(&fake_lock);
	return rc;
}

/* starts_all - background resolutions started, every name */
static unsigned starts_all(void)
{
	unsigned n;

	pthread_mutex_lock(&fake_lock);
	n = total_starts;
	pthread_mutex_unlock(&fake_lock);
	return n;
}

/* wait_until - let the clock pass t (monotonic ms): the one test about an
 * interval needs it to have elapsed, so the deadline, not a signal, ends it */
static void wait_until(uint64_t t)
{
	struct timespec until;
	uint64_t now;

	pthread_mutex_lock(&fake_lock);
	while ((now = now_ms()) < t) {
		until = deadline((unsigned)(t - now) + 1);
		pthread_cond_timedwait(&fake_cond, &fake_lock, &until);
	}
	pthread_mutex_unlock(&fake_lock);
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

static void setup(void)
{
	fake_set("192.0.2.1", 0);
	fake_block(0);
	px_backend_addr_set_resolver(fake_resolve, RETRY_MS);
	px_backend_addr_set_observer(observe);
}

START_TEST(test_load_then_cached)
{
	struct px_config cfg;
	char got[64];

	backend(&cfg, "mx.load.test", "25", NULL);
	px_backend_addr_load(&cfg);
	ck_assert_uint_eq(count("mx.load.test", CALLS), 1);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	ck_assert_uint_eq(count("mx.load.test", CALLS), 1);   /* served from the cache */
	ck_assert_uint_eq(count("mx.load.test", STARTS), 0);  /* nothing in the background */
}
END_TEST

START_TEST(test_never_blocks)
{
	const char *h = "mx.slow.test";
	struct px_config cfg;
	char got[64];
	uint64_t t1;

	backend(&cfg, h, "25", NULL);
	px_backend_addr_load(&cfg);
	fake_set("192.0.2.2", 0);
	fake_block(1);                                    /* a name server that hangs */
	px_backend_addr_failed(&cfg);
	t1 = now_ms();                                    /* >= when it started */
	ck_assert_uint_eq(count(h, STARTS), 1);
	ck_assert(wait_count(h, CALLS, 2));               /* the resolver is stuck in it */
	/* these return while it is stuck: they never wait for it */
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");   /* the old one, now */
	wait_until(t1 + RETRY_MS);                        /* past the interval: only busy holds */
	px_backend_addr_failed(&cfg);
	ck_assert_uint_eq(count(h, STARTS), 1);           /* one at a time */
	ck_assert_uint_eq(count(h, DONES), 0);
	fake_block(0);
	ck_assert(wait_count(h, DONES, 1));
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.2");   /* then the new one */
}
END_TEST

START_TEST(test_failure_reresolves)
{
	const char *h = "mx.moved.test";
	struct px_config cfg;
	char got[64];

	backend(&cfg, h, "25", NULL);
	px_backend_addr_load(&cfg);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	fake_set("192.0.2.9", 0);                         /* the backend moved */
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");   /* no reason to look */
	ck_assert_uint_eq(count(h, STARTS), 0);
	px_backend_addr_failed(&cfg);
	ck_assert_uint_eq(count(h, STARTS), 1);
	ck_assert(wait_count(h, DONES, 1));
	ck_assert_int_eq(last_rc(h), 0);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.9");
}
END_TEST

START_TEST(test_failed_lookup_keeps_address)
{
	const char *h = "mx.keep.test";
	struct px_config cfg;
	char got[64];

	backend(&cfg, h, "25", NULL);
	px_backend_addr_load(&cfg);
	fake_set("192.0.2.8", 1);                         /* the name server fails */
	px_backend_addr_failed(&cfg);
	ck_assert(wait_count(h, DONES, 1));               /* the failure is in the cache */
	ck_assert_int_eq(last_rc(h), -1);
	ck_assert_uint_eq(count(h, CALLS), 2);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
	/* a reload that cannot resolve keeps it too */
	px_backend_addr_load(&cfg);
	ck_assert_uint_eq(count(h, CALLS), 3);
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.1");
}
END_TEST

START_TEST(test_unknown_name)
{
	struct px_config cfg;
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256], got[64];

	backend(&cfg, "mx.never.test", "25", NULL);
	fake_set("192.0.2.1", 1);
	px_backend_addr_load(&cfg);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "cannot resolve mx.never.test") != NULL, "why=%s", why);
	ck_assert_uint_eq(count("mx.never.test", STARTS), 1);   /* and it tries again */
	ck_assert(wait_count("mx.never.test", DONES, 1));
	ck_assert_int_eq(last_rc("mx.never.test"), -1);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "cannot resolve mx.never.test") != NULL, "why=%s", why);
	/* not loaded at all: the first lookup says so and starts resolving */
	backend(&cfg, "mx.late.test", "25", NULL);
	fake_set("192.0.2.7", 0);
	ck_assert_int_eq(px_backend_addr(&cfg, &ss, &len, why, sizeof(why)), -1);
	ck_assert_msg(strstr(why, "mx.late.test") != NULL, "why=%s", why);
	ck_assert_uint_eq(count("mx.late.test", STARTS), 1);
	ck_assert(wait_count("mx.late.test", DONES, 1));
	ck_assert_str_eq(addr_of(&cfg, got, sizeof(got)), "192.0.2.7");
}
END_TEST

/*
 * The retry interval. STARTED is reported before px_backend_addr_failed
 * returns, so "no resolution started" is known at once, without waiting.
 * A burst while one resolution hangs starts exactly one (no timing
 * involved). A burst after it is done but within the interval must start
 * none: asserted only when the clock proves we are still inside it (a
 * stalled machine can only skip that check, never fail it). Once the
 * interval has certainly passed, one failure starts the next one.
 */
START_TEST(test_retry_interval)
{
	const char *h = "mx.storm.test";
	struct px_config cfg;
	uint64_t t0, t1, t2;
	unsigned started;

	px_backend_addr_set_resolver(fake_resolve, STORM_RETRY_MS);
	backend(&cfg, h, "25", NULL);
	px_backend_addr_load(&cfg);
	fake_block(1);
	t0 = now_ms();                                    /* <= when the first one started */
	for (int i = 0; i < 50; i++)                      /* a burst of failed connections */
		px_backend_addr_failed(&cfg);
	t1 = now_ms();                                    /* >= when it started */
	ck_assert_uint_eq(count(h, STARTS), 1);
	ck_assert(wait_count(h, CALLS, 2));
	fake_block(0);
	ck_assert(wait_count(h, DONES, 1));
	for (int i = 0; i < 50; i++)                      /* more, right after it */
		px_backend_addr_failed(&cfg);
	t2 = now_ms();                                    /* >= when any of those started */
	if (t2 - t0 < STORM_RETRY_MS) {
		ck_assert_uint_eq(count(h, STARTS), 1);
	} else {
		fprintf(stderr, "test_retry_interval: %ums passed, within-interval check skipped\n",
			(unsigned)(t2 - t0));
		ck_assert_uint_le(count(h, STARTS), 2);
		if (count(h, STARTS) == 2)
			t1 = t2;                          /* the interval runs from that one */
	}
	started = count(h, STARTS);
	ck_assert(wait_count(h, DONES, started));         /* none is running */
	wait_until(t1 + STORM_RETRY_MS);                  /* the interval has passed */
	px_backend_addr_failed(&cfg);
	ck_assert_uint_eq(count(h, STARTS), started + 1);
	ck_assert(wait_count(h, DONES, started + 1));
	ck_assert_uint_eq(count(h, CALLS), 1 + started + 1);   /* load, then each started one */
}
END_TEST

START_TEST(test_literals_and_paths)
{
	struct px_config cfg;
	struct sockaddr_storage ss;
	socklen_t len;
	char why[256], got[64];
	unsigned starts = starts_all();
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
	ck_assert_uint_eq(starts_all(), starts);          /* no lookup for any of them */
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
	ck_assert_uint_ge(count("mx.busy.test", STARTS), 1);
	/* no resolver thread outlives the test */
	ck_assert(wait_count("mx.busy.test", DONES, count("mx.busy.test", STARTS)));
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
	SRunner *sr;
	pthread_condattr_t ca;
	int failed;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fake_cond, &ca);
	pthread_condattr_destroy(&ca);
	sr = srunner_create(addr_suite());

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
