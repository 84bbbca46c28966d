/* Training rows: JSONL of pre-tokenized rows (validated line by line) and plain text cut into overlapping
 * windows; a seeded Fisher–Yates shuffle. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "hf_internal.h"

struct pissa_dataset {
    int32_t *ids;     // (total) token ids of all rows; text rows share it (windows overlap)
    int32_t *labels;  // (total) labels, or == ids when every row's labels are its input_ids
    int64_t *start;   // (n) first element of row i in ids / labels
    int64_t *len;     // (n) length of row i
    size_t n;
    int64_t total_tokens, max_len;
};

void pissa_dataset_free(pissa_dataset *d) {
    if (!d) return;
    if (d->labels != d->ids) free(d->labels);
    free(d->ids);
    free(d->start);
    free(d->len);
    free(d);
}

size_t pissa_dataset_count(const pissa_dataset *d) { return d ? d->n : 0; }
int64_t pissa_dataset_total_tokens(const pissa_dataset *d) { return d ? d->total_tokens : 0; }
int64_t pissa_dataset_max_len(const pissa_dataset *d) { return d ? d->max_len : 0; }

pissa_status pissa_dataset_row(const pissa_dataset *d, size_t i, pissa_row *out) {
    if (!d || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_row: NULL argument");
    if (i >= d->n) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_row: row %zu of %zu", i, d->n);
    out->input_ids = d->ids + d->start[i];
    out->labels = d->labels + d->start[i];
    out->len = d->len[i];
    return PISSA_OK;
}

/* ---- JSONL ---- */

typedef struct {
    int32_t *a;
    size_t n, cap;
} i32_vec;

static int vec_reserve(i32_vec *v, size_t extra) {
    if (v->n + extra <= v->cap) return 1;
    size_t cap = v->cap ? v->cap : 1024;
    while (cap < v->n + extra) cap *= 2;
    int32_t *a = realloc(v->a, cap * sizeof *a);
    if (!a) return 0;
    v->a = a;
    v->cap = cap;
    return 1;
}

/* Reads the integer array ARR (a "input_ids" or "labels" value) into DST. Values must be integers in [0, V), or
 * -100 when ALLOW_IGNORE. Returns PISSA_ERR_FORMAT with "FILE:LINE: KEY[k] ..." on a bad element. */
static pissa_status read_int_array(const cJSON *arr, const char *key, int32_t V, int allow_ignore, int32_t *dst,
                                   const char *path, size_t line) {
    size_t k = 0;
    for (const cJSON *e = arr->child; e; e = e->next, k++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble != floor(e->valuedouble))
            return pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: %s[%zu] is not an integer", path, line, key, k);
        double x = e->valuedouble;
        if (allow_ignore && x == PISSA_IGNORE_INDEX) {
            dst[k] = PISSA_IGNORE_INDEX;
            continue;
        }
        if (x < 0 || x >= V)
            return pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: %s[%zu] = %.0f is outside the vocabulary [0, %d)%s", path,
                               line, key, k, x, (int)V, allow_ignore ? " and is not -100" : "");
        dst[k] = (int32_t)x;
    }
    return PISSA_OK;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

