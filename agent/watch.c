/* watch.c - recursive inotify watching of the agent's roots (see watch.h).
 *
 * The watcher keeps a tree of what it knows: directory nodes (with their
 * watch descriptor) and file nodes (with their settle state), each linked to
 * its parent by a name, so paths are built on demand and renaming a
 * directory is O(1) in the tree.  Two hash tables find nodes: (parent, name)
 * → node for events and crawls, and wd → directory for events.
 *
 * Everything runs on the loop thread; nothing here blocks beyond stat,
 * readdir and inotify_add_watch. */
#include "watch.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "daemon/log.h"
#include "mounts.h"
#include "settle.h"
#include "util/macro.h"
#include "util/strutil.h"

/* No IN_OPEN/IN_ACCESS/IN_CLOSE_NOWRITE: they fire on every read,
 * our own hashing included.  IN_IGNORED, IN_UNMOUNT and IN_Q_OVERFLOW come
 * without asking. */
#define WATCH_MASK (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | \
                    IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR |  \
                    IN_EXCL_UNLINK)

/* Deeper directories are not watched (hostile or looping trees). */
#define MAX_DEPTH 64
/* A MOVED_FROM whose MOVED_TO did not come within this is a move out.  The
 * two halves are queued by one rename, so this only covers a read that
 * falls between them. */
#define PAIR_USEC (20 * 1000)
#define PAIR_ACCURACY_USEC 5000
/* Bounds one io dispatch: a writer that outpaces us cannot keep the loop
 * in this handler (the level-triggered source fires again next iteration,
 * after signals and the watchdog had their turn). */
#define READS_PER_DISPATCH 64
#define DEFAULT_UNWATCHED_RESCAN_S 300
#define USEC_PER_SEC 1000000u

enum {
        WD_NONE = -2,                   /* no watch (lost, or the inode is watched elsewhere) */
        WD_UNWATCHED = -1,              /* inotify_add_watch failed (ENOSPC ...): rescanned */
};

typedef enum file_state {
        FILE_OPEN,                      /* a writer is active: wait for its close */
        FILE_CLOSED,                    /* waiting in (or for) the settle queue */
        FILE_SETTLED,                   /* handed on (or known unchanged) */
} file_state;

/* Intrusive chained hash table; buckets are a power of two. */
typedef struct hlink {
        struct hlink *next;
        uint64_t hash;
} hlink;

typedef struct htable {
        hlink **buckets;
        size_t n_buckets, n;
} htable;

typedef struct wdir wdir;

typedef struct wentry {
        hlink by_name;                  /* in w->names, by (parent, name); roots are not */
        wdir *parent;                   /* NULL: a root's node, or parked in limbo */
        struct wentry *sib_prev, *sib_next;
        char *name;                     /* a root's node: the root's whole path */
        unsigned gen;                   /* mark of the last crawl that saw it */
        bool is_dir;
} wentry;

typedef struct wroot wroot;

struct wdir {
        wentry e;
        hlink by_wd;                    /* in w->wds when wd >= 0 */
        int wd;
        wroot *root;                    /* set on a root's node only */
        wentry *children;               /* files and directories */
        dev_t dev;
        ino_t ino;
        wdir *unw_prev, *unw_next;      /* w->unwatched, while wd == WD_UNWATCHED */
};

/* The stat fields that say "this content may have changed". */
typedef struct file_stamp {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime;
} file_stamp;

typedef struct wfile {
        wentry e;
        settle_entry settle;
        file_state state;
        bool known;                     /* the owner may have this path: report removed() */
        file_stamp stamp;               /* at the last activity or crawl */
} wfile;

struct wroot {
        char *path;
        wdir *node;                     /* NULL while missing */
        bool said_missing;
};

/* A MOVED_FROM waiting for its MOVED_TO. The entry is detached from the
 * tree at once: a later rename of its old parent then cannot leave a stale
 * path behind, and events from a moved-out subtree are not reported. */
typedef struct limbo {
        struct limbo *next;
        uint32_t cookie;
        wentry *entry;
        char *path;                     /* where it was, for removed() */
        uint64_t since;
} limbo;

struct agent_watch {
        sd_event *event;
        int fd;
        sd_event_source *io, *pair_timer, *rescan_timer, *unwatched_timer;
        settle_queue *settle;
        agent_mounts *mounts;           /* NULL when mountinfo cannot be watched */
        agent_watch_callbacks cb;
        uint64_t rescan_usec, unwatched_usec;

        wroot **roots;
        size_t n_roots;

        htable names, wds;
        uint64_t seed;
        limbo *limbo_head, *limbo_tail;
        wdir *unwatched;

        unsigned gen;
        bool overflowed;                /* IN_Q_OVERFLOW / IN_UNMOUNT in this batch */
        bool warned_enospc;
        bool warned_depth, warned_long;  /* once per watcher: hostile trees must not flood the log */
        bool use_proc_fd;               /* watch /proc/self/fd/N: never through a symlink */
        unsigned busy;                  /* inside a crawl or an event batch */
        bool rescan_pending;

        uint64_t n_dirs, n_files, n_watched, n_unwatched, n_overflows, n_crawls;

        uint8_t buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
};

#define DIR_OF(p) ((wdir *) ((char *) (p) - offsetof(wdir, e)))
#define FILE_OF(p) ((wfile *) ((char *) (p) - offsetof(wfile, e)))

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000u;
}

/* ---- hash tables ---------------------------------------------------- */

static int htable_init(htable *t) {
        t->n_buckets = 64;
        t->buckets = calloc(t->n_buckets, sizeof *t->buckets);
        return t->buckets ? 0 : -ENOMEM;
}

static hlink *htable_bucket(const htable *t, uint64_t hash) {
        return t->buckets[hash & (t->n_buckets - 1)];
}

/* Doubles the table at load 1.  When that allocation fails the table
 * keeps working with longer chains, so adding never fails. */
static void htable_add(htable *t, hlink *l, uint64_t hash) {
        if (t->n >= t->n_buckets) {
                size_t nb = t->n_buckets * 2;
                hlink **b = calloc(nb, sizeof *b);
                if (b) {
                        for (size_t i = 0; i < t->n_buckets; i++)
                                for (hlink *x = t->buckets[i], *next; x; x = next) {
                                        next = x->next;
                                        x->next = b[x->hash & (nb - 1)];
                                        b[x->hash & (nb - 1)] = x;
                                }
                        free(t->buckets);
                        t->buckets = b;
                        t->n_buckets = nb;
                }
        }
        l->hash = hash;
        hlink **head = &t->buckets[hash & (t->n_buckets - 1)];
        l->next = *head;
        *head = l;
        t->n++;
}

static void htable_del(htable *t, hlink *l) {
        for (hlink **p = &t->buckets[l->hash & (t->n_buckets - 1)]; *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        l->next = NULL;
                        t->n--;
                        return;
                }
}

/* Names come from other users' files: a seeded hash keeps a hostile tree
 * from building one long chain. */
static uint64_t name_hash(const agent_watch *w, const wdir *parent, const char *name) {
        return XXH3_64bits_withSeed(name, strlen(name), w->seed ^ (uint64_t) (uintptr_t) parent);
}

static uint64_t wd_hash(int wd) {
        return (uint64_t) (unsigned) wd * UINT64_C(0x9E3779B97F4A7C15);
}

