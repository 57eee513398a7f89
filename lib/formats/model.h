/* model.h - the one view of a model that every format reader produces.
 *
 * A model is one set of weights with its config and tokenizer, possibly
 * spread over several files.  mp_model_open() takes anything a user can point
 * at (a weight file, a model directory, a Hugging Face hub cache repo or
 * snapshot, an Ollama manifest or "ollama:NAME[:TAG]") and returns:
 *   - files: every file that belongs to the model, with its role and format;
 *   - tensors: an ordered tensor directory (HF-style name, dtype, shape, and
 *     where its bytes are: file, offset, length);
 *   - arch: architecture fields from config.json or GGUF metadata;
 *   - tokenizer: from tokenizer.json / vocab.json+merges.txt /
 *     tokenizer.model / GGUF metadata;
 *   - findings: things a security engineer must hear about (unsafe pickle
 *     globals, files that do not parse, ...).  Blob digest mismatches are
 *     found later, when the pass has hashed the files (see pass.h).
 *
 * Opening reads only headers and small files; tensor bytes are read by the
 * pass (lib/pass) or by mp_tensor_stream_f32(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "formats/dtype.h"
#include "formats/tokenizer.h"
#include "util/error.h"

#define MP_MAX_DIMS 8

typedef enum mp_format {
        MP_FORMAT_UNKNOWN = 0,
        MP_FORMAT_SAFETENSORS,
        MP_FORMAT_GGUF,
        MP_FORMAT_PYTORCH_ZIP,  /* torch.save zip: pytorch_model.bin, *.pt, *.pth */
        MP_FORMAT_JSON,         /* config.json, tokenizer.json, index, manifests */
        MP_FORMAT_TEXT,         /* merges.txt, templates, licenses */
        MP_FORMAT_SENTENCEPIECE,
        MP_FORMAT_BLOB,         /* opaque (Ollama params, licenses ...) */
        _MP_FORMAT_MAX,
} mp_format;

typedef enum mp_file_role {
        MP_ROLE_OTHER = 0,
        MP_ROLE_WEIGHTS,
        MP_ROLE_INDEX,          /* model.safetensors.index.json */
        MP_ROLE_CONFIG,         /* config.json, generation_config.json, Ollama config */
        MP_ROLE_TOKENIZER,      /* tokenizer files */
        MP_ROLE_MANIFEST,       /* Ollama manifest */
        _MP_ROLE_MAX,
} mp_file_role;

typedef enum mp_layout {
        MP_LAYOUT_FILE = 0,     /* a single weight file */
        MP_LAYOUT_DIRECTORY,    /* config.json + tokenizer + weights */
        MP_LAYOUT_HUB,          /* HF hub cache snapshot */
        MP_LAYOUT_OLLAMA,       /* Ollama manifest + blobs */
        _MP_LAYOUT_MAX,
} mp_layout;

/* How a blob's name promises its content, checked by the pass. */
typedef enum mp_expect_kind {
        MP_EXPECT_NONE = 0,
        MP_EXPECT_SHA256,       /* hub LFS blob name, Ollama sha256-<hex> */
        MP_EXPECT_GIT_SHA1,     /* hub non-LFS blob name: git blob SHA-1 */
} mp_expect_kind;

typedef struct mp_file {
        char *path;             /* path to open (symlinks resolved for hub) */
        char *rel_path;         /* path relative to the model root; digest key */
        uint64_t size;
        mp_file_role role;
        mp_format format;
        mp_expect_kind expect_kind;
        char *expect_hex;       /* expected digest from the blob name (lowercase hex) */
        /* filled by the pass */
        bool digested;
        uint8_t sha256[32];
} mp_file;

enum {
        MP_TENSOR_ROPE_PERMUTED  = 1u << 0, /* GGUF q/k rows reordered for RoPE */
        MP_TENSOR_TRANSPOSED     = 1u << 1, /* stored transposed w.r.t. the HF tensor */
        MP_TENSOR_NONCONTIGUOUS  = 1u << 2, /* torch view with strides: not streamable */
};

typedef struct mp_tensor {
        char *name;             /* Hugging Face style name */
        char *source_name;      /* name inside the file (GGUF name, pickle key) */
        mp_dtype dtype;
        uint32_t n_dims;
        uint64_t shape[MP_MAX_DIMS];    /* HF order: outermost first (GGUF ne reversed) */
        uint64_t n_elements;
        size_t file_index;      /* into mp_model.files */
        uint64_t offset;        /* absolute byte offset of the first element in the file */
        uint64_t length;        /* bytes */
        uint32_t flags;         /* MP_TENSOR_* */
} mp_tensor;

/* Architecture fields, normalised across config.json and GGUF metadata.
 * 0 / NULL / NAN / -1 mean "unknown". */
