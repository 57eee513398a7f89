/* strutil.c - see strutil.h. */
#include "util/strutil.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

bool mp_has_prefix(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool mp_has_suffix(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

bool mp_is_lower_hex(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

const char *mp_printable(char *dst, size_t size, const char *src) {
        size_t o = 0;
        assert(size > 4);
        for (; *src && o + 4 < size; src++)
                dst[o++] = ((unsigned char) *src < 0x20 || *src == 0x7f) ? '?' : *src;
        if (*src) {
                memcpy(dst + o, "...", 3);
                o += 3;
        }
        dst[o] = 0;
        return dst;
}

const char *mp_base_name(const char *path) {
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

char *mp_path_join(const char *a, const char *b) {
        char *p = NULL;
        size_t n = strlen(a);
        if (asprintf(&p, "%s%s%s", a, n > 0 && a[n - 1] == '/' ? "" : "/", b) < 0)
                return NULL;
        return p;
}

bool mp_is_direct_child(const char *path, const char *dir) {
        if (!dir)
                return false;
        size_t n = strlen(dir);
        if (strncmp(path, dir, n) != 0 || path[n] != '/' || path[n + 1] == 0)
                return false;
        return !strchr(path + n + 1, '/');
}
