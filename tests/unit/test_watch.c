/* test_watch.c - agent/watch.c on real inotify in temporary directories.
 *
 * Each test drives its own sd_event with sd_event_run() until a condition
 * or a deadline, and records the watcher's callbacks in memory.  Writers run
 * in this process between loop iterations, in a forked child while the loop
 * runs (the mkdir race), or while the loop does not run at all (the
 * overflow: events pile up in the kernel queue). */
#include <errno.h>
#include <stdarg.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/watch.h"
#include "test.h"

#define SETTLE_MS 50

/* ---- the recorder --------------------------------------------------- */

typedef struct rec {
        char kind;                      /* R ready, D removed, X dir_removed, U is_unchanged */
        char *path;
} rec;

static struct {
        rec *v;
        size_t n, cap;
        const char *const *known;       /* is_unchanged() says true for these */
        unsigned crawls[3];
        uint64_t crawl_files[3];
} R;

static void rec_add(char kind, const char *path) {
        if (R.n == R.cap) {
                R.cap = R.cap ? R.cap * 2 : 256;
                R.v = realloc(R.v, R.cap * sizeof *R.v);
                CHECK(R.v);
        }
        R.v[R.n].kind = kind;
        R.v[R.n].path = strdup(path);
        CHECK(R.v[R.n].path);
        R.n++;
}

static void rec_reset(void) {
        for (size_t i = 0; i < R.n; i++)
                free(R.v[i].path);
        free(R.v);
        memset(&R, 0, sizeof R);
}

static bool cb_is_unchanged(void *ud, const char *path, const struct stat *st) {
        rec_add('U', path);
        for (const char *const *k = R.known; k && *k; k++)
                if (strcmp(*k, path) == 0)
                        return true;
        return false;
}

static void cb_ready(void *ud, const char *path, const struct stat *st) {
        CHECK(S_ISREG(st->st_mode) || S_ISLNK(st->st_mode));
        rec_add('R', path);
}

static void cb_removed(void *ud, const char *path) {
        rec_add('D', path);
}

static void cb_dir_removed(void *ud, const char *dir) {
        rec_add('X', dir);
}

static void cb_crawl_done(void *ud, agent_crawl_kind kind, uint64_t files, uint64_t dirs, uint64_t usec) {
        CHECK(kind <= AGENT_CRAWL_RESCAN);
        R.crawls[kind]++;
        R.crawl_files[kind] = files;
}

static size_t count(char kind, const char *path) {
        size_t n = 0;
        for (size_t i = 0; i < R.n; i++)
                if (R.v[i].kind == kind && strcmp(R.v[i].path, path) == 0)
                        n++;
        return n;
}

static size_t count_kind(char kind) {
        size_t n = 0;
        for (size_t i = 0; i < R.n; i++)
                n += R.v[i].kind == kind;
        return n;
}

static size_t count_prefix(char kind, const char *prefix) {
        size_t n = 0, l = strlen(prefix);
        for (size_t i = 0; i < R.n; i++)
                n += R.v[i].kind == kind && strncmp(R.v[i].path, prefix, l) == 0;
        return n;
}

/* Index of the first record of kind for path, or -1. */
static long first(char kind, const char *path) {
        for (size_t i = 0; i < R.n; i++)
                if (R.v[i].kind == kind && strcmp(R.v[i].path, path) == 0)
                        return (long) i;
        return -1;
}

/* ---- the loop ------------------------------------------------------- */

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

typedef bool (*cond_fn)(void *arg);

static bool run_until(sd_event *e, cond_fn cond, void *arg, uint64_t ms) {
        uint64_t end = now_ms() + ms;
        while (!cond(arg)) {
                if (now_ms() >= end)
                        return false;
                CHECK(sd_event_run(e, 10 * 1000) >= 0);
        }
        return true;
}

static void run_for(sd_event *e, uint64_t ms) {
        uint64_t end = now_ms() + ms;
        while (now_ms() < end)
                CHECK(sd_event_run(e, 10 * 1000) >= 0);
}

static bool has_ready(void *path) {
        return count('R', path) > 0;
}

/* Runs until path is ready; fails the test after 5 s. */
static void wait_ready(sd_event *e, const char *path) {
        if (!run_until(e, has_ready, (void *) path, 5000)) {
                fprintf(stderr, "never ready: %s\n", path);
                CHECK(!"ready");
        }
}

static agent_watch *W;

static bool settled(void *arg) {
        agent_watch_stats s;
        agent_watch_get_stats(W, &s);
        return s.pending == 0;
}

/* Runs until nothing waits to settle, then one more settle period for
 * events still in flight. */
static void wait_settled(sd_event *e) {
        CHECK(run_until(e, settled, NULL, 20000));
        run_for(e, 3 * SETTLE_MS);
        CHECK(run_until(e, settled, NULL, 20000));
}

