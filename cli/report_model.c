/* report_model.c - gathers a report's facts from the collector and ties
 * them together (report_model.h). */
#include "report_model.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/macro.h"
#include "util/strutil.h"

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *str_or_empty(const char *s) {
        return s ? s : "";
}

static void digest_hex(ProtobufCBinaryData d, char hex[REPORT_HEX_LEN + 1]) {
        if (d.len == CLI_DIGEST_BYTES)
                mp_hex(d.data, d.len, hex);
        else
                hex[0] = '\0';
}

static size_t find_host(const report *r, const char *host_id) {
        for (size_t i = 0; i < r->n_hosts; i++)
                if (strcmp(r->hosts[i].host->host_id, host_id) == 0)
                        return i;
        return REPORT_NONE;
}

static size_t find_model(const report *r, const char *hex) {
        for (size_t i = 0; hex[0] && i < r->n_models; i++)
                if (strcmp(r->models[i].hex, hex) == 0)
                        return i;
        return REPORT_NONE;
}

static size_t find_copy(const report *r, const char *host_id, const char *path) {
        for (size_t i = 0; i < r->n_copies; i++)
                if (strcmp(r->copies[i].item->host_id, host_id) == 0 && strcmp(r->copies[i].item->path, path) == 0)
                        return i;
        return REPORT_NONE;
}

static size_t find_group(const report *r, report_group_kind kind, const char *name) {
        for (size_t i = 0; i < r->n_groups; i++)
                if (r->groups[i].kind == kind && strcmp(r->groups[i].name, name) == 0)
                        return i;
        return REPORT_NONE;
}

/* ---- hosts -------------------------------------------------------------- */

static int host_order(const void *a, const void *b) {
        const report_host *x = a, *y = b;
        int c = strcmp(x->host->hostname, y->host->hostname);
        return c ? c : strcmp(x->host->host_id, y->host->host_id);
}

static int gather_hosts(cli_collector *cc, report *r) {
        int k = cli_fetch_hosts(cc, &r->hosts_resp);
        if (k < 0)
                return k;
        r->hosts = calloc(r->hosts_resp->n_hosts + 1, sizeof(*r->hosts));
        if (!r->hosts)
                return -ENOMEM;
        for (size_t i = 0; i < r->hosts_resp->n_hosts; i++) {
                r->hosts[r->n_hosts++].host = r->hosts_resp->hosts[i];
                r->n_stale += r->hosts_resp->hosts[i]->stale;
        }
        if (r->n_hosts > 1)
                qsort(r->hosts, r->n_hosts, sizeof(*r->hosts), host_order);
        return 0;
}

/* ---- models ------------------------------------------------------------- */

/* One model per distinct digest of the present inventory, with the
 * fingerprint the collector holds for it. */
static int gather_models(cli_collector *cc, report *r) {
        Modelprov__V1__InventoryResponse *inv = r->inventory;
        size_t allocated = 0;

        for (size_t i = 0; i < inv->n_items; i++) {
                char hex[REPORT_HEX_LEN + 1];
                digest_hex(inv->items[i]->model_digest, hex);
                if (!hex[0] || find_model(r, hex) != REPORT_NONE)
                        continue;
                if (MP_GROW(r->models, allocated, r->n_models + 1) < 0)
                        return -ENOMEM;
                report_model *m = &r->models[r->n_models++];
                *m = (report_model) { .group = REPORT_NONE, .name = str_or_empty(inv->items[i]->model_name),
                                      .format = "", .arch = "", .family = "" };
                memcpy(m->hex, hex, sizeof(hex));

                int k = cli_fetch_model(cc, inv->items[i]->model_digest.data, &m->resp);
                if (k < 0)
                        return k;
                const Modelprov__V1__Fingerprint *fp = m->resp->fingerprint;
                if (!fp)
                        continue;
                if (fp->name && fp->name[0])
                        m->name = fp->name;
                m->format = str_or_empty(fp->format);
                if (fp->arch)
                        m->arch = str_or_empty(fp->arch->architecture);
                if (fp->signals)
                        m->family = str_or_empty(fp->signals->family_hash);
        }
        return 0;
}

/* ---- history: findings and catalog matches ------------------------------- */