static wentry *child_lookup(const agent_watch *w, const wdir *parent, const char *name) {
        uint64_t h = name_hash(w, parent, name);
        for (hlink *l = htable_bucket(&w->names, h); l; l = l->next) {
                wentry *e = (wentry *) ((char *) l - offsetof(wentry, by_name));
                if (l->hash == h && e->parent == parent && strcmp(e->name, name) == 0)
                        return e;
        }
        return NULL;
}

static wdir *wd_lookup(const agent_watch *w, int wd) {
        uint64_t h = wd_hash(wd);
        for (hlink *l = htable_bucket(&w->wds, h); l; l = l->next) {
                wdir *d = (wdir *) ((char *) l - offsetof(wdir, by_wd));
                if (d->wd == wd)
                        return d;
        }
        return NULL;
}

/* ---- the tree ------------------------------------------------------- */

static void entry_attach(agent_watch *w, wentry *e, wdir *parent) {
        e->parent = parent;
        e->sib_prev = NULL;
        e->sib_next = parent->children;
        if (parent->children)
                parent->children->sib_prev = e;
        parent->children = e;
        htable_add(&w->names, &e->by_name, name_hash(w, parent, e->name));
}

static void entry_detach(agent_watch *w, wentry *e) {
        if (!e->parent)
                return;
        htable_del(&w->names, &e->by_name);
        if (e->sib_prev)
                e->sib_prev->sib_next = e->sib_next;
        else
                e->parent->children = e->sib_next;
        if (e->sib_next)
                e->sib_next->sib_prev = e->sib_prev;
        e->sib_prev = e->sib_next = NULL;
        e->parent = NULL;
}

/* The next entry after e in a pre-order walk of top's subtree, descending
 * into e's children when descend is set; NULL at the end. */
static wentry *tree_next(const wdir *top, wentry *e, bool descend) {
        if (descend && e->is_dir && DIR_OF(e)->children)
                return DIR_OF(e)->children;
        for (;;) {
                if (e == &top->e)
                        return NULL;
                if (e->sib_next)
                        return e->sib_next;
                if (!e->parent || e->parent == top)
                        return NULL;
                e = &e->parent->e;
        }
}

static unsigned entry_depth(const wentry *e) {
        unsigned depth = 0;
        while (e->parent) {
                e = &e->parent->e;
                depth++;
        }
        return depth;
}

/* The root node above e, or NULL when e hangs in limbo. */
static const wdir *entry_top(const wentry *e) {
        while (e->parent)
                e = &e->parent->e;
        return e->is_dir && DIR_OF(e)->root ? DIR_OF(e) : NULL;
}

/* Builds the path of e (+ "/" + name when name is set).  -ENOENT when e is
 * not attached to a root (limbo), -ENAMETOOLONG beyond PATH_MAX. */
static int entry_path(const wentry *e, const char *name, char **ret) {
        const wdir *top = entry_top(e);
        if (!top)
                return -ENOENT;

        /* A root of "/" contributes nothing: every component adds its "/". */
        const char *root = top->root->path;
        size_t root_len = strcmp(root, "/") == 0 ? 0 : strlen(root);
        size_t len = root_len;
        for (const wentry *x = e; x->parent; x = &x->parent->e)
                len += 1 + strlen(x->name);
        if (name)
                len += 1 + strlen(name);
        if (len == 0)
                len = 1;                /* the root "/" itself */
        if (len >= PATH_MAX)
                return -ENAMETOOLONG;

        char *p = malloc(len + 1);
        if (!p)
                return -ENOMEM;
        size_t at = len;
        p[at] = 0;
        if (name) {
                size_t n = strlen(name);
                at -= n;
                memcpy(p + at, name, n);
                p[--at] = '/';
        }
        for (const wentry *x = e; x->parent; x = &x->parent->e) {
                size_t n = strlen(x->name);
                at -= n;
                memcpy(p + at, x->name, n);
                p[--at] = '/';
        }
        if (root_len > 0)
                memcpy(p, root, root_len);
        else if (len == 1 && at == 1)
                p[0] = '/';
        *ret = p;
        return 0;
}

static void stamp_from(file_stamp *s, const struct stat *st) {
        s->dev = st->st_dev;
        s->ino = st->st_ino;
        s->size = st->st_size;
        s->mtime = st->st_mtim;
}

