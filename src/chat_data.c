/* One row of a data set in the formats of TRL's SFTTrainer (include/pissa/data.h, docs/data.md): text, prompt and
 * completion, chat messages, conversational prompt and completion, pre-tokenized; the chat template rendered and
 * the assistant turns found in it for the loss mask. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data_internal.h"
#include "jinja.h"

struct pissa_row_encoder {
    const pissa_tokenizer *tok;  // borrowed; NULL: pre-tokenized rows only
    pissa_data_opts o;           // o.chat_template is not kept: tmpl is
    pissa__jinja_template *tmpl; // the chat template, NULL when there is none
    pissa_status tmpl_status;    // why there is none: PISSA_OK (no template at all) or the parse error ...
    char tmpl_error[400];        // ... and its message, reported when a conversational row comes
    cJSON *specials;             // {"bos_token": ..., ...}: the special tokens the tokenizer has (special_tokens_map)
    const char *eos;             // the eos token's text (TRL appends it to texts and completions), NULL when none
    char **stop;                 // (n_stop) texts of the end-of-turn tokens (pissa_tokenizer_stop_ids)
    size_t n_stop;
    pissa__ids ids, labels;      // the row last encoded
    pissa__ids tmp;              // encodings of prefixes
    size_t prompt_mismatches;
};

size_t pissa__row_encoder_prompt_mismatches(const pissa_row_encoder *e) { return e ? e->prompt_mismatches : 0; }

void pissa_row_encoder_free(pissa_row_encoder *e) {
    if (!e) return;
    pissa__jinja_free(e->tmpl);
    cJSON_Delete(e->specials);
    for (size_t i = 0; i < e->n_stop; i++) free(e->stop[i]);
    free(e->stop);
    free(e->ids.v);
    free(e->labels.v);
    free(e->tmp.v);
    free(e);
}

/* Prefixes the current error message with WHERE (copied first: pissa__fail overwrites it). */
static pissa_status refail(pissa_status st, const char *where) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", pissa_last_error());
    return pissa__fail(st, "%s: %s", where, msg);
}

pissa_status pissa__row_encoder_new(const pissa_tokenizer *tok, const pissa_data_opts *opts, const char *where,
                                    pissa_row_encoder **out) {
    pissa_row_encoder *e = calloc(1, sizeof *e);
    if (!e) return pissa__fail(PISSA_ERR_NOMEM, "row encoder: out of memory");
    e->tok = tok;
    e->o = opts ? *opts : pissa_data_default_opts();
    const char *src = e->o.chat_template ? e->o.chat_template : tok ? pissa_tokenizer_chat_template(tok) : NULL;
    e->o.chat_template = NULL;
    pissa_status st = PISSA_OK;
    if (src && (e->tmpl_status = pissa__jinja_parse(src, strlen(src), &e->tmpl)) != PISSA_OK) {
        if (e->tmpl_status == PISSA_ERR_NOMEM) st = e->tmpl_status;
        snprintf(e->tmpl_error, sizeof e->tmpl_error, "%s", pissa_last_error());
    }
    /* transformers renders with **special_tokens_map: the special tokens the tokenizer has */
    static const char *const names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    if (st == PISSA_OK && !(e->specials = cJSON_CreateObject())) st = pissa__fail(PISSA_ERR_NOMEM, "out of memory");
    for (int k = 0; st == PISSA_OK && tok && k < 4; k++) {
        const char *text = pissa_tokenizer_special_token(tok, (pissa_special_token)k);
        if (text && !cJSON_AddStringToObject(e->specials, names[k], text))
            st = pissa__fail(PISSA_ERR_NOMEM, "out of memory");
    }
    if (tok) e->eos = pissa_tokenizer_special_token(tok, PISSA_SPECIAL_EOS);
    const int32_t *stop = NULL;
    size_t n_stop = 0;
    if (tok) pissa_tokenizer_stop_ids(tok, &stop, &n_stop);
    if (st == PISSA_OK && n_stop && !(e->stop = calloc(n_stop, sizeof *e->stop)))
        st = pissa__fail(PISSA_ERR_NOMEM, "out of memory");
    for (size_t k = 0; st == PISSA_OK && k < n_stop; k++) {
        size_t len;
        const char *piece = pissa_tokenizer_piece(tok, stop[k], &len);
        if (!piece || !len) continue;
        if (!(e->stop[e->n_stop] = malloc(len + 1))) st = pissa__fail(PISSA_ERR_NOMEM, "out of memory");
        else memcpy(e->stop[e->n_stop], piece, len), e->stop[e->n_stop++][len] = '\0';
    }
    if (st != PISSA_OK) {
        pissa_row_encoder_free(e);
        return where ? refail(st, where) : st;
    }
    *out = e;
    return PISSA_OK;
}

