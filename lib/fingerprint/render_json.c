/* render_json.c - JSON rendering of the fingerprint record. */
#include "fingerprint/render_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pass/pass.h"
#include "util/strutil.h"

static json_t *hex_of(ProtobufCBinaryData b) {
        char *s = malloc(2 * b.len + 1);
        if (!s)
                return NULL;
        mp_hex(b.data, b.len, s);
        json_t *j = json_string(s);
        free(s);
        return j;
}

/* json_object_set_new() ignores NULL values: a failed allocation leaves a
 * key out instead of crashing, and the final check catches it. */
static json_t *str_or_null(const char *s) {
        return s && *s ? json_string(s) : json_null();
}

/* Unknown numbers are NaN or 0 in the record; JSON has no NaN. */
static json_t *real_or_null(double x) {
        return isfinite(x) && x != 0 ? json_real(x) : json_null();
}

static json_t *files_json(const mp_fingerprint *fp) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < fp->n_files; i++) {
                const Modelprov__V1__FileDigest *f = fp->files[i];
                json_array_append_new(a, json_pack("{s:s, s:I, s:o, s:s, s:s, s:o}", "path", f->path,
                                                   "size", (json_int_t) f->size, "sha256", hex_of(f->sha256),
                                                   "format", f->format, "role", f->role,
                                                   "expected", str_or_null(f->expected)));
        }
        return a;
}

static json_t *tensors_json(const mp_fingerprint *fp) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < fp->n_tensors; i++) {
                const Modelprov__V1__TensorDigest *t = fp->tensors[i];
                json_t *shape = json_array();
                for (size_t d = 0; shape && d < t->n_shape; d++)
                        json_array_append_new(shape, json_integer((json_int_t) t->shape[d]));
                json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:I, s:I, s:I}", "name", t->name, "dtype", t->dtype,
                                      "shape", shape, "xxh3_128", hex_of(t->xxh3_128),
                                      "bytes", (json_int_t) t->n_bytes, "file", (json_int_t) t->file_index,
                                      "flags", (json_int_t) t->flags);
                if (o && t->source_name && *t->source_name)
                        json_object_set_new(o, "source_name", json_string(t->source_name));
                if (o && t->sample.len > 0) {
                        json_object_set_new(o, "l2", json_real(t->l2));
                        json_object_set_new(o, "mean", json_real(t->mean));
                        json_object_set_new(o, "std", json_real(t->std));
                        json_object_set_new(o, "samples", json_integer((json_int_t) (t->sample.len / 2)));
                }
                json_array_append_new(a, o);
        }
        return a;
}

static json_t *arch_json(const Modelprov__V1__Architecture *a) {
        if (!a)
                return json_null();
        return json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:i, s:o, s:o}",
                         "architecture", str_or_null(a->architecture), "model_type", str_or_null(a->model_type),
                         "hidden_size", (json_int_t) a->hidden_size, "num_layers", (json_int_t) a->num_layers,
                         "num_heads", (json_int_t) a->num_heads, "num_kv_heads", (json_int_t) a->num_kv_heads,
                         "intermediate_size", (json_int_t) a->intermediate_size,
                         "vocab_size", (json_int_t) a->vocab_size, "max_positions", (json_int_t) a->max_positions,
                         "head_dim", (json_int_t) a->head_dim, "rope_theta", real_or_null(a->rope_theta),
                         "norm_eps", real_or_null(a->norm_eps), "tie_word_embeddings", (int) a->tie_word_embeddings,
                         "hidden_act", str_or_null(a->hidden_act), "torch_dtype", str_or_null(a->torch_dtype));
}

static json_t *tokenizer_json(const Modelprov__V1__TokenizerIdentity *t) {
        if (!t)
                return json_null();
        return json_pack("{s:s, s:o, s:I, s:o, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o}",
                         "kind", t->kind, "source", str_or_null(t->source),
                         "vocab_size", (json_int_t) t->vocab_size, "vocab_sha256", hex_of(t->vocab_sha256),
                         "merges", (json_int_t) t->n_merges, "added_tokens", (json_int_t) t->n_added_tokens,
                         "bos_token", str_or_null(t->bos_token), "eos_token", str_or_null(t->eos_token),
                         "unk_token", str_or_null(t->unk_token), "pad_token", str_or_null(t->pad_token),
                         "model_name", str_or_null(t->model_name), "pre_tokenizer", str_or_null(t->pre_tokenizer));
}

