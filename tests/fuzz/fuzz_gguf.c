/* fuzz_gguf.c - libFuzzer target for the GGUF reader and the ggml
 * dequantizers.
 *
 * The input is parsed as a GGUF file from memory; when it loads, every
 * (small) tensor is converted to float32 from the input bytes at the offset
 * the reader computed, so that ASan checks both the header validation and
 * the dequantizers' reads. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "formats/dtype.h"
#include "formats/gguf.h"
#include "formats/model.h"
#include "util/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void convert_tensors(const mp_model *m, const uint8_t *data) {
        for (size_t i = 0; i < m->n_tensors; i++) {
                const mp_tensor *t = &m->tensors[i];
                const mp_dtype_info *info = mp_dtype_get(t->dtype);

                if (!info || !info->to_f32 || t->n_elements > (1u << 20))
                        continue;
                float *out = malloc((size_t) t->n_elements * sizeof(float) + 1);
                if (!out)
                        continue;
                if (mp_dtype_to_f32(t->dtype, data + t->offset, (size_t) (t->n_elements / info->block_elems),
                                    out) < 0)
                        abort();        /* every dtype with to_f32 converts */
                free(out);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        mp_model *m = mp_model_new("/fuzz");
        mp_source src;
        mp_error err;

        if (!m)
                return 0;
        if (mp_model_add_file(m, "/fuzz/x.gguf", "x.gguf", MP_ROLE_WEIGHTS, MP_FORMAT_GGUF, size) < 0) {
                mp_model_free(m);
                return 0;
        }
        mp_source_init_mem(&src, "x.gguf", data, size);
        mp_error_clear(&err);
        int r = mp_gguf_load(m, 0, &src, &err);
        if (r < 0) {
                /* a failure always explains itself, at an offset inside the input */
                if (err.code != r || !err.reason[0] || err.offset > (int64_t) size)
                        abort();
        } else
                convert_tensors(m, data);
        mp_model_free(m);
        return 0;
}