pissa_status pissa_row_encoder_create(const pissa_tokenizer *tok, const pissa_data_opts *opts,
                                      pissa_row_encoder **out) {
    if (!out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_row_encoder_create: NULL argument");
    *out = NULL;
    PISSA_TRY(pissa__row_encoder_new(tok, opts, NULL, out));
    if ((*out)->tmpl_status != PISSA_OK) { /* an explicit caller wants to know now */
        pissa_status st = pissa__fail((*out)->tmpl_status, "%s", (*out)->tmpl_error);
        pissa_row_encoder_free(*out);
        *out = NULL;
        return st;
    }
    return PISSA_OK;
}

/* ---- tokens ---- */

/* OUT := the encoding of S (N bytes) with or without the special tokens (tokenizer(s) / add_special_tokens=False). */
static pissa_status tokenize(const pissa_row_encoder *e, const char *s, size_t n, int special, const char *where,
                             pissa__ids *out) {
    out->n = 0;
    const pissa__hf *hf = pissa__tokenizer_hf(e->tok);
    if (hf) {
        size_t valid = pissa__utf8_valid_prefix(s, n);
        if (valid != n)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: the text is not valid UTF-8 (byte %zu)", where, valid);
        PISSA_TRY(pissa__hf_encode(hf, s, n, special, out));
    } else {
        size_t cap = pissa_tokenizer_max_tokens(e->tok, n), k;
        int32_t *v = cap == SIZE_MAX ? NULL : malloc(cap * sizeof *v);
        if (!v) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
        pissa_status st = pissa_tokenizer_encode_text(e->tok, s, n, special, v, cap, &k);
        if (st == PISSA_OK) pissa__ids_append(out, v, k);
        free(v);
        PISSA_TRY(st);
    }
    return out->oom ? pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where) : PISSA_OK;
}

/* The index of the first token of E->ids (the encoding of R) that holds byte P of R, or with END, one past the
 * last token that holds a byte before P. Found without offsets: the encoding of R[:P] agrees with E->ids up to the
 * token that P cuts (or up to P exactly, when P falls between tokens). */
static pissa_status token_at(pissa_row_encoder *e, const char *R, size_t n, size_t p, int end, const char *where,
                             size_t *k) {
    if (p == 0 || p >= n) {
        *k = p == 0 ? 0 : e->ids.n;
        return PISSA_OK;
    }
    PISSA_TRY(tokenize(e, R, p, 0, where, &e->tmp));
    size_t m = 0;
    while (m < e->tmp.n && m < e->ids.n && e->tmp.v[m] == e->ids.v[m]) m++;
    *k = end && m < e->tmp.n && m < e->ids.n ? m + 1 : m;
    return PISSA_OK;
}

/* Labels of the tokens holding a byte of a span (SPANS: N pairs of byte offsets into R) := their ids. */
static pissa_status label_spans(pissa_row_encoder *e, const char *R, size_t len, const size_t *spans, size_t n,
                                const char *where) {
    for (size_t i = 0; i < n; i++) {
        size_t a, z;
        if (spans[2 * i] >= spans[2 * i + 1]) continue;
        PISSA_TRY(token_at(e, R, len, spans[2 * i], 0, where, &a));
        PISSA_TRY(token_at(e, R, len, spans[2 * i + 1], 1, where, &z));
        for (size_t t = a; t < z; t++) e->labels.v[t] = e->ids.v[t];
    }
    return PISSA_OK;
}

