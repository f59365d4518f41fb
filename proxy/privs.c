/*
 * NAME
 *	privs - run as the configured user and group after binding
 * DESCRIPTION
 *	See privs.h. Not root and a user set: the setting is only checked
 *	against the current user (a mismatch is logged, not fatal, so that
 *	tests and unprivileged runs work). Root with no user set: the
 *	default user (PX_PRIVS_DEFAULT_USER if it exists, else "nobody"), as
 *	Postfix refuses to serve as root; only user = "root" keeps root, with
 *	a warning.
 */
#include "autoconfig.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "privs.h"

/* lookup - uid and gid for user (and group, if set) */
static int lookup(const char *user, const char *group, uid_t *uid, gid_t *gid, char *err,
		  size_t errlen)
{
	struct passwd *pw = getpwnam(user);
	struct group *gr;

	if (pw == NULL) {
		snprintf(err, errlen, "user %s: no such user", user);
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (group[0] == 0)
		return 0;
	if ((gr = getgrnam(group)) == NULL) {
		snprintf(err, errlen, "group %s: no such group", group);
		return -1;
	}
	*gid = gr->gr_gid;
	return 0;
}

/* spool_private - spool_dir owned by the user, mode 0700 */
static int spool_private(const char *dir, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	if (chown(dir, uid, gid) < 0 || chmod(dir, 0700) < 0) {
		snprintf(err, errlen, "spool_dir %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

/* become - groups, gid, uid, in that order; then make sure it stuck */
static int become(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		snprintf(err, errlen, "cannot change to uid %u gid %u: %s", (unsigned)uid,
			 (unsigned)gid, strerror(errno));
		return -1;
	}
	if (uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
		snprintf(err, errlen, "root privileges could be regained after setuid");
		return -1;
	}
	return 0;
}

/* px_privs_default_user - the user root serves as when none is set */
const char *px_privs_default_user(void)
{
	return getpwnam(PX_PRIVS_DEFAULT_USER) != NULL ? PX_PRIVS_DEFAULT_USER
						      : PX_PRIVS_FALLBACK_USER;
}

/* px_privs_drop - see privs.h */
int px_privs_drop(const char *user, const char *group, const char *spool_dir, char *err,
		  size_t errlen)
{
	const char *dflt = "no";
	uid_t uid;
	gid_t gid;

	if (user[0] == 0 && geteuid() != 0)
		return 0;
	if (user[0] == 0) {
		user = px_privs_default_user();
		dflt = "yes";
	}
	if (lookup(user, group, &uid, &gid, err, errlen) < 0)
		return -1;
	if (geteuid() != 0) {
		if (geteuid() != uid)
			px_log(PX_LOG_WARN, NULL, "privileges user=%s status=ignored reason=\"not "
			       "started as root\"", user);
		return 0;
	}
	if (uid == 0) {
		px_log(PX_LOG_WARN, NULL, "privileges user=%s uid=0 warning=\"serving as root, as "
		       "the configuration says\"", user);
		return 0;
	}
	if (spool_private(spool_dir, uid, gid, err, errlen) < 0 || become(uid, gid, err, errlen) < 0)
		return -1;
	px_log(PX_LOG_INFO, NULL, "privileges user=%s uid=%u gid=%u default=%s", user,
	       (unsigned)uid, (unsigned)gid, dflt);
	return 0;
}
