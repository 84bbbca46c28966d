/* Internal: a loaded PEFT adapter mapped onto the projections of a Llama model, for the loaders that apply it
 * (pissa_model_load_adapter, pissa_generator_create): one code path for PEFT's targeting rules and checks. */
#ifndef PISSA_INTEROP_INTERNAL_H
#define PISSA_INTEROP_INTERNAL_H

#include "pissa/interop.h"
#include "weights.h"

/* One projection of one layer: which module of the adapter (if any) applies to it, and with what. */
typedef struct pissa__peft_slot {
    int64_t module; /* index in the adapter (pissa_peft_adapter_module), or -1: no tensors for it */
    int64_t r;      /* the rank the config assigns (r / rank_pattern) */
    double alpha;   /* lora_alpha / alpha_pattern */
    double scale;   /* alpha / r, or alpha / √r with use_rslora */
} pissa__peft_slot;

/* Checks adapter A against the weights W as pissa_peft_adapter_check does (every 2-D weight of W is a candidate
 * module, so a tensor for a module W lacks is PISSA_ERR_NOT_FOUND), refuses with PISSA_ERR_UNSUPPORTED a module
 * that is a weight of W but not one of the 7 projections (e.g. lm_head), and fills SLOTS (L·7, layer-major,
 * projections in the order above). ALLOW_PISSA_INIT accepts init_lora_weights "pissa"/"pissa_niter_N" (the caller
 * redoes that initialisation on the base, as PEFT does); other base-transforming methods are still refused. */
pissa_status pissa__peft_map_llama(const pissa_peft_adapter *a, const pissa__weights *w, int allow_pissa_init,
                                   pissa__peft_slot *slots);

#endif
