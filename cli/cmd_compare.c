/* cmd_compare.c - `modelprov compare A B`: every signal, the scores, the
 * verdict and a relation hint for two models or stored fingerprints. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "compare/compare.h"
#include "output.h"
#include "util/macro.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov compare [OPTIONS] A B\n"
                "A, B: models (anything `fingerprint` takes) or records written by `fingerprint -o`\n"
                "      --json             the comparison as JSON (verdict, scores, signals)\n"
                "      --plain            tab-separated lines: KEY<TAB>VALUE\n"
                "  -j, --jobs N           digest up to N files in parallel (default: CPUs)\n"
                "  -q, --quiet            no progress line\n"
                "      --ollama-store DIR Ollama store for ollama:NAME\n");
}

static void print_score(FILE *f, const char *label, double v) {
        if (isnan(v))
                fprintf(f, "  %-18s %8s\n", label, "n/a");
        else
                fprintf(f, "  %-18s %8.4f\n", label, v);
}

static void print_human(const mp_fingerprint *a, const mp_fingerprint *b, const mp_comparison *c) {
        printf("A: %s\nB: %s\n\n", a->name, b->name);
        printf("signals (0 = unrelated, 1 = same; n/a = not available)\n");
        for (size_t i = 0; i < _MP_SIG_MAX; i++)
                print_score(stdout, mp_signal_name((mp_signal_id) i), c->signal[i]);
        printf("\n");
        print_score(stdout, "identity score", c->identity_score);
        print_score(stdout, "tokenizer score", c->tokenizer_score);
        print_score(stdout, "pipeline score", c->pipeline_score);
        printf("  %-18s %zu of %zu same-shape tensors identical\n", "tensors", c->tensors_identical,
               c->tensors_common);
        printf("\nverdict:  %s\nrelation: %s\n", mp_verdict_name(c->verdict), c->relation);
        if (c->explanation[0])
                printf("why:      %s\n", c->explanation);
}

static void print_plain(const mp_comparison *c) {
        printf("verdict\t%s\nrelation\t%s\n", mp_verdict_name(c->verdict), c->relation);
        printf("identity_score\t%.4f\ntokenizer_score\t%.4f\npipeline_score\t%.4f\n", c->identity_score,
               c->tokenizer_score, c->pipeline_score);
        for (size_t i = 0; i < _MP_SIG_MAX; i++)
                printf("signal\t%s\t%.4f\n", mp_signal_name((mp_signal_id) i), c->signal[i]);
}

int cmd_compare(int argc, char **argv) {
        enum { OPT_JSON = 256, OPT_PLAIN };
        static const struct option options[] = {
                { "json",  no_argument, NULL, OPT_JSON },
                { "plain", no_argument, NULL, OPT_PLAIN },
                CLI_MODEL_LONG_OPTIONS,
                { "help",  no_argument, NULL, 'h' },
                {}
        };
        cli_model_options mo = {0};
        bool json = false, plain = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h" CLI_MODEL_SHORT_OPTIONS, options, NULL)) >= 0)
                switch (c) {
                case OPT_JSON: json = true; break;
                case OPT_PLAIN: plain = true; break;
                case 'h': usage(stdout); return EXIT_OK;
                default:
                        if (cli_model_option_or_usage(c, optarg, &mo, usage) < 0)
                                return EXIT_ERROR;
                }
        if (cli_want_operands(argc, 2, usage) < 0)
                return EXIT_ERROR;

        _cleanup_(mp_model_freep) mp_model *ma = NULL;
        _cleanup_(mp_model_freep) mp_model *mb = NULL;
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *a = NULL;
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *b = NULL;
        if (cli_load_fingerprint(argv[optind], &mo, &ma, &a) < 0 ||
            cli_load_fingerprint(argv[optind + 1], &mo, &mb, &b) < 0)
                return EXIT_ERROR;

        mp_compare_options co = { .tokenizer_a = ma ? ma->tokenizer : NULL, .tokenizer_b = mb ? mb->tokenizer : NULL };
        mp_comparison cmp;
        if (mp_compare(a, b, &co, &cmp) < 0) {
                fprintf(stderr, "modelprov: error: out of memory comparing\n");
                return EXIT_ERROR;
        }
        if (json)
                return cli_print_json(mp_comparison_to_json(&cmp)) < 0 ? EXIT_ERROR : EXIT_OK;
        if (plain)
                print_plain(&cmp);
        else
                print_human(a, b, &cmp);
        return EXIT_OK;
}
