/* safetensors.h - reader for safetensors files and sharded indexes.
 *
 * Layout: u64 LE header length N, N bytes of JSON
 * {"name": {"dtype","shape","data_offsets":[b,e]}, "__metadata__": {str:str}},
 * then the data; data_offsets are relative to 8+N.  Tensors must lie inside
 * the file and must not overlap. */
#pragma once

#include "formats/model.h"
#include "util/source.h"

#define MP_SAFETENSORS_MAX_HEADER (100u * 1024 * 1024)

/* Parses src (m->files[file_index]) and appends its tensors to m (with
 * file_index) and its __metadata__ entries to m->metadata. */
int mp_safetensors_load(mp_model *m, size_t file_index, const mp_source *src, mp_error *err);

/* Parses model.safetensors.index.json: returns the distinct shard file names
 * of weight_map in first-seen order (strv, NULL-terminated).  Names that are
 * absolute, contain "..", or a '/' are rejected. */
int mp_safetensors_index_parse(const char *label, const char *buf, size_t len, char ***ret_shards,
                               mp_error *err);
