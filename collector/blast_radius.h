/* blast_radius.h - where in the fleet is a model, or something made from it?
 *
 * Given a target (a model digest, a fingerprint record, an entry of the
 * catalog pushed to the collector, or "host:path" of an inventory row),
 * blast radius returns every inventory row (host, path) whose model is
 *   - an exact copy: the same model digest;
 *   - a partial copy: some, not all, of its large tensors are byte-identical
 *     to tensors of the target, under any name, and the rest is not derived
 *     from the target (a model assembled from the target's embedding or
 *     blocks and foreign parts);
 *   - a lineage match: libmodelprov's comparison of the two stored
 *     fingerprints (compare.h) gives an identity score at or above the
 *     threshold (fine-tunes, merges, quantized, converted, pruned, permuted,
 *     rescaled, vocabulary-changed copies).
 *
 * How it stays fast as the fleet grows: only the stored fingerprints that
 * pass the store's structural pre-filter (store.h "structure": the same
 * hidden size, or an unknown one, or sharing a tensor key) are compared,
 * never all of them.  Weight evidence needs same-named tensors whose rows
 * line up, so a fingerprint of another hidden size cannot reach a lineage
 * score; the family hash is deliberately not a candidate source, as it
 * ignores dimensions and would pull in every size of a family.  The
 * candidates are scored on several threads, each with its own store handle
 * (mp_store_helper()), its own comparison query and its own unpacking
 * arena.
 *
 * Partial copy or lineage?  Derivatives of the whole model often keep some
 * tensors byte for byte too (a LoRA merge leaves the embedding alone, a
 * permutation attack the embedding and head, a conversion some vectors).
 * They keep compare's relation, which says more, as long as compare's
 * evidence covers the rest of the model: a verdict of at least
 * High-Confidence with the other tensors close (tensor_closeness >= 0.5),
 * correlated per block (layer_values >= 0.3), rescaled, or the target's
 * rearranged (same name, shape and norm: a permutation).  A model built
 * from the target's embedding and unrelated blocks fails all four (compare
 * alone would read it as a permuted copy) and is a partial copy.
 *
 * Scores and verdicts: a lineage match carries compare's identity score,
 * verdict and relation hint.  A partial copy's score is the larger of its
 * identity score and the share of tensor bytes it has byte-identical with
 * the target (over the larger of the two models' keyed bytes, as compare's
 * tensor_identity, but matched by content instead of name); its verdict
 * follows that score with compare's bounds.  Partial copies are returned
 * whatever the threshold: independently trained tensors are never
 * byte-identical.  A target without weight evidence (an imported catalog
 * entry: metadata only) finds exact and partial copies only, since
 * modelprov never calls lineage on metadata alone.
 *
 * Contract: functions return 0 on success or a negative errno with err
 * (may be NULL) filled: -EINVAL for malformed input (a record that does not
 * parse, "host:path" without a colon, options out of range), -ENOENT for an
 * unknown digest, host, path or catalog entry (or no catalog pushed), the
 * store's errors otherwise (-EBUSY, -ENOMEM, ...).  Stored records that no
 * longer unpack are skipped and counted, never fatal. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "collector/store.h"
#include "compare/compare.h"

/* compare's Weak Match bound (docs/signals.md "Scoring and verdicts"): the
 * lowest identity score modelprov calls a match.  Partial copies get their
 * verdicts from compare's bounds too (mp_verdict_of_score). */
#define MP_BLAST_DEFAULT_THRESHOLD MP_VERDICT_WEAK_AT

#define MP_BLAST_MAX_THREADS (MP_STORE_MAX_HELPERS + 1)

/* Relations that are not compare's. */
#define MP_BLAST_EXACT_COPY "exact copy"
#define MP_BLAST_PARTIAL_COPY "partial copy"

/* ---- targets ------------------------------------------------------------ */

typedef struct mp_blast_target {
        bool has_digest;                /* false: a record without a model digest */
        uint8_t digest[MP_STORE_DIGEST_SIZE];
        mp_fingerprint *fp;             /* NULL when only the digest is known (no record stored) */
        char *label;                    /* what was asked for, for messages; never NULL */
} mp_blast_target;

