/* libpissa — the model a config.json describes: the supported families, their fields as transformers reads them,
 * and the one list of the tensors such a model has (names, shapes, roles) that every part of libpissa reads.
 *
 * Families (model_type), each a marked difference from Llama as transformers writes them (docs/model.md):
 *   llama    LlamaForCausalLM: RoPE (rope_type default, linear or llama3), optional head_dim, attention_bias
 *            (q/k/v/o), mlp_bias (gate/up/down). SmolLM2, TinyLlama and Llama-3.x are llama.
 *   mistral  + sliding_window: query i attends keys i − W + 1 .. i (null: every earlier key); no biases.
 *   qwen2    + a bias on q_proj, k_proj and v_proj (not o_proj); use_sliding_window must be false.
 *   qwen3    + q_norm and k_norm: an RMSNorm over head_dim on each head of q and k before RoPE; attention_bias as
 *            llama's; head_dim defaults to 128; use_sliding_window must be false.
 * Absent fields take the defaults of the family's transformers config class. Anything else (gemma*, phi3's fused
 * qkv_proj, MoE, rope types yarn/dynamic/longrope, partial rotary factors, sliding windows on Qwen) is refused by
 * pissa_llama_config_check_supported with PISSA_ERR_UNSUPPORTED naming the field and its value. */
#ifndef PISSA_CONFIG_H
#define PISSA_CONFIG_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The projections of a layer, as a bit mask (bit j: projection j). Pinned values. */
typedef enum pissa_proj {
    PISSA_PROJ_Q = 1 << 0,
    PISSA_PROJ_K = 1 << 1,
    PISSA_PROJ_V = 1 << 2,
    PISSA_PROJ_O = 1 << 3,
    PISSA_PROJ_GATE = 1 << 4,
    PISSA_PROJ_UP = 1 << 5,
    PISSA_PROJ_DOWN = 1 << 6,
    PISSA_PROJ_ALL = 0x7f,
} pissa_proj;
#define PISSA_N_PROJ 7

/* Parses "q_proj,v_proj,..." (any of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj) or "all-linear". */
PISSA_API pissa_status pissa_proj_parse(const char *list, unsigned *mask);
/* Writes the comma-separated names of MASK in the order above into BUF. */
PISSA_API pissa_status pissa_proj_names(unsigned mask, char *buf, size_t size);
/* Name of projection J ("q_proj") and its module path in a layer ("self_attn.q_proj"), or NULL if J is not 0..6. */
PISSA_API const char *pissa_proj_name(int j);
PISSA_API const char *pissa_proj_path(int j);

/* Fields of a config.json (the name is historical: it describes every supported family). */
typedef struct pissa_llama_config {
    char model_type[32];            /* "llama", "mistral", "qwen2", "qwen3" */
    int64_t hidden_size;            /* D */
    int64_t intermediate_size;      /* F */
    int64_t num_hidden_layers;      /* L */
    int64_t num_attention_heads;    /* H */
    int64_t num_key_value_heads;    /* KV (default H; 32 for qwen2/qwen3, 8 for mistral, as transformers) */
    int64_t head_dim;               /* hd: default D / H (qwen3: 128) */
    int64_t vocab_size;             /* V */
    int64_t max_position_embeddings;
    double rms_norm_eps;            /* default 1e-6 */
    double rope_theta;              /* default 10000; also read from rope_parameters */
    int tie_word_embeddings;        /* default 0 */
    char hidden_act[32];            /* default "silu" */
    int has_rope_scaling;           /* rope_scaling (or rope_parameters) selects a rope type other than default */
    int attention_bias;             /* llama, qwen3: bias on q/k/v/o_proj (default 0) */
    int mlp_bias;                   /* llama: bias on gate/up/down_proj (default 0) */
    char torch_dtype[16];           /* "" when absent ("torch_dtype", or "dtype" as newer transformers write) */
    /* since 0.2 */
    char rope_type[16];             /* "default", "linear", "llama3" (others are kept to be refused) */
    double rope_factor;             /* linear, llama3: factor */
    double rope_low_freq_factor;    /* llama3 */
    double rope_high_freq_factor;   /* llama3 */
    int64_t rope_original_max_position_embeddings; /* llama3 */
    double partial_rotary_factor;   /* 1 (anything else is refused) */
    int64_t sliding_window;         /* mistral: the window W; 0 = full causal attention */
    int use_sliding_window;         /* qwen2, qwen3: refused when true */
    unsigned bias_mask;             /* the projections with a bias, as pissa_proj bits (model.h): derived */
    int qk_norm;                    /* qwen3: per-head RMSNorm of q and k (derived from model_type) */
} pissa_llama_config;

