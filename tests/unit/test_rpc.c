/* test_rpc.c - the collector client library (lib/rpc) without a collector:
 * the backoff and retry policy as pure functions, status names and classes,
 * target and option validation, and the errors of calls that cannot reach
 * anything (a closed loopback port, a stop flag, a bad token). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>

#include "modelprov.pb-c.h"
#include "rpc/backoff.h"
#include "rpc/client.h"
#include "rpc/status.h"
#include "test.h"
#include "util/macro.h"
#include "util/strutil.h"

/* A deterministic stand-in for the random source: splitmix64. */
static uint64_t next_random(uint64_t *state) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static void test_backoff_ceiling(void) {
        const int64_t want[] = { 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000 };
        for (unsigned i = 0; i < ELEMENTSOF(want); i++) {
                CHECK_EQ(mp_backoff_ceiling_ms(NULL, i), want[i]);
                CHECK_EQ(mp_backoff_ceiling_ms(&(mp_backoff) {0}, i), want[i]);
        }
        /* Huge retry counts stay at the cap (no overflow, no endless loop). */
        CHECK_EQ(mp_backoff_ceiling_ms(NULL, 1000), 30000);
        CHECK_EQ(mp_backoff_ceiling_ms(NULL, UINT_MAX), 30000);

        mp_backoff b = { .initial_ms = 1000, .factor = 3, .max_ms = 5000 };
        CHECK_EQ(mp_backoff_ceiling_ms(&b, 0), 1000);
        CHECK_EQ(mp_backoff_ceiling_ms(&b, 1), 3000);
        CHECK_EQ(mp_backoff_ceiling_ms(&b, 2), 5000);

        /* Nonsense falls back to defaults; an initial above the cap is cut. */
        CHECK_EQ(mp_backoff_ceiling_ms(&(mp_backoff) { .initial_ms = 100, .factor = NAN }, 1), 200);
        CHECK_EQ(mp_backoff_ceiling_ms(&(mp_backoff) { .initial_ms = 100, .factor = 0.5 }, 1), 200);
        CHECK_EQ(mp_backoff_ceiling_ms(&(mp_backoff) { .initial_ms = 100, .factor = INFINITY }, 1), 200);
        CHECK_EQ(mp_backoff_ceiling_ms(&(mp_backoff) { .initial_ms = -5, .max_ms = -1 }, 0), 200);
        CHECK_EQ(mp_backoff_ceiling_ms(&(mp_backoff) { .initial_ms = 9000, .max_ms = 500 }, 0), 500);
        /* factor 1: constant waits. */
        CHECK_EQ(mp_backoff_ceiling_ms(&(mp_backoff) { .initial_ms = 700, .factor = 1 }, 50), 700);
}

static void test_backoff_jitter(void) {
        /* The ends of the random range map to the ends of [0, ceiling]. */
        for (unsigned i = 0; i < 12; i++) {
                int64_t c = mp_backoff_ceiling_ms(NULL, i);
                CHECK_EQ(mp_backoff_delay_ms(NULL, i, 0), 0);
                CHECK_EQ(mp_backoff_delay_ms(NULL, i, UINT64_MAX), c);
                CHECK_EQ(mp_backoff_delay_ms(NULL, i, UINT64_C(1) << 63), (c + 1) / 2);
        }

        /* Deterministic, monotone in random, always within bounds, and
         * spread over the whole range with a mean near half the ceiling. */
        uint64_t state = 42;
        for (unsigned retry = 0; retry < 10; retry++) {
                int64_t c = mp_backoff_ceiling_ms(NULL, retry), min = INT64_MAX, max = -1;
                double sum = 0;
                const int n = 20000;
                for (int k = 0; k < n; k++) {
                        uint64_t r = next_random(&state);
                        int64_t d = mp_backoff_delay_ms(NULL, retry, r);
                        CHECK(d >= 0 && d <= c);
                        CHECK_EQ(mp_backoff_delay_ms(NULL, retry, r), d);
                        if (r < UINT64_MAX - 1000)
                                CHECK(mp_backoff_delay_ms(NULL, retry, r + 1000) >= d);
                        min = d < min ? d : min;
                        max = d > max ? d : max;
                        sum += (double) d;
                }
                CHECK(min <= c / 50);
                CHECK(max >= c - c / 50);
                CHECK(fabs(sum / n - (double) c / 2) < (double) c * 0.02);
        }
}

