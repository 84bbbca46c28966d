/* Internal: the fields of a PEFT adapter_config.json (pissa_peft_config is opaque in the public API; peft.c reads
 * and writes them, and the library's own code uses them directly). Limits here are internal and may grow. */
#ifndef PISSA_PEFT_INTERNAL_H
#define PISSA_PEFT_INTERNAL_H

#include "pissa/peft.h"

typedef enum pissa_target_kind {
    PISSA_TARGET_LIST = 0,       /* target_modules is a JSON list of module-name suffixes */
    PISSA_TARGET_REGEX = 1,      /* a string other than "all-linear": a full-match regex */
    PISSA_TARGET_ALL_LINEAR = 2, /* "all-linear" */
} pissa_target_kind;

#define PISSA_PEFT_MAX_PATTERNS 64

typedef struct pissa_peft_pattern {
    char key[128];
    double value;
} pissa_peft_pattern;

struct pissa_peft_config {
    int64_t r;
    double lora_alpha;
    double lora_dropout;
    int use_rslora;
    int use_dora;
    int fan_in_fan_out;
    char bias[16];                 /* "none" */
    char init_lora_weights[32];    /* "true", "false", "pissa", "pissa_niter_4", "gaussian", ... */
    pissa_target_kind target_kind;
    char target_modules[1024];     /* LIST: comma-separated names; REGEX: the pattern; ALL_LINEAR: "all-linear" */
    char task_type[32];            /* "CAUSAL_LM" */
    char base_model_name_or_path[512];
    int64_t n_rank_pattern, n_alpha_pattern;
    pissa_peft_pattern rank_pattern[PISSA_PEFT_MAX_PATTERNS];
    pissa_peft_pattern alpha_pattern[PISSA_PEFT_MAX_PATTERNS];
    int has_layers_to_transform;
    int64_t n_layers_to_transform;
    int64_t layers_to_transform[256];
    int has_modules_to_save;       /* modules_to_save present and not null */
    int has_lora_bias;             /* lora_bias true */
};


/* PEFT's LoraConfig for a causal LM (what pissa_peft_config_create returns), by value. */
pissa_peft_config pissa__peft_config_default(void);
/* Parses adapter_config.json text into *OUT (unchanged on failure). */
pissa_status pissa__peft_config_parse_into(const char *json, size_t len, const char *source, pissa_peft_config *out);

#endif
