/* cmd_scan.c - `modelprov scan X --catalog FILE`: X's best matches in a
 * catalog, ranked, with verdicts (lib/catalog/catalog.h mp_catalog_scan()). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "cmd_catalog.h"
#include "commands.h"
#include "output.h"
#include "util/macro.h"
#include "util/strutil.h"

#define METADATA_ONLY_NOTE "metadata only (no weights in catalog entry)"

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov scan [OPTIONS] X --catalog FILE\n"
                "X: a model (anything `modelprov fingerprint` reads) or a record written by\n"
                "   `modelprov fingerprint -o`.\n"
                "      --catalog FILE     the catalog to scan (see `modelprov catalog`)\n"
                "      --top-k N          show the N best matches (default %d)\n"
                "      --threshold T      only matches scoring at least T in [0, 1] (default %.2f);\n"
                "                         the score is the identity score, or the pipeline score\n"
                "                         when there is no weight evidence\n"
                "      --all-buckets      compare with every entry, not only those of a similar size\n"
                "      --json             the matches as a JSON array (fields of `compare --json`\n"
                "                         plus rank, name, source, labels, evidence)\n"
                "  -j, --jobs N           digest up to N files in parallel (default: CPUs)\n"
                "  -q, --quiet            no progress line\n"
                "      --ollama-store DIR Ollama store for ollama:NAME\n"
                "Exit codes: 0 the scan ran (with or without matches), 2 error.\n",
                MP_SCAN_DEFAULT_TOP_K, MP_SCAN_DEFAULT_THRESHOLD);
}

static int parse_top_k(const char *arg, size_t *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > MP_SCAN_TOP_K_MAX) {
                fprintf(stderr, "modelprov: error: --top-k needs a number from 1 to %d\n", MP_SCAN_TOP_K_MAX);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static const char *evidence(const mp_scan_match *m) {
        return m->has_weights ? "weights" : METADATA_ONLY_NOTE;
}

/* One match: rank, name, source, labels, evidence, then every field of
 * `compare --json`. */
static json_t *match_json(const mp_scan_match *m, size_t rank) {
        json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:o, s:b, s:s}",
                              "rank", (json_int_t) rank,
                              "name", m->name,
                              "source", m->source,
                              "param_bucket", m->param_bucket[0] ? json_string(m->param_bucket) : json_null(),
                              "labels", cli_labels_json(m->labels, m->n_labels),
                              "has_weights", m->has_weights,
                              "evidence", evidence(m));
        json_t *cmp = mp_comparison_to_json(&m->cmp);
        if (!o || !cmp || json_object_update(o, cmp) < 0) {
                json_decref(o);
                json_decref(cmp);
                return NULL;
        }
        json_decref(cmp);
        return o;
}

