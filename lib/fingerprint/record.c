/* record.c - building, packing and storing the fingerprint record.
 *
 * The record is assembled in an arena from the model and the pass result,
 * packed, and unpacked again: callers always hold an unpacked message. */
#include "fingerprint/record.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/arena.h"
#include "util/macro.h"
#include "util/source.h"

static ProtobufCBinaryData bytes_of(mp_arena *a, const uint8_t *p, size_t n) {
        uint8_t *c = mp_arena_alloc(a, n);
        if (c)
                memcpy(c, p, n);
        return (ProtobufCBinaryData) { .len = c ? n : 0, .data = c };
}

static int build_files(mp_arena *a, const mp_model *m, Modelprov__V1__Fingerprint *fp) {
        fp->n_files = m->n_files;
        fp->files = mp_arena_calloc(a, m->n_files, sizeof(*fp->files));
        if (!fp->files)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_files; i++) {
                const mp_file *f = &m->files[i];
                Modelprov__V1__FileDigest *d = mp_arena_alloc(a, sizeof(*d));
                if (!d)
                        return -ENOMEM;
                modelprov__v1__file_digest__init(d);
                d->path = mp_arena_strdup(a, f->rel_path);
                d->size = f->size;
                d->sha256 = bytes_of(a, f->sha256, 32);
                d->format = mp_arena_strdup(a, mp_format_name(f->format));
                d->role = mp_arena_strdup(a, mp_role_name(f->role));
                if (f->expect_kind != MP_EXPECT_NONE && f->expect_hex) {
                        char buf[128];
                        snprintf(buf, sizeof(buf), "%s:%s", f->expect_kind == MP_EXPECT_SHA256 ? "sha256" : "gitsha1",
                                 f->expect_hex);
                        d->expected = mp_arena_strdup(a, buf);
                }
                if (!d->path || !d->format || !d->role)
                        return -ENOMEM;
                fp->files[i] = d;
        }
        return 0;
}

static int build_tensors(mp_arena *a, const mp_model *m, const mp_pass_result *res,
                         Modelprov__V1__Fingerprint *fp) {
        fp->n_tensors = m->n_tensors;
        fp->tensors = mp_arena_calloc(a, m->n_tensors, sizeof(*fp->tensors));
        if (!fp->tensors)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_tensors; i++) {
                const mp_tensor *t = &m->tensors[i];
                Modelprov__V1__TensorDigest *d = mp_arena_alloc(a, sizeof(*d));
                if (!d)
                        return -ENOMEM;
                modelprov__v1__tensor_digest__init(d);
                d->name = mp_arena_strdup(a, t->name);
                d->dtype = mp_arena_strdup(a, mp_dtype_name(t->dtype));
                d->n_shape = t->n_dims;
                d->shape = mp_arena_calloc(a, t->n_dims, sizeof(uint64_t));
                if (!d->name || !d->dtype || !d->shape)
                        return -ENOMEM;
                memcpy(d->shape, t->shape, t->n_dims * sizeof(uint64_t));
                d->xxh3_128 = bytes_of(a, res->tensor_xxh3[i], 16);
                d->n_bytes = t->length;
                if (t->source_name && strcmp(t->source_name, t->name) != 0)
                        d->source_name = mp_arena_strdup(a, t->source_name);
                d->file_index = (uint32_t) t->file_index;
                d->flags = t->flags;
                fp->tensors[i] = d;
        }
        return 0;
}

