/* Chat templates: libpissa's Jinja interpreter against @huggingface/jinja and Python's jinja2 (fixtures written by
 * tests/reference/chat/), then what only the C side has: error positions, statuses, limits and the API. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja.h"
#include "testutil.h"

#define CHAT_DIR PISSA_TEST_REFERENCE_DIR "/chat"

static cJSON *load_json(const char *path) {
    char *text = tu_slurp(path, NULL);
    if (!text) fail_msg("cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    if (!j) fail_msg("%s is not JSON", path);
    free(text);
    return j;
}

static const char *str_item(const cJSON *obj, const char *key) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* ---- JSON text slices: values passed to the renderer as written, so that 1.0 stays a float (cJSON would print
 * it back as 1) ---- */

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

static const char *skip_value(const char *p) {
    p = skip_ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++)
            if (*p == '\\') p++;
        return p + 1;
    }
    if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        p = skip_ws(p + 1);
        while (*p && *p != close) {
            p = skip_value(p); /* a key, or an item */
            p = skip_ws(p);
            if (*p == ':') p = skip_value(p + 1);
            p = skip_ws(p);
            if (*p == ',') p = skip_ws(p + 1);
        }
        return p + 1;
    }
    while (*p && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\n') p++;
    return p;
}

/* The text of member KEY of the object at P (NULL if absent); its length in *LEN. */
static const char *member(const char *p, const char *key, size_t *len) {
    p = skip_ws(p);
    assert_true(*p == '{');
    p = skip_ws(p + 1);
    while (*p && *p != '}') {
        const char *k = p + 1, *k_end = skip_value(p) - 1;
        p = skip_ws(skip_ws(k_end + 1) + 1); /* past ':' */
        const char *v_end = skip_value(p);
        if ((size_t)(k_end - k) == strlen(key) && !memcmp(k, key, strlen(key))) {
            *len = (size_t)(v_end - p);
            return p;
        }
        p = skip_ws(v_end);
        if (*p == ',') p = skip_ws(p + 1);
    }
    return NULL;
}

/* The text of item I of the array at P. */
static const char *item(const char *p, int i, size_t *len) {
    p = skip_ws(p);
    assert_true(*p == '[');
    p = skip_ws(p + 1);
    for (int k = 0; k < i; k++) p = skip_ws(skip_ws(skip_value(p)) + 1);
    *len = (size_t)(skip_value(p) - p);
    return p;
}

static char *dup_n(const char *p, size_t n) {
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* "{a..., b...}" from two JSON object texts (either may be NULL). */
static char *merge_objects(const char *a, size_t an, const char *b, size_t bn) {
    char *s = malloc(an + bn + 8);
    assert_non_null(s);
    size_t k = 0;
    s[k++] = '{';
    const char *parts[2] = {a, b};
    size_t lens[2] = {an, bn};
    for (int i = 0; i < 2; i++) {
        if (!parts[i]) continue;
        const char *in = skip_ws(parts[i]) + 1, *end = parts[i] + lens[i] - 1; /* inside the braces */
        while (end > in && (end[-1] == ' ' || end[-1] == '\n')) end--;
        if (skip_ws(in) >= end) continue;
        if (k > 1) s[k++] = ',';
        memcpy(s + k, in, (size_t)(end - in));
        k += (size_t)(end - in);
    }
    s[k++] = '}';
    s[k] = '\0';
    return s;
}

static size_t first_difference(const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i]) i++;
    return i;
}

static void print_context(const char *label, const char *s, size_t n, size_t at) {
    size_t from = at > 40 ? at - 40 : 0, to = at + 40 < n ? at + 40 : n;
    print_message("  %s: \"", label);
    for (size_t i = from; i < to; i++) {
        if (s[i] == '\n') print_message("\\n");
        else print_message("%c", s[i]);
    }
    print_message("\"\n");
}

/* ---- the fixture: real templates x conversations, as @huggingface/jinja renders them ---- */

