/* group.h - which model a changed path belongs to.
 *
 * The agent fingerprints models, not files.  A model is:
 *   - a hub snapshot (models--ORG--NAME/snapshots/REV): a change of one of
 *     its links means that snapshot; a change in the repo's blobs/ or refs/
 *     means every snapshot of the repo (a blob arrives before its link);
 *   - an Ollama manifest (STORE/manifests/HOST/NS/MODEL/TAG): a blob change
 *     in STORE/blobs means every manifest of the store;
 *   - a directory holding config.json (or a safetensors index): any model
 *     file below it, up to the watch root;
 *   - otherwise a single weight file (GGUF, safetensors, PyTorch) on its own.
 * Paths need not exist any more (removals are grouped the same way). */
#pragma once

#include <stddef.h>

/* Appends the model roots affected by a change of path (inside watch_root)
 * to *roots (a NULL-terminated list, see daemon/options.h mp_strv_free),
 * without duplicates.  Paths that are not model material add nothing.
 * Returns the number added, or -ENOMEM. */
int agent_group_roots(const char *watch_root, const char *path, char ***roots);
