/* llama2.c tokenizer: file validation, merges by score (leftmost on ties), byte fallback, BOS/EOS, the capacity
 * contract, decoding; against a naive transliteration of run.c's O(n²) merge loop on random texts, and against
 * tok512 encodings written by tests/reference/llama2c_tokenizer_ref.py (pure Python). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/resource.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#define TOK512 PISSA_SHARED_DATA_DIR "/stories260K/tok512.bin"
#define SHAKESPEARE PISSA_SHARED_DATA_DIR "/tinyshakespeare/input.txt"

/* ---- a hand-made tokenizer file ---- */

typedef struct {
    const char *piece;
    float score;
} extra_piece;

typedef struct {
    unsigned char *b;
    size_t n, cap;
} bytes_buf;

static void put(bytes_buf *w, const void *p, size_t n) {
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2;
        w->b = realloc(w->b, w->cap);
        assert_non_null(w->b);
    }
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

static void put_i32(bytes_buf *w, int32_t v) { put(w, &v, 4); } /* the test machine is little-endian */
static void put_f32(bytes_buf *w, float v) { put(w, &v, 4); }

static void put_token(bytes_buf *w, float score, const char *piece, size_t len) {
    put_f32(w, score);
    put_i32(w, (int32_t)len);
    put(w, piece, len);
}

/* <unk>, BOS, EOS, the 256 byte tokens, then EXTRA (ids 259, 260, ...). */
static bytes_buf make_tokenizer_bytes(const extra_piece *extra, int n_extra, int32_t max_len) {
    bytes_buf w = {0};
    put_i32(&w, max_len);
    put_token(&w, 0, "<unk>", 5);
    put_token(&w, 0, "\n<s>\n", 5);
    put_token(&w, 0, "\n</s>\n", 6);
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        put_token(&w, 0, s, 6);
    }
    for (int i = 0; i < n_extra; i++) put_token(&w, extra[i].score, extra[i].piece, strlen(extra[i].piece));
    return w;
}

static pissa_tokenizer *load_extra(const char *dir, const char *name, const extra_piece *extra, int n_extra) {
    bytes_buf w = make_tokenizer_bytes(extra, n_extra, 8);
    char *path = tu_path(dir, name);
    tu_write_bytes(path, w.b, w.n);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(path, 259 + n_extra, &tok));
    free(w.b);
    free(path);
    return tok;
}

static size_t encode(const pissa_tokenizer *tok, const char *text, int bos, int eos, int32_t *ids, size_t cap) {
    size_t n;
    assert_ok(pissa_tokenizer_encode(tok, text, strlen(text), bos, eos, ids, cap, &n));
    return n;
}

#define ID(k) (259 + (k)) /* id of extra piece k */

static void assert_ids(const int32_t *got, size_t n, const int32_t *want, size_t m) {
    if (n != m) fail_msg("encoding has %zu tokens, expected %zu", n, m);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) fail_msg("token %zu is %d, expected %d", i, got[i], want[i]);
}

