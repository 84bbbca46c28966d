/* Internal: a loaded model's pieces, for the paths that run the same maths outside the autograd graph (the
 * generator's one-token forward). Every pointer is borrowed from the model: valid until it is freed or its adapters
 * change. */
#ifndef PISSA_MODEL_INTERNAL_H
#define PISSA_MODEL_INTERNAL_H

#include "pissa/model.h"
#include "weights.h"

/* One projection as the forward applies it: y = x·Wᵀ (+ s·(x·Aᵀ)·Bᵀ with an adapter) (+ bias). */
typedef struct pissa__linear {
    pissa__qweight W;  /* (out, in): the base weight, or the PiSSA residual, in its format (a view) */
    const float *A;    /* (r, in) or NULL: no adapter */
    const float *B;    /* (out, r) */
    const float *bias; /* (out) or NULL */
    int64_t out, in, r;
    float scale;
} pissa__linear;

typedef struct pissa__layer_view {
    const float *in_norm, *post_norm; /* (D) */
    const float *q_norm, *k_norm;     /* (hd) or NULL */
    pissa__linear proj[PISSA_N_PROJ];
} pissa__layer_view;

/* Takes ownership of *W (zeroed on return), on success and on failure alike; PATH names the model. */
pissa_status pissa__model_from_weights(pissa__weights *w, const char *path, pissa_model **out);
void pissa__model_layer(const pissa_model *m, int layer, pissa__layer_view *out);
void pissa__model_ends(const pissa_model *m, pissa__qweight *embed, const float **norm, pissa__qweight *head);
const float *pissa__model_inv_freq(const pissa_model *m); /* (hd/2) */

#endif
