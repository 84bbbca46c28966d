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

/* splitmix64: deterministic lengths */
static uint64_t cli_like_rand(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

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

/* ---- the assistant turns, case by case ---- */

static pissa_tokenizer *gpt2_tokenizer(void) {
    pissa_tokenizer *tok;
    assert_ok(pissa_tokenizer_load(GPT2, 0, &tok));
    return tok;
}

/* Encodes ROW with TEMPLATE (NULL: the tokenizer's) and expects status WANT, whose message holds MSG. */
static void expect_row(pissa_tokenizer *tok, const char *template_text, const char *row, pissa_status want,
                       const char *msg, pissa_row *out) {
    pissa_data_opts o = pissa_data_default_opts();
    o.chat_template = template_text;
    pissa_row_encoder *e;
    assert_ok(pissa_row_encoder_create(tok, &o, &e));
    pissa_row r;
    pissa_status st = pissa_row_encoder_encode(e, row, strlen(row), &r);
    if (st != want || (msg && !strstr(pissa_last_error(), msg)))
        fail_msg("row %s: got %s \"%s\", want %s \"%s\"", row, pissa_status_name(st), pissa_last_error(),
                 pissa_status_name(want), msg ? msg : "");
    if (out && st == PISSA_OK) { /* a copy: the encoder's arrays die with it */
        int32_t *v = malloc(2 * (size_t)r.len * sizeof *v);
        memcpy(v, r.input_ids, (size_t)r.len * sizeof *v);
        memcpy(v + r.len, r.labels, (size_t)r.len * sizeof *v);
        *out = (pissa_row){.input_ids = v, .labels = v + r.len, .len = r.len};
    }
    pissa_row_encoder_free(e);
}

/* A span that starts and ends inside a token (" k" + "i" + "ng" is the one token " king") marks that token, as
 * transformers' char_to_token of the span's first and last characters does. */
static void spans_that_cut_a_token_mark_it(void **state) {
    (void)state;
    pissa_tokenizer *tok = gpt2_tokenizer();
    const char *t = "{% for m in messages %}{% if m.role == 'assistant' %}{{ ' k' }}{% generation %}{{ m.content }}"
                    "{% endgeneration %}{{ 'ng' }}{% else %}{{ m.content }}{% endif %}{% endfor %}";
    pissa_row r;
    expect_row(tok, t, "{\"messages\": [{\"role\": \"user\", \"content\": \"A\"}, {\"role\": \"assistant\", "
               "\"content\": \"i\"}]}", PISSA_OK, NULL, &r);
    assert_int_equal(r.len, 2); /* "A king": [65, 641] */
    assert_int_equal(r.input_ids[1], 641);
    assert_int_equal(r.labels[0], PISSA_IGNORE_INDEX);
    assert_int_equal(r.labels[1], 641);
    free((void *)r.input_ids);
    pissa_tokenizer_free(tok);
}

/* Where the rule cannot tell the assistant turns, the conversation is refused with the reason, not guessed. */
static void conversations_the_rule_cannot_mask_are_refused(void **state) {
    (void)state;
    pissa_tokenizer *tok = gpt2_tokenizer(); /* end-of-turn tokens: <|im_end|>, <|endoftext|> */
    const char *two = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
                      "\"content\": \"Hello\"}, {\"role\": \"user\", \"content\": \"Bye\"}, {\"role\": "
                      "\"assistant\", \"content\": \"Later\"}]}";
    /* turns that end with no end-of-turn token */
    expect_row(tok, "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}", two, PISSA_ERR_FORMAT,
               "messages[1] (assistant): no end-of-turn token follows", NULL);
    /* an end-of-turn token after the user turns only: the first one after the assistant ends the user's turn */
    expect_row(tok, "{% for m in messages %}{% if m.role == 'user' %}{{ '<|im_start|>user\\n' + m.content + "
               "'<|im_end|>\\n' }}{% else %}{{ '<|im_start|>assistant\\n' + m.content + '\\n' }}{% endif %}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}", two, PISSA_ERR_FORMAT,
               "comes after the text of messages[2]", NULL);
    /* a template whose render of the start depends on what follows */
    expect_row(tok, "{{ messages|length }}{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + "
               "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
               "{% endif %}",
               two, PISSA_ERR_FORMAT, "messages[1] (assistant): the chat template renders the conversation before it",
               NULL);
    /* an end-of-turn token inside the assistant's text; no assistant at all; the template's own refusal */
    expect_row(tok, NULL, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
               "\"content\": \"Hel<|im_end|>lo\"}]}", PISSA_ERR_FORMAT, "holds the end-of-turn token <|im_end|> in its "
               "content", NULL);
    expect_row(tok, NULL, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}", PISSA_ERR_FORMAT,
               "no assistant message", NULL);
    expect_row(tok, "{{ raise_exception('roles must alternate') }}", two, PISSA_ERR_INVALID_ARG,
               "roles must alternate", NULL);
    /* {% generation %} blocks that mark nothing (TRL raises too) */
    expect_row(tok, "{% for m in messages %}{{ m.content }}{% generation %}{% endgeneration %}{% endfor %}", two,
               PISSA_ERR_FORMAT, "blocks mark no text", NULL);
    /* the same conversations with every token a target need no turn: the first template is fine then */
    pissa_data_opts o = pissa_data_default_opts();
    o.assistant_only_loss = 0;
    o.chat_template = "{% for m in messages %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}";
    pissa_row_encoder *e;
    assert_ok(pissa_row_encoder_create(tok, &o, &e));
    pissa_row r;
    assert_ok(pissa_row_encoder_encode(e, two, strlen(two), &r));
    for (int64_t k = 0; k < r.len; k++) assert_int_equal(r.labels[k], r.input_ids[k]);
    pissa_row_encoder_free(e);
    /* a template that does not parse is refused when the encoder is made */
    o.chat_template = "{% for %}";
    assert_int_equal(pissa_row_encoder_create(tok, &o, &e), PISSA_ERR_FORMAT);
    assert_null(e);
    pissa_tokenizer_free(tok);
}

