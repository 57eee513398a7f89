/* ollama.h - Ollama model store.
 *
 *   <store>/manifests/<registry>/<namespace>/<model>/<tag>   JSON manifest
 *   <store>/blobs/sha256-<64 hex>                            content-addressed
 * The manifest's layers name blobs by digest "sha256:<hex>"; the layer with
 * mediaType application/vnd.ollama.image.model is a GGUF. */
#pragma once

#include <stdbool.h>

#include "formats/model.h"

/* True if path is a manifest file inside a store (…/manifests/…). */
bool mp_ollama_detect(const char *path);

/* Resolves "NAME[:TAG]" (NAME may be "ns/model" or "registry/ns/model";
 * defaults registry.ollama.ai, library, latest) in store, or, when store is
 * NULL, in $OLLAMA_MODELS, ~/.ollama/models, /usr/share/ollama/.ollama/models
 * and /var/lib/ollama/.ollama/models (first that has it).  Writes the
 * manifest path to *ret (malloc'd). */
int mp_ollama_resolve_name(const char *store, const char *name, char **ret, mp_error *err);

/* Parses the manifest at manifest_path and adds the manifest and every layer
 * blob (rel_path = the layer's media type short name, e.g. "model",
 * "template"; expected digest from the layer) to m.  Sets m->name
 * ("model:tag"), m->revision (tag), m->layout. */
int mp_ollama_collect(mp_model *m, const char *manifest_path, mp_error *err);
