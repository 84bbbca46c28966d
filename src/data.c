/* Training rows: JSONL in TRL's formats (the rows encoded by chat_data.c) or pre-tokenized, plain text cut into
 * overlapping windows, best-fit-decreasing packing, a seeded Fisher–Yates shuffle. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data_internal.h"

struct pissa_dataset {
    int32_t *ids;     // (total) token ids of all rows; text rows share it (windows overlap)
    int32_t *labels;  // (total) labels, or == ids when every row's labels are its input_ids
    int32_t *pos;     // (total) position_ids of a packed data set, else NULL
    int64_t *start;   // (n) first element of row i in ids / labels
    int64_t *len;     // (n) length of row i
    size_t n;
    int64_t total_tokens, max_len;
};

void pissa_dataset_free(pissa_dataset *d) {
    if (!d) return;
    if (d->labels != d->ids) free(d->labels);
    free(d->ids);
    free(d->pos);
    free(d->start);
    free(d->len);
    free(d);
}

size_t pissa_dataset_count(const pissa_dataset *d) { return d ? d->n : 0; }
int64_t pissa_dataset_total_tokens(const pissa_dataset *d) { return d ? d->total_tokens : 0; }
int64_t pissa_dataset_max_len(const pissa_dataset *d) { return d ? d->max_len : 0; }
int pissa_dataset_is_packed(const pissa_dataset *d) { return d && d->pos; }

pissa_status pissa_dataset_row(const pissa_dataset *d, size_t i, pissa_row *out) {
    if (!d || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_row: NULL argument");
    if (i >= d->n) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_row: row %zu of %zu", i, d->n);
    out->input_ids = d->ids + d->start[i];
    out->labels = d->labels + d->start[i];
    out->len = d->len[i];
    out->position_ids = d->pos ? d->pos + d->start[i] : NULL;
    return PISSA_OK;
}

/* ---- building a data set row by row ---- */

typedef struct builder {
    pissa__ids ids, labels, pos;
    int64_t *start, *len;
    size_t n, cap;
    int oom;
} builder;

static void builder_add(builder *b, const int32_t *ids, const int32_t *labels, const int32_t *pos, int64_t len) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        int64_t *s2 = realloc(b->start, cap * sizeof *s2);
        if (s2) b->start = s2;
        int64_t *l2 = realloc(b->len, cap * sizeof *l2);
        if (l2) b->len = l2;
        if (!s2 || !l2) {
            b->oom = 1;
            return;
        }
        b->cap = cap;
    }
    b->start[b->n] = (int64_t)b->ids.n;
    b->len[b->n++] = len;
    pissa__ids_append(&b->ids, ids, (size_t)len);
    pissa__ids_append(&b->labels, labels, (size_t)len);
    if (pos) pissa__ids_append(&b->pos, pos, (size_t)len);
}

static void builder_free(builder *b) {
    free(b->ids.v);
    free(b->labels.v);
    free(b->pos.v);
    free(b->start);
    free(b->len);
    memset(b, 0, sizeof *b);
}

/* The data set of B's rows (B is emptied); WITH_POS: a packed one. */
static pissa_status builder_finish(builder *b, int with_pos, const char *what, pissa_dataset **out) {
    pissa_dataset *d = b->oom || b->ids.oom || b->labels.oom || b->pos.oom ? NULL : calloc(1, sizeof *d);
    if (!d) {
        builder_free(b);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", what);
    }
    d->ids = b->ids.v ? b->ids.v : malloc(1);
    d->labels = b->labels.v ? b->labels.v : malloc(1);
    d->pos = !with_pos ? NULL : b->pos.v ? b->pos.v : malloc(1);
    d->start = b->start ? b->start : malloc(1);
    d->len = b->len ? b->len : malloc(1);
    if (!with_pos) free(b->pos.v);
    d->n = b->n;
    d->total_tokens = (int64_t)b->ids.n;
    for (size_t i = 0; i < d->n; i++)
        if (d->len[i] > d->max_len) d->max_len = d->len[i];
    memset(b, 0, sizeof *b);
    if (!d->ids || !d->labels || (with_pos && !d->pos) || !d->start || !d->len) {
        pissa_dataset_free(d);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", what);
    }
    *out = d;
    return PISSA_OK;
}

