/* collector_conn.c - options, token and calls shared by the commands that
 * talk to the collector (collector_conn.h). */
#include "collector_conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "output.h"
#include "util/macro.h"
#include "util/secret.h"

void cli_collector_usage(FILE *f, const char *token_what) {
        fprintf(f,
                "collector options:\n"
                "      --collector ADDR      the collector, HOST:PORT (default: $MODELPROV_COLLECTOR)\n"
                "      --token-file FILE     the %s (a mode 0600 file; default: $MODELPROV_TOKEN)\n"
                "      --ca-file FILE        PEM certificates that verify the collector (default: the system's)\n"
                "      --client-cert FILE    client certificate (PEM) when the collector wants mutual TLS,\n"
                "      --client-key FILE     and its key\n"
                "      --server-name NAME    verify the collector's certificate for NAME\n"
                "      --insecure-loopback   plaintext, only to a collector on 127.0.0.0/8, ::1 or localhost\n"
                "      --timeout SECONDS     per attempt (default %d); failed connections are retried\n",
                token_what, CLI_COLLECTOR_DEFAULT_TIMEOUT_S);
}

static int parse_timeout(const char *arg, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > 86400) {
                fprintf(stderr, "modelprov: error: --timeout needs a number of seconds from 1 to 86400\n");
                return -EINVAL;
        }
        *ret = (unsigned) v;
        return 0;
}

int cli_collector_option(int c, const char *arg, cli_collector_options *o) {
        switch (c) {
        case CLI_OPT_COLLECTOR: o->address = arg; return 1;
        case CLI_OPT_TOKEN_FILE: o->token_file = arg; return 1;
        case CLI_OPT_CA_FILE: o->ca_file = arg; return 1;
        case CLI_OPT_CLIENT_CERT: o->cert_file = arg; return 1;
        case CLI_OPT_CLIENT_KEY: o->key_file = arg; return 1;
        case CLI_OPT_SERVER_NAME: o->server_name = arg; return 1;
        case CLI_OPT_INSECURE_LOOPBACK: o->insecure_loopback = true; return 1;
        case CLI_OPT_TIMEOUT: return parse_timeout(arg, &o->timeout_s) < 0 ? -EINVAL : 1;
        default: return 0;
        }
}

static int read_token(const cli_collector_options *o, const char *what, char **ret) {
        mp_error err;
        mp_error_clear(&err);

        if (o->token_file) {
                int r = mp_secret_read_file(o->token_file, what, ret, &err);
                if (r < 0)
                        cli_print_error(&err);
                return r;
        }
        const char *env = getenv("MODELPROV_TOKEN");
        if (!env || !env[0]) {
                fprintf(stderr, "modelprov: error: no %s: give --token-file FILE or set MODELPROV_TOKEN\n", what);
                return -EINVAL;
        }
        int r = mp_secret_check(env, what, &err);
        if (r < 0) {
                fprintf(stderr, "modelprov: error: MODELPROV_TOKEN: %s\n", err.reason);
                return r;
        }
        *ret = strdup(env);
        if (!*ret) {
                fprintf(stderr, "modelprov: error: out of memory\n");
                return -ENOMEM;
        }
        return 0;
}

int cli_collector_connect(const cli_collector_options *o, const char *token_what, cli_collector *ret) {
        *ret = (cli_collector) {0};

        const char *address = o->address ? o->address : getenv("MODELPROV_COLLECTOR");
        if (!address || !address[0]) {
                fprintf(stderr, "modelprov: error: no collector: give --collector HOST:PORT or set "
                                "MODELPROV_COLLECTOR\n");
                return -EINVAL;
        }
        mp_rpc_options ro = {
                .target = address,
                .ca_file = o->ca_file,
                .insecure_loopback = o->insecure_loopback,
                .cert_file = o->cert_file,
                .key_file = o->key_file,
                .server_name = o->server_name,
                .deadline_ms = (int64_t) (o->timeout_s ? o->timeout_s : CLI_COLLECTOR_DEFAULT_TIMEOUT_S) * 1000,
                /* Query answers grow with the fleet; the user asked for them. */
                .max_receive_bytes = 0,
                /* A person is waiting: a few quick retries, then say why. */
                .retry = { .max_attempts = 4, .max_total_ms = 15000 },
        };

        /* The options first: a plaintext request to a remote collector is
         * refused before a token is read. */
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_options_check(&ro, &err);
        if (r < 0) {
                fprintf(stderr, "modelprov: error: %s\n", err.reason);
                return r;
        }
        _cleanup_(freep) char *token = NULL;
        r = read_token(o, token_what, &token);
        if (r < 0)
                return r;
        r = mp_rpc_client_new(&ro, &ret->client, &err);
        if (r < 0) {
                cli_print_error(&err);
                OPENSSL_cleanse(token, strlen(token));
                return r;
        }
        ret->token = TAKE_PTR(token);
        return 0;
}

void cli_collector_done(cli_collector *c) {
        if (c->token) {
                OPENSSL_cleanse(c->token, strlen(c->token));
                free(c->token);
        }
        mp_rpc_client_free(c->client);
        *c = (cli_collector) {0};
}

int cli_collector_call(cli_collector *c, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **ret) {
        mp_error err;
        mp_error_clear(&err);
        const mp_rpc_auth auth = { .token = c->token };
        int r = mp_rpc_unary(c->client, method, &auth, request, response_type, ret, NULL, &err);
        if (r < 0)
                cli_print_error(&err);
        return r;
}