static agent_watch *watch_new(sd_event *e, const char *const *roots, uint64_t unwatched_s) {
        agent_watch_options o = {
                .roots = roots,
                .settle_ms = SETTLE_MS,
                .unwatched_rescan_s = unwatched_s,
                .cb = {
                        .is_unchanged = cb_is_unchanged,
                        .ready = cb_ready,
                        .removed = cb_removed,
                        .dir_removed = cb_dir_removed,
                        .crawl_done = cb_crawl_done,
                },
        };
        agent_watch *w = NULL;
        mp_error err = {0};
        int r = agent_watch_new(e, &o, &w, &err);
        if (r < 0)
                fprintf(stderr, "agent_watch_new: %s\n", err.reason);
        CHECK(r >= 0);
        W = w;
        return w;
}

/* ---- files ---------------------------------------------------------- */

/* Formatted paths, freed together at the end of each test. */
static struct {
        char **v;
        size_t n;
} Paths;

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...) {
        va_list ap;
        char *p = NULL;
        va_start(ap, fmt);
        CHECK(vasprintf(&p, fmt, ap) > 0);
        va_end(ap);
        Paths.v = realloc(Paths.v, (Paths.n + 1) * sizeof *Paths.v);
        CHECK(Paths.v);
        Paths.v[Paths.n++] = p;
        return p;
}

static void paths_free(void) {
        for (size_t i = 0; i < Paths.n; i++)
                free(Paths.v[i]);
        free(Paths.v);
        Paths.v = NULL;
        Paths.n = 0;
}

static void put_file(const char *path, const char *content) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        size_t n = strlen(content);
        CHECK(write(fd, content, n) == (ssize_t) n);
        CHECK(close(fd) == 0);
}

static void append_file(const char *path, const char *content) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        CHECK(fd >= 0);
        size_t n = strlen(content);
        CHECK(write(fd, content, n) == (ssize_t) n);
        CHECK(close(fd) == 0);
}

static void mkdir_p(const char *path) {
        char buf[PATH_MAX];
        snprintf(buf, sizeof buf, "%s", path);
        for (char *p = buf + 1; *p; p++)
                if (*p == '/') {
                        *p = 0;
                        CHECK(mkdir(buf, 0755) == 0 || errno == EEXIST);
                        *p = '/';
                }
        CHECK(mkdir(buf, 0755) == 0 || errno == EEXIST);
}

/* With *at() calls: the hostile test's paths pass PATH_MAX. */
static void rm_at(int dfd, const char *name) {
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return;
        if (S_ISDIR(st.st_mode)) {
                int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
                if (!d) {
                        if (fd >= 0)
                                close(fd);
                        return;
                }
                for (bool again = true; again;) {
                        again = false;
                        rewinddir(d);
                        struct dirent *de;
                        while ((de = readdir(d)))
                                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                                        rm_at(dirfd(d), de->d_name);
                                        again = true;
                                }
                }
                closedir(d);
                (void) unlinkat(dfd, name, AT_REMOVEDIR);
        } else
                (void) unlinkat(dfd, name, 0);
}

static void rm_rf(const char *dir) {
        rm_at(AT_FDCWD, dir);
}

/* The regular files and symlinks under a directory (what must be ready). */
static struct {
        char **v;
        size_t n;
} Walk;

static int walk_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        if (flag == FTW_F || flag == FTW_SL) {
                Walk.v = realloc(Walk.v, (Walk.n + 1) * sizeof *Walk.v);
                CHECK(Walk.v);
                Walk.v[Walk.n++] = strdup(path);
        }
        return 0;
}

