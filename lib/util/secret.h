/* secret.h - reading the shared secrets and tokens that authenticate agents,
 * query clients and administrators (enroll secret, query token, admin token,
 * per-host key).
 *
 * Secrets live in files (or, for the CLI, an environment variable), never on
 * a command line where `ps` shows them.  A secret file holds one line of
 * printable ASCII; a trailing newline is dropped.  Files readable by group or
 * others are refused: a leaked query token exposes the fleet's inventory, a
 * leaked enroll secret lets anyone join it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "util/error.h"

#define MP_SECRET_MIN 16        /* bytes: shorter secrets are guessable */
#define MP_SECRET_MAX 1024

/* Checks that s is a usable secret: MP_SECRET_MIN..MP_SECRET_MAX printable,
 * non-blank ASCII characters (0x21..0x7e), so it fits an HTTP header value
 * unchanged.  what names it in the error ("query token"). */
int mp_secret_check(const char *s, const char *what, mp_error *err);

/* Reads the secret in path into a malloc'd, NUL-terminated string.
 * -EACCES when the file is accessible to group or others (secrets are mode
 * 0600 or 0400), -EBADMSG when it is not a single valid secret line. */
int mp_secret_read_file(const char *path, const char *what, char **ret, mp_error *err);

/* Compares two NUL-terminated secrets in time independent of where they
 * differ (lengths may leak, contents do not). */
bool mp_secret_equal(const char *a, const char *b);