/* ---- conversations ---- */

/* A conversation as transformers renders it. */
typedef struct chat {
    const cJSON *tools;  // the row's "tools" (parsed when a JSON string), or NULL
    cJSON *own_tools;    // owned when parsed
    const cJSON *kwargs; // the row's "chat_template_kwargs", or NULL
    const char *where;
} chat;

/* A list of messages: objects with a string "role". */
static pissa_status check_messages(const cJSON *m, const char *key, const char *where) {
    if (!cJSON_IsArray(m) || !m->child)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: \"%s\" must be a non-empty list of messages", where, key);
    int i = 0;
    for (const cJSON *x = m->child; x; x = x->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(x, "role");
        if (!cJSON_IsObject(x) || !cJSON_IsString(role))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: %s[%d] is not a message {\"role\": \"...\", \"content\": ...}",
                               where, key, i);
    }
    return PISSA_OK;
}

static int is_assistant(const cJSON *m) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    return cJSON_IsString(role) && !strcmp(role->valuestring, "assistant");
}

/* The messages of A then of B (either may be NULL), each up to N in all (-1: all), as references. */
static cJSON *message_list(const cJSON *a, const cJSON *b, int n) {
    cJSON *l = cJSON_CreateArray();
    int k = 0;
    for (int part = 0; l && part < 2; part++) {
        const cJSON *list = part ? b : a;
        for (const cJSON *x = list ? list->child : NULL; x && (n < 0 || k < n); x = x->next, k++)
            if (!cJSON_AddItemReferenceToArray(l, (cJSON *)x)) {
                cJSON_Delete(l);
                return NULL;
            }
    }
    return l;
}

/* Renders MESSAGES with add_generation_prompt AGP and the variables transformers passes: tools, documents (None),
 * the special tokens, then the row's chat_template_kwargs. SPANS (may be NULL): the {% generation %} spans. */
static pissa_status render(pissa_row_encoder *e, const chat *c, const cJSON *messages, int agp, char **out,
                           size_t *len, size_t **spans, size_t *n_spans) {
    if (!e->tmpl) {
        if (e->tmpl_status != PISSA_OK) return pissa__fail(e->tmpl_status, "%s: %s", c->where, e->tmpl_error);
        return pissa__fail(PISSA_ERR_FORMAT, "%s: a conversation needs a chat template, and %s", c->where,
                           e->tok ? "the tokenizer has none (tokenizer_config.json \"chat_template\")"
                                  : "there is no tokenizer");
    }
    cJSON *ctx = cJSON_CreateObject();
    int ok = ctx && cJSON_AddItemReferenceToObject(ctx, "messages", (cJSON *)messages) &&
             cJSON_AddBoolToObject(ctx, "add_generation_prompt", agp) &&
             (c->tools ? cJSON_AddItemReferenceToObject(ctx, "tools", (cJSON *)c->tools)
                       : cJSON_AddNullToObject(ctx, "tools") != NULL) &&
             cJSON_AddNullToObject(ctx, "documents");
    for (const cJSON *x = e->specials->child; ok && x; x = x->next)
        if (!cJSON_GetObjectItemCaseSensitive(c->kwargs, x->string))
            ok = cJSON_AddItemReferenceToObject(ctx, x->string, (cJSON *)x);
    for (const cJSON *x = c->kwargs ? c->kwargs->child : NULL; ok && x; x = x->next)
        ok = cJSON_AddItemReferenceToObject(ctx, x->string, (cJSON *)x);
    pissa_status st = ok ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", c->where);
    if (st == PISSA_OK) st = pissa__jinja_render_tracked(e->tmpl, ctx, NULL, out, len, spans, n_spans);
    cJSON_Delete(ctx);
    return st == PISSA_OK || st == PISSA_ERR_NOMEM ? st : refail(st, c->where);
}