/* ---- pre-tokenized rows ---- */

/* Reads the integer array ARR (a "input_ids" or "labels" value) into DST. Values must be integers in [0, V), or
 * -100 when ALLOW_IGNORE. Returns PISSA_ERR_FORMAT with "WHERE: KEY[k] ..." on a bad element. */
static pissa_status read_int_array(const cJSON *arr, const char *key, int32_t V, int allow_ignore, int32_t *dst,
                                   const char *where) {
    size_t k = 0;
    for (const cJSON *e = arr->child; e; e = e->next, k++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble != floor(e->valuedouble))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: %s[%zu] is not an integer", where, key, k);
        double x = e->valuedouble;
        if (allow_ignore && x == PISSA_IGNORE_INDEX) {
            dst[k] = PISSA_IGNORE_INDEX;
            continue;
        }
        if (x < 0 || x >= V)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: %s[%zu] = %.0f is outside the vocabulary [0, %d)%s", where, key,
                               k, x, (int)V, allow_ignore ? " and is not -100" : "");
        dst[k] = (int32_t)x;
    }
    return PISSA_OK;
}

pissa_status pissa__data_read_tokens(const cJSON *row, int32_t V, const char *where, pissa__ids *ids,
                                     pissa__ids *labels) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(row, "input_ids");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(row, "labels");
    if (!in) return pissa__fail(PISSA_ERR_FORMAT, "%s: missing \"input_ids\"", where);
    if (!cJSON_IsArray(in)) return pissa__fail(PISSA_ERR_FORMAT, "%s: \"input_ids\" is not an array", where);
    if (lab && cJSON_IsNull(lab)) lab = NULL;
    if (lab && !cJSON_IsArray(lab)) return pissa__fail(PISSA_ERR_FORMAT, "%s: \"labels\" is not an array", where);
    size_t n = (size_t)cJSON_GetArraySize(in);
    if (n == 0) return pissa__fail(PISSA_ERR_FORMAT, "%s: \"input_ids\" is empty", where);
    if (lab && (size_t)cJSON_GetArraySize(lab) != n)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: \"labels\" has %d elements but \"input_ids\" has %zu", where,
                           cJSON_GetArraySize(lab), n);
    ids->n = labels->n = 0;
    int32_t *tmp = malloc(2 * n * sizeof *tmp);
    if (!tmp) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
    pissa_status st = read_int_array(in, "input_ids", V, 0, tmp, where);
    if (st == PISSA_OK && lab) st = read_int_array(lab, "labels", V, 1, tmp + n, where);
    if (st == PISSA_OK) {
        pissa__ids_append(ids, tmp, n);
        pissa__ids_append(labels, lab ? tmp + n : tmp, n);
        if (ids->oom || labels->oom) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
    }
    free(tmp);
    return st;
}

/* ---- JSONL in any format ---- */

pissa_data_opts pissa_data_default_opts(void) {
    pissa_data_opts o = {.format = PISSA_DATA_AUTO, .max_len = 0, .completion_only_loss = 1,
                         .assistant_only_loss = 1, .chat_template = NULL};
    return o;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return 0;
    return 1;
}

/* Parses the line S (NUL-terminated) as one JSON object. */
static pissa_status parse_line(const char *s, const char *where, cJSON **out) {
    const char *end = NULL;
    cJSON *row = cJSON_ParseWithOpts(s, &end, 0);
    if (!row) {
        size_t col = end && end >= s ? (size_t)(end - s) + 1 : 0;
        return pissa__fail(PISSA_ERR_FORMAT, "%s: invalid JSON (near column %zu)", where, col);
    }
    while (*end && isspace((unsigned char)*end)) end++;
    pissa_status st = PISSA_OK;
    if (*end) st = pissa__fail(PISSA_ERR_FORMAT, "%s: text after the JSON object (column %zu)", where,
                               (size_t)(end - s) + 1);
    else if (!cJSON_IsObject(row)) st = pissa__fail(PISSA_ERR_FORMAT, "%s: a row must be a JSON object", where);
    if (st != PISSA_OK) {
        cJSON_Delete(row);
        return st;
    }
    *out = row;
    return PISSA_OK;
}

