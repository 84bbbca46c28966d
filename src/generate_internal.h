/* Internal: a generator over weights already in memory (e.g. a model being trained, or weights a test edited). */
#ifndef PISSA_GENERATE_INTERNAL_H
#define PISSA_GENERATE_INTERNAL_H

#include "pissa/generate.h"
#include "pissa/peft.h"
#include "weights.h"

/* Takes ownership of *W (zeroed on return) and of ADAPTER (may be NULL), on success and on failure alike. */
pissa_status pissa__generator_create_from_weights(pissa__weights *w, pissa_peft_adapter *adapter, int64_t max_seq_len,
                                                  pissa_generator **out);

#endif
