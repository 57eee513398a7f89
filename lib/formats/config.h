/* config.h - config.json (Hugging Face) to mp_arch. */
#pragma once

#include <jansson.h>

#include "formats/model.h"

/* Parses buf as config.json, stores the JSON in m->config and fills m->arch
 * (text_config of multimodal configs is used when the top level lacks the
 * fields; GPT-2 names n_embd/n_layer/n_head/n_positions are understood). */
int mp_config_load(mp_model *m, const char *label, const char *buf, size_t len, mp_error *err);

/* Fills arch from an already parsed config object. */
int mp_arch_from_config(mp_arch *arch, const json_t *config);
void mp_arch_clear(mp_arch *arch);
