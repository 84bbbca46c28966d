/* Jinja chat templates (jinja_lex.c, jinja_parse.c, jinja_eval.c, jinja_value.c): the subset of Jinja2 that
 * Hugging Face chat templates use, rendered as transformers renders them (jinja2 with trim_blocks, lstrip_blocks,
 * the loopcontrols extension, raise_exception, strftime_now and a tojson that keeps non-ASCII). docs/chat.md lists
 * what is supported and where libpissa differs from Python's jinja2. Not installed. */
#ifndef PISSA_JINJA_H
#define PISSA_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct cJSON;

/* A parsed template: immutable, so one may be rendered from several threads at once. */
typedef struct pissa__jinja_template pissa__jinja_template;

/* Bounds on one render, so that a hostile template can neither hang nor exhaust memory. A field at 0 takes the
 * default. */
typedef struct pissa__jinja_limits {
    size_t max_output;   /* bytes of rendered text; default 256 MiB */
    size_t max_memory;   /* bytes of values built while rendering; default 512 MiB */
    uint64_t max_steps;  /* statements, expression nodes and elements visited by filters; default 10^7 */
    int max_depth;       /* nesting of macro calls; default 64 */
} pissa__jinja_limits;

#define PISSA__JINJA_MAX_OUTPUT ((size_t)256 << 20)
#define PISSA__JINJA_MAX_MEMORY ((size_t)512 << 20)
#define PISSA__JINJA_MAX_STEPS 10000000u
#define PISSA__JINJA_MAX_DEPTH 64
#define PISSA__JINJA_MAX_NESTING 128 /* of blocks and brackets in the source, checked by the parser */

/* Parses SRC (LEN bytes, need not be NUL-terminated). A syntax error is PISSA_ERR_FORMAT naming the line and
 * column; a tag libpissa does not implement (include, extends, import, ...) is PISSA_ERR_UNSUPPORTED. Caller frees
 * with pissa__jinja_free. */
pissa_status pissa__jinja_parse(const char *src, size_t len, pissa__jinja_template **out);
void pissa__jinja_free(pissa__jinja_template *t); /* NULL is a no-op */

/* Renders T with the members of the JSON object CONTEXT_JSON (text; NULL = no variables) as its variables, besides
 * the globals raise_exception, strftime_now, range, namespace and dict. JSON numbers written
 * without a fraction or exponent are integers (as Python's json reads them). LIMITS may be NULL (defaults).
 * Errors: bad CONTEXT_JSON is PISSA_ERR_INVALID_ARG; raise_exception(msg) is PISSA_ERR_INVALID_ARG with MSG in
 * the message; any other runtime error or exceeded limit is PISSA_ERR_FORMAT naming the template line.
 * On success *OUT is a NUL-terminated malloc'd string of *OUT_LEN bytes (it may hold NUL bytes); caller frees
 * it with free(). */
pissa_status pissa__jinja_render(const pissa__jinja_template *t, const char *context_json,
                                 const pissa__jinja_limits *limits, char **out, size_t *out_len);
/* The same with variables given one by one and then from an object: NAMES[i] is the JSON text VALUES[i] (i < N),
 * then the members of OBJECT_JSON (may be NULL) are added; a name given twice is PISSA_ERR_INVALID_ARG. */
pissa_status pissa__jinja_render_vars(const pissa__jinja_template *t, int n, const char *const *names,
                                      const char *const *values, const char *object_json,
                                      const pissa__jinja_limits *limits, char **out, size_t *out_len);
/* The same with the context as a cJSON object. cJSON keeps numbers as doubles: an integral value below 2^53 is
 * taken as an integer, anything else as a float. */
pissa_status pissa__jinja_render_cjson(const pissa__jinja_template *t, const struct cJSON *context,
                                       const pissa__jinja_limits *limits, char **out, size_t *out_len);

/* pissa__jinja_render_cjson that also records what each {% generation %} block printed, as transformers'
 * AssistantTracker does for apply_chat_template(return_assistant_tokens_mask=True): *SPANS (malloc'd, caller frees;
 * NULL when there are none) gets *N_SPANS pairs (start, end) of byte offsets into *OUT, one per block run, in the
 * order the blocks end; start is the length of the result when the block ends, less what the block printed into it
 * (a block inside a macro or a {% set %} block records the result's length, as transformers does). */
pissa_status pissa__jinja_render_tracked(const pissa__jinja_template *t, const struct cJSON *context,
                                         const pissa__jinja_limits *limits, char **out, size_t *out_len,
                                         size_t **spans, size_t *n_spans);
/* 1 if T holds a {% generation %} block. */
int pissa__jinja_has_generation(const pissa__jinja_template *t);

#endif
