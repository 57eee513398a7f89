/* report_model.h - what `modelprov report` shows, gathered from the
 * collector's Query service and tied together once, so that the HTML,
 * Markdown and CSV renderers and the lineage graph all read the same facts.
 *
 * Base models ("groups") are chosen the way docs/reports.md explains: a
 * model that an agent matched against the fleet's reference catalog
 * (SCAN_MATCH events; the best score wins) belongs to that catalog entry,
 * with the match's relation, verdict and score; any other model belongs to
 * the family of its fingerprint (signals.family_hash: same architecture
 * shape and tokenizer family), or to the "unknown family" group when the
 * collector holds no fingerprint for it.
 *
 * Every string points into the collector's answers, which the report owns
 * and frees in report_done(); all of it is untrusted text from agents. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collector_conn.h"
#include "modelprov.pb-c.h"
#include "output.h"
#include "query_calls.h"

#define REPORT_NONE SIZE_MAX
#define REPORT_HEX_LEN (2 * CLI_DIGEST_BYTES)

typedef enum report_group_kind {
        REPORT_GROUP_CATALOG,           /* a catalog entry some model was matched to */
        REPORT_GROUP_FAMILY,            /* models sharing a family hash, no catalog match */
} report_group_kind;

typedef struct report_group {
        report_group_kind kind;
        const char *name;               /* catalog entry, or hex family hash ("" = unknown) */
        const char *arch;               /* family: its first model's architecture, may be "" */
        size_t n_models, n_copies, n_hosts;
        bool target;                    /* incident: the catalog entry queried */
} report_group;

typedef struct report_model {           /* one distinct weight (model digest) */
        char hex[REPORT_HEX_LEN + 1];
        const char *name;               /* fingerprint's name, else the inventory's, else "" */
        const char *format, *arch;      /* "" when unknown */
        const char *family;             /* hex family hash, "" when unknown */
        size_t group;
        const Modelprov__V1__ScanMatch *match;  /* to its group's catalog entry; NULL for families */
        size_t n_copies, n_hosts, n_findings;
        bool target;                    /* incident: the queried model itself */
        const Modelprov__V1__BlastRadiusHit *hit;       /* incident: best hit on it, NULL: unaffected */
        Modelprov__V1__ModelResponse *resp;     /* owned; its fingerprint may be NULL */
} report_model;

typedef struct report_host {
        const Modelprov__V1__Host *host;
        size_t n_copies;
        bool hit;                       /* incident: holds an affected path */
} report_host;

typedef struct report_copy {            /* one model present at a path on a host */
        const Modelprov__V1__InventoryItem *item;
        size_t host, model;             /* host: REPORT_NONE when Hosts did not list it */
        const Modelprov__V1__BlastRadiusHit *hit;
        size_t n_findings;
} report_copy;

typedef struct report_finding {
        const char *host_id, *path;
        const Modelprov__V1__Event *event;      /* kind FINDING, finding set */
        size_t host;                    /* REPORT_NONE when Hosts did not list it */
        bool installed;                 /* the path holds a model in the inventory now */
} report_finding;

typedef struct report {
        /* The answers everything points into. */
        Modelprov__V1__HostsResponse *hosts_resp;
        Modelprov__V1__InventoryResponse *inventory;
        Modelprov__V1__HistoryResponse *history;
        Modelprov__V1__BlastRadiusResponse *blast;

        report_host *hosts;
        size_t n_hosts, n_stale;
        report_model *models;
        size_t n_models;
        report_group *groups;
        size_t n_groups;
        report_copy *copies;
        size_t n_copies;
        report_finding *findings;
        size_t n_findings;
        bool history_truncated;         /* History hit its limit: older findings and matches are missing */

        int64_t generated_at;           /* Unix ms */
        const char *collector;          /* address, as given */

        /* Incident (blast-radius) reports only. */
        bool incident;
        const char *target;             /* the query, as given */
        size_t target_model, target_group;      /* REPORT_NONE when not in the fleet */
        size_t n_hit_paths, n_hit_hosts;
} report;

typedef struct report_blast_options {
        const char *target;             /* digest, record or model file, HOST:PATH, catalog entry */
        double threshold;               /* 0: the collector's */
        cli_model_options mo;
} report_blast_options;

/* Gathers the fleet (Hosts, Inventory of present models, History for
 * findings and catalog matches, Model for each distinct digest) and, with
 * blast set, the blast radius of blast->target.  Prints errors; returns a
 * negative errno.  Free with report_done() also after a failure. */
int report_gather(cli_collector *cc, const char *collector, const report_blast_options *blast, report *ret);
void report_done(report *r);

/* "family 0123456789ab (llama)", "unknown family" or the catalog entry's
 * name, into buf (untrusted text: escape it for the output). */
const char *report_group_title(const report_group *g, char *buf, size_t size);

/* Unix ms as "2026-01-31 12:00 UTC" ("never" for <= 0). */
const char *report_time(int64_t ms, char *buf, size_t size);

/* Hostname of a host index, or the host id when unknown. */
const char *report_host_name(const report *r, size_t host, const char *host_id);
