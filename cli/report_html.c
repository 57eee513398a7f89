/* report_html.c - the report as one self-contained HTML page: inline CSS,
 * the lineage graph as inline SVG, no script at all, and a
 * Content-Security-Policy that forbids fetching anything, so the file is
 * safe to open offline or from a mail (report_write.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "report_graph.h"
#include "report_write.h"
#include "util/macro.h"

static const char style[] =
        "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0 auto;"
        "max-width:1600px;padding:1.5em;color:#1d1d1f;background:#fff}"
        "h1{margin:0 0 .2em;font-size:1.7em}h2{margin:1.6em 0 .5em;font-size:1.25em;border-bottom:1px solid #ddd}"
        ".meta,footer{color:#555;font-size:.9em}footer{margin-top:2.5em;border-top:1px solid #ddd;padding-top:.8em}"
        "table{border-collapse:collapse;width:100%;margin:.4em 0}th,td{text-align:left;padding:.3em .6em;"
        "border-bottom:1px solid #e4e4e4;vertical-align:top}th{background:#f5f5f7;font-weight:600}"
        "td.num,th.num{text-align:right}code,.mono{font-family:ui-monospace,'DejaVu Sans Mono',monospace;"
        "font-size:.92em;word-break:break-all}"
        ".findings{border:2px solid #c62828;background:#fff4f3;border-radius:8px;padding:.2em 1em .8em;margin:1em 0}"
        ".findings h2{color:#b71c1c;border:0}.findings.none{border-color:#2e7d32;background:#f3faf2}"
        ".findings.none h2{color:#2e7d32}"
        ".totals{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}.tile{border:1px solid #ddd;border-radius:8px;"
        "padding:.6em 1em;min-width:9em;background:#fafafa}.tile .n{display:block;font-size:1.9em;font-weight:700}"
        ".tile.alert{border-color:#c62828;color:#b71c1c;background:#fff4f3}"
        "figure.graph{margin:0;border:1px solid #ddd;border-radius:8px;padding:.5em;overflow:auto;background:#fcfcfd}"
        "figure.graph svg{max-width:100%;height:auto}"
        "tr.group th{background:#e8eef7}tr.hit td{background:#fff0ee}"
        ".badge{display:inline-block;padding:0 .45em;border-radius:4px;font-size:.85em;font-weight:600}"
        ".badge.stale{background:#fff3cd;color:#7a5b00}.badge.ok{background:#e7f4e4;color:#1b5e20}"
        ".badge.bad{background:#c62828;color:#fff}"
        ".incident{display:grid;grid-template-columns:minmax(0,3fr) minmax(22em,2fr);gap:1em;align-items:start}"
        "@media (max-width:1100px){.incident{grid-template-columns:1fr}}"
        ".summary{font-size:1.1em;font-weight:600}.summary.hit{color:#b71c1c}";

/* Literal markup of ours, printf style; %s arguments are trusted text. */
static void out(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out(FILE *f, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
}

/* <tag class=...>untrusted text</tag> */
static void cell(FILE *f, const char *cls, const char *text) {
        if (cls)
                out(f, "<td class=\"%s\">", cls);
        else
                fputs("<td>", f);
        report_put_html(f, text && text[0] ? text : "-");
        fputs("</td>", f);
}

static void cell_num(FILE *f, uint64_t n) {
        out(f, "<td class=\"num\">%" PRIu64 "</td>", n);
}

static void cell_score(FILE *f, double score, bool have) {
        if (have)
                out(f, "<td class=\"num\">%.3f</td>", score);
        else
                fputs("<td class=\"num\">-</td>", f);
}

static void head_row(FILE *f, const char *const *titles, size_t n) {
        fputs("<thead><tr>", f);
        for (size_t i = 0; i < n; i++)
                out(f, "<th%s>%s</th>", titles[i][0] == '#' ? " class=\"num\"" : "",
                    titles[i][0] == '#' ? titles[i] + 1 : titles[i]);
        fputs("</tr></thead>\n", f);
}

static void page_head(const report *r, FILE *f, const char *title) {
        char when[64];
        out(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
               "style-src 'unsafe-inline'; img-src data:\">\n"
               "<meta name=\"referrer\" content=\"no-referrer\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<meta name=\"generator\" content=\"modelprov %s\">\n<title>", MODELPROV_VERSION);
        report_put_html(f, title);
        out(f, "</title>\n<style>%s</style>\n</head>\n<body>\n<header>\n<h1>", style);
        report_put_html(f, title);
        out(f, "</h1>\n<p class=\"meta\">Generated %s by modelprov %s from the collector <code>",
            report_time(r->generated_at, when, sizeof(when)), MODELPROV_VERSION);
        report_put_html(f, r->collector);
        fputs("</code>.</p>\n</header>\n", f);
}

static void findings_section(const report *r, FILE *f) {
        static const char *const titles[] = { "Host", "Path", "Kind", "Detail", "File", "Reported", "Status" };
        char when[64];
        out(f, "<section id=\"findings\" class=\"findings%s\">\n<h2>Findings (%zu)</h2>\n",
            r->n_findings ? "" : " none", r->n_findings);
        if (r->n_findings == 0) {
                fputs("<p>No agent reported a finding.</p>\n</section>\n", f);
                return;
        }
        fputs("<table>\n", f);
        head_row(f, titles, ELEMENTSOF(titles));
        fputs("<tbody>\n", f);
        for (size_t i = 0; i < r->n_findings; i++) {
                const report_finding *x = &r->findings[i];
                const Modelprov__V1__Finding *fd = x->event->finding;
                fputs("<tr>", f);
                cell(f, NULL, report_host_name(r, x->host, x->host_id));
                cell(f, "mono", x->path);
                out(f, "<td><span class=\"badge bad\">");
                report_put_html(f, fd->kind);
                fputs("</span></td>", f);
                cell(f, NULL, fd->detail);
                cell(f, "mono", fd->file);
                cell(f, NULL, report_time(x->event->observed_at, when, sizeof(when)));
                cell(f, NULL, x->installed ? "installed" : "not in the inventory now");
                fputs("</tr>\n", f);
        }
        fputs("</tbody></table>\n</section>\n", f);
}

static void tile(FILE *f, const char *id, size_t n, const char *what, const char *sub, bool alert) {
        out(f, "<div class=\"tile%s\"><span class=\"n\" id=\"%s\">%zu</span>%s", alert ? " alert" : "", id, n, what);
        if (sub)
                out(f, "<br><small>%s</small>", sub);
        fputs("</div>\n", f);
}

static void totals_section(const report *r, FILE *f) {
        char stale[64];
        snprintf(stale, sizeof(stale), "%zu stale", r->n_stale);
        fputs("<section id=\"totals\" class=\"totals\">\n", f);
        tile(f, "total-hosts", r->n_hosts, "hosts", stale, false);
        tile(f, "total-models", r->n_copies, "models installed", NULL, false);
        tile(f, "total-weights", r->n_models, "distinct weights", NULL, false);
        tile(f, "total-findings", r->n_findings, "findings", NULL, r->n_findings > 0);
        fputs("</section>\n", f);
}

static int graph_figure(const report *r, FILE *f) {
        if (r->n_models == 0 && !r->incident) {
                fputs("<p>No host reported a model yet.</p>\n", f);
                return 0;
        }
        _cleanup_(freep) char *svg = NULL;
        int k = report_graph_svg(r, &svg);
        if (k < 0)
                return k;
        out(f, "<figure class=\"graph\" id=\"lineage-graph\">\n%s</figure>\n", svg);
        fputs("<p class=\"meta\">Base models (left) &rarr; models, each edge with the relation and score of the "
              "catalog match &rarr; the hosts holding them (dashed: stale hosts and family groups).", f);
        if (r->incident)
                fputs(" Red: the queried model and its blast radius.", f);
        fputs("</p>\n", f);
        return 0;
}

static void models_section(const report *r, FILE *f) {
        static const char *const titles[] = { "Model", "Digest", "Format", "Relation", "Verdict", "#Score",
                                              "#Copies", "#Hosts", "#Findings" };
        char title[256];
        fputs("<section id=\"models\">\n<h2>Models by base model</h2>\n<table>\n", f);
        head_row(f, titles, ELEMENTSOF(titles));
        for (size_t g = 0; g < r->n_groups; g++) {
                const report_group *gr = &r->groups[g];
                out(f, "<tbody><tr class=\"group\"><th colspan=\"9\">");
                report_put_html(f, report_group_title(gr, title, sizeof(title)));
                out(f, " <small>(%s: %zu %s, %zu %s on %zu %s)</small></th></tr>\n",
                    gr->kind == REPORT_GROUP_CATALOG ? "catalog entry" : "no catalog match", gr->n_models,
                    gr->n_models == 1 ? "model" : "models", gr->n_copies, gr->n_copies == 1 ? "copy" : "copies",
                    gr->n_hosts, gr->n_hosts == 1 ? "host" : "hosts");
                for (size_t i = 0; i < r->n_models; i++) {
                        const report_model *m = &r->models[i];
                        if (m->group != g)
                                continue;
                        out(f, "<tr%s>", m->hit || m->target ? " class=\"hit\"" : "");
                        cell(f, NULL, m->name);
                        out(f, "<td class=\"mono\" title=\"%s\">%.12s</td>", m->hex, m->hex);
                        cell(f, NULL, m->format);
                        cell(f, NULL, m->match ? m->match->relation : "same family");
                        cell(f, NULL, m->match ? m->match->verdict : NULL);
                        cell_score(f, m->match ? m->match->score : 0, m->match);
                        cell_num(f, m->n_copies);
                        cell_num(f, m->n_hosts);
                        cell_num(f, m->n_findings);
                        fputs("</tr>\n", f);
                }
                fputs("</tbody>\n", f);
        }
        fputs("</table>\n</section>\n", f);
}

static void hosts_section(const report *r, FILE *f) {
        static const char *const titles[] = { "Host", "Host ID", "Agent", "Last contact", "#Models", "Status" };
        char when[64];
        fputs("<section id=\"hosts\">\n<h2>Hosts</h2>\n<table>\n", f);
        head_row(f, titles, ELEMENTSOF(titles));
        fputs("<tbody>\n", f);
        for (size_t i = 0; i < r->n_hosts; i++) {
                const Modelprov__V1__Host *h = r->hosts[i].host;
                out(f, "<tr%s>", r->hosts[i].hit ? " class=\"hit\"" : "");
                cell(f, NULL, h->hostname);
                cell(f, "mono", h->host_id);
                cell(f, NULL, h->agent_version);
                cell(f, NULL, report_time(h->last_seen, when, sizeof(when)));
                cell_num(f, r->hosts[i].n_copies);
                out(f, "<td>%s</td></tr>\n", h->stale ? "<span class=\"badge stale\">stale</span>"
                                                      : "<span class=\"badge ok\">reporting</span>");
        }
        fputs("</tbody></table>\n</section>\n", f);
}

static void paths_section(const report *r, FILE *f) {
        static const char *const titles[] = { "Host", "Path", "Model", "Base model", "Last seen" };
        char when[64], title[256];
        fputs("<section id=\"paths\">\n<h2>Where the models are</h2>\n<table>\n", f);
        head_row(f, titles, ELEMENTSOF(titles));
        fputs("<tbody>\n", f);
        for (size_t i = 0; i < r->n_copies; i++) {
                const report_copy *c = &r->copies[i];
                const report_model *m = &r->models[c->model];
                out(f, "<tr%s>", c->hit ? " class=\"hit\"" : "");
                cell(f, NULL, c->item->hostname);
                cell(f, "mono", c->item->path);
                cell(f, NULL, m->name);
                cell(f, NULL, report_group_title(&r->groups[m->group], title, sizeof(title)));
                cell(f, NULL, report_time(c->item->last_seen, when, sizeof(when)));
                fputs("</tr>\n", f);
        }
        fputs("</tbody></table>\n</section>\n", f);
}

static void affected_table(const report *r, FILE *f) {
        static const char *const titles[] = { "Host", "Path", "Model", "Relation", "Verdict", "#Score" };
        fputs("<aside id=\"affected\">\n<h2>Affected hosts and paths</h2>\n", f);
        if (r->blast->n_hits == 0) {
                fputs("<p>Nothing in the fleet is affected.</p>\n</aside>\n", f);
                return;
        }
        fputs("<table>\n", f);
        head_row(f, titles, ELEMENTSOF(titles));
        fputs("<tbody>\n", f);
        for (size_t i = 0; i < r->blast->n_hits; i++) {
                const Modelprov__V1__BlastRadiusHit *h = r->blast->hits[i];
                if (!h->item)
                        continue;
                fputs("<tr class=\"hit\">", f);
                cell(f, NULL, h->item->hostname);
                cell(f, "mono", h->item->path);
                cell(f, NULL, h->item->model_name);
                cell(f, NULL, h->relation);
                cell(f, NULL, h->verdict);
                cell_score(f, h->score, true);
                fputs("</tr>\n", f);
        }
        fputs("</tbody></table>\n</aside>\n", f);
}

static void page_foot(const report *r, FILE *f) {
        fputs("<footer>\n<p>", f);
        report_put_html(f, report_grouping_note);
        fputs("</p>\n", f);
        if (r->history_truncated)
                out(f, "<p><strong>Only the %d most recent agent events were read: older findings and catalog "
                       "matches are missing.</strong></p>\n", CLI_HISTORY_LIMIT_MAX);
        fputs("</footer>\n</body>\n</html>\n", f);
}

int report_write_html(const report *r, FILE *f) {
        int k;
        if (!r->incident) {
                page_head(r, f, "Fleet inventory");
                findings_section(r, f);
                totals_section(r, f);
                fputs("<section id=\"lineage\">\n<h2>Lineage</h2>\n", f);
                k = graph_figure(r, f);
                if (k < 0)
                        return k;
                fputs("</section>\n", f);
                models_section(r, f);
                hosts_section(r, f);
                paths_section(r, f);
                page_foot(r, f);
                return 0;
        }

        _cleanup_(freep) char *title = NULL;
        if (asprintf(&title, "Blast radius: %s", r->target) < 0) {
                title = NULL;
                return -ENOMEM;
        }
        page_head(r, f, title);
        if (r->n_hit_paths > 0)
                out(f, "<p class=\"summary hit\" id=\"summary\">%zu %s on %zu %s affected</p>\n", r->n_hit_paths,
                    r->n_hit_paths == 1 ? "path" : "paths", r->n_hit_hosts, r->n_hit_hosts == 1 ? "host" : "hosts");
        else
                fputs("<p class=\"summary\" id=\"summary\">Nothing affected</p>\n", f);
        out(f, "<p class=\"meta\">%" PRIu64 " fingerprints considered, %" PRIu64 " scored.</p>\n",
            r->blast->fingerprints_considered, r->blast->fingerprints_scored);
        findings_section(r, f);
        fputs("<section id=\"lineage\" class=\"incident\">\n<div>\n<h2>Lineage</h2>\n", f);
        k = graph_figure(r, f);
        if (k < 0)
                return k;
        fputs("</div>\n", f);
        affected_table(r, f);
        fputs("</section>\n", f);
        totals_section(r, f);
        models_section(r, f);
        hosts_section(r, f);
        page_foot(r, f);
        return 0;
}