static void merges_follow_scores_and_ties_go_left(void **state) {
    (void)state;
    char *dir = tu_tempdir("tok");
    /* "ab" outranks "bc": " abc" -> " ", "ab", "c" */
    const extra_piece ab_first[] = {{" ", -10}, {"a", -11}, {"b", -12}, {"c", -13}, {"ab", 2}, {"bc", 1}, {"aa", 0}};
    pissa_tokenizer *t1 = load_extra(dir, "ab.bin", ab_first, 7);
    int32_t ids[16];
    size_t n = encode(t1, "abc", 0, 0, ids, 16);
    assert_ids(ids, n, (int32_t[]){ID(0), ID(4), ID(3)}, 3);
    /* equal candidates ("aa" at positions 1 and 2): run.c's strict '>' scan keeps the leftmost */
    n = encode(t1, "aaa", 0, 0, ids, 16);
    assert_ids(ids, n, (int32_t[]){ID(0), ID(6), ID(1)}, 3);
    /* the same vocabulary with the two scores swapped: " abc" -> " ", "a", "bc" */
    const extra_piece bc_first[] = {{" ", -10}, {"a", -11}, {"b", -12}, {"c", -13}, {"ab", 1}, {"bc", 2}, {"aa", 0}};
    pissa_tokenizer *t2 = load_extra(dir, "bc.bin", bc_first, 7);
    n = encode(t2, "abc", 0, 0, ids, 16);
    assert_ids(ids, n, (int32_t[]){ID(0), ID(1), ID(5)}, 3);
    /* merges chain: once "ab" exists, "ab"+"c" can merge when "abc" is a piece */
    const extra_piece chain[] = {{" ", -10}, {"a", -11}, {"b", -12}, {"c", -13}, {"ab", 2}, {"abc", 1}, {" abc", 0.5f}};
    pissa_tokenizer *t3 = load_extra(dir, "chain.bin", chain, 7);
    n = encode(t3, "abc", 0, 0, ids, 16);
    assert_ids(ids, n, (int32_t[]){ID(6)}, 1);
    /* a score at or below run.c's initial best (-1e10) never merges */
    const extra_piece low[] = {{" ", 0}, {"a", 0}, {"aa", -1e10f}, {" a", -2e10f}};
    pissa_tokenizer *t4 = load_extra(dir, "low.bin", low, 4);
    n = encode(t4, "aa", 0, 0, ids, 16);
    assert_ids(ids, n, (int32_t[]){ID(0), ID(1), ID(1)}, 3);
    pissa_tokenizer_free(t1);
    pissa_tokenizer_free(t2);
    pissa_tokenizer_free(t3);
    pissa_tokenizer_free(t4);
    tu_rmtree(dir);
    free(dir);
}

static void byte_fallback_bos_eos_and_dummy_prefix(void **state) {
    (void)state;
    char *dir = tu_tempdir("tok");
    const extra_piece ex[] = {{" ", -1}, {"a", -2}, {"\xc3\xa9", -3} /* é */};
    pissa_tokenizer *tok = load_extra(dir, "t.bin", ex, 3);
    int32_t ids[32];
    /* é is a piece: one token; ü (C3 BC) is not: its two bytes as byte tokens (byte + 3) */
    size_t n = encode(tok, "a\xc3\xa9\xc3\xbc", 1, 1, ids, 32);
    assert_ids(ids, n, (int32_t[]){1, ID(0), ID(1), ID(2), 0xC3 + 3, 0xBC + 3, 2}, 7);
    /* a 4-byte emoji (F0 9F 98 80) -> 4 byte tokens; a stray continuation byte is a code point of its own */
    n = encode(tok, "\xf0\x9f\x98\x80\x80", 0, 0, ids, 32);
    assert_ids(ids, n, (int32_t[]){ID(0), 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3, 0x80 + 3}, 6);
    /* the dummy prefix only for a non-empty text */
    n = encode(tok, "", 1, 1, ids, 32);
    assert_ids(ids, n, (int32_t[]){1, 2}, 2);
    n = encode(tok, "", 0, 0, ids, 32);
    assert_int_equal(n, 0);
    /* a NUL byte inside a length-delimited text is the byte token <0x00> */
    size_t m;
    assert_ok(pissa_tokenizer_encode(tok, "a\0a", 3, 0, 0, ids, 32, &m));
    assert_ids(ids, m, (int32_t[]){ID(0), ID(1), 3, ID(1)}, 4);
    pissa_tokenizer_free(tok);

    /* no " " in the vocabulary: the dummy prefix falls back to <0x20> (run.c would emit -1) */
    const extra_piece nospace[] = {{"a", 0}};
    tok = load_extra(dir, "nospace.bin", nospace, 1);
    n = encode(tok, "a", 0, 0, ids, 32);
    assert_ids(ids, n, (int32_t[]){' ' + 3, ID(0)}, 2);
    pissa_tokenizer_free(tok);
    tu_rmtree(dir);
    free(dir);
}