static void walk(const char *dir) {
        for (size_t i = 0; i < Walk.n; i++)
                free(Walk.v[i]);
        free(Walk.v);
        Walk.v = NULL;
        Walk.n = 0;
        CHECK(nftw(dir, walk_one, 32, FTW_PHYS) == 0);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Every walked file has a ready() record, and every ready() path under
 * dir exists (sorted comparison: the sets have thousands of entries). */
static void check_ready_is_walk(const char *dir) {
        walk(dir);
        size_t n = 0;
        char **ready = calloc(R.n + 1, sizeof *ready);
        CHECK(ready);
        size_t l = strlen(dir);
        for (size_t i = 0; i < R.n; i++)
                if (R.v[i].kind == 'R' && strncmp(R.v[i].path, dir, l) == 0 && R.v[i].path[l] == '/')
                        ready[n++] = R.v[i].path;
        qsort(ready, n, sizeof *ready, cmp_str);
        qsort(Walk.v, Walk.n, sizeof *Walk.v, cmp_str);

        size_t missing = 0;
        for (size_t i = 0; i < Walk.n; i++)
                if (!bsearch(&Walk.v[i], ready, n, sizeof *ready, cmp_str)) {
                        if (missing++ < 5)
                                fprintf(stderr, "not ready: %s\n", Walk.v[i]);
                }
        size_t extra = 0;
        for (size_t i = 0; i < n; i++)
                if (!bsearch(&ready[i], Walk.v, Walk.n, sizeof *Walk.v, cmp_str)) {
                        struct stat st;
                        /* Ready, then deleted by the test itself: fine only
                         * when a removed() followed. */
                        if (lstat(ready[i], &st) < 0 && count('D', ready[i]) == 0 && extra++ < 5)
                                fprintf(stderr, "ready but not there: %s\n", ready[i]);
                }
        free(ready);
        CHECK_EQ(missing, 0);
        CHECK_EQ(extra, 0);
}

static sd_event *event_new(void) {
        sd_event *e = NULL;
        CHECK(sd_event_new(&e) >= 0);
        return e;
}

static void done(sd_event *e, agent_watch *w, char *dir) {
        agent_watch_free(w);
        W = NULL;
        sd_event_unref(e);
        rm_rf(dir);
        free(dir);
        rec_reset();
        paths_free();
}

/* ---- tests ---------------------------------------------------------- */

/* Startup: everything found is offered to is_unchanged(); what the owner
 * knows is not queued; FIFOs are skipped and symlinks not followed. */
static void test_initial_crawl(void) {
        char *root = test_tmpdir();
        char *a = pathf("%s/a", root), *b = pathf("%s/b", root), *c = pathf("%s/sub/c", root);
        char *sub = pathf("%s/sub", root), *fifo = pathf("%s/fifo", root), *link = pathf("%s/etc", root);
        CHECK(mkdir(sub, 0755) == 0);
        put_file(a, "a");
        put_file(b, "b");
        put_file(c, "c");
        CHECK(mkfifo(fifo, 0644) == 0);
        CHECK(symlink("/etc", link) == 0);

        const char *known[] = {b, NULL};
        R.known = known;
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);

        /* Synchronous: done when agent_watch_new returns. */
        CHECK_EQ(R.crawls[AGENT_CRAWL_INITIAL], 1);
        CHECK_EQ(R.crawl_files[AGENT_CRAWL_INITIAL], 4);
        CHECK_EQ(count_kind('U'), 4);
        CHECK_EQ(count('U', a) + count('U', b) + count('U', c) + count('U', link), 4);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 2);
        CHECK_EQ(s.watched, 2);
        CHECK_EQ(s.unwatched, 0);
        CHECK_EQ(s.files, 4);
        CHECK_EQ(s.pending, 3);
        CHECK_EQ(s.crawls, 1);

        wait_settled(e);
        CHECK_EQ(count('R', a), 1);
        CHECK_EQ(count('R', c), 1);
        CHECK_EQ(count('R', link), 1);
        CHECK_EQ(count('R', b), 0);
        CHECK_EQ(count_kind('R'), 3);   /* not the FIFO, nothing under /etc */

        /* Idle: no timer armed, so the loop dispatches nothing at all. */
        size_t before = R.n;
        CHECK_EQ(sd_event_run(e, 300 * 1000), 0);
        CHECK_EQ(R.n, before);

        done(e, w, root);
}

/* Ready once after the writer's close and the quiet period, never while
 * it is open; IN_MODIFY only postpones; requeue and append settle again. */
static void test_write_close(void) {
        char *root = test_tmpdir();
        char *f = pathf("%s/model.safetensors", root);
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);

        int fd = open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        for (int i = 0; i < 4; i++) {
                CHECK(write(fd, "data", 4) == 4);
                run_for(e, 2 * SETTLE_MS);      /* quiet for longer than settle, but open */
                CHECK_EQ(count('R', f), 0);
        }
        CHECK(close(fd) == 0);
        wait_ready(e, f);
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', f), 1);

        /* Appended: settles again. */
        append_file(f, "more");
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', f), 2);

        agent_watch_requeue(w, f);
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', f), 3);
        agent_watch_requeue(w, "/nonexistent/elsewhere");     /* not ours: ignored */

        done(e, w, root);
}

/* Directories created and filled at once, from another process while the
 * loop runs: the post-watch crawl finds what was created before the watch. */
static void test_mkdir_race(void) {
        char *root = test_tmpdir();
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);

        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                for (int round = 0; round < 3; round++) {
                        for (int t = 0; t < 40; t++) {
                                char path[PATH_MAX];
                                int n = snprintf(path, sizeof path, "%s/r%d-t%d", root, round, t);
                                for (int level = 0; level < 6; level++) {
                                        if (mkdir(path, 0755) < 0)
                                                _exit(1);
                                        for (int k = 0; k < 3; k++) {
                                                char file[PATH_MAX + 16];
                                                snprintf(file, sizeof file, "%s/f%d", path, k);
                                                int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                                                if (fd < 0 || write(fd, "x", 1) != 1)
                                                        _exit(1);
                                                close(fd);
                                        }
                                        n += snprintf(path + n, sizeof path - n, "/l%d", level);
                                }
                        }
                        for (int t = 0; t < 50; t++) {
                                char path[PATH_MAX], file[PATH_MAX + 8];
                                snprintf(path, sizeof path, "%s/p%d-%d/a/b/c/d", root, round, t);
                                mkdir_p(path);
                                snprintf(file, sizeof file, "%s/x", path);
                                put_file(file, "x");
                                snprintf(file, sizeof file, "%s/p%d-%d/a/y", root, round, t);
                                put_file(file, "y");
                        }
                }
                _exit(0);
        }

        int status = 0;
        for (;;) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                CHECK(r >= 0);
                if (r == pid)
                        break;
                CHECK(sd_event_run(e, 5 * 1000) >= 0);
        }
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        wait_settled(e);
        check_ready_is_walk(root);
        CHECK_EQ(Walk.n, 3 * (40 * 6 * 3 + 50 * 2));
        CHECK_EQ(count_kind('R'), Walk.n);     /* each once */

        done(e, w, root);
}

