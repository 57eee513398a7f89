/* cmd_inspect.c - `modelprov inspect PATH`: a human view of a model (format,
 * architecture, parameters, dtypes, tokenizer, files, findings), or the same
 * as JSON (--json) or as tab-separated lines for scripts (--plain). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "fingerprint/render_json.h"
#include "output.h"
#include "util/macro.h"
#include "util/strutil.h"

typedef enum view { VIEW_HUMAN, VIEW_JSON, VIEW_PLAIN } view;

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov inspect [OPTIONS] PATH\n"
                "PATH: a weight file, a model directory, a Hugging Face cache repo or snapshot,\n"
                "      an Ollama manifest, or ollama:NAME[:TAG]\n"
                "      --json             JSON: the fingerprint record plus tensor locations\n"
                "      --plain            tab-separated lines: KEY<TAB>VALUE...\n"
                "  -j, --jobs N           digest up to N files in parallel (default: CPUs)\n"
                "  -q, --quiet            no progress line\n"
                "      --ollama-store DIR Ollama store for ollama:NAME\n"
                "Exit codes: 0 ok, 1 findings present, 2 error.\n");
}

/* The record's JSON, plus where each tensor and file lies on disk. */
static json_t *inspect_json(const mp_model *m, const mp_fingerprint *fp) {
        json_t *o = mp_fingerprint_to_json(fp);
        if (!o)
                return NULL;
        json_t *tensors = json_object_get(o, "tensors");
        for (size_t i = 0; i < m->n_tensors && i < json_array_size(tensors); i++) {
                json_t *t = json_array_get(tensors, i);
                json_object_set_new(t, "offset", json_integer((json_int_t) m->tensors[i].offset));
                json_object_set_new(t, "length", json_integer((json_int_t) m->tensors[i].length));
        }
        json_t *files = json_object_get(o, "files");
        for (size_t i = 0; i < m->n_files && i < json_array_size(files); i++)
                json_object_set_new(json_array_get(files, i), "location", json_string(m->files[i].path));
        return o;
}

static double params_scaled(uint64_t n, const char **unit) {
        if (n >= 1000000000ull) { *unit = "B"; return (double) n / 1e9; }
        if (n >= 1000000ull)    { *unit = "M"; return (double) n / 1e6; }
        if (n >= 1000ull)       { *unit = "K"; return (double) n / 1e3; }
        *unit = "";
        return (double) n;
}

static void print_arch(const Modelprov__V1__Architecture *a) {
        if (!a || (!*a->model_type && !*a->architecture && !a->hidden_size)) {
                printf("%-11s unknown (no config.json or GGUF metadata)\n", "arch");
                return;
        }
        printf("%-11s %s", "arch", *a->model_type ? a->model_type : "?");
        if (*a->architecture && strcmp(a->architecture, a->model_type) != 0)
                printf(" (%s)", a->architecture);
        printf(": hidden %" PRIu64 ", layers %" PRIu64 ", heads %" PRIu64, a->hidden_size, a->num_layers,
               a->num_heads);
        if (a->num_kv_heads && a->num_kv_heads != a->num_heads)
                printf(" (%" PRIu64 " kv)", a->num_kv_heads);
        if (a->intermediate_size)
                printf(", ffn %" PRIu64, a->intermediate_size);
        if (a->vocab_size)
                printf(", vocab %" PRIu64, a->vocab_size);
        if (a->max_positions)
                printf(", context %" PRIu64, a->max_positions);
        putchar('\n');
}

static void print_human(const mp_fingerprint *fp) {
        char b[32], hex[65];
        const char *unit;

        printf("%-11s %s (%s)\n", "model", fp->name, fp->layout);
        if (*fp->revision)
                printf("%-11s %s\n", "revision", fp->revision);
        printf("%-11s %s\n", "format", fp->format);
        print_arch(fp->arch);
        double p = params_scaled(fp->parameter_count, &unit);
        printf("%-11s %.2f%s (%" PRIu64 ") in %zu tensors\n", "parameters", p, unit, fp->parameter_count,
               fp->n_tensors);

        uint64_t tensor_bytes = 0;
        for (size_t i = 0; i < fp->n_dtypes; i++)
                tensor_bytes += fp->dtypes[i]->n_bytes;
        for (size_t i = 0; i < fp->n_dtypes; i++)
                printf("%-11s %-8s %5.1f%%  %s, %" PRIu64 " tensors\n", i == 0 ? "dtypes" : "",
                       fp->dtypes[i]->dtype,
                       tensor_bytes ? 100.0 * (double) fp->dtypes[i]->n_bytes / (double) tensor_bytes : 0.0,
                       cli_format_bytes(fp->dtypes[i]->n_bytes, b, sizeof(b)), fp->dtypes[i]->n_tensors);

        if (fp->tokenizer)
                printf("%-11s %s, %" PRIu64 " tokens, %" PRIu64 " merges (%s)\n", "tokenizer", fp->tokenizer->kind,
                       fp->tokenizer->vocab_size, fp->tokenizer->n_merges, fp->tokenizer->source);
        else
                printf("%-11s none found\n", "tokenizer");

        mp_hex(fp->model_digest.data, fp->model_digest.len, hex);
        printf("%-11s sha256:%s\n", "digest", hex);
        printf("%-11s %s in %zu file%s\n", "files", cli_format_bytes(fp->total_bytes, b, sizeof(b)), fp->n_files,
               fp->n_files == 1 ? "" : "s");
        for (size_t i = 0; i < fp->n_files; i++) {
                const Modelprov__V1__FileDigest *f = fp->files[i];
                mp_hex(f->sha256.data, f->sha256.len, hex);
                printf("  %-40s %10s  %-9s %s\n", f->path, cli_format_bytes(f->size, b, sizeof(b)), f->role, hex);
        }
        if (fp->n_findings == 0)
                printf("%-11s none\n", "findings");
        for (size_t i = 0; i < fp->n_findings; i++) {
                const Modelprov__V1__Finding *f = fp->findings[i];
                printf("%-11s %s: %s", i == 0 ? "findings" : "", f->kind, f->file);
                if (f->offset >= 0)
                        printf(" (byte %" PRId64 ")", f->offset);
                printf(": %s\n", f->detail);
        }
}