/* A digest some host reported: its stored fingerprint, or the digest alone
 * when no record came with it (then only exact copies are found).  -ENOENT
 * when no host ever held it. */
int mp_blast_target_from_digest(mp_store *s, const uint8_t digest[MP_STORE_DIGEST_SIZE], mp_blast_target **ret,
                                mp_error *err);

/* A packed modelprov.v1.Fingerprint (a `modelprov fingerprint -o` file), at
 * most MP_STORE_MAX_RECORD bytes; its model digest may be empty or 32
 * bytes.  Or an unpacked one, copied. */
int mp_blast_target_from_record(const uint8_t *record, size_t len, mp_blast_target **ret, mp_error *err);
int mp_blast_target_from_fingerprint(const mp_fingerprint *fp, mp_blast_target **ret, mp_error *err);

/* The entry called name in the catalog last pushed (mp_store_put_catalog),
 * read from a private temporary copy (catalog_file.h). */
int mp_blast_target_from_catalog_entry(mp_store *s, const char *name, mp_blast_target **ret, mp_error *err);

/* "HOST:PATH": HOST a host id or hostname, PATH (split at the first colon,
 * so it may hold colons) a model path in that host's inventory, compared
 * exactly.  The model present there, else the last one seen there.  A
 * hostname shared by several hosts that hold different models at PATH is
 * -EINVAL (ambiguous: give the host id). */
int mp_blast_target_from_host_path(mp_store *s, const char *host_path, mp_blast_target **ret, mp_error *err);

void mp_blast_target_free(mp_blast_target *t);
static inline void mp_blast_target_freep(mp_blast_target **t) { mp_blast_target_free(*t); }

/* ---- the query ---------------------------------------------------------- */

typedef struct mp_blast_options {
        double threshold;               /* lineage identity score in (0, 1]; 0: MP_BLAST_DEFAULT_THRESHOLD */
        bool include_removed;           /* also inventory rows no longer present (history) */
        /* Scoring threads, <= MP_BLAST_MAX_THREADS, at most one per
         * candidate; 0: the CPUs (at most 8), one per 64 candidates. */
        unsigned threads;
        /* Candidates a thread fetches and scores per store call, at most
         * MP_STORE_MAX_FETCH; 0: MP_BLAST_DEFAULT_BATCH.  Results do not
         * depend on it (tests compare 1, one record per call, with more). */
        unsigned batch;
        /* Score the candidates' full records instead of their scoring
         * records (store.h): slower, same results (tests compare both). */
        bool full_records;
} mp_blast_options;

#define MP_BLAST_DEFAULT_BATCH 256

typedef struct mp_blast_hit {
        mp_store_location loc;          /* host, path, model digest and name, first/last seen, present */
        const char *relation;           /* MP_BLAST_EXACT_COPY, MP_BLAST_PARTIAL_COPY or compare's (static) */
        const char *lineage;            /* compare's relation hint, also for copies (static) */
        mp_verdict verdict;
        double score;                   /* 1 for exact copies */
        double shared;                  /* share of keyed tensor bytes byte-identical to the target's */
        size_t tensors_shared;          /* the model's keyed tensors byte-identical to one of the target's */
} mp_blast_hit;

typedef struct mp_blast_stats {
        uint64_t considered;            /* fingerprints the pre-filter let through (the target excluded) */
        uint64_t scored;                /* of those, compared */
        uint64_t unreadable;            /* of those, records that did not unpack (skipped) */
        uint64_t models;                /* distinct model digests among the hits */
        unsigned threads;               /* scoring threads used */
} mp_blast_stats;

/* The hits of target t, exact copies first, then by score (highest first),
 * hostname, host id, path and first_seen; only rows still present unless
 * o->include_removed.  o may be NULL (defaults); stats may be NULL.  *hits
 * is malloc'd (NULL when there are none); free with mp_blast_hits_free().
 * Like every use of s, the call must own it; the other scoring threads use
 * s's helper handles (mp_store_helper()), opened on the first query that
 * needs them and kept until s is closed. */
int mp_blast_radius(mp_store *s, const mp_blast_target *t, const mp_blast_options *o, mp_blast_hit **hits,
                    size_t *n, mp_blast_stats *stats, mp_error *err);
void mp_blast_hits_free(mp_blast_hit *h, size_t n);
