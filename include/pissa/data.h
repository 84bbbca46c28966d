/* libpissa — training data: rows of token ids with labels, read from JSONL in the formats TRL's SFTTrainer takes
 * (pissa_dataset_load, docs/data.md), from pre-tokenized JSONL, or cut from plain text; packing.
 *
 * A row is input_ids (len) and labels (len) aligned as in Hugging Face causal-LM training (docs/model.md):
 * position t predicts labels[t + 1]; a label of PISSA_IGNORE_INDEX (-100) is not a target.
 *
 * JSONL: one object per line, {"input_ids": [int, ...], "labels": [int, ...]}. "labels" is optional (then it
 * equals input_ids); it must have the same length as input_ids. Ids must be integers in [0, V); labels integers in
 * [0, V) or -100. input_ids must not be empty. Other keys are ignored. Blank lines (only whitespace) are skipped.
 * A bad row fails the whole load with PISSA_ERR_FORMAT and a message "FILE:LINE: what is wrong".
 *
 * Plain text: the whole text is encoded ONCE with the tokenizer and its special tokens (pissa_tokenizer_encode_text
 * with add_special_tokens: for llama2.c, BOS first, one dummy prefix, no EOS — exactly run.c's encode(text, bos=1,
 * eos=0) on the whole text; for a tokenizer.json, what transformers' tokenizer(text)["input_ids"] gives, which adds
 * BOS for Llama-2 but nothing for Qwen; see tokenizer.h), giving the stream t[0..N). It is cut
 * into windows of T tokens that overlap by one token: row i = t[i(T-1) .. i(T-1) + T), labels = input_ids.
 * Under the HF shift row i predicts t[i(T-1) + 1 .. (i+1)(T-1)], so across rows every token after the first is a
 * target exactly once and no next-token pair is lost at a row boundary (the same as llama2.c's training batches
 * x = chunk[:-1], y = chunk[1:] with chunks of T tokens). Only row 0 starts with BOS (if any); later rows start
 * mid-text.
 * Rows = floor((N - 1) / (T - 1)); the trailing tokens that do not fill a whole window are dropped. T >= 2. */
#ifndef PISSA_DATA_H
#define PISSA_DATA_H

#include "common.h"
#include "tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PISSA_IGNORE_INDEX (-100)

typedef struct pissa_dataset pissa_dataset;

/* One row. Pointers are borrowed from the dataset, valid until pissa_dataset_free; labels may point to the same
 * memory as input_ids. position_ids is NULL except in a packed data set (pissa_dataset_pack), where a row holds
 * several sequences one after the other and position_ids gives each token's position in its own sequence. */
typedef struct pissa_row {
    const int32_t *input_ids;    // (len)
    const int32_t *labels;       // (len)
    int64_t len;
    const int32_t *position_ids; // (len) or NULL
} pissa_row;

/* Reads a JSONL file of pre-tokenized rows; VOCAB_SIZE (> 0) bounds the ids. Caller frees with
 * pissa_dataset_free. */
PISSA_API pissa_status pissa_dataset_load_jsonl(const char *path, int32_t vocab_size, pissa_dataset **out);

/* N rows given in memory: row i is IDS[OFFSETS[i] .. OFFSETS[i+1]) (OFFSETS has N + 1 entries, OFFSETS[0] = 0), its
 * labels the same positions of LABELS, or its input_ids when LABELS is NULL. Checked by the rules of a JSONL row
 * (non-empty; ids in [0, VOCAB_SIZE); labels there or -100): PISSA_ERR_FORMAT naming the row and position. The
 * data is copied. Caller frees with pissa_dataset_free. */
PISSA_API pissa_status pissa_dataset_from_rows(const int32_t *ids, const int32_t *labels, const int64_t *offsets,
                                               size_t n, int32_t vocab_size, pissa_dataset **out);
/* Encodes LEN bytes of TEXT with TOK and cuts rows of SEQ_LEN tokens as described above. A text too short for one
 * row gives an empty dataset (0 rows), not an error. With a tokenizer.json the text must be valid UTF-8
 * (PISSA_ERR_INVALID_ARG naming the byte). Caller frees with pissa_dataset_free. */
PISSA_API pissa_status pissa_dataset_from_text(const pissa_tokenizer *tok, const char *text, size_t len,
                                               int64_t seq_len, pissa_dataset **out);
/* The same for the whole contents of the file PATH (PISSA_ERR_FORMAT naming the file and byte when a tokenizer.json
 * meets text that is not UTF-8). */
