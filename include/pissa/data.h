/* libpissa — training data: rows of token ids with labels, read from JSONL or cut from plain text.
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
 * memory as input_ids. */
typedef struct pissa_row {
    const int32_t *input_ids; // (len)
    const int32_t *labels;    // (len)
    int64_t len;
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

PISSA_API void pissa_dataset_free(pissa_dataset *d); /* NULL is a no-op */

PISSA_API size_t pissa_dataset_count(const pissa_dataset *d);
/* Sum of the row lengths, and the longest row (0 for an empty dataset). */
PISSA_API int64_t pissa_dataset_total_tokens(const pissa_dataset *d);
PISSA_API int64_t pissa_dataset_max_len(const pissa_dataset *d);
/* Row I; PISSA_ERR_INVALID_ARG if I >= count. */
PISSA_API pissa_status pissa_dataset_row(const pissa_dataset *d, size_t i, pissa_row *out);

/* Fills PERM with a permutation of 0..n-1 that depends only on SEED: Fisher–Yates (for i = n-1 down to 1, swap
 * perm[i] with perm[j], j uniform in [0, i] by rejection sampling on 64-bit draws) driven by libpissa's
 * xoshiro256** generator seeded with SEED. Use it to visit rows in a reproducible order each epoch
 * (e.g. seed + epoch). */
PISSA_API void pissa_shuffle_indices(size_t *perm, size_t n, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
