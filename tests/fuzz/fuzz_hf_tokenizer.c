/* Hugging Face tokenizer folder: the input is tokenizer.json FZ_SEP tokenizer_config.json FZ_SEP
 * generation_config.json; a file whose part is missing (fewer separators) is absent from the folder. The folder is
 * loaded (pissa_tokenizer_load), then a fixed text and the input's last 64 bytes are encoded with and without special
 * tokens, the ids decoded with and without them, and streamed one at a time. Checked: an encoding that fits the
 * bound of pissa_tokenizer_max_tokens has the length a size query gives; decoding succeeds with the size its query
 * gives; every stream call succeeds.
 * Not checked: that the streamed text equals the decoded text. tokenizer.h names where it does not: the stream skips
 * transformers' clean_up_tokenization_spaces (as tokenizers' DecodeStream), and a Strip decoder with start 2 strips
 * every window's start (corpus/hf_tokenizer/found-stream_*; docs/reliability.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

static void decode_both_ways(const pissa_tokenizer *tok, const int32_t *ids, size_t n, int skip) {
    size_t len;
    pissa_tokenizer_decode_text(tok, ids, n, skip, NULL, 0, &len);
    char *text = malloc(len + 1);
    if (!text || pissa_tokenizer_decode_text(tok, ids, n, skip, text, len + 1, &len) != PISSA_OK) abort();
    pissa_token_stream *s;
    if (pissa_token_stream_create(tok, skip, &s) != PISSA_OK) abort();
    char *streamed = NULL; /* a copy of every released byte, so ASan checks them all */
    size_t at = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t k;
        if ((i < n ? pissa_token_stream_put(s, ids[i], &piece, &k) : pissa_token_stream_finish(s, &piece, &k)) !=
                PISSA_OK ||
            !(streamed = realloc(streamed, at + k + 1)))
            abort();
        memcpy(streamed + at, piece, k);
        at += k;
    }
    free(streamed);
    pissa_token_stream_free(s);
    free(text);
}

static void encode_decode(const pissa_tokenizer *tok, const char *text, size_t len, int special) {
    size_t cap = pissa_tokenizer_max_tokens(tok, len), n, again;
    if (cap > (size_t)1 << 20) return; /* the bound is loose for normalizers that grow the text */
    int32_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
    if (!ids) abort();
    if (pissa_tokenizer_encode_text(tok, text, len, special, ids, cap, &n) == PISSA_OK) {
        if (pissa_tokenizer_encode_text(tok, text, len, special, NULL, 0, &again) == PISSA_OK ? n != 0 : again != n)
            abort();
        for (size_t i = 0; i < n; i++) {
            size_t k;
            pissa_tokenizer_decode_piece(tok, i ? ids[i - 1] : -1, ids[i], &k);
            pissa_tokenizer_piece(tok, ids[i], &k);
            pissa_tokenizer_is_special(tok, ids[i]);
        }
        decode_both_ways(tok, ids, n, 0);
        decode_both_ways(tok, ids, n, 1);
    }
    if (pissa_tokenizer_encode(tok, text, len, 1, 1, ids, cap, &n) == PISSA_OK) decode_both_ways(tok, ids, n, 1);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *names[3] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    static char dir[FZ_PATH_MAX], path[3][FZ_PATH_MAX];
    if (!dir[0]) {
        fz_mkdir(dir, "hf_tokenizer");
        for (int i = 0; i < 3; i++) {
            char rel[64];
            snprintf(rel, sizeof rel, "hf_tokenizer/%s", names[i]);
            fz_path(path[i], rel);
        }
    }
    fz_part part[3];
    size_t n_parts = fz_split(data, size, part, 3);
    for (size_t i = 0; i < 3; i++) {
        if (i < n_parts) fz_write(path[i], part[i].p, part[i].n);
        else fz_remove(path[i]);
    }

    pissa_tokenizer *tok;
    if (pissa_tokenizer_load(dir, 0, &tok) != PISSA_OK) return 0;
    static const char text[] = "Hello, world! It's 2024 — the café's naïve 😀 <|im_end|> <s>\n\n  tabs\tand  spaces ";
    encode_decode(tok, text, sizeof text - 1, 1);
    encode_decode(tok, text, sizeof text - 1, 0);
    size_t tail = size < 64 ? size : 64;
    encode_decode(tok, (const char *)data + size - tail, tail, 1);
    for (int w = PISSA_SPECIAL_BOS; w <= PISSA_SPECIAL_PAD; w++) {
        int32_t id = pissa_tokenizer_special_id(tok, (pissa_special_token)w);
        const char *s = pissa_tokenizer_special_token(tok, (pissa_special_token)w);
        if (s) pissa_tokenizer_token_to_id(tok, s, strlen(s));
        pissa_tokenizer_piece(tok, id, NULL);
    }
    const int32_t *stop;
    size_t n_stop;
    pissa_tokenizer_stop_ids(tok, &stop, &n_stop);
    pissa_tokenizer_chat_template(tok);
    pissa_tokenizer_free(tok);
    return 0;
}