/* The first occurrence of NEEDLE (M bytes) in HAY (N bytes), or NULL. */
static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0) return hay;
    for (const char *p = hay; m <= n && (p = memchr(p, needle[0], n - m + 1 - (size_t)(p - hay))); p++)
        if (!memcmp(p, needle, m)) return p;
    return NULL;
}

/* The texts a message holds that the model writes: content and reasoning_content (strings). */
static const char *message_text(const cJSON *m, int k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(m, k ? "reasoning_content" : "content");
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* The first end-of-turn text in R[from, to): its end in *END, its index in *WHICH; 0 when there is none. */
static int find_stop(const pissa_row_encoder *e, const char *R, size_t from, size_t to, size_t *end, size_t *which) {
    const char *best = NULL;
    for (size_t k = 0; k < e->n_stop; k++) {
        size_t n = strlen(e->stop[k]);
        const char *p = to > from ? find_bytes(R + from, to - from, e->stop[k], n) : NULL;
        if (p && (!best || p < best || (p == best && p + n > R + *end)))
            best = p, *end = (size_t)(p - R) + n, *which = k;
    }
    return best != NULL;
}

/* The assistant turns of MESSAGES (rendered as R) for a template without {% generation %} blocks: SPANS (2 per
 * assistant message) := [start, end) byte offsets in R (include/pissa/data.h, pissa_row_encoder_encode). */
static pissa_status assistant_turns(pissa_row_encoder *e, const chat *c, const cJSON *messages, const char *R,
                                    size_t len, size_t *spans, size_t *n_spans) {
    int n = cJSON_GetArraySize(messages), k = 0, i = 0;
    const cJSON *m = messages->child;
    for (; m; m = m->next, i++) {
        if (!is_assistant(m)) continue;
        for (int t = 0; t < 2; t++) { /* its text must not hold an end-of-turn token: the turn would end there */
            const char *text = message_text(m, t);
            for (size_t s = 0; text && s < e->n_stop; s++)
                if (strstr(text, e->stop[s]))
                    return pissa__fail(PISSA_ERR_FORMAT, "%s: messages[%d] (assistant) holds the end-of-turn token %s "
                                       "in its %s", c->where, i, e->stop[s], t ? "reasoning_content" : "content");
        }
        /* where it starts: the end of the conversation before it with the generation prompt */
        cJSON *before = message_list(messages, NULL, i);
        char *P = NULL;
        size_t plen = 0;
        pissa_status st = before ? render(e, c, before, 1, &P, &plen, NULL, NULL)
                                 : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", c->where);
        int prefix = st == PISSA_OK && plen <= len && !memcmp(P, R, plen);
        cJSON_Delete(before);
        free(P);
        PISSA_TRY(st);
        if (!prefix)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: messages[%d] (assistant): the chat template renders the "
                               "conversation before it, with the generation prompt, differently from the start of the "
                               "whole conversation, so where its turn starts is unknown", c->where, i);
        spans[2 * k] = plen;
        spans[2 * k + 1] = (size_t)i; /* the message index, until the ends are known */
        k++;
    }
    for (int j = 0; j < k; j++) { /* where each ends: after the first end-of-turn token, before what follows */
        size_t start = spans[2 * j], limit = j + 1 < k ? spans[2 * j + 2] : len, end = 0, which = 0;
        int idx = (int)spans[2 * j + 1];
        if (!find_stop(e, R, start, limit, &end, &which))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: messages[%d] (assistant): no end-of-turn token follows its text "
                               "(the tokenizer's are its eos and end-of-turn tokens), so where its turn ends is "
                               "unknown", c->where, idx);
        const cJSON *next = idx + 1 < n ? cJSON_GetArrayItem(messages, idx + 1) : NULL;
        const char *text = next && !is_assistant(next) ? message_text(next, 0) : NULL;
        size_t a = 0, z = text ? strlen(text) : 0;
        while (a < z && isspace((unsigned char)text[a])) a++;
        while (z > a && isspace((unsigned char)text[z - 1])) z--;
        /* the next message's text must come after that token: refused when it is only found before it (a template
         * may drop a message, e.g. a role it does not know: then there is nothing to check) */
        if (z > a && !find_bytes(R + end, limit - end, text + a, z - a) &&
            find_bytes(R + start, end - start, text + a, z - a))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: messages[%d] (assistant): the first end-of-turn token after it "
                               "(%s) comes after the text of messages[%d], so where its turn ends is unknown",
                               c->where, idx, e->stop[which], idx + 1);
        spans[2 * j + 1] = end;
    }
    *n_spans = (size_t)k;
    return PISSA_OK;
}