static int build_arch(mp_arena *a, const mp_arch *ar, Modelprov__V1__Fingerprint *fp) {
        Modelprov__V1__Architecture *d = mp_arena_alloc(a, sizeof(*d));
        if (!d)
                return -ENOMEM;
        modelprov__v1__architecture__init(d);
        d->architecture = mp_arena_strdup(a, ar->architecture);
        d->model_type = mp_arena_strdup(a, ar->model_type);
        d->hidden_act = mp_arena_strdup(a, ar->hidden_act);
        d->torch_dtype = mp_arena_strdup(a, ar->torch_dtype);
        if (!d->architecture || !d->model_type || !d->hidden_act || !d->torch_dtype)
                return -ENOMEM;
        d->hidden_size = ar->hidden_size;
        d->num_layers = ar->num_layers;
        d->num_heads = ar->num_heads;
        d->num_kv_heads = ar->num_kv_heads;
        d->intermediate_size = ar->intermediate_size;
        d->vocab_size = ar->vocab_size;
        d->max_positions = ar->max_positions;
        d->head_dim = ar->head_dim;
        d->rope_theta = ar->rope_theta;
        d->norm_eps = ar->norm_eps;
        d->tie_word_embeddings = ar->tie_word_embeddings;
        fp->arch = d;
        return 0;
}

static int build_tokenizer(mp_arena *a, const mp_tokenizer *t, Modelprov__V1__Fingerprint *fp) {
        if (!t)
                return 0;
        Modelprov__V1__TokenizerIdentity *d = mp_arena_alloc(a, sizeof(*d));
        if (!d)
                return -ENOMEM;
        modelprov__v1__tokenizer_identity__init(d);
        uint8_t digest[32];
        mp_tokenizer_vocab_digest(t, digest);
        d->kind = mp_arena_strdup(a, mp_tokenizer_kind_name(t->kind));
        d->source = mp_arena_strdup(a, t->source);
        d->vocab_size = t->n_tokens;
        d->vocab_sha256 = bytes_of(a, digest, 32);
        d->n_merges = t->n_merges;
        d->n_added_tokens = t->n_added_tokens;
        d->bos_token = mp_arena_strdup(a, t->bos_token);
        d->eos_token = mp_arena_strdup(a, t->eos_token);
        d->unk_token = mp_arena_strdup(a, t->unk_token);
        d->pad_token = mp_arena_strdup(a, t->pad_token);
        d->model_name = mp_arena_strdup(a, t->model_name);
        d->pre_tokenizer = mp_arena_strdup(a, t->pre_tokenizer);
        if (!d->kind || !d->source || !d->bos_token || !d->eos_token || !d->unk_token || !d->pad_token ||
            !d->model_name || !d->pre_tokenizer)
                return -ENOMEM;
        fp->tokenizer = d;
        return 0;
}

static int build_findings(mp_arena *a, const mp_model *m, Modelprov__V1__Fingerprint *fp) {
        fp->n_findings = m->n_findings;
        fp->findings = mp_arena_calloc(a, m->n_findings, sizeof(*fp->findings));
        if (!fp->findings)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_findings; i++) {
                Modelprov__V1__Finding *d = mp_arena_alloc(a, sizeof(*d));
                if (!d)
                        return -ENOMEM;
                modelprov__v1__finding__init(d);
                d->kind = mp_arena_strdup(a, mp_finding_kind_name(m->findings[i].kind));
                d->file = mp_arena_strdup(a, m->findings[i].file);
                d->offset = m->findings[i].offset;
                d->detail = mp_arena_strdup(a, m->findings[i].detail);
                if (!d->kind || !d->file || !d->detail)
                        return -ENOMEM;
                fp->findings[i] = d;
        }
        return 0;
}

