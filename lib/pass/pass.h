/* pass.h - the single streaming pass over a model's files.
 *
 * Every file of the model is read once, sequentially, in bounded chunks.  As
 * the bytes go by they feed, together:
 *   - the file's SHA-256 (and a git blob SHA-1 when a hub blob name promises
 *     one), checked at the end against the digest the blob name promises;
 *   - each tensor's XXH3-128 over its raw stored bytes;
 *   - visitors: later signal families register here and receive each
 *     tensor's values as float32 blocks, dequantized on the fly.
 * Several files are processed in parallel, up to `jobs` threads; one file is
 * always read by one thread, in order.
 *
 * The page cache is left as it was found: pages a chunk brought in are
 * dropped after use, pages that were already cached (a model an inference
 * server is using) stay.
 *
 * Gentle on a busy host: reads can be capped in bytes per second (one cap
 * for the pass, and/or a limiter shared with other passes), and a stop flag
 * ends a pass within one chunk, even in the middle of a huge file.
 *
 * Incremental use (fingerprint/compute.h): with skip_digested, files the
 * caller already knows (digested = true, sha256 set) are not read at all;
 * their tensors get no XXH3 and no visitor calls, and the result says which
 * tensors were covered. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/model.h"
#include "util/error.h"
#include "util/rate_limit.h"

/* A consumer of tensor values.  Callbacks for one tensor are called in
 * order, from one thread; callbacks for tensors of different files may run
 * concurrently on different threads, so state must be per tensor (or
 * locked).  Any callback may return a negative errno to abort the pass. */
typedef struct mp_tensor_visitor {
        void *userdata;
        /* Called before the first block; return 0 to receive this tensor's
         * values, 1 to skip it. */
        int (*begin)(void *userdata, const mp_model *m, size_t ti);
        /* Values first_index .. first_index+n-1 of tensor ti. */
        int (*values)(void *userdata, size_t ti, const float *v, size_t n, uint64_t first_index);
        /* Called after the last block of a tensor that was not skipped. */
        int (*end)(void *userdata, size_t ti);
} mp_tensor_visitor;

typedef void (*mp_progress_fn)(void *userdata, uint64_t bytes_done, uint64_t bytes_total);

typedef struct mp_pass_options {
        unsigned jobs;                  /* threads; 0 = number of online CPUs */
        size_t chunk_bytes;             /* read size; 0 = 4 MiB */
        const mp_tensor_visitor *visitors;
        size_t n_visitors;
        mp_progress_fn progress;        /* called under a lock after each chunk */
        void *progress_userdata;
        bool keep_cache;                /* true: never drop pages (benchmarks of warm files) */
        /* Checked before every chunk (and while waiting for the rate cap):
         * once non-zero the pass fails with -ECANCELED.  NULL: never. */
        const volatile sig_atomic_t *stop;
        /* Read-rate cap of this pass over all its threads; 0 = none. */
        uint64_t max_bytes_per_sec;
        /* A cap shared with other passes (e.g. all agent workers); NULL =
         * none.  Both apply when both are set. */
        mp_rate_limit *rate_limit;
        /* true: files with digested = true on entry are not read; their
         * sha256 is taken as given (so is their git-SHA-1 blob name, which
         * only the content could check; a SHA-256 blob name is still
         * compared).  false (default): every file is read. */
        bool skip_digested;
} mp_pass_options;

typedef struct mp_pass_result {
        size_t n_tensors;
        uint8_t (*tensor_xxh3)[16];     /* per tensor, canonical (big-endian) XXH3-128 */
        bool *tensor_done;              /* per tensor: read by this pass (xxh3 valid,
                                         * visitors called); false for tensors of
                                         * skipped files, whose xxh3 is zero */
        uint8_t model_digest[32];       /* SHA-256 over sorted (rel_path NUL sha256) */
        uint64_t bytes_read;            /* bytes this pass read (skipped files: none) */
} mp_pass_result;

/* Runs the pass.  On success every m->files[i] has digested = true and its
 * sha256, blob-name mismatches are appended to m->findings (in file order),
 * and *res holds tensor hashes and the model digest.  I/O errors and files
 * that change while being read fail the pass; a stop request fails it with
 * -ECANCELED.  On failure the digested flags of files read so far are set
 * (their sha256 is right), and *res holds nothing to free. */
int mp_pass_run(mp_model *m, const mp_pass_options *opts, mp_pass_result *res, mp_error *err);

void mp_pass_result_free(mp_pass_result *res);

/* The model digest from already digested files (used by the pass, and by the
 * agent when it rebuilds a model from stored per-file parts). */
int mp_model_digest(const mp_model *m, uint8_t out[32]);