static void test_retry_decide(void) {
        int64_t delay = -1;

        /* Never retried: the same request gets the same answer. */
        const int permanent[] = { MP_RPC_OK, MP_RPC_UNAUTHENTICATED, MP_RPC_PERMISSION_DENIED,
                                  MP_RPC_INVALID_ARGUMENT, MP_RPC_NOT_FOUND, MP_RPC_RESOURCE_EXHAUSTED,
                                  MP_RPC_INTERNAL, MP_RPC_UNIMPLEMENTED, 99, -1 };
        for (size_t i = 0; i < ELEMENTSOF(permanent); i++) {
                CHECK_EQ(mp_retry_decide(NULL, 1, permanent[i], 0, 0, 0, &delay), MP_RETRY_PERMANENT);
                CHECK_EQ(delay, 0);
        }

        /* Retryable codes: default 5 attempts, waits within the ceiling of
         * the retry they precede. */
        const int retryable[] = { MP_RPC_UNAVAILABLE, MP_RPC_DEADLINE_EXCEEDED, MP_RPC_ABORTED };
        for (size_t i = 0; i < ELEMENTSOF(retryable); i++) {
                for (unsigned a = 1; a < MP_RETRY_DEFAULT_ATTEMPTS; a++) {
                        CHECK_EQ(mp_retry_decide(NULL, a, retryable[i], 0, 0, UINT64_MAX, &delay), MP_RETRY_AGAIN);
                        CHECK_EQ(delay, mp_backoff_ceiling_ms(NULL, a - 1));
                        CHECK_EQ(mp_retry_decide(NULL, a, retryable[i], 0, 0, 0, &delay), MP_RETRY_AGAIN);
                        CHECK_EQ(delay, 0);
                }
                CHECK_EQ(mp_retry_decide(NULL, MP_RETRY_DEFAULT_ATTEMPTS, retryable[i], 0, 0, 0, &delay),
                         MP_RETRY_EXHAUSTED);
        }

        /* TLS handshake failures stop after two attempts, before the
         * attempt limit, whatever the budget left. */
        CHECK_EQ(mp_retry_decide(NULL, 1, MP_RPC_UNAVAILABLE, 1, 0, 0, &delay), MP_RETRY_AGAIN);
        CHECK_EQ(mp_retry_decide(NULL, 2, MP_RPC_UNAVAILABLE, 2, 0, 0, &delay), MP_RETRY_TLS);
        mp_retry_policy p = { .max_attempts = 100, .max_tls_attempts = 3 };
        CHECK_EQ(mp_retry_decide(&p, 2, MP_RPC_UNAVAILABLE, 2, 0, 0, &delay), MP_RETRY_AGAIN);
        CHECK_EQ(mp_retry_decide(&p, 3, MP_RPC_UNAVAILABLE, 3, 0, 0, &delay), MP_RETRY_TLS);
        /* ... but an authentication failure is permanent even then. */
        CHECK_EQ(mp_retry_decide(&p, 1, MP_RPC_UNAUTHENTICATED, 5, 0, 0, &delay), MP_RETRY_PERMANENT);

        /* Total time: no retry whose wait would end past the budget. */
        CHECK_EQ(mp_retry_decide(NULL, 1, MP_RPC_UNAVAILABLE, 0, MP_RETRY_DEFAULT_TOTAL_MS, 0, &delay),
                 MP_RETRY_EXHAUSTED);
        CHECK_EQ(mp_retry_decide(NULL, 1, MP_RPC_UNAVAILABLE, 0, MP_RETRY_DEFAULT_TOTAL_MS - 100, UINT64_MAX,
                                 &delay), MP_RETRY_EXHAUSTED);
        CHECK_EQ(mp_retry_decide(NULL, 1, MP_RPC_UNAVAILABLE, 0, MP_RETRY_DEFAULT_TOTAL_MS - 100, 0, &delay),
                 MP_RETRY_AGAIN);
        p = (mp_retry_policy) { .max_attempts = 1000, .max_total_ms = -1 };
        CHECK_EQ(mp_retry_decide(&p, 999, MP_RPC_UNAVAILABLE, 0, INT64_MAX / 2, UINT64_MAX, &delay),
                 MP_RETRY_AGAIN);
        CHECK_EQ(delay, MP_BACKOFF_DEFAULT_MAX_MS);

        /* max_attempts 1: a single try. */
        p = (mp_retry_policy) { .max_attempts = 1 };
        CHECK_EQ(mp_retry_decide(&p, 1, MP_RPC_UNAVAILABLE, 0, 0, 0, &delay), MP_RETRY_EXHAUSTED);

        /* A custom backoff is used for the waits. */
        p = (mp_retry_policy) { .backoff = { .initial_ms = 10, .factor = 10, .max_ms = 500 }, .max_attempts = 9 };
        CHECK_EQ(mp_retry_decide(&p, 3, MP_RPC_UNAVAILABLE, 0, 0, UINT64_MAX, &delay), MP_RETRY_AGAIN);
        CHECK_EQ(delay, 500);
        CHECK_EQ(mp_retry_decide(&p, 2, MP_RPC_UNAVAILABLE, 0, 0, UINT64_MAX, &delay), MP_RETRY_AGAIN);
        CHECK_EQ(delay, 100);

        CHECK_STREQ(mp_retry_verdict_name(MP_RETRY_TLS), "TLS handshake failed");
}