static void test_rename_file(void) {
        char *root = test_tmpdir();
        char *a = pathf("%s/a.gguf", root), *b = pathf("%s/b.gguf", root);
        put_file(a, "gguf");
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        wait_ready(e, a);

        CHECK(rename(a, b) == 0);
        wait_ready(e, b);
        CHECK_EQ(count('D', a), 1);
        CHECK(first('D', a) < first('R', b));
        CHECK_EQ(count('R', a), 1);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.files, 1);

        done(e, w, root);
}

/* A directory renamed within the root: the owner drops the old paths and
 * gets every file under the new one; later writes use the new path. */
static void test_rename_dir(void) {
        char *root = test_tmpdir();
        char *d = pathf("%s/d", root), *x = pathf("%s/d/sub/x", root);
        char *e_dir = pathf("%s/e", root), *ex = pathf("%s/e/sub/x", root), *ey = pathf("%s/e/sub/y", root);
        char *old_prefix = pathf("%s/d/", root);
        mkdir_p(pathf("%s/d/sub", root));
        put_file(x, "x");
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        wait_ready(e, x);

        CHECK(rename(d, e_dir) == 0);
        wait_ready(e, ex);
        CHECK_EQ(count('X', d), 1);
        CHECK(first('X', d) < first('R', ex));

        put_file(ey, "y");
        wait_ready(e, ey);
        append_file(ex, "more");
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', ex), 2);
        CHECK_EQ(count_prefix('R', old_prefix), 1);    /* only the first x */
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 3);
        CHECK_EQ(s.watched, 3);
        CHECK_EQ(s.files, 2);

        done(e, w, root);
}

/* Moved out of the roots: reported gone, watches removed, later writes in
 * the moved-out directory are not reported. */
static void test_move_out(void) {
        char *root = test_tmpdir(), *outside = test_tmpdir();
        char *d = pathf("%s/d", root), *x = pathf("%s/d/x", root), *y = pathf("%s/y", root);
        char *od = pathf("%s/d", outside), *oy = pathf("%s/y", outside);
        mkdir_p(pathf("%s/d/deeper", root));
        put_file(x, "x");
        put_file(y, "y");
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        wait_settled(e);
        CHECK_EQ(count_kind('R'), 2);

        CHECK(rename(d, od) == 0);
        CHECK(rename(y, oy) == 0);
        run_for(e, 100);
        CHECK_EQ(count('X', d), 1);
        CHECK_EQ(count('D', y), 1);
        CHECK_EQ(count('D', x), 0);     /* covered by dir_removed */
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 1);
        CHECK_EQ(s.watched, 1);
        CHECK_EQ(s.files, 0);

        char *later = pathf("%s/d/new", outside), *deeper = pathf("%s/d/deeper/new", outside);
        put_file(later, "n");
        put_file(deeper, "n");
        append_file(pathf("%s/d/x", outside), "more");
        run_for(e, 6 * SETTLE_MS);
        CHECK_EQ(count_prefix('R', outside), 0);
        CHECK_EQ(count_kind('R'), 2);

        rm_rf(outside);
        free(outside);
        done(e, w, root);
}

static void test_move_in(void) {
        char *root = test_tmpdir(), *outside = test_tmpdir();
        mkdir_p(pathf("%s/m/sub", outside));
        put_file(pathf("%s/m/a", outside), "a");
        put_file(pathf("%s/m/sub/b", outside), "b");
        put_file(pathf("%s/z", outside), "z");
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);

        CHECK(rename(pathf("%s/m", outside), pathf("%s/m", root)) == 0);
        CHECK(rename(pathf("%s/z", outside), pathf("%s/z", root)) == 0);
        wait_ready(e, pathf("%s/m/a", root));
        wait_ready(e, pathf("%s/m/sub/b", root));
        wait_ready(e, pathf("%s/z", root));
        wait_settled(e);
        CHECK_EQ(count_kind('R'), 3);
        CHECK_EQ(count_kind('D') + count_kind('X'), 0);

        /* Watched after the move: a new file in the moved-in subtree. */
        put_file(pathf("%s/m/sub/c", root), "c");
        wait_ready(e, pathf("%s/m/sub/c", root));

        rm_rf(outside);
        free(outside);
        done(e, w, root);
}

/* The Hugging Face hub downloader, syscall by syscall (issue-5 spike
 * traces): only the blob and the snapshot symlink are ready. */
