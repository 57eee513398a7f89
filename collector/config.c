/* config.c - defaults, INI file and command line for modelprov-collector
 * (see config.h). */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "collector/config.h"
#include "collector/log.h"
#include "util/address.h"
#include "util/macro.h"

enum {
        OPT_CONFIG = 0x100,
        OPT_LISTEN,
        OPT_STORE,
        OPT_ENROLL_SECRET_FILE,
        OPT_QUERY_TOKEN_FILE,
        OPT_ADMIN_TOKEN_FILE,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_TLS_CLIENT_CA,
        OPT_INSECURE_LOOPBACK,
        OPT_THREADS,
        OPT_STALE_AFTER,
        OPT_MAX_MESSAGE_MIB,
        OPT_LOG_LEVEL,
        OPT_HELP,
        OPT_VERSION,
};

/* One table drives getopt and the INI keys, so they cannot drift apart. */
static const struct option options[] = {
        {"config", required_argument, NULL, OPT_CONFIG},
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"store", required_argument, NULL, OPT_STORE},
        {"enroll-secret-file", required_argument, NULL, OPT_ENROLL_SECRET_FILE},
        {"query-token-file", required_argument, NULL, OPT_QUERY_TOKEN_FILE},
        {"admin-token-file", required_argument, NULL, OPT_ADMIN_TOKEN_FILE},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
        {"insecure-loopback", no_argument, NULL, OPT_INSECURE_LOOPBACK},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"stale-after", required_argument, NULL, OPT_STALE_AFTER},
        {"max-message-mib", required_argument, NULL, OPT_MAX_MESSAGE_MIB},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {},
};

static const char *option_name(int opt) {
        for (const struct option *o = options; o->name; o++)
                if (o->val == opt)
                        return o->name;
        return "?";
}

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
               "Secret and token files must be mode 0600.\n");
}

static int set_string(char **dst, const char *value) {
        char *s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*dst);
        *dst = s;
        return 0;
}

static int parse_unsigned(const char *value, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int parse_bool(const char *value, bool *ret) {
        static const char *const yes[] = {"1", "yes", "true", "on"};
        static const char *const no[] = {"0", "no", "false", "off"};
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value, yes[i]) == 0)
                        return *ret = true, 0;
                if (strcasecmp(value, no[i]) == 0)
                        return *ret = false, 0;
        }
        return -EINVAL;
}

/* Applies one setting, from the command line (value of a flag option is
 * NULL there) or the config file.  Returns -EINVAL with err filled. */
static int apply(collector_config *c, int opt, const char *name, const char *value, mp_error *err) {
        int r = 0;

        switch (opt) {
        case OPT_LISTEN:             r = set_string(&c->listen, value); break;
        case OPT_STORE:              r = set_string(&c->store, value); break;
        case OPT_ENROLL_SECRET_FILE: r = set_string(&c->enroll_secret_file, value); break;
        case OPT_QUERY_TOKEN_FILE:   r = set_string(&c->query_token_file, value); break;
        case OPT_ADMIN_TOKEN_FILE:   r = set_string(&c->admin_token_file, value); break;
        case OPT_TLS_CERT:           r = set_string(&c->tls_cert, value); break;
        case OPT_TLS_KEY:            r = set_string(&c->tls_key, value); break;
        case OPT_TLS_CLIENT_CA:      r = set_string(&c->tls_client_ca, value); break;
        case OPT_INSECURE_LOOPBACK:
                if (!value)
                        c->insecure_loopback = true;
                else if (parse_bool(value, &c->insecure_loopback) < 0)
                        return mp_error_set(err, -EINVAL, NULL, -1, "%s: expected yes or no, got \"%s\"", name,
                                            value);
                break;
        case OPT_THREADS:
                if (parse_unsigned(value, 1, 256, &c->threads) < 0)
                        return mp_error_set(err, -EINVAL, NULL, -1, "%s: expected 1..256, got \"%s\"", name, value);
                break;
        case OPT_STALE_AFTER:
                if (parse_unsigned(value, 1, 365u * 24 * 3600, &c->stale_after_s) < 0)
                        return mp_error_set(err, -EINVAL, NULL, -1, "%s: expected seconds, got \"%s\"", name,
                                            value);
                break;
        case OPT_MAX_MESSAGE_MIB:
                if (parse_unsigned(value, 1, 1024, &c->max_message_mib) < 0)
                        return mp_error_set(err, -EINVAL, NULL, -1, "%s: expected 1..1024, got \"%s\"", name,
                                            value);
                break;
        case OPT_LOG_LEVEL:
                c->log_level = log_level_from_string(value);
                if (c->log_level < 0)
                        return mp_error_set(err, -EINVAL, NULL, -1,
                                            "%s: expected error, warning, info or debug, got \"%s\"", name, value);
                break;
        default:
                return mp_error_set(err, -EINVAL, NULL, -1, "unknown setting \"%s\"", name);
        }
        if (r < 0)
                return mp_error_set(err, r, NULL, -1, "out of memory");
        return 0;
}

