/* tokenizer_json.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/tokenizer.h"
int mp_tokenizer_json_parse(const char *label, const char *buf, size_t len, mp_tokenizer **ret, mp_error *err) { (void) buf; (void) len; (void) ret; return mp_error_set(err, -ENOSYS, label, -1, "not built"); }
int mp_tokenizer_config_apply(mp_tokenizer *t, const char *label, const char *buf, size_t len, mp_error *err) { (void) t; (void) buf; (void) len; return mp_error_set(err, -ENOSYS, label, -1, "not built"); }