static void test_hf_hub_sequence(void) {
        char *root = test_tmpdir();
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);

        const char *etag = "3f2a9c0d4e5b6a7f8091a2b3c4d5e6f708192a3b";
        const char *rev = "0123456789abcdef0123456789abcdef01234567";
        char *repo = pathf("%s/models--org--name", root);
        char *blobs = pathf("%s/blobs", repo), *snap = pathf("%s/snapshots/%s", repo, rev);
        char *locks = pathf("%s/.locks/models--org--name", root);
        mkdir_p(blobs);
        mkdir_p(snap);
        mkdir_p(locks);
        run_for(e, 20);

        char *lock = pathf("%s/%s.lock", locks, etag);
        int lfd = open(lock, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CHECK(lfd >= 0);
        char *inc = pathf("%s/%s.incomplete", blobs, etag);
        int fd = open(inc, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        for (int i = 0; i < 3; i++) {
                CHECK(write(fd, "chunk", 5) == 5);
                run_for(e, 2 * SETTLE_MS);
        }
        CHECK(close(fd) == 0);
        run_for(e, 2 * SETTLE_MS);      /* closed .incomplete: still not ready */

        char *tmp = pathf("%s/tmp_8d7e6f5a-0b1c-4d2e-9f3a-1b2c3d4e5f6a", repo);
        put_file(tmp, "");
        struct stat st;
        CHECK(stat(tmp, &st) == 0);
        CHECK(chmod(inc, st.st_mode & 07777) == 0);
        CHECK(unlink(tmp) == 0);
        char *blob = pathf("%s/%s", blobs, etag);
        CHECK(rename(inc, blob) == 0);
        char *link = pathf("%s/model.safetensors", snap);
        char *target = pathf("../../blobs/%s", etag);
        CHECK(symlink(target, link) == 0);
        CHECK(close(lfd) == 0);

        wait_ready(e, blob);
        wait_ready(e, link);
        wait_settled(e);
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', blob), 1);
        CHECK_EQ(count('R', link), 1);
        CHECK_EQ(count_kind('R'), 2);
        /* Never known to the owner: no removed() noise for them. */
        CHECK_EQ(count('D', tmp), 0);
        CHECK_EQ(count('D', inc), 0);

        done(e, w, root);
}

/* Ollama: part files, the -partial data file renamed into place, then
 * the manifest written in place (O_TRUNC, no rename). */
static void test_ollama_sequence(void) {
        char *root = test_tmpdir();
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);

        const char *digest = "sha256-6a0746a1ec1aef3e7ec53868f220ff6e389f6f8ef87a01d77c96807de94ca2aa";
        char *blobs = pathf("%s/blobs", root);
        mkdir_p(blobs);
        run_for(e, 20);

        char *part0 = pathf("%s/%s-partial-0", blobs, digest);
        put_file(part0, "{\"N\":0,\"Offset\":0,\"Size\":10,\"Completed\":0}");
        char *partial = pathf("%s/%s-partial", blobs, digest);
        int fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        CHECK(fd >= 0);
        CHECK(ftruncate(fd, 10) == 0);
        run_for(e, 2 * SETTLE_MS);
        CHECK(pwrite(fd, "01234", 5, 0) == 5);
        put_file(part0, "{\"N\":0,\"Offset\":0,\"Size\":10,\"Completed\":5}");
        run_for(e, 2 * SETTLE_MS);
        CHECK(pwrite(fd, "56789", 5, 5) == 5);
        CHECK(close(fd) == 0);
        CHECK(unlink(part0) == 0);
        char *blob = pathf("%s/%s", blobs, digest);
        CHECK(rename(partial, blob) == 0);

        char *mdir = pathf("%s/manifests/registry.ollama.ai/library/tiny", root);
        mkdir_p(mdir);
        char *manifest = pathf("%s/latest", mdir);
        put_file(manifest, "{\"schemaVersion\":2}");

        wait_ready(e, blob);
        wait_ready(e, manifest);
        wait_settled(e);
        CHECK_EQ(count_kind('R'), 2);
        CHECK_EQ(count_prefix('R', partial), 0);

        /* An existing tag rewritten in place: ready again after the close. */
        put_file(manifest, "{\"schemaVersion\":2,\"layers\":[]}");
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', manifest), 2);

        done(e, w, root);
}

static void test_delete(void) {
        char *root = test_tmpdir();
        char *a = pathf("%s/a", root), *d = pathf("%s/d", root), *b = pathf("%s/d/e/b", root);
        mkdir_p(pathf("%s/d/e", root));
        put_file(a, "a");
        put_file(b, "b");
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        wait_settled(e);

        CHECK(unlink(a) == 0);
        rm_rf(d);
        run_for(e, 100);
        CHECK_EQ(count('D', a), 1);
        CHECK_EQ(count('X', d), 1);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 1);
        CHECK_EQ(s.watched, 1);
        CHECK_EQ(s.files, 0);

        /* A file deleted before it settled was never the owner's. */
        char *c = pathf("%s/c", root);
        put_file(c, "c");
        CHECK(unlink(c) == 0);
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', c), 0);

        done(e, w, root);
}

static unsigned max_queued_events(void) {
        FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "re");
        unsigned v = 16384;
        if (f) {
                if (fscanf(f, "%u", &v) != 1)
                        v = 16384;
                fclose(f);
        }
        return v;
}

static bool overflow_crawled(void *arg) {
        return R.crawls[AGENT_CRAWL_OVERFLOW] > 0;
}

/* Events pile up while the loop does not run: IN_Q_OVERFLOW, then a
 * mark-and-sweep recrawl finds every change, deletions included. */
