/* import_pk.h - `catalog import`: the reference project's database layout
 * (model-provenance-kit's seed database) into a modelprov catalog.
 *
 * DIR/catalog/manifest.json lists shards; each shard (catalog/by-family/
 * FAMILY.json) has a family record and assets; each asset names its feature
 * bundle (features/base/by-family/FAMILY/ASSET_features.json) whose "mfi"
 * and "tfv" objects become the record's Signals.mfi_json and tfv_json.  All
 * paths are relative to DIR, and one that leads outside DIR (absolute, "..",
 * a symlink out) is refused: the directory may come from anyone.
 *
 * The records carry metadata and tokenizer features only (has_weights is
 * false), so scans against them are at most Weak Match.  Entries are stored
 * with source "provenancekit", labels family= and publisher=, the catalog's
 * own size bucket, and replace earlier imports of the same name (importing
 * twice changes nothing); an entry of the same name added locally is kept
 * and the asset skipped. */
#pragma once

#include <stddef.h>

#include "catalog/catalog.h"

/* Limits on the files of an imported database. */
#define MP_PK_JSON_MAX (16u * 1024 * 1024)      /* bytes of one manifest, shard or feature file */
#define MP_PK_SHARDS_MAX 10000
#define MP_PK_ASSETS_MAX 100000                 /* per shard */

typedef struct mp_import_stats {
        size_t imported;        /* entries written */
        size_t skipped;         /* assets not imported, plus shards that could not be read */
} mp_import_stats;

/* Told about each skipped asset or shard: what (an asset id or a path) and
 * why, in plain words.  Strings are printable (control characters replaced). */
typedef void (*mp_import_skip_cb)(const char *what, const char *reason, void *userdata);

/* Imports dir into c, in one transaction.  Fails (and writes nothing) when
 * the manifest cannot be read or is not a manifest; a bad shard or asset is
 * only skipped.  skip may be NULL. */
int mp_catalog_import_pk(mp_catalog *c, const char *dir, mp_import_skip_cb skip, void *userdata,
                         mp_import_stats *stats, mp_error *err);