static void test_status(void) {
        CHECK_STREQ(mp_rpc_status_name(MP_RPC_OK), "OK");
        CHECK_STREQ(mp_rpc_status_name(MP_RPC_UNAUTHENTICATED), "UNAUTHENTICATED");
        CHECK_STREQ(mp_rpc_status_name(14), "UNAVAILABLE");
        CHECK_STREQ(mp_rpc_status_name(3), "INVALID_ARGUMENT");
        CHECK_STREQ(mp_rpc_status_name(17), "INVALID_STATUS_CODE");
        CHECK_STREQ(mp_rpc_status_name(-1), "INVALID_STATUS_CODE");
        for (int c = 0; c <= 16; c++)
                CHECK(strcmp(mp_rpc_status_name(c), "INVALID_STATUS_CODE") != 0);

        CHECK_EQ(mp_rpc_code_errno(MP_RPC_OK), 0);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_UNAUTHENTICATED), -EACCES);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_PERMISSION_DENIED), -EPERM);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_INVALID_ARGUMENT), -EINVAL);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_NOT_FOUND), -ENOENT);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_UNAVAILABLE), -EAGAIN);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_DEADLINE_EXCEEDED), -ETIMEDOUT);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_RESOURCE_EXHAUSTED), -E2BIG);
        CHECK_EQ(mp_rpc_code_errno(MP_RPC_INTERNAL), -EIO);
        CHECK_EQ(mp_rpc_code_errno(1234), -EIO);

        CHECK(mp_rpc_code_retryable(MP_RPC_UNAVAILABLE));
        CHECK(!mp_rpc_code_retryable(MP_RPC_UNAUTHENTICATED));
        CHECK(!mp_rpc_code_retryable(MP_RPC_RESOURCE_EXHAUSTED));

        /* Texts gRPC core 1.51 produced in the lab (wrong CA, wrong name,
         * mutual TLS without a client certificate, plaintext to TLS, down). */
        CHECK(mp_rpc_text_is_tls_failure("failed to connect to all addresses; last error: UNKNOWN: "
                                         "ipv4:127.0.0.1:44483: Ssl handshake failed: SSL_ERROR_SSL: "
                                         "error:0A000086:SSL routines::certificate verify failed"));
        CHECK(mp_rpc_text_is_tls_failure("failed to connect to all addresses; last error: UNKNOWN: "
                                         "ipv4:127.0.0.1:44483: Peer name other.example is not in peer certificate"));
        CHECK(!mp_rpc_text_is_tls_failure("failed to connect to all addresses; last error: UNKNOWN: "
                                          "ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused"));
        CHECK(!mp_rpc_text_is_tls_failure(NULL));
        CHECK(!mp_rpc_text_is_tls_failure("store busy, try again"));

        const char *closed = "failed to connect to all addresses; last error: UNAVAILABLE: "
                             "ipv4:127.0.0.1:39421: Socket closed";
        CHECK(mp_rpc_text_is_closed_at_connect(closed));
        CHECK(!mp_rpc_text_is_tls_failure(closed));
        CHECK(!mp_rpc_text_is_closed_at_connect("Socket closed"));      /* mid-call: a restart */
        CHECK(!mp_rpc_text_is_closed_at_connect("failed to connect to all addresses; last error: UNKNOWN: "
                                                "ipv4:127.0.0.1:1: Failed to connect to remote host: "
                                                "Connection refused"));
        CHECK(!mp_rpc_text_is_closed_at_connect(NULL));
}