static char *template_text(const cJSON *t, int *missing) {
    const char *file = str_item(t, "file"), *shared = str_item(t, "shared");
    char path[1024];
    if (file) {
        snprintf(path, sizeof path, "%s/%s", CHAT_DIR, file);
        char *text = tu_slurp(path, NULL);
        if (!text) fail_msg("cannot read %s", path);
        return text;
    }
    snprintf(path, sizeof path, "%s/%s", PISSA_SHARED_DATA_DIR, shared);
    char *cfg = tu_slurp(path, NULL);
    if (!cfg) {
        *missing = 1;
        return NULL;
    }
    cJSON *j = cJSON_Parse(cfg);
    free(cfg);
    const char *tmpl = str_item(j, "chat_template");
    if (!tmpl) fail_msg("%s has no chat_template string", path);
    char *text = strdup(tmpl);
    cJSON_Delete(j);
    return text;
}

static void chat_templates_render_like_the_reference(void **state) {
    (void)state;
    cJSON *templates = load_json(CHAT_DIR "/templates.json"), *expected = load_json(CHAT_DIR "/expected.json");
    cJSON *known = load_json(CHAT_DIR "/known_differences.json");
    char *conv_text = tu_slurp(CHAT_DIR "/conversations.json", NULL), *tmpl_text = tu_slurp(CHAT_DIR "/templates.json", NULL);
    assert_non_null(conv_text);
    assert_non_null(tmpl_text);
    cJSON *convs = load_json(CHAT_DIR "/conversations.json");
    size_t len;
    const char *conv_arr = member(conv_text, "conversations", &len), *tmpl_arr = member(tmpl_text, "templates", &len);
    const cJSON *tlist = cJSON_GetObjectItem(templates, "templates"), *clist = cJSON_GetObjectItem(convs, "conversations");
    int n_cases = 0, n_checked = 0, n_failed = 0, n_missing = 0;
    const char *missing_path = NULL;
    for (const cJSON *c = cJSON_GetObjectItem(expected, "cases")->child; c; c = c->next, n_cases++) {
        const char *tname = str_item(c, "template"), *cname = str_item(c, "conversation");
        int agp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        int ti = 0, ci = 0;
        const cJSON *t = tlist->child, *conv = clist->child;
        while (t && strcmp(str_item(t, "name"), tname)) t = t->next, ti++;
        while (conv && strcmp(str_item(conv, "name"), cname)) conv = conv->next, ci++;
        assert_non_null(t);
        assert_non_null(conv);
        int missing = 0;
        char *text = template_text(t, &missing);
        if (missing) {
            n_missing++;
            missing_path = str_item(t, "shared");
            continue;
        }
        /* what transformers (jinja2) renders: the reference, unless the two engines are known to disagree */
        const cJSON *want = c;
        for (const cJSON *k = cJSON_GetObjectItem(known, "cases")->child; k; k = k->next)
            if (!strcmp(str_item(k, "template"), tname) && !strcmp(str_item(k, "conversation"), cname) &&
                cJSON_IsTrue(cJSON_GetObjectItem(k, "add_generation_prompt")) == agp)
                want = cJSON_GetObjectItem(k, "jinja2");
        size_t mlen, tclen = 0, cclen = 0, ilen;
        const char *conv_raw = item(conv_arr, ci, &ilen), *tmpl_raw = item(tmpl_arr, ti, &ilen);
        const char *messages = member(conv_raw, "messages", &mlen);
        const char *tctx = member(tmpl_raw, "context", &tclen), *cctx = member(conv_raw, "context", &cclen);
        char *msgs = dup_n(messages, mlen), *extra = merge_objects(tctx, tclen, cctx, cclen);
        char *out = NULL;
        size_t out_len = 0;
        pissa_status st = pissa_chat_template_render(text, msgs, agp, extra, &out, &out_len);
        const char *want_out = str_item(want, "output"), *want_err = str_item(want, "error");
        n_checked++;
        if (want_err && cJSON_IsTrue(cJSON_GetObjectItem(want, "raised"))) { /* the template's raise_exception */
            if (st != PISSA_ERR_INVALID_ARG || !strstr(pissa_last_error(), want_err)) {
                print_message("%s / %s / add_generation_prompt=%d: expected the template to raise \"%s\", got %s: %s\n",
                              tname, cname, agp, want_err, pissa_status_name(st), st ? pissa_last_error() : out);
                n_failed++;
            }
        } else if (want_err) { /* a runtime error (a null iterated, ...): the engines word it differently */
            if (st != PISSA_ERR_FORMAT) {
                print_message("%s / %s / add_generation_prompt=%d: expected a runtime error (\"%s\"), got %s: %s\n",
                              tname, cname, agp, want_err, pissa_status_name(st), st ? pissa_last_error() : out);
                n_failed++;
            }
        } else if (st != PISSA_OK) {
            print_message("%s / %s / add_generation_prompt=%d: %s: %s\n", tname, cname, agp, pissa_status_name(st),
                          pissa_last_error());
            n_failed++;
        } else if (out_len != strlen(want_out) || memcmp(out, want_out, out_len)) {
            size_t at = first_difference(out, out_len, want_out, strlen(want_out));
            print_message("%s / %s / add_generation_prompt=%d: differs at byte %zu (libpissa %zu bytes, reference "
                          "%zu)\n", tname, cname, agp, at, out_len, strlen(want_out));
            print_context("libpissa ", out, out_len, at);
            print_context("reference", want_out, strlen(want_out), at);
            n_failed++;
        }
        pissa_free(out);
        free(msgs);
        free(extra);
        free(text);
    }
    print_message("%d of %d cases rendered, %d differ\n", n_checked, n_cases, n_failed);
    assert_int_equal(n_failed, 0);
    assert_true(n_checked > 300);
    cJSON_Delete(templates);
    cJSON_Delete(expected);
    cJSON_Delete(known);
    cJSON_Delete(convs);
    free(conv_text);
    free(tmpl_text);
    if (n_missing) {
        char what[512];
        snprintf(what, sizeof what, "%s/%s (%d cases of the real tokenizer_config.json files)", PISSA_SHARED_DATA_DIR,
                 missing_path, n_missing);
        tu_skip_missing(what);
    }
}