static void test_overflow(void) {
        unsigned limit = max_queued_events();
        if (limit > 200000) {
                printf("SKIPPED-PART: overflow: fs.inotify.max_queued_events=%u is too large to overflow here\n",
                       limit);
                return;
        }
        char *root = test_tmpdir();
        char *bulk = pathf("%s/bulk", root);
        CHECK(mkdir(bulk, 0755) == 0);
        for (int i = 0; i < 20; i++)
                put_file(pathf("%s/old%02d", root, i), "old");
        CHECK(mkdir(pathf("%s/a", root), 0755) == 0);
        CHECK(mkdir(pathf("%s/a/sub", root), 0755) == 0);
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        wait_settled(e);
        CHECK_EQ(count_kind('R'), 20);

        /* CREATE + CLOSE_WRITE per file: more events than the queue holds. */
        unsigned n = limit / 2 + 1000;
        for (unsigned i = 0; i < n; i++) {
                char p[PATH_MAX];
                snprintf(p, sizeof p, "%s/f%06u", bulk, i);
                int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                CHECK(fd >= 0);
                CHECK(close(fd) == 0);
        }
        for (int i = 0; i < 10; i++)
                CHECK(unlink(pathf("%s/old%02d", root, i)) == 0);
        /* A directory renamed while the events are lost. */
        CHECK(rename(pathf("%s/a", root), pathf("%s/b", root)) == 0);

        CHECK(run_until(e, overflow_crawled, NULL, 20000));
        wait_settled(e);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK(s.overflows >= 1);
        CHECK_EQ(s.files, n + 10);
        check_ready_is_walk(root);
        for (int i = 0; i < 10; i++)
                CHECK_EQ(count('D', pathf("%s/old%02d", root, i)), 1);
        for (int i = 10; i < 20; i++)
                CHECK_EQ(count('D', pathf("%s/old%02d", root, i)), 0);

        /* The renamed directory and its subdirectory are still watched
         * (regression: the recrawl handed their watch to the stale node,
         * whose sweep then removed it from the kernel). */
        CHECK_EQ(s.watched, 4);         /* root, bulk, b, b/sub */
        char *late = pathf("%s/b/new", root), *late_sub = pathf("%s/b/sub/new2", root);
        put_file(late, "late");
        put_file(late_sub, "late");
        wait_ready(e, late);
        wait_ready(e, late_sub);

        done(e, w, root);
}

/* The rescan is the safety net for writes inotify cannot see (mmap). */
static bool rescanned(void *arg) {
        return R.crawls[AGENT_CRAWL_RESCAN] > 0;
}

static void test_rescan_mmap(void) {
        char *root = test_tmpdir();
        char *f = pathf("%s/weights.bin", root);
        put_file(f, "0123456789abcdef");
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        wait_ready(e, f);

        int fd = open(f, O_RDWR | O_CLOEXEC);
        CHECK(fd >= 0);
        char *m = mmap(NULL, 16, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        CHECK(m != MAP_FAILED);
        memcpy(m, "changed!", 8);
        CHECK(msync(m, 16, MS_SYNC) == 0);
        CHECK(munmap(m, 16) == 0);
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', f), 1);     /* no event for that write */

        agent_watch_rescan(w);
        CHECK(run_until(e, rescanned, NULL, 5000));
        wait_settled(e);
        CHECK_EQ(count('R', f), 2);
        CHECK(close(fd) == 0);

        done(e, w, root);
}

/* A root that does not exist yet: found by agent_watch_rescan(), or by
 * the unwatched timer without any call. */
static void test_missing_root(void) {
        char *base = test_tmpdir();
        char *later = pathf("%s/later", base), *f = pathf("%s/later/f", base);
        sd_event *e = event_new();
        const char *roots[] = {later, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        CHECK_EQ(R.crawls[AGENT_CRAWL_INITIAL], 1);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 0);

        CHECK(mkdir(later, 0755) == 0);
        put_file(f, "f");
        run_for(e, 100);
        CHECK_EQ(count('R', f), 0);
        agent_watch_rescan(w);
        wait_ready(e, f);
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 1);
        CHECK_EQ(s.watched, 1);

        /* Watched now: events work. */
        char *g = pathf("%s/later/g", base);
        put_file(g, "g");
        wait_ready(e, g);

        /* The root goes away: reported, and retried. */
        rm_rf(later);
        run_for(e, 100);
        CHECK_EQ(count('X', later), 1);
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 0);
        agent_watch_free(w);
        rec_reset();

        /* Found by the timer alone. */
        w = watch_new(e, roots, 1);
        CHECK(mkdir(later, 0755) == 0);
        put_file(f, "f");
        uint64_t t0 = now_ms();
        wait_ready(e, f);
        CHECK(now_ms() - t0 < 3000);
        CHECK_EQ(R.crawls[AGENT_CRAWL_INITIAL], 2);

        done(e, w, base);
}

