/*
 * NAME
 *	test-resolver - unit tests for the process's resolver (real libunbound)
 * DESCRIPTION
 *	The resolver forwards to a tiny DNS responder run by this test on
 *	127.0.0.1 (a thread, a UDP socket on a free port), and also serves
 *	the zone example. from in-process local data. The responder answers
 *	A queries with 192.0.2.7, SERVFAILs names starting with "fail", says
 *	NXDOMAIN for names starting with "nx", never answers names starting
 *	with "hang", and counts the queries per name. Checks:
 *	  - answers, NXDOMAIN, NODATA and SERVFAIL map to the statuses, with
 *	    the rdata, the rcode and the packet;
 *	  - a bad query is an error, never asked;
 *	  - a name nobody answers costs the timeout, not more;
 *	  - while 8 threads wait on such names, other lookups answer at once
 *	    (no lock across a lookup, the resolver thread is not blocked);
 *	  - the cache: a second lookup of a name does not reach the upstream;
 *	  - names under test. reach the forwarder (libunbound's built-in
 *	    test. zone is off with forwarders);
 *	  - async: the callback runs later, on the loop of the base given, or
 *	    on the resolver's thread without one; stop drops what a stopped
 *	    loop never ran (drop is called instead).
 */
#include <check.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "common/log.h"
#include "filters/resolver.h"

#define TIMEOUT_MS 400

/* ------------------------------------------------------- the responder */

static struct {
	int fd, port;
	pthread_t thr;
	int stop;                   /* atomic */
	pthread_mutex_t mu;
	char names[64][128];
	int counts[64];
	int n;
} fake = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void fake_count(const char *name)
{
	int i;

	pthread_mutex_lock(&fake.mu);
	for (i = 0; i < fake.n && strcmp(fake.names[i], name) != 0; i++)
		;
	if (i == fake.n && fake.n < 64)
		snprintf(fake.names[fake.n++], sizeof(fake.names[0]), "%s", name);
	if (i < 64)
		fake.counts[i]++;
	pthread_mutex_unlock(&fake.mu);
}

static int fake_queries(const char *name)
{
	int i, c = 0;

	pthread_mutex_lock(&fake.mu);
	for (i = 0; i < fake.n; i++)
		if (strcmp(fake.names[i], name) == 0)
			c = fake.counts[i];
	pthread_mutex_unlock(&fake.mu);
	return c;
}

/* fake_answer - the reply to q (n bytes) in out; 0 for none */
static size_t fake_answer(const unsigned char *q, size_t n, unsigned char *out)
{
	char name[128];
	size_t i = 12, o = 0, qend;
	int qtype, rcode = 0, an = 0;

	if (n < 17)
		return 0;
	while (i < n && q[i] != 0 && q[i] < 64 && o + q[i] + 1 < sizeof(name)) {
		if (o)
			name[o++] = '.';
		for (size_t j = 1; j <= q[i]; j++)
			name[o++] = (char)(q[i + j] | 0x20);
		i += (size_t)q[i] + 1;
	}
	name[o] = '\0';
	if (i + 5 > n)
		return 0;
	qtype = q[i + 1] << 8 | q[i + 2];
	qend = i + 5;
	fake_count(name);
	if (strncmp(name, "hang", 4) == 0)
		return 0;
	if (strncmp(name, "fail", 4) == 0)
		rcode = 2;
	else if (strncmp(name, "nx", 2) == 0)
		rcode = 3;
	else if (qtype == 1)
		an = 1;
	memcpy(out, q, qend);
	out[2] = 0x84 | (q[2] & 0x01);      /* QR AA, RD copied */
	out[3] = 0x80 | (unsigned char)rcode;
	out[6] = 0; out[7] = (unsigned char)an;
	out[8] = out[9] = out[10] = out[11] = 0;   /* no authority, no additional (no OPT) */
	o = qend;
	if (an) {
		static const unsigned char rr[] = { 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4,
						    192, 0, 2, 7 };
		memcpy(out + o, rr, sizeof(rr));
		o += sizeof(rr);
	}
	return o;
}

