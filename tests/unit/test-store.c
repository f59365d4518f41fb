/*
 * test-store - the key-value store (filters/store*.c) on both engines:
 * get/set/incr/del, expiry, value sizes, scan by prefix, increments from
 * many threads at once (started together by a condition variable, no
 * sleeps), two handles on one LMDB directory (as posternd and `postern
 * greylist` have), spec checks, and Redis going away and coming back.
 * The Redis cases run against a redis-server this test starts on a free
 * port (Debian: redis-server); without one they fail, as every peer the
 * suite needs must be there.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filters/store.h"

static char tmpdir[256];
static char spec[512];

/* ------------------------------------------------------------ helpers */

static struct px_store *open_spec(const char *s)
{
	char err[256];
	struct px_store *st = px_store_open(s, 1000, err, sizeof(err));

	ck_assert_msg(st != NULL, "open %s: %s", s, err);
	return st;
}

static void lmdb_spec(const char *name)
{
	snprintf(spec, sizeof(spec), "lmdb:%s/%s", tmpdir, name);
}

/* ------------------------------------------------------- redis server */

static pid_t redis_pid = -1;
static int redis_port;

static int port_free(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	ck_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int port_accepts(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* redis_start - redis-server on redis_port, waited for (bounded: 10 s) */
static void redis_start(void)
{
	char port[16];
	struct timespec ts = { 0, 20 * 1000000L };
	int i;

	snprintf(port, sizeof(port), "%d", redis_port);
	redis_pid = fork();
	ck_assert(redis_pid >= 0);
	if (redis_pid == 0) {
		freopen("/dev/null", "w", stdout);
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", "--dir", tmpdir, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 500 && !port_accepts(redis_port); i++)
		nanosleep(&ts, NULL);       /* polling a child's start, not a synchronisation */
	ck_assert_msg(port_accepts(redis_port), "redis-server did not start (Debian: redis-server)");
}

static void redis_stop(void)
{
	if (redis_pid > 0) {
		kill(redis_pid, SIGKILL);
		waitpid(redis_pid, NULL, 0);
		redis_pid = -1;
	}
}

static void redis_spec(void)
{
	snprintf(spec, sizeof(spec), "redis://127.0.0.1:%d/3", redis_port);
}

/* ------------------------------------------------- the engine contract */

static void contract(struct px_store *s)
{
	char buf[8192], big[PX_STORE_VALUE_MAX + 1];
	size_t len;
	long long v;

	px_store_del(s, "k", 1);
	ck_assert_int_eq(px_store_get(s, "k", 1, buf, sizeof(buf), &len), PX_STORE_NOTFOUND);
	ck_assert_int_eq(px_store_set(s, "k", 1, "hello", 5, 0), PX_STORE_OK);
	ck_assert_int_eq(px_store_get(s, "k", 1, buf, sizeof(buf), &len), PX_STORE_OK);
	ck_assert_uint_eq(len, 5);
	ck_assert(memcmp(buf, "hello", 5) == 0);
	/* a short buffer: cut, with the whole length */
	ck_assert_int_eq(px_store_get(s, "k", 1, buf, 2, &len), PX_STORE_OK);
	ck_assert_uint_eq(len, 5);
	/* binary values, the largest allowed, and one too large */
	memset(big, 0, sizeof(big));
	big[7] = 'x';
	ck_assert_int_eq(px_store_set(s, "b", 1, big, PX_STORE_VALUE_MAX, 0), PX_STORE_OK);
	ck_assert_int_eq(px_store_get(s, "b", 1, buf, sizeof(buf), &len), PX_STORE_OK);
	ck_assert_uint_eq(len, PX_STORE_VALUE_MAX);
	ck_assert(buf[7] == 'x' && buf[0] == 0);
	ck_assert_int_eq(px_store_set(s, "b", 1, big, PX_STORE_VALUE_MAX + 1, 0), PX_STORE_ERROR);
	/* incr: missing = 0, then adds; the text reads back as the number */
	px_store_del(s, "n", 1);
	ck_assert_int_eq(px_store_incr(s, "n", 1, 5, 0, &v), PX_STORE_OK);
	ck_assert_int_eq(v, 5);
	ck_assert_int_eq(px_store_incr(s, "n", 1, -2, 0, &v), PX_STORE_OK);
	ck_assert_int_eq(v, 3);
	ck_assert_int_eq(px_store_get(s, "n", 1, buf, sizeof(buf), &len), PX_STORE_OK);
	ck_assert(len == 1 && buf[0] == '3');
	/* incr on a value that is no number fails */
	ck_assert_int_eq(px_store_incr(s, "k", 1, 1, 0, &v), PX_STORE_ERROR);
	/* del, and del of a missing key */
	ck_assert_int_eq(px_store_del(s, "k", 1), PX_STORE_OK);
	ck_assert_int_eq(px_store_del(s, "k", 1), PX_STORE_OK);
	ck_assert_int_eq(px_store_get(s, "k", 1, buf, sizeof(buf), &len), PX_STORE_NOTFOUND);
	/* keys: empty and too long are refused */
	ck_assert_int_eq(px_store_set(s, "", 0, "x", 1, 0), PX_STORE_ERROR);
	memset(big, 'k', sizeof(big));
	ck_assert_int_eq(px_store_set(s, big, PX_STORE_KEY_MAX + 1, "x", 1, 0), PX_STORE_ERROR);
	ck_assert_int_eq(px_store_set(s, big, PX_STORE_KEY_MAX, "x", 1, 0), PX_STORE_OK);
}

/* sleep_ms - wait for an expiry to pass (the clock is what is tested) */
static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void expiry(struct px_store *s)
{
	char buf[16];
	size_t len;
	long long v;

	ck_assert_int_eq(px_store_set(s, "e", 1, "v", 1, 150), PX_STORE_OK);
	px_store_del(s, "w", 1);
	ck_assert_int_eq(px_store_incr(s, "w", 1, 1, 150, &v), PX_STORE_OK);
	ck_assert_int_eq(px_store_incr(s, "w", 1, 1, 100000, &v), PX_STORE_OK);  /* keeps its end */
	ck_assert_int_eq(v, 2);
	ck_assert_int_eq(px_store_get(s, "e", 1, buf, sizeof(buf), &len), PX_STORE_OK);
	sleep_ms(300);
	ck_assert_int_eq(px_store_get(s, "e", 1, buf, sizeof(buf), &len), PX_STORE_NOTFOUND);
	ck_assert_int_eq(px_store_get(s, "w", 1, buf, sizeof(buf), &len), PX_STORE_NOTFOUND);
	ck_assert_int_eq(px_store_incr(s, "w", 1, 1, 0, &v), PX_STORE_OK);     /* a new window */
	ck_assert_int_eq(v, 1);
}

struct seen {
	int n;
	int bad;
};

static int count_cb(void *arg, const char *key, size_t klen, const void *val, size_t vlen,
		    unsigned long long exp)
{
	struct seen *s = arg;

	(void)val;
	(void)vlen;
	(void)exp;
	if (klen < 3 || memcmp(key, "sc:", 3) != 0)
		s->bad++;
	s->n++;
	return 0;
}

static void scan(struct px_store *s)
{
	struct seen seen = { 0, 0 };
	char k[16];
	int i;

	for (i = 0; i < 25; i++) {
		snprintf(k, sizeof(k), "sc:%d", i);
		ck_assert_int_eq(px_store_set(s, k, strlen(k), "1", 1, i == 0 ? 100 : 0),
				 PX_STORE_OK);
	}
	ck_assert_int_eq(px_store_set(s, "sd:x", 4, "1", 1, 0), PX_STORE_OK);
	sleep_ms(200);                       /* sc:0 expires */
	ck_assert_int_eq(px_store_scan(s, "sc:", count_cb, &seen), PX_STORE_OK);
	ck_assert_int_eq(seen.bad, 0);
	ck_assert_int_eq(seen.n, 24);
}

/* ----------------------------------------------- increments from threads */

#define THREADS 8
#define ROUNDS 200

struct race {
	struct px_store *s;
	pthread_mutex_t lock;
	pthread_cond_t go;
	int ready, started, failures;
};

static void *racer(void *arg)
{
	struct race *r = arg;
	long long v;
	int i, fails = 0;

	pthread_mutex_lock(&r->lock);
	r->ready++;
	pthread_cond_broadcast(&r->go);
	while (!r->started)
		pthread_cond_wait(&r->go, &r->lock);
	pthread_mutex_unlock(&r->lock);
	for (i = 0; i < ROUNDS; i++)
		if (px_store_incr(r->s, "race", 4, 1, 60000, &v) != PX_STORE_OK)
			fails++;
	pthread_mutex_lock(&r->lock);
	r->failures += fails;
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void race(struct px_store *s)
{
	struct race r = { .s = s };
	pthread_t t[THREADS];
	char buf[32];
	size_t len;
	int i;

	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.go, NULL);
	px_store_del(s, "race", 4);
	for (i = 0; i < THREADS; i++)
		ck_assert(pthread_create(&t[i], NULL, racer, &r) == 0);
	pthread_mutex_lock(&r.lock);
	while (r.ready < THREADS)             /* every thread waits at the start line */
		pthread_cond_wait(&r.go, &r.lock);
	r.started = 1;
	pthread_cond_broadcast(&r.go);
	pthread_mutex_unlock(&r.lock);
	for (i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	ck_assert_int_eq(r.failures, 0);
	ck_assert_int_eq(px_store_get(s, "race", 4, buf, sizeof(buf) - 1, &len), PX_STORE_OK);
	buf[len] = '\0';
	ck_assert_int_eq(atoi(buf), THREADS * ROUNDS);
	pthread_cond_destroy(&r.go);
	pthread_mutex_destroy(&r.lock);
}

/* ------------------------------------------------------------- LMDB */

START_TEST(lmdb_contract)
{
	struct px_store *s;

	lmdb_spec("contract");
	s = open_spec(spec);
	ck_assert_str_eq(px_store_engine(s), "lmdb");
	contract(s);
	expiry(s);
	scan(s);
	px_store_close(s);
}
END_TEST

START_TEST(lmdb_threads)
{
	struct px_store *s;

	lmdb_spec("threads");
	s = open_spec(spec);
	race(s);
	px_store_close(s);
}
END_TEST

START_TEST(lmdb_two_processes)
{
	struct px_store *a, *b;
	char buf[16];
	size_t len;
	long long v;
	pid_t pid;
	int status;

	lmdb_spec("shared");
	a = open_spec(spec);
	ck_assert_int_eq(px_store_set(a, "x", 1, "1", 1, 0), PX_STORE_OK);
	pid = fork();                        /* another process, its own environment */
	ck_assert(pid >= 0);
	if (pid == 0) {
		b = open_spec(spec);
		_exit(px_store_incr(b, "x", 1, 41, 0, &v) == PX_STORE_OK && v == 42 ? 0 : 1);
	}
	ck_assert(waitpid(pid, &status, 0) == pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(px_store_get(a, "x", 1, buf, sizeof(buf), &len), PX_STORE_OK);
	ck_assert(len == 2 && memcmp(buf, "42", 2) == 0);
	px_store_close(a);
	/* and reopened (a restart): still there */
	a = open_spec(spec);
	ck_assert_int_eq(px_store_get(a, "x", 1, buf, sizeof(buf), &len), PX_STORE_OK);
	px_store_close(a);
}
END_TEST

START_TEST(lmdb_unusable_path)
{
	struct px_store *s = open_spec("lmdb:/proc/no/such/dir");
	char buf[4];
	size_t len;

	ck_assert_int_eq(px_store_get(s, "x", 1, buf, sizeof(buf), &len), PX_STORE_ERROR);
	ck_assert_int_eq(px_store_set(s, "x", 1, "1", 1, 0), PX_STORE_ERROR);
	px_store_close(s);
}
END_TEST

START_TEST(specs)
{
	char err[256];

	ck_assert_int_eq(px_store_check("lmdb:/var/x", err, sizeof(err)), 0);
	ck_assert_int_eq(px_store_check("lmdb:relative", err, sizeof(err)), -1);
	ck_assert_int_eq(px_store_check("redis://h", err, sizeof(err)), 0);
	ck_assert_int_eq(px_store_check("redis://:secret@10.0.0.1:6380/2", err, sizeof(err)), 0);
	ck_assert_int_eq(px_store_check("redis://user:secret@[::1]:6380", err, sizeof(err)), 0);
	ck_assert_int_eq(px_store_check("redis://:pw@", err, sizeof(err)), -1);
	ck_assert_int_eq(px_store_check("redis://h:99999", err, sizeof(err)), -1);
	ck_assert_int_eq(px_store_check("redis://h/x", err, sizeof(err)), -1);
	ck_assert_int_eq(px_store_check("memcache://h", err, sizeof(err)), -1);
	ck_assert(strstr(err, "lmdb:") != NULL);
}
END_TEST

START_TEST(process_store)
{
	char err[256];
	struct px_store *s;

	ck_assert_ptr_null(px_store_acquire());
	lmdb_spec("current");
	ck_assert_int_eq(px_store_use(spec, 500, err, sizeof(err)), 0);
	s = px_store_acquire();
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(px_store_set(s, "a", 1, "1", 1, 0), PX_STORE_OK);
	/* a reload to another spec: the held store stays usable until released */
	lmdb_spec("current2");
	ck_assert_int_eq(px_store_use(spec, 500, err, sizeof(err)), 0);
	ck_assert_int_eq(px_store_set(s, "b", 1, "1", 1, 0), PX_STORE_OK);
	px_store_release(s);
	s = px_store_acquire();
	ck_assert_str_eq(px_store_spec(s), spec);
	px_store_release(s);
	ck_assert_int_eq(px_store_use("bogus", 500, err, sizeof(err)), -1);
	px_store_shutdown();
	ck_assert_ptr_null(px_store_acquire());
}
END_TEST

/* ------------------------------------------------------------- Redis */

static void redis_setup(void)
{
	redis_port = port_free();
	redis_start();
}

START_TEST(redis_contract)
{
	struct px_store *s;

	redis_spec();
	s = open_spec(spec);
	ck_assert_str_eq(px_store_engine(s), "redis");
	contract(s);
	expiry(s);
	scan(s);
	px_store_close(s);
}
END_TEST

START_TEST(redis_threads)
{
	struct px_store *s;

	redis_spec();
	s = open_spec(spec);
	race(s);
	px_store_close(s);
}
END_TEST

START_TEST(redis_down_and_back)
{
	struct px_store *s;
	char buf[16];
	size_t len;
	long long v;
	int i, ok = 0;

	redis_spec();
	s = open_spec(spec);
	ck_assert_int_eq(px_store_set(s, "a", 1, "1", 1, 0), PX_STORE_OK);
	redis_stop();
	ck_assert_int_eq(px_store_get(s, "a", 1, buf, sizeof(buf), &len), PX_STORE_ERROR);
	ck_assert_int_eq(px_store_incr(s, "a", 1, 1, 0, &v), PX_STORE_ERROR);
	redis_start();
	/* the first calls may fall in the second after the failed connect */
	for (i = 0; i < 40 && !ok; i++) {
		ok = px_store_incr(s, "n", 1, 1, 0, &v) == PX_STORE_OK;
		if (!ok)
			sleep_ms(100);
	}
	ck_assert(ok);
	ck_assert_int_eq(v, 1);                      /* a new, empty server */
	px_store_close(s);
}
END_TEST

START_TEST(redis_wrong_password)
{
	struct px_store *s;
	char buf[4];
	size_t len;

	snprintf(spec, sizeof(spec), "redis://:nope@127.0.0.1:%d", redis_port);
	s = open_spec(spec);
	ck_assert_int_eq(px_store_get(s, "a", 1, buf, sizeof(buf), &len), PX_STORE_ERROR);
	px_store_close(s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store");
	TCase *l = tcase_create("lmdb"), *r = tcase_create("redis");
	SRunner *sr;
	int failed;

	snprintf(tmpdir, sizeof(tmpdir), "%s/test-store.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(tmpdir) == NULL)
		return 1;
	tcase_add_test(l, specs);
	tcase_add_test(l, lmdb_contract);
	tcase_add_test(l, lmdb_threads);
	tcase_add_test(l, lmdb_two_processes);
	tcase_add_test(l, lmdb_unusable_path);
	tcase_add_test(l, process_store);
	tcase_set_timeout(l, 60);
	tcase_add_unchecked_fixture(r, redis_setup, redis_stop);
	tcase_add_test(r, redis_contract);
	tcase_add_test(r, redis_threads);
	tcase_add_test(r, redis_down_and_back);
	tcase_add_test(r, redis_wrong_password);
	tcase_set_timeout(r, 60);
	suite_add_tcase(s, l);
	suite_add_tcase(s, r);
	sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	redis_stop();
	if (failed == 0) {
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			return 1;
	}
	return failed ? 1 : 0;
}
