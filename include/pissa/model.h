/* libpissa — a trainable causal language model of any family of pissa/config.h (Llama, Mistral, Qwen2, Qwen3; the
 * maths of transformers' *ForCausalLM, docs/model.md) with LoRA/PiSSA adapters.
 *
 * The model is loaded from a Hugging Face folder (config.json + model.safetensors or a sharded index) or a llama2.c
 * checkpoint (.bin, version 0 or 1). Biases and norm weights stay frozen with adapters (PEFT's bias="none"). Base
 * weights are frozen and, by default, used in place in the format the checkpoint stores them (F32, BF16, F16 straight
 * from the file mapping, no copy); pissa_model_opts.base_dtype puts the seven projections in another format at load
 * (F32, BF16, F16, or NF4/INT8 quantized as bitsandbytes does: docs/quantization.md), the embedding, lm_head and
 * norms staying as stored. Adapters on chosen projections compute y = x·W_resᵀ + s·(x·Aᵀ)·Bᵀ without ever forming
 * W_res + s·B·A. Adapters, gradients and optimizer state are float32 whatever the base format. Gradients exist only
 * for the adapter matrices — or, after pissa_model_set_full_finetune, for every base weight instead (full
 * fine-tuning, all float32).
 *
 * Memory: the first call for a batch shape (B, T) plans every buffer of the forward and backward passes once;
 * later calls with the same shape allocate nothing (pissa_model_arena_bytes stays constant). A new shape
 * replaces the plan. A model is not thread-safe: use one model per thread. */
#ifndef PISSA_MODEL_H
#define PISSA_MODEL_H

#include "checkpoint.h"
#include "common.h"
#include "adapter.h"
#include "quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pissa_model pissa_model;

/* PATH: a directory (Hugging Face) or a llama2.c .bin file. Configs whose maths is not implemented (rope_scaling,
 * attention_bias, mlp_bias, hidden_act other than silu, ...) are refused with PISSA_ERR_UNSUPPORTED and the message
 * of pissa_llama_config_check_supported. Caller frees with pissa_model_free. */
PISSA_API pissa_status pissa_model_load(const char *path, pissa_model **out);

typedef struct pissa_model_opts {
    int base_dtype; /* pissa_qtype of the frozen projections, or -1 (the default): as the checkpoint stores them.
                     * PISSA_QTYPE_F32 makes every matrix float32 (the embedding and lm_head too). A converted or
                     * quantized matrix's file pages are given back once converted. */
} pissa_model_opts;
PISSA_API pissa_model_opts pissa_model_default_opts(void);
/* pissa_model_load with options (OPTS NULL: the defaults). A bad base_dtype is PISSA_ERR_INVALID_ARG. */
PISSA_API pissa_status pissa_model_load_with_opts(const char *path, const pissa_model_opts *opts, pissa_model **out);
PISSA_API void pissa_model_free(pissa_model *m); /* NULL is a no-op */
PISSA_API const pissa_llama_config *pissa_model_config(const pissa_model *m); /* borrowed */

/* ---- adapters ---- */

typedef struct pissa_adapter_opts {
    unsigned targets;      /* pissa_proj mask (default q_proj | v_proj, PEFT's default for Llama) */
    pissa_init_opts init;  /* kind, rank, alpha, use_rslora, niter, oversample, seed (module i uses seed + i) */
    double dropout;        /* lora_dropout on the adapter branch, in [0, 1) (used only in training mode) */
    int qiter;             /* QPiSSA's rounds T when the base is NF4 or INT8 and the kind is a PiSSA one (0 or 1: one
                            * round, the PiSSA residual quantized; see pissa_qpissa_init) */
} pissa_adapter_opts;

PISSA_API pissa_adapter_opts pissa_adapter_default_opts(void);

/* Attaches an adapter to every targeted projection of every layer, initialised in memory with pissa_adapter_init.
 * The PiSSA kinds split W as the checkpoint stores it (re-read from the file when the load converted the base) and
 * replace the frozen weight by W_res = W − s·B·A in the base's format: for NF4 and INT8 that is QPiSSA
 * (pissa_qpissa_init with opts->qiter rounds), the residual's quantization q(W_res) kept. LORA and GAUSSIAN keep W.
 * A model holds one set of adapters: PISSA_ERR_INVALID_ARG if it already has one. */
PISSA_API pissa_status pissa_model_add_adapters(pissa_model *m, const pissa_adapter_opts *opts);

/* Attaches the PEFT adapter in DIR (adapter_config.json + adapter_model.safetensors; F32, F16 or BF16 tensors).
 * Which projections it adapts, and each one's rank and scale, follow PEFT's rules (pissa_peft_resolve):
 * target_modules a list, a regex or "all-linear", layers_to_transform, rank_pattern/alpha_pattern, use_rslora.
 * init_lora_weights true/false/gaussian: the base is used as is; pissa/pissa_niter_N: as PEFT does, the base weight
 * is first replaced by its residual W − s·B0·A0, then the saved A and B are used. Refused as by
 * pissa_peft_adapter_check (use_dora, lora_bias, modules_to_save, fan_in_fan_out, a tensor for a module the base
 * lacks or the config does not target, a rank or shape that disagrees), plus bias other than "none" and a module
 * that is not one of the 7 projections (e.g. lm_head), naming the field or tensor. A targeted projection without
 * tensors is left without an adapter (PEFT's fresh B = 0 changes nothing). */
PISSA_API pissa_status pissa_model_load_adapter(pissa_model *m, const char *dir);

/* Writes the adapters as a PEFT folder (DIR created; tensors in DTYPE). init_lora_weights is the spelling of the
 * in-memory initialisation (or the loaded config's). */
