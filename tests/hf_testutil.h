/* Helpers of the tokenizer.json tests (test_hf_tokenizer.c, test_hf_components.c): encoding and decoding with
 * messages that name the string, and small tokenizer.json files written from parts ("specs"). Header-only; each test
 * program includes it once. */
#ifndef PISSA_HF_TESTUTIL_H
#define PISSA_HF_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hf_internal.h"
#include "testutil.h"

#define TOKENIZERS PISSA_SHARED_DATA_DIR "/tokenizers"
#define SHAKESPEARE PISSA_SHARED_DATA_DIR "/tinyshakespeare/input.txt"
#define REF PISSA_TEST_REFERENCE_DIR "/tokenizers"
#define HF_UNUSED __attribute__((unused))


/* S (N bytes) as a C literal, cut at 80 bytes, for messages. */
HF_UNUSED static const char *show(const char *s, size_t n) {
    static char bufs[2][400]; /* two, so that one message can show two strings */
    static int which;
    char *buf = bufs[which ^= 1];
    const size_t cap = sizeof bufs[0];
    size_t k = 0;
    for (size_t i = 0; i < n && k < cap - 12; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 80) {
            k += (size_t)snprintf(buf + k, cap - k, "...");
            break;
        }
        if (c == '\n') k += (size_t)snprintf(buf + k, cap - k, "\\n");
        else if (c < 0x20 || c == '"' || c == '\\') k += (size_t)snprintf(buf + k, cap - k, "\\x%02x", c);
        else buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return buf;
}

HF_UNUSED static const char *show_ids(const int32_t *ids, size_t n, size_t at) {
    static char buf[400];
    size_t k = 0, from = at > 3 ? at - 3 : 0;
    for (size_t i = from; i < n && i < from + 10 && k < sizeof buf - 16; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, i == at ? "[%d] " : "%d ", (int)ids[i]);
    if (k == 0) snprintf(buf, sizeof buf, "(end)");
    return buf;
}

/* Encodes TEXT and returns the ids (caller frees). */
HF_UNUSED static int32_t *encode(const pissa_tokenizer *tok, const char *text, size_t len, int special, size_t *n) {
    size_t cap = pissa_tokenizer_max_tokens(tok, len);
    int32_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
    assert_non_null(ids);
    assert_ok(pissa_tokenizer_encode_text(tok, text, len, special, ids, cap, n));
    return ids;
}

HF_UNUSED static char *decode(const pissa_tokenizer *tok, const int32_t *ids, size_t n, int skip, size_t *len) {
    size_t need = 0;
    pissa_tokenizer_decode_text(tok, ids, n, skip, NULL, 0, &need);
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    assert_ok(pissa_tokenizer_decode_text(tok, ids, n, skip, buf, need + 1, len));
    return buf;
}

HF_UNUSED static void expect_ids(const char *what, size_t index, const char *text, size_t len, const int32_t *got,
                       size_t n_got, const int32_t *want, size_t n_want) {
    size_t i = 0;
    while (i < n_got && i < n_want && got[i] == want[i]) i++;
    if (i == n_got && i == n_want) return;
    char g[400];
    snprintf(g, sizeof g, "%s", show_ids(got, n_got, i));
    fail_msg("%s: string %zu \"%s\": ids differ at position %zu (got %zu ids, want %zu): got %s, want %s", what, index,
             show(text, len), i, n_got, n_want, g, show_ids(want, n_want, i));
}

HF_UNUSED static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    assert_non_null(v);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next) v[i++] = (int32_t)e->valuedouble;
    return v;
}

HF_UNUSED static uint64_t fnv1a64(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) {
            h ^= ((uint32_t)ids[i] >> (8 * k)) & 0xFF;
            h *= 0x100000001b3ull;
        }
    return h;
}

/* ---- small tokenizers written by the tests ---- */

/* The parts of a tokenizer.json (NULL: "null", or the default) and of its companion files. JSON is written with `
 * for " to keep the C strings readable. */
typedef struct {
    const char *added, *normalizer, *pre, *post, *decoder;
    const char *const *tokens; /* the vocabulary, ids in order; NULL-terminated */
    const char *merges;        /* default [] */
    const char *model_extra;   /* more model fields, ",`byte_fallback`:true" */
    const char *config, *generation;
} spec;

HF_UNUSED static void put_json_string(pissa__strbuf *b, const char *s) {
    pissa__sb_puts(b, "\"");
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        char tmp[8];
        if (*u == '"' || *u == '\\') snprintf(tmp, sizeof tmp, "\\%c", *u);
        else if (*u < 0x20) snprintf(tmp, sizeof tmp, "\\u%04x", *u);
        else snprintf(tmp, sizeof tmp, "%c", *u);
        pissa__sb_puts(b, tmp);
    }
    pissa__sb_puts(b, "\"");
}

/* S with ` turned into " */
HF_UNUSED static void put_ticks(pissa__strbuf *b, const char *s) {
    for (; *s; s++) pissa__sb_put(b, *s == '`' ? "\"" : s, 1);
}

HF_UNUSED static char *spec_json(const spec *sp) {
    pissa__strbuf b = {0};
    pissa__sb_puts(&b, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": ");
    put_ticks(&b, sp->added ? sp->added : "[]");
    const char *keys[4] = {"normalizer", "pre_tokenizer", "post_processor", "decoder"};
    const char *vals[4] = {sp->normalizer, sp->pre, sp->post, sp->decoder};
    for (int i = 0; i < 4; i++) {
        pissa__sb_puts(&b, ", \"");
        pissa__sb_puts(&b, keys[i]);
        pissa__sb_puts(&b, "\": ");
        put_ticks(&b, vals[i] ? vals[i] : "null");
    }
    pissa__sb_puts(&b, ", \"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int i = 0; sp->tokens && sp->tokens[i]; i++) {
        char id[32];
        if (i) pissa__sb_puts(&b, ", ");
        put_json_string(&b, sp->tokens[i]);
        snprintf(id, sizeof id, ": %d", i);
        pissa__sb_puts(&b, id);
    }
    pissa__sb_puts(&b, "}, \"merges\": ");
    put_ticks(&b, sp->merges ? sp->merges : "[]");
    if (sp->model_extra) put_ticks(&b, sp->model_extra);
    pissa__sb_puts(&b, "}}");
    assert_false(b.oom);
    return b.p;
}

