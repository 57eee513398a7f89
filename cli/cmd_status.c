/* cmd_status.c - `modelprov status`: what the host agent (modelprovd) knows,
 * read from its state DB without disturbing it: enrollment, collector,
 * watched roots, models, the outbox waiting for the collector, the last
 * contact and error, and findings.
 *
 * The DB is opened read-only (agent_state_open_readonly()): WAL lets this
 * read while the agent writes, and nothing here can create or change the
 * file.  The host key lives in the same file and is never read.  Sections
 * are JSON arrays of flat row objects (rows.h), printed as tables or, with
 * --json, gathered into one object. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "agent/outbox.h"
#include "agent/state.h"
#include "commands.h"
#include "output.h"
#include "rows.h"
#include "util/macro.h"
#include "util/strutil.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov status [--state-dir DIR | --state FILE] [--json]\n"
                "Show what the host agent (modelprovd) knows, from its state DB (read-only;\n"
                "works while the agent runs): host id, collector, watched roots, models,\n"
                "events waiting for the collector, last contact and error, findings.\n"
                "      --state-dir DIR  the agent's state directory (default " AGENT_STATE_DEFAULT_DIR ")\n"
                "      --state FILE     the state DB file itself\n"
                "      --json           one JSON object with the same data\n"
                "Exit codes: 0 ok (findings or not: this reports the agent, it checks nothing),\n"
                "2 error (no state DB, unreadable).\n");
}

/* ---- rows --------------------------------------------------------------- */

static const row_column root_columns[] = {
        { "path", "ROOT", ROW_TEXT },
        { "exists", "EXISTS", ROW_BOOL },
        { "state", "STATE", ROW_TEXT },
        { "updated_at", NULL, ROW_TEXT },
        { "updated_at_ms", NULL, ROW_INT },
};

static const row_column model_columns[] = {
        { "root", "PATH", ROW_TEXT },
        { "name", "NAME", ROW_TEXT },
        { "model_digest", "DIGEST", ROW_DIGEST },
        { "format", "FORMAT", ROW_TEXT },
        { "layout", NULL, ROW_TEXT },
        { "size", "SIZE", ROW_TEXT },
        { "bytes", NULL, ROW_INT },
        { "first_seen", NULL, ROW_TEXT },
        { "first_seen_ms", NULL, ROW_INT },
        { "changed_at", "LAST CHANGE", ROW_TEXT },
        { "changed_at_ms", NULL, ROW_INT },
};

static const row_column finding_columns[] = {
        { "path", "PATH", ROW_TEXT },
        { "kind", "KIND", ROW_TEXT },
        { "detail", "DETAIL", ROW_TEXT },
        { "first_seen", NULL, ROW_TEXT },
        { "first_seen_ms", NULL, ROW_INT },
};

/* Appends o to the array rows (o consumed); -ENOMEM when either is NULL. */
static int append(json_t *rows, json_t *o) {
        if (!rows || !o || json_array_append_new(rows, o) < 0) {
                json_decref(o);
                return -ENOMEM;
        }
        return 0;
}

/* Finishes a row: o in column order when r >= 0, dropped otherwise. */
static json_t *row_done(json_t *o, int r, const row_column *cols, size_t n_cols) {
        if (r < 0) {
                json_decref(o);
                return NULL;
        }
        return row_in_column_order(o, cols, n_cols);
}

static int root_row(void *userdata, const agent_root *root) {
        static const char *const keys[] = { "path", "exists", "state" };
        json_t *values[] = { row_str(root->path), json_boolean(root->exists),
                             json_string(root->exists ? "watched" : "missing (retried)") };
        json_t *o = json_object();
        int r = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (r >= 0)
                r = row_set_time(o, "updated_at", root->updated_at);
        return append(userdata, row_done(o, r, root_columns, ELEMENTSOF(root_columns)));
}

static int model_row(void *userdata, const agent_model *m) {
        static const char *const keys[] = { "root", "name", "model_digest", "format", "layout", "size", "bytes" };
        char size[32];
        ProtobufCBinaryData digest = { .len = sizeof(m->digest), .data = (uint8_t *) m->digest };
        json_t *values[] = { row_str(m->root), row_str_or_null(m->name), row_digest(digest),
                             row_str_or_null(m->format), row_str_or_null(m->layout),
                             json_string(cli_format_bytes(m->bytes, size, sizeof(size))),
                             json_integer((json_int_t) m->bytes) };
        json_t *o = json_object();
        int r = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (r >= 0)
                r = row_set_time(o, "first_seen", m->first_seen);
        if (r >= 0)
                r = row_set_time(o, "changed_at", m->changed_at);
        return append(userdata, row_done(o, r, model_columns, ELEMENTSOF(model_columns)));
}

