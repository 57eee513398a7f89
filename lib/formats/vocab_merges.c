/* vocab_merges.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/tokenizer.h"
int mp_tokenizer_vocab_merges_parse(const char *vl, const char *vb, size_t vn, const char *ml, const char *mb, size_t mn, mp_tokenizer **ret, mp_error *err) { (void) vb; (void) vn; (void) ml; (void) mb; (void) mn; (void) ret; return mp_error_set(err, -ENOSYS, vl, -1, "not built"); }
