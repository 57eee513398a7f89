/* client.c - the collector client on gRPC core's C API (client.h): targets
 * and options, the channel, unary calls with retries, and the call plumbing
 * that stream.c shares (internal.h).
 *
 * Every call gets its own pluck completion queue: pluck lets a thread wait
 * for exactly its own batch, and separate queues make concurrent calls on
 * one client independent.  Waits are sliced (WAIT_SLICE_MS) so that a stop
 * flag set by a signal handler is seen promptly; a wait that gives up
 * cancels the call and still collects its batch, because core completes
 * every batch it accepted and the memory it writes into must outlive it. */
#include "rpc/client.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/status.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <openssl/crypto.h>

#include "rpc/internal.h"
#include "util/address.h"
#include "util/macro.h"
#include "util/secret.h"
#include "util/strutil.h"

#define WAIT_SLICE_MS 100
#define PEM_MAX (1024 * 1024)
#define HOST_ID_MAX 128

/* Our codes are gRPC's: the CLI and tests compare against them. */
_Static_assert(MP_RPC_UNAUTHENTICATED == (int) GRPC_STATUS_UNAUTHENTICATED, "status codes");
_Static_assert(MP_RPC_UNAVAILABLE == (int) GRPC_STATUS_UNAVAILABLE, "status codes");
_Static_assert(MP_RPC_DATA_LOSS == (int) GRPC_STATUS_DATA_LOSS, "status codes");

/* ---- gRPC setup and logging ---------------------------------------------- */

bool rpc_debug;

/* Core logs connection trouble itself ("Handshake failed", "Connection
 * refused"); the call's status says the same to the one who can act on it,
 * so the lines are only wanted when debugging. */
static void log_sink(gpr_log_func_args *args) {
        if (!rpc_debug)
                return;
        char buf[1024];
        fprintf(stderr, "modelprov: grpc %s: %s:%d: %s\n", gpr_log_severity_string(args->severity),
                mp_base_name(args->file ? args->file : "?"), args->line,
                mp_printable(buf, sizeof(buf), args->message ? args->message : ""));
}

static void setup_logging(void) {
        const char *e = getenv("MODELPROV_DEBUG");
        rpc_debug = e && e[0] && strcmp(e, "0") != 0;
        gpr_set_log_function(log_sink);
}

static void rpc_init(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, setup_logging);
        grpc_init();
}

/* ---- targets and options ------------------------------------------------- */

/* Checks that target is "HOST:PORT", "[V6]:PORT" (port 1..65535) or
 * "unix:PATH", printable and without blanks.  -EINVAL with a reason. */
static int target_check(const char *target, mp_error *err) {
        char buf[128], host[MP_RPC_TARGET_MAX + 1];
        unsigned port;
        size_t n = strlen(target);

        if (n == 0 || n > MP_RPC_TARGET_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "collector address must be 1 to %d characters",
                                    MP_RPC_TARGET_MAX);
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) target[i] <= 0x20 || target[i] == 0x7f)
                        return mp_error_set(err, -EINVAL, NULL, -1,
                                            "collector address '%s' holds a blank or control character",
                                            mp_printable(buf, sizeof(buf), target));
        if (mp_has_prefix(target, "unix:"))
                return target[strlen("unix:")] ? 0 : mp_error_set(err, -EINVAL, NULL, -1,
                                                                  "collector address '%s' names no socket", target);
        if (mp_address_split(target, host, sizeof(host), &port) < 0)
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "collector address '%s' is not HOST:PORT (IPv6: [ADDRESS]:PORT)",
                                    mp_printable(buf, sizeof(buf), target));
        if (port == 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "collector address '%s' needs a port from 1 to 65535",
                                    mp_printable(buf, sizeof(buf), target));
        return 0;
}