static void test_targets(void) {
        /* Plaintext is accepted towards loopback only (util/address.h). */
        const char *loopback[] = { "127.0.0.1:5000", "127.8.9.10:1", "[::1]:5000", "localhost:80",
                                   "localhost:65535", "[0:0:0:0:0:0:0:1]:9", "unix:/run/modelprov.sock" };
        for (size_t i = 0; i < ELEMENTSOF(loopback); i++) {
                mp_rpc_options o = { .target = loopback[i], .insecure_loopback = true };
                mp_error err;
                mp_error_clear(&err);
                if (mp_rpc_options_check(&o, &err) != 0)
                        fprintf(stderr, "refused: %s: %s\n", loopback[i], err.reason);
                CHECK_EQ(mp_rpc_options_check(&o, &err), 0);
        }

        const char *remote[] = { "10.0.0.1:5000", "collector.example.com:443", "[::2]:5", "128.0.0.1:5",
                                 "127.0.0.1.example.com:5", "[::ffff:10.0.0.1]:5", "localhost.example:5",
                                 "0.0.0.0:5000", "[::]:5000" };
        for (size_t i = 0; i < ELEMENTSOF(remote); i++) {
                /* Fine with TLS, refused in plaintext with a reason. */
                mp_rpc_options o = { .target = remote[i] };
                CHECK_EQ(mp_rpc_options_check(&o, NULL), 0);
                o.insecure_loopback = true;
                mp_error err;
                mp_error_clear(&err);
                CHECK_EQ(mp_rpc_options_check(&o, &err), -EINVAL);
                CHECK(strstr(err.reason, "loopback"));
                CHECK(strstr(err.reason, remote[i]));
        }

        char longest[MP_RPC_TARGET_MAX + 16];
        memset(longest, 'a', sizeof(longest));
        memcpy(longest + sizeof(longest) - 6, ":5000", 6);
        const char *bad[] = { "", "host", "host:", "host:0", "host:65536", "host:12a", "host:-1", "::1:5000",
                              "[::1]5000", "[::1]", "[::1:5000", "a b:5", "host:5\n", ":5000", "[]:5",
                              "unix:", "host:123456", "host:+5", longest };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                for (int insecure = 0; insecure <= 1; insecure++) {
                        mp_rpc_options o = { .target = bad[i], .insecure_loopback = insecure };
                        mp_error err;
                        mp_error_clear(&err);
                        if (mp_rpc_options_check(&o, &err) != -EINVAL)
                                fprintf(stderr, "accepted: '%s'\n", bad[i]);
                        CHECK_EQ(mp_rpc_options_check(&o, &err), -EINVAL);
                        CHECK(strstr(err.reason, "collector address"));
                        CHECK(!strchr(err.reason, '\n'));
                }
        }
        CHECK_EQ(mp_rpc_options_check(&(mp_rpc_options) {0}, NULL), -EINVAL);
}