/* E->ids, E->labels := the conversation PROMPT (+ COMPLETION, may be NULL) rendered and tokenized; the targets:
 * every token, or with assistant_only_loss those of the assistant turns, and for a completion (with
 * completion_only_loss) only after the tokens of the prompt rendered with the generation prompt. */
static pissa_status encode_chat(pissa_row_encoder *e, const chat *c, const cJSON *prompt, const cJSON *completion) {
    cJSON *all = message_list(prompt, completion, -1);
    char *R = NULL;
    size_t len = 0, *spans = NULL, n_spans = 0, n_prompt = 0;
    int assistant_only = e->o.assistant_only_loss != 0, generation = pissa__jinja_has_generation(e->tmpl);
    pissa_status st = all ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", c->where);
    if (st == PISSA_OK && assistant_only) {
        int any = 0;
        for (const cJSON *m = all->child; m; m = m->next) any |= is_assistant(m);
        if (!any)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: no assistant message: with the loss on the assistant turns only "
                             "the row has nothing to learn", c->where);
    }
    if (st == PISSA_OK) st = render(e, c, all, 0, &R, &len, assistant_only && generation ? &spans : NULL, &n_spans);
    if (st == PISSA_OK) st = tokenize(e, R, len, 0, c->where, &e->ids);
    if (st == PISSA_OK && completion) { /* the prompt's tokens: rendered with the generation prompt */
        char *P = NULL;
        size_t plen;
        st = render(e, c, prompt, 1, &P, &plen, NULL, NULL);
        if (st == PISSA_OK) st = tokenize(e, P, plen, 0, c->where, &e->tmp);
        if (st == PISSA_OK) {
            n_prompt = e->tmp.n < e->ids.n ? e->tmp.n : e->ids.n;
            e->prompt_mismatches += e->tmp.n > e->ids.n || memcmp(e->tmp.v, e->ids.v, n_prompt * sizeof(int32_t));
        }
        free(P);
    }
    e->labels.n = 0;
    if (st == PISSA_OK) pissa__ids_append(&e->labels, e->ids.v, e->ids.n);
    if (st == PISSA_OK && e->labels.oom) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", c->where);
    if (st == PISSA_OK && assistant_only) {
        if (!generation) {
            spans = malloc(2 * (size_t)cJSON_GetArraySize(all) * sizeof *spans);
            st = spans ? assistant_turns(e, c, all, R, len, spans, &n_spans)
                       : pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", c->where);
        }
        for (size_t t = 0; st == PISSA_OK && t < e->labels.n; t++) e->labels.v[t] = PISSA_IGNORE_INDEX;
        if (st == PISSA_OK) st = label_spans(e, R, len, spans, n_spans, c->where);
        size_t targets = 0;
        for (size_t t = 0; st == PISSA_OK && t < e->labels.n; t++) targets += e->labels.v[t] != PISSA_IGNORE_INDEX;
        if (st == PISSA_OK && !targets) /* TRL raises too */
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: the chat template's {%% generation %%} blocks mark no text",
                             c->where);
    }
    if (st == PISSA_OK && completion && e->o.completion_only_loss)
        for (size_t t = 0; t < n_prompt; t++) e->labels.v[t] = PISSA_IGNORE_INDEX;
    free(spans);
    free(R);
    cJSON_Delete(all);
    return st;
}