/* ---- the loader ---- */

static char *write_rows(const char *dir, const char *name, const char *text) {
    char *path = tu_path(dir, name);
    write_text(path, text);
    return path;
}

/* Every row of a file with each format on its own line is the row the encoder gives for that line. */
static void every_format_reads_from_one_file(void **state) {
    (void)state;
    pissa_tokenizer *tok = gpt2_tokenizer();
    static const char *const lines[] = {
        "{\"text\": \"To be, or not to be\"}",
        "{\"prompt\": \"Q: 2+2? A:\", \"completion\": \" 4\"}",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
        "\"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}]}",
        "{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"completion\": [{\"role\": \"assistant\", "
        "\"content\": \"Hello.\"}]}",
        "{\"input_ids\": [5, 6, 7], \"labels\": [-100, 6, 7]}",
    };
    char *dir = tu_tempdir("chatdata"), text[2048] = "";
    for (int k = 0; k < 5; k++) strcat(strcat(text, lines[k]), k == 2 ? "\n\n" : "\n");
    char *path = write_rows(dir, "rows.jsonl", text);
    pissa_dataset *d;
    assert_ok(pissa_dataset_load(path, tok, 962, NULL, &d));
    assert_int_equal(pissa_dataset_count(d), 5);
    assert_false(pissa_dataset_is_packed(d));
    pissa_row_encoder *e;
    assert_ok(pissa_row_encoder_create(tok, NULL, &e));
    for (size_t k = 0; k < 5; k++) {
        pissa_row got, want;
        assert_ok(pissa_dataset_row(d, k, &got));
        assert_ok(pissa_row_encoder_encode(e, lines[k], strlen(lines[k]), &want));
        assert_int_equal(got.len, want.len);
        assert_memory_equal(got.input_ids, want.input_ids, (size_t)got.len * sizeof(int32_t));
        assert_memory_equal(got.labels, want.labels, (size_t)got.len * sizeof(int32_t));
        assert_null(got.position_ids);
        int64_t targets = 0;
        for (int64_t j = 0; j < got.len; j++) targets += got.labels[j] != PISSA_IGNORE_INDEX;
        assert_true(targets > 0 && (k == 0 || targets < got.len)); /* only the text row learns every token */
    }
    /* the conversational prompt/completion row learns what the messages row learns in its last turn */
    pissa_row conv, msgs;
    assert_ok(pissa_dataset_row(d, 3, &conv));
    assert_ok(pissa_dataset_row(d, 2, &msgs));
    int64_t a = 0, b = 0;
    for (int64_t j = 0; j < conv.len; j++) a += conv.labels[j] != PISSA_IGNORE_INDEX;
    for (int64_t j = 0; j < msgs.len; j++) b += msgs.labels[j] != PISSA_IGNORE_INDEX;
    assert_int_equal(a, b);
    /* a text gets the eos token; without completion_only_loss or assistant_only_loss every token is a target */
    pissa_row r;
    assert_ok(pissa_dataset_row(d, 0, &r));
    assert_int_equal(r.input_ids[r.len - 2], 956); /* <|endoftext|> appended, then the post-processor's */
    assert_int_equal(r.input_ids[r.len - 1], 956);
    pissa_row_encoder_free(e);
    pissa_data_opts o = pissa_data_default_opts();
    o.completion_only_loss = o.assistant_only_loss = 0;
    assert_ok(pissa_row_encoder_create(tok, &o, &e));
    for (size_t k = 0; k < 4; k++) {
        assert_ok(pissa_row_encoder_encode(e, lines[k], strlen(lines[k]), &r));
        for (int64_t j = 0; j < r.len; j++) assert_int_equal(r.labels[j], r.input_ids[j]);
    }
    /* tools given as a JSON string are the tools given as a list */
    const char *as_list = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
                          "\"content\": \"Hello\"}], \"tools\": [{\"name\": \"f\"}]}";
    const char *as_text = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
                          "\"content\": \"Hello\"}], \"tools\": \"[{\\\"name\\\": \\\"f\\\"}]\"}";
    o.chat_template = "{{ tools|tojson }}{% for m in messages %}{{ m.content + '<|im_end|>' }}{% endfor %}";
    pissa_row_encoder_free(e);
    assert_ok(pissa_row_encoder_create(tok, &o, &e));
    assert_ok(pissa_row_encoder_encode(e, as_list, strlen(as_list), &r));
    int32_t first[64];
    int64_t n = r.len;
    assert_true(n < 64);
    memcpy(first, r.input_ids, (size_t)n * sizeof *first);
    assert_ok(pissa_row_encoder_encode(e, as_text, strlen(as_text), &r));
    assert_int_equal(r.len, n);
    assert_memory_equal(r.input_ids, first, (size_t)n * sizeof *first);
    pissa_row_encoder_free(e);
    pissa_dataset_free(d);
    free(path);
    tu_rmtree(dir);
    free(dir);
    pissa_tokenizer_free(tok);
}