static bool stamp_equal(const file_stamp *s, const struct stat *st) {
        return s->dev == st->st_dev && s->ino == st->st_ino && s->size == st->st_size &&
               s->mtime.tv_sec == st->st_mtim.tv_sec && s->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* Downloads in progress, locks and temporary names: never ready until
 * renamed into place (hub: blobs/<etag>[.<8hex>].incomplete, tmp_<uuid>,
 * .locks/; Ollama: sha256-X-partial[-N]; torch hub: *.partial). */
static bool name_is_temporary(const char *name) {
        return mp_has_suffix(name, ".incomplete") || mp_has_suffix(name, ".partial") ||
               mp_has_suffix(name, ".lock") || mp_has_suffix(name, ".tmp") ||
               mp_has_prefix(name, "tmp_") || strstr(name, "-partial");
}

static bool file_is_temporary(const wfile *f) {
        if (name_is_temporary(f->e.name))
                return true;
        for (const wdir *d = f->e.parent; d && d->e.parent; d = d->e.parent)
                if (strcmp(d->e.name, ".locks") == 0)
                        return true;
        return false;
}

static wfile *file_new(agent_watch *w, wdir *parent, const char *name) {
        wfile *f = calloc(1, sizeof *f);
        if (!f)
                return NULL;
        f->e.name = strdup(name);
        if (!f->e.name) {
                free(f);
                return NULL;
        }
        f->e.gen = w->gen;
        f->state = FILE_CLOSED;
        entry_attach(w, &f->e, parent);
        w->n_files++;
        return f;
}

static void file_free(agent_watch *w, wfile *f) {
        settle_remove(w->settle, &f->settle);
        entry_detach(w, &f->e);
        free(f->e.name);
        free(f);
        w->n_files--;
}

static void unwatched_link(agent_watch *w, wdir *d) {
        d->unw_prev = NULL;
        d->unw_next = w->unwatched;
        if (w->unwatched)
                w->unwatched->unw_prev = d;
        w->unwatched = d;
        w->n_unwatched++;
}

static void unwatched_unlink(agent_watch *w, wdir *d) {
        if (d->unw_prev)
                d->unw_prev->unw_next = d->unw_next;
        else
                w->unwatched = d->unw_next;
        if (d->unw_next)
                d->unw_next->unw_prev = d->unw_prev;
        d->unw_prev = d->unw_next = NULL;
        w->n_unwatched--;
}

/* Drops d's watch (or its place on the unwatched list).  rm_watch: also
 * tell the kernel (a moved-out or forgotten inode would keep reporting);
 * not after IN_IGNORED, when the kernel already dropped it. */
/* A node whose path no longer leads to its directory (renamed or removed
 * while events were lost). */
static bool dir_is_stale(const wdir *d) {
        _cleanup_(freep) char *path = NULL;
        struct stat st;
        if (entry_path(&d->e, NULL, &path) < 0 || lstat(path, &st) < 0)
                return true;
        return st.st_dev != d->dev || st.st_ino != d->ino;
}

static void dir_unwatch(agent_watch *w, wdir *d, bool rm_watch) {
        if (d->wd >= 0) {
                htable_del(&w->wds, &d->by_wd);
                if (rm_watch)
                        (void) inotify_rm_watch(w->fd, d->wd);
                w->n_watched--;
        } else if (d->wd == WD_UNWATCHED)
                unwatched_unlink(w, d);
        d->wd = WD_NONE;
}

static wdir *dir_new(agent_watch *w, wdir *parent, const char *name) {
        wdir *d = calloc(1, sizeof *d);
        if (!d)
                return NULL;
        d->e.name = strdup(name);
        if (!d->e.name) {
                free(d);
                return NULL;
        }
        d->e.is_dir = true;
        d->e.gen = w->gen;
        d->wd = WD_NONE;
        if (parent)
                entry_attach(w, &d->e, parent);
        w->n_dirs++;
        return d;
}

static void dir_free(agent_watch *w, wdir *d, bool rm_watch) {
        assert(!d->children);
        dir_unwatch(w, d, rm_watch);
        if (d->root)
                d->root->node = NULL;
        entry_detach(w, &d->e);
        free(d->e.name);
        free(d);
        w->n_dirs--;
}

/* Frees top and everything under it, without reports. Iterative: a tree
 * made deep by renames must not exhaust the stack. */
static void dir_free_tree(agent_watch *w, wdir *top, bool rm_watch) {
        wdir *d = top;
        for (;;) {
                wentry *c = d->children;
                if (c) {
                        if (c->is_dir)
                                d = DIR_OF(c);
                        else
                                file_free(w, FILE_OF(c));
                        continue;
                }
                wdir *up = d->e.parent;
                bool last = d == top;
                dir_free(w, d, rm_watch);
                if (last)
                        return;
                d = up;
        }
}

static void report_removed(agent_watch *w, const char *path) {
        if (w->cb.removed)
                w->cb.removed(w->cb.userdata, path);
}

static void report_dir_removed(agent_watch *w, const char *path) {
        if (w->cb.dir_removed)
                w->cb.dir_removed(w->cb.userdata, path);
}

/* Forgets an entry that is gone from the roots, reporting it (path: where
 * it was; NULL = compute it now). */
static void entry_forget(agent_watch *w, wentry *e, const char *path) {
        _cleanup_(freep) char *own = NULL;
        if (!path && entry_path(e, NULL, &own) >= 0)
                path = own;

        if (e->is_dir) {
                if (path)
                        report_dir_removed(w, path);
                dir_free_tree(w, DIR_OF(e), true);
        } else {
                if (path && FILE_OF(e)->known)
                        report_removed(w, path);
                file_free(w, FILE_OF(e));
        }
}

/* ---- watches -------------------------------------------------------- */

static void read_sysctl(const char *path, char *buf, size_t size) {
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        if (!f || !fgets(buf, (int) size, f)) {
                snprintf(buf, size, "?");
                return;
        }
        buf[strcspn(buf, "\n")] = 0;
}

static void warn_enospc(agent_watch *w, const char *path) {
        if (w->warned_enospc)
                return;
        w->warned_enospc = true;

        /* In a container the limit that bites may be the user namespace's
         * user.max_inotify_watches rather than the global sysctl. */
        char global[32], userns[32], shown[256];
        read_sysctl("/proc/sys/fs/inotify/max_user_watches", global, sizeof global);
        read_sysctl("/proc/sys/user/max_inotify_watches", userns, sizeof userns);
        log_warning("inotify watch limit reached at %s (fs.inotify.max_user_watches=%s, "
                    "user.max_inotify_watches=%s); raise it with sysctl -w fs.inotify.max_user_watches=N. "
                    "Directories without a watch are rescanned every %" PRIu64 " s.",
                    mp_printable(shown, sizeof shown, path), global, userns, w->unwatched_usec / USEC_PER_SEC);
}

/* Watches d, open as fd at path.  Failures leave d unwatched (rescanned by
 * the unwatched timer); nothing here is fatal. */
static void dir_watch(agent_watch *w, wdir *d, int fd, const char *path) {
        int wd;
        if (w->use_proc_fd) {
                /* The directory we opened with O_NOFOLLOW, not whatever the
                 * path resolves to now: a swapped-in symlink is never watched. */
                char proc[64];
                snprintf(proc, sizeof proc, "/proc/self/fd/%i", fd);
                wd = inotify_add_watch(w->fd, proc, WATCH_MASK);
        } else
                wd = inotify_add_watch(w->fd, path, WATCH_MASK | IN_DONT_FOLLOW);

        if (wd < 0) {
                int r = -errno;
                if (r == -ENOSPC)
                        warn_enospc(w, path);
                else {
                        char shown[256];
                        log_debug("Cannot watch %s: %s", mp_printable(shown, sizeof shown, path), strerror(-r));
                }
                if (d->wd >= 0)
                        dir_unwatch(w, d, true);
                if (d->wd != WD_UNWATCHED) {
                        d->wd = WD_UNWATCHED;
                        unwatched_link(w, d);
                }
                return;
        }

        if (d->wd == wd)
                return;
        wdir *other = wd_lookup(w, wd);
        if (other && other != d && dir_is_stale(other)) {
                /* The same inode under its new name, seen by a recrawl after
                 * events were lost (a rename inside an overflow): the old
                 * node is gone and the sweep will forget it.  The watch
                 * moves here, so that forgetting the old node does not
                 * remove it from the kernel. */
                htable_del(&w->wds, &other->by_wd);
                other->wd = WD_NONE;
                w->n_watched--;
                other = NULL;
        }
        if (other && other != d) {
                /* The same inode under a second path (bind mount): its
                 * events keep going to the first; the periodic rescan
                 * covers this one. */
                char shown[256];
                log_debug("%s is already watched under another path",
                          mp_printable(shown, sizeof shown, path));
                dir_unwatch(w, d, false);
                return;
        }
        dir_unwatch(w, d, true);
        d->wd = wd;
        htable_add(&w->wds, &d->by_wd, wd_hash(wd));
        w->n_watched++;
}

static void unwatched_timer_update(agent_watch *w);

/* ---- crawling ------------------------------------------------------- */

typedef enum crawl_flags {
        CRAWL_FORCE = 1 << 0,           /* queue every file (the owner forgot the old paths) */
} crawl_flags;

typedef struct crawl {
        agent_watch *w;
        agent_crawl_kind kind;
        crawl_flags flags;
        char path[PATH_MAX];
        size_t len;
        uint64_t files, dirs;
} crawl;

static bool crawl_push(crawl *c, const char *name) {
        size_t n = strlen(name);
        if (c->len + 1 + n >= sizeof c->path) {
                if (!c->w->warned_long) {
                        char shown[256];
                        log_warning("Skipping entries under %s: path longer than %d bytes",
                                    mp_printable(shown, sizeof shown, c->path), PATH_MAX);
                        c->w->warned_long = true;
                }
                return false;
        }
        c->path[c->len] = '/';
        memcpy(c->path + c->len + 1, name, n + 1);
        c->len += 1 + n;
        return true;
}

static void crawl_pop(crawl *c, size_t len) {
        c->len = len;
        c->path[len] = 0;
}

/* A regular file or symlink the crawl found at c->path. */
static void crawl_file(crawl *c, wdir *d, const char *name, const struct stat *st, wentry *existing) {
        agent_watch *w = c->w;
        wfile *f = existing ? FILE_OF(existing) : NULL;
        bool changed = !f || !stamp_equal(&f->stamp, st);

        if (!f) {
                f = file_new(w, d, name);
                if (!f)
                        return;
                /* The owner may have this path from an earlier run (not a
                 * download in progress: those are never handed on). */
                f->known = !file_is_temporary(f);
        }
        f->e.gen = w->gen;
        c->files++;

        if (f->state == FILE_OPEN) {
                /* Events are intact (a rename, a rescan): the writer's close
                 * will come; but a rescan settles a writer that stayed idle
                 * since the last look.  After lost events nobody will tell
                 * us about the close: settle it. */
                if ((c->flags & CRAWL_FORCE) || (c->kind == AGENT_CRAWL_RESCAN && changed)) {
                        stamp_from(&f->stamp, st);
                        return;
                }
                changed = true;
        }
        if (!changed && !(c->flags & CRAWL_FORCE))
                return;
        stamp_from(&f->stamp, st);

        if (file_is_temporary(f)) {
                f->state = FILE_CLOSED;
                settle_remove(w->settle, &f->settle);
                return;
        }
        if (!(c->flags & CRAWL_FORCE) && w->cb.is_unchanged && w->cb.is_unchanged(w->cb.userdata, c->path, st)) {
                f->state = FILE_SETTLED;
                f->known = true;
                settle_remove(w->settle, &f->settle);
                return;
        }
        /* We cannot know whether a writer still has it open: the re-stat at
         * expiry (and the workers' fstat around the read) catch that. */
        f->state = FILE_CLOSED;
        settle_touch(w->settle, &f->settle);
}

static bool is_loop(const wdir *d, const struct stat *st) {
        for (; d; d = d->e.parent)
                if (d->dev == st->st_dev && d->ino == st->st_ino)
                        return true;
        return false;
}

static int crawl_dir(crawl *c, wdir *d, int fd, unsigned depth);

/* A directory the crawl found under d: watch it first, then list it, so
 * that what is created meanwhile produces an event or is listed. */
static int crawl_subdir(crawl *c, wdir *d, int parent_fd, const char *name, const struct stat *st,
                        wentry *existing, unsigned depth) {
        agent_watch *w = c->w;

        if (depth > MAX_DEPTH) {
                if (!w->warned_depth) {
                        char shown[256];
                        log_warning("Not descending below %s: deeper than %d directories",
                                    mp_printable(shown, sizeof shown, c->path), MAX_DEPTH);
                        w->warned_depth = true;
                }
                return 0;
        }
        if (is_loop(d, st))
                return 0;               /* a bind mount of an ancestor */

        size_t len = c->len;
        if (!crawl_push(c, name))
                return 0;
        int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                crawl_pop(c, len);
                return 0;               /* gone, or not ours to read */
        }

        wdir *sub = existing ? DIR_OF(existing) : dir_new(w, d, name);
        if (!sub) {
                close(fd);
                crawl_pop(c, len);
                return -ENOMEM;
        }
        sub->e.gen = w->gen;
        /* Another inode under the same name (replaced while events were
         * lost): its watch must be the new one. */
        bool replaced = sub->dev != st->st_dev || sub->ino != st->st_ino;
        sub->dev = st->st_dev;
        sub->ino = st->st_ino;
        if (sub->wd < 0 || replaced)
                dir_watch(w, sub, fd, c->path);
        int r = crawl_dir(c, sub, fd, depth);
        crawl_pop(c, len);
        return r;
}

