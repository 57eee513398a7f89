/* report_graph.c - the lineage graph through libgvc (report_graph.h). */
#include "report_graph.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <graphviz/gvc.h>

#include "report_write.h"
#include "util/macro.h"
#include "util/strutil.h"

#define HIT_COLOR "#c62828"
#define HIT_FILL "#fde4e1"
#define TARGET_FILL "#f8b4ad"

/* A label's worth of untrusted text as Graphviz reads a plain label: valid
 * UTF-8 cut on a character boundary at max bytes (mp_utf8_sanitize: bad
 * bytes as "\xNN", "..." when cut), control characters as '?', bidi
 * controls as U+FFFD, '\' doubled (else "\N", "\G", "\l" would be
 * expanded) and '&' written as "&amp;" (Graphviz passes entity references
 * through to the SVG unescaped, so a literal "&lt;" in a name would show as
 * "<"; XML-escaping '&' first keeps it literal). */
static char *gv_text(const char *s, size_t max) {
        _cleanup_(freep) char *utf8 = mp_utf8_sanitize(s ? s : "", max);
        if (!utf8)
                return NULL;

        size_t n = 0;
        for (const char *p = utf8; *p; p++)
                n += *p == '\\' ? 2 : *p == '&' ? 5 : 1;
        char *out = malloc(n + 1), *o = out;
        if (!out)
                return NULL;
        for (const char *p = utf8; *p; p++)
                if (report_bidi_control_at(p) > 0) {
                        o = stpcpy(o, "\xef\xbf\xbd");       /* as long as the control */
                        p += 2;
                } else if (*p == '\\')
                        o = stpcpy(o, "\\\\");
                else if (*p == '&')
                        o = stpcpy(o, "&amp;");
                else if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *o++ = '?';
                else
                        *o++ = *p;
        *o = '\0';
        return out;
}

/* Sets attribute name to value (trusted text of ours) on obj. */
static void set(void *obj, const char *name, const char *value) {
        agsafeset(obj, (char *) name, (char *) value, "");
}