int mp_rpc_options_check(const mp_rpc_options *o, mp_error *err) {
        assert(o);
        if (!o->target)
                return mp_error_set(err, -EINVAL, NULL, -1, "no collector address given");
        int r = target_check(o->target, err);
        if (r < 0)
                return r;

        if (o->insecure_loopback) {
                if (!mp_address_is_loopback(o->target))
                        return mp_error_set(err, -EINVAL, NULL, -1,
                                            "plaintext is only allowed to a loopback collector "
                                            "(127.0.0.0/8, ::1, localhost), not to '%s': use TLS",
                                            o->target);
                if (o->ca_file || o->cert_file || o->key_file || o->server_name)
                        return mp_error_set(err, -EINVAL, NULL, -1,
                                            "a CA file, client certificate or server name needs TLS, "
                                            "not plaintext");
        }
        if (!o->cert_file != !o->key_file)
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "a client certificate needs both the certificate and its key");
        if (o->server_name && (!o->server_name[0] || strlen(o->server_name) > 253))
                return mp_error_set(err, -EINVAL, NULL, -1, "server name must be 1 to 253 characters");
        if (o->deadline_ms < 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "deadline must not be negative");
        if (o->keepalive_timeout_ms < 0 || o->keepalive_ms > INT_MAX || o->keepalive_timeout_ms > INT_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "keepalive times must be 0 to %d ms", INT_MAX);
        if (o->max_receive_bytes < 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "receive limit must not be negative");
        return 0;
}

/* ---- client -------------------------------------------------------------- */

