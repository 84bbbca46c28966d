/* libpissa — Hugging Face checkpoints: config.json (Llama fields, REFERENCE §5) and a folder of
 * safetensors weights, single-file (model.safetensors) or sharded (model.safetensors.index.json). */
#ifndef PISSA_CHECKPOINT_H
#define PISSA_CHECKPOINT_H

#include "common.h"
#include "fileio.h" /* pissa_write_file_atomic, declared here before 0.2 */
#include "safetensors.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fields of a Hugging Face LlamaConfig. Absent fields take transformers' LlamaConfig defaults. */
typedef struct pissa_llama_config {
    char model_type[32];            /* "llama" */
    int64_t hidden_size;            /* D */
    int64_t intermediate_size;      /* F */
    int64_t num_hidden_layers;      /* L */
    int64_t num_attention_heads;    /* H */
    int64_t num_key_value_heads;    /* KV (default H) */
    int64_t head_dim;               /* default D / H */
    int64_t vocab_size;             /* V */
    int64_t max_position_embeddings;
    double rms_norm_eps;            /* default 1e-6 */
    double rope_theta;              /* default 10000 */
    int tie_word_embeddings;        /* default 0 */
    char hidden_act[32];            /* default "silu" */
    int has_rope_scaling;           /* rope_scaling present and not null */
    int attention_bias;             /* default 0 */
    int mlp_bias;                   /* default 0 */
    char torch_dtype[16];           /* "" when absent */
} pissa_llama_config;

/* Parses config.json text (LEN bytes, need not be NUL-terminated). SOURCE names it in errors.
 * Refuses a model_type that is not Llama-compatible ("llama"), and non-integer or non-positive sizes. */
PISSA_API pissa_status pissa_llama_config_parse(const char *json, size_t len, const char *source,
                                                pissa_llama_config *out);
PISSA_API pissa_status pissa_llama_config_load(const char *path, pissa_llama_config *out);
/* Refuses what the Llama forward pass does not implement: rope_scaling, attention_bias, mlp_bias,
 * hidden_act other than silu, heads that do not divide, ... (message names the field). */
PISSA_API pissa_status pissa_llama_config_check_supported(const pissa_llama_config *cfg);

typedef struct pissa_checkpoint pissa_checkpoint;

/* Opens DIR: reads DIR/config.json, then DIR/model.safetensors.index.json (sharded) if present, else
 * DIR/model.safetensors. Caller frees with pissa_checkpoint_free. */
PISSA_API pissa_status pissa_checkpoint_open(const char *dir, pissa_checkpoint **out);
PISSA_API void pissa_checkpoint_free(pissa_checkpoint *c); /* NULL is a no-op */

PISSA_API const pissa_llama_config *pissa_checkpoint_config(const pissa_checkpoint *c); /* borrowed */
/* The config.json text exactly as read (NUL-terminated). Borrowed. */
PISSA_API const char *pissa_checkpoint_config_json(const pissa_checkpoint *c);
/* Tensor names across all shards, sorted. */
PISSA_API size_t pissa_checkpoint_count(const pissa_checkpoint *c);
PISSA_API const char *pissa_checkpoint_name(const pissa_checkpoint *c, size_t i);
PISSA_API pissa_status pissa_checkpoint_find(const pissa_checkpoint *c, const char *name, pissa_st_info *out);
/* As pissa_st_load / pissa_st_read_f32, from whichever shard holds NAME. */
PISSA_API pissa_status pissa_checkpoint_load(const pissa_checkpoint *c, const char *name, pissa_tensor **out);
PISSA_API pissa_status pissa_checkpoint_read_f32(const pissa_checkpoint *c, const char *name, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