static void bad_rows_name_their_line(void **state) {
    (void)state;
    pissa_tokenizer *tok = gpt2_tokenizer();
    static const struct {
        const char *row, *message;
    } bad[] = {
        {"{\"prompt\": \"a\"}", "\"prompt\" without \"completion\""},
        {"{\"completion\": \"a\"}", "\"completion\" without \"prompt\""},
        {"{\"prompt\": \"a\", \"completion\": [{\"role\": \"assistant\", \"content\": \"b\"}]}",
         "must both be strings or both lists of messages"},
        {"{\"messages\": \"hi\"}", "\"messages\" must be a non-empty list of messages"},
        {"{\"messages\": []}", "\"messages\" must be a non-empty list of messages"},
        {"{\"messages\": [{\"content\": \"hi\"}]}", "messages[0] is not a message"},
        {"{\"text\": 5}", "\"text\" is not a string"},
        {"{\"content\": \"x\"}", "a row needs \"text\", \"prompt\" and \"completion\", \"messages\" or \"input_ids\""},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}], "
         "\"chat_template_kwargs\": {\"messages\": []}}", "\"chat_template_kwargs\" may not set \"messages\""},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}], "
         "\"tools\": \"[nope\"}", "\"tools\" is a string but not JSON"},
        {"{\"input_ids\": [1, 2], \"labels\": [1]}", "\"labels\" has 1 elements"},
        {"{\"text\": \"\xc3(\"}", "not valid UTF-8"},
    };
    char *dir = tu_tempdir("chatdata");
    char *path = tu_path(dir, "bad.jsonl");
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char text[1024], where[600];
        snprintf(text, sizeof text, "{\"text\": \"fine\"}\n%s\n", bad[k].row);
        write_text(path, text);
        pissa_dataset *d = (pissa_dataset *)(uintptr_t)1;
        pissa_status st = pissa_dataset_load(path, tok, 962, NULL, &d);
        snprintf(where, sizeof where, "%s:2: ", path);
        if (st != PISSA_ERR_FORMAT || !strstr(pissa_last_error(), where) || !strstr(pissa_last_error(), bad[k].message))
            fail_msg("row %s: got %s \"%s\", want \"%s%s\"", bad[k].row, pissa_status_name(st), pissa_last_error(),
                     where, bad[k].message);
        assert_null(d);
    }
    /* a conversation without a tokenizer, and without a chat template */
    write_text(path, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n");
    pissa_dataset *d;
    assert_int_equal(pissa_dataset_load(path, NULL, 962, NULL, &d), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "needs a tokenizer"));
    char *tj = tu_path(dir, "tokenizer.json");
    size_t n;
    char *raw = tu_slurp(GPT2 "/tokenizer.json", &n);
    tu_write_bytes(tj, raw, n); /* without its tokenizer_config.json: no chat template */
    pissa_tokenizer *bare;
    assert_ok(pissa_tokenizer_load(dir, 0, &bare));
    write_text(path, "{\"text\": \"fine\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": "
               "\"assistant\", \"content\": \"b\"}]}\n");
    assert_int_equal(pissa_dataset_load(path, bare, 962, NULL, &d), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), ":2: a conversation needs a chat template"));
    pissa_tokenizer_free(bare);
    free(raw);
    free(tj);
    free(path);
    tu_rmtree(dir);
    free(dir);
    pissa_tokenizer_free(tok);
}

/* The warnings about cut rows. */
typedef struct log_capture {
    int warnings;
    char last[1024];
} log_capture;

static void capture(pissa_log_level level, const char *msg, void *user) {
    log_capture *c = user;
    if (level != PISSA_LOG_WARN || !strstr(msg, "longer than")) return;
    c->warnings++;
    snprintf(c->last, sizeof c->last, "%s", msg);
}

/* Rows longer than max_len keep their first max_len tokens, all counted in one warning; a row the cut leaves
 * without a target is dropped (TRL drops fully masked rows). */
