/* pass.c - the single streaming pass (see pass.h for the contract).
 *
 * One worker thread digests one file at a time: it reads the file in chunks
 * into a private buffer, and walks each chunk in cache-sized slices so the
 * SHA-256, the tensor XXH3 states and the float conversion all see the bytes
 * while they are still in L2.  Tensors are sorted by offset; the active set
 * holds those overlapping the current slice (torch views may overlap).
 *
 * Between chunks a worker checks for a stop request and pays for the next
 * chunk at the rate limiters (util/rate_limit.h) before reading it. */
#include "pass/pass.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <xxhash.h>

#include "util/macro.h"
#include "util/rate_limit.h"
#include "util/strutil.h"
#include "util/source.h"

#define DEFAULT_CHUNK   (4u * 1024 * 1024)
#define SLICE_BYTES     (256u * 1024)
#define FLOAT_BUF_ELEMS 16384u
#define MAX_BLOCK_BYTES 512u

typedef struct tensor_state {
        size_t ti;
        uint64_t begin, end;            /* absolute byte range in the file */
        XXH3_state_t *xxh;
        const mp_dtype_info *info;
        bool *visit;                    /* per visitor: wants values */
        bool any_visit;
        uint8_t carry[MAX_BLOCK_BYTES]; /* partial block across slices */
        size_t carry_len;
        uint64_t elems_done;
} tensor_state;

typedef struct pass_ctx {
        mp_model *m;
        const mp_pass_options *opts;
        mp_pass_result *res;
        size_t *order;                  /* file indices to read, largest first */
        size_t n_order;
        atomic_size_t next;
        atomic_bool stop;
        mp_rate_limit *own_limit;       /* for opts->max_bytes_per_sec */
        /* per file: the content's git SHA-1 when it differs from the blob
         * name; written by the one thread reading the file, turned into
         * findings in file order after the pass (deterministic records) */
        char (*git_mismatch)[41];
        pthread_mutex_t lock;           /* guards everything below */
        uint64_t bytes_done, bytes_total;
        int error;
        mp_error err;
} pass_ctx;

/* Page cache residency ahead of the reads (see "page cache hygiene"). */
typedef struct residency {
        unsigned char *ring;    /* ring[page_no % n_pages]: 1 = was cached */
        size_t n_pages;
        size_t page;
        uint64_t recorded_end;  /* residency known for [0, recorded_end) */
} residency;

typedef struct worker {
        pass_ctx *ctx;
        uint8_t *buf;
        float *fbuf;
        residency rs;
        unsigned char *mincore_vec;     /* one chunk's worth of mincore() output */
} worker;

static bool stop_requested(const pass_ctx *ctx) {
        return ctx->opts->stop && *ctx->opts->stop;
}

/* Before reading n bytes: the stop flag, then both rate limiters. */
static int before_read(pass_ctx *ctx, uint64_t n, const char *label, mp_error *err) {
        int r = stop_requested(ctx) ? -ECANCELED : 0;
        if (r >= 0 && ctx->own_limit)
                r = mp_rate_limit_take(ctx->own_limit, n, ctx->opts->stop);
        if (r >= 0 && ctx->opts->rate_limit)
                r = mp_rate_limit_take(ctx->opts->rate_limit, n, ctx->opts->stop);
        if (r < 0)
                return mp_error_set(err, r, label, -1, "cancelled");
        return 0;
}

static void fail(pass_ctx *ctx, const mp_error *e) {
        pthread_mutex_lock(&ctx->lock);
        if (ctx->error == 0) {
                ctx->error = e->code < 0 ? e->code : -EIO;
                ctx->err = *e;
        }
        pthread_mutex_unlock(&ctx->lock);
        atomic_store(&ctx->stop, true);
}

/* --- page cache hygiene ------------------------------------------------- */

