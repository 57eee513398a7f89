/* report_text.c - the report as Markdown (for tickets) and as CSV rows
 * (report_write.h).
 *
 * Markdown keeps the HTML page's order: findings first, totals, models by
 * base model, hosts; the lineage graph becomes the base model column.
 * CSV is one row per path: the inventory (a host's path, its model, base
 * model and host state), or in an incident report the affected paths.  A
 * CSV cell that starts with = + - @ or a tab would be a formula to a
 * spreadsheet: such cells get a leading apostrophe. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "report_write.h"
#include "rows.h"
#include "util/macro.h"

/* ---- Markdown ------------------------------------------------------------ */

static void md_row(FILE *f, size_t n, ...) {
        va_list ap;
        va_start(ap, n);
        fputs("|", f);
        for (size_t i = 0; i < n; i++) {
                const char *s = va_arg(ap, const char *);
                fputc(' ', f);
                report_put_markdown(f, s && s[0] ? s : "-");
                fputs(" |", f);
        }
        fputc('\n', f);
        va_end(ap);
}

/* Header row and separator; titles are ours. */
static void md_head(FILE *f, const char *const *titles, size_t n) {
        fputs("|", f);
        for (size_t i = 0; i < n; i++)
                fprintf(f, " %s |", titles[i]);
        fputs("\n|", f);
        for (size_t i = 0; i < n; i++)
                fputs(" --- |", f);
        fputc('\n', f);
}

static void md_findings(const report *r, FILE *f) {
        static const char *const titles[] = { "Host", "Path", "Kind", "Detail", "File", "Reported", "Status" };
        char when[64];
        fprintf(f, "## Findings (%zu)\n\n", r->n_findings);
        if (r->n_findings == 0) {
                fputs("No agent reported a finding.\n\n", f);
                return;
        }
        md_head(f, titles, ELEMENTSOF(titles));
        for (size_t i = 0; i < r->n_findings; i++) {
                const report_finding *x = &r->findings[i];
                md_row(f, 7, report_host_name(r, x->host, x->host_id), x->path, x->event->finding->kind,
                       x->event->finding->detail, x->event->finding->file, report_time(x->event->observed_at, when, sizeof(when)),
                       x->installed ? "installed" : "not in the inventory now");
        }
        fputc('\n', f);
}

static void md_models(const report *r, FILE *f) {
        static const char *const titles[] = { "Model", "Digest", "Relation", "Verdict", "Score", "Copies", "Hosts",
                                              "Findings" };
        char title[256], score[32], copies[32], hosts[32], findings[32];
        fputs("## Models by base model\n\n", f);
        for (size_t g = 0; g < r->n_groups; g++) {
                const report_group *gr = &r->groups[g];
                fputs("### ", f);
                report_put_markdown(f, report_group_title(gr, title, sizeof(title)));
                fprintf(f, " (%s: %zu %s on %zu %s)\n\n", gr->kind == REPORT_GROUP_CATALOG ? "catalog entry"
                                                                                         : "no catalog match",
                        gr->n_models, gr->n_models == 1 ? "model" : "models", gr->n_hosts,
                        gr->n_hosts == 1 ? "host" : "hosts");
                md_head(f, titles, ELEMENTSOF(titles));
                for (size_t i = 0; i < r->n_models; i++) {
                        const report_model *m = &r->models[i];
                        if (m->group != g)
                                continue;
                        char digest[16];
                        snprintf(digest, sizeof(digest), "%.12s", m->hex);
                        snprintf(score, sizeof(score), m->match ? "%.3f" : "-", m->match ? m->match->score : 0.0);
                        snprintf(copies, sizeof(copies), "%zu", m->n_copies);
                        snprintf(hosts, sizeof(hosts), "%zu", m->n_hosts);
                        snprintf(findings, sizeof(findings), "%zu", m->n_findings);
                        md_row(f, 8, m->name, digest, m->match ? m->match->relation : "same family",
                               m->match ? m->match->verdict : NULL, score, copies, hosts, findings);
                }
                fputc('\n', f);
        }
}