static void long_rows_are_cut_and_counted_in_one_warning(void **state) {
    (void)state;
    pissa_tokenizer *tok = gpt2_tokenizer();
    char *dir = tu_tempdir("chatdata");
    char *path = write_rows(dir, "rows.jsonl",
                            "{\"text\": \"Now is the winter of our discontent made glorious summer\"}\n"
                            "{\"text\": \"Short.\"}\n"
                            "{\"prompt\": \"A long question that fills every token of the row\", \"completion\": "
                            "\" yes\"}\n"
                            "{\"messages\": [{\"role\": \"user\", \"content\": \"A long question that fills every "
                            "token\"}, {\"role\": \"assistant\", \"content\": \"No.\"}]}\n"
                            "{\"input_ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], \"labels\": [1, 2, 3, 4, 5, 6, 7, 8, "
                            "-100, -100]}\n");
    pissa_data_opts o = pissa_data_default_opts();
    o.max_len = 8;
    log_capture c = {0};
    pissa_set_log_callback(capture, &c);
    pissa_dataset *d, *full;
    assert_ok(pissa_dataset_load(path, tok, 962, &o, &d));
    pissa_set_log_callback(NULL, NULL);
    print_message("warning: %s\n", c.last);
    assert_int_equal(c.warnings, 1);
    assert_non_null(strstr(c.last, "4 of 5 rows are longer than 8 tokens"));
    assert_non_null(strstr(c.last, "without a target were dropped"));
    assert_int_equal(pissa_dataset_count(d), 3); /* the prompt/completion and the conversation lost every target */
    assert_ok(pissa_dataset_load(path, tok, 962, NULL, &full));
    size_t keep[3] = {0, 1, 4};
    for (size_t k = 0; k < 3; k++) {
        pissa_row r, w;
        assert_ok(pissa_dataset_row(d, k, &r));
        assert_ok(pissa_dataset_row(full, keep[k], &w));
        assert_int_equal(r.len, w.len < 8 ? w.len : 8);
        assert_memory_equal(r.input_ids, w.input_ids, (size_t)r.len * sizeof(int32_t));
        assert_memory_equal(r.labels, w.labels, (size_t)r.len * sizeof(int32_t));
    }
    pissa_dataset_free(full);
    pissa_dataset_free(d);
    /* no cut, no warning */
    c.warnings = 0;
    o.max_len = 1000;
    pissa_set_log_callback(capture, &c);
    assert_ok(pissa_dataset_load(path, tok, 962, &o, &d));
    pissa_set_log_callback(NULL, NULL);
    assert_int_equal(c.warnings, 0);
    pissa_dataset_free(d);
    free(path);
    tu_rmtree(dir);
    free(dir);
    pissa_tokenizer_free(tok);
}

/* AUTO reads a file as JSONL when its first line that is not blank is a JSON object, else as plain text, which is
 * cut into rows of max_len tokens as pissa_dataset_load_text cuts it. */
static void plain_text_is_told_from_jsonl(void **state) {
    (void)state;
    pissa_tokenizer *tok = gpt2_tokenizer();
    char *dir = tu_tempdir("chatdata");
    static const struct {
        const char *text;
        pissa_data_format want;
    } cases[] = {
        {"{\"text\": \"a\"}\n", PISSA_DATA_JSONL}, {"\n  \n {\"input_ids\": [1]} \n", PISSA_DATA_JSONL},
        {"", PISSA_DATA_JSONL}, {"Hello world\n{\"text\": \"a\"}\n", PISSA_DATA_TEXT},
        {"{ not json\n", PISSA_DATA_TEXT}, {"{\"a\": 1} trailing\n", PISSA_DATA_TEXT},
        {"[1, 2, 3]\n", PISSA_DATA_TEXT},
    };
    char *path = tu_path(dir, "data");
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_text(path, cases[k].text);
        pissa_data_format f;
        assert_ok(pissa_data_detect_format(path, &f));
        if (f != cases[k].want) fail_msg("\"%s\" read as %d, want %d", cases[k].text, (int)f, (int)cases[k].want);
    }
    pissa_data_format f;
    assert_ok(pissa_data_format_parse("text", &f));
    assert_int_equal(f, PISSA_DATA_TEXT);
    assert_int_equal(pissa_data_format_parse("csv", &f), PISSA_ERR_INVALID_ARG);
    write_text(path, "{ Whoever is not JSON is text: Now is the winter of our discontent made glorious summer }");
    pissa_data_opts o = pissa_data_default_opts();
    pissa_dataset *d, *want;
    assert_int_equal(pissa_dataset_load(path, tok, 962, &o, &d), PISSA_ERR_INVALID_ARG); /* max_len needed */
    o.max_len = 5;
    assert_ok(pissa_dataset_load(path, tok, 962, &o, &d));
    assert_ok(pissa_dataset_load_text(path, tok, 5, &want));
    assert_true(pissa_dataset_count(d) > 2);
    assert_int_equal(pissa_dataset_count(d), pissa_dataset_count(want));
    for (size_t k = 0; k < pissa_dataset_count(d); k++) {
        pissa_row a, b;
        assert_ok(pissa_dataset_row(d, k, &a));
        assert_ok(pissa_dataset_row(want, k, &b));
        assert_memory_equal(a.input_ids, b.input_ids, 5 * sizeof(int32_t));
    }
    pissa_dataset_free(want);
    pissa_dataset_free(d);
    assert_int_equal(pissa_dataset_load(path, NULL, 962, &o, &d), PISSA_ERR_INVALID_ARG); /* text needs a tokenizer */
    free(path);
    tu_rmtree(dir);
    free(dir);
    pissa_tokenizer_free(tok);
}

/* ---- packing ---- */

