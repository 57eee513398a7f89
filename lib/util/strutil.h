/* strutil.h - small string and path helpers shared by the readers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

bool mp_has_prefix(const char *s, const char *prefix);
bool mp_has_suffix(const char *s, const char *suffix);

/* True if the n bytes at s are all lowercase hex digits. */
bool mp_is_lower_hex(const char *s, size_t n);

/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void mp_hex(const uint8_t *bytes, size_t len, char *out);

/* Copies src into dst (size > 4) for a message on a terminal or in a log:
 * control characters (< 0x20, 0x7f) become '?' (UTF-8 passes), and a string that does
 * not fit is cut and ends in "...".  Strings from hostile files must not
 * forge log lines or drive a terminal.  Returns dst. */
const char *mp_printable(char *dst, size_t size, const char *src);

/* The last path component (after the last '/'). */
const char *mp_base_name(const char *path);

/* True if path is dir itself or lies below it, by components ("/a/bc" is
 * not under "/a/b"); every path is under "/". */
bool mp_path_under(const char *path, const char *dir);

/* a + "/" + b without doubling a trailing slash of a; NULL on ENOMEM. */
char *mp_path_join(const char *a, const char *b);

/* True if path is dir + "/" + one more component (no further '/');
 * false when dir is NULL. */
bool mp_is_direct_child(const char *path, const char *dir);

/* Returns the offset of the first byte that is not part of valid UTF-8
 * (overlong forms, surrogates and code points above U+10FFFF refused), or
 * len when all is valid. */
size_t mp_utf8_invalid_at(const uint8_t *s, size_t len);

/* A copy of src that is valid UTF-8 of at most max bytes (max >= 16), for
 * protocol strings (protobuf strings must be UTF-8; Linux paths are bytes):
 * each byte that is not part of valid UTF-8 becomes the four characters
 * "\xNN", and a string that does not fit is cut on a character boundary
 * and ends in "...".  NULL on ENOMEM. */
char *mp_utf8_sanitize(const char *src, size_t max);