static void encode_capacity_contract_and_size_query(void **state) {
    (void)state;
    char *dir = tu_tempdir("tok");
    const extra_piece ex[] = {{" ", -1}, {"x", -2}};
    pissa_tokenizer *tok = load_extra(dir, "t.bin", ex, 2);
    const char *text = "x\xff x"; /* ' ', 'x', 0xFF byte, ' ', 'x' -> 5 tokens, +BOS +EOS */
    size_t n = 999;
    assert_int_equal(pissa_tokenizer_encode(tok, text, strlen(text), 1, 1, NULL, 0, &n), PISSA_ERR_INVALID_ARG);
    assert_int_equal(n, 7);
    assert_true(n <= PISSA_TOKENIZER_MAX_TOKENS(strlen(text)));
    int32_t ids[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
    assert_int_equal(pissa_tokenizer_encode(tok, text, strlen(text), 1, 1, ids, 6, &n), PISSA_ERR_INVALID_ARG);
    assert_int_equal(n, 7);
    assert_int_equal(ids[0], -7); /* nothing written on failure */
    assert_ok(pissa_tokenizer_encode(tok, text, strlen(text), 1, 1, ids, 7, &n));
    assert_ids(ids, n, (int32_t[]){1, ID(0), ID(1), 0xFF + 3, ID(0), ID(1), 2}, 7);
    assert_int_equal(ids[7], -7);
    assert_int_equal(pissa_tokenizer_encode(tok, NULL, 3, 1, 1, ids, 8, &n), PISSA_ERR_INVALID_ARG);
    pissa_tokenizer_free(tok);
    tu_rmtree(dir);
    free(dir);
}

static void decode_strips_space_after_bos_and_maps_byte_tokens(void **state) {
    (void)state;
    char *dir = tu_tempdir("tok");
    const extra_piece ex[] = {{" ", -1}, {" hi", -2}, {"<0x41>x", -3}};
    pissa_tokenizer *tok = load_extra(dir, "t.bin", ex, 3);
    size_t len;
    const char *s = pissa_tokenizer_decode_piece(tok, 1, ID(1), &len);
    assert_int_equal(len, 2);
    assert_memory_equal(s, "hi", 2);
    s = pissa_tokenizer_decode_piece(tok, ID(0), ID(1), &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, " hi", 3);
    s = pissa_tokenizer_decode_piece(tok, 5, 3, &len); /* <0x00> -> one NUL byte */
    assert_int_equal(len, 1);
    assert_int_equal(s[0], 0);
    s = pissa_tokenizer_decode_piece(tok, 1, 0x0A + 3, &len);
    assert_int_equal(len, 1);
    assert_int_equal(s[0], '\n');
    s = pissa_tokenizer_decode_piece(tok, 1, ID(2), &len); /* not exactly <0xHH>: kept as text */
    assert_int_equal(len, 7);
    assert_memory_equal(s, "<0x41>x", 7);
    s = pissa_tokenizer_decode_piece(tok, -1, 2, &len); /* EOS decodes to its piece, as in run.c */
    assert_int_equal(len, 6);
    assert_null(pissa_tokenizer_decode_piece(tok, 1, 262, &len));
    assert_null(pissa_tokenizer_decode_piece(tok, 1, -1, &len));

    /* whole sequence: BOS/EOS give no bytes; size query; the round trip of an encoding */
    const char *text = " hi\n\xc3\xa9 hi";
    int32_t ids[32];
    size_t n = encode(tok, text, 1, 1, ids, 32);
    size_t need;
    assert_int_equal(pissa_tokenizer_decode(tok, ids, n, NULL, 0, &need), PISSA_ERR_INVALID_ARG);
    assert_int_equal(need, strlen(text));
    char buf[64];
    memset(buf, 'Z', sizeof buf);
    assert_int_equal(pissa_tokenizer_decode(tok, ids, n, buf, need, &len), PISSA_ERR_INVALID_ARG);
    assert_int_equal(buf[0], 'Z');
    assert_ok(pissa_tokenizer_decode(tok, ids, n, buf, need + 1, &len));
    assert_string_equal(buf, text);
    int32_t bad[2] = {1, 999};
    assert_int_equal(pissa_tokenizer_decode(tok, bad, 2, buf, sizeof buf, &len), PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "position 1"));
    pissa_tokenizer_free(tok);
    tu_rmtree(dir);
    free(dir);
}

/* ---- file validation ---- */

static void expect_format_error(const char *path, int32_t V, const char *needle) {
    pissa_tokenizer *tok = (pissa_tokenizer *)(uintptr_t)1;
    pissa_status s = pissa_tokenizer_load(path, V, &tok);
    if (s != PISSA_ERR_FORMAT) fail_msg("expected PISSA_ERR_FORMAT for %s, got %s", path, pissa_status_name(s));
    assert_null(tok);
    if (!strstr(pissa_last_error(), path)) fail_msg("message does not name the file: %s", pissa_last_error());
    if (needle && !strstr(pissa_last_error(), needle))
        fail_msg("message lacks \"%s\": %s", needle, pissa_last_error());
}

