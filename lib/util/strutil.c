/* strutil.c - see strutil.h. */
#include "util/strutil.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
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

size_t mp_utf8_invalid_at(const uint8_t *s, size_t len) {
        size_t i = 0;

        while (i < len) {
                uint8_t c = s[i];
                size_t n;
                uint32_t cp, min;

                if (c < 0x80) {
                        i++;
                        continue;
                } else if ((c & 0xe0) == 0xc0) {
                        n = 1, cp = c & 0x1f, min = 0x80;
                } else if ((c & 0xf0) == 0xe0) {
                        n = 2, cp = c & 0x0f, min = 0x800;
                } else if ((c & 0xf8) == 0xf0) {
                        n = 3, cp = c & 0x07, min = 0x10000;
                } else
                        return i;

                if (n > len - i - 1)
                        return i;
                for (size_t k = 1; k <= n; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return i;
                        cp = (cp << 6) | (s[i + k] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return i;
                i += n + 1;
        }
        return len;
}

void mp_hex(const uint8_t *bytes, size_t len, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < len; i++) {
                out[2 * i] = digits[bytes[i] >> 4];
                out[2 * i + 1] = digits[bytes[i] & 15];
        }
        out[2 * len] = 0;
}

/* Length of the valid UTF-8 character at s (1..4), or 0 if the byte there
 * does not start one. */
static size_t utf8_char_len(const uint8_t *s, size_t len) {
        size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || n > len)
                return 0;
        return mp_utf8_invalid_at(s, n) == n ? n : 0;
}

/* Appends src to out (NULL: only counts) as valid UTF-8 with escapes, up
 * to limit bytes; returns the bytes written and sets *complete when all of
 * src fit. */
static size_t utf8_escape(const uint8_t *s, size_t len, char *out, size_t limit, bool *complete) {
        size_t o = 0, i = 0;
        while (i < len) {
                size_t n = utf8_char_len(s + i, len - i);
                size_t need = n ? n : 4;
                if (o + need > limit)
                        break;
                if (out && n)
                        memcpy(out + o, s + i, n);
                else if (out)
                        snprintf(out + o, 5, "\\x%02x", s[i]);
                o += need;
                i += n ? n : 1;
        }
        *complete = i == len;
        return o;
}

char *mp_utf8_sanitize(const char *src, size_t max) {
        assert(src);
        assert(max >= 16);

        const uint8_t *s = (const uint8_t *) src;
        size_t len = strlen(src);
        char *out = malloc(max + 1);
        if (!out)
                return NULL;

        bool complete;
        size_t o = utf8_escape(s, len, NULL, max, &complete);
        if (complete)
                o = utf8_escape(s, len, out, max, &complete);
        else {
                o = utf8_escape(s, len, out, max - 3, &complete);
                memcpy(out + o, "...", 3);
                o += 3;
        }
        out[o] = '\0';
        return out;
}

bool mp_path_under(const char *path, const char *dir) {
        assert(path && dir);
        size_t n = strlen(dir);
        if (n == 1 && dir[0] == '/')
                return path[0] == '/';
        return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}
