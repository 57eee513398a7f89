/* cmd_query.c - `modelprov query hosts|inventory|blast-radius|model|history`:
 * ask the collector (Query service, proto/modelprov.proto) what the fleet
 * holds, and print it as an aligned table, JSON or CSV.
 *
 * Each subcommand turns the answer into a JSON array of flat objects; the
 * table and CSV are views of those objects through a row_column list, so the
 * three formats always agree (CSV has exactly the JSON keys, in that order).
 * Times are ISO-8601 UTC strings plus "_ms" integer twins; digests are full
 * hex in JSON and CSV and cut to 12 digits in tables. */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "collector_conn.h"
#include "commands.h"
#include "fingerprint/render_json.h"
#include "modelprov.pb-c.h"
#include "output.h"
#include "pass/pass.h"
#include "query_calls.h"
#include "rows.h"
#include "util/macro.h"
#include "util/strutil.h"

#define DIGEST_BYTES CLI_DIGEST_BYTES
#define HISTORY_LIMIT_MAX CLI_HISTORY_LIMIT_MAX

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov query hosts [OPTIONS]\n"
                "       modelprov query inventory [--host H] [--all] [OPTIONS]\n"
                "       modelprov query blast-radius --model X [--threshold T] [--all] [OPTIONS]\n"
                "       modelprov query model DIGEST [OPTIONS]\n"
                "       modelprov query history [--host H] [--path P] [--limit N] [OPTIONS]\n"
                "Ask the collector what the fleet holds.\n"
                "  hosts          enrolled hosts: agent version, last seen, models, stale\n"
                "  inventory      models on the hosts, with first and last time seen\n"
                "      --host H   one host (hostname or host id)\n"
                "      --all      also models that were removed\n"
                "  blast-radius   every host and path holding the model X, a tensor-level partial\n"
                "                 copy of it, or a model derived from it (or it from them)\n"
                "      --model X  a 64-hex model digest; a fingerprint record or a model path\n"
                "                 (fingerprinted here; -j N, -q, --ollama-store DIR as for\n"
                "                 fingerprint); HOST:PATH of a model in the inventory; or the\n"
                "                 name of an entry in the catalog pushed to the collector\n"
                "      --threshold T  lowest lineage identity score in [0, 1] (default: the\n"
                "                 collector's)\n"
                "      --all      also copies that were removed\n"
                "  model DIGEST   a stored fingerprint and where the model is\n"
                "                 (--csv: the locations)\n"
                "  history        events reported by the agents, by host and sequence\n"
                "      --host H, --path P   only these; --limit N  the N most recent (default 1000)\n"
                "output:\n"
                "      --json     a JSON array of objects (model: {fingerprint, locations})\n"
                "      --csv      CSV (RFC 4180, CRLF line ends) with the JSON keys as header\n");
        cli_collector_usage(f, "query token");
        fprintf(f,
                "Exit codes: 0 ok; blast-radius: 0 something is affected, 1 nothing is;\n"
                "2 error (bad usage, collector unreachable, refused credentials, unknown digest).\n");
}

/* ---- rows --------------------------------------------------------------- */

static const row_column inventory_columns[] = {
        { "host", "HOST", ROW_TEXT },
        { "host_id", NULL, ROW_TEXT },
        { "path", "PATH", ROW_TEXT },
        { "model_digest", "DIGEST", ROW_DIGEST },
        { "model_name", "MODEL", ROW_TEXT },
        { "present", "PRESENT", ROW_BOOL },
        { "first_seen", "FIRST SEEN", ROW_TEXT },
        { "first_seen_ms", NULL, ROW_INT },
        { "last_seen", "LAST SEEN", ROW_TEXT },
        { "last_seen_ms", NULL, ROW_INT },
};