static void *fake_main(void *arg)
{
	unsigned char q[1500], out[1600];
	struct sockaddr_storage from;
	struct pollfd p = { .fd = fake.fd, .events = POLLIN };

	while (!__atomic_load_n(&fake.stop, __ATOMIC_ACQUIRE)) {
		socklen_t fl = sizeof(from);
		ssize_t n;
		size_t r;

		if (poll(&p, 1, 50) <= 0)
			continue;
		if ((n = recvfrom(fake.fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl)) <= 0)
			continue;
		if ((r = fake_answer(q, (size_t)n, out)) > 0)
			(void)sendto(fake.fd, out, r, 0, (struct sockaddr *)&from, fl);
	}
	return NULL;
}

static void fake_start(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t l = sizeof(a);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fake.fd = socket(AF_INET, SOCK_DGRAM, 0);
	ck_assert_int_ge(fake.fd, 0);
	ck_assert_int_eq(bind(fake.fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fake.fd, (struct sockaddr *)&a, &l), 0);
	fake.port = ntohs(a.sin_port);
	ck_assert_int_eq(pthread_create(&fake.thr, NULL, fake_main, NULL), 0);
}

static void fake_stop(void)
{
	__atomic_store_n(&fake.stop, 1, __ATOMIC_RELEASE);
	pthread_join(fake.thr, NULL);
	close(fake.fd);
}

/* ------------------------------------------------------------ fixtures */

static const char *const zones[] = { "example. static", NULL };
static const char *const data[] = {
	"a.example. 300 IN A 192.0.2.1",
	"a.example. 300 IN TXT \"hello\" \"world\"",
	"b.example. 300 IN MX 10 mx.example.",
	NULL
};

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void setup(void)
{
	char fwd[64], err[512] = "";
	char *forward[] = { fwd, NULL };
	struct px_resolver_conf c = { forward, TIMEOUT_MS, zones, data };

	__atomic_store_n(&fake.stop, 0, __ATOMIC_RELEASE);
	fake.n = 0;
	memset(fake.counts, 0, sizeof(fake.counts));
	fake_start();
	snprintf(fwd, sizeof(fwd), "127.0.0.1@%d", fake.port);
	ck_assert_msg(px_resolver_start(&c, err, sizeof(err)) == 0, "start: %s", err);
}

static void teardown(void)
{
	px_resolver_stop();
	fake_stop();
}

/* lookup - blocking; the answer (to free) */
static struct px_dns_answer *lookup(const char *name, int type, enum px_dns_status want)
{
	struct px_dns_answer *a = NULL;
	enum px_dns_status st = px_dns_lookup(name, type, &a);

	ck_assert_msg(st == want, "%s/%d: status %s, wanted %s", name, type,
		      px_dns_status_name(st), px_dns_status_name(want));
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->status, st);
	ck_assert_int_eq(a->type, type);
	return a;
}

/* --------------------------------------------------------------- tests */

START_TEST(test_statuses)
{
	struct px_dns_answer *a;
	static const unsigned char txt[] = "\005hello\005world";

	a = lookup("a.example", 1, PX_DNS_OK);
	ck_assert_uint_eq(a->count, 1);
	ck_assert_uint_eq(a->len[0], 4);
	ck_assert_mem_eq(a->data[0], "\xc0\x00\x02\x01", 4);
	ck_assert_int_eq(a->rcode, 0);
	ck_assert_ptr_nonnull(a->packet);
	ck_assert_uint_gt(a->packet_len, 12);
	ck_assert_uint_gt(a->ttl, 0);
	px_dns_answer_free(a);

	a = lookup("A.Example.", 16, PX_DNS_OK);      /* case, final dot */
	ck_assert_uint_eq(a->len[0], sizeof(txt) - 1);
	ck_assert_mem_eq(a->data[0], txt, sizeof(txt) - 1);
	px_dns_answer_free(a);

	a = lookup("a.example", 28, PX_DNS_NODATA);
	ck_assert_uint_eq(a->count, 0);
	px_dns_answer_free(a);
	a = lookup("nope.example", 1, PX_DNS_NXDOMAIN);
	ck_assert_int_eq(a->rcode, 3);
	px_dns_answer_free(a);

	/* through the forwarder */
	a = lookup("www.example.net", 1, PX_DNS_OK);
	ck_assert_mem_eq(a->data[0], "\xc0\x00\x02\x07", 4);
	px_dns_answer_free(a);
	a = lookup("www.example.net", 16, PX_DNS_NODATA);
	px_dns_answer_free(a);
	a = lookup("nx.example.net", 1, PX_DNS_NXDOMAIN);
	px_dns_answer_free(a);
	a = lookup("fail.example.net", 1, PX_DNS_TEMPFAIL);
	ck_assert_int_eq(a->rcode, 2);
	px_dns_answer_free(a);
}
END_TEST

