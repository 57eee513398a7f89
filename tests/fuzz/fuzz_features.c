/* fuzz_features.c - libFuzzer target: bytes are a reference-project feature
 * bundle (or any JSON), as `catalog import` reads them from a directory
 * someone else wrote.  Its "mfi" and "tfv" objects (or the document itself)
 * go through the hashes, the similarities and the size estimate. */
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "catalog/param_bucket.h"
#include "signals/mfi.h"
#include "signals/tfv.h"

static const char reference_mfi[] =
        "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 4096,"
        " \"num_hidden_layers\": 32, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
        " \"intermediate_size\": 14336, \"vocab_size\": 128256, \"max_position_embeddings\": 131072,"
        " \"rope_theta\": 500000.0, \"bos_token_id\": 128000, \"eos_token_id\": 128009,"
        " \"attention_style\": \"GQA\", \"norm_type\": \"RMSNorm\", \"qk_norm\": false,"
        " \"arch_hash\": \"x\", \"family_hash\": \"y\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static json_t *ref;
        if (!ref && !(ref = json_loads(reference_mfi, 0, NULL)))
                abort();

        json_t *doc = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
        if (!doc)
                return 0;
        json_t *mfi = json_object_get(doc, "mfi"), *tfv = json_object_get(doc, "tfv");
        if (!mfi)
                mfi = doc;
        if (!tfv)
                tfv = doc;

        int tier;
        (void) mp_mfi_similarity(mfi, mfi, &tier);
        (void) mp_mfi_similarity(mfi, ref, &tier);
        (void) mp_mfi_similarity(ref, mfi, &tier);
        (void) mp_tfv_similarity(tfv, tfv);
        (void) mp_tfv_similarity(tfv, ref);
        char arch[65], family[65];
        (void) mp_mfi_hashes(mfi, arch, family);
        uint64_t params;
        (void) mp_param_estimate_mfi(mfi, &params);
        json_decref(doc);
        return 0;
}