/* Llama-2's tokenizer_config.json in ../shared/data carries no chat_template (the meta-llama chat template is
 * committed in tests/reference/chat/templates/llama-2.jinja instead); Llama-3's and Qwen3's do. */
static void shared_tokenizer_configs_have_the_expected_templates(void **state) {
    (void)state;
    const char *names[3] = {"llama2", "llama3", "qwen3"};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tokenizers/%s/tokenizer_config.json", PISSA_SHARED_DATA_DIR, names[i]);
        char *text = tu_slurp(path, NULL);
        if (!text) tu_skip_missing(path);
        cJSON *j = cJSON_Parse(text);
        assert_non_null(j);
        const cJSON *t = cJSON_GetObjectItem(j, "chat_template");
        if (i == 0) assert_null(t);
        else assert_true(cJSON_IsString(t));
        if (t) { /* it parses */
            pissa__jinja_template *tm;
            assert_ok(pissa__jinja_parse(t->valuestring, strlen(t->valuestring), &tm));
            pissa__jinja_free(tm);
        }
        cJSON_Delete(j);
        free(text);
    }
}

/* ---- one construct at a time, against Python's jinja2 ---- */

static void constructs_render_like_jinja2(void **state) {
    (void)state;
    cJSON *doc = load_json(CHAT_DIR "/constructs.json");
    const char *ctx = str_item(doc, "context");
    int n = 0, failed = 0;
    for (const cJSON *c = cJSON_GetObjectItem(doc, "cases")->child; c; c = c->next, n++) {
        const char *name = str_item(c, "name"), *src = str_item(c, "template"), *want = str_item(c, "output");
        const char *has = str_item(c, "error_has");
        pissa__jinja_template *t = NULL;
        char *out = NULL;
        size_t out_len = 0;
        pissa_status st = pissa__jinja_parse(src, strlen(src), &t);
        if (st == PISSA_OK) st = pissa__jinja_render(t, ctx, NULL, &out, &out_len);
        pissa__jinja_free(t);
        if (has) {
            if (st == PISSA_OK || !strstr(pissa_last_error(), has)) {
                print_message("%s: expected an error with \"%s\" (jinja2: %s), got %s: %s\n", name, has,
                              str_item(c, "error"), pissa_status_name(st), st ? pissa_last_error() : out);
                failed++;
            }
        } else if (st != PISSA_OK) {
            print_message("%s: %s: %s\n", name, pissa_status_name(st), pissa_last_error());
            failed++;
        } else if (out_len != strlen(want) || memcmp(out, want, out_len)) {
            size_t at = first_difference(out, out_len, want, strlen(want));
            print_message("%s: differs from jinja2 at byte %zu\n", name, at);
            print_context("libpissa", out, out_len, at);
            print_context("jinja2  ", want, strlen(want), at);
            failed++;
        }
        free(out);
    }
    print_message("%d constructs, %d differ from jinja2\n", n, failed);
    assert_int_equal(failed, 0);
    assert_true(n > 100);
    cJSON_Delete(doc);
}

