/* fuzz_pickle.c - libFuzzer target for the PyTorch checkpoint readers: the
 * bytes go to the restricted pickle interpreter as a pickle, and to the torch
 * reader as a whole checkpoint (zip directory, data.pkl, storages). */
#include <stddef.h>
#include <stdint.h>

#include "formats/model.h"
#include "formats/pickle.h"
#include "formats/torch.h"
#include "util/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        mp_pickle_result r;
        mp_error err;

        if (mp_pickle_parse("fuzz", data, size, &r, &err) >= 0)
                mp_pickle_result_free(&r);

        mp_source src;
        mp_source_init_mem(&src, "fuzz", data, size);
        mp_model *m = mp_model_new(NULL);
        if (m) {
                (void) mp_torch_load(m, 0, &src, &err);
                mp_model_free(m);
        }
        return 0;
}
