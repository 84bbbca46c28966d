/* The files that come with a tokenizer.json in a Hugging Face folder: tokenizer_config.json (special tokens,
 * add_bos_token / add_eos_token, chat_template, clean_up_tokenization_spaces), generation_config.json (eos_token_id,
 * the generation stop ids) and chat_template.jinja (where newer transformers save the template). Each is optional. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hf_internal.h"

void pissa__hf_config_free(pissa__hf_config *c) {
    for (int i = 0; i < 4; i++) free(c->special[i]);
    free(c->tokenizer_class);
    free(c->chat_template);
    for (size_t i = 0; i < c->n_tokens; i++) free(c->tokens[i].content);
    free(c->tokens);
    free(c->eos_ids);
    memset(c, 0, sizeof *c);
}

/* PATH parsed as JSON into *OUT; *OUT = NULL when the file does not exist. */
static pissa_status read_json(const char *path, cJSON **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return PISSA_OK;
    char *raw;
    size_t n;
    PISSA_TRY(pissa__read_file(path, &raw, &n));
    size_t valid = pissa__utf8_valid_prefix(raw, n);
    if (valid != n) {
        free(raw);
        return pissa__fail(PISSA_ERR_FORMAT, "%s: not valid UTF-8 (at byte %zu)", path, valid);
    }
    pissa_status st = pissa__json_parse_object(raw, n, path, out); /* one object, nothing after it */
    free(raw);
    return st;
}

static pissa_status nomem(const char *path) { return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path); }

/* A token given as "text", {"content": "text", ...} (an AddedToken) or null. */
static pissa_status token_value(const char *path, const char *field, const cJSON *v, const char **out) {
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return PISSA_OK;
    if (cJSON_IsString(v)) *out = v->valuestring;
    else if (cJSON_IsObject(v) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "content")))
        *out = cJSON_GetObjectItemCaseSensitive(v, "content")->valuestring;
    else return pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be a string, {\"content\": ...} or null", path, field);
    return PISSA_OK;
}

