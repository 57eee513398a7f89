/* cmd_fingerprint.c - `modelprov fingerprint PATH`: the fingerprint record,
 * written in binary with -o FILE and/or rendered as JSON. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "fingerprint/render_json.h"
#include "output.h"
#include "util/macro.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov fingerprint [OPTIONS] PATH\n"
                "PATH: a weight file, a model directory, a Hugging Face cache repo or snapshot,\n"
                "      an Ollama manifest, or ollama:NAME[:TAG]\n"
                "  -o, --output FILE      write the binary record (protobuf modelprov.v1.Fingerprint)\n"
                "      --json             print the record as JSON (default when -o is not given)\n"
                "  -j, --jobs N           digest up to N files in parallel (default: CPUs)\n"
                "  -q, --quiet            no progress line\n"
                "      --ollama-store DIR Ollama store for ollama:NAME\n");
}

int cmd_fingerprint(int argc, char **argv) {
        enum { OPT_JSON = 256 };
        static const struct option options[] = {
                { "output",       required_argument, NULL, 'o' },
                { "json",         no_argument,       NULL, OPT_JSON },
                CLI_MODEL_LONG_OPTIONS,
                { "help",         no_argument,       NULL, 'h' },
                {}
        };
        cli_model_options mo = {0};
        const char *output = NULL;
        bool json = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "o:h" CLI_MODEL_SHORT_OPTIONS, options, NULL)) >= 0)
                switch (c) {
                case 'o': output = optarg; break;
                case OPT_JSON: json = true; break;
                case 'h': usage(stdout); return EXIT_OK;
                default:
                        if (cli_model_option_or_usage(c, optarg, &mo, usage) < 0)
                                return EXIT_ERROR;
                }
        if (cli_want_one_operand(argc, usage) < 0)
                return EXIT_ERROR;
        if (!output)
                json = true;

        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        if (cli_fingerprint_model(argv[optind], &mo, NULL, &fp) < 0)
                return EXIT_ERROR;

        if (output) {
                mp_error err;
                mp_error_clear(&err);
                if (mp_fingerprint_write(fp, output, &err) < 0) {
                        cli_print_error(&err);
                        return EXIT_ERROR;
                }
        }
        if (json && cli_print_json(mp_fingerprint_to_json(fp)) < 0)
                return EXIT_ERROR;
        return fp->n_findings > 0 ? EXIT_FINDINGS : EXIT_OK;
}
