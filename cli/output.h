/* output.h - what every subcommand shares: error messages, exit codes,
 * opening a model and running the pass with progress. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "fingerprint/record.h"
#include "formats/model.h"
#include "pass/pass.h"
#include "util/error.h"

/* Exit codes of every command. */
enum {
        EXIT_OK = 0,
        EXIT_FINDINGS = 1,      /* the command worked and found something to report */
        EXIT_ERROR = 2,         /* bad usage, unreadable or malformed input */
};

/* Prints "modelprov: error: FILE: byte N: REASON" to stderr. */
void cli_print_error(const mp_error *err);

/* --threshold's argument, a number from 0 to 1, into *ret; else prints the
 * error and returns -EINVAL. */
int cli_parse_threshold(const char *arg, double *ret);

typedef struct cli_model_options {
        const char *ollama_store;
        unsigned jobs;
        bool quiet;             /* no progress even on a terminal */
} cli_model_options;

/* Opens path, runs the pass and builds the record.  On failure prints the
 * error and returns a negative errno. */
int cli_fingerprint_model(const char *path, const cli_model_options *o, mp_model **ret_model,
                          mp_fingerprint **ret_fp);

/* True if path is a fingerprint record file (`fingerprint -o`) rather than
 * model material: records start with field 1 (record_version = 1) followed by
 * another field, which no weight format does. */
bool cli_is_record_file(const char *path);

/* A model path or a record file, as compare, scan and catalog take them:
 * reads the record, or fingerprints the model (then *ret_model, if wanted,
 * receives it: its tokenizer allows an exact vocabulary overlap).  Prints
 * errors; returns a negative errno on failure. */
int cli_load_fingerprint(const char *path, const cli_model_options *o, mp_model **ret_model,
                         mp_fingerprint **ret_fp);

/* The options every model-reading command takes: -j/--jobs N, -q/--quiet,
 * --ollama-store DIR.  Their long options are CLI_MODEL_LONG_OPTIONS. */
enum { CLI_OPT_OLLAMA_STORE = 0x1000 };
#define CLI_MODEL_LONG_OPTIONS                                                  \
        { "jobs",         required_argument, NULL, 'j' },                      \
        { "quiet",        no_argument,       NULL, 'q' },                      \
        { "ollama-store", required_argument, NULL, CLI_OPT_OLLAMA_STORE }
#define CLI_MODEL_SHORT_OPTIONS "j:q"

/* Applies getopt result c (with optarg arg) if it is a model option.
 * Returns 1 if handled, 0 if c is not a model option, -EINVAL (after
 * printing why) on a bad value. */
int cli_model_option(int c, const char *arg, cli_model_options *o);

/* The tail of every command's option loop.  cli_model_option_or_usage()
 * takes a getopt result the command did not handle itself: a model option,
 * or else (an unknown option, a missing argument) prints usage to stderr.
 * cli_want_one_operand() checks that exactly one operand (the model path)
 * follows the options, printing usage otherwise.  Both return 0 to go on, or
 * a negative errno after which the command exits with EXIT_ERROR. */
int cli_model_option_or_usage(int c, const char *arg, cli_model_options *o, void (*usage)(FILE *f));
int cli_want_one_operand(int argc, void (*usage)(FILE *f));
int cli_want_operands(int argc, int n, void (*usage)(FILE *f));

/* Option parsing for commands that take only --help: returns 1 after
 * printing usage for --help, 0 to go on, -EINVAL after printing usage for
 * anything else. */
int cli_parse_help_only(int argc, char **argv, void (*usage)(FILE *f));

/* A command with subcommands (`catalog add`, `query hosts`). */
typedef struct cli_subcommand {
        const char *name;
        int (*run)(int argc, char **argv);      /* argv[0] is the subcommand */
} cli_subcommand;

/* Runs the subcommand argv[1] names; --help/-h prints usage (exit 0); a
 * missing or unknown one prints usage to stderr and returns EXIT_ERROR.
 * what names them in the error ("catalog command"). */
int cli_dispatch(const cli_subcommand *subs, size_t n, const char *what, void (*usage)(FILE *f), int argc,
                 char **argv);

/* Prints a JSON value to stdout, indented, with a final newline. */
int cli_print_json(json_t *j);

/* "1.5 GiB" style rendering into buf. */
const char *cli_format_bytes(uint64_t n, char *buf, size_t size);
