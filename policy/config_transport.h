/*
 * NAME
 *	config_transport - the transport's settings in a configuration generation
 * SYNOPSIS
 *	#include "policy/config.h"	(includes this header)
 * DESCRIPTION
 *	Listeners, TLS, PROXY protocol, XCLIENT/XFORWARD, AUTH and privilege
 *	settings: the structures proxy/ reads from cfg->transport, and the
 *	functions that build them from the merged libconfuse tree
 *	(config_transport.c; the options are in postern.conf(5)). They are
 *	kept apart from the rest of the configuration so that what only the
 *	transport reads lives with the transport's code (doc/layering.md).
 */
#ifndef PX_POLICY_CONFIG_TRANSPORT_H
#define PX_POLICY_CONFIG_TRANSPORT_H

#include <stddef.h>
#include <sys/socket.h>

#include "common/netaddr.h"

struct px_config;

enum px_tls_mode { PX_TLS_NONE, PX_TLS_STARTTLS, PX_TLS_IMPLICIT };
enum px_proxy_mode { PX_PROXY_NONE, PX_PROXY_V1, PX_PROXY_V2, PX_PROXY_ANY };
enum px_forward_mode { PX_FORWARD_AUTO, PX_FORWARD_XCLIENT, PX_FORWARD_XFORWARD,
		       PX_FORWARD_NONE };
enum px_backend_tls_mode { PX_BTLS_NONE, PX_BTLS_OPPORTUNISTIC, PX_BTLS_REQUIRED };

struct px_listener {
	char *name;                     /* the section title, or the address */
	char *address;                  /* "ADDR:PORT" */
	int tls;                        /* enum px_tls_mode */
	int require_tls;                /* 530 5.7.0 to MAIL before STARTTLS */
	int proxy;                      /* enum px_proxy_mode */
	struct px_cidr *proxy_sources;  /* who may send a PROXY header */
	size_t nproxy_sources;
	int auth;                       /* offer SMTP AUTH (over TLS only) */
	int pregreet;                   /* the pregreet check (proxy/smtp_pregreet.c) */
};

struct px_transport {
	struct px_listener *listeners;  /* `listen` entries first, then sections */
	size_t nlisteners;
	char **tls_certs;               /* PEM files (chain), paired with tls_keys */
	char **tls_keys;
	size_t ntls_certs;
	char *tls_ciphers;              /* TLS 1.2 cipher list */
	char *tls_ciphersuites;         /* TLS 1.3 suites */
	int tls_min_version;            /* TLS1_2_VERSION or TLS1_3_VERSION */
	int backend_tls;                /* enum px_backend_tls_mode */
	int backend_tls_verify;
	char *backend_tls_ca_file;      /* "" = system default */
	char *backend_tls_server_name;  /* "" = the backend host */
	int forward;                    /* enum px_forward_mode */
	struct px_cidr *xclient_sources;
	size_t nxclient_sources;
	struct px_cidr *normalize_bare_networks;
	size_t nnormalize_bare_networks;
	char *user;                     /* "" = keep the starting user */
	char *group;
	char *auth_backend;             /* "" = the backend; smtp:HOST:PORT */
	unsigned auth_failures_max;     /* per client address within the window */
	unsigned auth_failure_window;   /* ms */
	unsigned greeting_delay;        /* ms; 0 = greet at once */
	unsigned proxy_timeout;         /* ms to wait for a PROXY header */
	unsigned pregreet_delay;        /* ms between the 220- line and the rest */
	unsigned long long greet_ttl;   /* ms a client that waited is greeted at once */
	unsigned long long pregreet_fail_ttl;  /* ms an early talker is pregreet=fail */
};

/* px_config_transport_build / _free - the transport settings (config_transport.c) */
int px_config_transport_build(struct px_config *conf, void *cfg, char *err, size_t errlen);
void px_config_transport_free(struct px_config *conf);
/* px_config_listener - the listener bound to address, or NULL */
const struct px_listener *px_config_listener(const struct px_config *cfg, const char *address);
/* px_config_in_networks - sa lies in one of the n networks */
int px_config_in_networks(const struct px_cidr *nets, size_t n, const struct sockaddr *sa);

#endif
