/* model.c - the mp_model record: construction, the builders readers use to
 * append files, tensors, findings and metadata, tensor validation, and the
 * names of enums.  Deciding *what* to open lives in open.c. */
#include "formats/model.h"

#include <assert.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/config.h"
#include "util/macro.h"

mp_model *mp_model_new(const char *root) {
        mp_model *m = calloc(1, sizeof(*m));
        if (!m)
                return NULL;
        m->arch.tie_word_embeddings = -1;
        if (root && !(m->root = strdup(root))) {
                free(m);
                return NULL;
        }
        return m;
}

void mp_arch_clear(mp_arch *a) {
        free(a->architecture);
        free(a->model_type);
        free(a->hidden_act);
        free(a->torch_dtype);
        *a = (mp_arch) { .tie_word_embeddings = -1 };
}

void mp_model_free(mp_model *m) {
        if (!m)
                return;
        for (size_t i = 0; i < m->n_files; i++) {
                free(m->files[i].path);
                free(m->files[i].rel_path);
                free(m->files[i].expect_hex);
        }
        free(m->files);
        for (size_t i = 0; i < m->n_tensors; i++) {
                free(m->tensors[i].name);
                free(m->tensors[i].source_name);
        }
        free(m->tensors);
        for (size_t i = 0; i < m->n_findings; i++) {
                free(m->findings[i].file);
                free(m->findings[i].detail);
        }
        free(m->findings);
        for (size_t i = 0; i < m->n_metadata; i++) {
                free(m->metadata[i].key);
                free(m->metadata[i].value);
        }
        free(m->metadata);
        json_decref(m->config);
        mp_arch_clear(&m->arch);
        mp_tokenizer_free(m->tokenizer);
        free(m->root);
        free(m->name);
        free(m->revision);
        free(m);
}

int mp_model_add_file(mp_model *m, const char *path, const char *rel_path, mp_file_role role,
                      mp_format format, uint64_t size) {
        assert(m);
        assert(path);
        assert(rel_path);

        if (MP_GROW(m->files, m->files_allocated, m->n_files + 1) < 0)
                return -ENOMEM;

        mp_file f = { .role = role, .format = format, .size = size };
        f.path = strdup(path);
        f.rel_path = strdup(rel_path);
        if (!f.path || !f.rel_path) {
                free(f.path);
                free(f.rel_path);
                return -ENOMEM;
        }
        m->files[m->n_files] = f;
        return (int) m->n_files++;
}

int mp_model_add_tensor(mp_model *m, const mp_tensor *t) {
        assert(m);
        assert(t && t->name);

        if (MP_GROW(m->tensors, m->tensors_allocated, m->n_tensors + 1) < 0)
                return -ENOMEM;

        mp_tensor c = *t;
        c.name = strdup(t->name);
        c.source_name = t->source_name ? strdup(t->source_name) : NULL;
        if (!c.name || (t->source_name && !c.source_name)) {
                free(c.name);
                free(c.source_name);
                return -ENOMEM;
        }
        m->tensors[m->n_tensors] = c;
        return (int) m->n_tensors++;
}

int mp_model_add_finding(mp_model *m, mp_finding_kind kind, const char *file, int64_t offset,
                         const char *fmt, ...) {
        assert(m);

        if (MP_GROW(m->findings, m->findings_allocated, m->n_findings + 1) < 0)
                return -ENOMEM;

        char *detail = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&detail, fmt, ap);
        va_end(ap);
        if (r < 0)
                return -ENOMEM;

        mp_finding f = { .kind = kind, .offset = offset < 0 ? -1 : offset, .detail = detail };
        if (file && !(f.file = strdup(file))) {
                free(detail);
                return -ENOMEM;
        }
        m->findings[m->n_findings++] = f;
        return 0;
}

int mp_model_add_metadata(mp_model *m, const char *key, const char *value) {
        assert(m);
        assert(key);

        if (MP_GROW(m->metadata, m->metadata_allocated, m->n_metadata + 1) < 0)
                return -ENOMEM;
        mp_kv kv = { .key = strdup(key), .value = strdup(value ? value : "") };
        if (!kv.key || !kv.value) {
                free(kv.key);
                free(kv.value);
                return -ENOMEM;
        }
        m->metadata[m->n_metadata++] = kv;
        return 0;
}