PISSA_API pissa_status pissa_dataset_load_text(const char *path, const pissa_tokenizer *tok, int64_t seq_len,
                                               pissa_dataset **out);

/* ---- the formats of TRL's SFTTrainer (docs/data.md) ----
 *
 * One JSON object per line, its format told by its keys (TRL 1.x, trl/trainer/sft_trainer.py and data_utils.py):
 *   {"input_ids": [...], "labels": [...]}  pre-tokenized, as pissa_dataset_load_jsonl (labels optional);
 *   {"text": "..."}                        language modeling: the text with the tokenizer's eos token appended
 *                                          (unless it ends with it), tokenized with the special tokens
 *                                          (tokenizer(text)); every token is a target;
 *   {"prompt": "...", "completion": "..."} the completion gets the eos token as a text does; the row is
 *                                          tokenizer(prompt + completion), and with completion_only_loss only the
 *                                          tokens after the len(tokenizer(prompt)) first are targets;
 *   {"messages": [{"role", "content"}, ...]}  the tokenizer's chat template rendered with add_generation_prompt false
 *                                          and tokenized without special tokens (apply_chat_template(tokenize=True));
 *                                          with assistant_only_loss only the assistant turns are targets, each
 *                                          with its end-of-turn token (see pissa_row_encoder_encode);
 *   {"prompt": [messages], "completion": [messages]}  conversational prompt/completion: the prompt rendered with
 *                                          add_generation_prompt true gives the prompt's tokens, prompt + completion
 *                                          rendered without it the row; targets as for a string prompt/completion
 *                                          (and, with assistant_only_loss, only in assistant turns).
 * Conversational rows may carry "tools" (a list, or a JSON string of one) and "chat_template_kwargs" (an object of
 * extra template variables, e.g. {"enable_thinking": false}), which reach the template as in TRL. Other keys are
 * ignored. A llama2.c tokenizer has no eos token string: its text and completion rows end with EOS (id 2), as
 * run.c's encode(text, bos=1, eos=1); it has no chat template. */

typedef enum pissa_data_format {
    PISSA_DATA_AUTO = 0,  /* JSONL when the first line that is not blank is a JSON object, else plain text */
    PISSA_DATA_JSONL = 1, /* one JSON object per line, in any of the formats above (mixed freely) */
    PISSA_DATA_TEXT = 2,  /* plain text, cut into rows as pissa_dataset_load_text */
} pissa_data_format;

/* "auto", "jsonl" or "text". */
PISSA_API pissa_status pissa_data_format_parse(const char *s, pissa_data_format *out);
/* The format PISSA_DATA_AUTO reads the file PATH as: PISSA_DATA_JSONL when its first line that is not blank is a
 * whole JSON object (or it is blank), else PISSA_DATA_TEXT. */
PISSA_API pissa_status pissa_data_detect_format(const char *path, pissa_data_format *out);

typedef struct pissa_data_opts {
    pissa_data_format format;  /* default AUTO */
    int64_t max_len;           /* JSONL: a longer row is cut to its first max_len tokens (TRL's max_length with
                                  truncation_mode "keep_start"); 0 (default): no limit. Plain text: the row
                                  length T (>= 2, required) */
    int completion_only_loss;  /* prompt/completion rows: targets in the completion only (default 1, as TRL) */
    int assistant_only_loss;   /* conversational rows: targets in the assistant turns only (default 1; TRL's
                                  default is 0: every token) */
    const char *chat_template; /* Jinja source used instead of the tokenizer's chat template (TRL's
                                  chat_template_path); NULL (default): the tokenizer's. Borrowed for the call */
} pissa_data_opts;

PISSA_API pissa_data_opts pissa_data_default_opts(void);

/* Reads the data set at PATH in any format above (OPTS NULL: the defaults). TOK (may be NULL when every row is
 * pre-tokenized) encodes the rows that need it; VOCAB_SIZE (> 0, the model's) bounds every id. A bad row fails the
 * whole load with PISSA_ERR_FORMAT "FILE:LINE: what is wrong" (PISSA_ERR_INVALID_ARG for a template that rejects the
 * conversation through raise_exception). Rows longer than max_len are cut and counted in one warning through the
 * log callback; a row the cut leaves without a target is dropped (as TRL drops fully masked rows) and counted in
 * the same warning. Caller frees with pissa_dataset_free. */
PISSA_API pissa_status pissa_dataset_load(const char *path, const pissa_tokenizer *tok, int32_t vocab_size,
                                          const pissa_data_opts *opts, pissa_dataset **out);

