/* Internal: PEFT's target matching with a config's regular expressions compiled once (peft_target.c), for the code
 * that resolves many modules of one adapter (validation, merging, loading into a model). pissa_peft_resolve (peft.h)
 * is the one-module form. */
#ifndef PISSA_PEFT_TARGET_H
#define PISSA_PEFT_TARGET_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "internal.h"
#include "peft_internal.h"

typedef struct pissa__resolver {
    const pissa_peft_config *cfg;                /* borrowed */
    pissa_target_kind kind;
    pcre2_code *target;                          /* REGEX: fullmatch */
    pcre2_code *layer;                           /* re.match(r".*\.[^.]*\.(\d+)\.") */
    pcre2_code *rank[PISSA_PEFT_MAX_PATTERNS];   /* re.match(rf"(.*\.)?({key})$") */
    pcre2_code *alpha[PISSA_PEFT_MAX_PATTERNS];
    pcre2_match_data *md;
} pissa__resolver;

/* Compiles CFG's patterns (an invalid one is PISSA_ERR_FORMAT naming the field). Free with pissa__resolver_free,
 * also after a failure. */
pissa_status pissa__resolver_init(pissa__resolver *R, const pissa_peft_config *cfg);
void pissa__resolver_free(pissa__resolver *R);
/* pissa_peft_resolve with R's compiled patterns. */
pissa_status pissa__resolve(pissa__resolver *R, const char *module, int *targeted, int64_t *r, double *alpha,
                            double *scale);

#endif
