/* libpissa — text generation: a loaded model (pissa/model.h, any supported family) run one token at a time with a
 * KV cache, through the same kernels as the trainable model (so its logits equal the model's at every position),
 * optionally with a PEFT LoRA/PiSSA adapter, and run.c-style sampling and generation.
 *
 * Models: a Hugging Face folder (config.json + safetensors) or a llama2.c checkpoint file (version 0 or 1).
 * Adapter layers compute y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, s = lora_alpha / r (or lora_alpha / √r with use_rslora); the
 * weights are never merged. */
#ifndef PISSA_GENERATE_H
#define PISSA_GENERATE_H

#include "common.h"
#include "model.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pissa_generator pissa_generator;

/* Loads MODEL_PATH (directory: Hugging Face; regular file: llama2.c) with pissa_model_load and, if ADAPTER_DIR is not
 * NULL, the PEFT adapter in it with pissa_model_load_adapter: its rules (PEFT targeting with per-module rank and
 * scale; init_lora_weights "pissa…" redoes PiSSA on the base, as PEFT does) and its refusals.
 * MAX_SEQ_LEN is the KV cache length (positions 0 .. MAX_SEQ_LEN-1); 0, or more than the model's
 * max_position_embeddings, means max_position_embeddings.
 * Caller frees with pissa_generator_free. */
PISSA_API pissa_status pissa_generator_create(const char *model_path, const char *adapter_dir, int64_t max_seq_len,
                                              pissa_generator **out);
/* The same with model load options (OPTS NULL: the defaults), e.g. a base in NF4 (pissa_model_opts.base_dtype). */
PISSA_API pissa_status pissa_generator_create_with_opts(const char *model_path, const char *adapter_dir,
                                                        int64_t max_seq_len, const pissa_model_opts *opts,
                                                        pissa_generator **out);
PISSA_API void pissa_generator_free(pissa_generator *g); /* NULL is a no-op */

PISSA_API int64_t pissa_generator_vocab_size(const pissa_generator *g);
PISSA_API int64_t pissa_generator_max_seq_len(const pissa_generator *g);

/* Runs TOKEN at position POS and writes the vocab_size next-token logits into LOGITS. Keys and values of
 * positions 0 .. POS-1 must have been computed by earlier calls (in any order of restarts: calling with POS
 * overwrites the cache from POS on, so a new sequence simply starts again at 0). */
PISSA_API pissa_status pissa_generator_forward(pissa_generator *g, int32_t token, int64_t pos, float *logits);

/* Called once per emitted token with the bytes it prints as (llama2.c: run.c decode, pieces "<0xHH>" are raw bytes,
 * a leading space after BOS is dropped; tokenizer.json: the text a pissa_token_stream releases for it, so a character
 * split over several tokens comes whole with the last one and the others print as nothing). Return 0 to continue,
 * non-zero to stop generating (not an error). */
typedef int (*pissa_token_fn)(void *user, int32_t token, const char *piece, size_t len);

/* run.c generate(): encodes PROMPT (may be NULL or ""), feeds the prompt tokens, then samples until STEPS positions in
 * total have been run or the tokenizer's end is sampled. llama2.c: the prompt is encoded with BOS, and generation
 * stops at BOS (token 1), as run.c does; every prompt token after BOS and every sampled token is passed to CALLBACK.
 * tokenizer.json: the prompt is encoded as transformers' tokenizer(prompt) does (with BOS only when the tokenizer
 * adds it; an empty prompt starts from BOS, PISSA_ERR_INVALID_ARG without one), generation stops when a sampled token
 * is one of pissa_tokenizer_stop_ids (eos, end-of-turn), which is not passed on; every prompt token (the first
 * included, special ones printing as nothing) and every other sampled token is passed to CALLBACK.
 * STEPS <= 0 or beyond the KV cache means the cache length. Sampling: TEMPERATURE 0 is greedy (argmax); otherwise
 * softmax(logits / TEMPERATURE), then nucleus sampling with TOPP in (0, 1) (run.c's sample_topp), or the whole
 * distribution for TOPP <= 0 or >= 1, with a random generator seeded by SEED (the same seed gives the same text).
 * CALLBACK may be NULL. *N_POSITIONS, if not NULL, receives the number of positions run through the model. */
PISSA_API pissa_status pissa_generate(pissa_generator *g, const pissa_tokenizer *tok, const char *prompt,
                                      int64_t steps, float temperature, float topp, uint64_t seed,
                                      pissa_token_fn callback, void *user, int64_t *n_positions);

/* pissa_generate from prompt tokens already encoded (e.g. a chat template rendered with add_generation_prompt and
 * tokenized without special tokens, pissa_chat_apply): PROMPT_IDS (N >= 1, each in [0, vocab_size)) are fed,
 * then tokens are sampled and stop as in pissa_generate. Only the sampled tokens reach CALLBACK (the reply, not
 * the prompt). */
PISSA_API pissa_status pissa_generate_tokens(pissa_generator *g, const pissa_tokenizer *tok, const int32_t *prompt_ids,
                                             size_t n, int64_t steps, float temperature, float topp, uint64_t seed,
                                             pissa_token_fn callback, void *user, int64_t *n_positions);

#ifdef __cplusplus
}
#endif
#endif
