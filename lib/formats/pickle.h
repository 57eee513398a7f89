/* pickle.h - a restricted pickle interpreter for PyTorch state dicts.
 *
 * It understands the opcodes of protocols 0-5 well enough to rebuild nested
 * dicts/lists/tuples of tensors, and it NEVER imports or calls anything.
 * GLOBAL / STACK_GLOBAL references are resolved against an allow-list
 * (collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter, torch.*Storage, torch.float16 ...);
 * REDUCE on an allowed rebuild function produces a tensor reference; any other
 * global is recorded as a finding (module.name, opcode offset) and replaced by
 * an inert placeholder.  Persistent ids ("storage", type, key, location,
 * numel) name storages. */
#pragma once

#include <stdint.h>
#include <stddef.h>

#include "formats/dtype.h"
#include "util/error.h"

#define MP_PICKLE_MAX_STACK   (1u << 16)
#define MP_PICKLE_MAX_MEMO    (1u << 20)
#define MP_PICKLE_MAX_TENSORS (1u << 20)
#define MP_PICKLE_MAX_DEPTH   64

typedef struct mp_pickle_tensor {
        char *name;             /* dotted key path in the state dict */
        char *storage_key;      /* persistent id key: data/<key> */
        mp_dtype dtype;         /* from the storage type */
        uint32_t n_dims;
        uint64_t shape[8];
        uint64_t stride[8];
        uint64_t storage_offset;        /* in elements */
        uint64_t storage_numel;         /* from the persistent id */
} mp_pickle_tensor;

typedef struct mp_pickle_global {
        char *module, *name;    /* the unsafe reference */
        uint64_t offset;        /* opcode offset inside the pickle */
} mp_pickle_global;

typedef struct mp_pickle_result {
        mp_pickle_tensor *tensors;      size_t n_tensors;
        mp_pickle_global *unsafe;       size_t n_unsafe;
} mp_pickle_result;

/* Interprets buf (len bytes, label for errors).  Malformed pickles fail with
 * the opcode offset; unsafe globals do not fail, they are listed. */
int mp_pickle_parse(const char *label, const uint8_t *buf, size_t len, mp_pickle_result *ret,
                    mp_error *err);
void mp_pickle_result_free(mp_pickle_result *r);
