/* sentencepiece.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/tokenizer.h"
int mp_sentencepiece_parse(const char *label, const uint8_t *buf, size_t len, mp_tokenizer **ret, mp_error *err) { (void) buf; (void) len; (void) ret; return mp_error_set(err, -ENOSYS, label, -1, "not built"); }