static void load_rejects_truncated_and_inconsistent_files(void **state) {
    (void)state;
    char *dir = tu_tempdir("tok");
    char *path = tu_path(dir, "t.bin");
    const extra_piece ex[] = {{" ", -1}, {"ab", -2}, {"abc", -3}};
    bytes_buf w = make_tokenizer_bytes(ex, 3, 6);
    int32_t V = 262;
    tu_write_bytes(path, w.b, w.n);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(path, V, &tok));
    assert_int_equal(pissa_tokenizer_vocab_size(tok), V);
    size_t len;
    assert_string_equal(pissa_tokenizer_piece(tok, 261, &len), "abc");
    assert_int_equal(len, 3);
    assert_true(pissa_tokenizer_score(tok, 261) == -3.0f);
    assert_true(isnan(pissa_tokenizer_score(tok, 262)));
    assert_null(pissa_tokenizer_piece(tok, 262, NULL));
    pissa_tokenizer_free(tok);
    /* V = 0 infers the vocabulary size from the file */
    assert_ok(pissa_tokenizer_load(path, 0, &tok));
    assert_int_equal(pissa_tokenizer_vocab_size(tok), V);
    pissa_tokenizer_free(tok);
    /* a model with fewer tokens than the file reads only its V (run.c ignores the rest) */
    assert_ok(pissa_tokenizer_load(path, 260, &tok));
    assert_int_equal(pissa_tokenizer_vocab_size(tok), 260);
    pissa_tokenizer_free(tok);

    expect_format_error(path, V + 1, "token 262 is missing");
    /* every strict prefix of the file is truncated: with V given, and (off token boundaries) with V = 0 */
    size_t last_token_start = w.n - (8 + 3);
    for (size_t cut = 0; cut < w.n; cut++) {
        tu_write_bytes(path, w.b, cut);
        expect_format_error(path, V, NULL);
        if (cut > last_token_start) expect_format_error(path, 0, "token 261");
    }
    /* negative piece length in token 260 ("ab"), at offset 4 + 259 headers+pieces */
    size_t off260 = w.n - (8 + 3) - (8 + 2);
    int32_t neg = -5;
    memcpy(w.b + off260 + 4, &neg, 4);
    tu_write_bytes(path, w.b, w.n);
    expect_format_error(path, V, "token 260 has negative length");
    /* a huge length runs past the end of the file */
    int32_t huge = INT32_MAX;
    memcpy(w.b + off260 + 4, &huge, 4);
    tu_write_bytes(path, w.b, w.n);
    expect_format_error(path, V, "token 260");
    int32_t two = 2;
    memcpy(w.b + off260 + 4, &two, 4);
    /* a piece longer than max_token_length (run.c's merge buffer is sized by it): EOS "\n</s>\n" is 6 bytes */
    int32_t small_max = 5;
    memcpy(w.b, &small_max, 4);
    tu_write_bytes(path, w.b, w.n);
    expect_format_error(path, V, "token 2 has length 6 > max_token_length 5");
    int32_t neg_max = -1;
    memcpy(w.b, &neg_max, 4);
    tu_write_bytes(path, w.b, w.n);
    expect_format_error(path, V, "max_token_length");
    int32_t max6 = 6;
    memcpy(w.b, &max6, 4);
    /* a NaN score */
    float nan = NAN;
    memcpy(w.b + off260, &nan, 4);
    tu_write_bytes(path, w.b, w.n);
    expect_format_error(path, V, "token 260 has a NaN score");
    free(w.b);
    /* fewer than the 259 reserved tokens */
    bytes_buf small = {0};
    put_i32(&small, 6);
    for (int i = 0; i < 10; i++) put_token(&small, 0, "x", 1);
    tu_write_bytes(path, small.b, small.n);
    expect_format_error(path, 0, "at least 259");
    free(small.b);
    /* a missing file is reported as absent (pissa__read_file) */
    char *missing = tu_path(dir, "missing.bin");
    tok = NULL;
    assert_int_equal(pissa_tokenizer_load(missing, 0, &tok), PISSA_ERR_NOT_FOUND);
    assert_null(tok);
    free(missing);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* ---- against a naive run.c merge loop ---- */

