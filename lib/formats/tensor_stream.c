/* tensor_stream.c - random access to one tensor as float32 blocks.
 *
 * The pass (lib/pass) reads whole files sequentially; this is for callers
 * that need one tensor (compare, diff): it reads the tensor's bytes in
 * bounded windows and converts them, so memory does not grow with the tensor. */
#include "formats/model.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "util/macro.h"
#include "util/source.h"

int mp_tensor_stream_f32(const mp_model *m, size_t ti, size_t buf_elems, mp_f32_block_fn cb,
                         void *userdata, mp_error *err) {
        assert(m);
        assert(ti < m->n_tensors);
        assert(cb);

        const mp_tensor *t = &m->tensors[ti];
        const mp_file *f = &m->files[t->file_index];
        const mp_dtype_info *info = mp_dtype_get(t->dtype);

        if (!info || !info->to_f32)
                return mp_error_set(err, -ENOTSUP, f->path, (int64_t) t->offset,
                                    "tensor '%s': no float conversion for dtype %s", t->name, mp_dtype_name(t->dtype));
        if (t->flags & MP_TENSOR_NONCONTIGUOUS)
                return mp_error_set(err, -ENOTSUP, f->path, (int64_t) t->offset,
                                    "tensor '%s': non-contiguous view cannot be streamed", t->name);
        if (buf_elems < 256)
                buf_elems = 256;

        size_t blocks_per_window = buf_elems / info->block_elems;
        if (blocks_per_window == 0)
                blocks_per_window = 1;
        _cleanup_(freep) uint8_t *raw = malloc(blocks_per_window * info->block_bytes);
        _cleanup_(freep) float *vals = malloc(blocks_per_window * info->block_elems * sizeof(float));
        if (!raw || !vals)
                return mp_error_set(err, -ENOMEM, f->path, -1, "out of memory");

        mp_source src;
        int r = mp_source_open(&src, f->path, f->path, err);
        if (r < 0)
                return r;

        uint64_t total_blocks = t->n_elements / info->block_elems;
        uint64_t done = 0;
        while (done < total_blocks) {
                size_t nb = (size_t) (total_blocks - done < blocks_per_window ? total_blocks - done : blocks_per_window);
                uint64_t off = t->offset + done * info->block_bytes;

                r = mp_source_pread(&src, raw, nb * info->block_bytes, off, err);
                if (r < 0)
                        break;
                r = mp_dtype_to_f32(t->dtype, raw, nb, vals);
                if (r < 0) {
                        mp_error_set(err, r, f->path, (int64_t) off, "tensor '%s': cannot convert %s",
                                     t->name, mp_dtype_name(t->dtype));
                        break;
                }
                r = cb(userdata, vals, nb * info->block_elems, done * info->block_elems);
                if (r < 0)
                        break;
                done += nb;
        }
        mp_source_close(&src);
        return r < 0 ? r : 0;
}
