/* cmd_diff.c - `modelprov diff A B`: tensor by tensor, identical / changed
 * (relative change) / reshaped / only in A / only in B, and a summary. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>

#include "commands.h"
#include "compare/diff.h"
#include "output.h"
#include "util/macro.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov diff [OPTIONS] A B\n"
                "A, B: models (anything `fingerprint` takes) or records written by `fingerprint -o`\n"
                "      --json             the diff as JSON\n"
                "  -a, --all              list identical tensors too\n"
                "  -j, --jobs N           digest up to N files in parallel (default: CPUs)\n"
                "  -q, --quiet            no progress line\n"
                "      --ollama-store DIR Ollama store for ollama:NAME\n"
                "Relative changes |A-B|/|A| are measured on the records' value samples.\n"
                "Exit status: 0 no differences, 1 differences, 2 error.\n");
}

static void print_entry(const mp_diff_entry *e) {
        switch (e->status) {
        case MP_DIFF_CHANGED:
                if (isnan(e->rel_change))
                        printf("changed     %s (%s -> %s)\n", e->name, e->a->dtype, e->b->dtype);
                else
                        printf("changed     %s (relative change %.4g%s)\n", e->name, e->rel_change,
                               e->rel_change < 1e-6 ? ", same values" : "");
                break;
        case MP_DIFF_RESHAPED:
                printf("reshaped    %s\n", e->name);
                break;
        case MP_DIFF_ONLY_A:
                printf("only in A   %s\n", e->name);
                break;
        case MP_DIFF_ONLY_B:
                printf("only in B   %s\n", e->name);
                break;
        default:
                printf("identical   %s\n", e->name);
        }
}

int cmd_diff(int argc, char **argv) {
        enum { OPT_JSON = 256 };
        static const struct option options[] = {
                { "json", no_argument, NULL, OPT_JSON },
                { "all",  no_argument, NULL, 'a' },
                CLI_MODEL_LONG_OPTIONS,
                { "help", no_argument, NULL, 'h' },
                {}
        };
        cli_model_options mo = {0};
        bool json = false, all = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "ah" CLI_MODEL_SHORT_OPTIONS, options, NULL)) >= 0)
                switch (c) {
                case OPT_JSON: json = true; break;
                case 'a': all = true; break;
                case 'h': usage(stdout); return EXIT_OK;
                default:
                        if (cli_model_option_or_usage(c, optarg, &mo, usage) < 0)
                                return EXIT_ERROR;
                }
        if (cli_want_operands(argc, 2, usage) < 0)
                return EXIT_ERROR;

        _cleanup_(mp_fingerprint_freep) mp_fingerprint *a = NULL;
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *b = NULL;
        if (cli_load_fingerprint(argv[optind], &mo, NULL, &a) < 0 ||
            cli_load_fingerprint(argv[optind + 1], &mo, NULL, &b) < 0)
                return EXIT_ERROR;

        mp_diff d;
        if (mp_diff_records(a, b, &d) < 0) {
                fprintf(stderr, "modelprov: error: out of memory\n");
                return EXIT_ERROR;
        }
        bool differs = d.count[MP_DIFF_IDENTICAL] != d.n_entries;
        int r = EXIT_OK;
        if (json)
                r = cli_print_json(mp_diff_to_json(&d)) < 0 ? EXIT_ERROR : EXIT_OK;
        else {
                for (size_t i = 0; i < d.n_entries; i++)
                        if (all || d.entries[i].status != MP_DIFF_IDENTICAL)
                                print_entry(&d.entries[i]);
                printf("%zu tensors: %zu identical, %zu changed, %zu reshaped, %zu only in A, %zu only in B\n",
                       d.n_entries, d.count[MP_DIFF_IDENTICAL], d.count[MP_DIFF_CHANGED], d.count[MP_DIFF_RESHAPED],
                       d.count[MP_DIFF_ONLY_A], d.count[MP_DIFF_ONLY_B]);
        }
        mp_diff_free(&d);
        if (r == EXIT_OK && differs)
                r = EXIT_FINDINGS;
        return r;
}