/* Id of PIECE by a linear scan of the vocabulary (the lowest id, as run.c's bsearch over a sorted copy finds one of
 * equal pieces; the test vocabularies have none), or -1. */
static int32_t naive_lookup(const pissa_tokenizer *tok, const char *piece) {
    int32_t V = pissa_tokenizer_vocab_size(tok);
    for (int32_t i = 0; i < V; i++)
        if (strcmp(pissa_tokenizer_piece(tok, i, NULL), piece) == 0) return i;
    return -1;
}

/* Vocabulary id of the concatenation of tokens A and B, or -1. */
static int32_t naive_pair(const pissa_tokenizer *tok, int32_t a, int32_t b) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s%s", pissa_tokenizer_piece(tok, a, NULL), pissa_tokenizer_piece(tok, b, NULL));
    return naive_lookup(tok, buf);
}

/* run.c's encode, transliterated with its O(n²) loop, for texts without NUL: every merge rescans all adjacent pairs
 * and merges the best-scoring one (the leftmost of equals: strict '>' from run.c's initial best of -1e10). Only each
 * pair's vocabulary lookup is remembered between merges (a merge changes the two pairs around it), so windows of
 * tens of KB take well under a second. */
static size_t naive_encode(const pissa_tokenizer *tok, const char *text, size_t len, int32_t *tokens) {
    size_t n = 0;
    char buf[8];
    if (len) tokens[n++] = naive_lookup(tok, " ");
    size_t cl = 0;
    for (size_t k = 0; k < len; k++) {
        if (((unsigned char)text[k] & 0xC0) != 0x80) cl = 0;
        buf[cl++] = text[k];
        buf[cl] = 0;
        unsigned char nx = k + 1 < len ? (unsigned char)text[k + 1] : 0;
        if ((nx & 0xC0) == 0x80 && cl < 4) continue;
        int32_t id = naive_lookup(tok, buf);
        if (id >= 0) tokens[n++] = id;
        else
            for (size_t i = 0; i < cl; i++) tokens[n++] = (unsigned char)buf[i] + 3;
        cl = 0;
    }
    /* pair[i]: id of tokens[i] + tokens[i + 1] (or -1), score[i] its score (-inf when there is none) */
    int32_t *pair = malloc((n ? n : 1) * sizeof *pair);
    float *score = malloc((n ? n : 1) * sizeof *score);
    assert_true(pair && score);
#define SET_PAIR(i)                                                                        \
    do {                                                                                   \
        pair[i] = naive_pair(tok, tokens[i], tokens[(i) + 1]);                             \
        score[i] = pair[i] >= 0 ? pissa_tokenizer_score(tok, pair[i]) : -INFINITY;         \
    } while (0)
    for (size_t i = 0; i + 1 < n; i++) SET_PAIR(i);
    for (;;) {
        float best = -1e10f;
        size_t best_idx = SIZE_MAX;
        for (size_t i = 0; i + 1 < n; i++)
            if (score[i] > best) {
                best = score[i];
                best_idx = i;
            }
        if (best_idx == SIZE_MAX) break;
        size_t tail = n - best_idx - 2; /* tokens after the two merged; the pairs among them are one fewer */
        tokens[best_idx] = pair[best_idx];
        memmove(tokens + best_idx + 1, tokens + best_idx + 2, tail * sizeof *tokens);
        if (tail > 1) {
            memmove(pair + best_idx + 1, pair + best_idx + 2, (tail - 1) * sizeof *pair);
            memmove(score + best_idx + 1, score + best_idx + 2, (tail - 1) * sizeof *score);
        }
        n--;
        if (best_idx > 0) SET_PAIR(best_idx - 1);
        if (best_idx + 1 < n) SET_PAIR(best_idx);
    }
#undef SET_PAIR
    free(pair);
    free(score);
    return n;
}