PISSA_API pissa_status pissa_model_save_adapter(const pissa_model *m, const char *dir, pissa_dtype dtype);

PISSA_API size_t pissa_model_adapter_count(const pissa_model *m);
/* Module path of adapter I ("model.layers.0.self_attn.q_proj"), or NULL if I is out of range. Borrowed. */
PISSA_API const char *pissa_model_adapter_name(const pissa_model *m, size_t i);
PISSA_API pissa_status pissa_model_adapter_find(const pissa_model *m, const char *module, size_t *i);

/* One adapter's matrices. Pointers are borrowed, valid until the model is freed or its adapters change.
 * A and B may be written (an optimiser updates them in place); dA and dB hold the accumulated gradients. */
typedef struct pissa_adapter_view {
    const char *module;
    int64_t r, in, out;
    double scale;
    float *A;  /* (r, in) */
    float *B;  /* (out, r) */
    float *dA; /* (r, in) */
    float *dB; /* (out, r) */
} pissa_adapter_view;
PISSA_API pissa_status pissa_model_adapter(const pissa_model *m, size_t i, pissa_adapter_view *out);

/* ---- full fine-tuning and the trainable parameters ---- */

/* Makes every base weight (embeddings, RMSNorm weights, the 7 projections of each layer and their biases, q/k norms,
 * lm_head; tied embeddings
 * stay one tensor, whose gradient gets both uses) an owned float32 copy with a gradient: full fine-tuning.
 * Costs one float32 copy of each weight used in place from the file mapping, plus a gradient of the same size.
 * Refused (PISSA_ERR_INVALID_ARG) if the model has adapters; pissa_model_add_adapters and
 * pissa_model_load_adapter are refused after it. Calling it twice is a no-op. On failure the model is unchanged. */
PISSA_API pissa_status pissa_model_set_full_finetune(pissa_model *m);
/* 1 after pissa_model_set_full_finetune, else 0. */
PISSA_API int pissa_model_full_finetune(const pissa_model *m);

/* One trainable parameter tensor, whatever the mode. Pointers are borrowed, valid until the model is freed or its
 * adapters change; DATA may be written (an optimizer updates it in place), GRAD holds the accumulated gradient. */
typedef struct pissa_param_view {
    const char *name; /* "<module>.lora_A" / "<module>.lora_B", or the Hugging Face tensor name in full mode */
    int ndim;         /* 1 for the RMSNorm weights (rows = 1), 2 for matrices */
    int64_t rows, cols;
    float *data;      /* (rows, cols) */
    float *grad;      /* (rows, cols) */
} pissa_param_view;
/* Trainable tensors: A and B of each adapter (adapter i gives 2i and 2i + 1), or every base weight in full mode
 * (embed_tokens, model.norm, lm_head if untied, then each layer's tensors in pissa_config_tensor's order: norms,
 * projections, biases, q/k norms), or 0. */
PISSA_API size_t pissa_model_param_count(const pissa_model *m);
PISSA_API pissa_status pissa_model_param(const pissa_model *m, size_t i, pissa_param_view *out);

/* Writes the model's current base weights as a Hugging Face folder in DIR (created): config.json (the source's,
 * with torch_dtype set to DTYPE; synthesised for a llama2.c source) and model.safetensors in DTYPE (F32, F16 or
 * BF16, or -1: the dtype the source's config names, F32 when it names none), each file replaced atomically. E.g.
 * the result of full fine-tuning. With PiSSA adapters the residuals W − s·B₀·A₀ take the place of their base weights
 * (the residual model, as pissa-init writes it); adapters themselves are not written (pissa_model_save_adapter). */
PISSA_API pissa_status pissa_model_save(const pissa_model *m, const char *dir, pissa_dtype dtype);

/* Zeroes the gradients of every trainable parameter. */
PISSA_API void pissa_model_zero_grad(pissa_model *m);

/* Training mode draws dropout masks on the adapter branches (seeded by SEED, then advancing); evaluation mode
 * (the default) uses none. */
PISSA_API void pissa_model_set_training(pissa_model *m, int training, uint64_t seed);

/* ---- forward and backward ----
 * IDS and LABELS are (B, T) row-major int32. Ids must lie in [0, V); labels in [0, V) or −100 (ignored);
 * T <= max_position_embeddings. Labels follow the Hugging Face causal-LM convention: position t predicts
 * labels[t + 1] (the last position of each row predicts nothing). */

/* LOGITS (B, T, V), caller-provided. */
PISSA_API pissa_status pissa_model_logits(pissa_model *m, const int32_t *ids, int B, int T, float *logits);
/* Mean cross-entropy over the counted targets (0 when none) and their number. Either output may be NULL. */
PISSA_API pissa_status pissa_model_loss(pissa_model *m, const int32_t *ids, const int32_t *labels, int B, int T,
                                        double *loss, int64_t *count);
/* Forward and backward: ADDS dloss·∂loss/∂θ into the gradients of the trainable parameters (dloss = 1 normally,
 * 1/steps to average accumulated micro-batches). Returns the loss and count as pissa_model_loss does. */
PISSA_API pissa_status pissa_model_forward_backward(pissa_model *m, const int32_t *ids, const int32_t *labels, int B,
                                                    int T, float dloss, double *loss, int64_t *count);

/* Bytes of the planned working memory (activations, gradients, scratch) plus parameter gradients. Constant across
 * steps of one batch shape: a step allocates nothing. */
PISSA_API size_t pissa_model_arena_bytes(const pissa_model *m);
/* Number of parameter tensors with a gradient buffer (the adapters' A and B: 2 per adapter; in full mode every
 * base weight). */
PISSA_API size_t pissa_model_grad_tensor_count(const pissa_model *m);

#ifdef __cplusplus
}
#endif
#endif
