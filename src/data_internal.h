/* Internal interfaces between the data set reader (data.c) and the row encoder (chat_data.c). Not installed. */
#ifndef PISSA_DATA_INTERNAL_H
#define PISSA_DATA_INTERNAL_H

#include "hf_internal.h"
#include "pissa/data.h"

struct cJSON;

/* An encoder whose chat-template errors name WHERE (the data file; NULL: "chat template"). A missing chat template
 * is an error only when a conversational row comes. */
pissa_status pissa__row_encoder_new(const pissa_tokenizer *tok, const pissa_data_opts *opts, const char *where,
                                    pissa_row_encoder **out);
/* Encodes the JSON object ROW into E's arrays (as pissa_row_encoder_encode); WHERE names the row in messages
 * ("data.jsonl:12"); V bounds the ids of pre-tokenized rows. */
pissa_status pissa__row_encode(pissa_row_encoder *e, const struct cJSON *row, const char *where, int32_t V,
                               pissa_row *out);
/* Prompt/completion rows encoded so far whose prompt tokens were not the first tokens of the whole row. */
size_t pissa__row_encoder_prompt_mismatches(const pissa_row_encoder *e);

/* A pre-tokenized row {"input_ids", "labels"} (data.c): ids in [0, V), labels there or -100, labels defaulting to
 * the ids; IDS and LABELS are replaced. PISSA_ERR_FORMAT "WHERE: what" on a bad field. */
pissa_status pissa__data_read_tokens(const struct cJSON *row, int32_t V, const char *where, pissa__ids *ids,
                                     pissa__ids *labels);

#endif
