/* config.h - the collector's settings: built-in defaults, then the INI file
 * (/etc/modelprov/collector.conf, section [collector]), then the command
 * line.  Config keys are the long option names without the dashes in front
 * ("listen = 127.0.0.1:7443", "insecure-loopback = yes"), so the packaging,
 * the docs and scripts share one vocabulary. */
#pragma once

#include <stdbool.h>

#include "util/error.h"

#define COLLECTOR_CONFIG_DEFAULT "/etc/modelprov/collector.conf"
#define COLLECTOR_LISTEN_DEFAULT "127.0.0.1:7443"
#define COLLECTOR_STORE_DEFAULT "sqlite:/var/lib/modelprov-collector/collector.db"

typedef struct collector_config {
        char *listen;
        char *store;
        char *enroll_secret_file;
        char *query_token_file;
        char *admin_token_file;         /* NULL: catalog push disabled */
        char *tls_cert;
        char *tls_key;
        char *tls_client_ca;            /* NULL: no client certificates asked for */
        bool insecure_loopback;
        unsigned threads;               /* 0: one per CPU, at least 4 */
        unsigned stale_after_s;         /* a host not heard from for this long is stale */
        unsigned max_message_mib;       /* gRPC receive limit */
        int log_level;
} collector_config;

/* What collector_config_load() decided besides the settings. */
typedef enum collector_action {
        COLLECTOR_RUN,
        COLLECTOR_HELP,                 /* --help: usage printed, exit 0 */
        COLLECTOR_VERSION,              /* --version: printed, exit 0 */
} collector_action;

/* Fills c from defaults, the config file (--config FILE, else the default
 * path when it exists) and argv, then checks that the result can run:
 * secrets named, TLS complete or plaintext only on loopback.  Errors are
 * sentences for the operator (-EINVAL usage/setting, -ENOENT missing
 * explicit config file, ...). */
int collector_config_load(int argc, char **argv, collector_config *c, collector_action *action,
                          mp_error *err);
void collector_config_done(collector_config *c);

void collector_config_usage(void);
