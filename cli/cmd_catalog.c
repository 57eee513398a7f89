/* cmd_catalog.c - `modelprov catalog add|list|remove|import|push`: manage a
 * catalog file of reference fingerprints (lib/catalog/catalog.h), and hand
 * one to the collector for the whole fleet. */
#include "cmd_catalog.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "catalog/catalog.h"
#include "catalog/import_pk.h"
#include "collector_conn.h"
#include "commands.h"
#include "output.h"
#include "modelprov.pb-c.h"
#include "util/macro.h"
#include "util/source.h"
#include "util/strutil.h"

#define MAX_LABELS 64

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov catalog add CATALOG MODEL_OR_FP [--name NAME] [--label KEY=VALUE ...] [--replace]\n"
                "       modelprov catalog list CATALOG [--json]\n"
                "       modelprov catalog remove CATALOG NAME\n"
                "       modelprov catalog import CATALOG DIR\n"
                "       modelprov catalog push CATALOG --collector ADDR --token-file F [--ca-file F | --insecure-loopback]\n"
                "CATALOG: a catalog file (SQLite); add and import create it.\n"
                "MODEL_OR_FP: anything `modelprov fingerprint` reads, or a record it wrote with -o.\n"
                "DIR: a model-provenance-kit database (catalog/manifest.json, shards, base features);\n"
                "     its entries carry metadata and tokenizer features only, no weights.\n"
                "  add:    --name NAME          entry name (default: the model's name)\n"
                "          --label KEY=VALUE    a label, e.g. license=llama3 (repeatable)\n"
                "          --replace            replace an entry of the same name\n"
                "          -j, --jobs N, -q, --quiet, --ollama-store DIR   as for fingerprint\n"
                "  list:   --json               entries as a JSON array\n"
                "  push:   uploads CATALOG to the collector (admin token), which agents fetch\n"
                "          and scan against; see the collector options below\n");
        cli_collector_usage(f, "admin token");
        fprintf(f, "Exit codes: 0 ok, 2 error.\n");
}

static int open_catalog(const char *path, bool create, mp_catalog **ret) {
        mp_error err;
        mp_error_clear(&err);
        int r = mp_catalog_open(path, create, ret, &err);
        if (r < 0)
                cli_print_error(&err);
        return r;
}

/* ---- add ---------------------------------------------------------------- */

static int parse_label(char *arg, mp_label *ret) {
        char *eq = strchr(arg, '=');
        if (!eq || eq == arg) {
                fprintf(stderr, "modelprov: error: --label needs KEY=VALUE, got '%s'\n", arg);
                return -EINVAL;
        }
        *eq = 0;
        *ret = (mp_label) { arg, eq + 1 };
        mp_error err;
        mp_error_clear(&err);
        if (mp_catalog_check_label(ret->key, ret->value, &err) < 0) {
                cli_print_error(&err);
                return -EINVAL;
        }
        return 0;
}

