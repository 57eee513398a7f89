/* fuzz_layouts.c - libFuzzer target: bytes become an Ollama manifest (mode 0),
 * an Ollama name (mode 1), a hub refs/main (mode 2) or a snapshot stub file
 * (mode 3) inside a fixed fixture under $TMPDIR, then are collected. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/hub.h"
#include "formats/ollama.h"

static char base[256];

static void put(const char *rel, const void *buf, size_t len) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", base, rel);
        FILE *f = fopen(p, "wb");
        if (!f) abort();
        if (len) fwrite(buf, 1, len, f);
        fclose(f);
}

static void setup(void) {
        snprintf(base, sizeof base, "/tmp/fuzz-layouts-%d", (int) getpid());
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "mkdir -p %s/store/blobs %s/store/manifests/registry.ollama.ai/library/m "
                 "%s/models--o--n/blobs %s/models--o--n/refs %s/models--o--n/snapshots/0123456789abcdef0123456789abcdef01234567",
                 base, base, base, base, base);
        if (system(cmd) != 0) abort();
        /* blobs whose digests a fuzzer can find in the seeds */
        put("store/blobs/sha256-0000000000000000000000000000000000000000000000000000000000000000", "GGUF", 4);
        put("store/blobs/sha256-1111111111111111111111111111111111111111111111111111111111111111", "tmpl", 4);
        put("models--o--n/blobs/0000000000000000000000000000000000000000000000000000000000000000", "x", 1);
        put("models--o--n/refs/main", "0123456789abcdef0123456789abcdef01234567", 40);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!base[0])
                setup();
        if (size < 1)
                return 0;
        int mode = data[0] & 3;
        data++, size--;

        mp_model *m = mp_model_new("fuzz");
        mp_error err;
        char path[512];
        if (mode == 0) {
                put("store/manifests/registry.ollama.ai/library/m/t", data, size);
                snprintf(path, sizeof path, "%s/store/manifests/registry.ollama.ai/library/m/t", base);
                (void) mp_ollama_collect(m, path, &err);
        } else if (mode == 1) {
                char *name = strndup((const char *) data, size);
                char *r = NULL;
                snprintf(path, sizeof path, "%s/store", base);
                if (mp_ollama_resolve_name(path, name, &r, &err) >= 0) {
                        (void) mp_ollama_collect(m, r, &err);
                        free(r);
                }
                free(name);
        } else if (mode == 2) {
                put("models--o--n/refs/main", data, size);
                snprintf(path, sizeof path, "%s/models--o--n", base);
                (void) mp_hub_collect(m, path, &err);
                put("models--o--n/refs/main", "0123456789abcdef0123456789abcdef01234567", 40);
        } else {
                put("models--o--n/snapshots/0123456789abcdef0123456789abcdef01234567/model.safetensors", data, size);
                snprintf(path, sizeof path, "%s/models--o--n", base);
                (void) mp_hub_collect(m, path, &err);
        }
        mp_model_free(m);
        return 0;
}
