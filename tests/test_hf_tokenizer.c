/* tokenizer.json: the ids and decodes of transformers.js (tests/reference/tokenizers/make_reference.mjs) on every
 * fixture string for the real Llama-2, Llama-3 and Qwen3 tokenizers and a GPT-2-style one built in the tests; then
 * each component on its own against the outputs tokenizers' own unit tests give (huggingface/tokenizers v0.22, the
 * tests in its pre-tokenizer, decoder and added-vocabulary sources), refusals naming the component, and hostile
 * files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hf_internal.h"
#include "testutil.h"

#define TOKENIZERS PISSA_SHARED_DATA_DIR "/tokenizers"
#define SHAKESPEARE PISSA_SHARED_DATA_DIR "/tinyshakespeare/input.txt"
#define REF PISSA_TEST_REFERENCE_DIR "/tokenizers"

/* ---- helpers ---- */

/* S (N bytes) as a C literal, cut at 80 bytes, for messages. */
static const char *show(const char *s, size_t n) {
    static char buf[400];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof buf - 12; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 80) {
            k += (size_t)snprintf(buf + k, sizeof buf - k, "...");
            break;
        }
        if (c == '\n') k += (size_t)snprintf(buf + k, sizeof buf - k, "\\n");
        else if (c < 0x20 || c == '"' || c == '\\') k += (size_t)snprintf(buf + k, sizeof buf - k, "\\x%02x", c);
        else buf[k++] = (char)c;
    }
    buf[k] = '\0';
    return buf;
}

static const char *show_ids(const int32_t *ids, size_t n, size_t at) {
    static char buf[400];
    size_t k = 0, from = at > 3 ? at - 3 : 0;
    for (size_t i = from; i < n && i < from + 10 && k < sizeof buf - 16; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, i == at ? "[%d] " : "%d ", (int)ids[i]);
    if (k == 0) snprintf(buf, sizeof buf, "(end)");
    return buf;
}

/* Encodes TEXT and returns the ids (caller frees). */
static int32_t *encode(const pissa_tokenizer *tok, const char *text, size_t len, int special, size_t *n) {
    size_t cap = pissa_tokenizer_max_tokens(tok, len);
    int32_t *ids = malloc((cap ? cap : 1) * sizeof *ids);
    assert_non_null(ids);
    assert_ok(pissa_tokenizer_encode_text(tok, text, len, special, ids, cap, n));
    return ids;
}

static char *decode(const pissa_tokenizer *tok, const int32_t *ids, size_t n, int skip, size_t *len) {
    size_t need = 0;
    pissa_tokenizer_decode_text(tok, ids, n, skip, NULL, 0, &need);
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    assert_ok(pissa_tokenizer_decode_text(tok, ids, n, skip, buf, need + 1, len));
    return buf;
}

static void expect_ids(const char *what, size_t index, const char *text, size_t len, const int32_t *got,
                       size_t n_got, const int32_t *want, size_t n_want) {
    size_t i = 0;
    while (i < n_got && i < n_want && got[i] == want[i]) i++;
    if (i == n_got && i == n_want) return;
    char g[400];
    snprintf(g, sizeof g, "%s", show_ids(got, n_got, i));
    fail_msg("%s: string %zu \"%s\": ids differ at position %zu (got %zu ids, want %zu): got %s, want %s", what, index,
             show(text, len), i, n_got, n_want, g, show_ids(want, n_want, i));
}

static int32_t *json_ids(const cJSON *arr, size_t *n) {
    *n = (size_t)cJSON_GetArraySize(arr);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    assert_non_null(v);
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next) v[i++] = (int32_t)e->valuedouble;
    return v;
}

static uint64_t fnv1a64(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++) {
            h ^= ((uint32_t)ids[i] >> (8 * k)) & 0xFF;
            h *= 0x100000001b3ull;
        }
    return h;
}

/* ---- the fixtures ---- */

