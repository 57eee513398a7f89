/* hub.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/hub.h"
bool mp_hub_detect(const char *path) { (void) path; return false; }
int mp_hub_collect(mp_model *m, const char *path, mp_error *err) { (void) m; return mp_error_set(err, -ENOSYS, path, -1, "not built"); }
