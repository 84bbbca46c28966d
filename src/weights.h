/* Internal: the weights of a Llama model by Hugging Face tensor name, loaded from a Hugging Face folder
 * (config.json + safetensors, possibly sharded) or from a llama2.c checkpoint (.bin, version 0 or 1),
 * which is expressed in Hugging Face form: names mapped (w1 → mlp.gate_proj, …) and the rows of wq/wk
 * permuted from llama2.c's adjacent-pair RoPE to Hugging Face's rotate_half (docs/formats.md).
 * Every tensor is float32: MAPPED (zero copy) where the file allows, else OWNED. */
#ifndef PISSA_WEIGHTS_H
#define PISSA_WEIGHTS_H

#include "internal.h"

typedef struct pissa__weights {
    pissa_llama_config cfg; /* for llama2.c: rms_norm_eps 1e-5, rope_theta 10000, model_type "llama" */
    size_t n;
    char **names;           /* (n) sorted Hugging Face names */
    pissa_tensor **tensors; /* (n) */
    char *config_json;      /* config.json text (HF source), or one synthesised for a llama2.c source */
} pissa__weights;

/* PATH is a directory (Hugging Face) or a regular file (llama2.c). Checks the config with
 * pissa_llama_config_check_supported and that every tensor the Llama forward needs is present with the
 * right shape (message names the tensor, the expected and the found shape). For a tied model there is no
 * "lm_head.weight": the head is "model.embed_tokens.weight". */
pissa_status pissa__weights_load(const char *path, pissa__weights *out);
pissa_status pissa__weights_load_hf(const char *dir, pissa__weights *out);
pissa_status pissa__weights_load_llama2c(const char *path, pissa__weights *out);
void pissa__weights_free(pissa__weights *w); /* zeroes *w; safe on a zeroed struct */
/* Borrowed tensor, or NULL (no error set) when absent. */
pissa_tensor *pissa__weights_get(const pissa__weights *w, const char *name);
/* Writes W as a Hugging Face folder (config.json + model.safetensors) in DTYPE. */
pissa_status pissa__weights_save_hf(const pissa__weights *w, const char *dir, pissa_dtype dtype);

#endif