/* Lists d (open as fd, at c->path); takes fd. */
static int crawl_dir(crawl *c, wdir *d, int fd, unsigned depth) {
        agent_watch *w = c->w;

        _cleanup_(closedirp) DIR *dir = fdopendir(fd);
        if (!dir) {
                close(fd);
                return 0;
        }
        c->dirs++;

        struct dirent *de;
        while ((de = readdir(dir))) {
                const char *name = de->d_name;
                if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                        continue;

                struct stat st;
                if (fstatat(dirfd(dir), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;       /* gone meanwhile */
                wentry *existing = child_lookup(w, d, name);

                if (S_ISDIR(st.st_mode)) {
                        if (existing && !existing->is_dir) {
                                entry_forget(w, existing, NULL);
                                existing = NULL;
                        }
                        int r = crawl_subdir(c, d, dirfd(dir), name, &st, existing, depth + 1);
                        if (r < 0)
                                return r;
                } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
                        if (existing && existing->is_dir) {
                                entry_forget(w, existing, NULL);
                                existing = NULL;
                        }
                        size_t len = c->len;
                        if (!crawl_push(c, name))
                                continue;
                        crawl_file(c, d, name, &st, existing);
                        crawl_pop(c, len);
                }
                /* Sockets, FIFOs, devices: not model material; an entry of
                 * that name we knew is swept below (its gen is old). */
        }
        return 0;
}

/* Forgets, with reports, whatever under top the crawl did not mark. */
static void sweep(agent_watch *w, wdir *top) {
        wentry *e = top->children;
        while (e) {
                if (e->gen != w->gen) {
                        wentry *next = tree_next(top, e, false);
                        entry_forget(w, e, NULL);
                        e = next;
                } else
                        e = tree_next(top, e, true);
        }
}

/* Mark-and-sweep crawl of d's subtree; d is open as fd (taken). */
static int crawl_tree(agent_watch *w, wdir *d, int fd, const char *path, agent_crawl_kind kind,
                      crawl_flags flags, uint64_t *files, uint64_t *dirs) {
        _cleanup_(freep) crawl *c = calloc(1, sizeof *c);
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        size_t n = strlen(path);
        if (n >= sizeof c->path) {
                close(fd);
                return -ENAMETOOLONG;
        }
        memcpy(c->path, path, n + 1);
        c->len = strcmp(path, "/") == 0 ? 0 : n;        /* children of "/" are "/x" */
        c->w = w;
        c->kind = kind;
        c->flags = flags;

        w->gen++;
        d->e.gen = w->gen;
        if (d->wd < 0)
                dir_watch(w, d, fd, path);
        int r = crawl_dir(c, d, fd, entry_depth(&d->e));
        if (r >= 0)
                sweep(w, d);
        if (files)
                *files += c->files;
        if (dirs)
                *dirs += c->dirs;
        return r;
}

/* Crawls d, looked up by path now (events give no fd). */
static int crawl_path(agent_watch *w, wdir *d, agent_crawl_kind kind, crawl_flags flags) {
        _cleanup_(freep) char *path = NULL;
        int r = entry_path(&d->e, NULL, &path);
        if (r < 0)
                return r;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return crawl_tree(w, d, fd, path, kind, flags, NULL, NULL);
}

/* ---- roots ---------------------------------------------------------- */

static void root_lost(agent_watch *w, wroot *root, const char *why) {
        if (!root->node)
                return;
        char shown[256];
        log_warning("Watch root %s %s; it is retried every %" PRIu64 " s",
                    mp_printable(shown, sizeof shown, root->path), why, w->unwatched_usec / USEC_PER_SEC);
        root->said_missing = true;
        report_dir_removed(w, root->path);
        dir_free_tree(w, root->node, true);
        assert(!root->node);
}

/* Opens a root and crawls it (a missing one is reported once). */
static int root_crawl(agent_watch *w, wroot *root, agent_crawl_kind kind, uint64_t *files, uint64_t *dirs) {
        char shown[256];
        int fd = open(root->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                if (root->node)
                        root_lost(w, root, "disappeared");
                else if (!root->said_missing) {
                        log_info("Not watching %s (%s); it is retried every %" PRIu64 " s",
                                 mp_printable(shown, sizeof shown, root->path), strerror(-r),
                                 w->unwatched_usec / USEC_PER_SEC);
                        root->said_missing = true;
                }
                return 0;
        }

        struct stat st;
        if (fstat(fd, &st) < 0) {
                close(fd);
                return -errno;
        }
        bool appeared = !root->node;
        if (root->node && (root->node->dev != st.st_dev || root->node->ino != st.st_ino)) {
                /* Replaced by another directory: start over. */
                root_lost(w, root, "was replaced");
                appeared = true;
        }
        if (appeared) {
                root->node = dir_new(w, NULL, root->path);
                if (!root->node) {
                        close(fd);
                        return -ENOMEM;
                }
                root->node->root = root;
                root->node->dev = st.st_dev;
                root->node->ino = st.st_ino;
        }

        uint64_t nf = 0, nd = 0;
        int r = crawl_tree(w, root->node, fd, root->path, kind, 0, &nf, &nd);
        if (appeared)
                log_info("Watching %s: %" PRIu64 " directories, %" PRIu64 " files%s",
                         mp_printable(shown, sizeof shown, root->path), nd, nf,
                         root->node && root->node->wd < 0 ? " (no watch on the root: rescanned)" : "");
        root->said_missing = false;
        *files += nf;
        *dirs += nd;
        return r;
}

static void limbo_expire(agent_watch *w, bool all);

/* A complete mark-and-sweep crawl of every root; crawl_done() follows. */
static int full_crawl(agent_watch *w, agent_crawl_kind kind) {
        uint64_t t0 = now_usec(), files = 0, dirs = 0;
        int r = 0;

        w->busy++;
        for (size_t i = 0; i < w->n_roots; i++) {
                int k = root_crawl(w, w->roots[i], kind, &files, &dirs);
                if (k < 0 && r == 0)
                        r = k;
        }
        w->n_crawls++;
        w->busy--;
        unwatched_timer_update(w);

        if (w->cb.crawl_done)
                w->cb.crawl_done(w->cb.userdata, kind, files, dirs, now_usec() - t0);
        return r;
}

/* Work that must not run in the middle of a batch or a crawl. */
static void run_deferred(agent_watch *w) {
        if (w->busy)
                return;
        while (w->overflowed || w->rescan_pending) {
                agent_crawl_kind kind = w->overflowed ? AGENT_CRAWL_OVERFLOW : AGENT_CRAWL_RESCAN;
                if (w->overflowed) {
                        /* The MOVED_TOs may be among the lost events: what
                         * is parked is gone from where it was; the crawl
                         * finds it wherever it went. */
                        limbo_expire(w, true);
                        log_info("inotify queue overflowed: rescanning every root");
                }
                w->overflowed = w->rescan_pending = false;
                (void) full_crawl(w, kind);
        }
}

/* ---- renames -------------------------------------------------------- */

static void limbo_free(limbo *l) {
        free(l->path);
        free(l);
}

/* Resolves parked entries as moved out: all of them, or those that waited
 * PAIR_USEC.  Their watches are removed (the inodes live on elsewhere and
 * would keep reporting). */
static void limbo_expire(agent_watch *w, bool all) {
        uint64_t now = now_usec();
        while (w->limbo_head && (all || w->limbo_head->since + PAIR_USEC <= now)) {
                limbo *l = w->limbo_head;
                w->limbo_head = l->next;
                if (!w->limbo_head)
                        w->limbo_tail = NULL;
                entry_forget(w, l->entry, l->path);
                limbo_free(l);
        }
        if (w->limbo_head) {
                (void) sd_event_source_set_time(w->pair_timer, w->limbo_head->since + PAIR_USEC);
                (void) sd_event_source_set_enabled(w->pair_timer, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_source_set_enabled(w->pair_timer, SD_EVENT_OFF);
}

static int on_pair_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        agent_watch *w = userdata;
        w->busy++;
        limbo_expire(w, false);
        w->busy--;
        run_deferred(w);
        return 0;
}

static limbo *limbo_take(agent_watch *w, uint32_t cookie) {
        limbo *prev = NULL;
        for (limbo *l = w->limbo_head; l; prev = l, l = l->next)
                if (l->cookie == cookie) {
                        if (prev)
                                prev->next = l->next;
                        else
                                w->limbo_head = l->next;
                        if (w->limbo_tail == l)
                                w->limbo_tail = prev;
                        l->next = NULL;
                        return l;
                }
        return NULL;
}

static void on_moved_from(agent_watch *w, wdir *d, const char *name, uint32_t cookie) {
        wentry *e = child_lookup(w, d, name);
        if (!e)
                return;

        limbo *l = calloc(1, sizeof *l);
        if (!l || entry_path(e, NULL, &l->path) < 0) {
                free(l);
                entry_forget(w, e, NULL);
                return;
        }
        entry_detach(w, e);
        if (!e->is_dir)
                settle_remove(w->settle, &FILE_OF(e)->settle);
        l->cookie = cookie;
        l->entry = e;
        l->since = now_usec();
        if (w->limbo_tail)
                w->limbo_tail->next = l;
        else
                w->limbo_head = l;
        w->limbo_tail = l;
        if (w->limbo_head == l) {
                (void) sd_event_source_set_time(w->pair_timer, l->since + PAIR_USEC);
                (void) sd_event_source_set_enabled(w->pair_timer, SD_EVENT_ONESHOT);
        }
}

/* A file or symlink that appeared at d/name by an event: stat it, track it. */
static wfile *file_appeared(agent_watch *w, wdir *d, const char *name, struct stat *st) {
        _cleanup_(freep) char *path = NULL;
        if (entry_path(&d->e, name, &path) < 0)
                return NULL;
        if (fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW) < 0)
                return NULL;            /* gone already: its DELETE follows */
        if (!S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode))
                return NULL;

        wentry *e = child_lookup(w, d, name);
        if (e && e->is_dir)
                return NULL;            /* its DELETE|ISDIR is still queued */
        wfile *f = e ? FILE_OF(e) : file_new(w, d, name);
        if (f)
                stamp_from(&f->stamp, st);
        return f;
}

