/* tokenizer.json against transformers.js: the ids and decodes of tests/reference/tokenizers/make_reference.mjs on
 * every fixture string for the real Llama-2, Llama-3 and Qwen3 tokenizers and a GPT-2-style one built in the tests;
 * then the users of the tokenizer: the streaming decode, text datasets, pissa_generate, pissa-generate and
 * pissa-tokenize. Each component on its own: test_hf_components.c. */
#include "hf_testutil.h"

/* ---- the fixtures ---- */

static void check_fixture(const char *name, const char *tok_path) {
    char fixture[512];
    snprintf(fixture, sizeof fixture, "%s/fixtures/%s.json", REF, name);
    if (!tu_file_exists(tok_path)) tu_skip_missing(tok_path);
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
        assert_true(n_want + nb + na <= pissa_tokenizer_max_tokens(tok, len));
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

/* ---- streaming ---- */

/* Putting IDS one by one releases, in all, the decode of IDS by PLAIN: the same tokenizer.json without its
 * tokenizer_config.json, so without transformers' clean_up_tokenization_spaces, as tokenizers' DecodeStream. */
static void check_stream(const pissa_tokenizer *tok, const pissa_tokenizer *plain, const int32_t *ids, size_t n,
                         int skip) {
    pissa_token_stream *s;
    assert_ok(pissa_token_stream_create(tok, skip, &s));
    pissa__strbuf got = {0};
    for (size_t i = 0; i < n; i++) {
        const char *text;
        size_t len;
        assert_ok(pissa_token_stream_put(s, ids[i], &text, &len));
        pissa__sb_put(&got, text, len);
    }
    const char *text;
    size_t len;
    assert_ok(pissa_token_stream_finish(s, &text, &len));
    pissa__sb_put(&got, text, len);
    size_t want_len;
    char *want = decode(plain, ids, n, skip, &want_len);
    if (got.n != want_len || (want_len && memcmp(got.p, want, want_len)))
        fail_msg("streamed \"%s\", decoded \"%s\"", show(got.p ? got.p : "", got.n), show(want, want_len));
    free(want);
    free(got.p);
    pissa_token_stream_free(s);
}

static void streaming_decode_releases_whole_characters(void **state) {
    (void)state;
    const char *paths[] = {TOKENIZERS "/llama2", TOKENIZERS "/llama3", TOKENIZERS "/qwen3", REF "/gpt2_style",
                           PISSA_SHARED_DATA_DIR "/stories260K/tok512.bin"};
    /* the last two: what clean_up_tokenization_spaces (llama3's config sets it) would rewrite after the space before
     * it was released; the stream once released such text twice ("I do nn't know") */
    const char *texts[] = {"Hello world!", "  two spaces, then\n\nnewlines", "日本語 👨‍👩‍👧 é ﬁ", "I'm done .",
                           "<s>x<|im_end|>y<|endoftext|>", "I do n't know , it 's fine !"};
    char *dir = tu_tempdir("stream");
    for (int k = 0; k < 5; k++) {
        if (!tu_file_exists(paths[k])) tu_skip_missing(paths[k]);
        pissa_tokenizer *tok, *plain = NULL;
        assert_ok(pissa_tokenizer_load(paths[k], 0, &tok));
        if (pissa_tokenizer_get_kind(tok) == PISSA_TOKENIZER_HF) { /* tokenizer.json alone in a folder of its own */
            char *src = tu_path(paths[k], "tokenizer.json"), *dst = tu_path(dir, "tokenizer.json");
            size_t n;
            char *json = tu_slurp(src, &n);
            tu_write_bytes(dst, json, n);
            assert_ok(pissa_tokenizer_load(dst, 0, &plain));
            free(json);
            free(src);
            free(dst);
        }
        for (int i = 0; i < 6; i++) {
            size_t n;
            int32_t *ids = encode(tok, texts[i], strlen(texts[i]), 1, &n);
            check_stream(tok, plain ? plain : tok, ids, n, 0);
            check_stream(tok, plain ? plain : tok, ids, n, 1);
            free(ids);
        }
        if (plain) {
            /* a 4-byte emoji over byte-level or byte-fallback tokens comes out with its last token */
            size_t n;
            int32_t *ids = encode(tok, "\xf0\x9f\xa7\x83", 4, 0, &n);
            pissa_token_stream *s;
            assert_ok(pissa_token_stream_create(tok, 1, &s));
            for (size_t i = 0; i < n; i++) {
                const char *text;
                size_t len;
                assert_ok(pissa_token_stream_put(s, ids[i], &text, &len));
                if (i + 1 < n) assert_int_equal(len, 0);
                else assert_memory_equal(text + len - 4, "\xf0\x9f\xa7\x83", 4);
            }
            pissa_token_stream_free(s);
            free(ids);
        }
        pissa_tokenizer_free(plain);
        pissa_tokenizer_free(tok);
    }
    tu_rmtree(dir);
    free(dir);
}

/* ---- users of the tokenizer: text datasets, generation ---- */

static void text_dataset_is_cut_from_the_transformers_encoding(void **state) {
    (void)state;
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(REF "/gpt2_style", 0, &tok));
    const char *text = "To be, or not to be, that is the question: 12 <|im_start|> é";
    size_t n;
    int32_t *ids = encode(tok, text, strlen(text), 1, &n); /* ends with <|endoftext|>, the template's */
    pissa_dataset *d;
    assert_ok(pissa_dataset_from_text(tok, text, strlen(text), 5, &d));
    assert_int_equal(pissa_dataset_count(d), (n - 1) / 4);
    for (size_t i = 0; i < pissa_dataset_count(d); i++) {
        pissa_row r;
        assert_ok(pissa_dataset_row(d, i, &r));
        assert_int_equal(r.len, 5);
        assert_memory_equal(r.input_ids, ids + 4 * i, 5 * sizeof *ids);
    }
    pissa_dataset_free(d);
    /* a file that is not UTF-8 is refused, naming the file */
    char *dir = tu_tempdir("hfdata"), *path = tu_path(dir, "bad.txt");
    tu_write_bytes(path, "abc\xff", 4);
    assert_int_equal(pissa_dataset_load_text(path, tok, 4, &d), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "bad.txt"));
    tu_rmtree(dir);
    free(dir);
    free(path);
    free(ids);
    pissa_tokenizer_free(tok);
}