static void md_hosts(const report *r, FILE *f) {
        static const char *const titles[] = { "Host", "Host ID", "Agent", "Last contact", "Models", "Status" };
        char when[64], models[32];
        fputs("## Hosts\n\n", f);
        md_head(f, titles, ELEMENTSOF(titles));
        for (size_t i = 0; i < r->n_hosts; i++) {
                const Modelprov__V1__Host *h = r->hosts[i].host;
                snprintf(models, sizeof(models), "%zu", r->hosts[i].n_copies);
                md_row(f, 6, h->hostname, h->host_id, h->agent_version, report_time(h->last_seen, when, sizeof(when)),
                       models, h->stale ? "STALE" : "reporting");
        }
        fputc('\n', f);
}

static void md_affected(const report *r, FILE *f) {
        static const char *const titles[] = { "Host", "Path", "Model", "Relation", "Verdict", "Score" };
        char score[32];
        fputs("## Affected hosts and paths\n\n", f);
        if (r->blast->n_hits == 0) {
                fputs("Nothing in the fleet is affected.\n\n", f);
                return;
        }
        md_head(f, titles, ELEMENTSOF(titles));
        for (size_t i = 0; i < r->blast->n_hits; i++) {
                const Modelprov__V1__BlastRadiusHit *h = r->blast->hits[i];
                if (!h->item)
                        continue;
                snprintf(score, sizeof(score), "%.3f", h->score);
                md_row(f, 6, h->item->hostname, h->item->path, h->item->model_name, h->relation, h->verdict, score);
        }
        fputc('\n', f);
}

int report_write_markdown(const report *r, FILE *f) {
        char when[64];
        if (r->incident) {
                fputs("# Blast radius: ", f);
                report_put_markdown(f, r->target);
                fputs("\n\n", f);
        } else
                fputs("# Fleet inventory\n\n", f);
        fprintf(f, "Generated %s by modelprov %s from the collector ", report_time(r->generated_at, when, sizeof(when)),
                MODELPROV_VERSION);
        report_put_markdown(f, r->collector);
        fputs(".\n\n", f);
        if (r->incident) {
                if (r->n_hit_paths > 0)
                        fprintf(f, "**%zu %s on %zu %s affected** ", r->n_hit_paths,
                                r->n_hit_paths == 1 ? "path" : "paths", r->n_hit_hosts,
                                r->n_hit_hosts == 1 ? "host" : "hosts");
                else
                        fputs("**Nothing affected** ", f);
                fprintf(f, "(%" PRIu64 " fingerprints considered, %" PRIu64 " scored).\n\n",
                        r->blast->fingerprints_considered, r->blast->fingerprints_scored);
        }
        md_findings(r, f);
        if (r->incident)
                md_affected(r, f);
        fprintf(f, "## Totals\n\n- Hosts: %zu (%zu stale)\n- Models installed: %zu\n- Distinct weights: %zu\n"
                   "- Findings: %zu\n\n", r->n_hosts, r->n_stale, r->n_copies, r->n_models, r->n_findings);
        md_models(r, f);
        md_hosts(r, f);
        fputs("---\n\n", f);
        report_put_markdown(f, report_grouping_note);
        fputs("\n", f);
        if (r->history_truncated)
                fprintf(f, "\n**Only the %d most recent agent events were read: older findings and catalog matches "
                           "are missing.**\n", CLI_HISTORY_LIMIT_MAX);
        return 0;
}

/* ---- CSV ---------------------------------------------------------------- */

/* A JSON string for a CSV cell: text a spreadsheet would run as a formula
 * gets a leading apostrophe. */
static json_t *csv_str(const char *s) {
        if (s && s[0] && strchr("=+-@\t\r", s[0])) {
                _cleanup_(freep) char *quoted = NULL;
                if (asprintf(&quoted, "'%s", s) < 0)
                        return NULL;
                return row_str(quoted);
        }
        return row_str_or_null(s);
}

