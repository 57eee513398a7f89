/* fuzz_collector.c - libFuzzer target: bytes are a request body for one of
 * the collector's methods, with valid credentials, as an authenticated but
 * hostile agent or query client sends it.  The first byte picks the method
 * (the Report stream gets the rest as one message); the handlers run on a
 * real SQLite store with one enrolled host.  Whatever the bytes, a handler
 * answers with a status and never crashes or leaks; a success reply must be
 * a message of the method's response type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/slice.h>

#include "collector/auth.h"
#include "collector/service.h"

#define ENROLL_SECRET "fuzz-enroll-secret-0123456789"
#define QUERY_TOKEN "fuzz-query-token-0123456789"
#define ADMIN_TOKEN "fuzz-admin-token-0123456789"

static collector_service service;
static service_ctx ctx;
static char host_id[MP_STORE_HOST_ID_SIZE];
static char host_key[AUTH_HOST_KEY_SIZE];

static void setup(void) {
        char dir[] = "/tmp/fuzz-collector-XXXXXX";
        if (!mkdtemp(dir))
                abort();
        static char url[64];
        snprintf(url, sizeof url, "sqlite:%s/store.db", dir);

        service = (collector_service) {
                .store_url = url,
                .secrets = {.enroll_secret = strdup(ENROLL_SECRET),
                            .query_token = strdup(QUERY_TOKEN),
                            .admin_token = strdup(ADMIN_TOKEN)},
                .stale_after_s = 900,
                .write_lock = PTHREAD_MUTEX_INITIALIZER,
        };
        void *p = NULL;
        if (service_thread_init(&service, &p, NULL) < 0)
                abort();
        ctx = *(service_ctx *) p;
        free(p);

        uint8_t hash[MP_STORE_DIGEST_SIZE];
        mp_host_info info = {.hostname = "fuzz", .machine_id = "fuzz-machine", .agent_version = "0"};
        if (auth_new_host_key(host_key, hash) < 0 || mp_store_enroll(ctx.store, &info, hash, host_id, NULL) < 0)
                abort();
}

/* The credentials method path needs, as a caller with the right ones. */
static void credentials(const char *path, grpc_metadata md[2], size_t *n, char *bearer, size_t size) {
        const char *token = strstr(path, ".Query/") ? QUERY_TOKEN
                            : strstr(path, "/Enroll") ? ENROLL_SECRET
                            : strstr(path, "/PushCatalog") ? ADMIN_TOKEN
                                                           : host_key;
        snprintf(bearer, size, "Bearer %s", token);
        md[0] = (grpc_metadata) {.key = grpc_slice_from_static_string("authorization"),
                                 .value = grpc_slice_from_static_string(bearer)};
        md[1] = (grpc_metadata) {.key = grpc_slice_from_static_string(AUTH_HOST_ID_HEADER),
                                 .value = grpc_slice_from_static_string(host_id)};
        *n = 2;
}

static void run(const rpc_method *m, const uint8_t *body, size_t len) {
        grpc_metadata md[2];
        char bearer[128];
        grpc_metadata_array array = {};
        credentials(m->path, md, &array.count, bearer, sizeof bearer);
        array.metadata = md;
        rpc_request req = {.thread_ctx = &ctx, .metadata = &array, .peer = "fuzz"};
        rpc_reply reply = {.code = GRPC_STATUS_OK};

        if (m->unary)
                m->unary(&req, body, len, &reply);
        else {
                void *state = NULL;
                m->stream->open(&req, &state, &reply);
                if (reply.code != GRPC_STATUS_OK)
                        abort();        /* the credentials are right */
                m->stream->message(&req, state, body, len, &reply);
                m->stream->close(state);
        }
        if (reply.code == GRPC_STATUS_UNAUTHENTICATED) {
                fprintf(stderr, "%s refused valid credentials: %s\n", m->path, reply.details);
                abort();
        }
        if (reply.code != GRPC_STATUS_OK && !reply.details[0])
                abort();                /* every failure says why */
        free(reply.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool ready;
        if (!ready) {
                setup();
                ready = true;
        }
        if (size < 1)
                return 0;

        size_t n = ingest_methods_count + query_methods_count;
        size_t i = data[0] % n;
        const rpc_method *m = i < ingest_methods_count ? &ingest_methods[i] : &query_methods[i - ingest_methods_count];
        run(m, data + 1, size - 1);
        return 0;
}
