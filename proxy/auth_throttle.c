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

/* key_of - 16 bytes for the address (IPv4 as mapped IPv6) */
static void key_of(const struct sockaddr *sa, unsigned char key[16])
{
	memset(key, 0, 16);
	if (sa->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	}
}

/* slot_of - the slot for key (lock held); NULL if another address holds it */
static struct slot *slot_of(const unsigned char key[16], int claim)
{
	unsigned h = 2166136261u;
	struct slot *sl;
	int i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	sl = &slots[h % SLOTS];
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

	key_of(sa, key);
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

	key_of(sa, key);
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

	key_of(sa, key);
	pthread_mutex_lock(&lock);
	if ((sl = slot_of(key, 0)) != NULL)
		sl->failures = 0;
	pthread_mutex_unlock(&lock);
}
