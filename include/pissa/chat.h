/* libpissa — chat templates: the Jinja template in a Hugging Face tokenizer_config.json ("chat_template") rendered
 * as transformers' tokenizer.apply_chat_template(messages, tokenize=False, ...) renders it, by an interpreter for
 * the subset of Jinja2 that chat templates use (docs/chat.md lists it, with the few differences from Python's
 * jinja2 and the limits that keep a hostile template from hanging or exhausting memory). */
#ifndef PISSA_CHAT_H
#define PISSA_CHAT_H

#include "common.h"
#include "tokenizer.h"

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

/* transformers' tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...): renders
 * TEMPLATE_TEXT, or TOK's chat template when NULL, with pissa_chat_template_render, giving it TOK's special tokens
 * (bos_token, eos_token, unk_token, pad_token: those it has, as transformers passes special_tokens_map) and then the
 * members of EXTRA_CONTEXT_JSON (NULL or a JSON object, e.g. {"tools": [...], "enable_thinking": false}), which may
 * replace them. Tokenize the result without special tokens (pissa_tokenizer_encode_text with add_special_tokens 0),
 * as apply_chat_template(tokenize=True) does: the template writes them. PISSA_ERR_INVALID_ARG when there is no
 * template (TOK has none and TEMPLATE_TEXT is NULL); other errors as pissa_chat_template_render. *OUT as there. */
PISSA_API pissa_status pissa_chat_apply(const pissa_tokenizer *tok, const char *template_text,
                                        const char *messages_json, int add_generation_prompt,
                                        const char *extra_context_json, char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
