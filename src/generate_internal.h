/* Internal: a generator over a model already in memory (e.g. a model being trained, or weights a test edited). */
#ifndef PISSA_GENERATE_INTERNAL_H
#define PISSA_GENERATE_INTERNAL_H

#include "pissa/generate.h"
#include "pissa/model.h"

/* Takes ownership of M, on success and on failure alike. */
pissa_status pissa__generator_create_from_model(pissa_model *m, int64_t max_seq_len, pissa_generator **out);

#endif
