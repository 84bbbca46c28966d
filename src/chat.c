/* pissa_chat_template_render: the variables transformers gives a chat template, then the Jinja interpreter;
 * pissa_chat_apply: with a tokenizer's template and special tokens. */
#include <cjson/cJSON.h>
#include <string.h>

#include "jinja.h"
#include "pissa/chat.h"

pissa_status pissa_chat_template_render(const char *template_text, const char *messages_json,
                                        int add_generation_prompt, const char *extra_context_json,
                                        char **out, size_t *out_len) {
    if (!template_text || !messages_json || !out)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_chat_template_render: NULL template, messages or out");
    *out = NULL;
    if (out_len) *out_len = 0;
    /* transformers renders with messages=, tools=None, documents=None, add_generation_prompt= and the caller's
     * keyword arguments; tools and documents may come from the extra context instead. */
    const char *names[4] = {"messages", "add_generation_prompt", "tools", "documents"};
    const char *values[4] = {messages_json, add_generation_prompt ? "true" : "false", "null", "null"};
    int n = 4;
    if (extra_context_json) { /* tools or documents in the extra object replace the nulls */
        cJSON *extra = cJSON_Parse(extra_context_json);
        if (!cJSON_IsObject(extra)) {
            cJSON_Delete(extra);
            return pissa__fail(PISSA_ERR_INVALID_ARG, "chat template extra context: not a JSON object");
        }
        int has_tools = cJSON_GetObjectItemCaseSensitive(extra, "tools") != NULL;
        if (cJSON_GetObjectItemCaseSensitive(extra, "documents")) n = 3;
        if (has_tools) {
            names[2] = names[3];
            values[2] = values[3];
            n--;
        }
        cJSON_Delete(extra);
    }
    pissa__jinja_template *t = NULL;
    pissa_status st = pissa__jinja_parse(template_text, strlen(template_text), &t);
    if (st == PISSA_OK) st = pissa__jinja_render_vars(t, n, names, values, extra_context_json, NULL, out, out_len);
    pissa__jinja_free(t);
    return st;
}

pissa_status pissa_chat_apply(const pissa_tokenizer *tok, const char *template_text, const char *messages_json,
                              int add_generation_prompt, const char *extra_context_json, char **out, size_t *out_len) {
    if (!tok || !messages_json || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_chat_apply: NULL argument");
    *out = NULL;
    if (!template_text && !(template_text = pissa_tokenizer_chat_template(tok)))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "chat template: the tokenizer has none (tokenizer_config.json "
                           "\"chat_template\"); give one");
    cJSON *ctx = cJSON_CreateObject(), *extra = NULL;
    pissa_status st = ctx ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
    static const char *const names[4] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    for (int k = 0; st == PISSA_OK && k < 4; k++) {
        const char *text = pissa_tokenizer_special_token(tok, (pissa_special_token)k);
        if (text && !cJSON_AddStringToObject(ctx, names[k], text))
            st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
    }
    if (st == PISSA_OK && extra_context_json && !cJSON_IsObject(extra = cJSON_Parse(extra_context_json)))
        st = pissa__fail(PISSA_ERR_INVALID_ARG, "chat template extra context: not a JSON object");
    for (cJSON *x = extra ? extra->child : NULL; st == PISSA_OK && x; x = x->next) { /* the caller's win */
        cJSON *v = cJSON_Duplicate(x, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(ctx, x->string);
        if (!v || !cJSON_AddItemToObject(ctx, x->string, v)) {
            cJSON_Delete(v);
            st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
        }
    }
    char *context = st == PISSA_OK ? cJSON_PrintUnformatted(ctx) : NULL;
    if (st == PISSA_OK && !context) st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
    if (st == PISSA_OK)
        st = pissa_chat_template_render(template_text, messages_json, add_generation_prompt, context, out, out_len);
    cJSON_free(context);
    cJSON_Delete(extra);
    cJSON_Delete(ctx);
    return st;
}
