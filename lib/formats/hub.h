/* hub.h - Hugging Face hub cache layout.
 *
 *   models--ORG--NAME/refs/main            -> 40-hex commit
 *   models--ORG--NAME/snapshots/<rev>/FILE -> ../../blobs/<blobname> (symlink)
 *   models--ORG--NAME/blobs/<sha256 hex>   LFS files (weights)
 *   models--ORG--NAME/blobs/<sha1 hex>     small git files (git blob SHA-1)
 *   models--ORG--NAME/blobs/NAME.incomplete downloads in progress
 */
#pragma once

#include <stdbool.h>

#include "formats/model.h"

/* True if path is a hub repo dir (models--*) or a snapshot dir inside one. */
bool mp_hub_detect(const char *path);

/* Resolves path (repo dir: refs/main, or the only/newest snapshot; or a
 * snapshot dir) and adds the snapshot's model files to m, each pointing at
 * its blob, with rel_path = the file's path inside the snapshot and the
 * expected digest taken from the blob name.  A snapshot link that leaves the
 * repo's blobs/ dir, or dangles, is a finding and is skipped.  Sets m->name
 * ("ORG/NAME"), m->revision, m->layout. */
int mp_hub_collect(mp_model *m, const char *path, mp_error *err);
