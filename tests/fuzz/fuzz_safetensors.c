/* fuzz_safetensors.c - libFuzzer target for the safetensors reader, the
 * shard index parser and config.json -> mp_arch.
 *
 * Every input goes to all three: binary inputs (seeded from real
 * safetensors files) exercise the header validation, JSON inputs (seeded
 * from index and config files) the other two.  Bytes after a safetensors
 * header are also parsed as an index, so that mutations of a header's JSON
 * reach the index parser too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/config.h"
#include "formats/safetensors.h"
#include "util/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void free_shards(char **shards) {
        for (char **p = shards; p && *p; p++)
                free(*p);
        free(shards);
}

static void fuzz_index(const char *buf, size_t len) {
        char **shards = NULL;
        mp_error err;

        int r = mp_safetensors_index_parse("fuzz-index", buf, len, &shards, &err);
        if (r >= 0) {
                /* the contract: r names, NULL-terminated, all non-empty */
                for (int i = 0; i < r; i++)
                        if (!shards[i] || !shards[i][0] || strchr(shards[i], '/'))
                                __builtin_trap();
                if (shards[r])
                        __builtin_trap();
        } else if (err.code != r || err.offset > (int64_t) len)
                __builtin_trap();
        free_shards(shards);
}

static void fuzz_load(const uint8_t *data, size_t size) {
        mp_model *m = mp_model_new("/fuzz");
        mp_source src;
        mp_error err;

        if (!m)
                return;
        if (mp_model_add_file(m, "fuzz.safetensors", "fuzz.safetensors", MP_ROLE_WEIGHTS,
                              MP_FORMAT_SAFETENSORS, size) < 0)
                goto out;

        mp_source_init_mem(&src, "fuzz.safetensors", data, size);
        int r = mp_safetensors_load(m, 0, &src, &err);
        if (r < 0) {
                if (err.code != r || !err.reason[0] || m->n_tensors != 0)
                        __builtin_trap();
                goto out;
        }
        /* what the reader promises: sorted, inside the file, no overlaps */
        uint64_t prev_end = 0;
        for (size_t i = 0; i < m->n_tensors; i++) {
                const mp_tensor *t = &m->tensors[i];
                if (t->offset + t->length > size || t->offset < 8)
                        __builtin_trap();
                if (t->length > 0 && t->offset < prev_end)
                        __builtin_trap();
                if (t->length > 0)
                        prev_end = t->offset + t->length;
                if (mp_tensor_check(t, 8, size, "x", NULL) < 0)
                        __builtin_trap();
        }
out:
        mp_model_free(m);
}

static void fuzz_config(const char *buf, size_t len) {
        mp_model *m = mp_model_new("/fuzz");
        mp_error err;

        if (!m)
                return;
        /* twice: the second load replaces the first */
        (void) mp_config_load(m, "fuzz-config", buf, len, &err);
        (void) mp_config_load(m, "fuzz-config", buf, len, &err);
        mp_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_load(data, size);
        fuzz_index((const char *) data, size);
        fuzz_config((const char *) data, size);
        if (size > 8) {
                fuzz_index((const char *) data + 8, size - 8);
                fuzz_config((const char *) data + 8, size - 8);
        }
        return 0;
}