/* The pass must leave the page cache as it found it: pages it brought in
 * are dropped after use, pages that were cached before (a model an inference
 * server is using) stay.  "Before" must be recorded ahead of kernel
 * read-ahead, which pulls in pages well past what was asked for (8-16 MiB on
 * common hosts, and marked pages trigger more).  So residency is recorded
 * for a window of RESIDENCY_WINDOW bytes ahead of the read position, in a
 * ring of one byte per page, and extended as the reads advance. */
#define RESIDENCY_WINDOW (64u * 1024 * 1024)

static int residency_init(residency *rs, size_t chunk) {
        rs->page = (size_t) sysconf(_SC_PAGESIZE);
        rs->n_pages = (RESIDENCY_WINDOW + 2 * chunk) / rs->page;
        rs->ring = malloc(rs->n_pages);
        rs->recorded_end = 0;
        return rs->ring ? 0 : -ENOMEM;
}

/* Records [off, off+len) through a mapping that is never touched (so a file
 * truncated meanwhile cannot SIGBUS us).  On failure the pages count as
 * cached, so nothing is dropped: the safe side for an inference host. */
static void residency_record(residency *rs, int fd, uint64_t off, size_t len, unsigned char *tmp) {
        size_t pages = (len + rs->page - 1) / rs->page;
        void *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t) off);
        if (p == MAP_FAILED || mincore(p, len, tmp) < 0)
                memset(tmp, 1, pages);
        if (p != MAP_FAILED)
                munmap(p, len);
        uint64_t first = off / rs->page;
        for (size_t i = 0; i < pages; i++)
                rs->ring[(first + i) % rs->n_pages] = tmp[i] & 1;
}

/* Makes sure residency is recorded up to RESIDENCY_WINDOW past pos, in
 * steps of chunk bytes (tmp holds one step's vector). */
static void residency_advance(residency *rs, int fd, uint64_t pos, uint64_t size, size_t chunk, unsigned char *tmp) {
        uint64_t want = pos + RESIDENCY_WINDOW < size ? pos + RESIDENCY_WINDOW : size;
        while (rs->recorded_end < want) {
                size_t len = want - rs->recorded_end < chunk ? (size_t) (want - rs->recorded_end) : chunk;
                residency_record(rs, fd, rs->recorded_end, len, tmp);
                rs->recorded_end += len;
        }
}

/* Drops the pages of [off, off+len) that were not cached before we came. */
static void residency_drop_new(const residency *rs, int fd, uint64_t off, size_t len) {
        uint64_t first = off / rs->page, pages = (len + rs->page - 1) / rs->page;
        for (uint64_t i = 0; i < pages;) {
                if (rs->ring[(first + i) % rs->n_pages]) {
                        i++;
                        continue;
                }
                uint64_t j = i;
                while (j < pages && !rs->ring[(first + j) % rs->n_pages])
                        j++;
                posix_fadvise(fd, (off_t) ((first + i) * rs->page), (off_t) ((j - i) * rs->page),
                              POSIX_FADV_DONTNEED);
                i = j;
        }
}

/* --- tensors --------------------------------------------------------------- */

static int emit_values(worker *w, tensor_state *ts, const uint8_t *raw, size_t n_blocks) {
        const pass_ctx *ctx = w->ctx;
        size_t per = FLOAT_BUF_ELEMS / ts->info->block_elems;

        while (n_blocks > 0) {
                size_t nb = n_blocks < per ? n_blocks : per;
                int r = mp_dtype_to_f32(ctx->m->tensors[ts->ti].dtype, raw, nb, w->fbuf);
                if (r < 0)
                        return r;
                size_t n = nb * ts->info->block_elems;
                for (size_t v = 0; v < ctx->opts->n_visitors; v++) {
                        if (!ts->visit[v])
                                continue;
                        const mp_tensor_visitor *vis = &ctx->opts->visitors[v];
                        r = vis->values(vis->userdata, ts->ti, w->fbuf, n, ts->elems_done);
                        if (r < 0)
                                return r;
                }
                ts->elems_done += n;
                raw += nb * ts->info->block_bytes;
                n_blocks -= nb;
        }
        return 0;
}

