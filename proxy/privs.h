/*
 * NAME
 *	privs - run as the configured user and group after binding
 * DESCRIPTION
 *	px_privs_drop() is called once the listening sockets are bound and the
 *	TLS keys are read, before any thread starts. When user is set and the
 *	process runs as root, it makes spool_dir private to that user (owner,
 *	mode 0700), then sets the supplementary groups to the one group,
 *	setgid, setuid, and checks that root cannot be regained. An unknown
 *	user or group, or a failing call, is an error: posternd does not
 *	serve as root by accident.
 */
#ifndef PX_PROXY_PRIVS_H
#define PX_PROXY_PRIVS_H

#include <stddef.h>

int px_privs_drop(const char *user, const char *group, const char *spool_dir, char *err,
		  size_t errlen);

#endif