/* Refreshes f's stamp from the file system; a file that is not there
 * (any more) keeps the old one. */
static void file_restat(agent_watch *w, wfile *f) {
        _cleanup_(freep) char *path = NULL;
        struct stat st;
        if (entry_path(&f->e, NULL, &path) >= 0 && fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) >= 0 &&
            (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)))
                stamp_from(&f->stamp, &st);
}

/* A writer closed it, it was renamed into place, or its attributes
 * changed: it waits for the quiet period. */
static void file_closed(agent_watch *w, wfile *f) {
        f->state = FILE_CLOSED;
        settle_touch(w->settle, &f->settle);
}

/* A directory that appeared at d/name (created or moved in from outside):
 * watch it, then crawl it. */
static void dir_appeared(agent_watch *w, wdir *d, const char *name) {
        wentry *e = child_lookup(w, d, name);
        if (e && e->is_dir && DIR_OF(e)->wd >= 0)
                return;                 /* the parent's crawl already watched and listed it */
        if (e && !e->is_dir) {
                entry_forget(w, e, NULL);
                e = NULL;
        }
        if (entry_depth(&d->e) + 1 > MAX_DEPTH)
                return;

        _cleanup_(freep) char *path = NULL;
        if (entry_path(&d->e, name, &path) < 0)
                return;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return;
        struct stat st;
        if (fstat(fd, &st) < 0 || is_loop(d, &st)) {
                close(fd);
                return;
        }
        wdir *sub = e ? DIR_OF(e) : dir_new(w, d, name);
        if (!sub) {
                close(fd);
                return;
        }
        sub->dev = st.st_dev;
        sub->ino = st.st_ino;
        (void) crawl_tree(w, sub, fd, path, AGENT_CRAWL_INITIAL, 0, NULL, NULL);
}

