/* roots.h - where models live on a host when the operator did not say.
 *
 * The usual caches: the Hugging Face hub cache ($HF_HUB_CACHE, else
 * $HF_HOME/hub, else ~/.cache/huggingface/hub of the agent's own user and
 * of every account in /etc/passwd whose home exists: inference servers run
 * as service users), Ollama's store ($OLLAMA_MODELS, the Linux service's
 * /usr/share/ollama/.ollama/models, ~/.ollama/models of each account),
 * /models and /opt/models.  Only the ones that exist are returned; the log
 * says which were found and watched. */
#pragma once

/* *ret: a NULL-terminated list of absolute, de-duplicated paths (free with
 * mp_strv_free()).  An empty list is not an error. */
int agent_roots_discover(char ***ret);

/* Whether path names something the agent must never read or follow even
 * inside a watched root: credentials that live in the same trees
 * ($HF_HOME/token, stored_tokens, Ollama's id_ed25519 keys). */
#include <stdbool.h>
bool agent_path_is_secret(const char *path);
