/* sqlite_util.h - what every SQLite user here (catalogs, the collector's
 * store) needs: result codes as negative errno, and a cleanup helper for
 * prepared statements.  The wording of errors stays with each user, which
 * knows what the file is to the operator. */
#pragma once

#include <stddef.h>

#include <sqlite3.h>

/* The errno closest to SQLite result code rc (extended codes accepted):
 * not a database / corrupt -> EBADMSG, busy / locked -> EBUSY, read-only ->
 * EROFS, full -> ENOSPC, ... anything else -> EIO.  Returned negative. */
int mp_sqlite_errno(int rc);

/* The errno for rc on connection db (may be NULL), refined by the system
 * error behind an open or I/O failure (ENOENT, EACCES, EROFS, ENOSPC), whose
 * text goes into why as " (No such file or directory)" ("" otherwise). */
int mp_sqlite_error_code(sqlite3 *db, int rc, char *why, size_t why_size);

static inline void mp_sqlite_finalizep(sqlite3_stmt **s) {
        sqlite3_finalize(*s);   /* NULL is a no-op */
}