typedef struct {
    int32_t ids[512];
    size_t n;
    pissa__strbuf text;
} gen_log;

static int on_token(void *user, int32_t token, const char *piece, size_t len) {
    gen_log *g = user;
    if (g->n < 512) g->ids[g->n++] = token;
    pissa__sb_put(&g->text, piece, len);
    return 0;
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    char *b = tu_slurp(from, &n);
    assert_non_null(b);
    tu_write_bytes(to, b, n);
    free(b);
}

/* A random model folder with the GPT-2-style tokenizer: generation stops at a stop id (taken from a first run, so
 * the stop is certain to come) and prints what the decode stream releases. */
static void generate_with_tokenizer_json_stops_at_stop_ids(void **state) {
    (void)state;
    char *dir = tu_tempdir("hfgen"), cmd[1024];
    snprintf(cmd, sizeof cmd, "%s --out %s --dim 16 --hidden 32 --layers 1 --heads 2 --kv-heads 1 --vocab 962 --seq 64",
             PISSA_SYNTH_EXE, dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    char *tj = tu_path(dir, "tokenizer.json"), *tc = tu_path(dir, "tokenizer_config.json");
    char *gc = tu_path(dir, "generation_config.json");
    copy_file(REF "/gpt2_style/tokenizer.json", tj);
    copy_file(REF "/gpt2_style/tokenizer_config.json", tc);
    pissa_generator *g;
    assert_ok(pissa_generator_create(dir, NULL, 64, &g));
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(dir, (int32_t)pissa_generator_vocab_size(g), &tok));
    const char *prompt = "Hello world";
    size_t n_prompt;
    int32_t *prompt_ids = encode(tok, prompt, strlen(prompt), 1, &n_prompt);
    gen_log a = {0};
    int64_t positions;
    uint64_t seed = 0;
    do { /* sampling (a random model repeats itself greedily), with a seed that samples a few tokens before a stop */
        free(a.text.p);
        memset(&a, 0, sizeof a);
        assert_true(++seed < 50);
        assert_ok(pissa_generate(g, tok, prompt, 40, 1.0f, 0.9f, seed, on_token, &a, &positions));
    } while (a.n < n_prompt + 8);
    /* every prompt token is passed on, then what was sampled; the text is the decode of all of it */
    assert_true(a.n >= n_prompt);
    assert_memory_equal(a.ids, prompt_ids, n_prompt * sizeof *prompt_ids);
    size_t len;
    char *text = decode(tok, a.ids, a.n, 1, &len);
    assert_int_equal(len, a.text.n);
    assert_memory_equal(text, a.text.p, len);
    free(text);
    /* make a sampled token a stop id, at its first appearance (the latest such): generation ends just before it */
    size_t k = n_prompt;
    for (size_t j = n_prompt; j < a.n; j++) {
        int seen = 0;
        for (size_t i = n_prompt; i < j; i++) seen |= a.ids[i] == a.ids[j];
        if (!seen) k = j;
    }
    assert_true(a.n > k);
    print_message("stop at sampled token %zu of the first run (%zu prompt tokens, %zu sampled, seed %llu)\n",
                  k - n_prompt + 1, n_prompt, a.n - n_prompt, (unsigned long long)seed);
    char gen[64];
    snprintf(gen, sizeof gen, "{\"eos_token_id\": [%d]}", (int)a.ids[k]);
    tu_write_bytes(gc, gen, strlen(gen));
    pissa_tokenizer *tok2;
    assert_ok(pissa_tokenizer_load(dir, (int32_t)pissa_generator_vocab_size(g), &tok2));
    gen_log b = {0};
    assert_ok(pissa_generate(g, tok2, prompt, 40, 1.0f, 0.9f, seed, on_token, &b, &positions));
    assert_int_equal(b.n, k);
    assert_memory_equal(b.ids, a.ids, k * sizeof *a.ids);
    assert_int_equal(positions, (int64_t)k);
    /* pissa-generate finds the folder's tokenizer.json by itself */
    char *out = tu_path(dir, "out.txt");
    snprintf(cmd, sizeof cmd, "%s --model %s --prompt 'Hello world' --steps 12 --temperature 0 > '%s' 2>/dev/null",
             PISSA_GENERATE_EXE, dir, out);
    assert_int_equal(tu_run(cmd, NULL), 0);
    char *printed = tu_slurp(out, NULL);
    assert_non_null(printed);
    assert_true(!strncmp(printed, "Hello world", 11));
    free(printed);
    /* pissa-generate --chat: the system and user messages (quotes, a backslash, a newline: escaped into the messages'
     * JSON) through the folder's chat template with add_generation_prompt, then only the reply printed: what the
     * library gives for the same rendered and encoded prompt, greedily */
    snprintf(cmd, sizeof cmd, "%s --model %s --chat --system 'Be \"brief\"' --prompt 'Hi \\ there\n?' --steps 40 "
             "--temperature 0 > '%s' 2>/dev/null", PISSA_GENERATE_EXE, dir, out);
    assert_int_equal(tu_run(cmd, NULL), 0);
    printed = tu_slurp(out, NULL);
    assert_non_null(printed);
    const char *messages = "[{\"role\": \"system\", \"content\": \"Be \\\"brief\\\"\"}, "
                           "{\"role\": \"user\", \"content\": \"Hi \\\\ there\\n?\"}]";
    char *rendered;
    size_t rendered_len, n_chat;
    assert_ok(pissa_chat_apply(tok2, NULL, messages, 1, NULL, &rendered, &rendered_len));
    assert_non_null(strstr(rendered, "Hi \\ there\n?"));
    int32_t *chat_ids = encode(tok2, rendered, rendered_len, 0, &n_chat);
    gen_log c = {0};
    assert_ok(pissa_generate_tokens(g, tok2, chat_ids, n_chat, 40, 0.0f, 0.9f, 1, on_token, &c, &positions));
    pissa__sb_put(&c.text, "\n", 1); /* the program ends with a newline */
    print_message("pissa-generate --chat: %zu prompt tokens, a reply of %zu tokens\n", n_chat, c.n);
    assert_true(c.n > 0);
    assert_int_equal(strlen(printed), c.text.n);
    assert_memory_equal(printed, c.text.p, c.text.n);
    free(c.text.p);
    free(chat_ids);
    pissa_free(rendered);
    free(printed);
    free(out);
    free(a.text.p);
    free(b.text.p);
    free(prompt_ids);
    pissa_tokenizer_free(tok);
    pissa_tokenizer_free(tok2);
    pissa_generator_free(g);
    tu_rmtree(dir);
    free(dir);
    free(tj);
    free(tc);
    free(gc);
}

