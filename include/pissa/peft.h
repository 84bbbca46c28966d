/* libpissa — Hugging Face PEFT LoRA adapters on disk (docs/formats.md).
 *
 * A directory holding adapter_model.safetensors and adapter_config.json. For a module path MOD of the
 * base model (e.g. "model.layers.0.self_attn.q_proj") the tensors are
 *   base_model.model.MOD.lora_A.weight  (r, in)
 *   base_model.model.MOD.lora_B.weight  (out, r)
 * adapter_config.json is written with sorted keys and an indent of 2, as PEFT writes it. */
#ifndef PISSA_PEFT_H
#define PISSA_PEFT_H

#include "common.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* adapter_config.json, opaque: its fields are read and written by their PEFT names (pissa_peft_config_get/set), so
 * a new PEFT field or a larger limit never changes the ABI. Fields kept: r, lora_alpha, lora_dropout, use_rslora,
 * use_dora, fan_in_fan_out, bias, init_lora_weights, target_modules (a list, a regex string, or "all-linear"),
 * task_type, base_model_name_or_path, rank_pattern, alpha_pattern, layers_to_transform, modules_to_save, lora_bias.
 * Others are accepted when read (as PEFT ignores what it does not know) and written as PEFT 0.13 writes them. */
typedef struct pissa_peft_config pissa_peft_config;

/* PEFT's LoraConfig for a causal LM: r 8, lora_alpha 8, dropout 0, bias "none", init_lora_weights true, target_modules
 * ["q_proj", "v_proj"], task_type "CAUSAL_LM". Caller frees with pissa_peft_config_free. */
PISSA_API pissa_status pissa_peft_config_create(pissa_peft_config **out);
/* Parses adapter_config.json text (LEN bytes). SOURCE names it in errors. peft_type must be "LORA"; fields libpissa
 * does not know are ignored; unsupported features are reported by the loader that applies the adapter, not here.
 * Caller frees with pissa_peft_config_free. */
PISSA_API pissa_status pissa_peft_config_parse(const char *json, size_t len, const char *source,
                                               pissa_peft_config **out);
PISSA_API pissa_status pissa_peft_config_clone(const pissa_peft_config *cfg, pissa_peft_config **out);
PISSA_API void pissa_peft_config_free(pissa_peft_config *cfg); /* NULL is a no-op */
/* Serialises CFG as PEFT does (sorted keys, indent 2). Caller frees *out with pissa_free. */
PISSA_API pissa_status pissa_peft_config_to_json(const pissa_peft_config *cfg, char **out);
/* Field FIELD as adapter_config.json holds it, as JSON text: "16", "8.0", "true", "\"pissa\"", "[\"q_proj\",
 * \"v_proj\"]", "{}", "null". Caller frees *out with pissa_free. PISSA_ERR_NOT_FOUND for a field the config does
 * not hold. */
PISSA_API pissa_status pissa_peft_config_get(const pissa_peft_config *cfg, const char *field, char **out);
/* Sets FIELD to JSON_VALUE (JSON text, as above), checked as pissa_peft_config_parse checks the file: a bad value is
 * PISSA_ERR_FORMAT naming the field, and CFG is then unchanged. */
PISSA_API pissa_status pissa_peft_config_set(pissa_peft_config *cfg, const char *field, const char *json_value);
/* The fields every caller needs, typed. */
PISSA_API int64_t pissa_peft_config_r(const pissa_peft_config *cfg);
PISSA_API double pissa_peft_config_lora_alpha(const pissa_peft_config *cfg);
PISSA_API int pissa_peft_config_use_rslora(const pissa_peft_config *cfg);

/* ---- target matching (peft_target.c) ---- */

/* Does CFG put a LoRA layer on MODULE (a module path of the base, e.g. "model.layers.3.self_attn.q_proj"),
 * and with which rank, alpha and scale? As PEFT's check_target_module_exists and LoraModel._create_and_replace:
 *   target_modules a list   MODULE equals an entry, or ends with "." + entry; in the second case only,
 *                           layers_to_transform (if set and non-empty) must contain the layer index N read
 *                           from the last ".NAME.N." of MODULE (no index: not targeted);
 *                           an empty list stands for null: PEFT's default for Llama, q_proj and v_proj;
 *   a string                Python re.fullmatch on MODULE (layers_to_transform does not apply);
 *   "all-linear"            (case-insensitive) every nn.Linear of a Llama except the output layer lm_head:
 *                           the q/k/v/o and gate/up/down projections, with layers_to_transform applied.
 *   r      rank_pattern[key] for the first key (in file order) with re.match("(.*\.)?(KEY)$", MODULE), else r;
 *   alpha  alpha_pattern likewise, else lora_alpha;  scale = alpha / r, or alpha / √r with use_rslora.
 * Regular expressions have Python `re` syntax (compiled with PCRE2). An invalid one is PISSA_ERR_FORMAT
 * naming the field. Any out-parameter may be NULL; when not targeted, r/alpha/scale are still the values
 * the config would assign. */
PISSA_API pissa_status pissa_peft_resolve(const pissa_peft_config *cfg, const char *module, int *targeted, int64_t *r,
                                          double *alpha, double *scale);

typedef struct pissa_peft_adapter pissa_peft_adapter;

/* New empty adapter with a copy of CFG. Caller frees with pissa_peft_adapter_free. */
PISSA_API pissa_status pissa_peft_adapter_create(const pissa_peft_config *cfg, pissa_peft_adapter **out);
PISSA_API void pissa_peft_adapter_free(pissa_peft_adapter *a); /* NULL is a no-op */
PISSA_API const pissa_peft_config *pissa_peft_adapter_config(const pissa_peft_adapter *a); /* borrowed */
PISSA_API pissa_peft_config *pissa_peft_adapter_config_mut(pissa_peft_adapter *a);      /* borrowed */

/* Adds module MOD (e.g. "model.layers.3.mlp.down_proj") with A (r, in) and B (out, r), copied. */
PISSA_API pissa_status pissa_peft_adapter_add(pissa_peft_adapter *a, const char *module, int64_t r, int64_t in,
                                              int64_t out, const float *A, const float *B);
PISSA_API size_t pissa_peft_adapter_count(const pissa_peft_adapter *a);
/* Module I: its path and borrowed A (r, in) and B (out, r) float32 tensors (valid while A lives). */
PISSA_API pissa_status pissa_peft_adapter_module(const pissa_peft_adapter *a, size_t i, const char **module,
                                                 const pissa_tensor **A, const pissa_tensor **B);
/* Index of module MOD, or PISSA_ERR_NOT_FOUND. */
PISSA_API pissa_status pissa_peft_adapter_find(const pissa_peft_adapter *a, const char *module, size_t *index);

/* Writes DIR/adapter_model.safetensors (tensors in DTYPE) and DIR/adapter_config.json, creating DIR if
 * needed. Both files are written atomically. */
PISSA_API pissa_status pissa_peft_adapter_save(const pissa_peft_adapter *a, const char *dir, pissa_dtype dtype);
/* Reads DIR (F32, F16 or BF16 tensors, converted to float32). Every lora_A must have its lora_B with a
 * matching rank, else PISSA_ERR_FORMAT naming the tensor. Caller frees with pissa_peft_adapter_free. */
PISSA_API pissa_status pissa_peft_adapter_load(const char *dir, pissa_peft_adapter **out);

#ifdef __cplusplus
}
#endif
#endif