static int gather_history(cli_collector *cc, report *r) {
        size_t allocated = 0;
        int k = cli_fetch_history(cc, NULL, NULL, CLI_HISTORY_LIMIT_MAX, &r->history);
        if (k < 0)
                return k;
        r->history_truncated = r->history->n_events >= CLI_HISTORY_LIMIT_MAX;

        for (size_t i = 0; i < r->history->n_events; i++) {
                const Modelprov__V1__HistoryEvent *h = r->history->events[i];
                const Modelprov__V1__Event *e = h->event;
                if (!e)
                        continue;
                if (e->kind == MODELPROV__V1__EVENT_KIND__FINDING && e->finding) {
                        if (MP_GROW(r->findings, allocated, r->n_findings + 1) < 0)
                                return -ENOMEM;
                        r->findings[r->n_findings++] = (report_finding) {
                                .host_id = str_or_empty(h->host_id), .path = str_or_empty(e->path), .event = e,
                                .host = find_host(r, str_or_empty(h->host_id)),
                        };
                } else if (e->kind == MODELPROV__V1__EVENT_KIND__SCAN_MATCH && e->match && e->match->catalog_entry &&
                           e->match->catalog_entry[0]) {
                        /* The best match of a model wins; a later one of the
                         * same score replaces an older one (a newer catalog). */
                        char hex[REPORT_HEX_LEN + 1];
                        digest_hex(e->model_digest, hex);
                        size_t m = find_model(r, hex);
                        if (m != REPORT_NONE && (!r->models[m].match || e->match->score >= r->models[m].match->score))
                                r->models[m].match = e->match;
                }
        }
        return 0;
}

/* ---- groups -------------------------------------------------------------- */

static int add_group(report *r, size_t *allocated, report_group_kind kind, const char *name, const char *arch,
                     size_t *ret) {
        size_t g = find_group(r, kind, name);
        if (g == REPORT_NONE) {
                if (MP_GROW(r->groups, *allocated, r->n_groups + 1) < 0)
                        return -ENOMEM;
                g = r->n_groups++;
                r->groups[g] = (report_group) { .kind = kind, .name = name, .arch = arch };
        }
        *ret = g;
        return 0;
}

static int group_order(const report_group *x, const report_group *y) {
        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        /* The unknown family last. */
        if (!x->name[0] != !y->name[0])
                return !x->name[0] ? 1 : -1;
        return strcmp(x->name, y->name);
}

static int model_order(const void *a, const void *b) {
        const report_model *x = a, *y = b;
        if (x->group != y->group)
                return x->group < y->group ? -1 : 1;
        int c = strcmp(x->name, y->name);
        return c ? c : strcmp(x->hex, y->hex);
}

/* Puts every model in a group, then orders groups (catalog entries by
 * name, then families) and models (by group, name, digest). */
static int make_groups(report *r) {
        size_t allocated = 0;
        if (r->n_models == 0)
                return 0;       /* no groups: r->groups stays NULL (memcpy must not see it) */
        for (size_t i = 0; i < r->n_models; i++) {
                report_model *m = &r->models[i];
                int k = m->match ? add_group(r, &allocated, REPORT_GROUP_CATALOG, m->match->catalog_entry, "", &m->group)
                                 : add_group(r, &allocated, REPORT_GROUP_FAMILY, m->family, m->arch, &m->group);
                if (k < 0)
                        return k;
        }
        /* Sort by rank: insertion order is kept in a permutation, the few
         * groups make a quadratic rank cheap and the models' indices easy
         * to remap. */
        _cleanup_(freep) size_t *rank = calloc(r->n_groups + 1, sizeof(*rank));
        _cleanup_(freep) report_group *sorted = calloc(r->n_groups + 1, sizeof(*sorted));
        if (!rank || !sorted)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_groups; i++) {
                for (size_t j = 0; j < r->n_groups; j++)
                        rank[i] += group_order(&r->groups[j], &r->groups[i]) < 0;
                sorted[rank[i]] = r->groups[i];
        }
        memcpy(r->groups, sorted, r->n_groups * sizeof(*sorted));
        for (size_t i = 0; i < r->n_models; i++)
                r->models[i].group = rank[r->models[i].group];
        if (r->n_models > 1)
                qsort(r->models, r->n_models, sizeof(*r->models), model_order);
        return 0;
}

/* ---- copies and counts --------------------------------------------------- */