/* Sets obj's label to fmt, whose %s arguments must come from gv_text(). */
static int set_label(void *obj, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_label(void *obj, const char *fmt, ...) {
        _cleanup_(freep) char *label = NULL;
        va_list ap;
        va_start(ap, fmt);
        int n = vasprintf(&label, fmt, ap);
        va_end(ap);
        if (n < 0) {
                label = NULL;
                return -ENOMEM;
        }
        set(obj, "label", label);
        return 0;
}

static void highlight(void *obj, bool target, bool is_node) {
        set(obj, "class", target ? "target" : "hit");
        set(obj, "color", HIT_COLOR);
        set(obj, "penwidth", "2.5");
        if (is_node)
                set(obj, "fillcolor", target ? TARGET_FILL : HIT_FILL);
        else
                set(obj, "fontcolor", HIT_COLOR);
}

typedef struct graph_nodes {
        Agnode_t **groups, **models, **hosts;
} graph_nodes;

static int add_group_nodes(const report *r, Agraph_t *g, graph_nodes *n) {
        for (size_t i = 0; i < r->n_groups; i++) {
                const report_group *gr = &r->groups[i];
                char name[32], title[256];
                snprintf(name, sizeof(name), "g%zu", i);
                n->groups[i] = agnode(g, name, 1);
                _cleanup_(freep) char *t = gv_text(report_group_title(gr, title, sizeof(title)), REPORT_GRAPH_LABEL_MAX);
                if (!t || set_label(n->groups[i], "%s\n%s", t,
                                    gr->kind == REPORT_GROUP_CATALOG ? "catalog base model" : "no catalog match") < 0)
                        return -ENOMEM;
                set(n->groups[i], "fillcolor", gr->kind == REPORT_GROUP_CATALOG ? "#dce8f7" : "#eeeeee");
                if (gr->kind == REPORT_GROUP_FAMILY)
                        set(n->groups[i], "style", "rounded,filled,dashed");
                if (gr->target)
                        highlight(n->groups[i], true, true);
        }
        return 0;
}

static int add_model_nodes(const report *r, Agraph_t *g, graph_nodes *n) {
        for (size_t i = 0; i < r->n_models; i++) {
                const report_model *m = &r->models[i];
                char name[32], score[64];
                snprintf(name, sizeof(name), "m%zu", i);
                Agnode_t *node = n->models[i] = agnode(g, name, 1);
                _cleanup_(freep) char *t = gv_text(m->name[0] ? m->name : "(no name)", REPORT_GRAPH_LABEL_MAX);
                /* Affected: the relation and score of the hit. */
                _cleanup_(freep) char *hit_rel = m->hit && !m->target
                                                         ? gv_text(m->hit->relation, REPORT_GRAPH_LABEL_MAX) : NULL;
                char findings[48] = "";
                if (hit_rel)
                        snprintf(score, sizeof(score), " %.3f", m->hit->score);
                if (m->n_findings)
                        snprintf(findings, sizeof(findings), "\n%zu %s", m->n_findings,
                                 m->n_findings == 1 ? "finding" : "findings");
                if (!t || (m->hit && !m->target && !hit_rel) ||
                    set_label(node, "%s\n%.12s%s%s%s%s%s", t, m->hex, m->target ? "\nqueried" : "",
                              hit_rel ? "\n" : "", hit_rel ? hit_rel : "", hit_rel ? score : "", findings) < 0)
                        return -ENOMEM;
                if (m->n_findings)
                        set(node, "peripheries", "2");
                if (m->target || m->hit)
                        highlight(node, m->target, true);

                const report_group *gr = &r->groups[m->group];
                Agedge_t *e = agedge(g, n->groups[m->group], node, NULL, 1);
                if (m->match) {
                        _cleanup_(freep) char *rel = gv_text(m->match->relation, REPORT_GRAPH_LABEL_MAX);
                        snprintf(score, sizeof(score), "%.3f", m->match->score);
                        if (!rel || set_label(e, "%s\n%s", rel, score) < 0)
                                return -ENOMEM;
                } else {
                        set(e, "label", gr->name[0] ? "same family" : "");
                        set(e, "style", "dashed");
                }
                if (gr->target && m->hit)
                        highlight(e, false, false);
        }
        return 0;
}

static int add_host_nodes(const report *r, Agraph_t *g, graph_nodes *n) {
        for (size_t i = 0; i < r->n_hosts; i++) {
                const Modelprov__V1__Host *h = r->hosts[i].host;
                char name[32];
                snprintf(name, sizeof(name), "h%zu", i);
                Agnode_t *node = n->hosts[i] = agnode(g, name, 1);
                _cleanup_(freep) char *t = gv_text(h->hostname, REPORT_GRAPH_LABEL_MAX);
                if (!t || set_label(node, "%s%s", t, h->stale ? "\n(stale)" : "") < 0)
                        return -ENOMEM;
                set(node, "shape", "ellipse");
                set(node, "fillcolor", h->stale ? "#f3f3f3" : "#e7f4e4");
                if (h->stale)
                        set(node, "style", "filled,dashed");
                if (r->hosts[i].hit)
                        highlight(node, false, true);
        }
        return 0;
}

/* One edge per (model, host), labelled with the number of paths when more
 * than one; red when one of them is affected. */
static int add_copy_edges(const report *r, Agraph_t *g, graph_nodes *n) {
        for (size_t i = 0; i < r->n_copies; i++) {
                const report_copy *c = &r->copies[i];
                if (c->host == REPORT_NONE)
                        continue;
                size_t paths = 0;
                bool hit = false, first = true;
                for (size_t j = 0; j < r->n_copies; j++)
                        if (r->copies[j].model == c->model && r->copies[j].host == c->host) {
                                first = first && j >= i;
                                paths++;
                                hit = hit || r->copies[j].hit;
                        }
                if (!first)
                        continue;
                Agedge_t *e = agedge(g, n->models[c->model], n->hosts[c->host], NULL, 1);
                if (paths > 1 && set_label(e, "%zu paths", paths) < 0)
                        return -ENOMEM;
                if (hit)
                        highlight(e, false, false);
        }
        return 0;
}

/* Incident: a query that is neither a model of the fleet nor one of its
 * catalog base models becomes a node of its own, with edges to the models
 * it reaches; a catalog base model gets edges to the affected models of
 * other groups.  A queried model gets none: edges between models would
 * be flat edges within one rank, which dot draws poorly (and Graphviz
 * 2.43 double-frees labelled ones with constraint=false); the affected
 * models' labels name their relation and score instead. */
static int add_blast_edges(const report *r, Agraph_t *g, graph_nodes *n) {
        Agnode_t *from;
        if (r->target_model != REPORT_NONE)
                return 0;
        if (r->target_group != REPORT_NONE)
                from = n->groups[r->target_group];
        else {
                from = agnode(g, "target", 1);
                _cleanup_(freep) char *t = gv_text(r->target, REPORT_GRAPH_LABEL_MAX);
                if (!t || set_label(from, "queried:\n%s", t) < 0)
                        return -ENOMEM;
                highlight(from, true, true);
        }
        for (size_t i = 0; i < r->n_models; i++) {
                const report_model *m = &r->models[i];
                if (!m->hit || m->group == r->target_group)
                        continue;
                char score[32];
                snprintf(score, sizeof(score), "%.3f", m->hit->score);
                Agedge_t *e = agedge(g, from, n->models[i], NULL, 1);
                _cleanup_(freep) char *rel = gv_text(m->hit->relation, REPORT_GRAPH_LABEL_MAX);
                if (!rel || set_label(e, "%s\n%s", rel, score) < 0)
                        return -ENOMEM;
                highlight(e, false, false);
        }
        return 0;
}

static void graph_defaults(Agraph_t *g) {
        static const char *const font = "Helvetica,Arial,sans-serif";
        agattr(g, AGRAPH, "rankdir", "LR");
        agattr(g, AGRAPH, "nodesep", "0.2");
        agattr(g, AGRAPH, "ranksep", "1.1");
        agattr(g, AGRAPH, "bgcolor", "transparent");
        agattr(g, AGRAPH, "fontname", (char *) font);
        agattr(g, AGNODE, "fontname", (char *) font);
        agattr(g, AGNODE, "fontsize", "11");
        agattr(g, AGNODE, "shape", "box");
        agattr(g, AGNODE, "style", "rounded,filled");
        agattr(g, AGNODE, "fillcolor", "white");
        agattr(g, AGNODE, "color", "#555555");
        agattr(g, AGNODE, "penwidth", "1");
        agattr(g, AGNODE, "class", "");
        agattr(g, AGEDGE, "fontname", (char *) font);
        agattr(g, AGEDGE, "fontsize", "9");
        agattr(g, AGEDGE, "color", "#777777");
        agattr(g, AGEDGE, "fontcolor", "#333333");
        agattr(g, AGEDGE, "penwidth", "1");
        agattr(g, AGEDGE, "class", "");
}

static int build(const report *r, Agraph_t *g) {
        graph_nodes n = {
                .groups = calloc(r->n_groups + 1, sizeof(Agnode_t *)),
                .models = calloc(r->n_models + 1, sizeof(Agnode_t *)),
                .hosts = calloc(r->n_hosts + 1, sizeof(Agnode_t *)),
        };
        int k = n.groups && n.models && n.hosts ? 0 : -ENOMEM;
        graph_defaults(g);
        if (k >= 0)
                k = add_group_nodes(r, g, &n);
        if (k >= 0)
                k = add_model_nodes(r, g, &n);
        if (k >= 0)
                k = add_host_nodes(r, g, &n);
        if (k >= 0)
                k = add_copy_edges(r, g, &n);
        if (k >= 0 && r->incident)
                k = add_blast_edges(r, g, &n);
        free(n.groups);
        free(n.models);
        free(n.hosts);
        return k;
}

/* True if the tag starting at p (at '<', in lowercase) has an event
 * handler attribute (" onclick=") or a javascript: URL. */
static bool active_tag(const char *p) {
        const char *end = strchr(p, '>');
        size_t n = end ? (size_t) (end - p) : strlen(p);
        for (size_t i = 0; i < n; i++)
                if ((isspace((unsigned char) p[i]) && strncmp(p + i + 1, "on", 2) == 0) ||
                    strncmp(p + i, "javascript:", 11) == 0)
                        return true;
        return false;
}

/* Cuts Graphviz's output down to the <svg> element, and refuses it if it
 * holds anything active.  Every agent text went in escaped, so this never
 * fires unless Graphviz itself stops escaping: then no report is better
 * than one that runs code.  Text may say anything ("<" in it is "&lt;"):
 * only tags are looked at. */
static int inline_svg(const char *data, size_t len, char **ret) {
        static const char *const banned[] = { "<script", "<foreignobject", "<iframe", "<!doctype", "<?xml",
                                              "<![cdata[", "<style", "<a ", "<image", "<use" };
        const char *start = memmem(data, len, "<svg", 4);
        if (!start)
                return -EBADMSG;
        _cleanup_(freep) char *svg = strndup(start, len - (size_t) (start - data));
        _cleanup_(freep) char *lower = svg ? strdup(svg) : NULL;
        if (!lower)
                return -ENOMEM;
        for (char *p = lower; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        for (const char *p = strchr(lower, '<'); p; p = strchr(p + 1, '<')) {
                for (size_t i = 0; i < ELEMENTSOF(banned); i++)
                        if (strncmp(p, banned[i], strlen(banned[i])) == 0)
                                return -EBADMSG;
                if (active_tag(p))
                        return -EBADMSG;
        }
        *ret = TAKE_PTR(svg);
        return 0;
}

int report_graph_svg(const report *r, char **ret) {
        assert(r && ret);
        /* Warnings (a font Graphviz guessed the size of) are noise here. */
        agseterr(AGERR);
        GVC_t *gvc = gvContext();
        if (!gvc) {
                fprintf(stderr, "modelprov: error: Graphviz could not start (out of memory?)\n");
                return -ENOMEM;
        }
        Agraph_t *g = agopen((char *) "lineage", Agdirected, NULL);
        int k = g ? build(r, g) : -ENOMEM;
        char *data = NULL;
        unsigned len = 0;
        if (k >= 0 && gvLayout(gvc, g, "dot") < 0) {
                fprintf(stderr, "modelprov: error: Graphviz has no dot layout (libgvc's plugins missing? `dot -c` "
                                "registers them)\n");
                k = -ENOENT;
        } else if (k >= 0) {
                if (gvRenderData(gvc, g, "svg", &data, &len) < 0 || !data) {
                        fprintf(stderr, "modelprov: error: Graphviz could not render SVG\n");
                        k = -EIO;
                } else {
                        k = inline_svg(data, len, ret);
                        if (k == -EBADMSG)
                                fprintf(stderr, "modelprov: error: the graph's SVG holds active content; refusing "
                                                "to embed it\n");
                }
                if (data)
                        gvFreeRenderData(data);
                gvFreeLayout(gvc, g);
        }
        if (k == -ENOMEM)
                fprintf(stderr, "modelprov: error: out of memory\n");
        if (g)
                agclose(g);
        gvFreeContext(gvc);
        return k;
}
