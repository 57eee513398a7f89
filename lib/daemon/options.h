/* options.h - one table drives a daemon's command line and its INI file.
 *
 * Both daemons read settings the same way: built-in defaults, then the INI
 * file (--config FILE, else the default path when it exists), then the
 * command line, which wins.  Config keys are the long option names without
 * the dashes ("listen = 127.0.0.1:7443", "insecure-loopback = yes"), all in
 * one section ([collector], [agent]).  Unknown keys and sections are errors:
 * a typo in a security tool's config must not be silently ignored.
 *
 * The table describes where each value lands in the daemon's config struct
 * (offsetof) and how it is parsed, so the parsing code exists once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

typedef enum mp_option_type {
        MP_OPTION_STRING,               /* char *, replaced */
        MP_OPTION_LIST,                 /* char ** (NULL-terminated), repeatable; the command
                                         * line's values replace the file's */
        MP_OPTION_FLAG,                 /* bool; on the command line takes no value, in the
                                         * file yes/no/true/false/on/off/1/0 */
        MP_OPTION_UNSIGNED,             /* unsigned in [min, max] */
        MP_OPTION_LOG_LEVEL,            /* int, daemon/log.h level names */
        MP_OPTION_SECONDS_MS,           /* unsigned milliseconds, given as seconds with an
                                         * optional fraction ("2", "0.25"); min/max in ms */
} mp_option_type;

typedef struct mp_option {
        const char *name;
        mp_option_type type;
        size_t offset;                  /* of the field in the config struct */
        unsigned min, max;              /* MP_OPTION_UNSIGNED */
        const char *expect;             /* for errors: "expected seconds" */
        const char *credential;         /* MP_OPTION_STRING holding a file name: the systemd
                                         * credential that supplies the file when the option
                                         * is not set (see mp_options_load) */
} mp_option;

/* Table rows: MP_OPTION("listen", MP_OPTION_STRING, offsetof(cfg, listen)),
 * MP_OPTION_RANGE("threads", offsetof(cfg, threads), 1, 256, "expected a
 * thread count"), and MP_OPTION_END last. */
#define MP_OPTION(n, t, o) {.name = (n), .type = (t), .offset = (o)}
#define MP_OPTION_RANGE(n, o, lo, hi, e) \
        {.name = (n), .type = MP_OPTION_UNSIGNED, .offset = (o), .min = (lo), .max = (hi), .expect = (e)}
#define MP_OPTION_SECRET_FILE(n, o, c) {.name = (n), .type = MP_OPTION_STRING, .offset = (o), .credential = (c)}
#define MP_OPTION_END {.name = NULL}

typedef enum mp_options_action {
        MP_OPTIONS_RUN,
        MP_OPTIONS_HELP,                /* --help given */
        MP_OPTIONS_VERSION,             /* --version given */
} mp_options_action;

/* Parses the config file and argv into config (already filled with
 * defaults) following table (terminated by an entry with name NULL).
 * --config, --help and --version are handled here.  Last, a secret-file
 * option (MP_OPTION_SECRET_FILE) that neither the file nor the command line
 * set becomes $CREDENTIALS_DIRECTORY/<credential> when systemd passed that
 * credential (LoadCredential=), so secrets need not sit in readable files.  Errors are sentences for
 * the operator: -EINVAL (bad option, value or key), -ENOENT or another errno
 * when an explicitly named config file cannot be read. */
int mp_options_load(const mp_option *table, const char *section, const char *default_config, int argc, char **argv,
                    void *config, mp_options_action *action, mp_error *err);

/* Frees the strings and lists the table points at in config. */
void mp_options_free(const mp_option *table, void *config);

/* Parses a yes/no value; -EINVAL otherwise. */
int mp_parse_bool(const char *value, bool *ret);

/* Frees a NULL-terminated string list. */
void mp_strv_free(char **l);
size_t mp_strv_length(char *const *l);