/* Feeds len raw bytes of the tensor, in order. */
static int tensor_feed(worker *w, tensor_state *ts, const uint8_t *p, size_t len) {
        XXH3_128bits_update(ts->xxh, p, len);
        if (!ts->any_visit)
                return 0;

        size_t bb = ts->info->block_bytes;
        int r;
        if (ts->carry_len > 0) {
                size_t take = bb - ts->carry_len < len ? bb - ts->carry_len : len;
                memcpy(ts->carry + ts->carry_len, p, take);
                ts->carry_len += take;
                p += take;
                len -= take;
                if (ts->carry_len < bb)
                        return 0;
                r = emit_values(w, ts, ts->carry, 1);
                if (r < 0)
                        return r;
                ts->carry_len = 0;
        }
        size_t whole = len / bb;
        r = emit_values(w, ts, p, whole);
        if (r < 0)
                return r;
        ts->carry_len = len - whole * bb;
        memcpy(ts->carry, p + whole * bb, ts->carry_len);
        return 0;
}

static int tensor_begin(worker *w, tensor_state *ts, size_t ti) {
        const pass_ctx *ctx = w->ctx;
        const mp_tensor *t = &ctx->m->tensors[ti];

        *ts = (tensor_state) { .ti = ti, .begin = t->offset, .end = t->offset + t->length,
                               .info = mp_dtype_get(t->dtype) };
        ts->xxh = XXH3_createState();
        if (!ts->xxh || XXH3_128bits_reset(ts->xxh) != XXH_OK)
                return -ENOMEM;

        if (ctx->opts->n_visitors == 0 || !ts->info || !ts->info->to_f32 || (t->flags & MP_TENSOR_NONCONTIGUOUS) ||
            ts->info->block_bytes > MAX_BLOCK_BYTES)
                return 0;
        ts->visit = calloc(ctx->opts->n_visitors, sizeof(bool));
        if (!ts->visit)
                return -ENOMEM;
        for (size_t v = 0; v < ctx->opts->n_visitors; v++) {
                const mp_tensor_visitor *vis = &ctx->opts->visitors[v];
                int r = vis->begin ? vis->begin(vis->userdata, ctx->m, ti) : 0;
                if (r < 0)
                        return r;
                ts->visit[v] = r == 0 && vis->values;
                ts->any_visit |= ts->visit[v];
        }
        return 0;
}

