/* Chat template (src/jinja*.c): any bytes as a template, parsed and rendered with a context like a chat's, under
 * small limits. Seeds: the reference templates (tests/fuzz/corpus/jinja links to tests/reference/chat/templates).
 * Run with tests/fuzz/run.sh SECONDS jinja (docs/reliability.md). */
#include <stdint.h>
#include <stdlib.h>

#include "jinja.h"

static const char CONTEXT[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \" hi \\u00e9 \"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>yo\", \"reasoning_content\": null,"
    " \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": 1.5}}}]},"
    " {\"role\": \"tool\", \"content\": \"{\\\"t\\\": 2}\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}],"
    " \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true, \"documents\": null}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pissa__jinja_template *t;
    if (pissa__jinja_parse((const char *)data, size, &t) != PISSA_OK) return 0;
    pissa__jinja_limits lim = {.max_output = 1 << 20, .max_memory = 64 << 20, .max_steps = 200000};
    char *out = NULL;
    if (pissa__jinja_render(t, CONTEXT, &lim, &out, NULL) == PISSA_OK) free(out);
    pissa__jinja_free(t);
    return 0;
}