/* Bytes and tensor counts per dtype, in dtype order. */
static int build_dtypes(mp_arena *a, const mp_model *m, Modelprov__V1__Fingerprint *fp) {
        uint64_t bytes[_MP_DTYPE_MAX] = {0}, count[_MP_DTYPE_MAX] = {0};
        size_t n = 0;
        for (size_t i = 0; i < m->n_tensors; i++) {
                mp_dtype t = m->tensors[i].dtype;
                if (t <= MP_DTYPE_INVALID || t >= _MP_DTYPE_MAX)
                        continue;
                n += count[t] == 0;
                bytes[t] += m->tensors[i].length;
                count[t]++;
        }
        fp->dtypes = mp_arena_calloc(a, n, sizeof(*fp->dtypes));
        if (!fp->dtypes)
                return -ENOMEM;
        for (int t = 0; t < _MP_DTYPE_MAX; t++) {
                if (count[t] == 0)
                        continue;
                Modelprov__V1__DtypeShare *d = mp_arena_alloc(a, sizeof(*d));
                if (!d)
                        return -ENOMEM;
                modelprov__v1__dtype_share__init(d);
                d->dtype = mp_arena_strdup(a, mp_dtype_name((mp_dtype) t));
                d->n_bytes = bytes[t];
                d->n_tensors = count[t];
                fp->dtypes[fp->n_dtypes++] = d;
        }
        return 0;
}

static int build_metadata(mp_arena *a, const mp_model *m, Modelprov__V1__Fingerprint *fp) {
        fp->metadata = mp_arena_calloc(a, m->n_metadata, sizeof(*fp->metadata));
        if (!fp->metadata)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_metadata; i++) {
                Modelprov__V1__Fingerprint__MetadataEntry *e = mp_arena_alloc(a, sizeof(*e));
                if (!e)
                        return -ENOMEM;
                modelprov__v1__fingerprint__metadata_entry__init(e);
                e->key = mp_arena_strdup(a, m->metadata[i].key);
                e->value = mp_arena_strdup(a, m->metadata[i].value);
                if (!e->key || !e->value)
                        return -ENOMEM;
                fp->metadata[fp->n_metadata++] = e;
        }
        return 0;
}

static int build_in_arena(mp_arena *a, const mp_model *m, const mp_pass_result *res,
                          Modelprov__V1__Fingerprint *fp) {
        modelprov__v1__fingerprint__init(fp);
        fp->record_version = MP_FINGERPRINT_RECORD_VERSION;
        fp->tool_version = mp_arena_strdup(a, MODELPROV_VERSION);
        fp->name = mp_arena_strdup(a, m->name);
        fp->layout = mp_arena_strdup(a, mp_layout_name(m->layout));
        fp->format = mp_arena_strdup(a, mp_format_name(m->format));
        fp->revision = mp_arena_strdup(a, m->revision);
        if (!fp->tool_version || !fp->name || !fp->layout || !fp->format || !fp->revision)
                return -ENOMEM;
        fp->model_digest = bytes_of(a, res->model_digest, 32);
        fp->parameter_count = mp_model_parameter_count(m);
        for (size_t i = 0; i < m->n_files; i++)
                fp->total_bytes += m->files[i].size;

        int r = build_files(a, m, fp);
        if (r >= 0)
                r = build_tensors(a, m, res, fp);
        if (r >= 0)
                r = build_arch(a, &m->arch, fp);
        if (r >= 0)
                r = build_tokenizer(a, m->tokenizer, fp);
        if (r >= 0)
                r = build_findings(a, m, fp);
        if (r >= 0)
                r = build_dtypes(a, m, fp);
        if (r >= 0)
                r = build_metadata(a, m, fp);
        return r;
}

int mp_fingerprint_build(const mp_model *m, const mp_pass_result *res, mp_fingerprint **ret, mp_error *err) {
        assert(m);
        assert(res && res->n_tensors == m->n_tensors);
        assert(ret);

        mp_arena a = {0};
        Modelprov__V1__Fingerprint fp;
        int r = build_in_arena(&a, m, res, &fp);
        if (r < 0) {
                mp_arena_free(&a);
                return mp_error_set(err, r, m->root, -1, "out of memory building the record");
        }

        _cleanup_(freep) uint8_t *buf = NULL;
        size_t len = 0;
        r = mp_fingerprint_pack(&fp, &buf, &len);
        mp_arena_free(&a);
        if (r < 0)
                return mp_error_set(err, r, m->root, -1, "out of memory packing the record");
        return mp_fingerprint_unpack(m->root, buf, len, ret, err);
}

