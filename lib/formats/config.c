/* config.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/config.h"
int mp_config_load(mp_model *m, const char *label, const char *buf, size_t len, mp_error *err) { (void) m; (void) buf; (void) len; return mp_error_set(err, -ENOSYS, label, -1, "not built"); }
int mp_arch_from_config(mp_arch *arch, const json_t *config) { (void) arch; (void) config; return -ENOSYS; }
