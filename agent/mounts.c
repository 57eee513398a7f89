/* mounts.c - the mount table, watched through /proc/self/mountinfo (see
 * mounts.h). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "agent/mounts.h"
#include "util/macro.h"

/* mountinfo of a busy container host can be large; far beyond this, the
 * table is not read (the periodic rescan remains). */
#define MOUNTINFO_MAX (16u << 20)

struct agent_mounts {
        int fd;
        sd_event_source *source;
        agent_mount_fn cb;
        void *userdata;
        char **points;                  /* sorted, unique */
        size_t n_points;
};

static void points_free(char **points, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(points[i]);
        free(points);
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The mount point field is escaped: space, tab, newline and backslash as
 * \ooo (octal). */
static char *unescape(const char *s, size_t n) {
        char *out = malloc(n + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
                    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
                        out[o++] = (char) ((s[i + 1] - '0') << 6 | (s[i + 2] - '0') << 3 | (s[i + 3] - '0'));
                        i += 3;
                } else
                        out[o++] = s[i];
        }
        out[o] = '\0';
        return out;
}

/* The whole file, from its start (reading it is also what clears the
 * EPOLLPRI condition). */
static int read_all(int fd, char **ret, size_t *ret_len) {
        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        size_t len = 0, allocated = 64 * 1024;
        char *buf = malloc(allocated);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == allocated) {
                        if (allocated >= MOUNTINFO_MAX) {
                                free(buf);
                                return -EFBIG;
                        }
                        char *nb = realloc(buf, allocated * 2);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        allocated *= 2;
                }
                ssize_t n = read(fd, buf + len, allocated - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        free(buf);
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        *ret = buf;
        *ret_len = len;
        return 0;
}

/* The fifth field of each line: "36 35 98:0 /mnt1 /mnt2 rw,noatime ...". */
static int parse_points(const char *buf, size_t len, char ***ret, size_t *ret_n) {
        char **points = NULL;
        size_t n = 0, allocated = 0;
        for (const char *line = buf, *end; line < buf + len; line = end + 1) {
                end = memchr(line, '\n', (size_t) (buf + len - line));
                if (!end)
                        end = buf + len;
                const char *f = line;
                for (int field = 0; field < 4 && f < end; field++) {
                        const char *sp = memchr(f, ' ', (size_t) (end - f));
                        f = sp ? sp + 1 : end;
                }
                const char *fe = memchr(f, ' ', (size_t) (end - f));
                if (f >= end || !fe)
                        continue;
                if (n == allocated) {
                        allocated = allocated ? allocated * 2 : 64;
                        char **np = realloc(points, allocated * sizeof(char *));
                        if (!np)
                                goto oom;
                        points = np;
                }
                if (!(points[n] = unescape(f, (size_t) (fe - f))))
                        goto oom;
                n++;
        }
        if (n > 0)
                qsort(points, n, sizeof(char *), compare_strings);
        /* A path mounted twice (stacked) counts once. */
        size_t u = 0;
        for (size_t i = 0; i < n; i++) {
                if (u > 0 && strcmp(points[u - 1], points[i]) == 0)
                        free(points[i]);
                else
                        points[u++] = points[i];
        }
        *ret = points;
        *ret_n = u;
        return 0;
oom:
        points_free(points, n);
        return -ENOMEM;
}

static int load(agent_mounts *m, char ***ret, size_t *ret_n) {
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0;
        int r = read_all(m->fd, &buf, &len);
        if (r < 0)
                return r;
        return parse_points(buf, len, ret, ret_n);
}

/* Reports what differs between the old and the new sorted lists. */
static void report_changes(agent_mounts *m, char **now, size_t n_now) {
        size_t i = 0, j = 0;
        while (i < m->n_points || j < n_now) {
                int c = i == m->n_points ? 1 : j == n_now ? -1 : strcmp(m->points[i], now[j]);
                if (c < 0)
                        m->cb(m->userdata, m->points[i++], false);
                else if (c > 0)
                        m->cb(m->userdata, now[j++], true);
                else
                        i++, j++;
        }
}

static int on_mountinfo(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        agent_mounts *m = userdata;
        (void) s, (void) fd, (void) revents;
        char **now = NULL;
        size_t n_now = 0;
        if (load(m, &now, &n_now) < 0)
                return 0;       /* the periodic rescan remains */
        report_changes(m, now, n_now);
        points_free(m->points, m->n_points);
        m->points = now;
        m->n_points = n_now;
        return 0;
}

int agent_mounts_new(sd_event *e, agent_mount_fn cb, void *userdata, agent_mounts **ret) {
        assert(e && cb && ret);
        agent_mounts *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->cb = cb;
        m->userdata = userdata;
        m->fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        int r = m->fd < 0 ? -errno : load(m, &m->points, &m->n_points);
        if (r >= 0)
                r = sd_event_add_io(e, &m->source, m->fd, EPOLLPRI, on_mountinfo, m);
        if (r < 0) {
                agent_mounts_free(m);
                return r;
        }
        (void) sd_event_source_set_description(m->source, "agent-mounts");
        *ret = m;
        return 0;
}

void agent_mounts_free(agent_mounts *m) {
        if (!m)
                return;
        sd_event_source_disable_unref(m->source);
        if (m->fd >= 0)
                close(m->fd);
        points_free(m->points, m->n_points);
        free(m);
}