static int tensor_finish(worker *w, tensor_state *ts) {
        const pass_ctx *ctx = w->ctx;
        XXH128_hash_t h = XXH3_128bits_digest(ts->xxh);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, h);
        memcpy(ctx->res->tensor_xxh3[ts->ti], c.digest, 16);
        ctx->res->tensor_done[ts->ti] = true;

        for (size_t v = 0; ts->visit && v < ctx->opts->n_visitors; v++) {
                const mp_tensor_visitor *vis = &ctx->opts->visitors[v];
                if (ts->visit[v] && vis->end) {
                        int r = vis->end(vis->userdata, ts->ti);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static void tensor_state_done(tensor_state *ts) {
        XXH3_freeState(ts->xxh);
        free(ts->visit);
        ts->xxh = NULL;
        ts->visit = NULL;
}

/* --- files --------------------------------------------------------------- */

typedef struct file_job {
        size_t *tensors;                /* indices into m->tensors, by offset */
        size_t n_tensors;
        tensor_state *states;           /* active set */
        size_t n_active;
        size_t next;
} file_job;

static int cmp_tensor_offset(const void *a, const void *b, void *userdata) {
        const mp_model *m = userdata;
        uint64_t x = m->tensors[*(const size_t *) a].offset;
        uint64_t y = m->tensors[*(const size_t *) b].offset;
        return x < y ? -1 : x > y;
}

static int file_job_init(file_job *j, const mp_model *m, size_t fi) {
        *j = (file_job) {0};
        for (size_t i = 0; i < m->n_tensors; i++)
                j->n_tensors += m->tensors[i].file_index == fi;
        if (j->n_tensors == 0)
                return 0;
        j->tensors = malloc(j->n_tensors * sizeof(size_t));
        j->states = calloc(j->n_tensors, sizeof(tensor_state));
        if (!j->tensors || !j->states)
                return -ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < m->n_tensors; i++)
                if (m->tensors[i].file_index == fi)
                        j->tensors[k++] = i;
        qsort_r(j->tensors, j->n_tensors, sizeof(size_t), cmp_tensor_offset, (void *) m);
        return 0;
}

static void file_job_done(file_job *j) {
        for (size_t i = 0; i < j->n_active; i++)
                tensor_state_done(&j->states[i]);
        free(j->tensors);
        free(j->states);
}

/* Feeds the slice [s0, s0+len) to every tensor overlapping it. */
static int feed_slice(worker *w, file_job *j, const uint8_t *p, uint64_t s0, size_t len) {
        const mp_model *m = w->ctx->m;
        uint64_t s1 = s0 + len;
        int r;

        while (j->next < j->n_tensors && m->tensors[j->tensors[j->next]].offset < s1) {
                r = tensor_begin(w, &j->states[j->n_active], j->tensors[j->next]);
                j->n_active++;
                j->next++;
                if (r < 0)
                        return r;
        }

        for (size_t a = 0; a < j->n_active;) {
                tensor_state *ts = &j->states[a];
                uint64_t lo = ts->begin > s0 ? ts->begin : s0;
                uint64_t hi = ts->end < s1 ? ts->end : s1;
                if (lo < hi) {
                        r = tensor_feed(w, ts, p + (lo - s0), (size_t) (hi - lo));
                        if (r < 0)
                                return r;
                }
                if (ts->end <= s1) {
                        r = tensor_finish(w, ts);
                        tensor_state_done(ts);
                        j->states[a] = j->states[--j->n_active];
                        if (r < 0)
                                return r;
                        continue;
                }
                a++;
        }
        return 0;
}

static void report_progress(pass_ctx *ctx, uint64_t n) {
        pthread_mutex_lock(&ctx->lock);
        ctx->bytes_done += n;
        if (ctx->opts->progress)
                ctx->opts->progress(ctx->opts->progress_userdata, ctx->bytes_done, ctx->bytes_total);
        pthread_mutex_unlock(&ctx->lock);
}

static int digest_file(worker *w, size_t fi, mp_error *err) {
        pass_ctx *ctx = w->ctx;
        mp_file *f = &ctx->m->files[fi];
        size_t chunk = ctx->opts->chunk_bytes;
        int r;

        mp_source src;
        r = mp_source_open(&src, f->path, f->path, err);
        if (r < 0)
                return r;
        if (src.size != f->size) {
                mp_source_close(&src);
                return mp_error_set(err, -EIO, f->path, -1, "file changed size since it was opened (%" PRIu64
                                    " -> %" PRIu64 " bytes)", f->size, src.size);
        }
        bool drop = !ctx->opts->keep_cache;
        posix_fadvise(src.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        w->rs.recorded_end = 0;

        file_job j;
        EVP_MD_CTX *sha = EVP_MD_CTX_new();
        EVP_MD_CTX *git = NULL;
        r = file_job_init(&j, ctx->m, fi);
        if (r >= 0 && (!sha || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1))
                r = -ENOMEM;
        if (r >= 0 && f->expect_kind == MP_EXPECT_GIT_SHA1) {
                /* git hashes "blob <size>\0" + content */
                char hdr[64];
                int n = snprintf(hdr, sizeof(hdr), "blob %" PRIu64, f->size);
                git = EVP_MD_CTX_new();
                if (!git || EVP_DigestInit_ex(git, EVP_sha1(), NULL) != 1 || EVP_DigestUpdate(git, hdr, (size_t) n + 1) != 1)
                        r = -ENOMEM;
        }
        if (r < 0)
                mp_error_set(err, r, f->path, -1, "out of memory");


        for (uint64_t pos = 0; r >= 0 && pos < f->size; pos += chunk) {
                if (atomic_load(&ctx->stop)) {
                        r = -ECANCELED;
                        mp_error_set(err, r, f->path, -1, "cancelled");
                        break;
                }
                size_t n = f->size - pos < chunk ? (size_t) (f->size - pos) : chunk;
                r = before_read(ctx, n, f->path, err);
                if (r < 0)
                        break;
                if (drop)
                        residency_advance(&w->rs, src.fd, pos, f->size, chunk, w->mincore_vec);
                r = mp_source_pread(&src, w->buf, n, pos, err);
                if (r < 0)
                        break;

                for (size_t s = 0; r >= 0 && s < n; s += SLICE_BYTES) {
                        size_t len = n - s < SLICE_BYTES ? n - s : SLICE_BYTES;
                        EVP_DigestUpdate(sha, w->buf + s, len);
                        if (git)
                                EVP_DigestUpdate(git, w->buf + s, len);
                        r = feed_slice(w, &j, w->buf + s, pos + s, len);
                        if (r < 0)
                                mp_error_set(err, r, f->path, (int64_t) (pos + s), "%s",
                                             r == -ENOMEM ? "out of memory" : "tensor visitor failed");
                }

                if (drop)
                        residency_drop_new(&w->rs, src.fd, pos, n);
                report_progress(ctx, n);
        }

        if (r >= 0 && (j.n_active > 0 || j.next < j.n_tensors))
                r = mp_error_set(err, -EBADMSG, f->path, -1, "tensor data extends past the end of the file");

        if (r >= 0) {
                unsigned int len = 32;
                EVP_DigestFinal_ex(sha, f->sha256, &len);
                f->digested = true;
                if (git) {
                        uint8_t sha1[20];
                        char hex[41];
                        len = 20;
                        EVP_DigestFinal_ex(git, sha1, &len);
                        mp_hex(sha1, 20, hex);
                        /* Only the content can check a git blob name: note
                         * it now, the finding comes after the pass. */
                        if (strcmp(hex, f->expect_hex) != 0)
                                memcpy(ctx->git_mismatch[fi], hex, sizeof(hex));
                }
        }

        EVP_MD_CTX_free(sha);
        EVP_MD_CTX_free(git);
        file_job_done(&j);
        mp_source_close(&src);
        return r;
}

static void *worker_main(void *arg) {
        worker *w = arg;
        pass_ctx *ctx = w->ctx;

        for (;;) {
                size_t k = atomic_fetch_add(&ctx->next, 1);
                if (k >= ctx->n_order || atomic_load(&ctx->stop))
                        break;
                mp_error e;
                mp_error_clear(&e);
                int r = stop_requested(ctx) ? mp_error_set(&e, -ECANCELED, ctx->m->files[ctx->order[k]].path, -1,
                                                           "cancelled")
                                            : digest_file(w, ctx->order[k], &e);
                if (r < 0) {
                        fail(ctx, &e);
                        break;
                }
        }
        return NULL;
}

static int worker_init(worker *w, pass_ctx *ctx) {
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        size_t pages = ctx->opts->chunk_bytes / page + 1;
        *w = (worker) { .ctx = ctx };
        w->buf = malloc(ctx->opts->chunk_bytes);
        w->fbuf = malloc(FLOAT_BUF_ELEMS * sizeof(float));
        w->mincore_vec = malloc(pages);
        if (!w->buf || !w->fbuf || !w->mincore_vec || residency_init(&w->rs, ctx->opts->chunk_bytes) < 0)
                return -ENOMEM;
        return 0;
}

static void worker_done(worker *w) {
        free(w->buf);
        free(w->fbuf);
        free(w->mincore_vec);
        free(w->rs.ring);
}

static int cmp_file_size_desc(const void *a, const void *b, void *userdata) {
        const mp_model *m = userdata;
        uint64_t x = m->files[*(const size_t *) a].size;
        uint64_t y = m->files[*(const size_t *) b].size;
        return x > y ? -1 : x < y;
}

/* Blob names, in file order: git SHA-1 mismatches the workers noted, then
 * names that promise a SHA-256, compared now that every digest is known. */
static int check_expectations(mp_model *m, char (*git_mismatch)[41]) {
        for (size_t i = 0; i < m->n_files; i++) {
                const mp_file *f = &m->files[i];
                if (git_mismatch[i][0] == 0)
                        continue;
                int r = mp_model_add_finding(m, MP_FINDING_DIGEST_MISMATCH, f->path, -1,
                                             "blob is named by git SHA-1 %s but its content hashes to %s",
                                             f->expect_hex, git_mismatch[i]);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < m->n_files; i++) {
                mp_file *f = &m->files[i];
                if (f->expect_kind != MP_EXPECT_SHA256 || !f->expect_hex)
                        continue;
                char hex[65];
                mp_hex(f->sha256, 32, hex);
                if (strcmp(hex, f->expect_hex) != 0) {
                        int r = mp_model_add_finding(m, MP_FINDING_DIGEST_MISMATCH, f->path, -1,
                                                     "blob is named by SHA-256 %s but its content hashes to %s",
                                                     f->expect_hex, hex);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int cmp_rel_path(const void *a, const void *b) {
        const mp_file *x = *(const mp_file *const *) a, *y = *(const mp_file *const *) b;
        return strcmp(x->rel_path, y->rel_path);
}

int mp_model_digest(const mp_model *m, uint8_t out[32]) {
        _cleanup_(freep) const mp_file **sorted = calloc(m->n_files ? m->n_files : 1, sizeof(mp_file *));
        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_files; i++) {
                if (!m->files[i].digested)
                        return -EINVAL;
                sorted[i] = &m->files[i];
        }
        qsort(sorted, m->n_files, sizeof(mp_file *), cmp_rel_path);

        EVP_MD_CTX *sha = EVP_MD_CTX_new();
        if (!sha || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(sha);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->n_files; i++) {
                EVP_DigestUpdate(sha, sorted[i]->rel_path, strlen(sorted[i]->rel_path) + 1);
                EVP_DigestUpdate(sha, sorted[i]->sha256, 32);
        }
        unsigned int len = 32;
        EVP_DigestFinal_ex(sha, out, &len);
        EVP_MD_CTX_free(sha);
        return 0;
}

void mp_pass_result_free(mp_pass_result *res) {
        if (!res)
                return;
        free(res->tensor_xxh3);
        free(res->tensor_done);
        res->tensor_xxh3 = NULL;
        res->tensor_done = NULL;
        res->n_tensors = 0;
}

/* Runs the workers over ctx->order; returns ctx->error (0 on success). */
static int run_workers(pass_ctx *ctx, unsigned jobs, mp_model *m) {
        _cleanup_(freep) worker *workers = calloc(jobs, sizeof(worker));
        _cleanup_(freep) pthread_t *threads = calloc(jobs, sizeof(pthread_t));
        int r = workers && threads ? 0 : -ENOMEM;
        unsigned initialized = 0, started = 0;

        for (unsigned i = 0; i < jobs && r >= 0; i++) {
                r = worker_init(&workers[i], ctx);
                initialized++;
                if (r >= 0 && jobs > 1) {
                        r = -pthread_create(&threads[i], NULL, worker_main, &workers[i]);
                        if (r >= 0)
                                started++;
                }
        }
        if (r < 0) {
                mp_error e;
                mp_error_set(&e, r, m->root, -1, "cannot start workers: %s", strerror(-r));
                fail(ctx, &e);
        }
        if (jobs == 1 && r >= 0)
                worker_main(&workers[0]);
        for (unsigned i = 0; i < started; i++)
                pthread_join(threads[i], NULL);
        for (unsigned i = 0; i < initialized; i++)
                worker_done(&workers[i]);
        return ctx->error;
}

int mp_pass_run(mp_model *m, const mp_pass_options *opts_in, mp_pass_result *res, mp_error *err) {
        assert(m);
        assert(res);

        mp_pass_options opts = opts_in ? *opts_in : (mp_pass_options) {0};
        if (opts.chunk_bytes == 0)
                opts.chunk_bytes = DEFAULT_CHUNK;
        size_t page = (size_t) sysconf(_SC_PAGESIZE);
        opts.chunk_bytes = (opts.chunk_bytes + page - 1) / page * page;

        *res = (mp_pass_result) { .n_tensors = m->n_tensors };
        res->tensor_xxh3 = calloc(m->n_tensors ? m->n_tensors : 1, 16);
        res->tensor_done = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(bool));
        _cleanup_(freep) size_t *order = calloc(m->n_files ? m->n_files : 1, sizeof(size_t));
        _cleanup_(freep) char (*git_mismatch)[41] = calloc(m->n_files ? m->n_files : 1, 41);
        _cleanup_(mp_rate_limit_freep) mp_rate_limit *own_limit = NULL;
        int r = res->tensor_xxh3 && res->tensor_done && order && git_mismatch ? 0 : -ENOMEM;
        if (r >= 0 && opts.max_bytes_per_sec > 0)
                r = mp_rate_limit_new(opts.max_bytes_per_sec, &own_limit);
        if (r < 0) {
                mp_pass_result_free(res);
                return mp_error_set(err, r, m->root, -1, "out of memory");
        }

        pass_ctx ctx = { .m = m, .opts = &opts, .res = res, .order = order, .own_limit = own_limit,
                         .git_mismatch = git_mismatch };
        pthread_mutex_init(&ctx.lock, NULL);
        atomic_init(&ctx.next, 0);
        atomic_init(&ctx.stop, false);
        for (size_t i = 0; i < m->n_files; i++) {
                if (opts.skip_digested && m->files[i].digested)
                        continue;
                order[ctx.n_order++] = i;
                ctx.bytes_total += m->files[i].size;
        }
        /* Largest files first keeps all threads busy until the end. */
        qsort_r(order, ctx.n_order, sizeof(size_t), cmp_file_size_desc, m);

        if (opts.jobs == 0) {
                long n = sysconf(_SC_NPROCESSORS_ONLN);
                opts.jobs = n > 0 ? (unsigned) n : 1;
        }
        if (opts.jobs > ctx.n_order)
                opts.jobs = ctx.n_order ? (unsigned) ctx.n_order : 1;

        if (stop_requested(&ctx)) {
                mp_error e;
                mp_error_set(&e, -ECANCELED, m->root, -1, "cancelled");
                fail(&ctx, &e);
        } else if (ctx.n_order > 0)
                run_workers(&ctx, opts.jobs, m);
        pthread_mutex_destroy(&ctx.lock);

        if (ctx.error < 0) {
                if (err)
                        *err = ctx.err;
                mp_pass_result_free(res);
                return ctx.error;
        }
        res->bytes_read = ctx.bytes_done;

        r = check_expectations(m, git_mismatch);
        if (r >= 0)
                r = mp_model_digest(m, res->model_digest);
        if (r < 0) {
                mp_pass_result_free(res);
                return mp_error_set(err, r, m->root, -1, "out of memory");
        }
        return 0;
}
