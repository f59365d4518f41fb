/*
 * NAME
 *	greylist_admin - `postern greylist list | allow | purge` (greylist_admin.c)
 */
#ifndef PX_PROXY_GREYLIST_ADMIN_H
#define PX_PROXY_GREYLIST_ADMIN_H

/* px_greylist_admin - argv[0] is the subcommand; the process's store
 * (px_store_use, done by px_config_load); the exit status */
int px_greylist_admin(int argc, char **argv);

#endif