static pissa_dataset *rows_of_lengths(const int64_t *len, size_t n) {
    int64_t *off = malloc((n + 1) * sizeof *off);
    off[0] = 0;
    for (size_t i = 0; i < n; i++) off[i + 1] = off[i] + len[i];
    int32_t *ids = malloc((size_t)off[n] * sizeof *ids), *labels = malloc((size_t)off[n] * sizeof *labels);
    for (size_t i = 0; i < n; i++) /* row i is ids i, i, ...; labels 1000 + position (-100 at every third) */
        for (int64_t j = 0; j < len[i]; j++) {
            ids[off[i] + j] = (int32_t)i;
            labels[off[i] + j] = j % 3 == 2 ? PISSA_IGNORE_INDEX : (int32_t)(1000 + j);
        }
    pissa_dataset *d;
    assert_ok(pissa_dataset_from_rows(ids, labels, off, n, 2000, &d));
    free(off), free(ids), free(labels);
    return d;
}

/* The example of TRL's pack_dataset docstring: rows [1 2 3 4 5], [6 7], [8 9 10], [11] packed to 4 tokens give
 * [1 2 3 4], [8 9 10 11], [6 7] with seq_lengths [4], [3, 1], [2]; then 300 rows of random lengths against a plain
 * best-fit-decreasing written here (the least room that fits, ties to the packed row that got that room first). */
