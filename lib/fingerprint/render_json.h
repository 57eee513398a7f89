/* render_json.h - the fingerprint record as JSON for people and scripts.
 * Digests are lowercase hex; field names follow proto/modelprov.proto. */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "fingerprint/record.h"

json_t *mp_fingerprint_to_json(const mp_fingerprint *fp);