int mp_arch_set_string(char **field, const char *value) {
        assert(field);
        char *c = NULL;
        if (value && !(c = strdup(value)))
                return -ENOMEM;
        free(*field);
        *field = c;
        return 0;
}

int mp_tensor_check(const mp_tensor *t, uint64_t data_start, uint64_t file_size, const char *label,
                    mp_error *err) {
        assert(t);
        const char *name = t->source_name ? t->source_name : t->name;

        if (!mp_dtype_get(t->dtype))
                return mp_error_set(err, -ENOTSUP, label, (int64_t) t->offset, "tensor '%s': unsupported dtype",
                                    name);
        if (t->n_dims > MP_MAX_DIMS)
                return mp_error_set(err, -EBADMSG, label, (int64_t) t->offset,
                                    "tensor '%s': %u dimensions (limit %d)", name, t->n_dims, MP_MAX_DIMS);

        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
                if (mul_overflow_u64(n, t->shape[d], &n))
                        return mp_error_set(err, -EOVERFLOW, label, (int64_t) t->offset,
                                            "tensor '%s': shape product overflows", name);
        if (n != t->n_elements)
                return mp_error_set(err, -EBADMSG, label, (int64_t) t->offset,
                                    "tensor '%s': element count %" PRIu64 " does not match shape (%" PRIu64 ")",
                                    name, t->n_elements, n);

        uint64_t bytes;
        int r = mp_dtype_bytes(t->dtype, n, &bytes);
        if (r == -EBADMSG)
                return mp_error_set(err, r, label, (int64_t) t->offset,
                                    "tensor '%s': %" PRIu64 " elements is not a whole number of %s blocks",
                                    name, n, mp_dtype_name(t->dtype));
        if (r < 0)
                return mp_error_set(err, r, label, (int64_t) t->offset, "tensor '%s': byte size overflows", name);
        if (bytes != t->length)
                return mp_error_set(err, -EBADMSG, label, (int64_t) t->offset,
                                    "tensor '%s': %" PRIu64 " bytes declared, shape and dtype %s need %" PRIu64,
                                    name, t->length, mp_dtype_name(t->dtype), bytes);

        uint64_t end;
        if (t->offset < data_start || add_overflow_u64(t->offset, t->length, &end) || end > file_size)
                return mp_error_set(err, -EBADMSG, label, (int64_t) (t->offset > INT64_MAX ? INT64_MAX : t->offset),
                                    "tensor '%s': data [%" PRIu64 ", +%" PRIu64 ") outside the data section "
                                    "[%" PRIu64 ", %" PRIu64 ")", name, t->offset, t->length, data_start, file_size);
        return 0;
}

typedef struct name_class {
        const char *pattern;
        mp_file_role role;
        mp_format format;
} name_class;

/* Model material by file name.  Anything else in a model directory (README,
 * images, credentials) is never read. */
static const name_class name_classes[] = {
        { "*.safetensors",                 MP_ROLE_WEIGHTS,   MP_FORMAT_SAFETENSORS },
        { "*.gguf",                        MP_ROLE_WEIGHTS,   MP_FORMAT_GGUF },
        { "pytorch_model*.bin",            MP_ROLE_WEIGHTS,   MP_FORMAT_PYTORCH_ZIP },
        { "*.pt",                          MP_ROLE_WEIGHTS,   MP_FORMAT_PYTORCH_ZIP },
        { "*.pth",                         MP_ROLE_WEIGHTS,   MP_FORMAT_PYTORCH_ZIP },
        { "*.safetensors.index.json",      MP_ROLE_INDEX,     MP_FORMAT_JSON },
        { "pytorch_model*.bin.index.json", MP_ROLE_INDEX,     MP_FORMAT_JSON },
        { "config.json",                   MP_ROLE_CONFIG,    MP_FORMAT_JSON },
        { "generation_config.json",        MP_ROLE_CONFIG,    MP_FORMAT_JSON },
        { "tokenizer.json",                MP_ROLE_TOKENIZER, MP_FORMAT_JSON },
        { "tokenizer_config.json",         MP_ROLE_TOKENIZER, MP_FORMAT_JSON },
        { "special_tokens_map.json",       MP_ROLE_TOKENIZER, MP_FORMAT_JSON },
        { "added_tokens.json",             MP_ROLE_TOKENIZER, MP_FORMAT_JSON },
        { "vocab.json",                    MP_ROLE_TOKENIZER, MP_FORMAT_JSON },
        { "merges.txt",                    MP_ROLE_TOKENIZER, MP_FORMAT_TEXT },
        { "tokenizer.model",               MP_ROLE_TOKENIZER, MP_FORMAT_SENTENCEPIECE },
};

