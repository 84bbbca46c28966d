/* libpissa — chat templates: the Jinja template in a Hugging Face tokenizer_config.json ("chat_template") rendered
 * as transformers' tokenizer.apply_chat_template(messages, tokenize=False, ...) renders it, by an interpreter for
 * the subset of Jinja2 that chat templates use (docs/chat.md lists it, with the few differences from Python's
 * jinja2 and the limits that keep a hostile template from hanging or exhausting memory). */
#ifndef PISSA_CHAT_H
#define PISSA_CHAT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Renders TEMPLATE_TEXT (the chat_template string, UTF-8) with these variables, as transformers passes them:
 *   messages               MESSAGES_JSON, a JSON array of message objects ({"role": ..., "content": ...} and any
 *                          other fields: tool_calls, reasoning_content, ...);
 *   add_generation_prompt  true when ADD_GENERATION_PROMPT is non-zero;
 *   tools, documents       null unless EXTRA_CONTEXT_JSON sets them (transformers passes None);
 *   and every member of EXTRA_CONTEXT_JSON (NULL for none), a JSON object such as
 *   {"bos_token": "<s>", "eos_token": "</s>", "tools": [...], "enable_thinking": false, "date_string": "..."}.
 * JSON numbers written without a fraction or exponent are integers, as Python's json reads them.
 * On success *OUT is a NUL-terminated string of *OUT_LEN bytes (OUT_LEN may be NULL); the caller frees it with
 * pissa_free. Errors (nothing is allocated): PISSA_ERR_INVALID_ARG for malformed JSON, an EXTRA_CONTEXT_JSON that
 * sets messages or add_generation_prompt, or a template that rejects the conversation through
 * raise_exception(...) (the message holds the template's text); PISSA_ERR_FORMAT for a template syntax error
 * (naming line and column), a runtime error (naming the line) or an exceeded limit; PISSA_ERR_UNSUPPORTED for a
 * tag libpissa does not implement ({% include %}, {% extends %}, recursive loops, ...). */
PISSA_API pissa_status pissa_chat_template_render(const char *template_text, const char *messages_json,
                                                  int add_generation_prompt, const char *extra_context_json,
                                                  char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