static json_t *findings_json(const mp_fingerprint *fp) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < fp->n_findings; i++) {
                const Modelprov__V1__Finding *f = fp->findings[i];
                json_array_append_new(a, json_pack("{s:s, s:s, s:I, s:s}", "kind", f->kind, "file", f->file,
                                                   "offset", (json_int_t) f->offset, "detail", f->detail));
        }
        return a;
}

static json_t *dtypes_json(const mp_fingerprint *fp) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < fp->n_dtypes; i++)
                json_array_append_new(a, json_pack("{s:s, s:I, s:I}", "dtype", fp->dtypes[i]->dtype,
                                                   "bytes", (json_int_t) fp->dtypes[i]->n_bytes,
                                                   "tensors", (json_int_t) fp->dtypes[i]->n_tensors));
        return a;
}

static json_t *metadata_json(const mp_fingerprint *fp) {
        json_t *o = json_object();
        for (size_t i = 0; o && i < fp->n_metadata; i++)
                json_object_set_new(o, fp->metadata[i]->key, json_string(fp->metadata[i]->value));
        return o;
}

static json_t *floats_json(const float *v, size_t n) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < n; i++)
                json_array_append_new(a, json_real(v[i]));
        return a;
}

/* Stored JSON text (MFI, TFV) back as an object; null if absent or broken. */
static json_t *embedded_json(const char *s) {
        json_t *j = s && *s ? json_loads(s, 0, NULL) : NULL;
        return j ? j : json_null();
}

/* Token strings come from files: invalid UTF-8 cannot go into JSON. */
static json_t *utf8_or_placeholder(const char *s) {
        size_t len = strlen(s);
        return json_string(mp_utf8_invalid_at((const uint8_t *) s, len) == len ? s : "\ufffd");
}

static json_t *signals_json(const Modelprov__V1__Signals *s) {
        if (!s)
                return json_null();
        json_t *tokens = json_array();
        for (size_t i = 0; tokens && i < s->n_eas_tokens; i++)
                json_array_append_new(tokens, utf8_or_placeholder(s->eas_tokens[i]));
        json_t *sketch = s->vocab_sketch ? json_pack("{s:I, s:I}", "vocab_size", (json_int_t) s->vocab_sketch->vocab_size,
                                                     "hashes", (json_int_t) s->vocab_sketch->n_mins)
                                         : json_null();
        return json_pack("{s:b, s:o, s:o, s:o, s:o, s:o, s:{s:o, s:I}, s:{s:o, s:f, s:f}, s:{s:s, s:I, s:I}, s:o, s:I}",
                         "has_weights", s->has_weights, "arch_hash", str_or_null(s->arch_hash),
                         "family_hash", str_or_null(s->family_hash), "mfi", embedded_json(s->mfi_json),
                         "tfv", embedded_json(s->tfv_json), "vocab_sketch", sketch,
                         "eas", "anchor_tokens", tokens, "pairs", (json_int_t) s->n_eas_self_sim,
                         "end", "histogram", floats_json(s->end_histogram, s->n_end_histogram),
                         "min", (double) s->end_min, "max", (double) s->end_max,
                         "nlf", "mode", s->nlf_mode, "vectors", (json_int_t) s->nlf_vectors,
                         "values", (json_int_t) s->n_nlf,
                         "lep", floats_json(s->lep, s->n_lep), "num_layers", (json_int_t) s->num_layers);
}

json_t *mp_fingerprint_to_json(const mp_fingerprint *fp) {
        json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:I}",
                              "record_version", (int) fp->record_version, "tool_version", fp->tool_version,
                              "name", fp->name, "layout", fp->layout, "format", fp->format,
                              "model_digest", hex_of(fp->model_digest), "revision", str_or_null(fp->revision),
                              "parameter_count", (json_int_t) fp->parameter_count,
                              "total_bytes", (json_int_t) fp->total_bytes);
        if (!o)
                return NULL;
        json_t *parts[] = { arch_json(fp->arch), tokenizer_json(fp->tokenizer), dtypes_json(fp),
                            files_json(fp), tensors_json(fp), findings_json(fp), metadata_json(fp),
                            signals_json(fp->signals) };
        static const char *const keys[] = { "arch", "tokenizer", "dtypes", "files", "tensors", "findings",
                                            "metadata", "signals" };
        bool ok = true;
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
                /* A part that failed to render must not silently vanish. */
                if (!parts[i] || json_object_set_new(o, keys[i], parts[i]) < 0)
                        ok = false;
        }
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}