static void on_moved_to(agent_watch *w, wdir *d, const char *name, uint32_t cookie, bool isdir) {
        limbo *l = limbo_take(w, cookie);
        wentry *existing = child_lookup(w, d, name);
        if (existing)
                /* Renamed over it: the old one is gone. */
                entry_forget(w, existing, NULL);

        if (!l) {
                /* Moved in from outside the roots. */
                if (isdir)
                        dir_appeared(w, d, name);
                else {
                        struct stat st;
                        wfile *f = file_appeared(w, d, name, &st);
                        if (f)
                                file_closed(w, f);
                }
                if (!w->limbo_head)
                        (void) sd_event_source_set_enabled(w->pair_timer, SD_EVENT_OFF);
                return;
        }

        wentry *e = l->entry;
        char *n = strdup(name);
        if (!n) {
                entry_forget(w, e, l->path);
                limbo_free(l);
                return;
        }
        free(e->name);
        e->name = n;
        entry_attach(w, e, d);

        if (e->is_dir) {
                /* The owner drops the old paths; every file is offered
                 * again under the new one (same inodes: no re-read). */
                report_dir_removed(w, l->path);
                (void) crawl_path(w, DIR_OF(e), AGENT_CRAWL_RESCAN, CRAWL_FORCE);
        } else {
                wfile *f = FILE_OF(e);
                if (f->known)
                        report_removed(w, l->path);
                f->known = false;
                /* Still open (renamed mid-write): its close comes under
                 * the new name. */
                if (f->state != FILE_OPEN) {
                        file_restat(w, f);
                        file_closed(w, f);
                }
        }
        limbo_free(l);
        if (!w->limbo_head)
                (void) sd_event_source_set_enabled(w->pair_timer, SD_EVENT_OFF);
}

/* ---- events --------------------------------------------------------- */

static void on_file_event(agent_watch *w, wdir *d, const char *name, uint32_t mask) {
        wentry *e = child_lookup(w, d, name);
        if (e && e->is_dir)
                return;
        wfile *f = e ? FILE_OF(e) : NULL;
        struct stat st;

        if (mask & IN_CREATE) {
                f = file_appeared(w, d, name, &st);
                if (!f)
                        return;
                /* Symlinks are never closed; a hard link (nlink > 1) has
                 * no writer.  Otherwise wait for the creator's close. */
                if (S_ISLNK(st.st_mode) || st.st_nlink > 1)
                        file_closed(w, f);
                else {
                        f->state = FILE_OPEN;
                        settle_remove(w->settle, &f->settle);
                }
        } else if (mask & IN_MODIFY) {
                /* One per write(): not a "finished" signal, only a delay. */
                if (!f && !(f = file_appeared(w, d, name, &st)))
                        return;
                f->state = FILE_OPEN;
                settle_remove(w->settle, &f->settle);
        } else if (mask & IN_CLOSE_WRITE) {
                /* Also fires for writers that wrote nothing (lock files,
                 * touch): the re-stat at expiry decides what changed.  A
                 * known file is closed even when it was renamed since (the
                 * batch is read late): its rename follows. */
                if (f)
                        file_restat(w, f);
                else if (!(f = file_appeared(w, d, name, &st)))
                        return;
                file_closed(w, f);
        } else if (mask & IN_ATTRIB) {
                /* chmod, utimes: worth a re-stat, unless a writer is still
                 * active (its close comes). */
                if (f && f->state != FILE_OPEN) {
                        file_restat(w, f);
                        file_closed(w, f);
                }
        } else if (mask & IN_DELETE) {
                if (f)
                        entry_forget(w, &f->e, NULL);
        }
}

static void on_event(agent_watch *w, const struct inotify_event *ev) {
        uint32_t mask = ev->mask;

        if (mask & IN_Q_OVERFLOW) {
                w->n_overflows++;
                w->overflowed = true;
                return;
        }
        wdir *d = wd_lookup(w, ev->wd);
        if (!d)
                return;                 /* queued before we removed that watch */

        if (mask & IN_IGNORED) {
                /* The kernel dropped the watch (deleted, unmounted): the
                 * only point at which a wd may be forgotten. */
                dir_unwatch(w, d, false);
                if (d->root)
                        root_lost(w, d->root, "is gone");
                unwatched_timer_update(w);
                return;
        }
        if (mask & IN_UNMOUNT) {
                /* The mount point now shows the directory below: re-watch
                 * it and drop what went away with the file system. */
                w->overflowed = true;
                return;
        }
        if (mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
                /* For other directories the parent's event says it. */
                if (d->root)
                        root_lost(w, d->root, mask & IN_MOVE_SELF ? "was moved away" : "was deleted");
                unwatched_timer_update(w);
                return;
        }
        if (ev->len == 0 || strnlen(ev->name, ev->len) == ev->len || ev->name[0] == 0)
                return;                 /* about d itself */
        if (!entry_top(&d->e))
                return;                 /* parked: moved out, or its MOVED_TO is next */

        const char *name = ev->name;
        if (mask & IN_MOVED_FROM)
                on_moved_from(w, d, name, ev->cookie);
        else if (mask & IN_MOVED_TO)
                on_moved_to(w, d, name, ev->cookie, mask & IN_ISDIR);
        else if (mask & IN_ISDIR) {
                if (mask & IN_CREATE)
                        dir_appeared(w, d, name);
                else if (mask & IN_DELETE) {
                        wentry *e = child_lookup(w, d, name);
                        if (e && e->is_dir)
                                entry_forget(w, e, NULL);
                }
        } else
                on_file_event(w, d, name, mask);
}

static int on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        agent_watch *w = userdata;

        w->busy++;
        for (unsigned i = 0; i < READS_PER_DISPATCH; i++) {
                ssize_t n = read(fd, w->buf, sizeof w->buf);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                log_error("Reading inotify events failed: %m");
                        break;
                }
                if (n == 0)
                        break;
                size_t off = 0;
                while ((size_t) n - off >= sizeof(struct inotify_event)) {
                        const struct inotify_event *ev = (const struct inotify_event *) (w->buf + off);
                        size_t size = sizeof *ev + ev->len;
                        if (size > (size_t) n - off)
                                break;
                        on_event(w, ev);
                        off += size;
                }
        }
        w->busy--;
        run_deferred(w);
        /* A directory created meanwhile may have hit the watch limit. */
        unwatched_timer_update(w);
        return 0;
}

/* ---- rescans -------------------------------------------------------- */

