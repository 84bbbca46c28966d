/* The Split and ByteLevel regexes of real tokenizer files, run by PCRE2 after libpissa's rewrite, against Oniguruma
 * itself (libonig.so.5, loaded at run time: the engine Hugging Face tokenizers runs them with, through the onig crate
 * with Ruby syntax and UTF-8), match for match, on every fixture string and on strings aimed at the differences
 * between the engines (\s and U+180E / U+0085 / U+FEFF, case folding of ſ and K, \w, ^/$ and "."). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hf_internal.h"
#include "testutil.h"

#define REF PISSA_TEST_REFERENCE_DIR "/tokenizers"

/* ---- Oniguruma through dlopen (its header is not installed; these are its stable 6.x declarations) ---- */

typedef struct {
    int allocated;
    int num_regs;
    int *beg;
    int *end;
    void *history_root;
} onig_region;

static struct {
    void *lib;
    int (*initialize)(void **encodings, int n);
    int (*new_)(void **reg, const unsigned char *pat, const unsigned char *pat_end, unsigned options, void *enc,
                void *syntax, void *einfo);
    int (*search)(void *reg, const unsigned char *str, const unsigned char *end, const unsigned char *start,
                  const unsigned char *range, onig_region *region, unsigned options);
    onig_region *(*region_new)(void);
    void (*region_free)(onig_region *r, int free_self);
    void (*free_)(void *reg);
    void *utf8, *ruby;
} onig;

static int onig_load(void) {
    if (onig.lib) return 1;
    onig.lib = dlopen("libonig.so.5", RTLD_NOW);
    if (!onig.lib) return 0;
    *(void **)&onig.initialize = dlsym(onig.lib, "onig_initialize");
    *(void **)&onig.new_ = dlsym(onig.lib, "onig_new");
    *(void **)&onig.search = dlsym(onig.lib, "onig_search");
    *(void **)&onig.region_new = dlsym(onig.lib, "onig_region_new");
    *(void **)&onig.region_free = dlsym(onig.lib, "onig_region_free");
    *(void **)&onig.free_ = dlsym(onig.lib, "onig_free");
    onig.utf8 = dlsym(onig.lib, "OnigEncodingUTF8");
    onig.ruby = dlsym(onig.lib, "OnigSyntaxRuby");
    if (!onig.initialize || !onig.new_ || !onig.search || !onig.region_new || !onig.utf8 || !onig.ruby) return 0;
    void *encs[1] = {onig.utf8};
    return onig.initialize(encs, 1) == 0;
}

/* The onig crate's find_iter: the next search starts at the end of the last match; an empty match ending where the
 * last match ended is skipped by moving one character on. */
static void onig_find_all(void *re, const char *s, size_t n, pissa__spans *out) {
    onig_region *r = onig.region_new();
    const unsigned char *u = (const unsigned char *)s;
    size_t last_end = 0, last_match_end = SIZE_MAX;
    while (last_end <= n) {
        int at = onig.search(re, u, u + n, u + last_end, u + n, r, 0);
        if (at < 0) break;
        size_t ms = (size_t)r->beg[0], me = (size_t)r->end[0];
        if (ms == me && me == last_match_end) {
            int32_t cp;
            last_end += last_end < n ? (size_t)pissa__utf8_decode(s + last_end, &cp) : 1;
            continue;
        }
        last_end = me;
        last_match_end = me;
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 64;
            out->v = realloc(out->v, out->cap * sizeof *out->v);
            assert_non_null(out->v);
        }
        out->v[out->n][0] = ms;
        out->v[out->n][1] = me;
        out->n++;
    }
    onig.region_free(r, 1);
}

/* ---- the patterns and strings ---- */

static const char *const patterns[] = {
    /* GPT-2 (the ByteLevel pre-tokenizer) */
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    /* Llama-3's Split */
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+",
    /* Qwen2/Qwen3's Split */
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+",
    /* the escapes libpissa rewrites, and Ruby's anchors */
    "\\w+|\\W+", "[\\w\\s]+|[^\\w\\s]+", "\\h+|\\H", "^.+$|\\n", "\\u00e9+|(?m:a.b)",
};

static const char *const extra[] = {
    "x\xe1\xa0\x8ey", "a\xc2\x85" "b", "a\xef\xbb\xbf" "b", "\xe1\xa0\x8e \xc2\x85\xe2\x80\xa8\xe3\x80\x80",
    "it'\xc5\xbf ok", "IT'S 'K \xe2\x84\xaa'", "don'T we'LL", "caf\xc3\xa9 na\xc3\xafve \xcc\x81x", "a\xe2\x80\x8d" "b",
    "\xd9\xa3\xd9\xa4 \xe2\x85\xab \xc2\xb2", "\xe2\x92\xb6 \xe2\x80\xbf \xcd\x85 \xe3\x80\x85", "deadBEEF 0x1f", "line one\nline two\r\nthree", "a\nb\n\nc\n",
    "\xc3\xa9\xc3\xa9\xc3\xa9 a\nb", "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd  \t\n", "   ", "", "_x_ __init__",
};

