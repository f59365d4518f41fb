/*
 * NAME
 *	auth_throttle - failed AUTH attempts per client address
 * DESCRIPTION
 *	See auth_throttle.h.
 */
#include "autoconfig.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "auth_throttle.h"
#include "common/netaddr.h"

#define SLOTS 4096

struct slot {
	unsigned char key[16];
	unsigned failures;
	uint64_t since;            /* ms, monotonic: the window's start */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot slots[SLOTS];

/* now_ms - monotonic milliseconds */
static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* slot_of - the slot for key (lock held); NULL if another address holds it */
static struct slot *slot_of(const unsigned char key[16], int claim)
{
	struct slot *sl = &slots[px_key_hash(key) % SLOTS];

	if (memcmp(sl->key, key, 16) == 0)
		return sl;
	if (!claim)
		return NULL;
	memcpy(sl->key, key, 16);
	sl->failures = 0;
	sl->since = 0;
	return sl;
}

/* px_auth_throttled - too many failures within the window */
int px_auth_throttled(const struct sockaddr *sa, unsigned max, unsigned window_ms)
{
	unsigned char key[16];
	struct slot *sl;
	int hit;

	px_sockaddr_key(sa, key);
	pthread_mutex_lock(&lock);
	sl = slot_of(key, 0);
	hit = sl != NULL && sl->failures >= max && now_ms() - sl->since < window_ms;
	pthread_mutex_unlock(&lock);
	return hit;
}

/* px_auth_failed - count one failure */
void px_auth_failed(const struct sockaddr *sa, unsigned window_ms)
{
	unsigned char key[16];
	struct slot *sl;
	uint64_t now = now_ms();

	px_sockaddr_key(sa, key);
	pthread_mutex_lock(&lock);
	sl = slot_of(key, 1);
	if (sl->failures == 0 || now - sl->since >= window_ms) {
		sl->failures = 0;
		sl->since = now;
	}
	sl->failures++;
	pthread_mutex_unlock(&lock);
}

/* px_auth_succeeded - forget the address's failures */
void px_auth_succeeded(const struct sockaddr *sa)
{
	unsigned char key[16];
	struct slot *sl;

	px_sockaddr_key(sa, key);
	pthread_mutex_lock(&lock);
	if ((sl = slot_of(key, 0)) != NULL)
		sl->failures = 0;
	pthread_mutex_unlock(&lock);
}