START_TEST(test_bad_queries)
{
	char longname[300];
	struct px_dns_answer *a;

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	px_dns_answer_free(lookup(longname, 1, PX_DNS_ERROR));
	px_dns_answer_free(lookup("a.example", 0, PX_DNS_ERROR));
	px_dns_answer_free(lookup("a.example", 70000, PX_DNS_ERROR));
	px_dns_answer_free(lookup("bad name.example", 1, PX_DNS_ERROR));
	a = lookup("", 1, PX_DNS_ERROR);
	ck_assert_int_eq(a->rcode, -1);
	px_dns_answer_free(a);
}
END_TEST

START_TEST(test_timeout)
{
	struct timespec t0;
	struct px_dns_answer *a;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	a = lookup("hang1.example.net", 1, PX_DNS_TEMPFAIL);
	ms = ms_since(&t0);
	ck_assert_msg(ms >= TIMEOUT_MS - 20 && ms < TIMEOUT_MS + 300, "took %ld ms", ms);
	ck_assert_int_eq(a->rcode, 2);
	px_dns_answer_free(a);
	ck_assert_int_ge(fake_queries("hang1.example.net"), 1);
}
END_TEST

static void *hang_thread(void *arg)
{
	char name[64];
	struct px_dns_answer *a = NULL;

	snprintf(name, sizeof(name), "hang-%ld.example.net", (long)(intptr_t)arg);
	(void)px_dns_lookup(name, 16, &a);
	px_dns_answer_free(a);
	return NULL;
}

START_TEST(test_others_flow)
{
	pthread_t thr[8];
	struct timespec t0, start;
	char name[64];
	long worst = 0, ms;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (i = 0; i < 8; i++)
		ck_assert_int_eq(pthread_create(&thr[i], NULL, hang_thread, (void *)(intptr_t)i), 0);
	usleep(50000);
	/* while they wait: 20 other names, each answered at once */
	for (i = 0; i < 20 && ms_since(&start) < TIMEOUT_MS - 100; i++) {
		snprintf(name, sizeof(name), "ok%d.example.net", i);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		px_dns_answer_free(lookup(name, 1, PX_DNS_OK));
		ms = ms_since(&t0);
		worst = ms > worst ? ms : worst;
	}
	ck_assert_int_ge(i, 5);
	ck_assert_msg(worst < 100, "a lookup took %ld ms while others hung", worst);
	for (i = 0; i < 8; i++)
		pthread_join(thr[i], NULL);
	ms = ms_since(&start);
	ck_assert_msg(ms < TIMEOUT_MS + 400, "8 hanging lookups took %ld ms together", ms);
}
END_TEST

START_TEST(test_cache)
{
	px_dns_answer_free(lookup("cached.example.net", 1, PX_DNS_OK));
	ck_assert_int_eq(fake_queries("cached.example.net"), 1);
	px_dns_answer_free(lookup("cached.example.net", 1, PX_DNS_OK));
	px_dns_answer_free(lookup("CACHED.example.net.", 1, PX_DNS_OK));
	ck_assert_int_eq(fake_queries("cached.example.net"), 1);
	/* negative answers are cached too (no SOA here: briefly, but at once) */
	px_dns_answer_free(lookup("nxc.example.net", 1, PX_DNS_NXDOMAIN));
	px_dns_answer_free(lookup("nxc.example.net", 1, PX_DNS_NXDOMAIN));
	ck_assert_int_le(fake_queries("nxc.example.net"), 2);
}
END_TEST

START_TEST(test_special_test_zone)
{
	/* without "local-zone: test. nodefault" libunbound says NXDOMAIN itself */
	px_dns_answer_free(lookup("mx.zone.test", 1, PX_DNS_OK));
	ck_assert_int_eq(fake_queries("mx.zone.test"), 1);
	px_dns_answer_free(lookup("x.invalid", 1, PX_DNS_NXDOMAIN));
	ck_assert_int_eq(fake_queries("x.invalid"), 0);
}
END_TEST