/* ---- texts ---- */

/* S with the eos token's text appended unless it ends with it (TRL's add_eos), into B. */
static void with_eos(const pissa_row_encoder *e, const char *s, pissa__strbuf *b) {
    size_t n = strlen(s), m = e->eos ? strlen(e->eos) : 0;
    pissa__sb_put(b, s, n);
    if (m && (n < m || memcmp(s + n - m, e->eos, m))) pissa__sb_put(b, e->eos, m);
}

/* tokenizer(s) of the text S (with eos); a llama2.c tokenizer has no eos text: encode(s, bos=1, eos=EOS). */
static pissa_status tokenize_text(pissa_row_encoder *e, const char *s, int eos, const char *where, pissa__ids *out) {
    if (pissa__tokenizer_hf(e->tok)) {
        pissa__strbuf b = {0};
        if (eos) with_eos(e, s, &b);
        else pissa__sb_put(&b, s, strlen(s));
        pissa_status st = b.oom ? pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where)
                                : tokenize(e, b.p ? b.p : "", b.n, 1, where, out);
        free(b.p);
        return st;
    }
    size_t n = strlen(s), cap = pissa_tokenizer_max_tokens(e->tok, n), k;
    int32_t *v = cap == SIZE_MAX ? NULL : malloc(cap * sizeof *v);
    if (!v) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
    out->n = 0;
    pissa_status st = pissa_tokenizer_encode(e->tok, s, n, 1, eos, v, cap, &k);
    if (st == PISSA_OK) pissa__ids_append(out, v, k);
    free(v);
    return st != PISSA_OK ? refail(st, where) : out->oom ? pissa__fail(PISSA_ERR_NOMEM, "out of memory") : PISSA_OK;
}

/* {"prompt": "...", "completion": "..."}: tokenizer(prompt + completion + eos), targets after tokenizer(prompt). */
static pissa_status encode_completion(pissa_row_encoder *e, const char *prompt, const char *completion,
                                      const char *where) {
    pissa__strbuf b = {0};
    pissa__sb_puts(&b, prompt);
    pissa__sb_puts(&b, completion);
    pissa_status st = b.oom ? pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where)
                            : tokenize_text(e, b.p ? b.p : "", 1, where, &e->ids);
    free(b.p);
    if (st == PISSA_OK) st = tokenize_text(e, prompt, 0, where, &e->tmp);
    PISSA_TRY(st);
    size_t n_prompt = e->tmp.n < e->ids.n ? e->tmp.n : e->ids.n;
    e->prompt_mismatches += e->tmp.n > e->ids.n || memcmp(e->tmp.v, e->ids.v, n_prompt * sizeof(int32_t));
    e->labels.n = 0;
    pissa__ids_append(&e->labels, e->ids.v, e->ids.n);
    if (e->labels.oom) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
    if (e->o.completion_only_loss)
        for (size_t t = 0; t < n_prompt; t++) e->labels.v[t] = PISSA_IGNORE_INDEX;
    return PISSA_OK;
}

/* ---- one row ---- */

