/* config.c - defaults, INI file and command line for modelprovd (see
 * config.h). */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/config.h"
#include "agent/state.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "util/address.h"

#define FIELD(f) offsetof(agent_config, f)
static const mp_option options[] = {
        MP_OPTION("watch", MP_OPTION_LIST, FIELD(watch)),
        MP_OPTION("state-dir", MP_OPTION_STRING, FIELD(state_dir)),
        MP_OPTION("collector", MP_OPTION_STRING, FIELD(collector)),
        MP_OPTION_SECRET_FILE("enroll-secret-file", FIELD(enroll_secret_file), "enroll-secret"),
        MP_OPTION("ca-file", MP_OPTION_STRING, FIELD(ca_file)),
        MP_OPTION("insecure-loopback", MP_OPTION_FLAG, FIELD(insecure_loopback)),
        MP_OPTION("client-cert", MP_OPTION_STRING, FIELD(client_cert)),
        MP_OPTION_SECRET_FILE("client-key", FIELD(client_key), "client-key"),
        MP_OPTION("server-name", MP_OPTION_STRING, FIELD(server_name)),
        {.name = "settle", .type = MP_OPTION_SECONDS_MS, .offset = FIELD(settle_ms), .max = 3600 * 1000},
        MP_OPTION("catalog", MP_OPTION_STRING, FIELD(catalog)),
        MP_OPTION_RANGE("workers", FIELD(workers), 1, 64, "expected a worker count"),
        MP_OPTION_RANGE("read-rate", FIELD(read_rate_mb), 0, 100000, "expected MB/s, 0 for no cap"),
        MP_OPTION_RANGE("rescan-interval", FIELD(rescan_s), 0, 7 * 24 * 3600, "expected seconds, 0 for never"),
        MP_OPTION_RANGE("heartbeat", FIELD(heartbeat_s), 1, 24 * 3600, "expected seconds"),
        MP_OPTION_RANGE("outbox-max-events", FIELD(outbox_max_events), 100, 10000000, "expected an event count"),
        MP_OPTION("log-level", MP_OPTION_LOG_LEVEL, FIELD(log_level)),
        MP_OPTION_END,
};
#undef FIELD

void agent_config_usage(void) {
        printf("usage: modelprovd [options]\n"
               "\n"
               "Watches model caches on this host, fingerprints new and changed model files\n"
               "and reports them to modelprov-collector.\n"
               "\n"
               "  --config FILE              INI file, section [agent] (default " AGENT_CONFIG_DEFAULT
               " if present)\n"
               "  --watch DIR                a root to watch (repeatable; default: the usual model\n"
               "                             caches that exist: HF hub cache, Ollama, /models, /opt/models)\n"
               "  --state-dir DIR            state DB directory (default " AGENT_STATE_DEFAULT_DIR ")\n"
               "  --collector ADDR           HOST:PORT of modelprov-collector (default: none, local only)\n"
               "  --enroll-secret-file F     secret to enroll with (mode 0600; default: the systemd\n"
               "                             credential enroll-secret, when passed)\n"
               "  --ca-file F                CA that signs the collector's certificate\n"
               "  --insecure-loopback        plaintext, only towards a loopback collector\n"
               "  --client-cert F --client-key F   client certificate for mutual TLS (key default:\n"
               "                             the systemd credential client-key, when passed)\n"
               "  --server-name NAME         verify the collector's certificate for NAME\n"
               "  --settle SECONDS           quiet time after a file is closed (default 2)\n"
               "  --catalog FILE             reference catalog for local scans (default: the\n"
               "                             collector's, fetched into the state dir)\n"
               "  --workers N                fingerprinting threads (default 2)\n"
               "  --read-rate MB             read-rate cap over all workers, MB/s (default 200, 0: none)\n"
               "  --rescan-interval SECONDS  stat-only rescan of every root (default 3600, 0: never)\n"
               "  --heartbeat SECONDS        heartbeat to the collector (default 60)\n"
               "  --outbox-max-events N      outbox bound before compaction (default 100000)\n"
               "  --log-level LEVEL          error, warning, info (default) or debug\n"
               "  --help, --version\n"
               "\n"
               "Signals: SIGHUP reloads the config and the watch roots; SIGTERM stops.\n");
}

static int validate(const agent_config *c, mp_error *err) {
        for (char **w = c->watch; w && *w; w++)
                if ((*w)[0] != '/')
                        return mp_error_set(err, -EINVAL, NULL, -1, "--watch %s: expected an absolute path", *w);
        if (!c->collector) {
                if (c->enroll_secret_file || c->ca_file || c->insecure_loopback)
                        return mp_error_set(err, -EINVAL, NULL, -1, "collector settings (enroll secret, CA file or --insecure-loopback) given but no --collector");
                return 0;
        }
        if (!c->enroll_secret_file)
                return mp_error_set(err, -EINVAL, NULL, -1, "--collector needs --enroll-secret-file");
        if (c->insecure_loopback && c->ca_file)
                return mp_error_set(err, -EINVAL, NULL, -1, "choose --ca-file or --insecure-loopback");
        if (c->insecure_loopback && !mp_address_is_loopback(c->collector))
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "--insecure-loopback refused: %s is not a loopback address", c->collector);
        if (!!c->client_cert != !!c->client_key)
                return mp_error_set(err, -EINVAL, NULL, -1, "--client-cert and --client-key go together");
        return 0;
}

int agent_config_load(int argc, char **argv, agent_config *c, agent_action *action, mp_error *err) {
        assert(c);
        assert(action);

        *c = (agent_config) {
                .settle_ms = 2000,
                .workers = 2,
                .read_rate_mb = 200,
                .rescan_s = 3600,
                .heartbeat_s = 60,
                .outbox_max_events = 100000,
                .log_level = LOG_LEVEL_INFO,
        };
        c->state_dir = strdup(AGENT_STATE_DEFAULT_DIR);
        if (!c->state_dir)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        mp_options_action a;
        int r = mp_options_load(options, "agent", AGENT_CONFIG_DEFAULT, argc, argv, c, &a, err);
        if (r < 0)
                return r;
        *action = a == MP_OPTIONS_HELP ? AGENT_HELP : a == MP_OPTIONS_VERSION ? AGENT_VERSION : AGENT_RUN;
        if (*action != AGENT_RUN)
                return 0;
        return validate(c, err);
}

void agent_config_done(agent_config *c) {
        mp_options_free(options, c);
        *c = (agent_config) {};
}