typedef struct mp_arch {
        char *architecture;     /* config "architectures"[0] or GGUF general.architecture */
        char *model_type;       /* config model_type, or the GGUF arch mapped ("llama", "gpt2") */
        uint64_t hidden_size;
        uint64_t num_layers;
        uint64_t num_heads;
        uint64_t num_kv_heads;
        uint64_t intermediate_size;
        uint64_t vocab_size;
        uint64_t max_positions;
        uint64_t head_dim;
        double rope_theta;
        double norm_eps;
        int tie_word_embeddings;        /* -1 unknown */
        char *hidden_act;
        char *torch_dtype;
} mp_arch;

typedef enum mp_finding_kind {
        MP_FINDING_UNSAFE_PICKLE = 1,   /* pickle references a global outside the allow-list */
        MP_FINDING_DIGEST_MISMATCH,     /* blob name does not match its content */
        MP_FINDING_UNPARSEABLE,         /* a model file that does not parse */
        MP_FINDING_INCOMPLETE,          /* *.incomplete download, dangling link ... */
        MP_FINDING_SUSPICIOUS,          /* other: path escapes, odd layout */
        _MP_FINDING_MAX,
} mp_finding_kind;

typedef struct mp_finding {
        mp_finding_kind kind;
        char *file;             /* label of the file */
        int64_t offset;         /* -1 if none */
        char *detail;
} mp_finding;

typedef struct mp_kv {
        char *key;
        char *value;            /* rendered as text (numbers, short arrays) */
} mp_kv;

typedef struct mp_model {
        char *root;             /* what the model was opened from, made absolute */
        char *name;             /* display name: dir name, hub repo id, ollama name */
        mp_layout layout;
        mp_format format;       /* format of the weight files */

        mp_file *files;         size_t n_files, files_allocated;
        mp_tensor *tensors;     size_t n_tensors, tensors_allocated;
        mp_finding *findings;   size_t n_findings, findings_allocated;
        mp_kv *metadata;        size_t n_metadata, metadata_allocated;

        json_t *config;         /* parsed config.json, NULL if none */
        mp_arch arch;
        mp_tokenizer *tokenizer;        /* NULL if none found */
        char *revision;         /* hub snapshot revision / ollama tag, NULL otherwise */
} mp_model;

typedef struct mp_open_options {
        const char *ollama_store;       /* for "ollama:NAME": store root, NULL = defaults */
} mp_open_options;

/* Opens anything a user can point at (see top of file).  Hard errors (path
 * missing, not a model, weight file malformed) return a negative errno with
 * err filled; a malformed *auxiliary* file (tokenizer, config) becomes an
 * MP_FINDING_UNPARSEABLE and opening continues. */
int mp_model_open(const char *path, const mp_open_options *opts, mp_model **ret, mp_error *err);

void mp_model_free(mp_model *m);
static inline void mp_model_freep(mp_model **m) { mp_model_free(*m); }

/* Builders used by the readers. */
mp_model *mp_model_new(const char *root);
/* Appends a file; path and rel_path are copied.  Returns the index or <0. */
int mp_model_add_file(mp_model *m, const char *path, const char *rel_path, mp_file_role role,
                      mp_format format, uint64_t size);
/* Appends a tensor; name and source_name are copied (source_name may be NULL). */
int mp_model_add_tensor(mp_model *m, const mp_tensor *t);
int mp_model_add_finding(mp_model *m, mp_finding_kind kind, const char *file, int64_t offset,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int mp_model_add_metadata(mp_model *m, const char *key, const char *value);
/* Sets *field (a char * in m->arch) to a copy of value, freeing the old one. */
int mp_arch_set_string(char **field, const char *value);

/* Validates a tensor against its file: dims, shape product, byte length for
 * the dtype, and [offset, offset+length) inside [data_start, file_size).
 * Readers call it for every tensor they add. */
int mp_tensor_check(const mp_tensor *t, uint64_t data_start, uint64_t file_size, const char *label,
                    mp_error *err);

/* Classifies a file name (its last component) as model material: role and
 * format.  Returns false for anything that is not model material (README,
 * images, credentials ...), which modelprov never reads. */
bool mp_classify_file_name(const char *name, mp_file_role *role, mp_format *format);

/* Sum of n_elements over all tensors. */
uint64_t mp_model_parameter_count(const mp_model *m);

const char *mp_format_name(mp_format f);
const char *mp_role_name(mp_file_role r);
const char *mp_layout_name(mp_layout l);
const char *mp_finding_kind_name(mp_finding_kind k);

/* Streams tensor ti as float32, in order, in blocks of at most buf_elems
 * floats (buf_elems >= 256), dequantizing as needed; memory stays bounded
 * whatever the tensor size.  The callback returns 0 to continue or a
 * negative errno to stop (returned as is). */
typedef int (*mp_f32_block_fn)(void *userdata, const float *values, size_t n, uint64_t first_index);
int mp_tensor_stream_f32(const mp_model *m, size_t ti, size_t buf_elems, mp_f32_block_fn cb,
                         void *userdata, mp_error *err);
