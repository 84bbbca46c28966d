/* Training kernels: the closed set of forward/backward pairs the autograd engine is built from.
 *
 * Conventions (as karpathy/llm.c train_gpt2.c):
 * - forward(out, saved..., inputs..., weights..., dims); backward(dinputs..., dweights..., scratch, dout,
 *   saved/inputs..., dims). Backward runs the forward's steps in reverse order.
 * - Backward ADDS into every gradient buffer (+=), so branches that read the same tensor accumulate. Kernels with a
 *   final `unsigned fresh` argument can instead OVERWRITE input gradient k when bit k is set (k counts the
 *   activation-gradient arguments from 0, in order; parameter gradients always accumulate): the engine sets it for
 *   the first writer of a gradient, which then need not be zeroed beforehand (a memset of every activation
 *   gradient cost ~6% of a step). With fresh = 0 the contract is the plain +=.
 * - Any gradient pointer may be NULL (a frozen weight, an input that needs no gradient): its work is skipped
 *   and nothing is written through it. With every gradient NULL, backward touches nothing (scratch may be NULL).
 * - float32, row-major; N = B·T rows of tokens. Dimensions are int because cblas takes int.
 * - Nothing allocates: ops that need temporaries take a caller-provided scratch buffer whose size in floats is
 *   given by the matching pissa__*_scratch_floats helper. Scratch contents are garbage on return.
 * - Unless stated otherwise outputs and gradients must not alias inputs.
 * These are internal kernels: arguments are not validated (the engine checks shapes once, when it builds the
 * graph), so an index outside its range is undefined behaviour. */
#ifndef PISSA_OPS_H
#define PISSA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "quant.h"

/* ---- embedding: out[n] = wte[ids[n]] ----
 * The caller guarantees 0 <= ids[n] < V for every n; an id outside that range is never checked here. */
void pissa__embedding_forward(float *out,           /* (N, C) */
                              const int32_t *ids,   /* (N) */
                              const float *wte,     /* (V, C) */
                              int N, int C);
/* The same from a frozen table in any format (a BF16 embedding used from the file mapping): rows dequantized. */
void pissa__embedding_forward_q(float *out,                /* (N, C) */
                                const int32_t *ids,        /* (N) */
                                const pissa__qweight *wte, /* (V, C) */
                                int N);
void pissa__embedding_backward(float *dwte,         /* (V, C), += ; NULL when frozen (then a no-op) */
                               const float *dout,   /* (N, C) */
                               const int32_t *ids,  /* (N) */
                               int N, int C);

/* ---- matmul (linear without bias): out = inp·Wᵀ ---- */
void pissa__matmul_forward(float *out,        /* (N, OC) */
                           const float *inp,  /* (N, C) */
                           const float *w,    /* (OC, C) */
                           int N, int C, int OC);
/* dinp += dout·W; dw += doutᵀ·inp. */
void pissa__matmul_backward(float *dinp,        /* (N, C) or NULL */
                            float *dw,          /* (OC, C) or NULL */
                            const float *dout,  /* (N, OC) */
                            const float *inp,   /* (N, C) */
                            const float *w,     /* (OC, C) */
                            int N, int C, int OC, unsigned fresh);

/* ---- a frozen linear in any stored format (quant.h): out = inp·Wᵀ; dinp += dout·W ----
 * F32 goes to the same products as matmul (the same bits); BF16, F16, NF4 and INT8 to the tiled products of quant.h,
 * which convert W a tile at a time right before each sgemm. SCRATCH holds pissa__frozen_scratch_floats(type,
 * nthreads) floats (0 for F32: may be NULL); NTHREADS bounds the threads (the scratch is sized for them). */
size_t pissa__frozen_scratch_floats(pissa_qtype type, int nthreads);
void pissa__frozen_forward(float *out,               /* (N, OC) */
                           float *scratch, int nthreads,
                           const float *inp,         /* (N, C) */
                           const pissa__qweight *w,  /* (OC, C) */
                           int N);
void pissa__frozen_backward(float *dinp,              /* (N, C) */
                            float *scratch, int nthreads,
                            const float *dout,        /* (N, OC) */
                            const pissa__qweight *w,  /* (OC, C) */
                            int N, unsigned fresh);

/* ---- LoRA / PiSSA linear: out = inp·W_resᵀ + s·(inp_d·Aᵀ)·Bᵀ ----
 * W_res is frozen and W_res + s·B·A is never formed. inp_d = inp ⊙ mask / (1 − p) is the adapter branch's
 * dropout (PEFT applies lora_dropout to the input of lora_A only); mask == NULL means no dropout and p is then
 * ignored; otherwise 0 <= p < 1 and mask[i] ∈ {0, 1} (see pissa__dropout_mask). xa = inp_d·Aᵀ is saved for
 * backward, transposed (r, N); inp_d is not saved but rebuilt from inp and mask. W_res may be in any format
 * (pissa__frozen_*); NTHREADS bounds the threads of its products. */
