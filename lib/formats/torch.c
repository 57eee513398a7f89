/* torch.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/torch.h"
int mp_torch_load(mp_model *m, size_t fi, const mp_source *src, mp_error *err) { (void) m; (void) fi; return mp_error_set(err, -ENOSYS, src->label, -1, "torch reader not built"); }