static int compare(void *ore, const pissa__hf_pattern *p, const char *s, size_t n, const char *pat, size_t index) {
    pissa__spans a = {0}, b = {0};
    onig_find_all(ore, s, n, &a);
    assert_ok(pissa__hf_pattern_find(p, s, n, &b));
    int same = a.n == b.n;
    for (size_t i = 0; same && i < a.n; i++) same = a.v[i][0] == b.v[i][0] && a.v[i][1] == b.v[i][1];
    if (!same) {
        size_t i = 0;
        while (i < a.n && i < b.n && a.v[i][0] == b.v[i][0] && a.v[i][1] == b.v[i][1]) i++;
        fail_msg("pattern %s, string %zu (%zu bytes): match %zu differs: Oniguruma [%zu, %zu), PCRE2 [%zu, %zu)", pat,
                 index, n, i, i < a.n ? a.v[i][0] : 0, i < a.n ? a.v[i][1] : 0, i < b.n ? b.v[i][0] : 0,
                 i < b.n ? b.v[i][1] : 0);
    }
    free(a.v);
    free(b.v);
    return 1;
}

static void real_patterns_match_like_oniguruma(void **state) {
    (void)state;
    if (!onig_load()) tu_skip_missing("libonig.so.5 (Oniguruma, Debian package libonig5)");
    /* the strings: the fixtures' texts, the slices of tinyshakespeare they name, and the extras */
    size_t n_text = 0;
    char *shakespeare = tu_slurp(PISSA_SHARED_DATA_DIR "/tinyshakespeare/input.txt", &n_text);
    const char *names[] = {"llama2", "llama3", "qwen3", "gpt2_style"};
    cJSON *fix[4];
    for (int k = 0; k < 4; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/fixtures/%s.json", REF, names[k]);
        char *raw = tu_slurp(path, NULL);
        assert_non_null(raw);
        fix[k] = cJSON_Parse(raw);
        assert_non_null(fix[k]);
        free(raw);
    }
    size_t checked = 0;
    for (size_t pi = 0; pi < sizeof patterns / sizeof *patterns; pi++) {
        void *ore = NULL;
        const char *pat = patterns[pi];
        assert_int_equal(onig.new_(&ore, (const unsigned char *)pat, (const unsigned char *)pat + strlen(pat), 0,
                                   onig.utf8, onig.ruby, NULL), 0);
        pissa__hf_pattern *p;
        assert_ok(pissa__hf_pattern_new(pat, strlen(pat), 1, "test", &p));
        size_t index = 0;
        for (size_t i = 0; i < sizeof extra / sizeof *extra; i++, index++)
            checked += (size_t)compare(ore, p, extra[i], strlen(extra[i]), pat, index);
        for (int k = 0; k < 4; k++)
            for (const cJSON *c = cJSON_GetObjectItem(fix[k], "cases")->child; c; c = c->next, index++) {
                const cJSON *t = cJSON_GetObjectItem(c, "text"), *sl = cJSON_GetObjectItem(c, "slice");
                if (t) checked += (size_t)compare(ore, p, t->valuestring, strlen(t->valuestring), pat, index);
                else if (shakespeare && k == 0) /* the slices once */
                    checked += (size_t)compare(ore, p, shakespeare + (size_t)sl->child->valuedouble,
                                               (size_t)sl->child->next->valuedouble, pat, index);
            }
        if (shakespeare) checked += (size_t)compare(ore, p, shakespeare, n_text, pat, index++);
        pissa__hf_pattern_free(p);
        onig.free_(ore);
    }
    print_message("%zu pattern x string pairs matched alike\n", checked);
    for (int k = 0; k < 4; k++) cJSON_Delete(fix[k]);
    free(shakespeare);
}

/* Each rewritten class, and the properties the real patterns use, take the same code points in both engines: the
 * runs that "(?:CLASS)+" matches in a text of every code point in order are the same. */
static void character_classes_agree_on_every_code_point(void **state) {
    (void)state;
    if (!onig_load()) tu_skip_missing("libonig.so.5 (Oniguruma, Debian package libonig5)");
    static const char *classes[] = {"\\s", "\\S", "\\w", "\\W", "\\d", "\\h", "\\p{L}", "\\p{N}",
                                    "[^\\s\\p{L}\\p{N}]", "[^\\r\\n\\p{L}\\p{N}]", "(?i:s)", "(?i:k)", ".", "[\\w\\s]"};
    pissa__strbuf text = {0};
    for (int32_t cp = 0; cp < 0x110000; cp++) { /* planes 0-3 and 14 hold every assigned character */
        if ((cp >= 0xD800 && cp < 0xE000) || (cp >= 0x40000 && cp < 0xE0000) || cp >= 0xE1000) continue;
        char u[4];
        pissa__sb_put(&text, u, (size_t)pissa__utf8_encode(cp, u));
    }
    assert_false(text.oom);
    for (size_t c = 0; c < sizeof classes / sizeof *classes; c++) {
        char pat[64];
        snprintf(pat, sizeof pat, "(?:%s)+", classes[c]);
        void *ore;
        assert_int_equal(onig.new_(&ore, (const unsigned char *)pat, (const unsigned char *)pat + strlen(pat), 0,
                                   onig.utf8, onig.ruby, NULL), 0);
        pissa__hf_pattern *p;
        assert_ok(pissa__hf_pattern_new(pat, strlen(pat), 1, "test", &p));
        compare(ore, p, text.p, text.n, pat, 0);
        pissa__hf_pattern_free(p);
        onig.free_(ore);
    }
    free(text.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(real_patterns_match_like_oniguruma),
        cmocka_unit_test(character_classes_agree_on_every_code_point),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
