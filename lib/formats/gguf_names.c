/* gguf_names.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/gguf_names.h"
#include <string.h>
char *mp_gguf_hf_name(const char *arch, const char *n, uint32_t *flags) { (void) arch; *flags = 0; return strdup(n); }
const char *mp_gguf_model_type(const char *arch) { return arch; }