/* ---- errors: statuses and positions ---- */

static void expect_error(const char *src, const char *ctx, pissa_status want, const char *has1, const char *has2) {
    pissa__jinja_template *t = NULL;
    char *out = NULL;
    pissa_status st = pissa__jinja_parse(src, strlen(src), &t);
    if (st == PISSA_OK) st = pissa__jinja_render(t, ctx, NULL, &out, NULL);
    pissa__jinja_free(t);
    free(out);
    if (st != want || (has1 && !strstr(pissa_last_error(), has1)) || (has2 && !strstr(pissa_last_error(), has2)))
        fail_msg("%s: expected %s with \"%s\" and \"%s\", got %s: %s", src, pissa_status_name(want), has1 ? has1 : "",
                 has2 ? has2 : "", pissa_status_name(st), pissa_last_error());
}

static void syntax_errors_name_line_and_column(void **state) {
    (void)state;
    expect_error("a\nb\n{{ 1 + }}", NULL, PISSA_ERR_FORMAT, "line 3, column 8", "expected an expression");
    expect_error("{% if x %}\nno end", NULL, PISSA_ERR_FORMAT, "line 2", "{% endif %}");
    expect_error("{% for x in y %}{% endif %}", NULL, PISSA_ERR_FORMAT, "line 1", "endfor");
    expect_error("x\n  {% endfor %}", NULL, PISSA_ERR_FORMAT, "line 2", "without a block");
    expect_error("{{ 'unterminated }}", NULL, PISSA_ERR_FORMAT, "line 1", "unterminated string");
    expect_error("\n\n{% frobnicate %}", NULL, PISSA_ERR_FORMAT, "line 3", "unknown tag 'frobnicate'");
    expect_error("{{ x | nosuch }}", NULL, PISSA_ERR_FORMAT, "line 1", "no filter named 'nosuch'");
    expect_error("{{ x is nosuch }}", NULL, PISSA_ERR_FORMAT, "line 1", "no test named 'nosuch'");
    expect_error("{{ x", NULL, PISSA_ERR_FORMAT, "never closed", NULL);
    expect_error("{# open comment", NULL, PISSA_ERR_FORMAT, "unterminated comment", NULL);
    expect_error("{{ 99999999999999999999 }}", NULL, PISSA_ERR_FORMAT, "64 bits", NULL);
    expect_error("{% include 'x.jinja' %}", NULL, PISSA_ERR_UNSUPPORTED, "include", NULL);
    expect_error("{% extends 'x.jinja' %}", NULL, PISSA_ERR_UNSUPPORTED, "extends", NULL);
    expect_error("{% for x in y recursive %}{% endfor %}", NULL, PISSA_ERR_UNSUPPORTED, "recursive", NULL);
}

static void runtime_errors_name_the_line(void **state) {
    (void)state;
    expect_error("a\n\n{{ 1 / 0 }}", NULL, PISSA_ERR_FORMAT, "line 3", "division by zero");
    expect_error("{% for m in messages %}\n{{ m.x.y }}\n{% endfor %}", "{\"messages\": [{}]}", PISSA_ERR_FORMAT,
                 "line 2", "has no attribute 'x'");
    expect_error("\n{{ raise_exception('Only user and assistant roles are supported!') }}", NULL, PISSA_ERR_INVALID_ARG,
                 "line 2", "Only user and assistant roles are supported!");
    expect_error("{{ x }}", "[1]", PISSA_ERR_INVALID_ARG, "not a JSON object", NULL);
    expect_error("{{ x }}", "{\"x\": ", PISSA_ERR_INVALID_ARG, "at byte", NULL);
}

