/*
 * NAME
 *	privs - run as the configured user and group after binding
 * DESCRIPTION
 *	px_privs_drop() is called once the listening sockets are bound, the
 *	TLS keys are read and the plugins are loaded. When the process runs
 *	as root it serves as user: an empty user means the default,
 *	px_privs_default_user() ("postern" if that account exists, else
 *	"nobody"); only a user whose uid is 0 (user = "root") keeps root, and
 *	that is logged as a warning. It makes spool_dir private to the user
 *	(owner, mode 0700), then sets the supplementary groups to the one
 *	group (the user's own group when group is empty), setgid, setuid, and
 *	checks that root cannot be regained. setuid applies to every thread
 *	of the process (glibc), plugin threads included. An unknown user or
 *	group, or a failing call, is an error: posternd does not serve as
 *	root by accident.
 */
#ifndef PX_PROXY_PRIVS_H
#define PX_PROXY_PRIVS_H

#include <stddef.h>

#define PX_PRIVS_DEFAULT_USER "postern"
#define PX_PRIVS_FALLBACK_USER "nobody"

const char *px_privs_default_user(void);
int px_privs_drop(const char *user, const char *group, const char *spool_dir, char *err,
		  size_t errlen);

#endif
