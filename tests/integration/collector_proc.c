/* collector_proc.c - a real collector as a child process for C tests (see
 * collector_proc.h). */
#include "collector_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../unit/test.h"
#include "util/macro.h"

int64_t test_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_secret(const char *dir, const char *name, const char *value) {
        _cleanup_(freep) char *p = test_path(dir, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        CHECK(fchmod(fd, 0600) == 0);
        CHECK(write(fd, value, strlen(value)) == (ssize_t) strlen(value));
        CHECK(write(fd, "\n", 1) == 1);
        close(fd);
}

/* A fresh database on the server of MODELPROV_TEST_PG (a libpq conninfo
 * "host=H port=P user=U dbname=D"), created with psql; returns its URL. */
static char *postgres_store(void) {
        static unsigned counter;
        const char *conninfo = getenv("MODELPROV_TEST_PG");
        if (!conninfo) {
                fprintf(stderr, "MODELPROV_TEST_STORE=postgresql but MODELPROV_TEST_PG is not set: run with "
                                "`meson test --setup postgres` (tests/postgres/pg_server.py)\n");
                CHECK(conninfo);
        }
        char host[256] = "", user[256] = "";
        int port = 0;
        for (const char *p = conninfo; *p;) {
                (void) (sscanf(p, "host=%255[^ ]", host) == 1 || sscanf(p, "user=%255[^ ]", user) == 1 ||
                        sscanf(p, "port=%d", &port) == 1);
                p += strcspn(p, " ");
                p += strspn(p, " ");
        }
        CHECK(host[0] && user[0] && port > 0);

        /* The server is this test program's own (pg_server.py): the pid and
         * a counter name a database nobody else uses. */
        char db[64];
        snprintf(db, sizeof(db), "c_%d_%u", (int) getpid(), counter++);

        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
                char sql[192];
                snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db);
                execlp("psql", "psql", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo, (char *) NULL);
                _exit(127);
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        char *url = NULL;
        CHECK(asprintf(&url, "postgresql://%s@%s:%d/%s", user, host, port, db) > 0);
        return url;
}

void test_collector_init(test_collector *c) {
        *c = (test_collector) { .dir = test_tmpdir(), .pid = -1 };
        const char *engine = getenv("MODELPROV_TEST_STORE");
        if (engine && strcmp(engine, "postgresql") == 0)
                c->store = postgres_store();
        else
                CHECK(asprintf(&c->store, "sqlite:%s/collector.db", c->dir) > 0);
        write_secret(c->dir, "enroll.secret", TEST_ENROLL_SECRET);
        write_secret(c->dir, "query.token", TEST_QUERY_TOKEN);
        write_secret(c->dir, "admin.token", TEST_ADMIN_TOKEN);
        free(test_write(c->dir, "collector.conf", "[collector]\n", 12));
        c->log = test_path(c->dir, "collector.log");
}

void test_collector_start(test_collector *c, int port) {
        const char *bin = getenv("MODELPROV_COLLECTOR_BIN");
        CHECK(bin);
        CHECK(c->pid < 0);
        char listen[64];
        snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
        _cleanup_(freep) char *enroll = test_path(c->dir, "enroll.secret"),
                              *query = test_path(c->dir, "query.token"), *admin = test_path(c->dir, "admin.token"),
                              *conf = test_path(c->dir, "collector.conf");

        int log_fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        CHECK(log_fd >= 0);
        /* The log grows across restarts: only what this start writes counts. */
        off_t start = lseek(log_fd, 0, SEEK_END);
        CHECK(start >= 0);
        c->pid = fork();
        CHECK(c->pid >= 0);
        if (c->pid == 0) {
                if (dup2(log_fd, 2) < 0 || dup2(log_fd, 1) < 0)
                        _exit(127);
                execl(bin, bin, "--config", conf, "--listen", listen, "--store", c->store, "--enroll-secret-file",
                      enroll, "--query-token-file", query, "--admin-token-file", admin, "--insecure-loopback",
                      "--threads", "4", (char *) NULL);
                _exit(127);
        }
        close(log_fd);

        for (int64_t end = test_now_ms() + 30000; test_now_ms() < end; usleep(20000)) {
                size_t n;
                _cleanup_(freep) char *log = test_read(c->log, &n);
                const char *at = n > (size_t) start ? strstr(log + start, "listening on ") : NULL;
                if (at && sscanf(at, "listening on 127.0.0.1:%d", &c->port) == 1) {
                        CHECK(port == 0 || c->port == port);
                        snprintf(c->target, sizeof(c->target), "127.0.0.1:%d", c->port);
                        return;
                }
                int status;
                CHECK(waitpid(c->pid, &status, WNOHANG) == 0);
        }
        CHECK(!"collector did not start listening");
}

int test_collector_stop(test_collector *c, int sig) {
        int status;
        CHECK(c->pid > 0);
        CHECK(kill(c->pid, sig) == 0);
        CHECK(waitpid(c->pid, &status, 0) == c->pid);
        c->pid = -1;
        return status;
}

void test_collector_done(test_collector *c) {
        if (c->pid > 0)
                (void) test_collector_stop(c, SIGKILL);
        free(c->log);
        free(c->dir);
        free(c->store);
        c->log = c->dir = c->store = NULL;
}

int test_free_port(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        CHECK(bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0);
        socklen_t len = sizeof(a);
        CHECK(getsockname(fd, (struct sockaddr *) &a, &len) == 0);
        close(fd);
        return ntohs(a.sin_port);
}

mp_rpc_client *test_client_new(const char *target, const volatile sig_atomic_t *stop) {
        mp_rpc_options o = {
                .target = target,
                .insecure_loopback = true,
                .deadline_ms = 10000,
                .retry = { .max_attempts = 3, .backoff = { .initial_ms = 50, .max_ms = 200 } },
                .stop = stop,
        };
        mp_rpc_client *cl = NULL;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_client_new(&o, &cl, &err);
        if (r < 0)
                fprintf(stderr, "client: %s\n", err.reason);
        CHECK_EQ(r, 0);
        return cl;
}