static const row_column inventory_columns[] = {
        { "host", NULL, ROW_TEXT },           { "host_id", NULL, ROW_TEXT },       { "host_stale", NULL, ROW_BOOL },
        { "host_last_seen", NULL, ROW_TEXT }, { "path", NULL, ROW_TEXT },          { "model_name", NULL, ROW_TEXT },
        { "model_digest", NULL, ROW_TEXT },   { "format", NULL, ROW_TEXT },        { "base_model", NULL, ROW_TEXT },
        { "base_kind", NULL, ROW_TEXT },      { "relation", NULL, ROW_TEXT },      { "verdict", NULL, ROW_TEXT },
        { "score", NULL, ROW_SCORE },         { "findings", NULL, ROW_INT },       { "first_seen", NULL, ROW_TEXT },
        { "last_seen", NULL, ROW_TEXT },
};

static json_t *inventory_row(const report *r, const report_copy *c) {
        const report_model *m = &r->models[c->model];
        const report_group *g = &r->groups[m->group];
        const Modelprov__V1__Host *h = c->host != REPORT_NONE ? r->hosts[c->host].host : NULL;
        char title[256];
        static const char *const keys[] = { "host", "host_id", "host_stale", "path", "model_name", "model_digest",
                                            "format", "base_model", "base_kind", "relation", "verdict", "score",
                                            "findings" };
        json_t *values[] = {
                csv_str(c->item->hostname), csv_str(c->item->host_id), h ? json_boolean(h->stale) : json_null(),
                csv_str(c->item->path), csv_str(m->name), json_string(m->hex), csv_str(m->format),
                csv_str(report_group_title(g, title, sizeof(title))),
                json_string(g->kind == REPORT_GROUP_CATALOG ? "catalog" : "family"),
                m->match ? csv_str(m->match->relation) : json_null(), m->match ? csv_str(m->match->verdict) : json_null(),
                m->match ? row_score(m->match->score) : json_null(), json_integer((json_int_t) c->n_findings),
        };
        json_t *o = json_object();
        int k = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (k >= 0)
                k = row_set_time(o, "host_last_seen", h ? h->last_seen : 0);
        if (k >= 0)
                k = row_set_time(o, "first_seen", c->item->first_seen);
        if (k >= 0)
                k = row_set_time(o, "last_seen", c->item->last_seen);
        if (k < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static const row_column blast_columns[] = {
        { "host", NULL, ROW_TEXT },      { "host_id", NULL, ROW_TEXT },    { "path", NULL, ROW_TEXT },
        { "model_name", NULL, ROW_TEXT }, { "model_digest", NULL, ROW_TEXT }, { "relation", NULL, ROW_TEXT },
        { "verdict", NULL, ROW_TEXT },   { "score", NULL, ROW_SCORE },     { "present", NULL, ROW_BOOL },
        { "last_seen", NULL, ROW_TEXT },
};

static json_t *blast_row(const Modelprov__V1__BlastRadiusHit *h) {
        static const char *const keys[] = { "host", "host_id", "path", "model_name", "model_digest", "relation",
                                            "verdict", "score", "present" };
        json_t *values[] = { csv_str(h->item->hostname), csv_str(h->item->host_id), csv_str(h->item->path),
                             csv_str(h->item->model_name), row_digest(h->item->model_digest), csv_str(h->relation),
                             csv_str(h->verdict), row_score(h->score), json_boolean(h->item->present) };
        json_t *o = json_object();
        int k = row_set_all(o, keys, values, ELEMENTSOF(keys));
        if (k >= 0)
                k = row_set_time(o, "last_seen", h->item->last_seen);
        if (k < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

int report_write_csv(const report *r, FILE *f) {
        json_t *rows = json_array();
        bool ok = rows != NULL;
        if (r->incident)
                for (size_t i = 0; ok && i < r->blast->n_hits; i++) {
                        if (r->blast->hits[i]->item)
                                ok = json_array_append_new(rows, blast_row(r->blast->hits[i])) == 0;
                }
        else
                for (size_t i = 0; ok && i < r->n_copies; i++)
                        ok = json_array_append_new(rows, inventory_row(r, &r->copies[i])) == 0;
        if (!ok) {
                json_decref(rows);
                fprintf(stderr, "modelprov: error: out of memory\n");
                return -ENOMEM;
        }
        if (r->incident)
                rows_write_csv(f, rows, blast_columns, ELEMENTSOF(blast_columns));
        else
                rows_write_csv(f, rows, inventory_columns, ELEMENTSOF(inventory_columns));
        json_decref(rows);
        return 0;
}
