/* gguf_dequant.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/gguf_dequant.h"
int mp_gguf_dequantize(mp_dtype t, const void *src, size_t n, float *dst) { (void) t; (void) src; (void) n; (void) dst; return -ENOTSUP; }