/* Parses one non-blank line into the vectors. */
static pissa_status parse_row(const char *text, int32_t V, const char *path, size_t line, i32_vec *ids,
                              i32_vec *labels, int64_t *row_len) {
    const char *end = NULL;
    cJSON *row = cJSON_ParseWithOpts(text, &end, 0);
    pissa_status st = PISSA_OK;
    if (!row) {
        size_t col = end && end >= text ? (size_t)(end - text) + 1 : 0;
        return pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: invalid JSON (near column %zu)", path, line, col);
    }
    while (*end && isspace((unsigned char)*end)) end++;
    if (*end) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: text after the JSON object (column %zu)", path, line,
                         (size_t)(end - text) + 1);
        goto done;
    }
    if (!cJSON_IsObject(row)) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: a row must be a JSON object", path, line);
        goto done;
    }
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(row, "input_ids");
    const cJSON *lab = cJSON_GetObjectItemCaseSensitive(row, "labels");
    if (!in) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: missing \"input_ids\"", path, line);
        goto done;
    }
    if (!cJSON_IsArray(in)) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: \"input_ids\" is not an array", path, line);
        goto done;
    }
    if (lab && cJSON_IsNull(lab)) lab = NULL;
    if (lab && !cJSON_IsArray(lab)) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: \"labels\" is not an array", path, line);
        goto done;
    }
    size_t n = (size_t)cJSON_GetArraySize(in);
    if (n == 0) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: \"input_ids\" is empty", path, line);
        goto done;
    }
    if (lab && (size_t)cJSON_GetArraySize(lab) != n) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s:%zu: \"labels\" has %d elements but \"input_ids\" has %zu", path, line,
                         cJSON_GetArraySize(lab), n);
        goto done;
    }
    if (!vec_reserve(ids, n) || !vec_reserve(labels, n)) {
        st = pissa__fail(PISSA_ERR_NOMEM, "%s:%zu: out of memory", path, line);
        goto done;
    }
    st = read_int_array(in, "input_ids", V, 0, ids->a + ids->n, path, line);
    if (st == PISSA_OK && lab) st = read_int_array(lab, "labels", V, 1, labels->a + labels->n, path, line);
    if (st != PISSA_OK) goto done;
    if (!lab) memcpy(labels->a + labels->n, ids->a + ids->n, n * sizeof(int32_t));
    ids->n += n;
    labels->n += n;
    *row_len = (int64_t)n;
done:
    cJSON_Delete(row);
    return st;
}

pissa_status pissa_dataset_load_jsonl(const char *path, int32_t vocab_size, pissa_dataset **out) {
    if (!path || !out || vocab_size <= 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dataset_load_jsonl: NULL argument or vocab_size <= 0");
    *out = NULL;
    char *text;
    size_t size;
    PISSA_TRY(pissa__read_file(path, &text, &size));
    pissa_status st = PISSA_OK;
    i32_vec ids = {0}, labels = {0};
    int64_t *start = NULL, *len = NULL;
    size_t n = 0, cap = 0;
    pissa_dataset *d = NULL;

    char *p = text, *file_end = text + size;
    for (size_t line = 1; p < file_end; line++) {
        char *nl = memchr(p, '\n', (size_t)(file_end - p));
        char *eol = nl ? nl : file_end;
        *eol = '\0'; /* parse the line as its own string; a "\r" before it is whitespace */
        char *next = nl ? nl + 1 : file_end;
        if (!blank(p)) {
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                int64_t *s2 = realloc(start, cap * sizeof *s2);
                if (s2) start = s2;
                int64_t *l2 = realloc(len, cap * sizeof *l2);
                if (l2) len = l2;
                if (!s2 || !l2) {
                    st = pissa__fail(PISSA_ERR_NOMEM, "%s:%zu: out of memory", path, line);
                    goto done;
                }
            }
            start[n] = (int64_t)ids.n;
            st = parse_row(p, vocab_size, path, line, &ids, &labels, &len[n]);
            if (st != PISSA_OK) goto done;
            n++;
        }
        p = next;
    }

    d = calloc(1, sizeof *d);
    if (!d) {
        st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    d->ids = ids.a ? ids.a : malloc(1);
    d->labels = labels.a ? labels.a : malloc(1);
    d->start = start ? start : malloc(1);
    d->len = len ? len : malloc(1);
    ids.a = labels.a = NULL;
    start = len = NULL;
    d->n = n;
    d->total_tokens = (int64_t)ids.n;
    for (size_t i = 0; i < n; i++)
        if (d->len[i] > d->max_len) d->max_len = d->len[i];
    if (!d->ids || !d->labels || !d->start || !d->len) {
        pissa_dataset_free(d);
        d = NULL;
        st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    *out = d;
done:
    free(ids.a);
    free(labels.a);
    free(start);
    free(len);
    free(text);
    return st;
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