static void heap_merges_equal_naive_run_c_loop_on_random_texts(void **state) {
    (void)state;
    char *dir = tu_tempdir("tok");
    /* many pieces with equal scores, so the order of ties decides the result */
    const extra_piece ex[] = {{" ", 0},    {"a", 0},    {"b", 0},     {"c", 0},     {"ab", 1},   {"ba", 1},
                              {"aa", 1},   {"bb", 0.5f}, {"abc", 1},  {"cab", 1},   {" a", 1},   {" b", 0.5f},
                              {"aab", 2},  {"bab", 2},  {"abab", 1},  {"c c", 3},   {"\xc3\xa9", 0}, {"\xc3\xa9" "a", 1},
                              {"a ", 0.5f}, {"cc", 1},  {"ccc", 1},   {"cccc", 1}};
    int n_ex = (int)(sizeof ex / sizeof ex[0]);
    pissa_tokenizer *tok = load_extra(dir, "t.bin", ex, n_ex);
    const char *alphabet[] = {"a", "b", "c", " ", "\xc3\xa9", "\xc3", "\xa9", "d"};
    uint64_t x = 88172645463325252ULL;
    int32_t got[400], want[400];
    char text[300];
    for (int trial = 0; trial < 200; trial++) {
        size_t len = 0;
        int target = 1 + trial % 60;
        while ((int)len < target) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            const char *s = alphabet[x % 8];
            memcpy(text + len, s, strlen(s));
            len += strlen(s);
        }
        size_t n;
        assert_ok(pissa_tokenizer_encode(tok, text, len, 0, 0, got, 400, &n));
        size_t m = naive_encode(tok, text, len, want);
        assert_ids(got, n, want, m);
    }
    pissa_tokenizer_free(tok);
    tu_rmtree(dir);
    free(dir);
}

/* ---- tok512 (stories260K) ---- */

static pissa_tokenizer *load_tok512_or_skip(void) {
    if (!tu_file_exists(TOK512)) tu_skip_missing(TOK512);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(TOK512, 512, &tok));
    return tok;
}

static void tok512_encodings_match_python_reference(void **state) {
    (void)state;
    pissa_tokenizer *tok = load_tok512_or_skip();
    pissa_tokenizer *inferred;
    assert_ok(pissa_tokenizer_load(TOK512, 0, &inferred));
    assert_int_equal(pissa_tokenizer_vocab_size(inferred), 512);
    pissa_tokenizer_free(inferred);

    char *json = tu_slurp(PISSA_TEST_REFERENCE_DIR "/tok512_encodings.json", NULL);
    assert_non_null(json);
    cJSON *cases = cJSON_Parse(json);
    assert_non_null(cases);
    int n_cases = 0;
    for (const cJSON *c = cases->child; c; c = c->next, n_cases++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        int bos = cJSON_GetObjectItem(c, "bos")->valueint, eos = cJSON_GetObjectItem(c, "eos")->valueint;
        const cJSON *want = cJSON_GetObjectItem(c, "ids");
        size_t len = strlen(text), n;
        int32_t *ids = malloc(PISSA_TOKENIZER_MAX_TOKENS(len) * sizeof *ids);
        assert_ok(pissa_tokenizer_encode(tok, text, len, bos, eos, ids, PISSA_TOKENIZER_MAX_TOKENS(len), &n));
        if ((int)n != cJSON_GetArraySize(want))
            fail_msg("case %d: %zu tokens, reference has %d", n_cases, n, cJSON_GetArraySize(want));
        size_t i = 0;
        for (const cJSON *e = want->child; e; e = e->next, i++)
            if (ids[i] != e->valueint) fail_msg("case %d: token %zu is %d, reference %d", n_cases, i, ids[i], e->valueint);
        /* decoding gives the reference's decoded text; with BOS that is the input itself */
        const char *decoded = cJSON_GetObjectItem(c, "decoded")->valuestring;
        size_t dlen;
        char *buf = malloc(strlen(decoded) + 1);
        assert_ok(pissa_tokenizer_decode(tok, ids, n, buf, strlen(decoded) + 1, &dlen));
        assert_string_equal(buf, decoded);
        if (bos) assert_string_equal(buf, text);
        free(buf);
        free(ids);
    }
    assert_true(n_cases >= 10);
    cJSON_Delete(cases);
    free(json);
    pissa_tokenizer_free(tok);
}

/* The whole 1.1 MB text as one string decodes back to the text; and windows of 24 KB at four offsets give the same
 * tokens as the naive run.c loop. (How fast encoding is belongs in bench/, not here.) */