struct ini_state {
        collector_config *config;
        const char *path;
        mp_error *err;
        int r;
};

static int on_ini_line(void *userdata, const char *section, const char *name, const char *value) {
        struct ini_state *st = userdata;

        if (st->r < 0)
                return 0;
        if (strcmp(section, "collector") != 0) {
                st->r = mp_error_set(st->err, -EINVAL, st->path, -1, "unknown section [%s] (expected [collector])",
                                     section);
                return 0;
        }
        for (const struct option *o = options; o->name; o++) {
                if (strcmp(o->name, name) != 0)
                        continue;
                if (o->val == OPT_CONFIG || o->val == OPT_HELP || o->val == OPT_VERSION)
                        break;
                mp_error e = {0};
                st->r = apply(st->config, o->val, name, value, &e);
                if (st->r < 0)
                        mp_error_set(st->err, st->r, st->path, -1, "%s", e.reason);
                return st->r < 0 ? 0 : 1;
        }
        st->r = mp_error_set(st->err, -EINVAL, st->path, -1, "unknown key \"%s\"", name);
        return 0;
}

static int load_file(collector_config *c, const char *path, bool must_exist, mp_error *err) {
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                return mp_error_set(err, -errno, path, -1, "cannot open config file: %s", strerror(errno));
        }

        struct ini_state st = {.config = c, .path = path, .err = err};
        int line = ini_parse_file(f, on_ini_line, &st);
        if (st.r < 0)
                return st.r;
        if (line != 0)
                return mp_error_set(err, -EINVAL, path, -1, "syntax error on line %d", line);
        return 0;
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
        *action = COLLECTOR_RUN;
        if (set_string(&c->listen, COLLECTOR_LISTEN_DEFAULT) < 0 || set_string(&c->store, COLLECTOR_STORE_DEFAULT) < 0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        /* First pass: only --config, --help and --version, so the file is
         * read before the other options override it. */
        const char *config_path = NULL;
        int opt;
        opterr = 0;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                if (opt == OPT_CONFIG)
                        config_path = optarg;
                else if (opt == OPT_HELP)
                        return *action = COLLECTOR_HELP, 0;
                else if (opt == OPT_VERSION)
                        return *action = COLLECTOR_VERSION, 0;
                else if (opt == '?')
                        return mp_error_set(err, -EINVAL, NULL, -1, "unknown or incomplete option \"%s\"",
                                            argv[optind - 1]);
        }
        if (optind < argc)
                return mp_error_set(err, -EINVAL, NULL, -1, "unexpected argument \"%s\"", argv[optind]);

        int r = load_file(c, config_path ? config_path : COLLECTOR_CONFIG_DEFAULT, config_path != NULL, err);
        if (r < 0)
                return r;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                if (opt == OPT_CONFIG)
                        continue;
                char name[64];
                snprintf(name, sizeof name, "--%s", option_name(opt));
                r = apply(c, opt, name, optarg, err);
                if (r < 0)
                        return r;
        }
        return validate(c, err);
}

void collector_config_done(collector_config *c) {
        free(c->listen);
        free(c->store);
        free(c->enroll_secret_file);
        free(c->query_token_file);
        free(c->admin_token_file);
        free(c->tls_cert);
        free(c->tls_key);
        free(c->tls_client_ca);
        *c = (collector_config) {};
}