int mp_fingerprint_pack(const mp_fingerprint *fp, uint8_t **ret, size_t *ret_len) {
        size_t len = modelprov__v1__fingerprint__get_packed_size(fp);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        modelprov__v1__fingerprint__pack(fp, buf);
        *ret = buf;
        *ret_len = len;
        return 0;
}

int mp_fingerprint_unpack_with(const char *label, const uint8_t *buf, size_t len, ProtobufCAllocator *alloc,
                               mp_fingerprint **ret, mp_error *err) {
        if (len > MP_FINGERPRINT_MAX_BYTES)
                return mp_error_set(err, -E2BIG, label, -1, "record of %zu bytes exceeds the limit", len);
        mp_fingerprint *fp = modelprov__v1__fingerprint__unpack(alloc, len, buf);
        if (!fp)
                return mp_error_set(err, -EBADMSG, label, -1, "not a modelprov fingerprint record");
        if (fp->record_version != MP_FINGERPRINT_RECORD_VERSION) {
                uint32_t v = fp->record_version;
                modelprov__v1__fingerprint__free_unpacked(fp, alloc);
                return mp_error_set(err, -ENOTSUP, label, -1, "fingerprint record version %u not supported", v);
        }
        *ret = fp;
        return 0;
}

int mp_fingerprint_unpack(const char *label, const uint8_t *buf, size_t len, mp_fingerprint **ret,
                          mp_error *err) {
        return mp_fingerprint_unpack_with(label, buf, len, NULL, ret, err);
}

void mp_fingerprint_free(mp_fingerprint *fp) {
        if (fp)
                modelprov__v1__fingerprint__free_unpacked(fp, NULL);
}

/* A device, pipe or socket (-o /dev/stdout, a FIFO) is written in place:
 * the temporary-file-and-rename dance would replace it with a regular file,
 * and for /dev/null that breaks the whole machine. */
static int write_special(const char *path, const uint8_t *buf, size_t len, mp_error *err) {
        _cleanup_(closep) int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return mp_error_set(err, -errno, path, -1, "cannot open: %s", strerror(errno));
        int r = mp_write_all(fd, buf, len);
        if (r < 0)
                return mp_error_set(err, r, path, -1, "write failed: %s", strerror(-r));
        return 0;
}

int mp_fingerprint_write(const mp_fingerprint *fp, const char *path, mp_error *err) {
        _cleanup_(freep) uint8_t *buf = NULL;
        _cleanup_(freep) char *tmp = NULL;
        size_t len;

        if (mp_fingerprint_pack(fp, &buf, &len) < 0)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");

        struct stat st;
        if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
                if (S_ISDIR(st.st_mode))
                        return mp_error_set(err, -EISDIR, path, -1, "is a directory");
                return write_special(path, buf, len, err);
        }

        if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        _cleanup_(closep) int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return mp_error_set(err, -errno, path, -1, "cannot create %s: %s", tmp, strerror(errno));

        int r = mp_write_all(fd, buf, len);
        if (r < 0) {
                unlink(tmp);
                return mp_error_set(err, r, path, -1, "write failed: %s", strerror(-r));
        }
        /* fsync before rename: after a crash the record is old or new, never torn. */
        if (fsync(fd) < 0 || fchmod(fd, 0644) < 0 || rename(tmp, path) < 0) {
                int e = errno;
                unlink(tmp);
                return mp_error_set(err, -e, path, -1, "cannot write: %s", strerror(e));
        }
        return 0;
}

int mp_fingerprint_read(const char *path, mp_fingerprint **ret, mp_error *err) {
        _cleanup_(freep) char *buf = NULL;
        size_t len;
        int r = mp_read_file_limited(path, path, MP_FINGERPRINT_MAX_BYTES, &buf, &len, err);
        if (r < 0)
                return r;
        return mp_fingerprint_unpack(path, (const uint8_t *) buf, len, ret, err);
}