static json_t *item_json(const Modelprov__V1__InventoryItem *it) {
        static const char *const keys[] = { "host", "host_id", "path", "model_digest", "model_name", "present" };
        json_t *values[] = { row_str(it->hostname), row_str(it->host_id), row_str(it->path), row_digest(it->model_digest),
                             row_str_or_null(it->model_name), json_boolean(it->present) };
        json_t *o = json_object();
        int r = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (r >= 0)
                r = row_set_time(o, "first_seen", it->first_seen);
        if (r >= 0)
                r = row_set_time(o, "last_seen", it->last_seen);
        if (r < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

/* Appends row to rows; false (and rows dropped) when either is NULL. */
static bool append(json_t **rows, json_t *row) {
        if (*rows && row && json_array_append_new(*rows, row) == 0)
                return true;
        json_decref(row);
        json_decref(*rows);
        *rows = NULL;
        return false;
}

/* ---- options ------------------------------------------------------------ */

typedef struct query_options {
        cli_collector_options conn;
        rows_format format;
        const char *host;
        const char *path;
        const char *model;
        bool all;
        double threshold;
        uint64_t limit;
        cli_model_options mo;
} query_options;

enum { OPT_JSON = 256, OPT_CSV, OPT_HOST, OPT_PATH, OPT_LIMIT, OPT_ALL, OPT_MODEL, OPT_THRESHOLD };

#define QUERY_LONG_OPTIONS                                      \
        { "json", no_argument, NULL, OPT_JSON },                \
        { "csv",  no_argument, NULL, OPT_CSV },                 \
        { "help", no_argument, NULL, 'h' },                     \
        CLI_COLLECTOR_LONG_OPTIONS

static int parse_limit(const char *arg, uint64_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > HISTORY_LIMIT_MAX) {
                fprintf(stderr, "modelprov: error: --limit needs a number from 1 to %d\n", HISTORY_LIMIT_MAX);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* Parses argv with options (those of QUERY_LONG_OPTIONS plus the
 * subcommand's); n_operands operands must follow.  Returns 1 after --help,
 * 0 to go on, -EINVAL after printing why. */
static int parse_query(int argc, char **argv, const struct option *options, const char *short_options,
                       int n_operands, query_options *q) {
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, short_options, options, NULL)) >= 0)
                switch (c) {
                case 'h': usage(stdout); return 1;
                case OPT_JSON: q->format = ROWS_JSON; break;
                case OPT_CSV: q->format = ROWS_CSV; break;
                case OPT_HOST: q->host = optarg; break;
                case OPT_PATH: q->path = optarg; break;
                case OPT_MODEL: q->model = optarg; break;
                case OPT_ALL: q->all = true; break;
                case OPT_THRESHOLD:
                        if (cli_parse_threshold(optarg, &q->threshold) < 0)
                                return -EINVAL;
                        break;
                case OPT_LIMIT:
                        if (parse_limit(optarg, &q->limit) < 0)
                                return -EINVAL;
                        break;
                default:
                        r = cli_collector_option(c, optarg, &q->conn);
                        if (r == 0)
                                r = cli_model_option_or_usage(c, optarg, &q->mo, usage);
                        if (r < 0)
                                return -EINVAL;
                }
        return cli_want_operands(argc, n_operands, usage);
}

/* ---- hosts -------------------------------------------------------------- */

/* The host id of H, a host id or a hostname known to the collector.
 * Prints errors: an unknown host, a hostname shared by several hosts. */
static int resolve_host(const Modelprov__V1__HostsResponse *hosts, const char *h, const char **ret) {
        const char *found = NULL;
        size_t n = 0;
        char buf[256];

        for (size_t i = 0; i < hosts->n_hosts; i++)
                if (strcmp(hosts->hosts[i]->host_id, h) == 0) {
                        *ret = hosts->hosts[i]->host_id;
                        return 0;
                }
        for (size_t i = 0; i < hosts->n_hosts; i++)
                if (strcmp(hosts->hosts[i]->hostname, h) == 0) {
                        found = hosts->hosts[i]->host_id;
                        n++;
                }
        if (n == 1) {
                *ret = found;
                return 0;
        }
        if (n == 0)
                fprintf(stderr, "modelprov: error: the collector knows no host '%s' (see `modelprov query hosts`)\n",
                        mp_printable(buf, sizeof(buf), h));
        else
                fprintf(stderr, "modelprov: error: %zu hosts are called '%s': give the host id instead\n", n,
                        mp_printable(buf, sizeof(buf), h));
        return -ENOENT;
}

static const char *hostname_of(const Modelprov__V1__HostsResponse *hosts, const char *host_id) {
        for (size_t i = 0; hosts && i < hosts->n_hosts; i++)
                if (strcmp(hosts->hosts[i]->host_id, host_id) == 0)
                        return hosts->hosts[i]->hostname;
        return NULL;
}

static const row_column host_columns[] = {
        { "host", "HOST", ROW_TEXT },
        { "host_id", "HOST ID", ROW_TEXT },
        { "agent_version", "AGENT", ROW_TEXT },
        { "enrolled_at", NULL, ROW_TEXT },
        { "enrolled_at_ms", NULL, ROW_INT },
        { "last_seen", "LAST SEEN", ROW_TEXT },
        { "last_seen_ms", NULL, ROW_INT },
        { "acked_through", NULL, ROW_INT },
        { "models", "MODELS", ROW_INT },
        { "stale", "STALE", ROW_BOOL },
};

static json_t *host_json(const Modelprov__V1__Host *h) {
        static const char *const keys[] = { "host", "host_id", "agent_version" };
        json_t *values[] = { row_str(h->hostname), row_str(h->host_id), row_str_or_null(h->agent_version) };
        json_t *o = json_object();
        int r = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (r >= 0)
                r = row_set_time(o, "enrolled_at", h->enrolled_at);
        if (r >= 0)
                r = row_set_time(o, "last_seen", h->last_seen);
        static const char *const more[] = { "acked_through", "models", "stale" };
        json_t *more_values[] = { json_integer((json_int_t) h->acked_through), json_integer((json_int_t) h->models),
                                  json_boolean(h->stale) };
        int r2 = row_set_all(r >= 0 ? o : NULL, more, more_values, ELEMENTSOF(more));
        if (r >= 0)
                r = r2;
        if (r < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static int query_hosts(int argc, char **argv) {
        static const struct option options[] = { QUERY_LONG_OPTIONS, {} };
        query_options q = {0};
        int r = parse_query(argc, argv, options, "h", 0, &q);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;

        _cleanup_(cli_collector_done) cli_collector cc = {0};
        if (cli_collector_connect(&q.conn, "query token", &cc) < 0)
                return EXIT_ERROR;
        _cleanup_(cli_hosts_freep) Modelprov__V1__HostsResponse *resp = NULL;
        if (cli_fetch_hosts(&cc, &resp) < 0)
                return EXIT_ERROR;

        json_t *rows = json_array();
        size_t stale = 0;
        for (size_t i = 0; rows && i < resp->n_hosts; i++) {
                stale += resp->hosts[i]->stale;
                append(&rows, host_json(resp->hosts[i]));
        }
        char footer[128];
        snprintf(footer, sizeof(footer), "%zu %s, %zu stale", resp->n_hosts, resp->n_hosts == 1 ? "host" : "hosts",
                 stale);
        return rows_print(q.format, rows, host_columns, ELEMENTSOF(host_columns), footer) < 0 ? EXIT_ERROR : EXIT_OK;
}

/* ---- inventory ---------------------------------------------------------- */

static int query_inventory(int argc, char **argv) {
        static const struct option options[] = {
                { "host", required_argument, NULL, OPT_HOST },
                { "all",  no_argument,       NULL, OPT_ALL },
                QUERY_LONG_OPTIONS, {}
        };
        query_options q = {0};
        int r = parse_query(argc, argv, options, "h", 0, &q);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;

        _cleanup_(cli_collector_done) cli_collector cc = {0};
        if (cli_collector_connect(&q.conn, "query token", &cc) < 0)
                return EXIT_ERROR;

        _cleanup_(cli_hosts_freep) Modelprov__V1__HostsResponse *hosts = NULL;
        const char *host_id = NULL;
        if (q.host && (cli_fetch_hosts(&cc, &hosts) < 0 || resolve_host(hosts, q.host, &host_id) < 0))
                return EXIT_ERROR;

        Modelprov__V1__InventoryResponse *resp = NULL;
        if (cli_fetch_inventory(&cc, host_id, q.all, &resp) < 0)
                return EXIT_ERROR;
        cli_sort_items(resp->items, resp->n_items);
        json_t *rows = json_array();
        for (size_t i = 0; rows && i < resp->n_items; i++)
                append(&rows, item_json(resp->items[i]));
        char footer[128];
        snprintf(footer, sizeof(footer), "%zu %s", resp->n_items, resp->n_items == 1 ? "entry" : "entries");
        modelprov__v1__inventory_response__free_unpacked(resp, NULL);
        return rows_print(q.format, rows, inventory_columns, ELEMENTSOF(inventory_columns), footer) < 0 ? EXIT_ERROR
                                                                                                       : EXIT_OK;
}

/* ---- blast radius ------------------------------------------------------- */

static const row_column blast_columns[] = {
        { "host", "HOST", ROW_TEXT },
        { "host_id", NULL, ROW_TEXT },
        { "path", "PATH", ROW_TEXT },
        { "model_digest", "DIGEST", ROW_DIGEST },
        { "model_name", "MODEL", ROW_TEXT },
        { "relation", "RELATION", ROW_TEXT },
        { "verdict", "VERDICT", ROW_TEXT },
        { "score", "SCORE", ROW_SCORE },
        { "present", "PRESENT", ROW_BOOL },
        { "first_seen", NULL, ROW_TEXT },
        { "first_seen_ms", NULL, ROW_INT },
        { "last_seen", "LAST SEEN", ROW_TEXT },
        { "last_seen_ms", NULL, ROW_INT },
};


static json_t *hit_json(const Modelprov__V1__BlastRadiusHit *h) {
        static const Modelprov__V1__InventoryItem empty = MODELPROV__V1__INVENTORY_ITEM__INIT;
        static const char *const keys[] = { "relation", "verdict", "score" };
        json_t *o = item_json(h->item ? h->item : &empty);
        json_t *values[] = { row_str_or_null(h->relation), row_str_or_null(h->verdict), row_score(h->score) };
        if (row_set_all(o, keys, values, ELEMENTSOF(keys)) < 0) {
                json_decref(o);
                return NULL;
        }
        return row_in_column_order(o, blast_columns, ELEMENTSOF(blast_columns));
}

static int query_blast_radius(int argc, char **argv) {
        static const struct option options[] = {
                { "model",     required_argument, NULL, OPT_MODEL },
                { "threshold", required_argument, NULL, OPT_THRESHOLD },
                { "all",       no_argument,       NULL, OPT_ALL },
                CLI_MODEL_LONG_OPTIONS,
                QUERY_LONG_OPTIONS, {}
        };
        query_options q = {0};
        int r = parse_query(argc, argv, options, "h" CLI_MODEL_SHORT_OPTIONS, 0, &q);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;
        if (!q.model || !q.model[0]) {
                fprintf(stderr, "modelprov: error: blast-radius needs --model X\n");
                usage(stderr);
                return EXIT_ERROR;
        }

        /* Connect first: a refused token should not cost a fingerprint pass. */
        _cleanup_(cli_collector_done) cli_collector cc = {0};
        if (cli_collector_connect(&q.conn, "query token", &cc) < 0)
                return EXIT_ERROR;
        Modelprov__V1__BlastRadiusRequest req = MODELPROV__V1__BLAST_RADIUS_REQUEST__INIT;
        uint8_t digest[DIGEST_BYTES];
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        if (cli_blast_target(q.model, &q.mo, &req, digest, &fp) < 0)
                return EXIT_ERROR;
        req.threshold = q.threshold;
        req.include_removed = q.all;

        Modelprov__V1__BlastRadiusResponse *resp = NULL;
        if (cli_fetch_blast_radius(&cc, &req, &resp) < 0)
                return EXIT_ERROR;

        json_t *rows = json_array();
        size_t n_hits = resp->n_hits, n_hosts = 0;
        for (size_t i = 0; i < resp->n_hits; i++) {
                /* Count distinct hosts for the summary (hits are few). */
                const char *id = resp->hits[i]->item ? resp->hits[i]->item->host_id : "";
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++)
                        seen = resp->hits[j]->item && strcmp(resp->hits[j]->item->host_id, id) == 0;
                n_hosts += !seen;
                append(&rows, hit_json(resp->hits[i]));
        }
        char footer[256];
        if (n_hits > 0)
                snprintf(footer, sizeof(footer), "%zu %s on %zu %s affected (%" PRIu64 " fingerprints considered, %" PRIu64
                         " scored)", n_hits, n_hits == 1 ? "path" : "paths", n_hosts, n_hosts == 1 ? "host" : "hosts",
                         resp->fingerprints_considered, resp->fingerprints_scored);
        else
                snprintf(footer, sizeof(footer), "nothing affected (%" PRIu64 " fingerprints considered, %" PRIu64
                         " scored)", resp->fingerprints_considered, resp->fingerprints_scored);
        modelprov__v1__blast_radius_response__free_unpacked(resp, NULL);
        if (rows_print(q.format, rows, blast_columns, ELEMENTSOF(blast_columns), footer) < 0)
                return EXIT_ERROR;
        return n_hits > 0 ? EXIT_OK : EXIT_FINDINGS;
}

/* ---- model -------------------------------------------------------------- */

static void print_model_summary(const mp_fingerprint *fp) {
        char buf[256], hex[2 * DIGEST_BYTES + 1] = "-", size[32];
        if (fp->model_digest.len == DIGEST_BYTES)
                mp_hex(fp->model_digest.data, DIGEST_BYTES, hex);
        printf("name:        %s\n", mp_printable(buf, sizeof(buf), fp->name && fp->name[0] ? fp->name : "-"));
        printf("digest:      %s\n", hex);
        printf("format:      %s\n", mp_printable(buf, sizeof(buf), fp->format && fp->format[0] ? fp->format : "-"));
        printf("layout:      %s\n", mp_printable(buf, sizeof(buf), fp->layout && fp->layout[0] ? fp->layout : "-"));
        if (fp->revision && fp->revision[0])
                printf("revision:    %s\n", mp_printable(buf, sizeof(buf), fp->revision));
        if (fp->arch && fp->arch->architecture && fp->arch->architecture[0])
                printf("arch:        %s\n", mp_printable(buf, sizeof(buf), fp->arch->architecture));
        printf("parameters:  %" PRIu64 "\n", fp->parameter_count);
        printf("size:        %s in %zu files, %zu tensors\n", cli_format_bytes(fp->total_bytes, size, sizeof(size)),
               fp->n_files, fp->n_tensors);
        if (fp->n_findings > 0)
                printf("findings:    %zu (see --json)\n", fp->n_findings);
}

static int query_model(int argc, char **argv) {
        static const struct option options[] = { QUERY_LONG_OPTIONS, {} };
        query_options q = {0};
        int r = parse_query(argc, argv, options, "h", 1, &q);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;
        uint8_t digest[DIGEST_BYTES];
        char buf[128];
        if (!cli_parse_digest(argv[optind], digest)) {
                fprintf(stderr, "modelprov: error: '%s' is not a model digest (64 hex digits)\n",
                        mp_printable(buf, sizeof(buf), argv[optind]));
                return EXIT_ERROR;
        }

        _cleanup_(cli_collector_done) cli_collector cc = {0};
        if (cli_collector_connect(&q.conn, "query token", &cc) < 0)
                return EXIT_ERROR;
        Modelprov__V1__ModelResponse *resp = NULL;
        if (cli_fetch_model(&cc, digest, &resp) < 0)
                return EXIT_ERROR;

        cli_sort_items(resp->locations, resp->n_locations);
        json_t *rows = json_array();
        for (size_t i = 0; rows && i < resp->n_locations; i++)
                append(&rows, item_json(resp->locations[i]));
        r = 0;
        if (q.format == ROWS_JSON) {
                json_t *o = json_object();
                json_t *fp = resp->fingerprint ? mp_fingerprint_to_json(resp->fingerprint) : json_null();
                /* The _new setters take the value even when they fail. */
                if (o && fp && rows && json_object_set_new(o, "fingerprint", TAKE_PTR(fp)) == 0 &&
                    json_object_set_new(o, "locations", TAKE_PTR(rows)) == 0)
                        r = cli_print_json(o);
                else {
                        json_decref(fp);
                        json_decref(rows);
                        json_decref(o);
                        r = cli_print_json(NULL);
                }
        } else if (q.format == ROWS_CSV)
                r = rows_print(ROWS_CSV, rows, inventory_columns, ELEMENTSOF(inventory_columns), NULL);
        else {
                if (resp->fingerprint)
                        print_model_summary(resp->fingerprint);
                char footer[64];
                snprintf(footer, sizeof(footer), "%zu %s", resp->n_locations,
                         resp->n_locations == 1 ? "location" : "locations");
                printf("\n");
                r = rows_print(ROWS_TABLE, rows, inventory_columns, ELEMENTSOF(inventory_columns), footer);
        }
        modelprov__v1__model_response__free_unpacked(resp, NULL);
        return r < 0 ? EXIT_ERROR : EXIT_OK;
}

/* ---- history ------------------------------------------------------------ */

static const row_column history_columns[] = {
        { "observed_at", "TIME", ROW_TEXT },
        { "observed_at_ms", NULL, ROW_INT },
        { "host", "HOST", ROW_TEXT },
        { "host_id", NULL, ROW_TEXT },
        { "sequence", NULL, ROW_INT },
        { "kind", "KIND", ROW_TEXT },
        { "path", "PATH", ROW_TEXT },
        { "model_digest", "DIGEST", ROW_DIGEST },
        { "detail", "DETAIL", ROW_TEXT },
};

static const char *event_kind_name(int kind) {
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&modelprov__v1__event_kind__descriptor, kind);
        return v ? v->name : "UNKNOWN";
}

/* What else the event says, on one line: a finding, a catalog match. */
static json_t *event_detail(const Modelprov__V1__Event *e) {
        _cleanup_(freep) char *s = NULL;
        int n = -1;
        if (e->kind == MODELPROV__V1__EVENT_KIND__FINDING && e->finding)
                n = asprintf(&s, "%s: %s%s%s", e->finding->kind ? e->finding->kind : "",
                             e->finding->detail ? e->finding->detail : "",
                             e->finding->file && e->finding->file[0] ? " in " : "",
                             e->finding->file ? e->finding->file : "");
        else if (e->kind == MODELPROV__V1__EVENT_KIND__SCAN_MATCH && e->match)
                n = asprintf(&s, "%s (%s, score %.3f, %s)", e->match->catalog_entry ? e->match->catalog_entry : "",
                             e->match->verdict ? e->match->verdict : "", e->match->score,
                             e->match->relation ? e->match->relation : "");
        if (n < 0) {
                s = NULL;
                return json_null();
        }
        return row_str(s);
}

static json_t *history_json(const Modelprov__V1__HistoryEvent *h, const Modelprov__V1__HostsResponse *hosts) {
        static const Modelprov__V1__Event empty = MODELPROV__V1__EVENT__INIT;
        const Modelprov__V1__Event *e = h->event ? h->event : &empty;
        json_t *o = json_object();
        int r = row_set_time(o, "observed_at", e->observed_at);
        static const char *const keys[] = { "host", "host_id", "sequence", "kind", "path", "model_digest", "detail" };
        json_t *values[] = { row_str_or_null(hostname_of(hosts, h->host_id)), row_str(h->host_id),
                             json_integer((json_int_t) e->sequence), json_string(event_kind_name(e->kind)),
                             row_str_or_null(e->path), row_digest(e->model_digest), event_detail(e) };
        int r2 = row_set_all(r >= 0 ? o : NULL, keys, values, ELEMENTSOF(keys));
        if (r >= 0)
                r = r2;
        if (r < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static int query_history(int argc, char **argv) {
        static const struct option options[] = {
                { "host",  required_argument, NULL, OPT_HOST },
                { "path",  required_argument, NULL, OPT_PATH },
                { "limit", required_argument, NULL, OPT_LIMIT },
                QUERY_LONG_OPTIONS, {}
        };
        query_options q = {0};
        int r = parse_query(argc, argv, options, "h", 0, &q);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;

        _cleanup_(cli_collector_done) cli_collector cc = {0};
        if (cli_collector_connect(&q.conn, "query token", &cc) < 0)
                return EXIT_ERROR;
        /* The hosts give the events their hostnames (and resolve --host). */
        _cleanup_(cli_hosts_freep) Modelprov__V1__HostsResponse *hosts = NULL;
        if (cli_fetch_hosts(&cc, &hosts) < 0)
                return EXIT_ERROR;
        const char *host_id = NULL;
        if (q.host && resolve_host(hosts, q.host, &host_id) < 0)
                return EXIT_ERROR;

        Modelprov__V1__HistoryResponse *resp = NULL;
        if (cli_fetch_history(&cc, host_id, q.path, q.limit, &resp) < 0)
                return EXIT_ERROR;
        json_t *rows = json_array();
        for (size_t i = 0; rows && i < resp->n_events; i++)
                append(&rows, history_json(resp->events[i], hosts));
        char footer[64];
        snprintf(footer, sizeof(footer), "%zu %s", resp->n_events, resp->n_events == 1 ? "event" : "events");
        modelprov__v1__history_response__free_unpacked(resp, NULL);
        return rows_print(q.format, rows, history_columns, ELEMENTSOF(history_columns), footer) < 0 ? EXIT_ERROR
                                                                                                   : EXIT_OK;
}

int cmd_query(int argc, char **argv) {
        static const cli_subcommand subs[] = {
                { "hosts", query_hosts },
                { "inventory", query_inventory },
                { "blast-radius", query_blast_radius },
                { "model", query_model },
                { "history", query_history },
        };

        return cli_dispatch(subs, ELEMENTSOF(subs), "query", usage, argc, argv);
}
