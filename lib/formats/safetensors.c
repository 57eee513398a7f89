/* safetensors.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/safetensors.h"
int mp_safetensors_load(mp_model *m, size_t fi, const mp_source *src, mp_error *err) { (void) m; (void) fi; return mp_error_set(err, -ENOSYS, src->label, -1, "safetensors reader not built"); }
int mp_safetensors_index_parse(const char *label, const char *buf, size_t len, char ***ret, mp_error *err) { (void) buf; (void) len; (void) ret; return mp_error_set(err, -ENOSYS, label, -1, "not built"); }