static int finding_row(void *userdata, const agent_finding *f) {
        static const char *const keys[] = { "path", "kind", "detail" };
        json_t *values[] = { row_str(f->path), row_str(f->kind), row_str_or_null(f->detail) };
        json_t *o = json_object();
        int r = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (r >= 0)
                r = row_set_time(o, "first_seen", f->first_seen);
        return append(userdata, row_done(o, r, finding_columns, ELEMENTSOF(finding_columns)));
}

/* ---- the summary -------------------------------------------------------- */

/* What the summary lines show, read once for both output forms. */
typedef struct status_info {
        char *host_id;
        char *collector;
        char *agent_version;
        char *last_error;
        uint64_t last_contact;
        uint64_t last_error_at;
        uint64_t acked_through;
        uint64_t sent_through;
        agent_state_counts counts;
} status_info;

static void status_info_done(status_info *i) {
        free(i->host_id);
        free(i->collector);
        free(i->agent_version);
        free(i->last_error);
}

static int read_info(agent_state *s, status_info *i) {
        int r = agent_state_get_meta(s, AGENT_META_HOST_ID, &i->host_id);
        if (r >= 0)
                r = agent_state_get_meta(s, AGENT_META_COLLECTOR, &i->collector);
        if (r >= 0)
                r = agent_state_get_meta(s, AGENT_META_AGENT_VERSION, &i->agent_version);
        if (r >= 0)
                r = agent_state_get_meta(s, AGENT_META_LAST_ERROR, &i->last_error);
        /* Numbers the agent wrote; a damaged one reads as "never" rather
         * than hiding the rest. */
        (void) agent_state_get_meta_u64(s, AGENT_META_LAST_CONTACT, &i->last_contact);
        (void) agent_state_get_meta_u64(s, AGENT_META_LAST_ERROR_AT, &i->last_error_at);
        (void) agent_state_get_meta_u64(s, AGENT_META_ACKED_THROUGH, &i->acked_through);
        (void) agent_state_get_meta_u64(s, AGENT_META_SENT_THROUGH, &i->sent_through);
        if (r >= 0)
                r = agent_state_counts_get(s, &i->counts);
        return r;
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t clamp_ms(uint64_t v) {
        return v > INT64_MAX ? INT64_MAX : (int64_t) v;
}

/* Seconds from ms to now (0 for a clock that went back); -1 for "never". */
static int64_t age_s(int64_t ms, int64_t now) {
        if (ms <= 0)
                return -1;
        return ms < now ? (now - ms) / 1000 : 0;
}

/* "2026-01-31T12:00:00Z (42 s ago)", or "never". */
static const char *when(int64_t ms, int64_t now, char *buf, size_t size) {
        struct tm tm;
        time_t t = (time_t) (ms / 1000);
        char iso[64];
        if (ms <= 0 || !gmtime_r(&t, &tm) || strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return "never";
        snprintf(buf, size, "%s (%" PRId64 " s ago)", iso, age_s(ms, now));
        return buf;
}

static void print_summary(const char *path, const status_info *i, int64_t now) {
        char buf[512], t[128], bytes[32];
        printf("state:         %s\n", mp_printable(buf, sizeof(buf), path));
        printf("host id:       %s\n",
               i->host_id && i->host_id[0] ? mp_printable(buf, sizeof(buf), i->host_id) : "(not enrolled)");
        printf("collector:     %s\n", i->collector && i->collector[0] ? mp_printable(buf, sizeof(buf), i->collector)
                                                                      : "-");
        if (i->agent_version && i->agent_version[0])
                printf("agent:         %s\n", mp_printable(buf, sizeof(buf), i->agent_version));
        printf("last contact:  %s\n", when(clamp_ms(i->last_contact), now, t, sizeof(t)));
        if (i->last_error && i->last_error[0]) {
                printf("last error:    ");
                if (i->last_error_at)
                        printf("%s: ", when(clamp_ms(i->last_error_at), now, t, sizeof(t)));
                printf("%s\n", mp_printable(buf, sizeof(buf), i->last_error));
        } else
                printf("last error:    -\n");
        printf("outbox:        %" PRIu64 " %s pending, %s", i->counts.outbox_pending,
               i->counts.outbox_pending == 1 ? "event" : "events",
               cli_format_bytes(i->counts.outbox_bytes, bytes, sizeof(bytes)));
        if (i->counts.outbox_pending > 0)
                printf(", oldest observed %s", when(i->counts.outbox_oldest, now, t, sizeof(t)));
        printf("; acknowledged through #%" PRIu64 ", sent through #%" PRIu64 "\n", i->acked_through,
               i->sent_through);
        printf("files:         %" PRIu64 " known\n", i->counts.files);
}

/* The summary as JSON members of o. */
static int summary_json(json_t *o, const char *path, const status_info *i, int64_t now) {
        static const char *const keys[] = { "state", "host_id", "collector", "agent_version", "last_error",
                                            "files" };
        json_t *values[] = { row_str(path), row_str_or_null(i->host_id), row_str_or_null(i->collector),
                             row_str_or_null(i->agent_version), row_str_or_null(i->last_error),
                             json_integer((json_int_t) i->counts.files) };
        int r = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (r >= 0)
                r = row_set_time(o, "last_contact", clamp_ms(i->last_contact));
        if (r >= 0)
                r = row_set_time(o, "last_error_at", clamp_ms(i->last_error_at));
        int64_t age = age_s(clamp_ms(i->last_contact), now);
        if (r >= 0 && json_object_set_new(o, "last_contact_age_s", age >= 0 ? json_integer(age) : json_null()) < 0)
                r = -ENOMEM;

        static const char *const outbox_keys[] = { "events", "bytes", "acked_through", "sent_through" };
        json_t *outbox = json_object();
        json_t *outbox_values[] = { json_integer((json_int_t) i->counts.outbox_pending),
                                    json_integer((json_int_t) i->counts.outbox_bytes),
                                    json_integer((json_int_t) clamp_ms(i->acked_through)),
                                    json_integer((json_int_t) clamp_ms(i->sent_through)) };
        int r2 = row_set_all(outbox, outbox_keys, outbox_values, ELEMENTSOF(outbox_keys));
        if (r2 >= 0)
                r2 = row_set_time(outbox, "oldest", i->counts.outbox_oldest);
        age = age_s(i->counts.outbox_oldest, now);
        if (r2 >= 0 && json_object_set_new(outbox, "oldest_age_s", age >= 0 ? json_integer(age) : json_null()) < 0)
                r2 = -ENOMEM;
        if (r2 < 0 || json_object_set_new(o, "outbox", outbox) < 0) {
                if (r2 < 0)
                        json_decref(outbox);
                r2 = -ENOMEM;
        }
        return r < 0 ? r : r2;
}

/* ---- the command -------------------------------------------------------- */

enum { OPT_STATE_DIR = 256, OPT_STATE, OPT_JSON };

typedef struct status_options {
        const char *state_dir;
        const char *state;
        bool json;
} status_options;

/* Returns 1 after --help, 0 to go on, -EINVAL after printing why. */
static int parse_options(int argc, char **argv, status_options *o) {
        static const struct option options[] = {
                { "state-dir", required_argument, NULL, OPT_STATE_DIR },
                { "state",     required_argument, NULL, OPT_STATE },
                { "json",      no_argument,       NULL, OPT_JSON },
                { "help",      no_argument,       NULL, 'h' },
                {}
        };
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h': usage(stdout); return 1;
                case OPT_STATE_DIR: o->state_dir = optarg; break;
                case OPT_STATE: o->state = optarg; break;
                case OPT_JSON: o->json = true; break;
                default: usage(stderr); return -EINVAL;
                }
        if (o->state && o->state_dir) {
                fprintf(stderr, "modelprov: error: give --state-dir or --state, not both\n");
                return -EINVAL;
        }
        if ((o->state && !o->state[0]) || (o->state_dir && !o->state_dir[0])) {
                fprintf(stderr, "modelprov: error: --state and --state-dir need a path\n");
                return -EINVAL;
        }
        return cli_want_operands(argc, 0, usage);
}

/* Opens the state DB read-only, saying in words why not. */
static int open_state(const char *path, agent_state **ret) {
        mp_error err = {0};
        char buf[512];
        int r = agent_state_open_readonly(path, ret, &err);
        if (r == -ENOENT)
                fprintf(stderr, "modelprov: error: no agent state at %s (is modelprovd running? see --state-dir)\n",
                        mp_printable(buf, sizeof(buf), path));
        else if (r == -EACCES)
                fprintf(stderr, "modelprov: error: cannot read the agent state at %s: permission denied (it is"
                        " private to the agent's user, as it holds the host key: run as that user or root)\n",
                        mp_printable(buf, sizeof(buf), path));
        else if (r < 0)
                cli_print_error(&err);
        return r;
}

/* Reads a section through foreach into a new array; NULL on failure. */
#define SECTION(s, foreach, row_fn)                                             \
        ({                                                                      \
                json_t *_a = json_array();                                      \
                if (_a && foreach((s), (row_fn), _a) < 0) {                     \
                        json_decref(_a);                                        \
                        _a = NULL;                                              \
                }                                                               \
                _a;                                                             \
        })

static int print_tables(const char *path, const status_info *info, json_t *roots, json_t *models,
                        json_t *findings, int64_t now) {
        char footer[128];
        print_summary(path, info, now);
        putchar('\n');
        snprintf(footer, sizeof(footer), "%zu watch %s", json_array_size(roots),
                 json_array_size(roots) == 1 ? "root" : "roots");
        int r = rows_print(ROWS_TABLE, json_incref(roots), root_columns, ELEMENTSOF(root_columns), footer);
        putchar('\n');
        snprintf(footer, sizeof(footer), "%zu %s", json_array_size(models), json_array_size(models) == 1 ? "model"
                                                                                                          : "models");
        if (r >= 0)
                r = rows_print(ROWS_TABLE, json_incref(models), model_columns, ELEMENTSOF(model_columns), footer);
        putchar('\n');
        snprintf(footer, sizeof(footer), "%zu %s", json_array_size(findings),
                 json_array_size(findings) == 1 ? "finding" : "findings");
        if (r >= 0)
                r = rows_print(ROWS_TABLE, json_incref(findings), finding_columns, ELEMENTSOF(finding_columns),
                               footer);
        return r;
}

static int print_json(const char *path, const status_info *info, json_t *roots, json_t *models, json_t *findings,
                      int64_t now) {
        json_t *o = json_object();
        int r = o ? summary_json(o, path, info, now) : -ENOMEM;
        static const char *const keys[] = { "roots", "models", "findings" };
        json_t *values[] = { json_incref(roots), json_incref(models), json_incref(findings) };
        int r2 = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (r < 0 || r2 < 0) {
                json_decref(o);
                o = NULL;
        }
        return cli_print_json(o);
}

int cmd_status(int argc, char **argv) {
        status_options o = {0};
        int r = parse_options(argc, argv, &o);
        if (r != 0)
                return r > 0 ? EXIT_OK : EXIT_ERROR;

        _cleanup_(freep) char *joined = NULL;
        const char *path = o.state;
        if (!path) {
                joined = mp_path_join(o.state_dir ? o.state_dir : AGENT_STATE_DEFAULT_DIR, AGENT_STATE_FILE);
                if (!joined) {
                        fprintf(stderr, "modelprov: error: out of memory\n");
                        return EXIT_ERROR;
                }
                path = joined;
        }

        _cleanup_(agent_state_closep) agent_state *s = NULL;
        if (open_state(path, &s) < 0)
                return EXIT_ERROR;

        _cleanup_(status_info_done) status_info info = {0};
        r = read_info(s, &info);
        json_t *roots = SECTION(s, agent_state_foreach_root, root_row);
        json_t *models = SECTION(s, agent_state_foreach_model, model_row);
        json_t *findings = SECTION(s, agent_state_foreach_finding, finding_row);
        if (r < 0 || !roots || !models || !findings) {
                char buf[512];
                int code = r < 0 ? -r : EIO;
                fprintf(stderr, "modelprov: error: %s: cannot read the agent state: %s\n",
                        mp_printable(buf, sizeof(buf), path),
                        code == EBADMSG ? "the state DB is damaged" : strerror(code));
                json_decref(roots);
                json_decref(models);
                json_decref(findings);
                return EXIT_ERROR;
        }

        int64_t now = now_ms();
        r = o.json ? print_json(path, &info, roots, models, findings, now)
                   : print_tables(path, &info, roots, models, findings, now);
        json_decref(roots);
        json_decref(models);
        json_decref(findings);
        return r < 0 ? EXIT_ERROR : EXIT_OK;
}