static void tinyshakespeare_round_trips_and_windows_match_the_naive_loop(void **state) {
    (void)state;
    pissa_tokenizer *tok = load_tok512_or_skip();
    size_t len;
    char *text = tu_slurp(SHAKESPEARE, &len);
    if (!text) {
        pissa_tokenizer_free(tok);
        tu_skip_missing(SHAKESPEARE);
    }
    size_t cap = PISSA_TOKENIZER_MAX_TOKENS(len), n;
    int32_t *ids = malloc(cap * sizeof *ids);
    assert_ok(pissa_tokenizer_encode(tok, text, len, 1, 0, ids, cap, &n));
    print_message("tinyshakespeare: %zu bytes -> %zu tokens\n", len, n);
    assert_true(n > len / 4 && n < len); /* tok512 merges, but a 512-token vocabulary cannot compress much */
    char *back = malloc(len + 1);
    size_t blen;
    assert_ok(pissa_tokenizer_decode(tok, ids, n, back, len + 1, &blen));
    assert_int_equal(blen, len);
    assert_memory_equal(back, text, len);

    const size_t win = 24 * 1024;
    assert_true(len > 4 * win);
    const size_t offsets[4] = {0, len / 3 + 17, 2 * len / 3 + 5, len - win}; /* the text is ASCII: any byte starts */
    int32_t *naive = malloc(PISSA_TOKENIZER_MAX_TOKENS(win) * sizeof *naive);
    for (int w = 0; w < 4; w++) {
        const char *t = text + offsets[w];
        size_t k, m = naive_encode(tok, t, win, naive);
        assert_ok(pissa_tokenizer_encode(tok, t, win, 0, 0, ids, cap, &k));
        assert_ids(ids, k, naive, m);
        print_message("  bytes %zu..%zu: %zu tokens, as the naive loop\n", offsets[w], offsets[w] + win, k);
    }
    free(naive);
    free(back);
    free(ids);
    free(text);
    pissa_tokenizer_free(tok);
}

/* The header's max_token_length only bounds the pieces: a file declaring 0x40000007 once made every encode allocate
 * 2 GiB for its merge buffer. The buffer now follows the longest real piece: encoding works under a 256 MiB address
 * space limit (checked in a child; not under ASan, whose shadow memory needs the address space). */
static void a_huge_declared_max_token_length_costs_nothing(void **state) {
    (void)state;
    char *dir = tu_tempdir("tok_maxlen"), *path = tu_path(dir, "huge.bin");
    extra_piece extra[2] = {{"ab", 1.0f}, {"abab", 2.0f}};
    bytes_buf w = make_tokenizer_bytes(extra, 2, 0x40000007);
    tu_write_bytes(path, w.b, w.n);
    free(w.b);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(path, 0, &tok));
    int32_t want[16];
    size_t n_want;
    assert_ok(pissa_tokenizer_encode(tok, "abab ab", 7, 1, 0, want, 16, &n_want));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
#ifndef __SANITIZE_ADDRESS__
        struct rlimit lim;
        getrlimit(RLIMIT_AS, &lim);
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long pages = 0;
        if (!f || fscanf(f, "%lu", &pages) != 1) _exit(3);
        fclose(f);
        lim.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (256u << 20);
        if (setrlimit(RLIMIT_AS, &lim) != 0) _exit(4);
#endif
        int32_t ids[16];
        size_t n;
        if (pissa_tokenizer_encode(tok, "abab ab", 7, 1, 0, ids, 16, &n) != PISSA_OK) _exit(1);
        _exit(n == n_want && !memcmp(ids, want, n * sizeof *ids) ? 0 : 2);
    }
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("encode under a 256 MiB limit failed (status %d)", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    pissa_tokenizer_free(tok);
    tu_rmtree(dir);
    free(path), free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merges_follow_scores_and_ties_go_left),
        cmocka_unit_test(byte_fallback_bos_eos_and_dummy_prefix),
        cmocka_unit_test(encode_capacity_contract_and_size_query),
        cmocka_unit_test(decode_strips_space_after_bos_and_maps_byte_tokens),
        cmocka_unit_test(load_rejects_truncated_and_inconsistent_files),
        cmocka_unit_test(a_huge_declared_max_token_length_costs_nothing),
        cmocka_unit_test(heap_merges_equal_naive_run_c_loop_on_random_texts),
        cmocka_unit_test(tok512_encodings_match_python_reference),
        cmocka_unit_test(tinyshakespeare_round_trips_and_windows_match_the_naive_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