static int make_copies(report *r) {
        Modelprov__V1__InventoryResponse *inv = r->inventory;
        r->copies = calloc(inv->n_items + 1, sizeof(*r->copies));
        if (!r->copies)
                return -ENOMEM;
        for (size_t i = 0; i < inv->n_items; i++) {
                char hex[REPORT_HEX_LEN + 1];
                digest_hex(inv->items[i]->model_digest, hex);
                size_t m = find_model(r, hex);
                if (m == REPORT_NONE || !inv->items[i]->present)
                        continue;
                report_copy *c = &r->copies[r->n_copies++];
                *c = (report_copy) { .item = inv->items[i], .host = find_host(r, inv->items[i]->host_id), .model = m };
                if (c->host != REPORT_NONE)
                        r->hosts[c->host].n_copies++;
        }
        return 0;
}

/* Distinct hosts among the copies that keep(copy) selects. */
static size_t count_hosts(const report *r, bool *seen,
                          bool (*keep)(const report *r, const report_copy *c, size_t which), size_t which) {
        size_t n = 0;
        memset(seen, 0, (r->n_hosts + 1) * sizeof(*seen));
        for (size_t i = 0; i < r->n_copies; i++) {
                const report_copy *c = &r->copies[i];
                size_t h = c->host == REPORT_NONE ? r->n_hosts : c->host;
                if (keep(r, c, which) && !seen[h]) {
                        seen[h] = true;
                        n++;
                }
        }
        return n;
}

static bool copy_of_model(const report *r, const report_copy *c, size_t m) {
        (void) r;
        return c->model == m;
}

static bool copy_in_group(const report *r, const report_copy *c, size_t g) {
        return r->models[c->model].group == g;
}

static bool copy_hit(const report *r, const report_copy *c, size_t unused) {
        (void) r, (void) unused;
        return c->hit != NULL;
}

static int make_counts(report *r) {
        _cleanup_(freep) bool *seen = calloc(r->n_hosts + 1, sizeof(*seen));
        if (!seen)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_copies; i++) {
                report_model *m = &r->models[r->copies[i].model];
                m->n_copies++;
                r->groups[m->group].n_copies++;
        }
        for (size_t m = 0; m < r->n_models; m++) {
                r->models[m].n_hosts = count_hosts(r, seen, copy_of_model, m);
                r->groups[r->models[m].group].n_models++;
        }
        for (size_t g = 0; g < r->n_groups; g++)
                r->groups[g].n_hosts = count_hosts(r, seen, copy_in_group, g);
        for (size_t i = 0; i < r->n_findings; i++) {
                report_finding *f = &r->findings[i];
                size_t c = find_copy(r, f->host_id, f->path);
                f->installed = c != REPORT_NONE;
                if (f->installed) {
                        r->copies[c].n_findings++;
                        r->models[r->copies[c].model].n_findings++;
                }
        }
        if (r->incident)
                r->n_hit_hosts = count_hosts(r, seen, copy_hit, 0);
        return 0;
}

/* ---- blast radius -------------------------------------------------------- */

/* The model the query names, when the fleet holds it. */
static size_t target_model(const report *r, const Modelprov__V1__BlastRadiusRequest *req) {
        char hex[REPORT_HEX_LEN + 1];
        if (req->model_digest.len == CLI_DIGEST_BYTES)
                digest_hex(req->model_digest, hex);
        else if (req->fingerprint)
                digest_hex(req->fingerprint->model_digest, hex);
        else if (req->host_path && strchr(req->host_path, ':')) {
                /* HOST:PATH as the collector takes it: hostname or host id.
                 * (protobuf-c's unset strings are "", not NULL.) */
                const char *colon = strchr(req->host_path, ':');
                size_t n = (size_t) (colon - req->host_path);
                for (size_t i = 0; i < r->n_copies; i++) {
                        const Modelprov__V1__InventoryItem *it = r->copies[i].item;
                        if (strcmp(colon + 1, it->path) == 0 &&
                            ((strlen(it->hostname) == n && strncmp(it->hostname, req->host_path, n) == 0) ||
                             (strlen(it->host_id) == n && strncmp(it->host_id, req->host_path, n) == 0)))
                                return r->copies[i].model;
                }
                return REPORT_NONE;
        } else
                return REPORT_NONE;
        return find_model(r, hex);
}

