/* Internal: the weights of a model by Hugging Face tensor name, loaded from a Hugging Face folder
 * (config.json + safetensors, possibly sharded) or from a llama2.c checkpoint (.bin, version 0 or 1),
 * which is expressed in Hugging Face form: names mapped (w1 → mlp.gate_proj, …) and the rows of wq/wk
 * permuted from llama2.c's adjacent-pair RoPE to Hugging Face's rotate_half (docs/formats.md).
 *
 * Formats (docs/quantization.md): a tensor is float32 (TENSORS[i]: MAPPED, zero copy, where the file allows, else
 * OWNED), or a frozen matrix in another format (Q[i], TENSORS[i] NULL): the BF16/F16 matrices of a checkpoint —
 * the projections, the embedding and lm_head — are used straight from the file mapping (MAPS[i] holds a reference),
 * and a base format asked for at load converts or quantizes the projections. 1-D tensors (norms, biases) are always
 * float32. */
#ifndef PISSA_WEIGHTS_H
#define PISSA_WEIGHTS_H

#include "internal.h"
#include "quant.h"

typedef struct pissa__weights {
    pissa_llama_config cfg; /* for llama2.c: rms_norm_eps 1e-5, rope_theta 10000, model_type "llama" */
    size_t n;
    char **names;           /* (n) sorted Hugging Face names */
    pissa_tensor **tensors; /* (n) float32, or NULL where the tensor is kept as Q[i] */
    pissa__qweight *q;      /* (n) matrices in any format (a float32 one only after pissa__weights_replace); empty
                             * where TENSORS[i] is set */
    pissa_mapping **maps;   /* (n) the mapping a borrowed Q[i] reads (a reference), or NULL */
    char *config_json;      /* config.json text (HF source), or one synthesised for a llama2.c source */
} pissa__weights;

/* How to load: BASE is the format of the seven projections, -1 to keep each as the checkpoint stores it (float32
 * for llama2.c). The embedding and lm_head keep their stored format unless BASE is PISSA_QTYPE_F32 (then every
 * tensor is float32, as before 0.2). */
typedef struct pissa__load_opts {
    int base; /* pissa_qtype, or -1 */
} pissa__load_opts;

/* PATH is a directory (Hugging Face) or a regular file (llama2.c). Checks the config with
 * pissa_llama_config_check_supported and that every tensor the forward needs is present with the right shape
 * (message names the tensor, the expected and the found shape). For a tied model there is no "lm_head.weight": the
 * head is "model.embed_tokens.weight". OPTS may be NULL (as stored). */
pissa_status pissa__weights_load(const char *path, const pissa__load_opts *opts, pissa__weights *out);
pissa_status pissa__weights_load_hf(const char *dir, const pissa__load_opts *opts, pissa__weights *out);
pissa_status pissa__weights_load_llama2c(const char *path, const pissa__load_opts *opts, pissa__weights *out);
void pissa__weights_free(pissa__weights *w); /* zeroes *w; safe on a zeroed struct */
/* Borrowed float32 tensor, or NULL (no error set) when absent or kept in another format. */
pissa_tensor *pissa__weights_get(const pissa__weights *w, const char *name);
/* Index of NAME (names are sorted: bisect), or -1. */
ptrdiff_t pissa__weights_index(const pissa__weights *w, const char *name);
/* Shape of tensor I (ndim returned; a 2-D q matrix gives (rows, cols)). */
int pissa__weights_shape(const pissa__weights *w, size_t i, int64_t shape[2]);
/* Tensor I as a frozen matrix, a view (never owned): q[i], or an F32 wrap of the float32 tensor (1-D as (1, n)). */
pissa__qweight pissa__weights_matrix(const pissa__weights *w, size_t i);
/* Makes tensor I an owned float32 tensor (dequantized from its format), releasing the other form. */
pissa_status pissa__weights_to_f32(pissa__weights *w, size_t i);
/* Replaces matrix I by the OWNED Q (taken: Q is emptied), releasing the old form and giving the pages of a mapped one
 * back. Q may be float32: the entry is then a float32 Q, not a tensor (pissa__weights_get gives NULL for it). */
void pissa__weights_replace(pissa__weights *w, size_t i, pissa__qweight *q);
/* Gives back the resident pages of tensor I if it is read from a file mapping (read again if touched): for a source
 * that has been converted and will not be read soon. */
void pissa__weights_drop(const pissa__weights *w, size_t i);
/* Bytes the weights hold in memory by format (mapped or owned), for reports. */
size_t pissa__weights_bytes(const pissa__weights *w);
/* Writes W as a Hugging Face folder (config.json + model.safetensors) in DTYPE, or for -1 in the dtype its config
 * names (torch_dtype; F32 when absent). */
pissa_status pissa__weights_save_hf(const pissa__weights *w, const char *dir, pissa_dtype dtype);

#endif