/* Parses config.json text (LEN bytes, need not be NUL-terminated). SOURCE names it in errors. Refuses a model_type
 * that is not one of the families above (PISSA_ERR_UNSUPPORTED, naming it), an "architectures" entry of another
 * family or head (e.g. LlamaForSequenceClassification), and non-integer or non-positive sizes (PISSA_ERR_FORMAT). */
PISSA_API pissa_status pissa_llama_config_parse(const char *json, size_t len, const char *source,
                                                pissa_llama_config *out);
PISSA_API pissa_status pissa_llama_config_load(const char *path, pissa_llama_config *out);
/* Refuses what the forward pass does not implement, naming the field and value: rope types other than default,
 * linear and llama3; partial_rotary_factor; use_sliding_window; hidden_act other than silu; heads that do not divide;
 * an odd head_dim. */
PISSA_API pissa_status pissa_llama_config_check_supported(const pissa_llama_config *cfg);

/* config.json text with its dtype field set to DTYPE's torch name ("float32", "bfloat16", "float16"): the key the
 * text already uses ("torch_dtype", or "dtype" as newer transformers write), else "torch_dtype"; written with sorted
 * keys and indent 2. Caller frees *OUT with free(). */
PISSA_API pissa_status pissa_config_json_set_dtype(const char *json, int dtype, char **out);

/* ---- the tensors of a model ---- */

/* What a tensor is. Pinned values. */
typedef enum pissa_tensor_role {
    PISSA_ROLE_EMBED = 0,      /* model.embed_tokens.weight (V, D) */
    PISSA_ROLE_NORM = 1,       /* model.norm.weight (D) */
    PISSA_ROLE_HEAD = 2,       /* lm_head.weight (V, D); absent when tied */
    PISSA_ROLE_INPUT_NORM = 3, /* model.layers.L.input_layernorm.weight (D) */
    PISSA_ROLE_POST_NORM = 4,  /* model.layers.L.post_attention_layernorm.weight (D) */
    PISSA_ROLE_Q_NORM = 5,     /* model.layers.L.self_attn.q_norm.weight (hd), qwen3 */
    PISSA_ROLE_K_NORM = 6,     /* model.layers.L.self_attn.k_norm.weight (hd), qwen3 */
    PISSA_ROLE_PROJ = 7,       /* model.layers.L.<path of projection j>.weight (out, in) */
    PISSA_ROLE_BIAS = 8,       /* model.layers.L.<path of projection j>.bias (out) */
} pissa_tensor_role;

typedef struct pissa_tensor_spec {
    char name[96];        /* Hugging Face tensor name */
    pissa_tensor_role role;
    int64_t layer;        /* -1 for the tensors outside the layers */
    int proj;             /* PROJ and BIAS: the projection, 0..6 in pissa_proj bit order (q k v o gate up down) */
    int ndim;             /* 1 or 2 */
    int64_t shape[2];
} pissa_tensor_spec;

/* The tensors a checkpoint of CFG holds, in a fixed order: embed_tokens, then layer by layer (norms, projections and
 * their biases), then the final norm and lm_head (when untied). The config must pass check_supported. */
PISSA_API size_t pissa_config_tensor_count(const pissa_llama_config *cfg);
PISSA_API pissa_status pissa_config_tensor(const pissa_llama_config *cfg, size_t i, pissa_tensor_spec *out);
/* The spec of tensor NAME, or PISSA_ERR_NOT_FOUND (no message recorded) when a model of CFG has no such tensor.
 * Reads the name (layer index and suffix): constant time, whatever the number of layers. */
PISSA_API pissa_status pissa_config_tensor_find(const pissa_llama_config *cfg, const char *name,
                                                pissa_tensor_spec *out);

#ifdef __cplusplus
}
#endif
#endif