/* AUTO: JSONL when the first line that is not blank is a whole JSON object. */
static int looks_like_jsonl(const char *text, size_t size) {
    const char *p = text, *end = text + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *eol = nl ? nl : end;
        if (!blank(p, (size_t)(eol - p))) {
            const char *q = p;
            while (q < eol && isspace((unsigned char)*q)) q++;
            if (*q != '{') return 0;
            char *line = malloc((size_t)(eol - p) + 1);
            if (!line) return 1; /* the JSONL reader reports the memory */
            memcpy(line, p, (size_t)(eol - p));
            line[eol - p] = '\0';
            const char *e = NULL;
            cJSON *j = cJSON_ParseWithOpts(line, &e, 0);
            while (j && *e && isspace((unsigned char)*e)) e++;
            int yes = j && cJSON_IsObject(j) && !*e;
            cJSON_Delete(j);
            free(line);
            return yes;
        }
        p = nl ? nl + 1 : end;
    }
    return 1; /* blank: an empty data set either way */
}

/* Rows cut by max_len, and those the cut left without a target. */
typedef struct cut_count {
    size_t cut, dropped;
} cut_count;

/* Keeps ROW (cut to MAX_LEN when > 0) unless the cut leaves it without a target (a label at position >= 1). */
static void keep_row(builder *b, const pissa_row *r, int64_t max_len, cut_count *c) {
    int64_t len = r->len;
    if (max_len > 0 && len > max_len) {
        c->cut++;
        len = max_len;
        int target = 0;
        for (int64_t k = 1; k < len && !target; k++) target = r->labels[k] != PISSA_IGNORE_INDEX;
        if (!target) {
            c->dropped++;
            return;
        }
    }
    builder_add(b, r->input_ids, r->labels, r->position_ids, len);
}

pissa_status pissa_data_format_parse(const char *s, pissa_data_format *out) {
    static const char *const names[3] = {"auto", "jsonl", "text"};
    for (int k = 0; s && out && k < 3; k++)
        if (!strcmp(s, names[k])) return *out = (pissa_data_format)k, PISSA_OK;
    return pissa__fail(PISSA_ERR_INVALID_ARG, "data format '%s': expected auto, jsonl or text", s ? s : "(null)");
}

