/* Small helpers shared by the example programs: option parsing and one-line fatal errors. Programs (unlike
 * the library) may exit. */
#ifndef PISSA_CLI_H
#define PISSA_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "pissa.h"

/* Program name used as the prefix of error lines. */
extern const char *cli_prog;

/* Prints "PROG: message" on stderr and exits with status 2 (usage) or 1 (runtime). */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* What cli_usage_error and cli_fail print: "PROG: MSG", and for CODE 2 a pointer to --help. */
void cli_report(int code, const char *msg);
/* If set, called by cli_usage_error and cli_fail with their exit status and message (without the program name)
 * instead of printing and exiting; it must not return. (pissa-finetune under mpirun: every process ends with the
 * failing process's message.) */
extern void (*cli_fail_hook)(int code, const char *msg);
/* If S is not PISSA_OK: "PROG: WHAT: <library message>" and exit 1. */
void cli_check(pissa_status s, const char *what);

/* Option values; each exits with a usage error naming OPT on bad input. */
int64_t cli_int(const char *opt, const char *val, int64_t min, int64_t max);
double cli_double(const char *opt, const char *val);
uint64_t cli_u64(const char *opt, const char *val);
int cli_qtype(const char *opt, const char *val); /* a pissa_qtype: f32, bf16, f16, nf4, int8 */

/* The usage line of --base-dtype, shared by the programs that load a model. */
#define CLI_BASE_DTYPE_HELP                                                                                            \
    "  --base-dtype T     format of the frozen projections in memory: f32, bf16, f16, nf4 (bitsandbytes NF4,\n"    \
    "                     blocks of 64) or int8 (per-row absmax); default: as the checkpoint stores them\n"

/* Returns the value of option argv[*i] (advancing *i), or exits if it is missing. */
const char *cli_value(int argc, char **argv, int *i);

/* Creates DIR and its parents (mkdir -p), or exits with one line naming the directory. */
void cli_mkdirs(const char *dir);

/* Exits with a usage error naming both options if the output OUT (given as OUT_OPT) is the input IN (IN_OPT) or
 * contains it: a mistyped --out must never overwrite a program's own input. Paths are compared after resolving
 * symlinks, ".", ".." and trailing slashes (an OUT that does not exist yet by its nearest existing ancestor). IN
 * may be NULL (option not given). */
void cli_check_output(const char *out_opt, const char *out, const char *in_opt, const char *in);

/* A program's output folder OUT, written as one transaction (pissa/fileio.h): cli_out_begin starts a new version
 * of OUT that keeps OUT's current entries except those matching DROP (the names this program writes) and returns
 * the folder to write into; cli_out_commit switches it in whole. A failed run (any exit before the commit) drops the
 * new version and leaves OUT exactly as it was; so does kill -9 (the leftover is removed by the next run). One
 * transaction at a time. */
const char *cli_out_begin(const char *out, const char *const *drop);
/* What a program writing a checkpoint into OUT owns there: the weights in any layout, config.json and the companion
 * files cli_copy_companions copies (for DROP). */
#define CLI_CHECKPOINT_FILES                                                                                        \
    "config.json", "model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors",                \
        "generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"
/* ... and a PEFT adapter folder. */
#define CLI_ADAPTER_FILES "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"
void cli_out_commit(void);

/* The adapter_config.json of a PiSSA initial or trained adapter written beside its residual model (as pissa-init and
 * pissa-finetune write them): r, lora_alpha, use_rslora, lora_dropout, target_modules (the projections of MASK, as a
 * list), init_lora_weights true (loading it must not redo the SVD: BASE is already the residual) and
 * base_model_name_or_path BASE. Exits on a bad value. Caller frees with pissa_peft_config_free. */
pissa_peft_config *cli_residual_adapter_config(int64_t r, double alpha, int rslora, double dropout, unsigned mask,
                                               const char *base);

/* Copies the files that travel with a Hugging Face checkpoint (generation_config.json and the tokenizer files)
 * from SRC_DIR to DST_DIR, each atomically, those that exist; exits on a write failure. */
void cli_copy_companions(const char *src_dir, const char *dst_dir);

/* splitmix64 and what is drawn from it: self-contained and the same on every platform, so generated
 * checkpoints and corpora depend only on their seeds. */
uint64_t cli_mix(uint64_t *state);
double cli_uniform(uint64_t *state); /* [0, 1) */
double cli_normal(uint64_t *state);  /* N(0, 1), Box–Muller */

/* The whole file PATH, NUL-terminated (*LEN bytes before the NUL; LEN may be NULL); exits naming the file when it
 * cannot be read. Caller frees. */
char *cli_read_file(const char *path, size_t *len);

/* The tokenizer a program uses: PATH (--tokenizer) when given, else the tokenizer.json of the model folder MODEL
 * when it has one, else NULL (the caller decides whether it needs one). Exits when a tokenizer fails to load;
 * VOCAB_SIZE as pissa_tokenizer_load. Caller frees with pissa_tokenizer_free. */
pissa_tokenizer *cli_tokenizer(const char *path, const char *model, int32_t vocab_size);

/* Seconds since an arbitrary origin (monotonic). */
double cli_now(void);

/* S as a JSON string: in quotes, with '"', '\\' and control characters escaped as Python's json.dumps escapes them
 * (other bytes as they are). Caller frees. */
char *cli_json_quote(const char *s);
/* Prints cli_json_quote(S) to F. */
void cli_json_string(FILE *f, const char *s);

/* Forwards library warnings and errors to stderr ("PROG: warning: ..."). */
void cli_log_to_stderr(pissa_log_level level, const char *msg, void *user);

#endif