static void test_options(void) {
        mp_error err;
        struct {
                mp_rpc_options o;
                int want;
                const char *says;
        } cases[] = {
                { { .target = "127.0.0.1:1", .insecure_loopback = true, .ca_file = "ca.pem" }, -EINVAL, "TLS" },
                { { .target = "127.0.0.1:1", .insecure_loopback = true, .cert_file = "c", .key_file = "k" },
                  -EINVAL, "TLS" },
                { { .target = "127.0.0.1:1", .insecure_loopback = true, .server_name = "x" }, -EINVAL, "TLS" },
                { { .target = "h:1", .cert_file = "c.pem" }, -EINVAL, "both" },
                { { .target = "h:1", .key_file = "k.pem" }, -EINVAL, "both" },
                { { .target = "h:1", .server_name = "" }, -EINVAL, "server name" },
                { { .target = "h:1", .deadline_ms = -1 }, -EINVAL, "deadline" },
                { { .target = "h:1", .keepalive_timeout_ms = -1 }, -EINVAL, "keepalive" },
                { { .target = "h:1", .keepalive_ms = (int64_t) INT_MAX + 1 }, -EINVAL, "keepalive" },
                { { .target = "h:1", .max_receive_bytes = -1 }, -EINVAL, "receive" },
                { { .target = "h:1", .ca_file = "ca.pem", .cert_file = "c", .key_file = "k", .server_name = "h",
                    .keepalive_ms = -1 }, 0, NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                mp_error_clear(&err);
                CHECK_EQ(mp_rpc_options_check(&cases[i].o, &err), cases[i].want);
                if (cases[i].says && !strstr(err.reason, cases[i].says))
                        fprintf(stderr, "case %zu: '%s' lacks '%s'\n", i, err.reason, cases[i].says);
                CHECK(!cases[i].says || strstr(err.reason, cases[i].says));
        }
}

static void test_client_files(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *missing = test_path(dir, "missing.pem");
        _cleanup_(freep) char *text = test_write(dir, "not.pem", "hello\n", 6);
        _cleanup_(freep) char *empty = test_write(dir, "empty.pem", "", 0);
        mp_rpc_client *c = NULL;
        mp_error err;

        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_client_new(&(mp_rpc_options) { .target = "h:1", .ca_file = missing }, &c, &err), -ENOENT);
        CHECK_STREQ(err.file, missing);
        CHECK(strstr(err.reason, "CA file"));
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_client_new(&(mp_rpc_options) { .target = "h:1", .ca_file = text }, &c, &err), -EBADMSG);
        CHECK(strstr(err.reason, "not a PEM file"));
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_client_new(&(mp_rpc_options) { .target = "h:1", .ca_file = empty }, &c, &err), -EBADMSG);
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_client_new(&(mp_rpc_options) { .target = "h:1", .ca_file = dir }, &c, &err), -EINVAL);
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_client_new(&(mp_rpc_options) { .target = "h:1", .cert_file = text, .key_file = missing },
                                   &c, &err), -EBADMSG);
        CHECK(strstr(err.reason, "client certificate"));
        CHECK(!c);

        /* A channel is set up without connecting. */
        CHECK_EQ(mp_rpc_client_new(&(mp_rpc_options) { .target = "collector.invalid:443" }, &c, &err), 0);
        CHECK_STREQ(mp_rpc_client_target(c), "collector.invalid:443");
        mp_rpc_client_free(c);
}