static bool any_root_missing(const agent_watch *w) {
        for (size_t i = 0; i < w->n_roots; i++)
                if (!w->roots[i]->node)
                        return true;
        return false;
}

/* The unwatched timer exists (is enabled) only while something needs it:
 * no wakeups otherwise. */
static void unwatched_timer_update(agent_watch *w) {
        if (!w->unwatched_timer)
                return;
        bool need = w->n_unwatched > 0 || any_root_missing(w);
        int enabled = SD_EVENT_OFF;
        (void) sd_event_source_get_enabled(w->unwatched_timer, &enabled);
        if (need && enabled == SD_EVENT_OFF) {
                (void) sd_event_source_set_time(w->unwatched_timer, now_usec() + w->unwatched_usec);
                (void) sd_event_source_set_enabled(w->unwatched_timer, SD_EVENT_ONESHOT);
        } else if (!need && enabled != SD_EVENT_OFF)
                (void) sd_event_source_set_enabled(w->unwatched_timer, SD_EVENT_OFF);
}

static bool has_unwatched_ancestor(const wdir *d) {
        for (d = d->e.parent; d; d = d->e.parent)
                if (d->wd == WD_UNWATCHED)
                        return true;
        return false;
}

/* Rescans what has no watch: missing roots (one of them back → a full
 * crawl) and the topmost unwatched directories, retrying their watches. */
static void rescan_unwatched(agent_watch *w) {
        if (any_root_missing(w)) {
                for (size_t i = 0; i < w->n_roots; i++)
                        if (!w->roots[i]->node && access(w->roots[i]->path, F_OK) == 0) {
                                (void) full_crawl(w, AGENT_CRAWL_INITIAL);
                                return;
                        }
        }

        /* The topmost ones are disjoint subtrees: crawling one cannot free
         * another. */
        size_t n = 0, allocated = 0;
        _cleanup_(freep) wdir **todo = NULL;
        for (wdir *d = w->unwatched; d; d = d->unw_next)
                if (!has_unwatched_ancestor(d)) {
                        if (MP_GROW(todo, allocated, n + 1) < 0)
                                break;
                        todo[n++] = d;
                }
        w->busy++;
        for (size_t i = 0; i < n; i++)
                (void) crawl_path(w, todo[i], AGENT_CRAWL_RESCAN, 0);
        w->busy--;
}

static int on_unwatched_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        agent_watch *w = userdata;
        rescan_unwatched(w);
        /* ONESHOT: re-armed only if still needed. */
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        unwatched_timer_update(w);
        run_deferred(w);
        return 0;
}

static int on_rescan_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        agent_watch *w = userdata;
        (void) full_crawl(w, AGENT_CRAWL_RESCAN);
        (void) sd_event_source_set_time(s, now_usec() + w->rescan_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        run_deferred(w);
        return 0;
}

/* ---- settle expiry -------------------------------------------------- */

static void on_settled(settle_entry *se, void *userdata) {
        agent_watch *w = userdata;
        wfile *f = (wfile *) ((char *) se - offsetof(wfile, settle));

        if (f->state != FILE_CLOSED || file_is_temporary(f))
                return;                 /* a writer came back / waits for its rename */

        _cleanup_(freep) char *path = NULL;
        if (entry_path(&f->e, NULL, &path) < 0)
                return;
        struct stat st;
        if (fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return;                 /* gone: its event or the next crawl says so */
        if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
                return;
        if (!stamp_equal(&f->stamp, &st)) {
                /* Written without events (mmap, another host): wait again. */
                stamp_from(&f->stamp, &st);
                settle_touch(w->settle, &f->settle);
                return;
        }
        f->state = FILE_SETTLED;
        f->known = true;
        /* Last: the owner may call back into us (requeue, rescan). */
        if (w->cb.ready)
                w->cb.ready(w->cb.userdata, path, &st);
}

/* ---- public --------------------------------------------------------- */

static void root_free(wroot *r) {
        if (!r)
                return;
        free(r->path);
        free(r);
}

/* Checks and normalizes a list of roots: absolute, no trailing slash, no
 * duplicates; a root inside another is dropped (the outer one covers it,
 * and one inode must not be watched under two paths). */
static int roots_normalize(const char *const *in, char ***ret, size_t *ret_n, mp_error *err) {
        size_t n = 0;
        for (; in && in[n]; n++)
                ;
        char **out = calloc(n + 1, sizeof *out);
        if (!out)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        size_t k = 0;
        int r = 0;
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(in[i]);
                if (in[i][0] != '/' || len >= PATH_MAX) {
                        r = mp_error_set(err, -EINVAL, in[i], -1, "a watch root must be an absolute path");
                        goto fail;
                }
                while (len > 1 && in[i][len - 1] == '/')
                        len--;
                out[k] = strndup(in[i], len);
                if (!out[k]) {
                        r = mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
                        goto fail;
                }
                k++;
        }

        /* Drop duplicates and roots nested in another one. */
        size_t m = 0;
        for (size_t i = 0; i < k; i++) {
                bool drop = false;
                for (size_t j = 0; j < k && !drop; j++) {
                        if (i == j || !out[j])
                                continue;
                        const char *a = out[i], *b = out[j];
                        size_t bl = strlen(b);
                        if (strcmp(a, b) == 0)
                                drop = j < i;
                        else if (strcmp(b, "/") == 0 || (strncmp(a, b, bl) == 0 && a[bl] == '/'))
                                drop = true;
                }
                if (drop) {
                        char shown[256];
                        log_info("Watch root %s is listed twice or inside another root; skipping it",
                                 mp_printable(shown, sizeof shown, out[i]));
                        free(out[i]);
                        out[i] = NULL;
                } else
                        out[m++] = out[i];
        }
        for (size_t i = m; i < k; i++)
                out[i] = NULL;
        *ret = out;
        *ret_n = m;
        return 0;

fail:
        for (size_t i = 0; i < k; i++)
                free(out[i]);
        free(out);
        return r;
}

int agent_watch_set_roots(agent_watch *w, const char *const *roots, mp_error *err) {
        assert(w);

        char **paths = NULL;
        size_t n = 0;
        int r = roots_normalize(roots, &paths, &n, err);
        if (r < 0)
                return r;

        wroot **next = calloc(n ? n : 1, sizeof *next);
        if (!next) {
                for (size_t i = 0; i < n; i++)
                        free(paths[i]);
                free(paths);
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }

        bool added = false;
        for (size_t i = 0; i < n; i++) {
                for (size_t j = 0; j < w->n_roots; j++)
                        if (w->roots[j] && strcmp(w->roots[j]->path, paths[i]) == 0) {
                                next[i] = w->roots[j];
                                w->roots[j] = NULL;
                                break;
                        }
                if (next[i]) {
                        free(paths[i]);
                        continue;
                }
                next[i] = calloc(1, sizeof *next[i]);
                if (!next[i]) {
                        free(paths[i]);
                        continue;       /* counted as not added; reported below */
                }
                next[i]->path = paths[i];
                added = true;
        }
        free(paths);

        /* Roots no longer listed: unwatched, and the owner drops them. */
        w->busy++;
        for (size_t j = 0; j < w->n_roots; j++) {
                wroot *old = w->roots[j];
                if (!old)
                        continue;
                if (old->node) {
                        report_dir_removed(w, old->path);
                        dir_free_tree(w, old->node, true);
                }
                char shown[256];
                log_info("No longer watching %s", mp_printable(shown, sizeof shown, old->path));
                root_free(old);
        }
        free(w->roots);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
                if (next[i])
                        next[m++] = next[i];
        w->roots = next;
        w->n_roots = m;
        w->busy--;

        if (m < n)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        if (added) {
                r = full_crawl(w, AGENT_CRAWL_INITIAL);
                if (r < 0)
                        return mp_error_set(err, r, NULL, -1, "crawling the watch roots: %s", strerror(-r));
        } else
                unwatched_timer_update(w);
        run_deferred(w);
        return 0;
}


