/* collector_conn.h - how the commands that talk to modelprov-collector
 * (`query ...`, `catalog push`) reach it: the shared options, the token, the
 * client (lib/rpc/client.h), and calls whose errors are printed the same way
 * everywhere ("modelprov: error: collector ADDR: UNAUTHENTICATED: ...").
 *
 * The token comes from --token-file F (mode 0600, util/secret.h) or else
 * from the environment variable MODELPROV_TOKEN, never from an option: a
 * command line is visible to every user through ps. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "rpc/client.h"

/* The collector's receive limit (bytes per message). */
#define CLI_COLLECTOR_MAX_MESSAGE (64u * 1024 * 1024)
#define CLI_COLLECTOR_DEFAULT_TIMEOUT_S 60

typedef struct cli_collector_options {
        const char *address;            /* --collector, else $MODELPROV_COLLECTOR */
        const char *token_file;         /* --token-file, else $MODELPROV_TOKEN */
        const char *ca_file;            /* --ca-file */
        const char *cert_file;          /* --client-cert (mutual TLS) */
        const char *key_file;           /* --client-key */
        const char *server_name;        /* --server-name */
        bool insecure_loopback;         /* --insecure-loopback */
        unsigned timeout_s;             /* --timeout, 0: CLI_COLLECTOR_DEFAULT_TIMEOUT_S */
} cli_collector_options;

enum {
        CLI_OPT_COLLECTOR = 0x2000,
        CLI_OPT_TOKEN_FILE,
        CLI_OPT_CA_FILE,
        CLI_OPT_CLIENT_CERT,
        CLI_OPT_CLIENT_KEY,
        CLI_OPT_SERVER_NAME,
        CLI_OPT_INSECURE_LOOPBACK,
        CLI_OPT_TIMEOUT,
};

#define CLI_COLLECTOR_LONG_OPTIONS                                                      \
        { "collector",         required_argument, NULL, CLI_OPT_COLLECTOR },           \
        { "token-file",        required_argument, NULL, CLI_OPT_TOKEN_FILE },          \
        { "ca-file",           required_argument, NULL, CLI_OPT_CA_FILE },             \
        { "client-cert",       required_argument, NULL, CLI_OPT_CLIENT_CERT },         \
        { "client-key",        required_argument, NULL, CLI_OPT_CLIENT_KEY },          \
        { "server-name",       required_argument, NULL, CLI_OPT_SERVER_NAME },         \
        { "insecure-loopback", no_argument,       NULL, CLI_OPT_INSECURE_LOOPBACK },   \
        { "timeout",           required_argument, NULL, CLI_OPT_TIMEOUT }

/* The help text of those options, for usage(); token_what names the token
 * ("query token", "admin token"). */
void cli_collector_usage(FILE *f, const char *token_what);

/* Applies getopt result c (with optarg arg) if it is a collector option.
 * Returns 1 if handled, 0 if not ours, -EINVAL after printing why. */
int cli_collector_option(int c, const char *arg, cli_collector_options *o);

/* A connection: the client and the token for its calls. */
typedef struct cli_collector {
        mp_rpc_client *client;
        char *token;
} cli_collector;

/* Checks the options (an address is required; plaintext only to loopback),
 * reads the token (token_what names it in errors) and sets up the client.
 * Prints errors; returns a negative errno. */
int cli_collector_connect(const cli_collector_options *o, const char *token_what, cli_collector *ret);
void cli_collector_done(cli_collector *c);

/* One call (retried as lib/rpc does) with the token as credentials.  On
 * failure prints "modelprov: error: collector ADDR: STATUS: details" and
 * returns a negative errno.  Free *ret with protobuf_c_message_free_unpacked. */
int cli_collector_call(cli_collector *c, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *response_type, ProtobufCMessage **ret);
