/* ollama.c - PLACEHOLDER: being written; every entry point fails with -ENOSYS. */
#include <errno.h>
#include "formats/ollama.h"
bool mp_ollama_detect(const char *path) { (void) path; return false; }
int mp_ollama_resolve_name(const char *store, const char *name, char **ret, mp_error *err) { (void) store; (void) ret; return mp_error_set(err, -ENOSYS, name, -1, "not built"); }
int mp_ollama_collect(mp_model *m, const char *p, mp_error *err) { (void) m; return mp_error_set(err, -ENOSYS, p, -1, "not built"); }
