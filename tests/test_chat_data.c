/* Data sets in TRL's formats (src/chat_data.c, src/data.c): every row of tests/reference/data/rows.jsonl against
 * what TRL's rules give with transformers.js and @huggingface/jinja (make_data_reference.mjs: independent spans from
 * hand-marked templates, token offsets from the token strings) for the real Llama-3, Qwen3 and Llama-2 tokenizers
 * and a GPT-2/SmolLM2-style one, with their own and the committed ChatML, Mistral, Zephyr and SmolLM2 templates and
 * one with {% generation %} blocks; the conversations refused rather than guessed; the loader (formats mixed in a
 * file, plain text, truncation and its one warning); packing (TRL's best-fit-decreasing bins) and the trainer on
 * packed rows; pissa-tokenize --chat; and pissa-finetune on a model folder's chat JSONL against pissa-eval. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define DATA PISSA_TEST_REFERENCE_DIR "/data"
#define TOKENIZERS PISSA_SHARED_DATA_DIR "/tokenizers"
#define GPT2 PISSA_TEST_REFERENCE_DIR "/tokenizers/gpt2_style"

static void write_text(const char *path, const char *s) { tu_write_bytes(path, s, strlen(s)); }

/* The line of rows.jsonl whose "name" is NAME (caller frees). */
static char *row_named(const char *rows, const char *name) {
    char key[128];
    snprintf(key, sizeof key, "\"name\": \"%s\"", name);
    const char *at = strstr(rows, key);
    assert_non_null(at);
    const char *b = at, *e = strchr(at, '\n');
    while (b > rows && b[-1] != '\n') b--;
    return strndup(b, e ? (size_t)(e - b) : strlen(b));
}

static const char *suite_tokenizer(const char *spec, char *buf, size_t n) {
    if (!strncmp(spec, "shared:", 7)) snprintf(buf, n, "%s/%s", PISSA_SHARED_DATA_DIR, spec + 7);
    else snprintf(buf, n, "%s/%s", DATA, spec);
    return buf;
}

/* ---- against the reference ---- */

static void rows_encode_as_trl_with_transformers_js(void **state) {
    (void)state;
    char *rows = tu_slurp(DATA "/rows.jsonl", NULL), *raw = tu_slurp(DATA "/expected.json", NULL);
    assert_non_null(rows);
    assert_non_null(raw);
    cJSON *doc = cJSON_Parse(raw);
    assert_non_null(doc);
    const char *need[3] = {TOKENIZERS "/qwen3/tokenizer.json", TOKENIZERS "/llama3/tokenizer.json",
                           TOKENIZERS "/llama2/tokenizer.json"};
    tu_need_files(need, 3);
    int n_rows = 0, n_targets = 0, n_refused = 0;
    for (const cJSON *s = cJSON_GetObjectItem(doc, "suites")->child; s; s = s->next) {
        const char *name = cJSON_GetObjectItem(s, "name")->valuestring;
        const cJSON *tmpl = cJSON_GetObjectItem(s, "template");
        char tpath[512], mpath[512];
        pissa_tokenizer *tok;
        assert_ok(pissa_tokenizer_load(suite_tokenizer(cJSON_GetObjectItem(s, "tokenizer")->valuestring, tpath,
                                                       sizeof tpath), 0, &tok));
        pissa_data_opts o = pissa_data_default_opts();
        char *template_text = NULL;
        if (cJSON_IsString(tmpl)) {
            snprintf(mpath, sizeof mpath, "%s/%s", DATA, tmpl->valuestring);
            assert_non_null(template_text = tu_slurp(mpath, NULL));
            o.chat_template = template_text;
        }
        pissa_row_encoder *e;
        assert_ok(pissa_row_encoder_create(tok, &o, &e));
        for (const cJSON *r = cJSON_GetObjectItem(s, "rows")->child; r; r = r->next) {
            const char *row_name = cJSON_GetObjectItem(r, "name")->valuestring;
            char *line = row_named(rows, row_name);
            pissa_row got;
            pissa_status st = pissa_row_encoder_encode(e, line, strlen(line), &got);
            const cJSON *err = cJSON_GetObjectItem(r, "error");
            if (err) { /* the template raises: so must libpissa, with the template's message */
                if (st != PISSA_ERR_INVALID_ARG || !strstr(pissa_last_error(), err->valuestring))
                    fail_msg("%s / %s: the template raises \"%s\"; libpissa gave %s: %s", name, row_name,
                             err->valuestring, pissa_status_name(st), pissa_last_error());
                n_refused++;
                free(line);
                continue;
            }
            if (st != PISSA_OK) fail_msg("%s / %s: %s", name, row_name, pissa_last_error());
            const cJSON *ids = cJSON_GetObjectItem(r, "input_ids");
            size_t n = (size_t)cJSON_GetArraySize(ids), k = 0;
            int32_t *want = malloc(n * sizeof *want), *labels = malloc(n * sizeof *labels);
            for (const cJSON *x = ids->child; x; x = x->next, k++) want[k] = labels[k] = (int32_t)x->valuedouble;
            int32_t *mask = calloc(n, sizeof *mask);
            for (const cJSON *t = cJSON_GetObjectItem(r, "targets")->child; t; t = t->next)
                for (int j = (int)t->child->valuedouble; j < (int)t->child->next->valuedouble; j++) mask[j] = 1;
            for (size_t j = 0; j < n; j++) {
                if (!mask[j]) labels[j] = PISSA_IGNORE_INDEX;
                else n_targets++;
            }
            if ((size_t)got.len != n) fail_msg("%s / %s: %lld tokens, want %zu", name, row_name, (long long)got.len, n);
            for (size_t j = 0; j < n; j++) {
                if (got.input_ids[j] != want[j])
                    fail_msg("%s / %s: input_ids[%zu] = %d, want %d", name, row_name, j, got.input_ids[j], want[j]);
                if (got.labels[j] != labels[j])
                    fail_msg("%s / %s: labels[%zu] = %d, want %d (token %d %s the loss)", name, row_name, j,
                             got.labels[j], labels[j], want[j], mask[j] ? "in" : "out of");
            }
            n_rows++;
            free(want), free(labels), free(mask), free(line);
        }
        pissa_row_encoder_free(e);
        pissa_tokenizer_free(tok);
        free(template_text);
    }
    printf("%d rows give transformers.js's ids and TRL's %d targets; %d conversations refused as the template "
           "refuses them\n", n_rows, n_targets, n_refused);
    assert_true(n_rows >= 90 && n_refused >= 1);
    cJSON_Delete(doc);
    free(raw);
    free(rows);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_encode_as_trl_with_transformers_js),
    };
    return cmocka_run_group_tests_name("chat_data", tests, NULL, NULL);
}
