/* agent_state_fixture.c - writes an agent state DB as modelprovd would
 * leave it, for tests/integration/test_cli_status.py: enrolled (with a host
 * key that `modelprov status` must never print), two watch roots (one
 * missing), one model fingerprinted from a generated safetensors file with
 * a finding, a finding about a file that is no model, one event
 * acknowledged and the rest pending, a last contact and a last error.
 *
 * usage: agent_state_fixture STATE_DB
 * Prints one JSON object: the model's root and digest, the host id and key,
 * and the counts the test expects. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/outbox.h"
#include "agent/state.h"
#include "fingerprint/compute.h"
#include "test.h"
#include "util/macro.h"
#include "util/strutil.h"

#define HOST_ID "6f1f2a3e-1b9c-4a53-9c1e-5b8f3d2e7a10"
#define HOST_KEY "c0ffee5ec2e7h0s7key000111222333444555666777888999aaabbbcccdddeee"

static char *write_model_file(void) {
        test_buf h = {0}, d = {0};
        const char *hdr = "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[16,8],"
                          "\"data_offsets\":[0,512]}";
        put(&h, hdr, strlen(hdr));
        for (uint64_t i = 0; i < 128; i++) {
                float v = test_value(7, 0, i);
                put(&d, &v, 4);
        }
        return test_write_safetensors(&h, &d);
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: agent_state_fixture STATE_DB\n");
                return 2;
        }
        mp_error err = {0};
        int64_t now = now_ms();

        _cleanup_(freep) char *file = write_model_file();
        _cleanup_(mp_model_freep) mp_model *m = NULL;
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        CHECK(mp_model_open(file, NULL, &m, &err) >= 0);
        CHECK(mp_model_add_finding(m, MP_FINDING_SUSPICIOUS, m->files[0].path, -1, "unexpected tensor layout") >= 0);
        CHECK(mp_fingerprint_compute(m, NULL, &fp, &err) >= 0);
        agent_file_stat fs;
        struct stat st;
        CHECK(stat(m->files[0].path, &st) == 0);
        agent_file_stat_from(&fs, &st);

        char *root = strdup(m->files[0].path);
        CHECK(root);
        *strrchr(root, '/') = '\0';

        agent_state *s = NULL;
        CHECK(agent_state_open(argv[1], &s, &err) >= 0);
        CHECK(agent_state_set_meta(s, AGENT_META_HOST_ID, HOST_ID) >= 0);
        CHECK(agent_state_set_meta(s, AGENT_META_HOST_KEY, HOST_KEY) >= 0);
        CHECK(agent_state_set_meta(s, AGENT_META_COLLECTOR, "collector.example:7443") >= 0);
        CHECK(agent_state_set_meta(s, AGENT_META_AGENT_VERSION, "0.1.0") >= 0);
        const char *roots[] = { root, "/nonexistent/models", NULL };
        const bool exists[] = { true, false };
        CHECK(agent_state_set_roots(s, roots, exists) >= 0);

        agent_model_result res = {
                .root = root, .model = m, .fingerprint = fp, .file_stats = &fs, .observed_at = now - 60000,
        };
        int kind;
        CHECK(agent_state_commit_model(s, &res, &kind, &err) >= 0 && kind == AGENT_MODEL_ADDED);
        CHECK(agent_state_add_finding(s, "/models/evil/pytorch_model.bin", MP_FINDING_UNSAFE_PICKLE,
                                      "global os.system", now - 30000, &err) == 1);

        /* The model event was delivered; the two findings wait. */
        ModelprovV1__ReportBatch *b = NULL;
        CHECK(agent_outbox_next_batch(s, 1, SIZE_MAX, &b, &err) >= 0 && b->n_events == 1);
        agent_outbox_batch_free(b);
        CHECK(agent_outbox_ack(s, 1, now - 42000) >= 0);
        CHECK(agent_state_set_meta(s, AGENT_META_LAST_ERROR, "collector unreachable: connection refused") >= 0);
        CHECK(agent_state_set_meta_u64(s, AGENT_META_LAST_ERROR_AT, (uint64_t) (now - 5000)) >= 0);

        uint64_t pending, bytes;
        CHECK(agent_outbox_pending(s, &pending, &bytes) >= 0);
        agent_state_close(s);

        char hex[65];
        mp_hex(fp->model_digest.data, 32, hex);
        printf("{\"root\": \"%s\", \"digest\": \"%s\", \"name\": \"%s\", \"host_id\": \"%s\", \"host_key\": \"%s\","
               " \"pending\": %llu, \"pending_bytes\": %llu, \"findings\": 2, \"model_file\": \"%s\"}\n",
               root, hex, m->name, HOST_ID, HOST_KEY, (unsigned long long) pending, (unsigned long long) bytes,
               m->files[0].path);
        free(root);
        return 0;
}