/* ---- limits: a hostile template stops with an error, quickly ---- */

static pissa_status render_limited(const char *src, const pissa__jinja_limits *lim) {
    pissa__jinja_template *t;
    char *out = NULL;
    assert_ok(pissa__jinja_parse(src, strlen(src), &t));
    pissa_status st = pissa__jinja_render(t, NULL, lim, &out, NULL);
    pissa__jinja_free(t);
    free(out);
    return st;
}

static void limits_stop_hostile_templates(void **state) {
    (void)state;
    const char *loops = "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}";
    pissa__jinja_limits steps = {.max_steps = 100000};
    assert_int_equal(render_limited(loops, &steps), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "steps"));
    pissa__jinja_limits plenty = {.max_steps = 10000000};
    assert_ok(render_limited("{% for i in range(1000) %}{% for j in range(100) %}{% endfor %}{% endfor %}", &plenty));

    /* tojson charges a step per 16 bytes it writes: 100 KB of JSON passes a limit of 5000 steps (and frees its
     * buffer on the way out: fuzz_jinja found the leak) */
    const char *big_json = "{% set s = 'a' * 1000 %}{% set l = [s] * 100 %}{{ l | tojson }}";
    pissa__jinja_limits few = {.max_steps = 5000};
    assert_int_equal(render_limited(big_json, &few), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "steps"));
    assert_ok(render_limited(big_json, &plenty));

    pissa__jinja_limits out = {.max_output = 500};
    assert_int_equal(render_limited("{% for i in range(100) %}0123456789{% endfor %}", &out), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "output passed 500 bytes"));
    assert_ok(render_limited("{% for i in range(50) %}0123456789{% endfor %}", &out));

    pissa__jinja_limits mem = {.max_memory = 1 << 20};
    assert_int_equal(render_limited("{% set s = 'a' * 2000000 %}", &mem), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "memory"));
    assert_int_equal(render_limited("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s "
                                    "%}{% endfor %}", &mem), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "memory"));

    /* unbounded recursion and deep nesting, with the default limits */
    assert_int_equal(render_limited("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "macro calls nested deeper than 64"));
    char deep[2048] = "{{ ";
    for (int i = 0; i < 300; i++) strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 300; i++) strcat(deep, ")");
    strcat(deep, " }}");
    pissa__jinja_template *t;
    assert_int_equal(pissa__jinja_parse(deep, strlen(deep), &t), PISSA_ERR_FORMAT);
    assert_non_null(strstr(pissa_last_error(), "nested deeper"));

    /* work hidden inside one step (a naive substring search, a huge range) is counted too */
    clock_t t0 = clock();
    assert_int_equal(render_limited("{% set s = 'a' * 200000 %}{% set n = s ~ 'b' %}{% for i in range(100000) %}"
                                    "{{ (s ~ 'c') in n }}{% endfor %}", NULL), PISSA_ERR_FORMAT);
    assert_int_equal(render_limited("{{ range(100000000000) | length }}", NULL), PISSA_ERR_FORMAT);
    /* without the charges these two run for hours; with them they stop within the default 10^7 steps */
    print_message("hostile templates stopped after %.2f s of CPU\n", (double)(clock() - t0) / CLOCKS_PER_SEC);
}

/* Dicts past 8 keys are indexed: a context object of 20000 keys, looked up 20000 times, stays far inside the
 * step limit and finds every key (and no other). */