static int catalog_add(int argc, char **argv) {
        enum { OPT_NAME = 256, OPT_LABEL, OPT_REPLACE };
        static const struct option options[] = {
                { "name",    required_argument, NULL, OPT_NAME },
                { "label",   required_argument, NULL, OPT_LABEL },
                { "replace", no_argument,       NULL, OPT_REPLACE },
                CLI_MODEL_LONG_OPTIONS,
                { "help",    no_argument,       NULL, 'h' },
                {}
        };
        cli_model_options mo = {0};
        mp_label labels[MAX_LABELS];
        size_t n_labels = 0;
        const char *name = NULL;
        bool replace = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h" CLI_MODEL_SHORT_OPTIONS, options, NULL)) >= 0)
                switch (c) {
                case OPT_NAME: name = optarg; break;
                case OPT_REPLACE: replace = true; break;
                case OPT_LABEL:
                        if (n_labels == MAX_LABELS) {
                                fprintf(stderr, "modelprov: error: at most %d labels\n", MAX_LABELS);
                                return EXIT_ERROR;
                        }
                        if (parse_label(optarg, &labels[n_labels++]) < 0)
                                return EXIT_ERROR;
                        break;
                case 'h': usage(stdout); return EXIT_OK;
                default:
                        if (cli_model_option_or_usage(c, optarg, &mo, usage) < 0)
                                return EXIT_ERROR;
                }
        if (cli_want_operands(argc, 2, usage) < 0)
                return EXIT_ERROR;
        const char *catalog_path = argv[optind], *input = argv[optind + 1];

        /* Open the catalog first: a bad catalog path should not cost a pass. */
        _cleanup_(mp_catalog_closep) mp_catalog *cat = NULL;
        if (open_catalog(catalog_path, true, &cat) < 0)
                return EXIT_ERROR;
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        if (cli_load_fingerprint(input, &mo, NULL, &fp) < 0)
                return EXIT_ERROR;
        if (!name)
                name = fp->name;
        if (!name || !name[0]) {
                fprintf(stderr, "modelprov: error: %s has no name; give one with --name\n", input);
                return EXIT_ERROR;
        }

        mp_catalog_add_options o = {
                .source = MP_CATALOG_SOURCE_LOCAL,
                .labels = labels,
                .n_labels = n_labels,
                .mode = replace ? MP_CATALOG_ADD_REPLACE : MP_CATALOG_ADD_NEW,
        };
        mp_error err;
        mp_error_clear(&err);
        int r = mp_catalog_add(cat, name, fp, &o, &err);
        if (r < 0) {
                cli_print_error(&err);
                return EXIT_ERROR;
        }
        char buf[256];
        printf("%s '%s' %s %s\n", r > 0 ? "replaced" : "added", mp_printable(buf, sizeof(buf), name),
               r > 0 ? "in" : "to", catalog_path);
        return EXIT_OK;
}

/* ---- list --------------------------------------------------------------- */

json_t *cli_labels_json(const mp_label *labels, size_t n) {
        json_t *o = json_object();
        for (size_t i = 0; o && i < n; i++)
                if (json_object_set_new(o, labels[i].key, json_string(labels[i].value)) < 0) {
                        json_decref(o);
                        return NULL;
                }
        return o;
}

static json_t *string_or_null(const char *s) {
        return s && s[0] ? json_string(s) : json_null();
}

static json_t *entry_json(const mp_catalog_entry *e) {
        char hex[2 * 64 + 1] = "";
        if (e->model_digest)
                mp_hex(e->model_digest, e->model_digest_len < 64 ? e->model_digest_len : 64, hex);

        return json_pack("{s:s, s:s, s:o, s:o, s:b, s:o, s:o, s:o, s:s, s:o}",
                         "name", e->name,
                         "source", e->source,
                         "param_bucket", string_or_null(e->param_bucket),
                         "params", e->params ? json_integer((json_int_t) e->params) : json_null(),
                         "has_weights", e->has_weights,
                         "arch_hash", string_or_null(e->arch_hash),
                         "family_hash", string_or_null(e->family_hash),
                         "model_digest", string_or_null(hex),
                         "added_at", e->added_at,
                         "labels", cli_labels_json(e->labels, e->n_labels));
}

static int collect_entry(const mp_catalog_entry *e, void *userdata) {
        /* json_pack() also fails on text that is not UTF-8, which add never
         * stores: only a damaged or forged catalog gets there. */
        json_t *j = entry_json(e);
        if (!j)
                return -EBADMSG;
        return json_array_append_new(userdata, j) < 0 ? -ENOMEM : 0;
}

static const char *format_params(json_t *v, char *buf, size_t size) {
        if (!json_is_integer(v))
                return "?";
        double n = (double) json_integer_value(v);
        if (n >= 1e9)
                snprintf(buf, size, "%.1fB", n / 1e9);
        else if (n >= 1e6)
                snprintf(buf, size, "%.1fM", n / 1e6);
        else if (n >= 1e3)
                snprintf(buf, size, "%.1fK", n / 1e3);
        else
                snprintf(buf, size, "%.0f", n);
        return buf;
}

const char *cli_format_labels(const json_t *labels, char *buf, size_t size) {
        _cleanup_(freep) char *raw = NULL;
        size_t raw_size = 0, o = 0;
        const char *key;
        json_t *v;

        buf[0] = 0;
        FILE *f = open_memstream(&raw, &raw_size);
        if (!f)
                return buf;
        json_object_foreach((json_t *) labels, key, v)
                fprintf(f, "%s%s=%s", o++ ? "," : "", key, json_string_value(v));
        if (fclose(f) == 0)
                mp_printable(buf, size, raw);
        return buf;
}

