/* Training data: JSONL rows (good file, every kind of bad row reported as FILE:LINE), plain text cut into
 * windows overlapping by one token (hand-made tokenizer, tinyshakespeare with tok512), seeded shuffling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "testutil.h"

#define TOK512 PISSA_SHARED_DATA_DIR "/stories260K/tok512.bin"
#define SHAKESPEARE PISSA_SHARED_DATA_DIR "/tinyshakespeare/input.txt"

static void write_text(const char *path, const char *s) { tu_write_bytes(path, s, strlen(s)); }

static void assert_row(const pissa_dataset *d, size_t i, const int32_t *ids, const int32_t *labels, int64_t len) {
    pissa_row r;
    assert_ok(pissa_dataset_row(d, i, &r));
    assert_int_equal(r.len, len);
    for (int64_t k = 0; k < len; k++) {
        if (r.input_ids[k] != ids[k]) fail_msg("row %zu input_ids[%lld] = %d, expected %d", i, (long long)k,
                                               r.input_ids[k], ids[k]);
        if (r.labels[k] != labels[k]) fail_msg("row %zu labels[%lld] = %d, expected %d", i, (long long)k,
                                               r.labels[k], labels[k]);
    }
}

/* ---- JSONL ---- */

static void jsonl_reads_rows_labels_default_and_skips_blank_lines(void **state) {
    (void)state;
    char *dir = tu_tempdir("data");
    char *path = tu_path(dir, "rows.jsonl");
    write_text(path, "{\"input_ids\": [1, 5, 9], \"labels\": [-100, 5, 9]}\n"
                     "\n"
                     "   \t\n"
                     "{\"input_ids\": [0, 49], \"text\": \"ignored\"}\r\n"
                     "{\"labels\": [7, -100, -100, 3], \"input_ids\": [7, 8, 9, 3]}\n"
                     "{\"input_ids\": [2], \"labels\": null}"); /* no final newline */
    pissa_dataset *d;
    assert_ok(pissa_dataset_load_jsonl(path, 50, &d));
    assert_int_equal(pissa_dataset_count(d), 4);
    assert_int_equal(pissa_dataset_total_tokens(d), 10);
    assert_int_equal(pissa_dataset_max_len(d), 4);
    assert_row(d, 0, (int32_t[]){1, 5, 9}, (int32_t[]){-100, 5, 9}, 3);
    assert_row(d, 1, (int32_t[]){0, 49}, (int32_t[]){0, 49}, 2);
    assert_row(d, 2, (int32_t[]){7, 8, 9, 3}, (int32_t[]){7, -100, -100, 3}, 4);
    assert_row(d, 3, (int32_t[]){2}, (int32_t[]){2}, 1);
    pissa_row r;
    assert_int_equal(pissa_dataset_row(d, 4, &r), PISSA_ERR_INVALID_ARG);
    pissa_dataset_free(d);
    pissa_dataset_free(NULL);

    /* an empty file is an empty dataset */
    write_text(path, "\n\n");
    assert_ok(pissa_dataset_load_jsonl(path, 50, &d));
    assert_int_equal(pissa_dataset_count(d), 0);
    assert_int_equal(pissa_dataset_max_len(d), 0);
    pissa_dataset_free(d);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void jsonl_bad_rows_fail_with_file_and_line(void **state) {
    (void)state;
    char *dir = tu_tempdir("data");
    char *path = tu_path(dir, "bad.jsonl");
    static const struct {
        const char *row;
        const char *message;
    } bad[] = {
        {"{\"input_ids\": [1, 2}", "invalid JSON"},
        {"{\"input_ids\": [1, 2]} {\"input_ids\": [3]}", "text after the JSON object"},
        {"[1, 2, 3]", "must be a JSON object"},
        {"{\"labels\": [1, 2]}", "missing \"input_ids\""},
        {"{\"input_ids\": \"1 2\"}", "\"input_ids\" is not an array"},
        {"{\"input_ids\": []}", "\"input_ids\" is empty"},
        {"{\"input_ids\": [1, 2.5]}", "input_ids[1] is not an integer"},
        {"{\"input_ids\": [1, \"2\"]}", "input_ids[1] is not an integer"},
        {"{\"input_ids\": [true]}", "input_ids[0] is not an integer"},
        {"{\"input_ids\": [1, 2, 50]}", "input_ids[2] = 50 is outside the vocabulary [0, 50)"},
        {"{\"input_ids\": [-1]}", "input_ids[0] = -1 is outside the vocabulary"},
        {"{\"input_ids\": [-100]}", "input_ids[0] = -100 is outside the vocabulary"},
        {"{\"input_ids\": [1e12]}", "input_ids[0] = 1000000000000 is outside the vocabulary"},
        {"{\"input_ids\": [1, 2], \"labels\": [1, -5]}", "labels[1] = -5 is outside the vocabulary [0, 50) and is not -100"},
        {"{\"input_ids\": [1, 2], \"labels\": [1.5, 2]}", "labels[0] is not an integer"},
        {"{\"input_ids\": [1, 2], \"labels\": {\"a\": 1}}", "\"labels\" is not an array"},
        {"{\"input_ids\": [1, 2, 3], \"labels\": [1, 2]}", "\"labels\" has 2 elements but \"input_ids\" has 3"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        /* a good row, a blank line, then the bad row on line 3, then another good row */
        char text[512];
        snprintf(text, sizeof text, "{\"input_ids\": [1]}\n\n%s\n{\"input_ids\": [2]}\n", bad[k].row);
        write_text(path, text);
        pissa_dataset *d = (pissa_dataset *)(uintptr_t)1;
        pissa_status s = pissa_dataset_load_jsonl(path, 50, &d);
        if (s != PISSA_ERR_FORMAT) fail_msg("row %s: got %s, expected PISSA_ERR_FORMAT", bad[k].row, pissa_status_name(s));
        assert_null(d);
        char where[600];
        snprintf(where, sizeof where, "%s:3: ", path);
        if (!strstr(pissa_last_error(), where) || !strstr(pissa_last_error(), bad[k].message))
            fail_msg("row %s: message \"%s\" lacks \"%s\" or \"%s\"", bad[k].row, pissa_last_error(), where,
                     bad[k].message);
    }
    pissa_dataset *d = NULL;
    assert_int_equal(pissa_dataset_load_jsonl(path, 0, &d), PISSA_ERR_INVALID_ARG);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

/* Rows from memory are the rows the same JSONL file gives, and are refused by the same rules. */
static void rows_from_memory_equal_the_jsonl_rows_and_are_checked_alike(void **state) {
    (void)state;
    const int32_t ids[] = {1, 5, 9, 0, 49, 7, 8, 9, 3}, labels[] = {-100, 5, 9, 0, 49, 7, -100, -100, 3};
    const int64_t offsets[] = {0, 3, 5, 9};
    pissa_dataset *d;
    assert_ok(pissa_dataset_from_rows(ids, labels, offsets, 3, 50, &d));
    assert_int_equal(pissa_dataset_count(d), 3);
    assert_int_equal(pissa_dataset_total_tokens(d), 9);
    assert_int_equal(pissa_dataset_max_len(d), 4);
    assert_row(d, 0, ids, labels, 3);
    assert_row(d, 1, ids + 3, labels + 3, 2);
    assert_row(d, 2, ids + 5, labels + 5, 4);
    pissa_dataset_free(d);
    assert_ok(pissa_dataset_from_rows(ids, NULL, offsets, 3, 50, &d)); /* labels = input_ids */
    assert_row(d, 2, ids + 5, ids + 5, 4);
    pissa_dataset_free(d);
    assert_ok(pissa_dataset_from_rows(NULL, NULL, NULL, 0, 50, &d)); /* no rows */
    assert_int_equal(pissa_dataset_count(d), 0);
    pissa_dataset_free(d);

    struct {
        const int32_t *ids, *labels;
        int64_t offsets[3];
        pissa_status st;
        const char *msg;
    } bad[] = {
        {(int32_t[]){1, 2}, NULL, {0, 2, 2}, PISSA_ERR_FORMAT, "row 1: input_ids is empty"},
        {(int32_t[]){1, 50}, NULL, {0, 1, 2}, PISSA_ERR_FORMAT, "row 1, position 0: input_ids value 50"},
        {(int32_t[]){1, -1}, NULL, {0, 2, 2}, PISSA_ERR_FORMAT, "row 0, position 1: input_ids value -1"},
        {(int32_t[]){1, 2}, (int32_t[]){1, -5}, {0, 1, 2}, PISSA_ERR_FORMAT, "row 1, position 0: labels value -5"},
        {(int32_t[]){1, 2}, NULL, {1, 2, 2}, PISSA_ERR_INVALID_ARG, "offsets[0] is 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = (pissa_dataset *)&d; /* must come back NULL */
        assert_int_equal(pissa_dataset_from_rows(bad[i].ids, bad[i].labels, bad[i].offsets, 2, 50, &d), bad[i].st);
        assert_null(d);
        if (!strstr(pissa_last_error(), bad[i].msg)) fail_msg("case %zu: '%s' lacks '%s'", i, pissa_last_error(),
                                                             bad[i].msg);
    }
}

/* ---- plain text ---- */

/* A llama2.c tokenizer file: <unk>, BOS, EOS, 256 byte tokens, then " " and "a".."j" (ids 259..269) with no
 * merges possible, so a text's encoding is known exactly. */
static char *write_letter_tokenizer(const char *dir) {
    unsigned char buf[8192];
    size_t n = 0;
#define PUT(p, k) (memcpy(buf + n, (p), (k)), n += (k))
    int32_t max_len = 6;
    PUT(&max_len, 4);
    char pieces[270][8];
    strcpy(pieces[0], "<unk>");
    strcpy(pieces[1], "\n<s>\n");
    strcpy(pieces[2], "\n</s>\n");
    for (int i = 0; i < 256; i++) snprintf(pieces[3 + i], 8, "<0x%02X>", i);
    strcpy(pieces[259], " ");
    for (int i = 0; i < 10; i++) snprintf(pieces[260 + i], 8, "%c", 'a' + i);
    for (int i = 0; i < 270; i++) {
        float score = -(float)i;
        int32_t len = (int32_t)strlen(pieces[i]);
        PUT(&score, 4);
        PUT(&len, 4);
        PUT(pieces[i], (size_t)len);
    }
#undef PUT
    char *path = tu_path(dir, "letters.bin");
    tu_write_bytes(path, buf, n);
    return path;
}

static void text_windows_overlap_by_one_and_drop_the_partial_tail(void **state) {
    (void)state;
    char *dir = tu_tempdir("data");
    char *tpath = write_letter_tokenizer(dir);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(tpath, 270, &tok));
    /* "abcdefghij" -> BOS, " ", a..j: the stream t[0..12) */
    const char *text = "abcdefghij";
    int32_t t[12] = {1, 259};
    for (int i = 0; i < 10; i++) t[2 + i] = 260 + i;

    /* T = 4: rows start at 0, 3, 6 (stride T - 1); (12 - 1) / 3 = 3 rows; t[10], t[11] dropped */
    pissa_dataset *d;
    assert_ok(pissa_dataset_from_text(tok, text, strlen(text), 4, &d));
    assert_int_equal(pissa_dataset_count(d), 3);
    assert_int_equal(pissa_dataset_max_len(d), 4);
    for (size_t i = 0; i < 3; i++) assert_row(d, i, t + 3 * i, t + 3 * i, 4);
    pissa_dataset_free(d);

    /* T = 2 gives every adjacent pair; T = 12 one row with the whole stream; T = 13 no row */
    assert_ok(pissa_dataset_from_text(tok, text, strlen(text), 2, &d));
    assert_int_equal(pissa_dataset_count(d), 11);
    for (size_t i = 0; i < 11; i++) assert_row(d, i, t + i, t + i, 2);
    pissa_dataset_free(d);
    assert_ok(pissa_dataset_from_text(tok, text, strlen(text), 12, &d));
    assert_int_equal(pissa_dataset_count(d), 1);
    assert_row(d, 0, t, t, 12);
    pissa_dataset_free(d);
    assert_ok(pissa_dataset_from_text(tok, text, strlen(text), 13, &d));
    assert_int_equal(pissa_dataset_count(d), 0);
    pissa_dataset_free(d);
    assert_ok(pissa_dataset_from_text(tok, "", 0, 4, &d));
    assert_int_equal(pissa_dataset_count(d), 0);
    pissa_dataset_free(d);
    d = NULL;
    assert_int_equal(pissa_dataset_from_text(tok, text, strlen(text), 1, &d), PISSA_ERR_INVALID_ARG);
    assert_null(d);

    /* from a file: the same rows */
    char *xpath = tu_path(dir, "x.txt");
    write_text(xpath, text);
    assert_ok(pissa_dataset_load_text(xpath, tok, 4, &d));
    assert_int_equal(pissa_dataset_count(d), 3);
    for (size_t i = 0; i < 3; i++) assert_row(d, i, t + 3 * i, t + 3 * i, 4);
    pissa_dataset_free(d);
    free(xpath);
    pissa_tokenizer_free(tok);
    free(tpath);
    tu_rmtree(dir);
    free(dir);
}

/* The rows of tinyshakespeare: one encoding of the whole text, sliced with stride T - 1, so that the targets of
 * all rows (positions 1..T-1 of each) are the stream's tokens 1..n(T-1), each exactly once, in order. */
static void tinyshakespeare_rows_predict_every_token_once(void **state) {
    (void)state;
    const char *need[2] = {TOK512, SHAKESPEARE};
    tu_need_files(need, 2);
    size_t len;
    char *text = tu_slurp(SHAKESPEARE, &len);
    assert_non_null(text);
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(TOK512, 512, &tok));
    size_t cap = PISSA_TOKENIZER_MAX_TOKENS(len), N;
    int32_t *stream = malloc(cap * sizeof *stream);
    assert_ok(pissa_tokenizer_encode(tok, text, len, 1, 0, stream, cap, &N));

    const int64_t T = 256;
    pissa_dataset *d;
    assert_ok(pissa_dataset_load_text(SHAKESPEARE, tok, T, &d));
    size_t rows = pissa_dataset_count(d);
    print_message("tinyshakespeare: %zu tokens -> %zu rows of %lld\n", N, rows, (long long)T);
    assert_int_equal(rows, (N - 1) / (size_t)(T - 1));
    assert_true(rows * (size_t)(T - 1) + 1 <= N && N - (rows * (size_t)(T - 1) + 1) < (size_t)(T - 1));
    pissa_row r;
    assert_ok(pissa_dataset_row(d, 0, &r));
    assert_int_equal(r.input_ids[0], PISSA_TOKEN_BOS);
    size_t next_target = 1; /* stream index the next row's first target must be */
    for (size_t i = 0; i < rows; i++) {
        assert_ok(pissa_dataset_row(d, i, &r));
        assert_int_equal(r.len, T);
        assert_memory_equal(r.labels, r.input_ids, (size_t)T * sizeof(int32_t));
        assert_int_equal(r.input_ids[0], stream[next_target - 1]); /* the context token carried over */
        for (int64_t k = 1; k < T; k++)
            if (r.labels[k] != stream[next_target + (size_t)k - 1]) fail_msg("row %zu target %lld differs", i, (long long)k);
        next_target += (size_t)(T - 1);
    }
    assert_int_equal(next_target, rows * (size_t)(T - 1) + 1);
    /* the rows' text is the start of the file */
    size_t dl;
    char *back = malloc(len + 1);
    assert_ok(pissa_tokenizer_decode(tok, stream, next_target, back, len + 1, &dl));
    assert_true(dl <= len);
    assert_memory_equal(back, text, dl);
    free(back);
    pissa_dataset_free(d);
    free(stream);
    free(text);
    pissa_tokenizer_free(tok);
}

/* ---- shuffling ---- */

static void shuffle_is_a_seeded_uniform_permutation(void **state) {
    (void)state;
    enum { n = 1000 };
    size_t *p = malloc(n * sizeof *p), *q = malloc(n * sizeof *q);
    char seen[n] = {0};
    pissa_shuffle_indices(p, n, 42);
    for (size_t i = 0; i < n; i++) {
        assert_true(p[i] < n);
        assert_false(seen[p[i]]);
        seen[p[i]] = 1;
    }
    pissa_shuffle_indices(q, n, 42);
    assert_memory_equal(p, q, n * sizeof *p);
    pissa_shuffle_indices(q, n, 43);
    size_t same = 0;
    for (size_t i = 0; i < n; i++) same += p[i] == q[i];
    assert_true(same < 20); /* ~1 fixed point expected between two random permutations */
    size_t fixed = 0;
    for (size_t i = 0; i < n; i++) fixed += p[i] == i;
    assert_true(fixed < 20);
    pissa_shuffle_indices(q, 0, 1);
    pissa_shuffle_indices(q, 1, 1);
    assert_int_equal(q[0], 0);

    /* all 6 orders of 3 items about equally often over 6000 seeds: chi-square with 5 dof, p < 1e-4 at 25.7 */
    int counts[6] = {0};
    for (uint64_t seed = 0; seed < 6000; seed++) {
        size_t r[3];
        pissa_shuffle_indices(r, 3, seed);
        counts[r[0] * 2 + (r[1] > r[2])]++;
    }
    double chi2 = 0;
    for (int k = 0; k < 6; k++) chi2 += (counts[k] - 1000.0) * (counts[k] - 1000.0) / 1000.0;
    print_message("shuffle of 3: chi2 = %.2f over 6 orders\n", chi2);
    assert_true(chi2 < 25.7);
    free(p);
    free(q);
}

/* The permutations themselves, against tests/reference/make_shuffle_reference.py (splitmix64, xoshiro256** and
 * Fisher–Yates written from their published definitions): a resumed run visits rows in this order, so a change to
 * the generator, its seeding or the shuffle must show here, not as a silently different run. */
static void shuffle_orders_match_the_golden_permutations(void **state) {
    (void)state;
    char *text = tu_slurp(PISSA_TEST_REFERENCE_DIR "/shuffle_golden.json", NULL);
    assert_non_null(text);
    cJSON *cases = cJSON_Parse(text);
    assert_non_null(cases);
    int n_cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        size_t n = (size_t)cJSON_GetObjectItem(c, "n")->valuedouble;
        uint64_t seed = strtoull(cJSON_GetObjectItem(c, "seed")->valuestring, NULL, 10);
        const cJSON *want = cJSON_GetObjectItem(c, "perm");
        assert_int_equal((size_t)cJSON_GetArraySize(want), n);
        size_t *p = malloc((n ? n : 1) * sizeof *p);
        pissa_shuffle_indices(p, n, seed);
        for (size_t i = 0; i < n; i++)
            if (p[i] != (size_t)cJSON_GetArrayItem(want, (int)i)->valuedouble)
                fail_msg("n %zu, seed %llu: perm[%zu] = %zu, golden %d", n, (unsigned long long)seed, i, p[i],
                         cJSON_GetArrayItem(want, (int)i)->valueint);
        free(p);
        n_cases++;
    }
    assert_true(n_cases >= 10);
    cJSON_Delete(cases);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jsonl_reads_rows_labels_default_and_skips_blank_lines),
        cmocka_unit_test(jsonl_bad_rows_fail_with_file_and_line),
        cmocka_unit_test(rows_from_memory_equal_the_jsonl_rows_and_are_checked_alike),
        cmocka_unit_test(text_windows_overlap_by_one_and_drop_the_partial_tail),
        cmocka_unit_test(tinyshakespeare_rows_predict_every_token_once),
        cmocka_unit_test(shuffle_is_a_seeded_uniform_permutation),
        cmocka_unit_test(shuffle_orders_match_the_golden_permutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