/* Tabs and newlines inside values would break the line format. */
static void print_field(const char *s) {
        for (; s && *s; s++)
                putchar(*s == '\t' || *s == '\n' || *s == '\r' ? ' ' : *s);
}

static void print_plain(const mp_model *m, const mp_fingerprint *fp) {
        char hex[65];
        printf("name\t"); print_field(fp->name); putchar('\n');
        printf("layout\t%s\nformat\t%s\n", fp->layout, fp->format);
        printf("architecture\t"); print_field(fp->arch ? fp->arch->model_type : ""); putchar('\n');
        printf("parameters\t%" PRIu64 "\ntensors\t%zu\n", fp->parameter_count, fp->n_tensors);
        for (size_t i = 0; i < fp->n_dtypes; i++)
                printf("dtype\t%s\t%" PRIu64 "\t%" PRIu64 "\n", fp->dtypes[i]->dtype, fp->dtypes[i]->n_bytes,
                       fp->dtypes[i]->n_tensors);
        if (fp->tokenizer)
                printf("tokenizer\t%s\t%" PRIu64 "\n", fp->tokenizer->kind, fp->tokenizer->vocab_size);
        mp_hex(fp->model_digest.data, fp->model_digest.len, hex);
        printf("digest\tsha256:%s\n", hex);
        for (size_t i = 0; i < fp->n_files; i++) {
                mp_hex(fp->files[i]->sha256.data, fp->files[i]->sha256.len, hex);
                printf("file\t"); print_field(fp->files[i]->path);
                printf("\t%" PRIu64 "\t%s\t%s\t%s\t", fp->files[i]->size, hex, fp->files[i]->role, fp->files[i]->format);
                print_field(m->files[i].path);
                putchar('\n');
        }
        for (size_t i = 0; i < fp->n_findings; i++) {
                printf("finding\t%s\t", fp->findings[i]->kind);
                print_field(fp->findings[i]->file);
                printf("\t%" PRId64 "\t", fp->findings[i]->offset);
                print_field(fp->findings[i]->detail);
                putchar('\n');
        }
}

int cmd_inspect(int argc, char **argv) {
        enum { OPT_JSON = 256, OPT_PLAIN };
        static const struct option options[] = {
                { "json",         no_argument,       NULL, OPT_JSON },
                { "plain",        no_argument,       NULL, OPT_PLAIN },
                CLI_MODEL_LONG_OPTIONS,
                { "help",         no_argument,       NULL, 'h' },
                {}
        };
        cli_model_options mo = {0};
        view v = VIEW_HUMAN;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h" CLI_MODEL_SHORT_OPTIONS, options, NULL)) >= 0)
                switch (c) {
                case OPT_JSON: v = VIEW_JSON; break;
                case OPT_PLAIN: v = VIEW_PLAIN; break;
                case 'h': usage(stdout); return EXIT_OK;
                default:
                        if (cli_model_option_or_usage(c, optarg, &mo, usage) < 0)
                                return EXIT_ERROR;
                }
        if (cli_want_one_operand(argc, usage) < 0)
                return EXIT_ERROR;

        _cleanup_(mp_model_freep) mp_model *m = NULL;
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        if (cli_fingerprint_model(argv[optind], &mo, &m, &fp) < 0)
                return EXIT_ERROR;

        switch (v) {
        case VIEW_JSON:
                if (cli_print_json(inspect_json(m, fp)) < 0)
                        return EXIT_ERROR;
                break;
        case VIEW_PLAIN:
                print_plain(m, fp);
                break;
        case VIEW_HUMAN:
                print_human(fp);
                break;
        }
        return fp->n_findings > 0 ? EXIT_FINDINGS : EXIT_OK;
}