static json_t *result_json(const mp_scan_result *res) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < res->n_matches; i++)
                if (json_array_append_new(a, match_json(&res->matches[i], i + 1)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        return a;
}

static const char *score_cell(double v, char *buf, size_t size) {
        if (isnan(v))
                return "-";
        snprintf(buf, size, "%.3f", v);
        return buf;
}

static void print_summary(const mp_scan_result *res, const mp_scan_options *o) {
        char buckets[64] = "all sizes";
        if (res->n_buckets > 0) {
                size_t n = 0;
                for (size_t i = 0; i < res->n_buckets; i++)
                        n += (size_t) snprintf(buckets + n, sizeof(buckets) - n, "%s%s", i ? ", " : "",
                                               mp_param_bucket_name(res->buckets[i]));
        }
        printf("%zu of %zu catalog entries compared (%s); %zu scored at least %.2f\n", res->n_candidates,
               res->n_entries, buckets, res->n_above_threshold, o->threshold);
}

static size_t column_width(size_t width, const char *s, size_t max) {
        size_t n = strlen(s);
        n = n > width ? n : width;
        return n > max ? max : n;
}

static void print_table(const mp_scan_result *res, const mp_scan_options *o) {
        size_t name_w = 4, verdict_w = 7, relation_w = 8;
        for (size_t i = 0; i < res->n_matches; i++) {
                const mp_scan_match *m = &res->matches[i];
                name_w = column_width(name_w, m->name, 48);
                verdict_w = column_width(verdict_w, mp_verdict_name(m->cmp.verdict), 32);
                relation_w = column_width(relation_w, m->cmp.relation ? m->cmp.relation : "-", 48);
        }

        if (res->n_matches > 0)
                printf("%-4s  %-*s  %-*s  %8s  %8s  %9s  %-*s  %s\n", "RANK", (int) name_w, "NAME", (int) verdict_w,
                       "VERDICT", "IDENTITY", "PIPELINE", "TOKENIZER", (int) relation_w, "RELATION", "LABELS");
        for (size_t i = 0; i < res->n_matches; i++) {
                const mp_scan_match *m = &res->matches[i];
                char name[256], b1[16], b2[16], b3[16], lbuf[512];
                json_auto_t *labels = cli_labels_json(m->labels, m->n_labels);
                printf("%-4zu  %-*s  %-*s  %8s  %8s  %9s  %-*s  %s\n", i + 1, (int) name_w,
                       mp_printable(name, sizeof(name), m->name), (int) verdict_w, mp_verdict_name(m->cmp.verdict),
                       score_cell(m->cmp.identity_score, b1, sizeof(b1)),
                       score_cell(m->cmp.pipeline_score, b2, sizeof(b2)),
                       score_cell(m->cmp.tokenizer_score, b3, sizeof(b3)), (int) relation_w,
                       m->cmp.relation ? m->cmp.relation : "-",
                       labels ? cli_format_labels(labels, lbuf, sizeof(lbuf)) : "");
                if (!m->has_weights)
                        printf("%-4s  %s\n", "", METADATA_ONLY_NOTE);
        }
        if (res->n_matches == 0)
                printf("no match\n");
        print_summary(res, o);
}

int cmd_scan(int argc, char **argv) {
        enum { OPT_CATALOG = 256, OPT_TOP_K, OPT_THRESHOLD, OPT_JSON, OPT_ALL_BUCKETS };
        static const struct option options[] = {
                { "catalog",     required_argument, NULL, OPT_CATALOG },
                { "top-k",       required_argument, NULL, OPT_TOP_K },
                { "threshold",   required_argument, NULL, OPT_THRESHOLD },
                { "json",        no_argument,       NULL, OPT_JSON },
                { "all-buckets", no_argument,       NULL, OPT_ALL_BUCKETS },
                CLI_MODEL_LONG_OPTIONS,
                { "help",        no_argument,       NULL, 'h' },
                {}
        };
        cli_model_options mo = {0};
        mp_scan_options so = { .top_k = MP_SCAN_DEFAULT_TOP_K, .threshold = MP_SCAN_DEFAULT_THRESHOLD };
        const char *catalog_path = NULL;
        bool json = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h" CLI_MODEL_SHORT_OPTIONS, options, NULL)) >= 0)
                switch (c) {
                case OPT_CATALOG: catalog_path = optarg; break;
                case OPT_TOP_K:
                        if (parse_top_k(optarg, &so.top_k) < 0)
                                return EXIT_ERROR;
                        break;
                case OPT_THRESHOLD:
                        if (cli_parse_threshold(optarg, &so.threshold) < 0)
                                return EXIT_ERROR;
                        break;
                case OPT_JSON: json = true; break;
                case OPT_ALL_BUCKETS: so.all_buckets = true; break;
                case 'h': usage(stdout); return EXIT_OK;
                default:
                        if (cli_model_option_or_usage(c, optarg, &mo, usage) < 0)
                                return EXIT_ERROR;
                }
        if (cli_want_one_operand(argc, usage) < 0)
                return EXIT_ERROR;
        if (!catalog_path) {
                fprintf(stderr, "modelprov: error: scan needs --catalog FILE\n");
                usage(stderr);
                return EXIT_ERROR;
        }

        mp_error err;
        mp_error_clear(&err);
        _cleanup_(mp_catalog_closep) mp_catalog *cat = NULL;
        if (mp_catalog_open(catalog_path, false, &cat, &err) < 0) {
                cli_print_error(&err);
                return EXIT_ERROR;
        }
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        if (cli_load_fingerprint(argv[optind], &mo, NULL, &fp) < 0)
                return EXIT_ERROR;

        mp_scan_result res;
        if (mp_catalog_scan(cat, fp, &so, &res, &err) < 0) {
                cli_print_error(&err);
                return EXIT_ERROR;
        }
        int r = EXIT_OK;
        if (json)
                r = cli_print_json(result_json(&res)) < 0 ? EXIT_ERROR : EXIT_OK;
        else
                print_table(&res, &so);
        mp_scan_result_free(&res);
        return r;
}
