/* libpissa — interoperability with Hugging Face PEFT: validation of an adapter against a base model, PiSSA → LoRA
 * conversion, and merging an adapter into a base (W' = W + s·B·A) or unmerging it. Which modules a config targets
 * is pissa_peft_resolve (peft.h). See docs/interop.md. */
#ifndef PISSA_INTEROP_H
#define PISSA_INTEROP_H

#include "checkpoint.h"
#include "common.h"
#include "adapter.h" /* pissa_lora_merge, pissa_lora_unmerge, declared here before 0.2 */
#include "peft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- an adapter against a base model ---- */

/* One linear weight of a base model: module path (tensor name without ".weight") and its (out, in). */
typedef struct pissa_linear_shape {
    const char *module;
    int64_t out, in;
} pissa_linear_shape;

/* Every 2-D F32/F16/BF16 tensor "X.weight" of C as (X, out, in), in checkpoint order. *OUT is one
 * allocation holding the array and the strings: the caller frees it with free(). */
PISSA_API pissa_status pissa_checkpoint_linear_shapes(const pissa_checkpoint *c, pissa_linear_shape **out,
                                                      size_t *n);

/* Checks that adapter A can be applied to a base with the N_BASE linear weights BASE, refusing with a
 * message naming the field or tensor:
 *   PISSA_ERR_UNSUPPORTED  use_dora, lora_bias, modules_to_save, fan_in_fan_out true; init_lora_weights a
 *                          method that PEFT would rerun on the base at load time ("pissa…", "olora",
 *                          "corda", "eva", "loftq"): such an adapter is only meaningful on that transformed base;
 *   PISSA_ERR_NOT_FOUND    a module of the adapter that is not a linear weight of the base;
 *   PISSA_ERR_FORMAT       a module of the adapter that the config does not target, or whose rank is not the
 *                          one the config assigns (r / rank_pattern);
 *   PISSA_ERR_SHAPE        A not (r, in) or B not (out, r) for the base weight (out, in).
 * A module the config targets but the adapter lacks is allowed (PEFT would initialise it with B = 0, which
 * changes nothing); it is reported through the log callback as a warning. */
PISSA_API pissa_status pissa_peft_adapter_check(const pissa_peft_adapter *a, const pissa_linear_shape *base,
                                                size_t n_base);

/* ---- PiSSA → LoRA conversion (docs/interop.md) ---- */

/* From a PiSSA adapter TRAINED (A, B), trained on the residual W_res, and the INITIAL adapter (A0, B0) it
 * started from, builds the LoRA adapter for the ORIGINAL base W with W + s'·B'·A' = W_res + s·B·A:
 *   A' = concat_rows(A, A0) (2r, in);  B' = concat_cols(B, −B0) (out, 2r);  r' = 2r;
 *   lora_alpha' = 2α, or √2·α with use_rslora (s' = s); every rank_pattern value doubled and every
 *   alpha_pattern value multiplied like lora_alpha; init_lora_weights true.
 * (PEFT multiplies alpha_pattern values by 2 even with use_rslora, which changes those modules' scale by √2;
 * libpissa keeps the scale, so the equivalence holds for every module.)
 * Both adapters must hold the same modules with the same shapes, and agree on r, lora_alpha, use_rslora,
 * rank_pattern and alpha_pattern (else PISSA_ERR_INVALID_ARG naming the field or module).
 * BASE_MODEL, if not NULL, becomes base_model_name_or_path (the original base); else TRAINED's is kept.
 * Caller frees *OUT with pissa_peft_adapter_free. */
PISSA_API pissa_status pissa_peft_pissa_to_lora(const pissa_peft_adapter *trained, const pissa_peft_adapter *initial,
                                                const char *base_model, pissa_peft_adapter **out);

/* ---- merge and unmerge ---- */

/* The same for module MODULE of adapter A with the scale its config assigns (pissa_peft_resolve).
 * A module the adapter does not hold leaves W untouched (*merged = 0, may be NULL); a shape that disagrees
 * with (out, in) is PISSA_ERR_SHAPE naming the module. */
PISSA_API pissa_status pissa_peft_merge_module(const pissa_peft_adapter *a, const char *module, float *W, int64_t out,
                                               int64_t in, int *merged);
PISSA_API pissa_status pissa_peft_unmerge_module(const pissa_peft_adapter *a, const char *module, float *W,
                                                 int64_t out, int64_t in, int *merged);

/* Writes DIR/config.json and DIR/model.safetensors: every tensor of BASE under its own name, the adapted
 * weights replaced by W ± s·B·A (UNMERGE selects −), streamed one tensor at a time. DTYPE: PISSA_F32,
 * PISSA_F16 or PISSA_BF16 for every float tensor (config.json's torch_dtype updated), or -1 to keep each
 * tensor's dtype. The adapter is checked first with pissa_peft_adapter_check. DIR is created if needed;
 * both files are written atomically. */
PISSA_API pissa_status pissa_peft_merge_checkpoint(const pissa_checkpoint *base, const pissa_peft_adapter *a,
                                                   int unmerge, int dtype, const char *dir);

/* Exports the llama2.c checkpoint PATH (.bin, version 0 or 1) as a Hugging Face Llama folder DIR
 * (config.json + model.safetensors): names mapped (w1 → mlp.gate_proj, ...) and the rows of wq/wk permuted
 * from llama2.c's adjacent-pair RoPE to Hugging Face's rotate_half (docs/formats.md). If A is not NULL, it is
 * checked against the exported weights and merged (or unmerged) as by pissa_peft_merge_checkpoint; its module
 * paths are Hugging Face ones. DTYPE: PISSA_F32, PISSA_F16, PISSA_BF16, or -1 for float32. */
PISSA_API pissa_status pissa_llama2c_export_hf(const char *path, const pissa_peft_adapter *a, int unmerge, int dtype,
                                               const char *dir);

#ifdef __cplusplus
}
#endif
#endif