/* One row of the formats above, encoded as pissa_dataset_load encodes it (without the max_len cut): what
 * `pissa-tokenize --chat` prints. An encoder holds the parsed chat template; it borrows TOK (may be NULL: then only
 * pre-tokenized rows are accepted), which must outlive it. Caller frees with pissa_row_encoder_free. One thread at
 * a time. */
typedef struct pissa_row_encoder pissa_row_encoder;
PISSA_API pissa_status pissa_row_encoder_create(const pissa_tokenizer *tok, const pissa_data_opts *opts,
                                                pissa_row_encoder **out);
PISSA_API void pissa_row_encoder_free(pissa_row_encoder *e); /* NULL is a no-op */
/* Encodes the JSON object JSON (LEN bytes) into *ROW, whose arrays are borrowed from E and valid until the next call
 * on E (position_ids NULL). Errors: PISSA_ERR_FORMAT naming the field at fault.
 * Assistant turns of a template without {% generation %} blocks: the turn of messages[i] starts where
 * render(messages[:i], add_generation_prompt=True) ends, which must be a prefix of the whole rendering, and ends after
 * the first end-of-turn token text that follows (the tokenizer's pissa_tokenizer_stop_ids: <|im_end|>, <|eot_id|>,
 * </s>, ...), which must come before the next message's text; a conversation where either cannot be found, or whose
 * assistant text holds an end-of-turn token, is refused rather than guessed. With {% generation %} blocks, the
 * blocks' text, as transformers' return_assistant_tokens_mask. The targets are the tokens holding a byte of those
 * spans. */
PISSA_API pissa_status pissa_row_encoder_encode(pissa_row_encoder *e, const char *json, size_t len, pissa_row *row);

/* Packs the rows of D into rows of at most SEQ_LEN tokens without letting one row see another (TRL's packing with
 * padding_free: position_ids restart at 0 at each packed row; docs/data.md): best-fit decreasing as TRL's "bfd"
 * strategy (rows by decreasing length, each into the fullest packed row it fits, a new one when none), rows longer
 * than SEQ_LEN cut to it (counted in one warning). Each packed row's position_ids count from 0 in each of its rows;
 * labels are kept (the model ignores the label at each sequence start). Caller frees with pissa_dataset_free. */
PISSA_API pissa_status pissa_dataset_pack(const pissa_dataset *d, int64_t seq_len, pissa_dataset **out);
/* 1 for a data set made by pissa_dataset_pack (its rows have position_ids), else 0. */
PISSA_API int pissa_dataset_is_packed(const pissa_dataset *d);

PISSA_API void pissa_dataset_free(pissa_dataset *d); /* NULL is a no-op */

PISSA_API size_t pissa_dataset_count(const pissa_dataset *d);
/* Sum of the row lengths, and the longest row (0 for an empty dataset). */
PISSA_API int64_t pissa_dataset_total_tokens(const pissa_dataset *d);
PISSA_API int64_t pissa_dataset_max_len(const pissa_dataset *d);
/* Row I; PISSA_ERR_INVALID_ARG if I >= count. */
PISSA_API pissa_status pissa_dataset_row(const pissa_dataset *d, size_t i, pissa_row *out);
/* Targets of the rows cut to SEQ tokens (SEQ <= 0: whole rows): the labels at positions 1 .. min(len, SEQ) - 1 that
 * are not PISSA_IGNORE_INDEX (position t predicts labels[t + 1]), and in a packed data set not at the start of a
 * packed sequence (position_ids 0), which the model ignores. 0 for NULL or an empty dataset: a trainer and an
 * evaluation refuse such a set. */
PISSA_API int64_t pissa_dataset_target_count(const pissa_dataset *d, int64_t seq);

/* Fills PERM with a permutation of 0..n-1 that depends only on SEED: Fisher–Yates (for i = n-1 down to 1, swap
 * perm[i] with perm[j], j = r mod (i + 1) for the first 64-bit draw r >= 2^64 mod (i + 1)) driven by xoshiro256**
 * (Blackman & Vigna) whose four state words are the first four outputs of splitmix64 started at SEED. Use it to
 * visit rows in a reproducible order each epoch (e.g. seed + epoch). The order is pinned (test_data checks it
 * against tests/reference/make_shuffle_reference.py): a resumed training run depends on it. */
PISSA_API void pissa_shuffle_indices(size_t *perm, size_t n, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