static void packing_is_trls_best_fit_decreasing(void **state) {
    (void)state;
    const int32_t ids[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    const int64_t off[] = {0, 5, 7, 10, 11};
    pissa_dataset *d, *p;
    assert_ok(pissa_dataset_from_rows(ids, NULL, off, 4, 20, &d));
    log_capture c = {0};
    pissa_set_log_callback(capture, &c);
    assert_ok(pissa_dataset_pack(d, 4, &p));
    pissa_set_log_callback(NULL, NULL);
    assert_int_equal(c.warnings, 1);
    assert_non_null(strstr(c.last, "1 of 4 rows are longer than 4 tokens"));
    assert_true(pissa_dataset_is_packed(p));
    assert_int_equal(pissa_dataset_count(p), 3);
    static const int32_t want_ids[3][4] = {{1, 2, 3, 4}, {8, 9, 10, 11}, {6, 7}}, want_pos[3][4] = {{0, 1, 2, 3},
                                                                                                {0, 1, 2, 0}, {0, 1}};
    static const int64_t want_len[3] = {4, 4, 2};
    for (size_t k = 0; k < 3; k++) {
        pissa_row r;
        assert_ok(pissa_dataset_row(p, k, &r));
        assert_int_equal(r.len, want_len[k]);
        assert_memory_equal(r.input_ids, want_ids[k], (size_t)r.len * sizeof(int32_t));
        assert_memory_equal(r.labels, want_ids[k], (size_t)r.len * sizeof(int32_t));
        assert_memory_equal(r.position_ids, want_pos[k], (size_t)r.len * sizeof(int32_t));
    }
    pissa_dataset *again;
    assert_int_equal(pissa_dataset_pack(p, 4, &again), PISSA_ERR_INVALID_ARG); /* packed already */
    assert_int_equal(pissa_dataset_pack(d, 1, &again), PISSA_ERR_INVALID_ARG);
    pissa_dataset_free(p);
    pissa_dataset_free(d);

    enum { N = 300, S = 64 };
    int64_t len[N];
    uint64_t x = 7;
    for (size_t i = 0; i < N; i++) len[i] = 1 + (int64_t)(cli_like_rand(&x) % 80); /* some longer than S */
    d = rows_of_lengths(len, N);
    assert_ok(pissa_dataset_pack(d, S, &p));
    /* the reference: rows by decreasing length (ties by index) */
    size_t order[N], bin_of[N], n_bins = 0;
    int64_t room[N], since[N]; /* a bin's room and when it got it */
    for (size_t i = 0; i < N; i++) order[i] = i;
    for (size_t i = 1; i < N; i++)
        for (size_t j = i; j > 0; j--) {
            int64_t a = len[order[j - 1]] < S ? len[order[j - 1]] : S, b = len[order[j]] < S ? len[order[j]] : S;
            if (a >= b) break;
            size_t t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (size_t k = 0; k < N; k++) {
        int64_t l = len[order[k]] < S ? len[order[k]] : S;
        size_t best = SIZE_MAX;
        for (size_t b = 0; b < n_bins; b++)
            if (room[b] >= l && (best == SIZE_MAX || room[b] < room[best] ||
                                 (room[b] == room[best] && since[b] < since[best])))
                best = b;
        if (best == SIZE_MAX) best = n_bins, room[n_bins++] = S;
        room[best] -= l;
        since[best] = (int64_t)k;
        bin_of[k] = best;
    }
    assert_int_equal(pissa_dataset_count(p), n_bins);
    for (size_t b = 0; b < n_bins; b++) {
        pissa_row r;
        assert_ok(pissa_dataset_row(p, b, &r));
        int64_t t = 0;
        for (size_t k = 0; k < N; k++) {
            if (bin_of[k] != b) continue;
            size_t i = order[k];
            int64_t l = len[i] < S ? len[i] : S;
            for (int64_t j = 0; j < l; j++, t++) {
                if (r.input_ids[t] != (int32_t)i || r.position_ids[t] != j ||
                    r.labels[t] != (j % 3 == 2 ? PISSA_IGNORE_INDEX : (int32_t)(1000 + j)))
                    fail_msg("packed row %zu, token %lld: row %zu position %lld expected", b, (long long)t, i,
                             (long long)j);
            }
        }
        assert_int_equal(r.len, t);
        assert_true(r.len <= S);
    }
    print_message("%d rows packed into %zu rows of at most %d tokens\n", N, n_bins, S);
    pissa_dataset_free(p);
    pissa_dataset_free(d);
}

/* The trainer on a packed data set gives the loss and the update of the same rows unpacked: one SGD step over all
 * rows (one micro-batch each way) from the same adapters, on the Mistral fixture (sliding window 5, shorter than the
 * rows). The sums differ only in order (test_model.c: packed_rows_give_the_loss_and_gradients_of_separate_rows), so
 * the loss agrees to 1e-6 and every parameter after the step to 1e-6 of its tensor's largest change. */
static void trainer_on_packed_rows_gives_the_loss_and_update_of_the_rows(void **state) {
    (void)state;
    enum { N = 7 };
    const int64_t len[N] = {9, 3, 12, 6, 4, 10, 7};
    pissa_dataset *d = rows_of_lengths(len, N), *p;
    /* ids 0..6 and labels 1000+: remap into the fixture's vocabulary of 48 */
    int64_t off[N + 1] = {0};
    for (size_t i = 0; i < N; i++) off[i + 1] = off[i] + len[i];
    int32_t *ids = malloc((size_t)off[N] * sizeof *ids), *labels = malloc((size_t)off[N] * sizeof *labels);
    for (size_t i = 0; i < N; i++) {
        pissa_row r;
        assert_ok(pissa_dataset_row(d, i, &r));
        for (int64_t j = 0; j < r.len; j++) {
            ids[off[i] + j] = (int32_t)((i * 7 + (size_t)j * 5) % 48);
            labels[off[i] + j] = r.labels[j] == PISSA_IGNORE_INDEX ? PISSA_IGNORE_INDEX : ids[off[i] + j];
        }
    }
    pissa_dataset_free(d);
    assert_ok(pissa_dataset_from_rows(ids, labels, off, N, 48, &d));
    assert_ok(pissa_dataset_pack(d, 16, &p));
    double loss[2];
    float *after[2][64] = {{0}};
    size_t n_params = 0;
    for (int packed = 0; packed < 2; packed++) {
        pissa_model *m;
        assert_ok(pissa_model_load(PISSA_TEST_REFERENCE_DIR "/mistral_window", &m));
        pissa_adapter_opts ao = pissa_adapter_default_opts();
        ao.targets = PISSA_PROJ_ALL;
        ao.init.rank = 2;
        assert_ok(pissa_init_parse("gaussian", &ao.init));
        ao.init.rank = 2;
        assert_ok(pissa_model_add_adapters(m, &ao));
        pissa_train_opts o = pissa_train_default_opts();
        const pissa_dataset *data = packed ? p : d;
        o.total_steps = 1;
        o.batch = (int)pissa_dataset_count(data);
        o.optim.kind = PISSA_OPTIM_SGD;
        o.optim.lr = 0.5;
        o.max_grad_norm = 0;
        pissa_trainer *t;
        assert_ok(pissa_trainer_create(m, data, &o, &t));
        double eval;
        assert_ok(pissa_trainer_evaluate(t, data, &eval, NULL));
        pissa_step_info info;
        assert_ok(pissa_trainer_step(t, &info));
        assert_true(fabs(eval - info.loss) <= 1e-6 * info.loss); /* the step's loss is before its update */
        loss[packed] = info.loss;
        n_params = pissa_model_param_count(m);
        assert_true(n_params <= 64);
        for (size_t k = 0; k < n_params; k++) {
            pissa_param_view v;
            assert_ok(pissa_model_param(m, k, &v));
            after[packed][k] = malloc((size_t)(v.rows * v.cols) * sizeof(float));
            memcpy(after[packed][k], v.data, (size_t)(v.rows * v.cols) * sizeof(float));
        }
        if (packed) { /* the sizes, to compare below */
            double worst = 0;
            for (size_t k = 0; k < n_params; k++) {
                pissa_param_view v;
                assert_ok(pissa_model_param(m, k, &v));
                size_t n = (size_t)(v.rows * v.cols);
                double dmax = 0, cmax = 0;
                for (size_t j = 0; j < n; j++) {
                    dmax = fmax(dmax, fabs((double)after[1][k][j] - after[0][k][j]));
                    cmax = fmax(cmax, fabs((double)after[0][k][j]));
                }
                /* float32 rounding of differently shaped products: measured 1.2e-6 with OpenBLAS's AVX-512
                 * (SkylakeX) kernels, 1e-7 with the generic (Prescott) ones it falls back to here */
                assert_true(dmax <= 1e-5 * cmax + 1e-9);
                worst = fmax(worst, cmax > 0 ? dmax / cmax : 0);
            }
            print_message("%zu rows in %zu packed rows of 16: loss %.8f vs %.8f unpacked; parameters after the step "
                          "max|diff|/max|p| %.3g\n", (size_t)N, pissa_dataset_count(p), loss[1], loss[0], worst);
        }
        pissa_trainer_free(t);
        pissa_model_free(m);
    }
    assert_true(pissa_dataset_count(p) < N);
    assert_true(fabs(loss[0] - loss[1]) <= 1e-6 * loss[0]);
    for (int a = 0; a < 2; a++)
        for (size_t k = 0; k < n_params; k++) free(after[a][k]);
    free(ids), free(labels);
    pissa_dataset_free(p);
    pissa_dataset_free(d);
}

/* ---- the programs ---- */

static const char *const CHATS[] = {
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Who speaks first?\"}, {\"role\": \"assistant\", \"content\": "
    "\"The First Citizen.\"}]}",
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Answer as a Roman.\"}, {\"role\": \"user\", \"content\": "
    "\"What do the citizens want?\"}, {\"role\": \"assistant\", \"content\": \"Corn, at their own price.\"}, "
    "{\"role\": \"user\", \"content\": \"And Marcius?\"}, {\"role\": \"assistant\", \"content\": \"He is their chief "
    "enemy.\"}]}",
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Speak, speak.\"}, {\"role\": \"assistant\", \"content\": "
    "\"You are all resolved rather to die than to famish?\"}]}",
    "{\"prompt\": [{\"role\": \"user\", \"content\": \"Resolved?\"}], \"completion\": [{\"role\": \"assistant\", "
    "\"content\": \"Resolved. resolved.\"}]}",
    "{\"messages\": [{\"role\": \"user\", \"content\": \"Let us kill him.\"}, {\"role\": \"assistant\", \"content\": "
    "\"And we'll have corn at our own price.\"}, {\"role\": \"user\", \"content\": \"Is't a verdict?\"}, {\"role\": "
    "\"assistant\", \"content\": \"No more talking on't; let it be done: away, away!\"}]}",
};

/* pissa-tokenize --chat prints the encoder's row for each line; a bad line is named, and nothing is printed. */
static void pissa_tokenize_chat_prints_the_encoders_rows(void **state) {
    (void)state;
    char *dir = tu_tempdir("chattok"), cmd[2048], text[4096] = "";
    for (size_t k = 0; k < sizeof CHATS / sizeof *CHATS; k++) strcat(strcat(text, CHATS[k]), "\n");
    char *in = write_rows(dir, "chat.jsonl", text), *out = tu_path(dir, "out"), *err = tu_path(dir, "err");
    snprintf(cmd, sizeof cmd, "%s --tokenizer %s --chat %s >%s 2>%s", PISSA_TOKENIZE_EXE, GPT2, in, out, err);
    assert_int_equal(tu_run(cmd, NULL), 0);
    char *got = tu_slurp(out, NULL);
    pissa_tokenizer *tok = gpt2_tokenizer();
    pissa_row_encoder *e;
    assert_ok(pissa_row_encoder_create(tok, NULL, &e));
    char *line = got;
    for (size_t k = 0; k < sizeof CHATS / sizeof *CHATS; k++) {
        pissa_row r;
        assert_ok(pissa_row_encoder_encode(e, CHATS[k], strlen(CHATS[k]), &r));
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const cJSON *ids = cJSON_GetObjectItem(j, "input_ids"), *labels = cJSON_GetObjectItem(j, "labels");
        assert_int_equal(cJSON_GetArraySize(ids), r.len);
        assert_int_equal(cJSON_GetArraySize(labels), r.len);
        for (int64_t t = 0; t < r.len; t++) {
            assert_int_equal((int)cJSON_GetArrayItem(ids, (int)t)->valuedouble, r.input_ids[t]);
            assert_int_equal((int)cJSON_GetArrayItem(labels, (int)t)->valuedouble, r.labels[t]);
        }
        cJSON_Delete(j);
        line = nl + 1;
    }
    assert_string_equal(line, "");
    free(got);
    /* a bad second line: exit 1 naming it, stdout empty */
    write_text(in, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": "
               "\"Hello\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n");
    assert_int_equal(tu_run(cmd, NULL), 1);
    got = tu_slurp(out, NULL);
    char *msg = tu_slurp(err, NULL), where[600];
    snprintf(where, sizeof where, "%s:2: row: no assistant message", in);
    assert_string_equal(got, "");
    if (!strstr(msg, where)) fail_msg("stderr \"%s\" lacks \"%s\"", msg, where);
    free(got), free(msg);
    pissa_row_encoder_free(e);
    pissa_tokenizer_free(tok);
    free(in), free(out), free(err);
    tu_rmtree(dir);
    free(dir);
}

static double json_number(const char *text, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = text ? strstr(text, k) : NULL;
    if (!p) fail_msg("no \"%s\" in: %s", key, text ? text : "(nothing)");
    return strtod(p + strlen(k), NULL);
}

static char *run_json(const char *cmd, const char *dir) {
    char *log = tu_path(dir, "run.txt"), full[4096];
    snprintf(full, sizeof full, "%s", cmd);
    int rc = tu_run(full, log);
    char *text = tu_slurp(log, NULL);
    if (rc != 0) fail_msg("%s: exit %d: %s", cmd, rc, text ? text : "");
    free(log);
    return text;
}

/* A model folder holding a tokenizer.json with a chat template, fine-tuned on chat JSONL with no tokenizer option and
 * no pre-tokenization: the loss of the first update (every row in one batch, before any change) is pissa-eval's
 * loss on the same file, packed or not; and the evaluation of --eval-data after training is pissa-eval's with the
 * trained adapter. */
static void finetune_of_a_model_folder_on_chat_jsonl_matches_pissa_eval(void **state) {
    (void)state;
    char *dir = tu_tempdir("chatft"), cmd[4096], text[8192] = "";
    char *model = tu_path(dir, "model"), *out = tu_path(dir, "out"), *packed = tu_path(dir, "packed");
    snprintf(cmd, sizeof cmd, "%s --out %s --dim 32 --hidden 64 --layers 2 --heads 4 --kv-heads 2 --vocab 962 "
             "--seq 256 --seed 3 >/dev/null 2>&1", PISSA_SYNTH_EXE, model);
    assert_int_equal(tu_run(cmd, NULL), 0);
    static const char *const files[2] = {"tokenizer.json", "tokenizer_config.json"};
    for (int k = 0; k < 2; k++) {
        char src[512];
        size_t n;
        snprintf(src, sizeof src, "%s/%s", GPT2, files[k]);
        char *raw = tu_slurp(src, &n), *dst = tu_path(model, files[k]);
        tu_write_bytes(dst, raw, n);
        free(raw), free(dst);
    }
    for (size_t k = 0; k < sizeof CHATS / sizeof *CHATS; k++) strcat(strcat(text, CHATS[k]), "\n");
    char *data = write_rows(dir, "chat.jsonl", text);
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --json -q", PISSA_EVAL_EXE, model, data);
    char *ev = run_json(cmd, dir);
    double base = json_number(ev, "loss");
    free(ev);
    pissa_tokenizer *tok;
    pissa_dataset *rows, *bins;
    assert_ok(pissa_tokenizer_load(model, 962, &tok));
    assert_ok(pissa_dataset_load(data, tok, 962, NULL, &rows));
    assert_ok(pissa_dataset_pack(rows, 128, &bins));
    size_t n_rows = pissa_dataset_count(rows), n_bins = pissa_dataset_count(bins);
    assert_true(n_bins < n_rows);
    for (int pack = 0; pack < 2; pack++) { /* one batch of every row, or of every packed row */
        snprintf(cmd, sizeof cmd, "%s --model %s --data %s --out %s --method lora --rank 4 --steps 1 --batch %zu "
                 "--lr 0 %s --json -q", PISSA_FINETUNE_EXE, model, data, pack ? packed : out,
                 pack ? n_bins : n_rows, pack ? "--pack --seq 128" : "");
        char *ft = run_json(cmd, dir);
        double first = json_number(ft, "loss");
        print_message("%s: first update's loss %.8f, pissa-eval %.8f\n", pack ? "packed" : "rows", first, base);
        assert_true(fabs(first - base) <= 1e-5 * base);
        free(ft);
    }
    /* trained a little, with the same rows held out: pissa-finetune's evaluation is pissa-eval's with the adapter */
    snprintf(cmd, sizeof cmd, "%s --model %s --data %s --eval-data %s --out %s --method lora --rank 4 --steps 4 "
             "--batch 2 --lr 1e-2 --json -q", PISSA_FINETUNE_EXE, model, data, data, out);
    char *ft = run_json(cmd, dir);
    double trained = json_number(ft, "eval_loss");
    free(ft);
    snprintf(cmd, sizeof cmd, "%s --model %s --adapter %s --data %s --json -q", PISSA_EVAL_EXE, model, out, data);
    ev = run_json(cmd, dir);
    double again = json_number(ev, "loss");
    free(ev);
    print_message("after 4 updates: eval loss %.8f, pissa-eval %.8f (base %.8f)\n", trained, again, base);
    assert_true(fabs(trained - again) <= 1e-5 * again);
    assert_true(trained < base);
    pissa_dataset_free(bins);
    pissa_dataset_free(rows);
    pissa_tokenizer_free(tok);
    free(model), free(out), free(packed), free(data);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_encode_as_trl_with_transformers_js),
        cmocka_unit_test(spans_that_cut_a_token_mark_it),
        cmocka_unit_test(conversations_the_rule_cannot_mask_are_refused),
        cmocka_unit_test(every_format_reads_from_one_file),
        cmocka_unit_test(bad_rows_name_their_line),
        cmocka_unit_test(long_rows_are_cut_and_counted_in_one_warning),
        cmocka_unit_test(plain_text_is_told_from_jsonl),
        cmocka_unit_test(packing_is_trls_best_fit_decreasing),
        cmocka_unit_test(trainer_on_packed_rows_gives_the_loss_and_update_of_the_rows),
        cmocka_unit_test(pissa_tokenize_chat_prints_the_encoders_rows),
        cmocka_unit_test(finetune_of_a_model_folder_on_chat_jsonl_matches_pissa_eval),
    };
    return cmocka_run_group_tests_name("chat_data", tests, NULL, NULL);
}