static void big_dicts_are_indexed(void **state) {
    (void)state;
    pissa__strbuf ctx = {0};
    pissa__sb_puts(&ctx, "{\"big\": {");
    for (int i = 0; i < 20000; i++) {
        char tmp[48];
        snprintf(tmp, sizeof tmp, "%s\"k%d\": %d", i ? ", " : "", i, 3 * i);
        pissa__sb_puts(&ctx, tmp);
    }
    pissa__sb_puts(&ctx, "}}");
    assert_false(ctx.oom);
    const char *src = "{% set ns = namespace(hits=0, sum=0) %}{% for i in range(20001) %}{% set k = 'k' ~ i %}"
                      "{% if k in big %}{% set ns.hits = ns.hits + 1 %}{% set ns.sum = ns.sum + big[k] %}{% endif %}"
                      "{% endfor %}{{ ns.hits }} {{ ns.sum }} {{ big.k19999 }} {{ big | length }} {{ (big | list)[-1] }}";
    pissa__jinja_template *t;
    char *out;
    assert_ok(pissa__jinja_parse(src, strlen(src), &t));
    pissa__jinja_limits lim = {.max_steps = 1000000};
    assert_ok(pissa__jinja_render(t, ctx.p, &lim, &out, NULL));
    assert_string_equal(out, "20000 599970000 59997 20000 k19999"); /* sum of 3i for i < 20000 */
    free(out);
    pissa__jinja_free(t);
    free(ctx.p);
}

/* ---- the public API ---- */

static char *render_chat(const char *tmpl, const char *msgs, int agp, const char *extra, pissa_status want) {
    char *out = NULL;
    size_t len = 0;
    pissa_status st = pissa_chat_template_render(tmpl, msgs, agp, extra, &out, &len);
    if (st != want) fail_msg("%s: expected %s, got %s: %s", tmpl, pissa_status_name(want), pissa_status_name(st),
                             pissa_last_error());
    if (st == PISSA_OK) assert_int_equal(len, strlen(out));
    else assert_null(out);
    return out;
}

static void chat_render_api_passes_transformers_variables(void **state) {
    (void)state;
    const char *msgs = "[{\"role\": \"user\", \"content\": \"hi\", \"n\": 1, \"f\": 1.0}]";
    const char *tmpl = "{{ messages[0].content }}|{{ add_generation_prompt }}|{{ tools is none }}|{{ documents is none }}"
                       "|{{ bos_token is defined }}|{{ messages[0].n }}|{{ messages[0].f }}";
    char *out = render_chat(tmpl, msgs, 1, NULL, PISSA_OK);
    assert_string_equal(out, "hi|True|True|True|False|1|1.0");
    pissa_free(out);
    out = render_chat(tmpl, msgs, 0, "{\"bos_token\": \"<s>\", \"tools\": [1]}", PISSA_OK);
    assert_string_equal(out, "hi|False|False|True|True|1|1.0");
    pissa_free(out);
    size_t len = 0;
    assert_ok(pissa_chat_template_render("{{ 'a\\x00b' }}", "[]", 0, NULL, &out, &len));
    assert_int_equal(len, 3); /* the length counts past a NUL byte */
    assert_memory_equal(out, "a\0b", 4);
    pissa_free(out);

    render_chat(tmpl, "[{\"role\": ", 1, NULL, PISSA_ERR_INVALID_ARG);
    render_chat(tmpl, msgs, 1, "[]", PISSA_ERR_INVALID_ARG);
    render_chat(tmpl, msgs, 1, "{\"messages\": []}", PISSA_ERR_INVALID_ARG);
    assert_non_null(strstr(pissa_last_error(), "'messages' is given twice"));
    render_chat(tmpl, msgs, 1, "{\"add_generation_prompt\": false}", PISSA_ERR_INVALID_ARG);
    render_chat("{% if %}", msgs, 1, NULL, PISSA_ERR_FORMAT);
    char *o = NULL;
    assert_int_equal(pissa_chat_template_render(NULL, msgs, 1, NULL, &o, NULL), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_chat_template_render(tmpl, NULL, 1, NULL, &o, NULL), PISSA_ERR_INVALID_ARG);
    assert_int_equal(pissa_chat_template_render(tmpl, msgs, 1, NULL, NULL, NULL), PISSA_ERR_INVALID_ARG);
    pissa_free(NULL);
}

