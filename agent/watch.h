/* watch.h - recursive inotify watching of the agent's roots, with settle.
 *
 * One inotify fd (our own, not sd_event_add_inotify: that one is not
 * recursive, hides watch descriptors and dispatches one event per loop
 * iteration) on an sd-event io source.  The watcher keeps a tree of the
 * directories under each root (wd → node) and the files it knows, and
 * tells its owner, on the loop thread, about files that are ready to read
 * and about files that are gone.
 *
 * Rules (measured in the issue-5 spike, see docs/agent.md):
 *   - A new directory is watched first, then crawled, so files created
 *     before its watch existed are found by the crawl.
 *   - Renames are paired by cookie; a MOVED_FROM with no MOVED_TO within a
 *     few ms is a move out (the subtree's watches are removed).
 *   - IN_Q_OVERFLOW (or IN_UNMOUNT) → a full mark-and-sweep recrawl after
 *     the current batch.
 *   - Watch limit (ENOSPC) → one warning naming fs.inotify.max_user_watches
 *     (and user.max_inotify_watches) with their values; the directory is
 *     still crawled and is rescanned every unwatched_rescan_s, retrying the
 *     watch.
 *   - Settle: a file is "ready" only after a writer closed it
 *     (IN_CLOSE_WRITE), it was renamed into place (IN_MOVED_TO), or it was
 *     found by a crawl, and then nothing happened to it for settle_ms.
 *     IN_MODIFY only postpones.  A symlink is ready on IN_CREATE (symlinks
 *     are never closed).  Names that are downloads in progress or locks
 *     are never ready until renamed: "*.incomplete", "*.partial", "*.lock",
 *     "*.tmp", "tmp_*", anything containing "-partial" (Ollama), and
 *     everything under a ".locks" directory.  At expiry the file is
 *     re-stat-ed (AT_SYMLINK_NOFOLLOW); if it changed it waits again.
 *   - Files found by a crawl are first offered to is_unchanged(): when the
 *     owner already knows them with the same stat, they are not queued at
 *     all (a restart over an unchanged tree queues nothing).
 *   - The periodic rescan (every rescan_s; 0: never) is a stat-only
 *     mark-and-sweep crawl of every root: the safety net for changes
 *     inotify cannot see (network file systems, mmap writes).
 *   - A root that does not exist (yet) or was removed is retried at each
 *     rescan and on the unwatched-rescan timer.
 *   - Only directories and regular files and symlinks are tracked; symlinks
 *     are never followed by the watcher (the model readers resolve hub
 *     snapshot links).
 *   - A directory renamed within the roots: dir_removed(old path), then
 *     ready() for each file under the new path once it settles (same
 *     inodes: the owner pairs them by (dev, ino), no re-read).
 *   - removed() is called only for paths the owner may know: handed on by
 *     ready(), or found by a crawl (the owner may have them from an earlier
 *     run).  A file created and deleted before it settled, a tmp_* file or
 *     an *.incomplete that was renamed are not reported.
 *   - Bounds for hostile trees: no directory deeper than 64 below a root,
 *     no path of PATH_MAX bytes or more (one warning each, per watcher);
 *     a directory that is its own ancestor (bind mount) is not entered.
 *
 * No polling: with nothing changing and nothing queued, the watcher has no
 * timer armed except the rescan timers. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <systemd/sd-event.h>

#include "util/error.h"

typedef struct agent_watch agent_watch;

typedef enum agent_crawl_kind {
        AGENT_CRAWL_INITIAL,            /* startup (and a root that appeared) */
        AGENT_CRAWL_OVERFLOW,           /* after IN_Q_OVERFLOW / IN_UNMOUNT */
        AGENT_CRAWL_RESCAN,             /* periodic safety net */
} agent_crawl_kind;

typedef struct agent_watch_callbacks {
        /* Found by a crawl: return true when the owner already has this
         * path with this stat (nothing to do), false to queue it for
         * settle.  NULL: everything found is queued. */
        bool (*is_unchanged)(void *userdata, const char *path, const struct stat *st);
        /* A regular file or symlink that settled: st is from the re-stat at
         * expiry (lstat semantics). */
        void (*ready)(void *userdata, const char *path, const struct stat *st);
        /* A file or symlink that is gone: deleted, moved out of the roots,
         * replaced by a rename over it (ready() follows for the new one), or
         * missing in a mark-and-sweep crawl.  Also the old path of a rename
         * within the roots (ready() follows for the new path). */
        void (*removed)(void *userdata, const char *path);
        /* A directory that is gone, with everything under it (the owner
         * drops every path under dir + "/"); removed() is not called for
         * each file inside. */
        void (*dir_removed)(void *userdata, const char *dir);
        /* A complete crawl of every root finished (the owner may sweep its
         * own tables): at startup, after an overflow, a periodic or
         * requested rescan, a missing root that appeared, or roots added by
         * agent_watch_set_roots().  The rescans of directories that have no
         * watch (ENOSPC) are partial and do not call it. */
        void (*crawl_done)(void *userdata, agent_crawl_kind kind, uint64_t files, uint64_t dirs, uint64_t usec);
        void *userdata;
} agent_watch_callbacks;

typedef struct agent_watch_options {
        const char *const *roots;       /* absolute paths, NULL-terminated */
        uint64_t settle_ms;             /* quiet period; 0 = ready at once */
        uint64_t rescan_s;              /* periodic full rescan; 0 = never */
        uint64_t unwatched_rescan_s;    /* rescan of unwatched dirs and missing roots; 0 = 300 */
        agent_watch_callbacks cb;
} agent_watch_options;

/* Creates the inotify fd and its sources on e, watches and crawls every
 * root that exists (synchronously: when this returns the initial crawl is
 * done, is_unchanged() was called for every file found and crawl_done()
 * with AGENT_CRAWL_INITIAL), and logs which roots are watched and which are
 * missing.  -errno with err filled (inotify_init1 failed, out of memory). */
int agent_watch_new(sd_event *e, const agent_watch_options *o, agent_watch **ret, mp_error *err);
void agent_watch_free(agent_watch *w);
static inline void agent_watch_freep(agent_watch **w) {
        if (*w)
                agent_watch_free(*w);
}

/* Replaces the roots (SIGHUP): roots no longer listed are unwatched and
 * dir_removed() is called for them; new ones are watched and crawled.
 * Trailing slashes are dropped; a root listed twice or inside another root
 * is skipped with a log line.  -EINVAL (nothing changed) for a path that is
 * not absolute. */
int agent_watch_set_roots(agent_watch *w, const char *const *roots, mp_error *err);

/* Queues path for settle again (the owner saw a transient failure, e.g. an
 * Ollama manifest caught mid-rewrite). */
void agent_watch_requeue(agent_watch *w, const char *path);

/* Starts a full mark-and-sweep rescan now (tests, SIGUSR1 later).  Called
 * from one of the callbacks, it runs right after the current batch or
 * crawl instead. */
void agent_watch_rescan(agent_watch *w);

/* Counters for STATUS= and the tests. */
typedef struct agent_watch_stats {
        uint64_t dirs;
        uint64_t watched;
        uint64_t unwatched;             /* ENOSPC */
        uint64_t files;
        uint64_t pending;               /* waiting to settle */
        uint64_t overflows;
        uint64_t crawls;
} agent_watch_stats;
void agent_watch_get_stats(const agent_watch *w, agent_watch_stats *ret);
