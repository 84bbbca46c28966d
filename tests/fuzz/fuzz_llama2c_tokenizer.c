/* llama2.c tokenizer file: the input is the file, loaded with the vocabulary size inferred (pissa_tokenizer_load
 * with 0). A tokenizer that loads encodes and decodes a fixed text and the input's last bytes as text, with the
 * size queries the programs use (the second call must succeed with the size the first one gave). */
#include <stdlib.h>

#include "fuzz_util.h"

static void round_trip(const pissa_tokenizer *tok, const char *text, size_t len) {
    size_t n, out_len;
    pissa_tokenizer_encode(tok, text, len, 1, 1, NULL, 0, &n);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids || pissa_tokenizer_encode(tok, text, len, 1, 1, ids, n, &n) != PISSA_OK) abort();
    for (size_t i = 0; i < n; i++) pissa_tokenizer_decode_piece(tok, i ? ids[i - 1] : -1, ids[i], &out_len);
    pissa_tokenizer_decode(tok, ids, n, NULL, 0, &out_len);
    char *buf = malloc(out_len + 1);
    if (!buf || pissa_tokenizer_decode(tok, ids, n, buf, out_len + 1, &out_len) != PISSA_OK) abort();
    free(buf);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[FZ_PATH_MAX];
    if (!path[0]) fz_path(path, "tokenizer.bin");
    fz_write(path, data, size);
    pissa_tokenizer *tok;
    if (pissa_tokenizer_load(path, 0, &tok) != PISSA_OK) return 0;
    static const char text[] = "Once upon a time, Lily saw a big \"red\" ball.\nThe café — ünïcödé \xF0\x9F\x98\x80!";
    round_trip(tok, text, sizeof text - 1);
    size_t tail = size < 64 ? size : 64;
    round_trip(tok, (const char *)data + size - tail, tail);
    pissa_tokenizer_piece(tok, pissa_tokenizer_vocab_size(tok) - 1, NULL);
    pissa_tokenizer_score(tok, 0);
    pissa_tokenizer_free(tok);
    return 0;
}