static void print_list_table(json_t *entries) {
        size_t width = 4, i;
        json_t *e;
        json_array_foreach(entries, i, e) {
                size_t n = strlen(json_string_value(json_object_get(e, "name")));
                width = n > width ? n : width;
        }
        width = width > 60 ? 60 : width;

        printf("%-*s  %-13s  %-6s  %7s  %-7s  %s\n", (int) width, "NAME", "SOURCE", "BUCKET", "PARAMS", "WEIGHTS",
               "LABELS");
        json_array_foreach(entries, i, e) {
                char name[256], pbuf[32], lbuf[1024];
                const char *bucket = json_string_value(json_object_get(e, "param_bucket"));
                printf("%-*s  %-13s  %-6s  %7s  %-7s  %s\n", (int) width,
                       mp_printable(name, sizeof(name), json_string_value(json_object_get(e, "name"))),
                       json_string_value(json_object_get(e, "source")), bucket ? bucket : "?",
                       format_params(json_object_get(e, "params"), pbuf, sizeof(pbuf)),
                       json_is_true(json_object_get(e, "has_weights")) ? "yes" : "no",
                       cli_format_labels(json_object_get(e, "labels"), lbuf, sizeof(lbuf)));
        }
        printf("%zu %s\n", json_array_size(entries), json_array_size(entries) == 1 ? "entry" : "entries");
}

static int catalog_list(int argc, char **argv) {
        enum { OPT_JSON = 256 };
        static const struct option options[] = {
                { "json", no_argument, NULL, OPT_JSON },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        bool json = false;
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case OPT_JSON: json = true; break;
                case 'h': usage(stdout); return EXIT_OK;
                default: usage(stderr); return EXIT_ERROR;
                }
        if (cli_want_one_operand(argc, usage) < 0)
                return EXIT_ERROR;

        _cleanup_(mp_catalog_closep) mp_catalog *cat = NULL;
        if (open_catalog(argv[optind], false, &cat) < 0)
                return EXIT_ERROR;

        json_auto_t *entries = json_array();
        mp_error err;
        mp_error_clear(&err);
        int r = entries ? mp_catalog_list(cat, collect_entry, entries, &err) : -ENOMEM;
        if (r < 0 && err.code == 0)
                mp_error_set(&err, r, argv[optind], -1, "%s",
                             r == -EBADMSG ? "an entry holds text that is not UTF-8 (a damaged catalog?)"
                                           : "out of memory");
        if (r < 0) {
                cli_print_error(&err);
                return EXIT_ERROR;
        }
        if (json)
                return cli_print_json(json_incref(entries)) < 0 ? EXIT_ERROR : EXIT_OK;
        print_list_table(entries);
        return EXIT_OK;
}

/* ---- remove ------------------------------------------------------------- */

static int catalog_remove(int argc, char **argv) {
        int r = cli_parse_help_only(argc, argv, usage);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;
        if (cli_want_operands(argc, 2, usage) < 0)
                return EXIT_ERROR;

        _cleanup_(mp_catalog_closep) mp_catalog *cat = NULL;
        if (open_catalog(argv[optind], false, &cat) < 0)
                return EXIT_ERROR;
        mp_error err;
        mp_error_clear(&err);
        if (mp_catalog_remove(cat, argv[optind + 1], &err) < 0) {
                cli_print_error(&err);
                return EXIT_ERROR;
        }
        char buf[256];
        printf("removed '%s' from %s\n", mp_printable(buf, sizeof(buf), argv[optind + 1]), argv[optind]);
        return EXIT_OK;
}

/* ---- import ------------------------------------------------------------- */

static void print_skip(const char *what, const char *reason, void *userdata) {
        (void) userdata;
        fprintf(stderr, "modelprov: skipped %s: %s\n", what, reason);
}