HF_UNUSED static void write_ticks(const char *dir, const char *name, const char *text) {
    pissa__strbuf b = {0};
    put_ticks(&b, text);
    char *path = tu_path(dir, name);
    tu_write_bytes(path, b.p, b.n);
    free(path);
    free(b.p);
}

/* Loads SP from a fresh directory (removed again); the status of pissa_tokenizer_load. */
HF_UNUSED static pissa_status load_spec(const spec *sp, pissa_tokenizer **out) {
    char *dir = tu_tempdir("hftok");
    char *json = spec_json(sp), *path = tu_path(dir, "tokenizer.json");
    tu_write_bytes(path, json, strlen(json));
    if (sp->config) write_ticks(dir, "tokenizer_config.json", sp->config);
    if (sp->generation) write_ticks(dir, "generation_config.json", sp->generation);
    pissa_status st = pissa_tokenizer_load(dir, 0, out);
    tu_rmtree(dir);
    free(dir);
    free(path);
    free(json);
    return st;
}

HF_UNUSED static pissa_tokenizer *spec_tok(const spec *sp) {
    pissa_tokenizer *tok = NULL;
    assert_ok(load_spec(sp, &tok));
    return tok;
}

/* Encoding TEXT gives the token strings WANT (NULL-terminated). */
HF_UNUSED static void expect_tokens(const pissa_tokenizer *tok, const char *text, int special, const char *const *want) {
    size_t n;
    int32_t *ids = encode(tok, text, strlen(text), special, &n);
    pissa__strbuf got = {0};
    int ok = 1;
    size_t k = 0;
    for (; k < n; k++) {
        const char *piece = pissa_tokenizer_piece(tok, ids[k], NULL);
        pissa__sb_puts(&got, k ? " | " : "");
        pissa__sb_puts(&got, piece ? piece : "(none)");
        if (!want[k] || !piece || strcmp(piece, want[k])) ok = 0;
    }
    if (want[k]) ok = 0;
    if (!ok) fail_msg("\"%s\" encodes to %s", show(text, strlen(text)), got.p ? got.p : "(nothing)");
    free(got.p);
    free(ids);
}

/* The pre-tokenizers cut TEXT into WANT. */
HF_UNUSED static void expect_pieces(const pissa_tokenizer *tok, const char *text, const char *const *want) {
    pissa__hf_pieces p = {0};
    assert_ok(pissa__hf_debug_pre_tokenize(pissa__tokenizer_hf(tok), text, strlen(text), &p));
    pissa__strbuf got = {0};
    int ok = 1;
    size_t k = 0;
    for (; k < p.n; k++) {
        const char *s = p.text.p + p.v[k].off;
        pissa__sb_puts(&got, k ? " | " : "");
        pissa__sb_put(&got, s, p.v[k].len);
        if (!want[k] || strlen(want[k]) != p.v[k].len || memcmp(want[k], s, p.v[k].len)) ok = 0;
    }
    if (want[k]) ok = 0;
    if (!ok) fail_msg("\"%s\" pre-tokenizes to %s", show(text, strlen(text)), got.p ? got.p : "(nothing)");
    free(got.p);
    pissa__hf_pieces_free(&p);
}

HF_UNUSED static void expect_normalized(const pissa_tokenizer *tok, const char *text, const char *want) {
    const pissa__hf *t = pissa__tokenizer_hf(tok);
    pissa__strbuf a = {0}, b = {0};
    const pissa__strbuf *out;
    assert_ok(pissa__hf_normalize(t->norm, t->n_norm, text, strlen(text), &a, &b, &out));
    if (out->n != strlen(want) || memcmp(out->p, want, out->n))
        fail_msg("\"%s\" normalizes to \"%s\", want \"%s\"", show(text, strlen(text)), out->p, want);
    free(a.p);
    free(b.p);
}

/* Decoding the token strings TOKENS gives WANT. */
HF_UNUSED static void expect_decode(const pissa_tokenizer *tok, const char *const *tokens, int skip, const char *want) {
    int32_t ids[64];
    size_t n = 0;
    for (; tokens[n]; n++) {
        ids[n] = pissa_tokenizer_token_to_id(tok, tokens[n], strlen(tokens[n]));
        assert_true(ids[n] >= 0);
    }
    size_t len;
    char *got = decode(tok, ids, n, skip, &len);
    if (len != strlen(want) || memcmp(got, want, len)) fail_msg("decode gives \"%s\", want \"%s\"", got, want);
    free(got);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE_ ((const char *const[]){NULL})

HF_UNUSED static const char *const ascii[] = {" ", "!", "\"", "#", "$", "%", "&", "'", "(", ")", "*", "+", ",", "-", ".", "/",
                                    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ":", ";", "<", "=", ">", "?",
                                    "@", "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O",
                                    "P", "Q", "R", "S", "T", "U", "V", "W", "X", "Y", "Z", "[", "\\", "]", "^", "_",
                                    "`", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o",
                                    "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "{", "|", "}", "~", "\t",
                                    "\n", "\xe2\x96\x81", NULL};


#endif