static int gather_blast(cli_collector *cc, const report_blast_options *o, report *r) {
        Modelprov__V1__BlastRadiusRequest req = MODELPROV__V1__BLAST_RADIUS_REQUEST__INIT;
        uint8_t digest[CLI_DIGEST_BYTES];
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;

        int k = cli_blast_target(o->target, &o->mo, &req, digest, &fp);
        if (k < 0)
                return k;
        req.threshold = o->threshold;
        k = cli_fetch_blast_radius(cc, &req, &r->blast);
        if (k < 0)
                return k;

        r->incident = true;
        r->target = o->target;
        r->target_model = target_model(r, &req);
        r->target_group = req.catalog_entry && req.catalog_entry[0]
                                  ? find_group(r, REPORT_GROUP_CATALOG, req.catalog_entry) : REPORT_NONE;
        if (r->target_model != REPORT_NONE)
                r->models[r->target_model].target = true;
        if (r->target_group != REPORT_NONE)
                r->groups[r->target_group].target = true;

        r->n_hit_paths = r->blast->n_hits;
        for (size_t i = 0; i < r->blast->n_hits; i++) {
                const Modelprov__V1__BlastRadiusHit *h = r->blast->hits[i];
                if (!h->item)
                        continue;
                size_t c = find_copy(r, h->item->host_id, h->item->path);
                if (c == REPORT_NONE)
                        continue;       /* changed since the inventory was read */
                report_copy *cp = &r->copies[c];
                report_model *m = &r->models[cp->model];
                if (!cp->hit || h->score > cp->hit->score)
                        cp->hit = h;
                if (!m->hit || h->score > m->hit->score)
                        m->hit = h;
                if (cp->host != REPORT_NONE)
                        r->hosts[cp->host].hit = true;
        }
        return 0;
}

/* ---- entry points -------------------------------------------------------- */

int report_gather(cli_collector *cc, const char *collector, const report_blast_options *blast, report *ret) {
        int k;
        assert(cc && ret);

        *ret = (report) { .generated_at = now_ms(), .collector = collector, .target_model = REPORT_NONE,
                          .target_group = REPORT_NONE };
        k = gather_hosts(cc, ret);
        if (k >= 0)
                k = cli_fetch_inventory(cc, NULL, false, &ret->inventory);
        if (k >= 0) {
                cli_sort_items(ret->inventory->items, ret->inventory->n_items);
                k = gather_models(cc, ret);
        }
        if (k >= 0)
                k = gather_history(cc, ret);
        if (k >= 0)
                k = make_groups(ret);
        if (k >= 0)
                k = make_copies(ret);
        if (k >= 0 && blast)
                k = gather_blast(cc, blast, ret);
        if (k >= 0)
                k = make_counts(ret);
        if (k == -ENOMEM)
                fprintf(stderr, "modelprov: error: out of memory\n");
        return k;
}

void report_done(report *r) {
        for (size_t i = 0; i < r->n_models; i++)
                cli_model_freep(&r->models[i].resp);
        free(r->models);
        free(r->groups);
        free(r->copies);
        free(r->hosts);
        free(r->findings);
        cli_hosts_freep(&r->hosts_resp);
        cli_inventory_freep(&r->inventory);
        cli_history_freep(&r->history);
        cli_blast_radius_freep(&r->blast);
        *r = (report) {};
}

const char *report_group_title(const report_group *g, char *buf, size_t size) {
        if (g->kind == REPORT_GROUP_CATALOG)
                snprintf(buf, size, "%s", g->name);
        else if (!g->name[0])
                snprintf(buf, size, "unknown family");
        else if (g->arch[0])
                snprintf(buf, size, "family %.12s (%s)", g->name, g->arch);
        else
                snprintf(buf, size, "family %.12s", g->name);
        return buf;
}

const char *report_time(int64_t ms, char *buf, size_t size) {
        struct tm tm;
        time_t t = (time_t) (ms / 1000);
        if (ms <= 0 || !gmtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M UTC", &tm) == 0)
                snprintf(buf, size, "never");
        return buf;
}

const char *report_host_name(const report *r, size_t host, const char *host_id) {
        return host != REPORT_NONE && host < r->n_hosts ? r->hosts[host].host->hostname : host_id;
}