pissa_status pissa__row_encode(pissa_row_encoder *e, const cJSON *row, const char *where, int32_t V,
                               pissa_row *out) {
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(row, "prompt");
    const cJSON *completion = cJSON_GetObjectItemCaseSensitive(row, "completion");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(row, "messages");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(row, "text");
    pissa_status st = PISSA_OK;
    if (cJSON_GetObjectItemCaseSensitive(row, "input_ids")) { /* pre-tokenized (TRL: already processed) */
        PISSA_TRY(pissa__data_read_tokens(row, V, where, &e->ids, &e->labels));
        goto done;
    }
    if (!e->tok)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: missing \"input_ids\"%s", where, prompt || completion || messages ||
                           text ? " (a row of text or messages needs a tokenizer)" : "");
    if (prompt || completion) { /* TRL looks at "prompt" first, then "messages", then the text field */
        if (!prompt || !completion)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: \"%s\" without \"%s\"", where, prompt ? "prompt" : "completion",
                               prompt ? "completion" : "prompt");
        if (cJSON_IsString(prompt) && cJSON_IsString(completion))
            st = encode_completion(e, prompt->valuestring, completion->valuestring, where);
        else if (cJSON_IsArray(prompt) && cJSON_IsArray(completion)) {
            PISSA_TRY(check_messages(prompt, "prompt", where));
            PISSA_TRY(check_messages(completion, "completion", where));
            messages = prompt;
        } else
            return pissa__fail(PISSA_ERR_FORMAT, "%s: \"prompt\" and \"completion\" must both be strings or both "
                               "lists of messages", where);
    } else if (messages) {
        PISSA_TRY(check_messages(messages, "messages", where));
        completion = NULL;
    } else if (text) {
        if (!cJSON_IsString(text)) return pissa__fail(PISSA_ERR_FORMAT, "%s: \"text\" is not a string", where);
        st = tokenize_text(e, text->valuestring, 1, where, &e->ids);
        e->labels.n = 0;
        if (st == PISSA_OK) pissa__ids_append(&e->labels, e->ids.v, e->ids.n);
    } else
        return pissa__fail(PISSA_ERR_FORMAT, "%s: a row needs \"text\", \"prompt\" and \"completion\", \"messages\" "
                           "or \"input_ids\"", where);
    if (st == PISSA_OK && messages) { /* a conversation */
        chat c = {.kwargs = cJSON_GetObjectItemCaseSensitive(row, "chat_template_kwargs"), .where = where};
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(row, "tools");
        if (c.kwargs && !cJSON_IsObject(c.kwargs))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: \"chat_template_kwargs\" is not an object", where);
        static const char *const fixed[4] = {"messages", "add_generation_prompt", "tools", "documents"};
        for (int k = 0; k < 4; k++)
            if (cJSON_GetObjectItemCaseSensitive(c.kwargs, fixed[k]))
                return pissa__fail(PISSA_ERR_FORMAT, "%s: \"chat_template_kwargs\" may not set \"%s\"", where,
                                   fixed[k]);
        if (cJSON_IsString(tools)) { /* TRL: json.loads when a string */
            if (!(c.own_tools = cJSON_Parse(tools->valuestring)))
                return pissa__fail(PISSA_ERR_FORMAT, "%s: \"tools\" is a string but not JSON", where);
            tools = c.own_tools;
        }
        c.tools = cJSON_IsNull(tools) ? NULL : tools;
        st = encode_chat(e, &c, messages, completion);
        cJSON_Delete(c.own_tools);
    }
    if (st == PISSA_OK && (e->labels.oom || e->ids.oom)) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
    if (st == PISSA_OK && e->ids.n == 0) st = pissa__fail(PISSA_ERR_FORMAT, "%s: the row encodes to no token", where);
    for (size_t t = 0; st == PISSA_OK && t < e->ids.n; t++)
        if (e->ids.v[t] >= V)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: token %d is outside the model's vocabulary [0, %d)", where,
                             e->ids.v[t], (int)V);
    PISSA_TRY(st);
done:
    *out = (pissa_row){.input_ids = e->ids.v, .labels = e->labels.v, .len = (int64_t)e->ids.n, .position_ids = NULL};
    return PISSA_OK;
}

pissa_status pissa_row_encoder_encode(pissa_row_encoder *e, const char *json, size_t len, pissa_row *row) {
    if (!e || (!json && len) || !row)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_row_encoder_encode: NULL argument");
    cJSON *j = cJSON_ParseWithLength(json ? json : "", len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return pissa__fail(PISSA_ERR_FORMAT, "row: not a JSON object");
    }
    int32_t V = e->tok ? (int32_t)pissa_tokenizer_vocab_size(e->tok) : INT32_MAX;
    pissa_status st = pissa__row_encode(e, j, "row", V, row);
    cJSON_Delete(j);
    return st;
}
