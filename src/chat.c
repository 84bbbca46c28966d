/* pissa_chat_template_render: the variables transformers gives a chat template, then the Jinja interpreter. */
#include <cjson/cJSON.h>
#include <string.h>

#include "jinja.h"

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
