/* Data sets in TRL's formats (pissa_dataset_load, docs/data.md) through a tokenizer.json: the input is the data file
 * (JSONL of {"messages"}, {"prompt", "completion"} as strings or messages, {"text"}, {"input_ids", "labels"}, or
 * plain text), read with the GPT-2-style tokenizer of tests/reference/tokenizers/gpt2_style (byte-level BPE, a
 * ChatML chat template) and a vocabulary of its size, rows cut at 48 tokens. Every row of a data set that loads is
 * read back (ids in range, labels there or at -100), then the set is packed into rows of 64 tokens and read back
 * (position_ids restart at 0 where each sequence starts and count up within it). The chat template itself is
 * fuzzed by the jinja harness. */
#include <stdlib.h>

#include "fuzz_util.h"

static void check_rows(const pissa_dataset *d, int32_t vocab, int packed) {
    size_t n = pissa_dataset_count(d);
    for (size_t i = 0; i < n; i++) {
        pissa_row r;
        if (pissa_dataset_row(d, i, &r) != PISSA_OK || r.len < 1) abort();
        if (!packed != !r.position_ids) abort();
        for (int64_t t = 0; t < r.len; t++) {
            if (r.input_ids[t] < 0 || r.input_ids[t] >= vocab) abort();
            if (r.labels[t] != PISSA_IGNORE_INDEX && (r.labels[t] < 0 || r.labels[t] >= vocab)) abort();
            if (packed && r.position_ids[t] != 0 && (t == 0 || r.position_ids[t] != r.position_ids[t - 1] + 1))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[FZ_PATH_MAX];
    static pissa_tokenizer *tok;
    if (!tok && pissa_tokenizer_load(PISSA_FUZZ_TOKENIZER, 0, &tok) != PISSA_OK) abort();
    if (!path[0]) fz_path(path, "data.jsonl");
    fz_write(path, data, size);
    int32_t vocab = pissa_tokenizer_vocab_size(tok);
    pissa_data_opts o = pissa_data_default_opts();
    o.max_len = 48;
    pissa_dataset *d, *p;
    if (pissa_dataset_load(path, tok, vocab, &o, &d) != PISSA_OK) return 0;
    check_rows(d, vocab, 0);
    if (pissa_dataset_pack(d, 64, &p) == PISSA_OK) {
        check_rows(p, vocab, 1);
        pissa_dataset_free(p);
    }
    pissa_dataset_free(d);
    return 0;
}
