/* collector_proc.h - a real modelprov-collector ($MODELPROV_COLLECTOR_BIN)
 * for C integration tests: plaintext on loopback, a SQLite store (or, under
 * `meson test --setup postgres`, a fresh database on the test's PostgreSQL
 * server, see tests/postgres/pg_server.py), secrets in
 * a temporary directory, started and killed as a child process.  The store
 * and the log stay in the directory across restarts, so a test can kill
 * the collector (SIGKILL) and start it again on the same port and store. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

#include "rpc/client.h"

#define TEST_ENROLL_SECRET "enroll-secret-0123456789abcdef"
#define TEST_QUERY_TOKEN "query-token-0123456789abcdef"
#define TEST_ADMIN_TOKEN "admin-token-0123456789abcdef"

typedef struct test_collector {
        char *dir;              /* secrets, config, store, log */
        char *store;            /* the --store URL */
        char *log;
        pid_t pid;              /* -1: not running */
        int port;
        char target[64];        /* "127.0.0.1:PORT" once started */
} test_collector;

/* A new directory with the three secrets (mode 0600) and an empty config;
 * the collector is not started. */
void test_collector_init(test_collector *c);

/* Starts the collector on port (0: any free one) and waits until it says
 * `listening on`; aborts the test when it does not. */
void test_collector_start(test_collector *c, int port);

/* Sends sig, reaps the process and returns its wait status. */
int test_collector_stop(test_collector *c, int sig);

/* Stops it if running (SIGKILL) and frees the strings. */
void test_collector_done(test_collector *c);

/* A loopback port that was free a moment ago (bound to port 0, closed):
 * for a collector started later. */
int test_free_port(void);

/* A client for target with short retries; stop may be NULL. */
mp_rpc_client *test_client_new(const char *target, const volatile sig_atomic_t *stop);

/* Monotonic milliseconds. */
int64_t test_now_ms(void);
