/* torch.h - reader for PyTorch zip checkpoints (torch.save since 1.6).
 *
 * The zip holds ARCHIVE/data.pkl (the state dict as a pickle), ARCHIVE/data/N
 * (raw storages, stored uncompressed), ARCHIVE/byteorder, ARCHIVE/version.
 * data.pkl is read by the restricted interpreter in pickle.h, which never
 * imports or calls anything: it rebuilds tensor references from the known
 * torch._utils._rebuild_tensor_v2 / torch.*Storage globals and records every
 * other global as an MP_FINDING_UNSAFE_PICKLE with its opcode offset. */
#pragma once

#include "formats/model.h"
#include "util/source.h"

int mp_torch_load(mp_model *m, size_t file_index, const mp_source *src, mp_error *err);