/* Reads a whole PEM file into a NUL-terminated buffer (what core takes). */
static int read_pem(const char *path, const char *what, char **ret, mp_error *err) {
        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;

        if (fd < 0)
                return mp_error_set(err, -errno, path, -1, "cannot open %s: %s", what, strerror(errno));
        if (fstat(fd, &st) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot stat %s: %s", what, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EINVAL, path, -1, "%s is not a regular file", what);
        if (st.st_size <= 0 || st.st_size > PEM_MAX)
                return mp_error_set(err, -EBADMSG, path, -1, "%s must be a PEM file of 1 byte to %d KiB", what,
                                    PEM_MAX / 1024);

        size_t n = (size_t) st.st_size, got = 0;
        _cleanup_(freep) char *buf = malloc(n + 1);
        if (!buf)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        while (got < n) {
                ssize_t k = read(fd, buf + got, n - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return mp_error_set(err, -errno, path, -1, "cannot read %s: %s", what, strerror(errno));
                if (k == 0)
                        break;
                got += (size_t) k;
        }
        buf[got] = 0;
        if (memchr(buf, 0, got) || !strstr(buf, "-----BEGIN "))
                return mp_error_set(err, -EBADMSG, path, -1, "%s is not a PEM file", what);
        *ret = TAKE_PTR(buf);
        return 0;
}

static void free_secret_pem(char *pem) {
        if (pem)
                OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
}

static int tls_credentials(const mp_rpc_options *o, grpc_channel_credentials **ret, mp_error *err) {
        _cleanup_(freep) char *ca = NULL, *cert = NULL;
        char *key = NULL;
        int r;

        if (o->ca_file && (r = read_pem(o->ca_file, "CA file", &ca, err)) < 0)
                return r;
        if (o->cert_file && (r = read_pem(o->cert_file, "client certificate", &cert, err)) < 0)
                return r;
        if (o->key_file && (r = read_pem(o->key_file, "client key", &key, err)) < 0)
                return r;

        /* Core copies the PEM strings into the credentials. */
        grpc_ssl_pem_key_cert_pair pair = { .private_key = key, .cert_chain = cert };
        *ret = grpc_ssl_credentials_create(ca, key ? &pair : NULL, NULL, NULL);
        free_secret_pem(key);
        if (!*ret)
                return mp_error_set(err, -EINVAL, NULL, -1, "gRPC refused the TLS settings");
        return 0;
}

static void arg_int(grpc_arg *a, const char *key, int64_t v) {
        *a = (grpc_arg) { .type = GRPC_ARG_INTEGER, .key = (char *) key };
        a->value.integer = v > INT_MAX ? INT_MAX : (int) v;
}

static void arg_string(grpc_arg *a, const char *key, const char *v) {
        *a = (grpc_arg) { .type = GRPC_ARG_STRING, .key = (char *) key };
        a->value.string = (char *) v;
}

int mp_rpc_client_new(const mp_rpc_options *o, mp_rpc_client **ret, mp_error *err) {
        assert(o);
        assert(ret);

        int r = mp_rpc_options_check(o, err);
        if (r < 0)
                return r;

        _cleanup_(mp_rpc_client_freep) mp_rpc_client *c = calloc(1, sizeof(*c));
        if (!c)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        c->tls = !o->insecure_loopback;
        c->deadline_ms = o->deadline_ms > 0 ? o->deadline_ms : MP_RPC_DEFAULT_DEADLINE_MS;
        c->retry = o->retry;
        c->stop = o->stop;
        c->target = strdup(o->target);
        if (!c->target || asprintf(&c->label, "collector %s", o->target) < 0) {
                c->label = NULL;
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }

        rpc_init();
        c->grpc_ref = true;
        grpc_channel_credentials *creds = NULL;
        if (c->tls)
                r = tls_credentials(o, &creds, err);
        else
                creds = grpc_insecure_credentials_create();
        if (r < 0)
                return r;

        /* The channel's own reconnect backoff follows ours: with calls that
         * fail fast, a channel still waiting out gRPC's default 1 s..120 s
         * would fail every retry we make in the meantime. */
        mp_backoff b = o->retry.backoff;
        grpc_arg args[10];
        size_t n = 0;
        arg_int(&args[n++], GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                o->max_receive_bytes > 0 ? o->max_receive_bytes : -1);
        arg_int(&args[n++], GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, mp_backoff_ceiling_ms(&b, 0));
        arg_int(&args[n++], GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, mp_backoff_ceiling_ms(&b, UINT_MAX));
        /* Retries are ours (backoff.h), not core's hidden ones. */
        arg_int(&args[n++], GRPC_ARG_ENABLE_RETRIES, 0);
        arg_string(&args[n++], GRPC_ARG_PRIMARY_USER_AGENT_STRING, "modelprov/" MODELPROV_VERSION);
        if (o->keepalive_ms >= 0) {
                arg_int(&args[n++], GRPC_ARG_KEEPALIVE_TIME_MS,
                        o->keepalive_ms > 0 ? o->keepalive_ms : MP_RPC_DEFAULT_KEEPALIVE_MS);
                arg_int(&args[n++], GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                        o->keepalive_timeout_ms > 0 ? o->keepalive_timeout_ms : MP_RPC_DEFAULT_KEEPALIVE_TIMEOUT_MS);
                /* A Report stream may sit idle for hours: keep pinging. */
                arg_int(&args[n++], GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
        }
        if (o->server_name)
                arg_string(&args[n++], GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, o->server_name);
        assert(n <= ELEMENTSOF(args));
        grpc_channel_args cargs = { .num_args = n, .args = args };

        c->channel = grpc_channel_create(c->target, creds, &cargs);
        grpc_channel_credentials_release(creds);
        if (!c->channel)
                return mp_error_set(err, -EINVAL, NULL, -1, "gRPC refused the collector address '%s'", o->target);
        *ret = TAKE_PTR(c);
        return 0;
}

void mp_rpc_client_free(mp_rpc_client *c) {
        if (!c)
                return;
        if (c->channel)
                grpc_channel_destroy(c->channel);
        free(c->target);
        free(c->label);
        if (c->grpc_ref)
                grpc_shutdown();
        free(c);
}

const char *mp_rpc_client_target(const mp_rpc_client *c) {
        assert(c);
        return c->target;
}

/* ---- waiting ------------------------------------------------------------- */

int64_t rpc_now_ms(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

gpr_timespec rpc_after_ms(int64_t ms) {
        return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static bool stopped(const mp_rpc_client *c) {
        return c->stop && *c->stop;
}

int rpc_wait_tag(const mp_rpc_client *c, grpc_completion_queue *cq, grpc_call *call, void *tag,
                    int64_t timeout_ms, bool *ret_success) {
        int64_t end = timeout_ms < 0 ? INT64_MAX : rpc_now_ms(CLOCK_MONOTONIC) + timeout_ms;
        int r = 0;

        for (;;) {
                grpc_event ev = grpc_completion_queue_pluck(cq, tag, r < 0 ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                                                          : rpc_after_ms(WAIT_SLICE_MS),
                                                            NULL);
                if (ev.type == GRPC_OP_COMPLETE) {
                        *ret_success = ev.success;
                        return r;
                }
                /* Only our own tags go to this queue and it is shut down
                 * only at the end, so anything else is a timeout slice. */
                assert(ev.type == GRPC_QUEUE_TIMEOUT);
                if (r < 0)
                        continue;
                if (stopped(c)) {
                        grpc_call_cancel(call, NULL);
                        r = -ECANCELED;
                } else if (rpc_now_ms(CLOCK_MONOTONIC) >= end) {
                        grpc_call_cancel_with_status(call, GRPC_STATUS_DEADLINE_EXCEEDED,
                                                     "no answer from the collector in time", NULL);
                        r = -ETIMEDOUT;
                }
        }
}

/* Sleeps ms unless the stop flag is set first; -ECANCELED then. */
static int sleep_ms(const mp_rpc_client *c, int64_t ms) {
        int64_t end = rpc_now_ms(CLOCK_MONOTONIC) + ms;
        for (;;) {
                if (stopped(c))
                        return -ECANCELED;
                int64_t left = end - rpc_now_ms(CLOCK_MONOTONIC);
                if (left <= 0)
                        return 0;
                if (left > WAIT_SLICE_MS)
                        left = WAIT_SLICE_MS;
                nanosleep(&(struct timespec) { .tv_sec = 0, .tv_nsec = left * 1000000 }, NULL);
        }
}

void rpc_drain_and_destroy_cq(grpc_completion_queue *cq) {
        if (!cq)
                return;
        grpc_completion_queue_shutdown(cq);
        while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(cq);
}

/* ---- metadata, messages, status ------------------------------------------ */

void rpc_metadata_done(rpc_metadata *m) {
        for (size_t i = 0; i < m->n; i++)
                grpc_slice_unref(m->md[i].value);
        m->n = 0;
}

static bool host_id_valid(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= HOST_ID_MAX && strspn(s, "0123456789abcdefABCDEF-") == n;
}

int rpc_metadata_build(const mp_rpc_client *c, const mp_rpc_auth *auth, rpc_metadata *m, mp_error *err) {
        *m = (rpc_metadata) {0};
        if (!auth)
                return 0;
        if (auth->token) {
                mp_error e = {0};
                if (mp_secret_check(auth->token, "token", &e) < 0)
                        return mp_error_set(err, -EINVAL, c->label, -1, "%s", e.reason);
                _cleanup_(freep) char *v = NULL;
                if (asprintf(&v, "Bearer %s", auth->token) < 0)
                        return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
                m->md[m->n].key = grpc_slice_from_static_string("authorization");
                m->md[m->n++].value = grpc_slice_from_copied_string(v);
                OPENSSL_cleanse(v, strlen(v));
        }
        if (auth->host_id) {
                if (!host_id_valid(auth->host_id)) {
                        rpc_metadata_done(m);
                        return mp_error_set(err, -EINVAL, c->label, -1,
                                            "host id must be 1 to %d hex digits and dashes", HOST_ID_MAX);
                }
                m->md[m->n].key = grpc_slice_from_static_string("modelprov-host-id");
                m->md[m->n++].value = grpc_slice_from_copied_string(auth->host_id);
        }
        return 0;
}

/* Packs msg into a slice (shared by every attempt of a call). */
int rpc_pack_message(const mp_rpc_client *c, const ProtobufCMessage *msg, grpc_slice *ret, mp_error *err) {
        size_t n = protobuf_c_message_get_packed_size(msg);
        if (n > INT_MAX)
                return mp_error_set(err, -E2BIG, c->label, -1, "request of %zu bytes is too large to send", n);
        grpc_slice s = grpc_slice_malloc(n);
        protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
        *ret = s;
        return 0;
}

int rpc_unpack_message(const mp_rpc_client *c, grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *type,
                          ProtobufCMessage **ret, mp_error *err) {
        grpc_byte_buffer_reader reader;
        if (!grpc_byte_buffer_reader_init(&reader, bb))
                return mp_error_set(err, -EBADMSG, c->label, -1, "cannot read the %s it sent", type->short_name);
        grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
        grpc_byte_buffer_reader_destroy(&reader);

        /* unpack() copies strings and bytes: the slice can go at once. */
        ProtobufCMessage *m = protobuf_c_message_unpack(type, NULL, GRPC_SLICE_LENGTH(all),
                                                        GRPC_SLICE_START_PTR(all));
        size_t n = GRPC_SLICE_LENGTH(all);
        grpc_slice_unref(all);
        if (!m)
                return mp_error_set(err, -EBADMSG, c->label, -1, "the %s it sent (%zu bytes) does not parse",
                                    type->short_name, n);
        *ret = m;
        return 0;
}

void rpc_status_fill(const mp_rpc_client *c, mp_rpc_status *st, grpc_status_code code, grpc_slice details,
                     const char *debug) {
        char *d = grpc_slice_to_c_string(details);
        mp_printable(st->details, sizeof(st->details), d && d[0] ? d : debug && code != GRPC_STATUS_OK ? debug : "");
        gpr_free(d);
        st->code = (mp_rpc_code) code;
        /* With mutual TLS a refused or missing client certificate is
         * UNAVAILABLE, like an unreachable collector; the words tell them
         * apart (status.h). */
        st->tls_failure = c->tls && code == GRPC_STATUS_UNAVAILABLE &&
                          (mp_rpc_text_is_tls_failure(st->details) || mp_rpc_text_is_tls_failure(debug) ||
                           mp_rpc_text_is_closed_at_connect(st->details));
        if (debug && rpc_debug && code != GRPC_STATUS_OK)
                fprintf(stderr, "modelprov: grpc: %s: %s\n", c->label, debug);
}

int rpc_status_error(const mp_rpc_client *c, const mp_rpc_status *st, mp_retry_verdict v, int64_t elapsed_ms,
                     mp_error *err) {
        const char *details = st->details[0] ? st->details : "no details";
        const char *name = mp_rpc_status_name(st->code);
        bool closed = mp_rpc_text_is_closed_at_connect(st->details);

        if (st->tls_failure && closed)
                return mp_error_set(err, -EPROTO, c->label, -1,
                                    "%s: %s; the collector closes TLS connections like this when it requires "
                                    "a client certificate and got none it trusts (not retried)",
                                    name, details);
        if (st->tls_failure)
                return mp_error_set(err, -EPROTO, c->label, -1,
                                    "%s: TLS handshake failed (%s); not retried: check the CA file, the "
                                    "collector's certificate name and the client certificate",
                                    name, details);
        if (v == MP_RETRY_EXHAUSTED && st->attempts > 1)
                return mp_error_set(err, mp_rpc_code_errno(st->code), c->label, -1,
                                    "%s: %s (gave up after %u attempts in %.1f s%s)", name, details, st->attempts,
                                    (double) elapsed_ms / 1000.0,
                                    !c->tls && closed ? "; does the collector expect TLS?" : "");
        return mp_error_set(err, mp_rpc_code_errno(st->code), c->label, -1, "%s: %s", name, details);
}

/* ---- unary --------------------------------------------------------------- */

/* One attempt: fills st and, on OK, *ret_bb with the answer.  Returns 0
 * (whatever the status) or a negative errno for a local failure. */
static int unary_attempt(mp_rpc_client *c, grpc_slice method, rpc_metadata *md, grpc_slice request,
                         grpc_byte_buffer **ret_bb, mp_rpc_status *st, mp_error *err) {
        grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
        grpc_call *call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL,
                                                   rpc_after_ms(c->deadline_ms), NULL);
        /* Each attempt sends its own buffer: core moves the slices out of
         * the one it sends. */
        grpc_byte_buffer *send = grpc_raw_byte_buffer_create(&request, 1);
        grpc_byte_buffer *recv = NULL;
        grpc_metadata_array initial, trailing;
        grpc_status_code code = GRPC_STATUS_UNKNOWN;
        grpc_slice details = grpc_empty_slice();
        const char *debug = NULL;

        grpc_metadata_array_init(&initial);
        grpc_metadata_array_init(&trailing);
        grpc_op ops[6];
        memset(ops, 0, sizeof(ops));
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[0].data.send_initial_metadata.count = md->n;
        ops[0].data.send_initial_metadata.metadata = md->md;
        ops[1].op = GRPC_OP_SEND_MESSAGE;
        ops[1].data.send_message.send_message = send;
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
        ops[4].op = GRPC_OP_RECV_MESSAGE;
        ops[4].data.recv_message.recv_message = &recv;
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
        ops[5].data.recv_status_on_client.status = &code;
        ops[5].data.recv_status_on_client.status_details = &details;
        ops[5].data.recv_status_on_client.error_string = &debug;

        int r = 0;
        char tag;
        grpc_call_error e = grpc_call_start_batch(call, ops, ELEMENTSOF(ops), &tag, NULL);
        if (e != GRPC_CALL_OK)
                r = mp_error_set(err, -EIO, c->label, -1, "gRPC refused the call: %s",
                                 grpc_call_error_to_string(e));
        else {
                bool success;
                /* The call's deadline bounds the wait; the slices only watch
                 * the stop flag. */
                r = rpc_wait_tag(c, cq, call, &tag, -1, &success);
                rpc_status_fill(c, st, code, details, debug);
                if (r == -ECANCELED)
                        r = mp_error_set(err, r, c->label, -1, "stopped before the collector answered");
                else if (code == GRPC_STATUS_OK)
                        *ret_bb = TAKE_PTR(recv);
        }

        gpr_free((void *) debug);
        grpc_slice_unref(details);
        grpc_byte_buffer_destroy(recv);
        grpc_byte_buffer_destroy(send);
        grpc_metadata_array_destroy(&initial);
        grpc_metadata_array_destroy(&trailing);
        grpc_call_unref(call);
        rpc_drain_and_destroy_cq(cq);
        return r;
}

int mp_rpc_unary(mp_rpc_client *c, const char *method, const mp_rpc_auth *auth,
                 const ProtobufCMessage *request, const ProtobufCMessageDescriptor *response_type,
                 ProtobufCMessage **ret_response, mp_rpc_status *status, mp_error *err) {
        assert(c);
        assert(method && method[0] == '/');
        assert(request);
        assert(response_type);
        assert(ret_response);

        mp_rpc_status st_local, *st = status ? status : &st_local;
        *st = (mp_rpc_status) { .code = MP_RPC_UNKNOWN };
        *ret_response = NULL;

        rpc_metadata md;
        int r = rpc_metadata_build(c, auth, &md, err);
        if (r < 0)
                return r;
        grpc_slice payload;
        r = rpc_pack_message(c, request, &payload, err);
        if (r < 0) {
                rpc_metadata_done(&md);
                return r;
        }
        grpc_slice method_slice = grpc_slice_from_copied_string(method);

        int64_t start = rpc_now_ms(CLOCK_MONOTONIC), elapsed = 0;
        unsigned tls_failures = 0;
        grpc_byte_buffer *bb = NULL;
        for (;;) {
                st->attempts++;
                r = unary_attempt(c, method_slice, &md, payload, &bb, st, err);
                if (r < 0)
                        break;
                if (st->code == MP_RPC_OK) {
                        r = bb ? rpc_unpack_message(c, bb, response_type, ret_response, err)
                               : mp_error_set(err, -EBADMSG, c->label, -1, "%s: OK but no %s", method,
                                              response_type->short_name);
                        break;
                }
                tls_failures += st->tls_failure;
                elapsed = rpc_now_ms(CLOCK_MONOTONIC) - start;
                int64_t delay;
                mp_retry_verdict v = mp_retry_decide(&c->retry, st->attempts, st->code, tls_failures, elapsed,
                                                     mp_backoff_random(), &delay);
                if (v != MP_RETRY_AGAIN) {
                        r = rpc_status_error(c, st, v, elapsed, err);
                        break;
                }
                if (rpc_debug)
                        fprintf(stderr, "modelprov: %s: %s: %s; retry %u in %lld ms\n", c->label,
                                mp_rpc_status_name(st->code), st->details, st->attempts,
                                (long long) delay);
                r = sleep_ms(c, delay);
                if (r < 0) {
                        r = mp_error_set(err, r, c->label, -1, "%s: %s (stopped while waiting to retry)",
                                         mp_rpc_status_name(st->code), st->details);
                        break;
                }
        }

        grpc_byte_buffer_destroy(bb);
        grpc_slice_unref(method_slice);
        grpc_slice_unref(payload);
        rpc_metadata_done(&md);
        return r;
}

