/* config.c - defaults, INI file and command line for modelprov-collector
 * (see config.h). */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector/config.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "util/address.h"
#include "util/macro.h"

/* One table drives the command line and the INI keys (daemon/options.h). */
#define FIELD(f) offsetof(collector_config, f)
static const mp_option options[] = {
        MP_OPTION("listen", MP_OPTION_STRING, FIELD(listen)),
        MP_OPTION("store", MP_OPTION_STRING, FIELD(store)),
        MP_OPTION_SECRET_FILE("enroll-secret-file", FIELD(enroll_secret_file), "enroll-secret"),
        MP_OPTION_SECRET_FILE("query-token-file", FIELD(query_token_file), "query-token"),
        MP_OPTION_SECRET_FILE("admin-token-file", FIELD(admin_token_file), "admin-token"),
        MP_OPTION("tls-cert", MP_OPTION_STRING, FIELD(tls_cert)),
        MP_OPTION_SECRET_FILE("tls-key", FIELD(tls_key), "tls-key"),
        MP_OPTION("tls-client-ca", MP_OPTION_STRING, FIELD(tls_client_ca)),
        MP_OPTION("insecure-loopback", MP_OPTION_FLAG, FIELD(insecure_loopback)),
        MP_OPTION_RANGE("threads", FIELD(threads), 1, 256, "expected a thread count"),
        MP_OPTION_RANGE("stale-after", FIELD(stale_after_s), 1, 365u * 24 * 3600, "expected seconds"),
        MP_OPTION_RANGE("max-message-mib", FIELD(max_message_mib), 1, 1024, "expected MiB"),
        MP_OPTION("log-level", MP_OPTION_LOG_LEVEL, FIELD(log_level)),
        MP_OPTION_END,
};
#undef FIELD

void collector_config_usage(void) {
        printf("usage: modelprov-collector [options]\n"
               "\n"
               "Serves the modelprov Ingest and Query gRPC services.\n"
               "\n"
               "  --config FILE              INI file, section [collector] (default " COLLECTOR_CONFIG_DEFAULT
               " if present)\n"
               "  --listen ADDR              HOST:PORT to serve on (default " COLLECTOR_LISTEN_DEFAULT
               "; port 0 = any free port)\n"
               "  --store URL                sqlite:PATH (default " COLLECTOR_STORE_DEFAULT ")\n"
               "                             or postgresql://USER@HOST/DB (libpq URI; shared by\n"
               "                             several collector instances)\n"
               "  --enroll-secret-file F     secret agents enroll with (required)\n"
               "  --query-token-file F       read-only token for the Query service (required)\n"
               "  --admin-token-file F       token for catalog push (default: push disabled)\n"
               "  --tls-cert F --tls-key F   server certificate chain and key (PEM)\n"
               "  --tls-client-ca F          also require client certificates signed by this CA\n"
               "  --insecure-loopback        serve plaintext; only on a loopback address\n"
               "  --threads N                worker threads (default: CPUs, at least 4)\n"
               "  --stale-after SECONDS      hosts silent this long are reported stale (default 900)\n"
               "  --max-message-mib N        largest request accepted (default 64)\n"
               "  --log-level LEVEL          error, warning, info (default) or debug\n"
               "  --help, --version\n"
               "\n"
               "Config keys are the option names without dashes, e.g. \"listen = 0.0.0.0:7443\".\n"
               "Secret and token files must be mode 0600.  Under systemd, the credentials\n"
               "enroll-secret, query-token, admin-token and tls-key (LoadCredential=) stand in\n"
               "for the options of the same meaning that are not set.\n");
}

static int validate(const collector_config *c, mp_error *err) {
        if (!c->enroll_secret_file)
                return mp_error_set(err, -EINVAL, NULL, -1, "no enroll secret: set --enroll-secret-file");
        if (!c->query_token_file)
                return mp_error_set(err, -EINVAL, NULL, -1, "no query token: set --query-token-file");
        if (!!c->tls_cert != !!c->tls_key)
                return mp_error_set(err, -EINVAL, NULL, -1, "--tls-cert and --tls-key go together");
        if (c->tls_cert && c->insecure_loopback)
                return mp_error_set(err, -EINVAL, NULL, -1, "choose --tls-cert/--tls-key or --insecure-loopback");
        if (!c->tls_cert && !c->insecure_loopback)
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "no TLS certificate: set --tls-cert and --tls-key "
                                    "(or --insecure-loopback for a loopback address)");
        if (c->tls_client_ca && !c->tls_cert)
                return mp_error_set(err, -EINVAL, NULL, -1, "--tls-client-ca needs --tls-cert and --tls-key");
        if (c->insecure_loopback && !mp_address_is_loopback(c->listen))
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "--insecure-loopback refused: %s is not a loopback address", c->listen);
        return 0;
}

int collector_config_load(int argc, char **argv, collector_config *c, collector_action *action, mp_error *err) {
        assert(c);
        assert(action);

        *c = (collector_config) {.stale_after_s = 900, .max_message_mib = 64, .log_level = LOG_LEVEL_INFO};
        c->listen = strdup(COLLECTOR_LISTEN_DEFAULT);
        c->store = strdup(COLLECTOR_STORE_DEFAULT);
        if (!c->listen || !c->store)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        mp_options_action a;
        int r = mp_options_load(options, "collector", COLLECTOR_CONFIG_DEFAULT, argc, argv, c, &a, err);
        if (r < 0)
                return r;
        *action = a == MP_OPTIONS_HELP ? COLLECTOR_HELP : a == MP_OPTIONS_VERSION ? COLLECTOR_VERSION : COLLECTOR_RUN;
        if (*action != COLLECTOR_RUN)
                return 0;
        return validate(c, err);
}

void collector_config_done(collector_config *c) {
        mp_options_free(options, c);
        *c = (collector_config) {};
}
