/* fuzz_record.c - libFuzzer target: bytes are a fingerprint record as a
 * catalog or a peer would hand it over.  Whatever unpacks must survive
 * compare (with itself and with an empty record), diff and JSON rendering:
 * records are untrusted input to `compare`, `scan` and the collector. */
#include <stdint.h>
#include <stdlib.h>

#include "compare/compare.h"
#include "compare/diff.h"
#include "fingerprint/record.h"
#include "fingerprint/render_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        mp_fingerprint *fp = NULL;
        mp_error err;
        mp_error_clear(&err);
        if (mp_fingerprint_unpack("fuzz", data, size, &fp, &err) < 0)
                return 0;

        mp_fingerprint *empty = NULL;
        static const uint8_t minimal[] = { 0x08, 0x01 };        /* record_version = 1 */
        if (mp_fingerprint_unpack("empty", minimal, sizeof(minimal), &empty, &err) < 0)
                abort();

        mp_comparison c;
        if (mp_compare(fp, fp, NULL, &c) == 0)
                json_decref(mp_comparison_to_json(&c));
        if (mp_compare(fp, empty, NULL, &c) == 0)
                json_decref(mp_comparison_to_json(&c));
        if (mp_compare(empty, fp, NULL, &c) == 0)
                json_decref(mp_comparison_to_json(&c));

        mp_diff d;
        if (mp_diff_records(fp, empty, &d) == 0) {
                json_decref(mp_diff_to_json(&d));
                mp_diff_free(&d);
        }
        json_decref(mp_fingerprint_to_json(fp));
        mp_fingerprint_free(empty);
        mp_fingerprint_free(fp);
        return 0;
}