static int flag(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static pissa_status add_config_token(pissa__hf_config *c, const char *path, const char *content, int special,
                                     const cJSON *flags, int64_t id) {
    pissa__hf_config_token *v = realloc(c->tokens, (c->n_tokens + 1) * sizeof *v);
    if (!v) return nomem(path);
    c->tokens = v;
    pissa__hf_config_token *k = &c->tokens[c->n_tokens];
    /* a bare string becomes AddedToken(content, special): normalized = !special, no strip, not single_word */
    *k = (pissa__hf_config_token){pissa__strdup(content), special, flag(flags, "lstrip", 0), flag(flags, "rstrip", 0),
                                  flag(flags, "single_word", 0), flag(flags, "normalized", !special), id};
    if (!k->content) return nomem(path);
    c->n_tokens++;
    return PISSA_OK;
}

static int cmp_token_id(const void *a, const void *b) {
    const pissa__hf_config_token *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static pissa_status read_tokenizer_config(const char *path, pissa__hf_config *c) {
    cJSON *j;
    PISSA_TRY(read_json(path, &j));
    if (!j) return PISSA_OK;
    pissa_status st = PISSA_OK;
    static const char *names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int i = 0; i < 4 && st == PISSA_OK; i++) {
        const char *s;
        st = token_value(path, names[i], cJSON_GetObjectItemCaseSensitive(j, names[i]), &s);
        if (st == PISSA_OK && s && !(c->special[i] = pissa__strdup(s))) st = nomem(path);
    }
    const char *bools[3] = {"add_bos_token", "add_eos_token", "clean_up_tokenization_spaces"};
    int *dst[3] = {&c->add_bos, &c->add_eos, &c->clean_up_spaces};
    for (int i = 0; i < 3 && st == PISSA_OK; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, bools[i]);
        if (cJSON_IsBool(v)) *dst[i] = cJSON_IsTrue(v);
        else if (v && !cJSON_IsNull(v)) st = pissa__fail(PISSA_ERR_FORMAT, "%s: %s must be true or false", path, bools[i]);
    }
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(j, "tokenizer_class");
    if (st == PISSA_OK && cJSON_IsString(cls) && !(c->tokenizer_class = pissa__strdup(cls->valuestring))) st = nomem(path);

    /* chat_template: a string, or a list of {"name", "template"} of which "default" is the one applied */
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    if (st == PISSA_OK && cJSON_IsString(ct)) {
        if (!(c->chat_template = pissa__strdup(ct->valuestring))) st = nomem(path);
    } else if (st == PISSA_OK && cJSON_IsArray(ct)) {
        for (const cJSON *e = ct->child; e && st == PISSA_OK; e = e->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *tpl = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (!cJSON_IsString(name) || !cJSON_IsString(tpl))
                st = pissa__fail(PISSA_ERR_FORMAT, "%s: chat_template entries must be {\"name\": ..., \"template\": "
                                 "...}", path);
            else if (!strcmp(name->valuestring, "default") && !(c->chat_template = pissa__strdup(tpl->valuestring)))
                st = nomem(path);
        }
    } else if (st == PISSA_OK && ct && !cJSON_IsNull(ct)) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: chat_template must be a string or a list of {name, template}", path);
    }

    /* tokens transformers adds when the backend lacks them: added_tokens_decoder (by id), then the special ones */
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(j, "added_tokens_decoder");
    size_t first = c->n_tokens;
    if (st == PISSA_OK && dec && !cJSON_IsObject(dec))
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: added_tokens_decoder must be an object", path);
    for (const cJSON *e = dec ? dec->child : NULL; e && st == PISSA_OK; e = e->next) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        char *endp;
        long long id = strtoll(e->string, &endp, 10);
        if (!cJSON_IsString(content) || *endp || endp == e->string || id < 0 || id > INT32_MAX)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: added_tokens_decoder[\"%.40s\"] must be an id -> {\"content\": ...}",
                             path, e->string);
        else st = add_config_token(c, path, content->valuestring, flag(e, "special", 0), e, id);
    }
    if (st == PISSA_OK && c->n_tokens > first)
        qsort(c->tokens + first, c->n_tokens - first, sizeof *c->tokens, cmp_token_id);
    for (int i = 0; i < 4 && st == PISSA_OK; i++)
        if (c->special[i]) st = add_config_token(c, path, c->special[i], 1, NULL, -1);
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(j, "additional_special_tokens");
    if (st == PISSA_OK && extra && !cJSON_IsArray(extra) && !cJSON_IsNull(extra))
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: additional_special_tokens must be a list", path);
    int i = 0;
    for (const cJSON *e = cJSON_IsArray(extra) ? extra->child : NULL; e && st == PISSA_OK; e = e->next, i++) {
        char field[64];
        const char *s;
        snprintf(field, sizeof field, "additional_special_tokens[%d]", i);
        st = token_value(path, field, e, &s);
        if (st == PISSA_OK && s) st = add_config_token(c, path, s, 1, cJSON_IsObject(e) ? e : NULL, -1);
    }
    cJSON_Delete(j);
    return st;
}

static pissa_status read_generation_config(const char *path, pissa__hf_config *c) {
    cJSON *j;
    PISSA_TRY(read_json(path, &j));
    if (!j) return PISSA_OK;
    pissa_status st = PISSA_OK;
    const cJSON *eos = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
    const cJSON *one = cJSON_IsNumber(eos) ? eos : NULL;
    size_t n = one ? 1 : cJSON_IsArray(eos) ? (size_t)cJSON_GetArraySize(eos) : 0;
    if (eos && !cJSON_IsNull(eos) && !one && !cJSON_IsArray(eos))
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: eos_token_id must be an integer or a list of integers", path);
    if (st == PISSA_OK && n && !(c->eos_ids = pissa__alloc(n, sizeof *c->eos_ids))) st = nomem(path);
    for (const cJSON *e = one ? one : n ? eos->child : NULL; e && st == PISSA_OK; e = one ? NULL : e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > INT32_MAX)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: eos_token_id must hold non-negative integer ids", path);
        else c->eos_ids[c->n_eos++] = (int32_t)e->valuedouble;
    }
    cJSON_Delete(j);
    return st;
}

pissa_status pissa__hf_config_read(const char *dir, pissa__hf_config *c) {
    memset(c, 0, sizeof *c);
    c->add_bos = c->add_eos = -1;
    char *p1 = pissa__path_join(dir, "tokenizer_config.json");
    char *p2 = pissa__path_join(dir, "generation_config.json");
    char *p3 = pissa__path_join(dir, "chat_template.jinja");
    pissa_status st = p1 && p2 && p3 ? PISSA_OK : nomem(dir);
    if (st == PISSA_OK) st = read_tokenizer_config(p1, c);
    if (st == PISSA_OK) st = read_generation_config(p2, c);
    struct stat sb;
    if (st == PISSA_OK && !c->chat_template && stat(p3, &sb) == 0) {
        size_t n;
        st = pissa__read_file(p3, &c->chat_template, &n);
        if (st == PISSA_OK && pissa__utf8_valid_prefix(c->chat_template, n) != n)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: not valid UTF-8", p3);
    }
    free(p1);
    free(p2);
    free(p3);
    if (st != PISSA_OK) pissa__hf_config_free(c);
    return st;
}

