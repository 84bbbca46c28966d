/* Plain-text training data (pissa_dataset_load_text): the input's first byte picks the sequence length (2..65), the
 * rest is the text file, encoded with a tiny stories260K-like tokenizer (built and loaded once) and cut into rows.
 * Every row is read back: SEQ_LEN ids of the vocabulary each. */
#include <stdlib.h>

#include "fuzz_util.h"

static pissa_tokenizer *tok;

static void free_tokenizer(void) { pissa_tokenizer_free(tok); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[FZ_PATH_MAX];
    if (!tok) {
        char tok_path[FZ_PATH_MAX];
        size_t n;
        unsigned char *bytes = fz_tiny_tokenizer(&n);
        fz_write(fz_path(tok_path, "tokenizer.bin"), bytes, n);
        free(bytes);
        if (pissa_tokenizer_load(tok_path, 0, &tok) != PISSA_OK) abort();
        atexit(free_tokenizer);
        fz_path(path, "input.txt");
    }
    if (size < 1) return 0;
    int64_t seq_len = 2 + data[0] % 64;
    fz_write(path, data + 1, size - 1);
    pissa_dataset *d;
    if (pissa_dataset_load_text(path, tok, seq_len, &d) != PISSA_OK) abort(); /* any text cuts into rows */
    for (size_t i = 0; i < pissa_dataset_count(d); i++) {
        pissa_row row;
        if (pissa_dataset_row(d, i, &row) != PISSA_OK || row.len != seq_len) abort();
        for (int64_t t = 0; t < row.len; t++)
            if (row.input_ids[t] < 0 || row.input_ids[t] >= pissa_tokenizer_vocab_size(tok)) abort();
    }
    pissa_dataset_free(d);
    return 0;
}