/* async */
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls, drops;
	pthread_t thread;
	enum px_dns_status st;
	int inside;                 /* the call has not returned yet */
} as = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void as_cb(void *arg, struct px_dns_answer *a)
{
	pthread_mutex_lock(&as.mu);
	ck_assert_int_eq(as.inside, 0);
	as.calls++;
	as.thread = pthread_self();
	as.st = a ? a->status : PX_DNS_ERROR;
	pthread_cond_broadcast(&as.cv);
	pthread_mutex_unlock(&as.mu);
	px_dns_answer_free(a);
	if (arg != NULL)
		event_base_loopbreak(arg);
}

static void as_drop(void *arg)
{
	pthread_mutex_lock(&as.mu);
	as.drops++;
	pthread_mutex_unlock(&as.mu);
}

static void as_wait(int calls)
{
	struct timespec dl;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	pthread_mutex_lock(&as.mu);
	while (as.calls < calls)
		if (pthread_cond_timedwait(&as.cv, &as.mu, &dl) != 0)
			break;
	ck_assert_int_eq(as.calls, calls);
	pthread_mutex_unlock(&as.mu);
}

START_TEST(test_async)
{
	struct event_base *base = event_base_new();
	struct timeval limit = { 5, 0 };

	as.calls = as.drops = 0;
	/* on the base's loop, here */
	pthread_mutex_lock(&as.mu);
	as.inside = 1;
	ck_assert_int_eq(px_dns_lookup_async(base, "a.example", 1, as_cb, as_drop, base), 0);
	as.inside = 0;
	pthread_mutex_unlock(&as.mu);
	event_base_loopexit(base, &limit);
	event_base_dispatch(base);
	ck_assert_int_eq(as.calls, 1);
	ck_assert(pthread_equal(as.thread, pthread_self()));
	ck_assert_int_eq(as.st, PX_DNS_OK);

	/* no base: on the resolver's thread */
	ck_assert_int_eq(px_dns_lookup_async(NULL, "nx.example.net", 1, as_cb, as_drop, NULL), 0);
	as_wait(2);
	ck_assert(!pthread_equal(as.thread, pthread_self()));
	ck_assert_int_eq(as.st, PX_DNS_NXDOMAIN);

	/* a timeout, async */
	ck_assert_int_eq(px_dns_lookup_async(NULL, "hang2.example.net", 1, as_cb, as_drop, NULL),
			 0);
	as_wait(3);
	ck_assert_int_eq(as.st, PX_DNS_TEMPFAIL);

	/* posted to a loop that never runs again: stop drops it */
	ck_assert_int_eq(px_dns_lookup_async(base, "a.example", 1, as_cb, as_drop, base), 0);
	usleep(200000);
	px_resolver_stop();
	ck_assert_int_eq(as.calls, 3);
	ck_assert_int_eq(as.drops, 1);
	event_base_free(base);
}
END_TEST

START_TEST(test_lazy_and_reconfigure)
{
	struct px_resolver_conf c = { NULL, 1000, zones, data };
	struct px_dns_answer *a;

	px_resolver_stop();
	px_resolver_defaults(&c);
	a = lookup("a.example", 1, PX_DNS_OK);       /* started on first use */
	px_dns_answer_free(a);
	c.timeout_ms = 2000;
	px_resolver_reconfigure(&c);
	a = lookup("b.example", 15, PX_DNS_OK);
	px_dns_answer_free(a);
}
END_TEST

static Suite *resolver_suite(void)
{
	Suite *s = suite_create("resolver");
	TCase *tc = tcase_create("resolver");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_statuses);
	tcase_add_test(tc, test_bad_queries);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_others_flow);
	tcase_add_test(tc, test_cache);
	tcase_add_test(tc, test_special_test_zone);
	tcase_add_test(tc, test_async);
	tcase_add_test(tc, test_lazy_and_reconfigure);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(resolver_suite());
	int failed;

	evthread_use_pthreads();
	px_log_open("test-resolver", 1, PX_LOG_WARN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