static void test_set_roots(void) {
        char *a = test_tmpdir(), *b = test_tmpdir();
        char *ax = pathf("%s/x", a), *by = pathf("%s/y", b), *az = pathf("%s/z", a);
        put_file(ax, "x");
        put_file(by, "y");
        sd_event *e = event_new();
        const char *roots1[] = {a, NULL};
        agent_watch *w = watch_new(e, roots1, 0);
        wait_ready(e, ax);

        mp_error err = {0};
        const char *roots2[] = {a, b, NULL};
        CHECK(agent_watch_set_roots(w, roots2, &err) >= 0);
        wait_ready(e, by);
        CHECK_EQ(count('R', ax), 1);    /* unchanged: not queued again */

        const char *roots3[] = {b, NULL};
        CHECK(agent_watch_set_roots(w, roots3, &err) >= 0);
        CHECK_EQ(count('X', a), 1);
        put_file(az, "z");
        run_for(e, 4 * SETTLE_MS);
        CHECK_EQ(count('R', az), 0);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 1);
        CHECK_EQ(s.files, 1);

        const char *bad[] = {"relative/path", NULL};
        CHECK(agent_watch_set_roots(w, bad, &err) == -EINVAL);

        /* A root nested in another is dropped, with no double watch. */
        char *nested = pathf("%s/n", b);
        CHECK(mkdir(nested, 0755) == 0);
        run_for(e, 50);
        const char *roots4[] = {b, nested, NULL};
        CHECK(agent_watch_set_roots(w, roots4, &err) >= 0);
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 2);

        rm_rf(a);
        free(a);
        done(e, w, b);
}

/* Hostile trees: deeper than the depth bound, paths beyond PATH_MAX,
 * symlink loops.  No crash; what is within bounds is found. */
static void test_hostile_tree(void) {
        char *root = test_tmpdir();
        int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        CHECK(dfd >= 0);
        /* 80 levels deep, a file at each level. */
        int fd = dup(dfd);
        for (int i = 0; i < 80; i++) {
                CHECK(mkdirat(fd, "d", 0755) == 0);
                int f = openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                CHECK(f >= 0);
                close(f);
                int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                CHECK(next >= 0);
                close(fd);
                fd = next;
        }
        close(fd);
        /* Long names: the path passes PATH_MAX after ~17 levels. */
        char name[251];
        memset(name, 'n', sizeof name - 1);
        name[sizeof name - 1] = 0;
        fd = dup(dfd);
        for (int i = 0; i < 24; i++) {
                CHECK(mkdirat(fd, name, 0755) == 0);
                int f = openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                CHECK(f >= 0);
                close(f);
                int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                CHECK(next >= 0);
                close(fd);
                fd = next;
        }
        close(fd);
        CHECK(symlinkat(".", dfd, "loop") == 0);
        CHECK(symlinkat("/", dfd, "slash") == 0);
        close(dfd);

        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 0);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK(s.dirs <= 1 + 64 + 24);
        CHECK(s.dirs >= 1 + 64);
        wait_settled(e);
        CHECK(count('R', pathf("%s/f", root)) == 1);
        CHECK(count('R', pathf("%s/loop", root)) == 1);
        CHECK(count('R', pathf("%s/slash", root)) == 1);
        size_t ready = count_kind('R');
        CHECK(ready >= 64 + 2);
        CHECK(ready < 80 + 24 + 2);
        for (size_t i = 0; i < R.n; i++)
                CHECK(strlen(R.v[i].path) < PATH_MAX);

        /* Events deep down do not crash either. */
        agent_watch_rescan(w);
        wait_settled(e);

        done(e, w, root);
}

/* ---- ENOSPC, in a user namespace with a low watch limit ------------- */

static int write_proc(const char *path, const char *s) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, s, strlen(s));
        int r = n == (ssize_t) strlen(s) ? 0 : -errno;
        close(fd);
        return r;
}

static bool all_ready(void *arg) {
        walk(arg);
        for (size_t i = 0; i < Walk.n; i++)
                if (count('R', Walk.v[i]) == 0)
                        return false;
        return true;
}

/* Runs in the child: exit 0 passed, 77 not possible here, else failed. */
static void enospc_child(const char *log_path) {
        int lfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (lfd < 0 || dup2(lfd, STDERR_FILENO) < 0)
                _exit(1);
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER) < 0)
                _exit(77);
        char map[64];
        snprintf(map, sizeof map, "0 %u 1", (unsigned) uid);
        (void) write_proc("/proc/self/setgroups", "deny");
        if (write_proc("/proc/self/uid_map", map) < 0)
                _exit(77);
        snprintf(map, sizeof map, "0 %u 1", (unsigned) gid);
        if (write_proc("/proc/self/gid_map", map) < 0)
                _exit(77);
        /* Per user namespace: the host's limit is untouched. */
        if (write_proc("/proc/sys/user/max_inotify_watches", "20") < 0)
                _exit(77);

        char *root = test_tmpdir();
        for (int i = 0; i < 60; i++) {
                char *d = pathf("%s/d%02d", root, i);
                CHECK(mkdir(d, 0755) == 0);
                put_file(pathf("%s/f", d), "f");
        }
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 1);
        agent_watch_stats s;
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.dirs, 61);
        CHECK_EQ(s.watched, 20);
        CHECK_EQ(s.unwatched, 41);
        CHECK_EQ(s.files, 60);          /* unwatched dirs are still crawled */
        wait_settled(e);
        CHECK(all_ready(root));

        /* New files everywhere: events where watched, the 1 s rescan of
         * the unwatched directories elsewhere. */
        for (int i = 0; i < 60; i++)
                put_file(pathf("%s/d%02d/g", root, i), "g");
        uint64_t t0 = now_ms();
        CHECK(run_until(e, all_ready, root, 5000));
        CHECK(now_ms() - t0 < 4000);
        agent_watch_get_stats(w, &s);
        CHECK_EQ(s.files, 120);
        CHECK_EQ(s.unwatched, 41);      /* the limit still holds */

        agent_watch_free(w);
        sd_event_unref(e);
        rm_rf(root);
        fflush(stderr);
        _exit(0);
}