/* Calls that cannot succeed, on loopback only: port 1 is closed. */
static void test_unreachable(void) {
        volatile sig_atomic_t stop = 0;
        mp_rpc_options o = {
                .target = "127.0.0.1:1",
                .insecure_loopback = true,
                .deadline_ms = 5000,
                .retry = { .max_attempts = 3, .backoff = { .initial_ms = 10, .max_ms = 20 } },
                .stop = &stop,
        };
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *c = NULL;
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_client_new(&o, &c, &err), 0);

        Modelprov__V1__HostsRequest req = MODELPROV__V1__HOSTS_REQUEST__INIT;
        ProtobufCMessage *resp = (ProtobufCMessage *) 1;
        mp_rpc_status st;
        const mp_rpc_auth auth = { .token = "0123456789abcdef-query" };

        int r = mp_rpc_unary(c, "/modelprov.v1.Query/Hosts", &auth, &req.base,
                             &modelprov__v1__hosts_response__descriptor, &resp, &st, &err);
        CHECK_EQ(r, -EAGAIN);
        CHECK(!resp);
        CHECK_EQ(st.code, MP_RPC_UNAVAILABLE);
        CHECK_EQ(st.attempts, 3);
        CHECK(!st.tls_failure);
        CHECK_STREQ(err.file, "collector 127.0.0.1:1");
        CHECK(mp_has_prefix(err.reason, "UNAVAILABLE: "));
        CHECK(strstr(err.reason, "gave up after 3 attempts"));
        char buf[1024];
        mp_error_format(&err, buf, sizeof(buf));
        CHECK(mp_has_prefix(buf, "collector 127.0.0.1:1: UNAVAILABLE: "));

        /* Tokens are checked before anything is sent. */
        mp_error_clear(&err);
        const mp_rpc_auth short_token = { .token = "short" };
        r = mp_rpc_unary(c, "/modelprov.v1.Query/Hosts", &short_token, &req.base,
                         &modelprov__v1__hosts_response__descriptor, &resp, &st, &err);
        CHECK_EQ(r, -EINVAL);
        CHECK(strstr(err.reason, "too short"));
        const mp_rpc_auth bad_host = { .token = auth.token, .host_id = "host\nid" };
        r = mp_rpc_unary(c, "/modelprov.v1.Ingest/Heartbeat", &bad_host, &req.base,
                         &modelprov__v1__heartbeat_response__descriptor, &resp, &st, &err);
        CHECK_EQ(r, -EINVAL);
        CHECK(strstr(err.reason, "host id"));

        mp_rpc_stream *s = (mp_rpc_stream *) 1;
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_open(c, "/modelprov.v1.Ingest/Report", &short_token, 0, &s, &err), -EINVAL);

        /* A stream to nowhere fails at open with the transport's status. */
        s = NULL;
        mp_error_clear(&err);
        r = mp_rpc_stream_open(c, "/modelprov.v1.Ingest/Report", &auth, 0, &s, &err);
        CHECK_EQ(r, -EAGAIN);
        CHECK(!s);
        CHECK(mp_has_prefix(err.reason, "UNAVAILABLE: "));

        /* A stop request ends the retries at once. */
        stop = 1;
        mp_error_clear(&err);
        r = mp_rpc_unary(c, "/modelprov.v1.Query/Hosts", &auth, &req.base,
                         &modelprov__v1__hosts_response__descriptor, &resp, &st, &err);
        CHECK_EQ(r, -ECANCELED);
        CHECK_EQ(st.attempts, 1);
}

int main(void) {
        RUN(test_backoff_ceiling);
        RUN(test_backoff_jitter);
        RUN(test_retry_decide);
        RUN(test_status);
        RUN(test_targets);
        RUN(test_options);
        RUN(test_client_files);
        RUN(test_unreachable);
        return 0;
}
