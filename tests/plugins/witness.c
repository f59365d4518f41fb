/* witness - a test plugin with a thread of its own, started in load().
 *
 * The thread beats: every 50 ms it counts one and, when the option
 * `heartbeat` names a file, writes "beats=N pid=P\n" to it (through a
 * rename, so a reader never sees half a line). The connect hook logs what
 * it sees ("connect client.addr=A client.name=N auth.login=L"), then asks
 * the thread for an answer and waits for it (a condition variable, at most
 * 2 s): answered, the verdict is next; a thread that is gone (lost in a
 * fork after load(), say) makes it a tempfail, "421 witness thread gone".
 * unload() stops and joins the thread. */
#include <postern/plugin.h>

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct witness_conf {
	const char *heartbeat;      /* option: file the thread writes */
};

static const struct px_option witness_options[] = {
	{ "heartbeat", PX_OPT_STRING, NULL, 0, 0, offsetof(struct witness_conf, heartbeat),
	  "file the load() thread rewrites every 50 ms (beats=N pid=P)" },
	{ 0 }
};

static const struct px_host *host;
static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;      /* CLOCK_MONOTONIC */
static unsigned long beats, asked, answered;
static int stop, started;
static char path[4096];          /* the heartbeat file; "" = none */

/* deadline - now + ms on CLOCK_MONOTONIC */
static struct timespec deadline(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* write_beat - "beats=N pid=P" into path, atomically */
static void write_beat(const char *file, unsigned long n)
{
	char tmp[4200];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	if ((f = fopen(tmp, "w")) == NULL)
		return;
	fprintf(f, "beats=%lu pid=%ld\n", n, (long)getpid());
	if (fclose(f) == 0)
		rename(tmp, file);
}

/* beat_main - count, answer what the hook asked, write the file */
static void *beat_main(void *arg)
{
	char file[sizeof(path)];
	struct timespec next;
	unsigned long n;

	(void)arg;
	pthread_mutex_lock(&lock);
	while (!stop) {
		next = deadline(50);
		while (!stop && asked == answered &&
		       pthread_cond_timedwait(&cond, &lock, &next) != ETIMEDOUT)
			;
		if (asked != answered) {
			answered = asked;
			pthread_cond_broadcast(&cond);
		}
		n = ++beats;
		memcpy(file, path, sizeof(file));
		pthread_mutex_unlock(&lock);
		if (file[0])
			write_beat(file, n);
		pthread_mutex_lock(&lock);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

static int witness_load(const struct px_host *h, char *err, size_t errlen)
{
	pthread_condattr_t ca;
	int rc;

	host = h;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((rc = pthread_create(&thread, NULL, beat_main, NULL)) != 0) {
		snprintf(err, errlen, "pthread_create: %s", strerror(rc));
		return -1;
	}
	started = 1;
	return 0;
}

static int witness_configure(void *conf, char *err, size_t errlen)
{
	const struct witness_conf *c = conf;

	(void)err;
	(void)errlen;
	pthread_mutex_lock(&lock);
	snprintf(path, sizeof(path), "%s", c->heartbeat ? c->heartbeat : "");
	pthread_mutex_unlock(&lock);
	return 0;
}

static void witness_unload(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&lock);
	stop = 1;
	pthread_cond_broadcast(&cond);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	started = 0;
}

/* fact - a session fact, or "-" */
static const char *fact(struct px_txn *txn, const char *key)
{
	const char *v = host->get(txn, key);

	return v != NULL && v[0] ? v : "-";
}

static enum px_verdict witness_connect(const void *conf, struct px_txn *txn)
{
	struct timespec until = deadline(2000);
	unsigned long mine;
	int ok;

	(void)conf;
	host->log(txn, PX_PRIO_INFO, "connect client.addr=%s client.name=%s auth.login=%s",
		  fact(txn, "client.addr"), fact(txn, "client.name"), fact(txn, "auth.login"));
	pthread_mutex_lock(&lock);
	mine = ++asked;
	pthread_cond_broadcast(&cond);
	while (answered < mine && pthread_cond_timedwait(&cond, &lock, &until) != ETIMEDOUT)
		;
	ok = answered >= mine;
	pthread_mutex_unlock(&lock);
	host->log(txn, PX_PRIO_INFO, "thread answered=%s", ok ? "yes" : "no");
	if (ok)
		return PX_NEXT;
	host->set_reply(txn, 421, "4.3.0", "witness thread gone");
	return PX_TEMPFAIL;
}

PX_PLUGIN_EXPORT = {
	.abi_major = PX_ABI_MAJOR,
	.abi_minor = PX_ABI_MINOR,
	.name = "witness",
	.version = "1",
	.description = "test: a thread started in load() beats and answers the connect hook",
	.options = witness_options,
	.conf_size = sizeof(struct witness_conf),
	.load = witness_load,
	.configure = witness_configure,
	.unload = witness_unload,
	.on_connect = witness_connect,
};