bool mp_classify_file_name(const char *name, mp_file_role *role, mp_format *format) {
        assert(name);
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;

        /* Index patterns must win over the generic weight patterns. */
        for (size_t pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < ELEMENTSOF(name_classes); i++) {
                        const name_class *c = &name_classes[i];
                        if ((pass == 0) != (c->role == MP_ROLE_INDEX))
                                continue;
                        if (fnmatch(c->pattern, base, 0) == 0) {
                                if (role)
                                        *role = c->role;
                                if (format)
                                        *format = c->format;
                                return true;
                        }
                }
        return false;
}

uint64_t mp_model_parameter_count(const mp_model *m) {
        uint64_t n = 0;
        for (size_t i = 0; i < m->n_tensors; i++)
                n += m->tensors[i].n_elements;
        return n;
}

static const char *const format_names[_MP_FORMAT_MAX] = {
        [MP_FORMAT_UNKNOWN] = "unknown", [MP_FORMAT_SAFETENSORS] = "safetensors",
        [MP_FORMAT_GGUF] = "gguf", [MP_FORMAT_PYTORCH_ZIP] = "pytorch-zip",
        [MP_FORMAT_JSON] = "json", [MP_FORMAT_TEXT] = "text",
        [MP_FORMAT_SENTENCEPIECE] = "sentencepiece", [MP_FORMAT_BLOB] = "blob",
};
static const char *const role_names[_MP_ROLE_MAX] = {
        [MP_ROLE_OTHER] = "other", [MP_ROLE_WEIGHTS] = "weights", [MP_ROLE_INDEX] = "index",
        [MP_ROLE_CONFIG] = "config", [MP_ROLE_TOKENIZER] = "tokenizer", [MP_ROLE_MANIFEST] = "manifest",
};
static const char *const layout_names[_MP_LAYOUT_MAX] = {
        [MP_LAYOUT_FILE] = "file", [MP_LAYOUT_DIRECTORY] = "directory",
        [MP_LAYOUT_HUB] = "hf-hub-cache", [MP_LAYOUT_OLLAMA] = "ollama",
};
static const char *const finding_names[_MP_FINDING_MAX] = {
        [MP_FINDING_UNSAFE_PICKLE] = "unsafe-pickle-global",
        [MP_FINDING_DIGEST_MISMATCH] = "blob-digest-mismatch",
        [MP_FINDING_UNPARSEABLE] = "unparseable-file",
        [MP_FINDING_INCOMPLETE] = "incomplete-file",
        [MP_FINDING_SUSPICIOUS] = "suspicious-layout",
};

#define NAME_LOOKUP(table, v) \
        (((int) (v) >= 0 && (size_t) (v) < ELEMENTSOF(table) && (table)[v]) ? (table)[v] : "unknown")

const char *mp_format_name(mp_format f)            { return NAME_LOOKUP(format_names, f); }
const char *mp_role_name(mp_file_role r)           { return NAME_LOOKUP(role_names, r); }
const char *mp_layout_name(mp_layout l)            { return NAME_LOOKUP(layout_names, l); }
const char *mp_finding_kind_name(mp_finding_kind k) { return NAME_LOOKUP(finding_names, k); }