/* A mount or unmount at or below a root (or above it, hiding or showing
 * what the root was) changes what is there without one inotify event. */
static void on_mount_change(void *userdata, const char *mount_point, bool added) {
        agent_watch *w = userdata;
        for (size_t i = 0; i < w->n_roots; i++)
                if (mp_path_under(mount_point, w->roots[i]->path) || mp_path_under(w->roots[i]->path, mount_point)) {
                        log_info("%s %s: rescanning the watch roots", added ? "mounted" : "unmounted", mount_point);
                        agent_watch_rescan(w);
                        return;
                }
}

int agent_watch_new(sd_event *e, const agent_watch_options *o, agent_watch **ret, mp_error *err) {
        assert(e);
        assert(o);
        assert(ret);

        _cleanup_(agent_watch_freep) agent_watch *w = calloc(1, sizeof *w);
        if (!w)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        w->fd = -1;
        w->event = sd_event_ref(e);
        w->cb = o->cb;
        w->rescan_usec = o->rescan_s * USEC_PER_SEC;
        w->unwatched_usec = (o->unwatched_rescan_s ? o->unwatched_rescan_s : DEFAULT_UNWATCHED_RESCAN_S) * USEC_PER_SEC;
        w->use_proc_fd = access("/proc/self/fd", F_OK) == 0;
        if (getrandom(&w->seed, sizeof w->seed, GRND_NONBLOCK) != sizeof w->seed)
                w->seed = now_usec() ^ (uint64_t) getpid();

        if (htable_init(&w->names) < 0 || htable_init(&w->wds) < 0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w->fd < 0) {
                int r = -errno;
                return mp_error_set(err, r, NULL, -1, "inotify_init1: %s%s", strerror(-r),
                                    r == -EMFILE ? " (fs.inotify.max_user_instances reached)" : "");
        }

        int r = sd_event_add_io(e, &w->io, w->fd, EPOLLIN, on_inotify, w);
        if (r < 0)
                return mp_error_set(err, r, NULL, -1, "adding the inotify source: %s", strerror(-r));
        (void) sd_event_source_set_description(w->io, "agent-inotify");

        r = settle_queue_new(e, o->settle_ms * 1000u, on_settled, w, &w->settle);
        if (r < 0)
                return mp_error_set(err, r, NULL, -1, "adding the settle timer: %s", strerror(-r));

        r = sd_event_add_time(e, &w->pair_timer, CLOCK_MONOTONIC, 0, PAIR_ACCURACY_USEC, on_pair_timer, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->pair_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(e, &w->unwatched_timer, CLOCK_MONOTONIC, 0, w->unwatched_usec / 50,
                                      on_unwatched_timer, w);
        if (r >= 0)
                r = sd_event_source_set_enabled(w->unwatched_timer, SD_EVENT_OFF);
        if (r >= 0 && w->rescan_usec > 0)
                r = sd_event_add_time(e, &w->rescan_timer, CLOCK_MONOTONIC, now_usec() + w->rescan_usec,
                                      USEC_PER_SEC, on_rescan_timer, w);
        if (r < 0)
                return mp_error_set(err, r, NULL, -1, "adding the watcher's timers: %s", strerror(-r));

        r = agent_mounts_new(e, on_mount_change, w, &w->mounts);
        if (r < 0)
                log_warning("cannot watch the mount table (/proc/self/mountinfo: %s): mounts over watched "
                            "directories are found by the periodic rescan only", strerror(-r));

        r = agent_watch_set_roots(w, o->roots, err);
        if (r < 0)
                return r;
        if (w->n_crawls == 0)
                /* No root to add still means one (empty) initial crawl. */
                (void) full_crawl(w, AGENT_CRAWL_INITIAL);

        *ret = TAKE_PTR(w);
        return 0;
}

void agent_watch_free(agent_watch *w) {
        if (!w)
                return;
        while (w->limbo_head) {
                limbo *l = w->limbo_head;
                w->limbo_head = l->next;
                if (l->entry->is_dir)
                        dir_free_tree(w, DIR_OF(l->entry), false);
                else
                        file_free(w, FILE_OF(l->entry));
                limbo_free(l);
        }
        for (size_t i = 0; i < w->n_roots; i++) {
                if (w->roots[i]->node)
                        dir_free_tree(w, w->roots[i]->node, false);
                root_free(w->roots[i]);
        }
        free(w->roots);
        settle_queue_free(w->settle);
        agent_mounts_free(w->mounts);
        sd_event_source_disable_unref(w->io);
        sd_event_source_disable_unref(w->pair_timer);
        sd_event_source_disable_unref(w->unwatched_timer);
        sd_event_source_disable_unref(w->rescan_timer);
        if (w->fd >= 0)
                close(w->fd);
        free(w->names.buckets);
        free(w->wds.buckets);
        sd_event_unref(w->event);
        free(w);
}

/* The entry at path, or NULL. */
static wentry *path_lookup(agent_watch *w, const char *path) {
        for (size_t i = 0; i < w->n_roots; i++) {
                wroot *root = w->roots[i];
                size_t n = strcmp(root->path, "/") == 0 ? 0 : strlen(root->path);
                if (!root->node || strncmp(path, root->path, n) != 0 || (path[n] != '/' && path[n] != 0))
                        continue;

                wentry *e = &root->node->e;
                const char *p = path + n;
                while (*p == '/') {
                        p++;
                        size_t len = strcspn(p, "/");
                        if (len == 0)
                                continue;
                        if (!e->is_dir || len >= NAME_MAX + 1)
                                return NULL;
                        char name[NAME_MAX + 1];
                        memcpy(name, p, len);
                        name[len] = 0;
                        e = child_lookup(w, DIR_OF(e), name);
                        if (!e)
                                return NULL;
                        p += len;
                }
                return e;
        }
        return NULL;
}

void agent_watch_requeue(agent_watch *w, const char *path) {
        assert(w);
        assert(path);

        wentry *e = path_lookup(w, path);
        if (!e || e->is_dir)
                return;
        wfile *f = FILE_OF(e);
        if (f->state != FILE_OPEN)
                file_closed(w, f);
}

void agent_watch_rescan(agent_watch *w) {
        assert(w);

        w->rescan_pending = true;
        run_deferred(w);
}

void agent_watch_get_stats(const agent_watch *w, agent_watch_stats *ret) {
        assert(w);
        assert(ret);

        *ret = (agent_watch_stats) {
                .dirs = w->n_dirs,
                .watched = w->n_watched,
                .unwatched = w->n_unwatched,
                .files = w->n_files,
                .pending = settle_pending(w->settle),
                .overflows = w->n_overflows,
                .crawls = w->n_crawls,
        };
}