/* ---- applying the config to a loaded tokenizer ---- */

/* transformers' LlamaTokenizerFast, CodeLlamaTokenizerFast and GemmaTokenizerFast rebuild the post-processor from
 * add_bos_token (default true) and add_eos_token (default false): "<bos> $A <eos>". */
static pissa_status llama_post_processor(pissa__hf *t, const pissa__hf_config *c, const char *file) {
    static const char *classes[] = {"LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer",
                                    "CodeLlamaTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast"};
    int llama = 0;
    for (size_t i = 0; c->tokenizer_class && i < sizeof classes / sizeof *classes; i++)
        llama |= !strcmp(c->tokenizer_class, classes[i]);
    if (!llama) return PISSA_OK;
    int add_bos = c->add_bos != 0, add_eos = c->add_eos == 1;
    int32_t bos = t->special_id[0], eos = t->special_id[1];
    if ((add_bos && bos < 0) || (add_eos && eos < 0))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tokenizer_config.json asks for add_%s_token but the %s token is "
                           "missing or unknown", file, add_bos && bos < 0 ? "bos" : "eos",
                           add_bos && bos < 0 ? "bos" : "eos");
    pissa__hf_template *T = &t->post;
    free(T->before);
    free(T->after);
    *T = (pissa__hf_template){1, pissa__alloc(1, sizeof(int32_t)), pissa__alloc(1, sizeof(int32_t)), 0, 0};
    if (!T->before || !T->after) return nomem(file);
    if (add_bos) T->before[T->n_before++] = bos;
    if (add_eos) T->after[T->n_after++] = eos;
    return PISSA_OK;
}

/* Tokens that end a generation: eos, generation_config's eos_token_id, and the end-of-turn tokens of the common chat
 * formats when the tokenizer has them as special added tokens. */
static pissa_status stop_ids(pissa__hf *t, const pissa__hf_config *c, const char *file) {
    static const char *end_of_turn[] = {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|endoftext|>", "<|end_of_text|>",
                                        "<end_of_turn>", "<|end|>"};
    size_t n_eot = sizeof end_of_turn / sizeof *end_of_turn, cap = 1 + c->n_eos + n_eot;
    int32_t *cand = pissa__alloc(cap, sizeof *cand);
    t->stop_ids = pissa__alloc(cap, sizeof *t->stop_ids);
    if (!cand || !t->stop_ids) {
        free(cand);
        return nomem(file);
    }
    size_t n = 0;
    cand[n++] = t->special_id[1];
    for (size_t i = 0; i < c->n_eos; i++) cand[n++] = c->eos_ids[i];
    for (size_t i = 0; i < n_eot; i++) {
        int32_t id = pissa__hf_token_id(t, end_of_turn[i], strlen(end_of_turn[i]));
        if (id >= 0 && (t->flags[id] & HF_TOK_SPECIAL)) cand[n++] = id;
    }
    for (size_t i = 0; i < n; i++) {
        int dup = cand[i] < 0 || cand[i] >= t->n_ids;
        for (size_t k = 0; k < t->n_stop && !dup; k++) dup = t->stop_ids[k] == cand[i];
        if (!dup) t->stop_ids[t->n_stop++] = cand[i];
    }
    free(cand);
    return PISSA_OK;
}

pissa_status pissa__hf_config_apply(pissa__hf *t, pissa__hf_config *c, const char *file) {
    for (int i = 0; i < 4; i++) {
        t->special_str[i] = c->special[i];
        c->special[i] = NULL;
        t->special_id[i] = t->special_str[i] ? pissa__hf_token_id(t, t->special_str[i], strlen(t->special_str[i])) : -1;
    }
    t->chat_template = c->chat_template;
    c->chat_template = NULL;
    t->clean_up_spaces = c->clean_up_spaces;
    PISSA_TRY(llama_post_processor(t, c, file));
    return stop_ids(t, c, file);
}