/* Runs child(log_path) in a forked process (namespaces must not touch the
 * test itself) and returns its stderr, echoed here.  The child exits 0
 * when it passed, 77 when the machine cannot do what it needs (then a
 * SKIPPED-PART line naming what says so, and *ret_skipped is set); anything
 * else fails the test. */
static char *run_child(void (*child)(const char *log_path), const char *what, bool *ret_skipped) {
        char *dir = test_tmpdir();
        char *log_path = pathf("%s/stderr", dir);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
                child(log_path);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);

        size_t len = 0;
        char *log = test_read(log_path, &len);
        fwrite(log, 1, len, stderr);
        CHECK(WIFEXITED(status));
        *ret_skipped = WEXITSTATUS(status) == 77;
        if (*ret_skipped) {
                printf("SKIPPED-PART: %s are not available here\n", what);
                fprintf(stderr, "SKIPPED-PART: %s are not available here\n", what);
        } else
                CHECK_EQ(WEXITSTATUS(status), 0);
        rm_rf(dir);
        free(dir);
        return log;
}

static void test_enospc(void) {
        bool skipped;
        char *log = run_child(enospc_child,
                              "ENOSPC: user namespaces (unshare(CLONE_NEWUSER) and user.max_inotify_watches)",
                              &skipped);
        if (!skipped) {
                /* One warning, naming the sysctl and both limits. */
                size_t n = 0;
                for (const char *p = log; (p = strstr(p, "watch limit reached")); p++)
                        n++;
                CHECK_EQ(n, 1);
                CHECK(strstr(log, "sysctl -w fs.inotify.max_user_watches="));
                CHECK(strstr(log, "user.max_inotify_watches=20"));
        }
        free(log);
        paths_free();
}

/* ---- mounts ------------------------------------------------------------ */

static bool ready_seen(void *arg) {
        return count('R', arg) > 0;
}

static bool removed_seen(void *arg) {
        return count('D', arg) > 0;
}

/* Runs in the child, in a mount namespace of its own: exit 0 passed, 77
 * not possible here, else failed. */
static void mount_child(const char *log_path) {
        int lfd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (lfd < 0 || dup2(lfd, STDERR_FILENO) < 0)
                _exit(1);
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                _exit(77);
        char *staging = test_tmpdir();
        if (mount("tmpfs", staging, "tmpfs", 0, "size=1m") < 0)
                _exit(77);
        put_file(pathf("%s/model.gguf", staging), "weights");

        char *root = test_tmpdir();
        char *mnt = pathf("%s/mnt", root);
        CHECK(mkdir(mnt, 0755) == 0);
        sd_event *e = event_new();
        const char *roots[] = {root, NULL};
        agent_watch *w = watch_new(e, roots, 1);
        run_for(e, 100);

        /* A bind mount over a watched directory: no inotify event at all,
         * only the mount table changes. */
        CHECK(mount(staging, mnt, NULL, MS_BIND, NULL) == 0);
        char *inside = pathf("%s/model.gguf", mnt);
        CHECK(run_until(e, ready_seen, inside, 5000));
        CHECK(umount(mnt) == 0);
        CHECK(run_until(e, removed_seen, inside, 5000));

        agent_watch_free(w);
        sd_event_unref(e);
        (void) umount(staging);
        fflush(stderr);
        _exit(0);
}

/* A file system mounted over a watched directory is found by the mount
 * table watch, and its files are removed again at unmount. */
static void test_mount_over_watched_dir(void) {
        bool skipped;
        char *log = run_child(mount_child, "mounts: mount namespaces (unshare(CLONE_NEWNS), tmpfs)", &skipped);
        if (!skipped)
                CHECK(strstr(log, "mounted "));
        free(log);
        paths_free();
}

int main(void) {
        /* The child of the mkdir race must not outlive a failed parent. */
        signal(SIGPIPE, SIG_IGN);

        RUN(test_initial_crawl);
        RUN(test_write_close);
        RUN(test_mkdir_race);
        RUN(test_rename_file);
        RUN(test_rename_dir);
        RUN(test_move_out);
        RUN(test_move_in);
        RUN(test_hf_hub_sequence);
        RUN(test_ollama_sequence);
        RUN(test_delete);
        RUN(test_overflow);
        RUN(test_rescan_mmap);
        RUN(test_missing_root);
        RUN(test_set_roots);
        RUN(test_hostile_tree);
        RUN(test_enospc);
        RUN(test_mount_over_watched_dir);
        return 0;
}