size_t pissa__lora_scratch_floats(int N, int C, int OC, int r, int has_mask, pissa_qtype wtype, int nthreads);
void pissa__lora_forward(float *out,           /* (N, OC) */
                         float *xa,            /* (r, N) saved: (inp_d·Aᵀ)ᵀ */
                         float *scratch,       /* pissa__lora_scratch_floats(N, C, OC, r, mask != NULL, ...) */
                         int nthreads,
                         const float *inp,     /* (N, C) */
                         const uint8_t *mask,  /* (N, C) or NULL */
                         float p,              /* dropout probability, used only with a mask */
                         const pissa__qweight *w_res, /* (OC, C) frozen */
                         const float *A,       /* (r, C) */
                         const float *B,       /* (OC, r) */
                         float s,              /* scale α/r (or α/√r with rsLoRA) */
                         int N, int C, int OC, int r);
/* With xa and dxa as (N, r) matrices: dB += s·doutᵀ·xa; dxa = s·dout·B; dA += dxaᵀ·inp_d;
 * dinp += dout·W_res + (dxa·A) ⊙ mask/(1 − p). */
void pissa__lora_backward(float *dinp,          /* (N, C) or NULL */
                          float *dA,            /* (r, C) or NULL */
                          float *dB,            /* (OC, r) or NULL */
                          float *scratch,       /* pissa__lora_scratch_floats(N, C, OC, r, mask != NULL, ...) */
                          int nthreads,
                          const float *dout,    /* (N, OC) */
                          const float *inp,     /* (N, C) */
                          const uint8_t *mask,  /* (N, C) or NULL: the mask given to forward */
                          float p,
                          const pissa__qweight *w_res, /* (OC, C) */
                          const float *A,       /* (r, C) */
                          const float *B,       /* (OC, r) */
                          const float *xa,      /* (r, N) saved by forward */
                          float s,
                          int N, int C, int OC, int r, unsigned fresh);

/* ---- dropout mask: mask[i] = 1 with probability 1 − p, else 0, drawn from RNG in order ---- */
void pissa__dropout_mask(uint8_t *mask, /* (n) */ size_t n, float p, pissa_rng *rng);

/* ---- RMSNorm: out = x / sqrt(mean(x²) + eps) ⊙ w, per row ---- */
void pissa__rmsnorm_forward(float *out,        /* (N, C) */
                            float *rstd,       /* (N) saved: 1 / sqrt(mean(x²) + eps) */
                            const float *inp,  /* (N, C) */
                            const float *w,    /* (C) */
                            float eps, int N, int C);
void pissa__rmsnorm_backward(float *dinp,        /* (N, C) or NULL */
                             float *dw,          /* (C) or NULL */
                             const float *dout,  /* (N, C) */
                             const float *inp,   /* (N, C) */
                             const float *w,     /* (C) */
                             const float *rstd,  /* (N) saved */
                             int N, int C, unsigned fresh);

/* ---- bias: out = inp + b on every row ---- */
void pissa__bias_forward(float *out,        /* (N, C) */
                         const float *inp,  /* (N, C) */
                         const float *b,    /* (C) */
                         int N, int C);
/* dinp += dout; db += Σ_rows dout. */
void pissa__bias_backward(float *dinp,        /* (N, C) or NULL */
                          float *db,          /* (C) or NULL */
                          const float *dout,  /* (N, C) */
                          int N, int C, unsigned fresh);

/* ---- RoPE, Hugging Face rotate_half convention (docs/model.md) ----
 * Within each head, element i pairs with element i + hd/2 (NOT llama2.c's adjacent pairs):
 * x1' = x1·cos − x2·sin, x2' = x2·cos + x1·sin with angle[t][i] = pos[t]·inv_freq[i], i < hd/2, and inv_freq from
 * the config's rope type (pissa__rope_inv_freq). Tables: positions pos[t] if pos != NULL, else start + t. Angles
 * are formed in float32 the way HF does (position·inv_freq in float32) so the tables agree with HF's to an ulp even
 * at large positions; cos and sin of that float angle are then rounded from double. */
void pissa__rope_tables(float *cos_tab,          /* (T, hd/2) */
                        float *sin_tab,          /* (T, hd/2) */
                        const int32_t *pos,      /* (T) or NULL */
                        int start, int T, int half,
                        const float *inv_freq);  /* (hd/2) */
/* Token (b, t) is rotated by table row t, or, with POS (packed rows, HF's position_ids), by table row pos[b][t]
 * (0 <= pos[b][t] < T). out may equal inp (in place). */
void pissa__rope_forward(float *out,            /* (B, T, nh, hd) */
                         const float *inp,      /* (B, T, nh, hd) */
                         const float *cos_tab,  /* (T, hd/2) */
                         const float *sin_tab,  /* (T, hd/2) */
                         const int32_t *pos,    /* (B, T) or NULL */
                         int B, int T, int nh, int hd);
/* dinp += Rᵀ·dout (the inverse rotation). dinp must not alias dout. */
void pissa__rope_backward(float *dinp,           /* (B, T, nh, hd) or NULL */
                          const float *dout,     /* (B, T, nh, hd) */
                          const float *cos_tab,  /* (T, hd/2) */
                          const float *sin_tab,  /* (T, hd/2) */
                          const int32_t *pos,    /* (B, T) or NULL */
                          int B, int T, int nh, int hd, unsigned fresh);

