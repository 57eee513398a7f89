/* gguf.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/gguf.h"
int mp_gguf_load(mp_model *m, size_t fi, const mp_source *src, mp_error *err) { (void) m; (void) fi; return mp_error_set(err, -ENOSYS, src->label, -1, "gguf reader not built"); }
mp_dtype mp_gguf_type_to_dtype(uint32_t t) { (void) t; return MP_DTYPE_INVALID; }