/* ---- pissa-tokenize ---- */

/* Runs pissa-tokenize with ARGS on STDIN_BYTES; returns the exit status, *OUT gets stdout (caller frees). */
static int run_tokenize(const char *dir, const char *args, const char *in, size_t in_len, char **out) {
    char *ip = tu_path(dir, "in"), *op = tu_path(dir, "out"), cmd[1024];
    tu_write_bytes(ip, in, in_len);
    snprintf(cmd, sizeof cmd, "%s %s < '%s' > '%s' 2>/dev/null", PISSA_TOKENIZE_EXE, args, ip, op);
    int rc = tu_run(cmd, NULL);
    *out = tu_slurp(op, NULL);
    free(ip);
    free(op);
    return rc;
}

static void pissa_tokenize_program_encodes_and_decodes(void **state) {
    (void)state;
    char *dir = tu_tempdir("hfcli");
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(REF "/gpt2_style", 0, &tok));
    const char *text = "Hello  world 12\n<|im_start|>é";
    for (int special = 0; special < 2; special++) {
        size_t n;
        int32_t *ids = encode(tok, text, strlen(text), special, &n);
        pissa__strbuf want = {0};
        pissa__sb_puts(&want, "[");
        for (size_t i = 0; i < n; i++) {
            char num[16];
            snprintf(num, sizeof num, i ? ", %d" : "%d", (int)ids[i]);
            pissa__sb_puts(&want, num);
        }
        pissa__sb_puts(&want, "]\n");
        char *out;
        assert_int_equal(run_tokenize(dir, special ? "--tokenizer " REF "/gpt2_style"
                                                   : "--tokenizer " REF "/gpt2_style --no-special",
                                      text, strlen(text), &out), 0);
        assert_string_equal(out, want.p);
        free(out);
        /* and back, with and without the special tokens */
        for (int skip = 0; skip < 2; skip++) {
            size_t len;
            char *dec = decode(tok, ids, n, skip, &len);
            assert_int_equal(run_tokenize(dir, skip ? "--tokenizer " REF "/gpt2_style --decode --skip-special"
                                                    : "--tokenizer " REF "/gpt2_style --decode",
                                          want.p, want.n, &out), 0);
            assert_non_null(out);
            assert_string_equal(out, dec); /* exactly the text, no newline added */
            free(out);
            free(dec);
        }
        free(want.p);
        free(ids);
    }
    /* bad input: exit 1; a usage error: exit 2 */
    char *out;
    assert_int_equal(run_tokenize(dir, "--tokenizer " REF "/gpt2_style", "ab\xff", 3, &out), 1);
    free(out);
    const char *bad_json[] = {"[1, x]", "[1.5]", "{}", "[1,]", "[1] 2", "[99999999999]", ""};
    for (size_t i = 0; i < sizeof bad_json / sizeof *bad_json; i++) {
        assert_int_equal(run_tokenize(dir, "--tokenizer " REF "/gpt2_style --decode", bad_json[i], strlen(bad_json[i]),
                                      &out), 1);
        free(out);
    }
    assert_int_equal(run_tokenize(dir, "--tokenizer " REF "/gpt2_style --decode", "[-1]", 4, &out), 1);
    free(out);
    assert_int_equal(run_tokenize(dir, "", "x", 1, &out), 2);
    free(out);
    assert_int_equal(run_tokenize(dir, "--tokenizer /no/such/tokenizer.json", "x", 1, &out), 1);
    free(out);
    pissa_tokenizer_free(tok);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama2_matches_transformers_js),
        cmocka_unit_test(llama3_matches_transformers_js),
        cmocka_unit_test(qwen3_matches_transformers_js),
        cmocka_unit_test(gpt2_style_matches_transformers_js),
        cmocka_unit_test(streaming_decode_releases_whole_characters),
        cmocka_unit_test(text_dataset_is_cut_from_the_transformers_encoding),
        cmocka_unit_test(generate_with_tokenizer_json_stops_at_stop_ids),
        cmocka_unit_test(pissa_tokenize_program_encodes_and_decodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