/* ---- causal attention with grouped-query heads, an optional sliding window and packed rows ----
 * Query head h reads kv head h / (H/KV) (H % KV == 0; KV == H is plain multi-head attention).
 * P[b,h] = softmax(q_bh·k_bgᵀ/√hd) over the keys j visible to query i, out_bh = P·v_bg. Visible: j <= i, and
 * j > i − W with a sliding window W (WINDOW 0: none), and, with POS (packed rows: several sequences one after the
 * other in a row, pos[b][i] the position of token i in its own sequence), j >= i − pos[b][i]: the first key of
 * query i is the start of its own sequence, so attention is block-diagonal. POS must restart at 0 and count up by
 * one: pos[b][0] = 0 and pos[b][i] ∈ {0, pos[b][i−1] + 1} (then every query's first key is <= i and the first keys
 * never decrease along a row).
 * P is never stored whole: forward saves each row's log-sum-exp and backward recomputes P a tile of query rows at
 * a time (FlashAttention's scheme). */
size_t pissa__attention_scratch_floats(int T, int nthreads); /* per thread: two tiles of query rows by T keys */
void pissa__attention_forward(float *out,      /* (B, T, H, hd) */
                              float *lse,      /* (B, H, T) saved: log Σ_j exp(s_ij) of every query row */
                              float *scratch,  /* pissa__attention_scratch_floats(T, nthreads) */
                              int nthreads,    /* at most this many threads (the scratch is sized for them) */
                              const float *q,  /* (B, T, H, hd) */
                              const float *k,  /* (B, T, KV, hd) */
                              const float *v,  /* (B, T, KV, hd) */
                              const int32_t *pos, /* (B, T) or NULL */
                              int B, int T, int H, int KV, int hd, int window);
/* dk and dv accumulate over the H/KV query heads that share each kv head. */
void pissa__attention_backward(float *dq,          /* (B, T, H, hd) or NULL */
                               float *dk,          /* (B, T, KV, hd) or NULL */
                               float *dv,          /* (B, T, KV, hd) or NULL */
                               float *scratch,     /* pissa__attention_scratch_floats(T, nthreads) */
                               int nthreads,       /* at most this many threads (the scratch is sized for them) */
                               const float *dout,  /* (B, T, H, hd) */
                               const float *q,     /* (B, T, H, hd) */
                               const float *k,     /* (B, T, KV, hd) */
                               const float *v,     /* (B, T, KV, hd) */
                               const float *lse,   /* (B, H, T) saved */
                               const int32_t *pos, /* (B, T) or NULL: the forward's */
                               int B, int T, int H, int KV, int hd, int window, unsigned fresh);

/* ---- elementwise: n = number of elements. Forward outputs may alias an input. ---- */
void pissa__silu_forward(float *out, const float *inp, size_t n);              /* out = x·σ(x) */
void pissa__silu_backward(float *dinp, const float *dout, const float *inp, size_t n);
void pissa__mul_forward(float *out, const float *a, const float *b, size_t n); /* out = a ⊙ b */
void pissa__mul_backward(float *da, float *db, const float *dout, const float *a, const float *b, size_t n);
void pissa__add_forward(float *out, const float *a, const float *b, size_t n); /* out = a + b */
void pissa__add_backward(float *da, float *db, const float *dout, size_t n, unsigned fresh);
/* Fused SwiGLU of the Llama MLP: out = silu(gate) ⊙ up, without storing silu(gate). */
void pissa__swiglu_forward(float *out, const float *gate, const float *up, size_t n);
void pissa__swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                            size_t n, unsigned fresh);

/* ---- cross-entropy with ignore index −100 (HF causal-LM convention; the caller shifts the labels) ----
 * loss = mean over rows with targets[n] != −100 of lse_n − logits[n, targets[n]], where lse_n is the
 * log-sum-exp of row n (max-subtracted, summed in double). Returns the number of counted rows; with none,
 * *loss = 0 and backward adds nothing. Every target that is not −100 must lie in [0, V) (caller validates).
 * lse of ignored rows is set to 0 and not used. */
#define PISSA_IGNORE_INDEX (-100)
int pissa__cross_entropy_forward(float *loss,            /* scalar */
                                 float *lse,             /* (N) saved */
                                 const float *logits,    /* (N, V) */
                                 const int32_t *targets, /* (N) */
                                 int N, int V);
/* dlogits[n] += dloss·(softmax(logits[n]) − onehot(targets[n])) / count for counted rows; ignored rows get
 * nothing. dloss is the gradient of the final objective with respect to the loss (1 for plain training;
 * e.g. 1/steps for gradient accumulation). */
void pissa__cross_entropy_backward(float *dlogits,         /* (N, V) or NULL */
                                   float dloss,
                                   const float *logits,    /* (N, V) */
                                   const int32_t *targets, /* (N) */
                                   const float *lse,       /* (N) saved */
                                   int N, int V, unsigned fresh); /* fresh: ignored rows are zeroed */

#endif