pissa_status pissa_data_detect_format(const char *path, pissa_data_format *out) {
    if (!path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_data_detect_format: NULL argument");
    char *text;
    size_t size;
    PISSA_TRY(pissa__read_file(path, &text, &size));
    *out = looks_like_jsonl(text, size) ? PISSA_DATA_JSONL : PISSA_DATA_TEXT;
    free(text);
    return PISSA_OK;
}

static pissa_status load_jsonl(const char *path, char *text, size_t size, const pissa_tokenizer *tok, int32_t V,
                               const pissa_data_opts *o, pissa_dataset **out) {
    pissa_row_encoder *e;
    PISSA_TRY(pissa__row_encoder_new(tok, o, path, &e));
    builder b = {0};
    cut_count c = {0, 0};
    size_t rows = 0;
    pissa_status st = PISSA_OK;
    char *p = text, *file_end = text + size, where[PATH_MAX + 32];
    for (size_t line = 1; p < file_end && st == PISSA_OK; line++) {
        char *nl = memchr(p, '\n', (size_t)(file_end - p));
        char *eol = nl ? nl : file_end;
        *eol = '\0'; /* parse the line as its own string; a "\r" before it is whitespace */
        char *next = nl ? nl + 1 : file_end;
        if (!blank(p, (size_t)(eol - p))) {
            snprintf(where, sizeof where, "%s:%zu", path, line);
            cJSON *j = NULL;
            pissa_row r;
            st = parse_line(p, where, &j);
            if (st == PISSA_OK) st = pissa__row_encode(e, j, where, V, &r);
            if (st == PISSA_OK) {
                rows++;
                keep_row(&b, &r, o->max_len, &c);
                if (b.oom || b.ids.oom || b.labels.oom) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
            }
            cJSON_Delete(j);
        }
        p = next;
    }
    size_t mismatched = pissa__row_encoder_prompt_mismatches(e);
    pissa_row_encoder_free(e);
    if (st != PISSA_OK) {
        builder_free(&b);
        return st;
    }
    if (c.cut)
        pissa__log(PISSA_LOG_WARN, "%s: %zu of %zu rows are longer than %lld tokens and were cut to their first %lld%s",
                   path, c.cut, rows, (long long)o->max_len, (long long)o->max_len,
                   c.dropped ? "; the rows left without a target were dropped" : "");
    if (c.dropped) pissa__log(PISSA_LOG_INFO, "%s: %zu cut rows dropped (no target left)", path, c.dropped);
    if (mismatched)
        pissa__log(PISSA_LOG_WARN, "%s: in %zu prompt/completion rows the prompt's own tokens are not the first tokens "
                   "of prompt + completion (TRL warns too): the completion's targets start after as many tokens as "
                   "the prompt has", path, mismatched);
    return builder_finish(&b, 0, path, out);
}

pissa_status pissa_dataset_load(const char *path, const pissa_tokenizer *tok, int32_t vocab_size,
                                const pissa_data_opts *opts, pissa_dataset **out) {
    if (!path || !out || vocab_size <= 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_load: NULL argument or vocab_size <= 0");
    *out = NULL;
    pissa_data_opts o = opts ? *opts : pissa_data_default_opts();
    if (o.format != PISSA_DATA_AUTO && o.format != PISSA_DATA_JSONL && o.format != PISSA_DATA_TEXT)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_load: unknown format %d", (int)o.format);
    if (o.max_len < 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_load: max_len %lld < 0", (long long)o.max_len);
    char *text;
    size_t size;
    PISSA_TRY(pissa__read_file(path, &text, &size));
    pissa_status st;
    if (o.format == PISSA_DATA_TEXT || (o.format == PISSA_DATA_AUTO && !looks_like_jsonl(text, size))) {
        free(text);
        if (!tok)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: plain text (not JSONL) needs a tokenizer", path);
        if (o.max_len < 2)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: plain text is cut into rows of max_len tokens: give "
                               "max_len >= 2", path);
        return pissa_dataset_load_text(path, tok, o.max_len, out);
    }
    st = load_jsonl(path, text, size, tok, vocab_size, &o, out);
    free(text);
    return st;
}

pissa_status pissa_dataset_load_jsonl(const char *path, int32_t vocab_size, pissa_dataset **out) {
    if (!path || !out || vocab_size <= 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_load_jsonl: NULL argument or vocab_size <= 0");
    pissa_data_opts o = pissa_data_default_opts();
    o.format = PISSA_DATA_JSONL;
    return pissa_dataset_load(path, NULL, vocab_size, &o, out);
}

/* ---- rows in memory ---- */

pissa_status pissa_dataset_from_rows(const int32_t *ids, const int32_t *labels, const int64_t *offsets, size_t n,
                                     int32_t vocab_size, pissa_dataset **out) {
    if (!out || (n && (!ids || !offsets)) || vocab_size <= 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_from_rows: NULL argument or vocab_size <= 0");
    *out = NULL;
    if (n && offsets[0] != 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_from_rows: offsets[0] is %lld, not 0",
                           (long long)offsets[0]);
    for (size_t i = 0; i < n; i++) { /* the same rules as a JSONL row */
        if (offsets[i + 1] <= offsets[i])
            return pissa__fail(PISSA_ERR_FORMAT, "row %zu: %s", i,
                               offsets[i + 1] == offsets[i] ? "input_ids is empty" : "offsets decrease");
        for (int64_t k = offsets[i]; k < offsets[i + 1]; k++) {
            if (ids[k] < 0 || ids[k] >= vocab_size)
                return pissa__fail(PISSA_ERR_FORMAT, "row %zu, position %lld: input_ids value %d is outside [0, %d)",
                                   i, (long long)(k - offsets[i]), ids[k], vocab_size);
            if (labels && labels[k] != PISSA_IGNORE_INDEX && (labels[k] < 0 || labels[k] >= vocab_size))
                return pissa__fail(PISSA_ERR_FORMAT,
                                   "row %zu, position %lld: labels value %d is neither -100 nor in [0, %d)", i,
                                   (long long)(k - offsets[i]), labels[k], vocab_size);
        }
    }
    size_t total = n ? (size_t)offsets[n] : 0;
    pissa_dataset *d = calloc(1, sizeof *d);
    if (!d) return pissa__fail(PISSA_ERR_NOMEM, "pissa_dataset_from_rows: out of memory");
    d->ids = pissa__alloc(total ? total : 1, sizeof *d->ids);
    d->labels = labels ? pissa__alloc(total ? total : 1, sizeof *d->labels) : d->ids;
    d->start = pissa__alloc(n ? n : 1, sizeof *d->start);
    d->len = pissa__alloc(n ? n : 1, sizeof *d->len);
    if (!d->ids || !d->labels || !d->start || !d->len) {
        pissa_dataset_free(d);
        return pissa__fail(PISSA_ERR_NOMEM, "pissa_dataset_from_rows: out of memory for %zu tokens", total);
    }
    if (total) memcpy(d->ids, ids, total * sizeof *ids);
    if (labels && total) memcpy(d->labels, labels, total * sizeof *labels);
    for (size_t i = 0; i < n; i++) {
        d->start[i] = offsets[i];
        d->len[i] = offsets[i + 1] - offsets[i];
        if (d->len[i] > d->max_len) d->max_len = d->len[i];
    }
    d->n = n;
    d->total_tokens = (int64_t)total;
    *out = d;
    return PISSA_OK;
}

/* ---- plain text ---- */

pissa_status pissa_dataset_from_text(const pissa_tokenizer *tok, const char *text, size_t len, int64_t seq_len,
                                     pissa_dataset **out) {
    if (!tok || (!text && len) || !out)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_from_text: NULL argument");
    if (seq_len < 2)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_from_text: seq_len %lld < 2", (long long)seq_len);
    *out = NULL;
    pissa_dataset *d = calloc(1, sizeof *d);
    if (!d) return pissa__fail(PISSA_ERR_NOMEM, "pissa_dataset_from_text: out of memory");
    size_t cap = pissa_tokenizer_max_tokens(tok, len), N;
    d->ids = cap == SIZE_MAX ? NULL : pissa__alloc(cap, sizeof *d->ids);
    if (!d->ids) {
        pissa_dataset_free(d);
        return pissa__fail(PISSA_ERR_NOMEM, "pissa_dataset_from_text: out of memory (%zu bytes of text)", len);
    }
    /* the whole text at once, with the special tokens (llama2.c: one BOS, one dummy prefix, run.c's tokens) */
    pissa_status st = pissa_tokenizer_encode_text(tok, text, len, 1, d->ids, cap, &N);
    if (st != PISSA_OK) {
        pissa_dataset_free(d);
        return st;
    }
    d->labels = d->ids;
    /* windows of T overlapping by one: row i = t[i(T-1) .. i(T-1) + T) */
    size_t stride = (size_t)seq_len - 1;
    d->n = N >= 1 ? (N - 1) / stride : 0; /* the last window ends at n(T-1) + 1 <= N */
    d->start = pissa__alloc(d->n, sizeof *d->start);
    d->len = pissa__alloc(d->n, sizeof *d->len);
    if (!d->start || !d->len) {
        pissa_dataset_free(d);
        return pissa__fail(PISSA_ERR_NOMEM, "pissa_dataset_from_text: out of memory");
    }
    for (size_t i = 0; i < d->n; i++) {
        d->start[i] = (int64_t)(i * stride);
        d->len[i] = seq_len;
    }
    d->total_tokens = (int64_t)d->n * seq_len;
    d->max_len = d->n ? seq_len : 0;
    *out = d;
    return PISSA_OK;
}

pissa_status pissa_dataset_load_text(const char *path, const pissa_tokenizer *tok, int64_t seq_len,
                                     pissa_dataset **out) {
    if (!path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_load_text: NULL argument");
    *out = NULL;
    char *text;
    size_t size;
    PISSA_TRY(pissa__read_file(path, &text, &size));
    size_t valid = pissa__utf8_valid_prefix(text, size);
    if (tok && pissa_tokenizer_get_kind(tok) == PISSA_TOKENIZER_HF && valid != size) {
        free(text);
        return pissa__fail(PISSA_ERR_FORMAT, "%s: not valid UTF-8 (at byte %zu)", path, valid);
    }
    pissa_status st = pissa_dataset_from_text(tok, text, size, seq_len, out);
    free(text);
    return st;
}

/* ---- packing ---- */

/* Rows by decreasing length (cut to the bin size), ties in data set order: the order TRL's "bfd" visits them. */
typedef struct len_index {
    int64_t len;
    size_t i;
} len_index;

static int by_len_desc(const void *a, const void *b) {
    const len_index *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Best-fit decreasing with TRL's tie rule: among the packed rows (bins) with the least room that still fits, the
 * one that got that room first. FIFO queues of bins by their free room; a bitmap of the non-empty queues finds the
 * least room >= a length. Returns the number of bins; BIN_OF[k] is the bin of the k-th visited row. */
static pissa_status best_fit(const len_index *rows, size_t n, int64_t S, size_t *bin_of, size_t *n_bins) {
    size_t words = (size_t)(S / 64 + 1), nb = 0;
    uint64_t *nonempty = calloc(words, sizeof *nonempty);
    size_t *head = malloc((size_t)(S + 1) * sizeof *head), *tail = malloc((size_t)(S + 1) * sizeof *tail);
    size_t *next = malloc((n ? n : 1) * sizeof *next);
    int64_t *room = malloc((n ? n : 1) * sizeof *room);
    pissa_status st = nonempty && head && tail && next && room ? PISSA_OK
                      : pissa__fail(PISSA_ERR_NOMEM, "pack: out of memory for %zu rows", n);
    for (size_t k = 0; st == PISSA_OK && k < n; k++) {
        int64_t l = rows[k].len, r = l; /* the least room >= l held by a bin, or S: a new bin */
        while (r < S && !(nonempty[r / 64] >> (r % 64) & 1)) {
            if (r % 64 == 0 && !nonempty[r / 64]) r += 64;
            else r++;
        }
        size_t b;
        if (r < S) { /* the first bin queued with room r */
            b = head[r];
            head[r] = next[b];
            if (head[r] == SIZE_MAX) nonempty[r / 64] &= ~(1ull << (r % 64));
        } else {
            b = nb++;
            room[b] = S;
        }
        bin_of[k] = b;
        room[b] -= l;
        if (room[b] > 0) { /* queue it with its new room */
            int64_t q = room[b];
            next[b] = SIZE_MAX;
            if (nonempty[q / 64] >> (q % 64) & 1) next[tail[q]] = b;
            else head[q] = b, nonempty[q / 64] |= 1ull << (q % 64);
            tail[q] = b;
        }
    }
    free(nonempty), free(head), free(tail), free(next), free(room);
    *n_bins = nb;
    return st;
}

pissa_status pissa_dataset_pack(const pissa_dataset *d, int64_t seq_len, pissa_dataset **out) {
    if (!d || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_pack: NULL argument");
    *out = NULL;
    if (seq_len < 2 || seq_len > INT32_MAX)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pack: seq_len %lld is not in [2, 2^31)", (long long)seq_len);
    if (d->pos) return pissa__fail(PISSA_ERR_INVALID_ARG, "pack: the data set is packed already");
    size_t n = d->n, cut = 0, n_bins = 0;
    len_index *rows = malloc((n ? n : 1) * sizeof *rows);
    size_t *bin_of = malloc((n ? n : 1) * sizeof *bin_of), *first = NULL, *order = NULL;
    int32_t *pos = malloc((size_t)seq_len * sizeof *pos);
    pissa_status st = rows && bin_of && pos ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "pack: out of memory");
    for (size_t i = 0; st == PISSA_OK && i < n; i++) {
        rows[i] = (len_index){d->len[i] < seq_len ? d->len[i] : seq_len, i};
        cut += d->len[i] > seq_len;
    }
    if (st == PISSA_OK) {
        qsort(rows, n, sizeof *rows, by_len_desc);
        st = best_fit(rows, n, seq_len, bin_of, &n_bins);
    }
    /* the rows of each bin in the order they went in, bins in the order they were opened */
    if (st == PISSA_OK) {
        first = calloc(n_bins + 1, sizeof *first);
        order = malloc((n ? n : 1) * sizeof *order);
        if (!first || !order) st = pissa__fail(PISSA_ERR_NOMEM, "pack: out of memory");
    }
    builder b = {0};
    if (st == PISSA_OK) {
        for (size_t k = 0; k < n; k++) first[bin_of[k] + 1]++;
        for (size_t j = 0; j < n_bins; j++) first[j + 1] += first[j];
        for (size_t k = 0; k < n; k++) order[first[bin_of[k]]++] = k; /* first[j] ends at bin j's end */
        for (int64_t t = 0; t < seq_len; t++) pos[t] = (int32_t)t;
        for (size_t j = 0, k = 0; j < n_bins; j++) {
            size_t k0 = k;
            int64_t len = 0;
            for (; k < first[j]; k++) len += rows[order[k]].len;
            /* one packed row: its rows' tokens back to back, each with positions 0, 1, ... */
            for (size_t m = k0; m < k; m++) {
                const len_index *r = &rows[order[m]];
                const int32_t *ids = d->ids + d->start[r->i], *labels = d->labels + d->start[r->i];
                if (m == k0) builder_add(&b, ids, labels, pos, r->len);
                else {
                    pissa__ids_append(&b.ids, ids, (size_t)r->len);
                    pissa__ids_append(&b.labels, labels, (size_t)r->len);
                    pissa__ids_append(&b.pos, pos, (size_t)r->len);
                }
            }
            if (b.n) b.len[b.n - 1] = len;
        }
    }
    free(rows), free(bin_of), free(first), free(order), free(pos);
    if (st != PISSA_OK) {
        builder_free(&b);
        return st;
    }
    if (cut)
        pissa__log(PISSA_LOG_WARN, "pack: %zu of %zu rows are longer than %lld tokens and were cut to their first %lld",
                   cut, n, (long long)seq_len, (long long)seq_len);
    return builder_finish(&b, 1, "pack", out);
}

int64_t pissa_dataset_target_count(const pissa_dataset *d, int64_t seq) {
    int64_t count = 0;
    for (size_t i = 0; d && i < d->n; i++) {
        int64_t len = seq > 0 && seq < d->len[i] ? seq : d->len[i];
        const int32_t *labels = d->labels + d->start[i], *pos = d->pos ? d->pos + d->start[i] : NULL;
        for (int64_t k = 1; k < len; k++) /* a packed row's sequence starts predict nothing (the model skips them) */
            count += labels[k] != PISSA_IGNORE_INDEX && (!pos || pos[k] != 0);
    }
    return count;
}

/* ---- shuffling ---- */

void pissa_shuffle_indices(size_t *perm, size_t n, uint64_t seed) {
    if (!perm) return;
    for (size_t i = 0; i < n; i++) perm[i] = i;
    pissa_rng rng;
    pissa__rng_seed(&rng, seed);
    for (size_t i = n; i-- > 1;) {
        uint64_t bound = (uint64_t)i + 1;
        uint64_t reject_below = (0 - bound) % bound; /* 2^64 mod bound: drop these draws so r % bound is uniform */
        uint64_t r;
        do r = pissa__rng_u64(&rng);
        while (r < reject_below);
        size_t j = (size_t)(r % bound);
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