static int catalog_import(int argc, char **argv) {
        int r = cli_parse_help_only(argc, argv, usage);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;
        if (cli_want_operands(argc, 2, usage) < 0)
                return EXIT_ERROR;

        _cleanup_(mp_catalog_closep) mp_catalog *cat = NULL;
        if (open_catalog(argv[optind], true, &cat) < 0)
                return EXIT_ERROR;
        mp_import_stats stats;
        mp_error err;
        mp_error_clear(&err);
        if (mp_catalog_import_pk(cat, argv[optind + 1], print_skip, NULL, &stats, &err) < 0) {
                cli_print_error(&err);
                return EXIT_ERROR;
        }
        printf("imported %zu, skipped %zu into %s (metadata and tokenizer features only, no weights)\n",
               stats.imported, stats.skipped, argv[optind]);
        return EXIT_OK;
}

/* ---- push --------------------------------------------------------------- */

/* The catalog file's bytes, once it opened as a catalog (the collector
 * checks again; a wrong file is better refused here, with its path). */
static int read_catalog(const char *path, char **ret, size_t *ret_len, size_t *ret_entries) {
        _cleanup_(mp_catalog_closep) mp_catalog *cat = NULL;
        if (open_catalog(path, false, &cat) < 0)
                return -EBADMSG;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_catalog_count(cat, ret_entries, &err);
        if (r >= 0)
                /* A request is the file plus a few bytes of framing. */
                r = mp_read_file_limited(path, path, CLI_COLLECTOR_MAX_MESSAGE - 64, ret, ret_len, &err);
        if (r == -E2BIG)
                mp_error_set(&err, r, path, -1, "catalog is larger than the collector takes (%u MiB)",
                             CLI_COLLECTOR_MAX_MESSAGE >> 20);
        if (r < 0)
                cli_print_error(&err);
        return r;
}

static int catalog_push(int argc, char **argv) {
        static const struct option options[] = {
                CLI_COLLECTOR_LONG_OPTIONS,
                { "help", no_argument, NULL, 'h' },
                {}
        };
        cli_collector_options co = {0};
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (c == 'h') {
                        usage(stdout);
                        return EXIT_OK;
                }
                r = cli_collector_option(c, optarg, &co);
                if (r == 0)
                        usage(stderr);
                if (r <= 0)
                        return EXIT_ERROR;
        }
        if (cli_want_one_operand(argc, usage) < 0)
                return EXIT_ERROR;
        const char *path = argv[optind];

        _cleanup_(freep) char *bytes = NULL;
        size_t len, entries;
        if (read_catalog(path, &bytes, &len, &entries) < 0)
                return EXIT_ERROR;
        _cleanup_(cli_collector_done) cli_collector cc = {0};
        if (cli_collector_connect(&co, "admin token", &cc) < 0)
                return EXIT_ERROR;

        Modelprov__V1__PushCatalogRequest req = MODELPROV__V1__PUSH_CATALOG_REQUEST__INIT;
        req.catalog = (ProtobufCBinaryData) { len, (uint8_t *) bytes };
        Modelprov__V1__PushCatalogResponse *resp = NULL;
        if (cli_collector_call(&cc, "/modelprov.v1.Ingest/PushCatalog", &req.base,
                               &modelprov__v1__push_catalog_response__descriptor, (ProtobufCMessage **) &resp) < 0)
                return EXIT_ERROR;
        char buf[128];
        printf("pushed %s to collector %s: version %s, %" PRIu64 " %s\n", path, mp_rpc_client_target(cc.client),
               mp_printable(buf, sizeof(buf), resp->version), resp->entries, resp->entries == 1 ? "entry" : "entries");
        if (resp->entries != entries)
                fprintf(stderr, "modelprov: warning: the collector counted %" PRIu64 " entries, %s has %zu\n",
                        resp->entries, path, entries);
        modelprov__v1__push_catalog_response__free_unpacked(resp, NULL);
        return EXIT_OK;
}

int cmd_catalog(int argc, char **argv) {
        static const cli_subcommand subs[] = {
                { "add", catalog_add },
                { "list", catalog_list },
                { "remove", catalog_remove },
                { "import", catalog_import },
                { "push", catalog_push },
        };

        return cli_dispatch(subs, ELEMENTSOF(subs), "catalog command", usage, argc, argv);
}
