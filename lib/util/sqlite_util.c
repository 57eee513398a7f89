/* sqlite_util.c - SQLite result codes as errno (see sqlite_util.h). */
#include "util/sqlite_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int mp_sqlite_errno(int rc) {
        switch (rc & 0xff) {
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
        case SQLITE_FORMAT:
                return -EBADMSG;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_TOOBIG:
                return -E2BIG;
        default:
                return -EIO;
        }
}

int mp_sqlite_error_code(sqlite3 *db, int rc, char *why, size_t why_size) {
        int sys = db ? sqlite3_system_errno(db) : 0;
        int code = mp_sqlite_errno(rc);
        if (why_size > 0)
                why[0] = '\0';
        if (sys > 0 && ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR)) {
                snprintf(why, why_size, " (%s)", strerror(sys));
                if (sys == ENOENT || sys == EACCES || sys == EROFS || sys == ENOSPC)
                        code = -sys;
        }
        return code;
}