static void a_parsed_template_renders_many_contexts(void **state) {
    (void)state;
    const char *src = "{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}";
    pissa__jinja_template *t;
    assert_ok(pissa__jinja_parse(src, strlen(src), &t));
    for (int i = 0; i < 3; i++) {
        char ctx[128], want[64], *out;
        snprintf(ctx, sizeof ctx, "{\"messages\": [{\"role\": \"user\", \"content\": %d}]}", i);
        snprintf(want, sizeof want, "user:%d;", i);
        assert_ok(pissa__jinja_render(t, ctx, NULL, &out, NULL));
        assert_string_equal(out, want);
        free(out);
    }
    /* cJSON context: integral doubles are integers, others floats */
    cJSON *ctx = cJSON_Parse("{\"messages\": [{\"role\": \"a\", \"content\": 2}, {\"role\": \"b\", \"content\": 2.5}]}");
    char *out;
    assert_ok(pissa__jinja_render_cjson(t, ctx, NULL, &out, NULL));
    assert_string_equal(out, "a:2;b:2.5;");
    free(out);
    cJSON_Delete(ctx);
    pissa__jinja_free(t);
    pissa__jinja_free(NULL);
}

/* {% generation %} blocks record [start, end) of what they print, as transformers' AssistantTracker does: start is
 * the length of the output when the block ends, less what it printed; inside a macro (whose text reaches the output
 * only after the call) that is the output's length then. jinja2 3.1 with transformers' AssistantTracker gives these
 * five spans. */
static void generation_blocks_record_what_they_print(void **state) {
    (void)state;
    const char *src = "a{% generation %}b{{ x }}{% endgeneration %}c{% for i in range(2) %}{% generation %}[{{ i }}]"
                      "{% endgeneration %}{% endfor %}{% macro m() %}{% generation %}zz{% endgeneration %}"
                      "{% endmacro %}{{ m() }}{% generation %}{% endgeneration %}";
    pissa__jinja_template *t;
    assert_ok(pissa__jinja_parse(src, strlen(src), &t));
    assert_int_equal(pissa__jinja_has_generation(t), 1);
    cJSON *ctx = cJSON_Parse("{\"x\": \"X\"}");
    char *out;
    size_t len, *spans, n;
    assert_ok(pissa__jinja_render_tracked(t, ctx, NULL, &out, &len, &spans, &n));
    assert_string_equal(out, "abXc[0][1]zz");
    static const size_t want[5][2] = {{1, 3}, {4, 7}, {7, 10}, {10, 12}, {12, 12}};
    assert_int_equal(n, 5);
    for (size_t k = 0; k < n; k++) {
        assert_int_equal(spans[2 * k], want[k][0]);
        assert_int_equal(spans[2 * k + 1], want[k][1]);
    }
    free(out);
    free(spans);
    /* untracked, the same text; a template without blocks has none */
    assert_ok(pissa__jinja_render_cjson(t, ctx, NULL, &out, &len));
    assert_string_equal(out, "abXc[0][1]zz");
    free(out);
    pissa__jinja_free(t);
    assert_ok(pissa__jinja_parse("a{{ x }}", 8, &t));
    assert_int_equal(pissa__jinja_has_generation(t), 0);
    assert_ok(pissa__jinja_render_tracked(t, ctx, NULL, &out, &len, &spans, &n));
    assert_int_equal(n, 0);
    assert_null(spans);
    free(out);
    pissa__jinja_free(t);
    cJSON_Delete(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(chat_templates_render_like_the_reference),
        cmocka_unit_test(shared_tokenizer_configs_have_the_expected_templates),
        cmocka_unit_test(constructs_render_like_jinja2),
        cmocka_unit_test(syntax_errors_name_line_and_column),
        cmocka_unit_test(runtime_errors_name_the_line),
        cmocka_unit_test(limits_stop_hostile_templates),
        cmocka_unit_test(big_dicts_are_indexed),
        cmocka_unit_test(chat_render_api_passes_transformers_variables),
        cmocka_unit_test(a_parsed_template_renders_many_contexts),
        cmocka_unit_test(generation_blocks_record_what_they_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