static void check_fixture(const char *name, const char *tok_path) {
    char fixture[512];
    snprintf(fixture, sizeof fixture, "%s/fixtures/%s.json", REF, name);
    if (!tu_exists(tok_path)) tu_skip_missing(tok_path);
    size_t text_len;
    char *shakespeare = tu_slurp(SHAKESPEARE, &text_len);
    if (!shakespeare) tu_skip_missing(SHAKESPEARE);
    char *raw = tu_slurp(fixture, NULL);
    assert_non_null(raw);
    cJSON *j = cJSON_Parse(raw);
    assert_non_null(j);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(tok_path, 0, &tok));
    assert_int_equal(pissa_tokenizer_get_kind(tok), PISSA_TOKENIZER_HF);
    size_t nb, na;
    int32_t *before = json_ids(cJSON_GetObjectItem(j, "before"), &nb);
    int32_t *after = json_ids(cJSON_GetObjectItem(j, "after"), &na);
    const char *d_before = cJSON_GetObjectItem(j, "d_before")->valuestring;
    const char *d_after = cJSON_GetObjectItem(j, "d_after")->valuestring;
    size_t index = 0, total_ids = 0;
    for (const cJSON *c = cJSON_GetObjectItem(j, "cases")->child; c; c = c->next, index++) {
        const cJSON *slice = cJSON_GetObjectItem(c, "slice");
        const char *text;
        size_t len;
        if (slice) {
            size_t off = (size_t)slice->child->valuedouble;
            len = (size_t)slice->child->next->valuedouble;
            assert_true(off + len <= text_len);
            text = shakespeare + off;
        } else {
            text = cJSON_GetObjectItem(c, "text")->valuestring;
            len = strlen(text);
        }
        size_t n_want, n, n_full;
        int32_t *want = json_ids(cJSON_GetObjectItem(c, "ids"), &n_want);
        int32_t *got = encode(tok, text, len, 0, &n);
        expect_ids(name, index, text, len, got, n, want, n_want);
        /* with special tokens: the template around the same ids */
        int32_t *full = encode(tok, text, len, 1, &n_full);
        int32_t *want_full = malloc((nb + n_want + na + 1) * sizeof *want_full);
        memcpy(want_full, before, nb * sizeof *before);
        memcpy(want_full + nb, want, n_want * sizeof *want);
        memcpy(want_full + nb + n_want, after, na * sizeof *after);
        expect_ids(name, index, text, len, full, n_full, want_full, nb + n_want + na);
        /* decode (round trip), with and without the special tokens */
        const cJSON *s = cJSON_GetObjectItem(c, "s"), *d = cJSON_GetObjectItem(c, "d");
        size_t k_len, d_len;
        char *k = decode(tok, full, n_full, 1, &k_len);
        char *dd = decode(tok, full, n_full, 0, &d_len);
        const char *want_s = cJSON_IsNumber(s) ? NULL : s->valuestring;
        if (want_s ? (strlen(want_s) != k_len || memcmp(k, want_s, k_len)) : (k_len != len || memcmp(k, text, len)))
            fail_msg("%s: string %zu \"%s\": decode(skip_special_tokens=True) is \"%s\"", name, index, show(text, len),
                     show(k, k_len));
        char *want_d;
        if (!d) { /* the template's text around the skip_special decode */
            size_t n1 = strlen(d_before), n2 = strlen(d_after);
            want_d = malloc(n1 + k_len + n2 + 1);
            memcpy(want_d, d_before, n1);
            memcpy(want_d + n1, k, k_len);
            memcpy(want_d + n1 + k_len, d_after, n2 + 1);
        } else if (cJSON_IsNumber(d)) {
            want_d = malloc(len + 1);
            memcpy(want_d, text, len);
            want_d[len] = '\0';
        } else {
            want_d = strdup(d->valuestring);
        }
        if (strlen(want_d) != d_len || memcmp(dd, want_d, d_len))
            fail_msg("%s: string %zu \"%s\": decode(skip_special_tokens=False) is \"%s\"", name, index,
                     show(text, len), show(dd, d_len));
        total_ids += n;
        free(want_d);
        free(k);
        free(dd);
        free(want);
        free(got);
        free(full);
        free(want_full);
    }
    /* the whole of tinyshakespeare as one text */
    const cJSON *whole = cJSON_GetObjectItem(j, "whole_text");
    assert_int_equal((size_t)cJSON_GetObjectItem(whole, "bytes")->valuedouble, text_len);
    size_t n;
    int32_t *ids = encode(tok, shakespeare, text_len, 1, &n);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)fnv1a64(ids, n));
    if (n != (size_t)cJSON_GetObjectItem(whole, "count")->valuedouble ||
        strcmp(hash, cJSON_GetObjectItem(whole, "fnv1a64")->valuestring))
        fail_msg("%s: the whole of tinyshakespeare encodes to %zu ids (hash %s), want %.0f (hash %s)", name, n, hash,
                 cJSON_GetObjectItem(whole, "count")->valuedouble, cJSON_GetObjectItem(whole, "fnv1a64")->valuestring);
    print_message("%s: %zu strings, %zu ids, and %zu ids for the whole text, as transformers.js\n", name, index,
                  total_ids, n);
    free(ids);
    free(before);
    free(after);
    pissa_tokenizer_free(tok);
    cJSON_Delete(j);
    free(raw);
    free(shakespeare);
}

static void llama2_matches_transformers_js(void **state) {
    (void)state;
    check_fixture("llama2", TOKENIZERS "/llama2");
}

static void llama3_matches_transformers_js(void **state) {
    (void)state;
    check_fixture("llama3", TOKENIZERS "/llama3/tokenizer.json");
}

static void qwen3_matches_transformers_js(void **state) {
    (void)state;
    check_fixture("qwen3", TOKENIZERS "/qwen3");
}

static void gpt2_style_matches_transformers_js(void **state) {
    (void)state;
    check_fixture("gpt2_style", REF "/gpt2_style");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama2_matches_transformers_js),
        cmocka_unit_test(llama3_matches_transformers_js),
        cmocka_unit_test(qwen3_matches_transformers_js),
        cmocka_unit_test(gpt2_style_matches_transformers_js),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
