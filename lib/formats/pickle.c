/* pickle.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/pickle.h"
int mp_pickle_parse(const char *label, const uint8_t *buf, size_t len, mp_pickle_result *ret, mp_error *err) { (void) buf; (void) len; (void) ret; return mp_error_set(err, -ENOSYS, label, -1, "not built"); }
void mp_pickle_result_free(mp_pickle_result *r) { (void) r; }
