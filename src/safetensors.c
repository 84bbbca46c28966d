/* safetensors files (docs/formats.md). The reader enforces every rule of the reference Rust reader
 * (huggingface/safetensors, tensor.rs), so a file libpissa accepts is one the Hugging Face tools accept;
 * the writer lays files out byte for byte as the reference writer does. Host byte order is assumed to be
 * little-endian, like the format. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* JSON integers are doubles in cJSON; above 2^53 a double cannot hold every integer, so the value the
 * file meant is unknowable: such values are rejected. */
#define JSON_MAX_EXACT 9007199254740992.0

typedef struct st_tensor {
    char *name;
    pissa_dtype dtype;
    int ndim;
    int64_t shape[PISSA_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte range in the data buffer, END exclusive */
} st_tensor;

struct pissa_st_file {
    char *path;
    pissa_mapping *map;
    const unsigned char *buffer; /* the byte buffer: map->base + 8 + N */
    st_tensor *t;                /* (count) in order of data offsets */
    size_t count;
    const st_tensor **by_name;   /* (count) into t, sorted by name, for bsearch */
    char **meta;                 /* (2 * n_meta) key, value, key, value, ... */
    size_t n_meta;
};

/* ---------------------------------------------------------------------------------------------- */
/* shared checks                                                                                  */

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. Returns the offset
 * of the first bad byte, or n. */
static size_t utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

/* cJSON tolerates raw control characters that JSON forbids (inside strings, and between tokens other
 * than space, tab, CR, LF). Returns the offset of the first one, or n. */
static size_t json_control_check(const unsigned char *s, size_t n) {
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (in_string) {
            if (c < 0x20) return i;
            if (c == '\\') {
                if (i + 1 < n && s[i + 1] < 0x20) return i + 1;
                i++;
            } else if (c == '"') {
                in_string = 0;
            }
        } else if (c == '"') {
            in_string = 1;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return i;
        }
    }
    return n;
}

static int json_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A JSON number holding a non-negative integer that a double represents exactly. */
static int json_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d < JSON_MAX_EXACT) || d != floor(d)) return 0; /* 2^53 + 1 parses as 2^53 */
    *out = (uint64_t)d;
    return 1;
}

static int dtype_from_name(const char *s, pissa_dtype *out) {
    for (int i = 0; i < PISSA_DTYPE_COUNT; i++)
        if (strcmp(s, pissa_dtype_name((pissa_dtype)i)) == 0) return *out = (pissa_dtype)i, 1;
    return 0;
}

/* "[2, 2]" from a JSON shape array (any length), truncated to fit. */
static const char *fmt_shape_json(const cJSON *shape, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (const cJSON *d = shape->child; d && k < cap; d = d->next)
        k += (size_t)snprintf(buf + k, cap - k, "%s%.0f", d == shape->child ? "" : ", ", d->valuedouble);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* ---------------------------------------------------------------------------------------------- */
/* reader                                                                                         */

static pissa_status parse_metadata(pissa_st_file *f, const cJSON *m) {
    if (cJSON_IsNull(m)) return PISSA_OK; /* the reference reader takes null as "no metadata" */
    if (!cJSON_IsObject(m)) return pissa__fail(PISSA_ERR_FORMAT, "%s: __metadata__ is not a JSON object", f->path);
    size_t n = (size_t)cJSON_GetArraySize(m);
    f->meta = pissa__calloc(2 * n, sizeof *f->meta);
    if (!f->meta) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", f->path);
    for (const cJSON *c = m->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", f->path, c->string);
        for (size_t i = 0; i < f->n_meta; i++)
            if (strcmp(f->meta[2 * i], c->string) == 0)
                return pissa__fail(PISSA_ERR_FORMAT, "%s: __metadata__ key '%s' appears twice", f->path, c->string);
        char *k = pissa__strdup(c->string), *v = pissa__strdup(c->valuestring);
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
        if (!k || !v) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", f->path);
    }
    return PISSA_OK;
}

/* One tensor entry: exactly {"dtype", "shape", "data_offsets"}, with numel × element size == END − BEGIN.
 * *wide gets the true ndim when it exceeds PISSA_MAX_DIMS (reported after the format checks). */
static pissa_status parse_entry(const char *path, const cJSON *e, st_tensor *t, int *wide) {
    const char *name = e->string;
    if (!cJSON_IsObject(e))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    const cJSON *v[3] = {NULL, NULL, NULL};
    for (const cJSON *c = e->child; c; c = c->next) {
        int k = 0;
        while (k < 3 && strcmp(c->string, fields[k]) != 0) k++;
        if (k == 3)
            return pissa__fail(PISSA_ERR_FORMAT,
                               "%s: tensor '%s': unknown field '%s' (expected dtype, shape, data_offsets)", path, name,
                               c->string);
        if (v[k])
            return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': field '%s' appears twice", path, name, fields[k]);
        v[k] = c;
    }
    for (int k = 0; k < 3; k++)
        if (!v[k]) return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': missing field '%s'", path, name, fields[k]);

    if (!cJSON_IsString(v[0]))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", path, name);
    if (!dtype_from_name(v[0]->valuestring, &t->dtype))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, v[0]->valuestring);

    const cJSON *shape = v[1];
    if (!cJSON_IsArray(shape))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': shape is not an array", path, name);
    int ndim = 0, overflow = 0;
    uint64_t numel = 1;
    for (const cJSON *d = shape->child; d; d = d->next, ndim++) {
        uint64_t dim;
        if (!json_uint(d, &dim))
            return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': shape is not an array of non-negative integers",
                               path, name);
        if (ndim < PISSA_MAX_DIMS) t->shape[ndim] = (int64_t)dim;
        if (dim != 0 && numel > UINT64_MAX / dim) overflow = 1;
        else numel *= dim;
    }
    char sbuf[160];
    size_t esize = pissa_dtype_size(t->dtype);
    if (overflow || numel > (uint64_t)INT64_MAX || numel > UINT64_MAX / esize)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': shape %s of %s overflows the size computation", path,
                           name, fmt_shape_json(shape, sbuf, sizeof sbuf), v[0]->valuestring);

    const cJSON *off = v[2];
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &t->begin) ||
        !json_uint(off->child->next, &t->end))
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': data_offsets is not an array of 2 non-negative integers",
                           path, name);
    if (t->end < t->begin)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path,
                           name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != numel * esize)
        return pissa__fail(PISSA_ERR_FORMAT,
                           "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu",
                           path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)(t->end - t->begin), fmt_shape_json(shape, sbuf, sizeof sbuf),
                           v[0]->valuestring, (unsigned long long)(numel * esize));
    t->ndim = ndim < PISSA_MAX_DIMS ? ndim : PISSA_MAX_DIMS;
    t->numel = (int64_t)numel;
    if (ndim > PISSA_MAX_DIMS) *wide = ndim;
    if (!(t->name = pissa__strdup(name))) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    return PISSA_OK;
}

static int cmp_offsets(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_names(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static pissa_status parse_header(pissa_st_file *f, const cJSON *root, uint64_t data_len) {
    const char *path = f->path;
    if (!cJSON_IsObject(root)) return pissa__fail(PISSA_ERR_FORMAT, "%s: header is not a JSON object", path);
    size_t n_children = (size_t)cJSON_GetArraySize(root);
    f->t = pissa__calloc(n_children, sizeof *f->t);
    if (!f->t) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *meta = NULL;
    int wide = 0;
    const char *wide_name = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if (meta) return pissa__fail(PISSA_ERR_FORMAT, "%s: __metadata__ appears twice", path);
            meta = c;
            PISSA_TRY(parse_metadata(f, c));
            continue;
        }
        int w = 0;
        PISSA_TRY(parse_entry(path, c, &f->t[f->count++], &w));
        if (w && !wide) wide = w, wide_name = c->string;
    }

    /* Rust's reader sorts by (BEGIN, END) and then requires each tensor to start where the last ended. */
    if (f->count > 1) qsort(f->t, f->count, sizeof *f->t, cmp_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < f->count; i++) {
        const st_tensor *t = &f->t[i];
        if (t->begin > pos)
            return pissa__fail(PISSA_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets [%llu, %llu] leave a hole: bytes [%llu, %llu) belong "
                               "to no tensor",
                               path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                               (unsigned long long)pos, (unsigned long long)t->begin);
        if (t->begin < pos)
            return pissa__fail(PISSA_ERR_FORMAT,
                               "%s: tensor '%s': data_offsets [%llu, %llu] overlap '%s', which ends at %llu",
                               path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                               f->t[i - 1].name, (unsigned long long)pos);
        pos = t->end;
    }
    if (pos != data_len)
        return pissa__fail(PISSA_ERR_FORMAT,
                           "%s: tensors cover %llu bytes of data but the file holds %llu after the header (%s)",
                           path, (unsigned long long)pos, (unsigned long long)data_len,
                           pos < data_len ? "trailing bytes" : "file truncated");

    f->by_name = pissa__alloc(f->count, sizeof *f->by_name);
    if (!f->by_name) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < f->count; i++) f->by_name[i] = &f->t[i];
    if (f->count > 1) qsort(f->by_name, f->count, sizeof *f->by_name, cmp_names);
    for (size_t i = 1; i < f->count; i++) /* cJSON keeps duplicate keys as separate members */
        if (strcmp(f->by_name[i]->name, f->by_name[i - 1]->name) == 0)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", path,
                               f->by_name[i]->name);

    if (wide)
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions; libpissa supports at most %d",
                           path, wide_name, wide, PISSA_MAX_DIMS);
    return PISSA_OK;
}

static pissa_status open_mapped(pissa_st_file *f) {
    const char *path = f->path;
    const unsigned char *base = f->map->base;
    size_t size = f->map->size;
    if (size < 8)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", path,
                           size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | base[i];
    if (n > PISSA_ST_MAX_HEADER)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes", path,
                           (unsigned long long)n, PISSA_ST_MAX_HEADER);
    if (n > size - 8)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                           (unsigned long long)n, size);
    const unsigned char *hdr = base + 8;
    size_t bad = utf8_check(hdr, (size_t)n);
    if (bad < n) return pissa__fail(PISSA_ERR_FORMAT, "%s: header is not valid UTF-8 (byte %zu)", path, bad);
    if ((bad = json_control_check(hdr, (size_t)n)) < n)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: header is not valid JSON (control character at byte %zu)", path, bad);
    if (n >= 3 && hdr[0] == 0xEF && hdr[1] == 0xBB && hdr[2] == 0xBF) /* cJSON would skip it; serde_json does not */
        return pissa__fail(PISSA_ERR_FORMAT, "%s: header is not valid JSON (starts with a byte order mark)", path);

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)hdr, (size_t)n, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - (const char *)hdr) : 0;
        return pissa__fail(PISSA_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu)", path, at);
    }
    size_t k = (size_t)(end - (const char *)hdr);
    while (k < n && json_ws(hdr[k])) k++;
    pissa_status st;
    if (k < n)
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: header is not valid JSON (trailing characters at byte %zu)", path, k);
    else
        st = parse_header(f, root, size - 8 - n);
    cJSON_Delete(root);
    f->buffer = hdr + n;
    return st;
}

pissa_status pissa_st_open(const char *path, pissa_st_file **out) {
    if (!path || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_open: NULL argument");
    *out = NULL;
    pissa_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = pissa__strdup(path))) {
        free(f);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    }
    pissa_status st = pissa__mapping_open(path, &f->map);
    if (st == PISSA_OK) st = open_mapped(f);
    if (st != PISSA_OK) {
        pissa_st_close(f);
        return st;
    }
    *out = f;
    return PISSA_OK;
}

void pissa_st_close(pissa_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->count; i++) free(f->t[i].name);
    for (size_t i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->t);
    free((void *)f->by_name);
    free(f->meta);
    pissa__mapping_release(f->map);
    free(f->path);
    free(f);
}

const char *pissa_st_path(const pissa_st_file *f) { return f ? f->path : NULL; }
size_t pissa_st_count(const pissa_st_file *f) { return f ? f->count : 0; }

static void fill_info(const pissa_st_file *f, const st_tensor *t, pissa_st_info *out) {
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    memcpy(out->shape, t->shape, sizeof t->shape);
    out->numel = t->numel;
    out->data = f->buffer + t->begin;
    out->nbytes = (size_t)(t->end - t->begin);
}

pissa_status pissa_st_info_at(const pissa_st_file *f, size_t i, pissa_st_info *out) {
    if (!f || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_info_at: NULL argument");
    if (i >= f->count)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: tensor index %zu out of range (%zu tensors)", f->path, i,
                           f->count);
    fill_info(f, &f->t[i], out);
    return PISSA_OK;
}

static const st_tensor *lookup(const pissa_st_file *f, const char *name) {
    size_t lo = 0, hi = f->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

static pissa_status find(const pissa_st_file *f, const char *name, const st_tensor **out) {
    if (!f || !name) return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors: NULL argument");
    if (!(*out = lookup(f, name)))
        return pissa__fail(PISSA_ERR_NOT_FOUND, "%s: no tensor named '%s'", f->path, name);
    return PISSA_OK;
}

pissa_status pissa_st_find(const pissa_st_file *f, const char *name, pissa_st_info *out) {
    const st_tensor *t;
    PISSA_TRY(find(f, name, &t));
    if (out) fill_info(f, t, out);
    return PISSA_OK;
}

const char *pissa_st_metadata(const pissa_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

static pissa_status check_float(const pissa_st_file *f, const st_tensor *t) {
    if (!pissa_dtype_is_float(t->dtype))
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; only F32, F16 and BF16 load as float32",
                           f->path, t->name, pissa_dtype_name(t->dtype));
    return PISSA_OK;
}

pissa_status pissa_st_load(const pissa_st_file *f, const char *name, pissa_tensor **out) {
    if (!out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_load: NULL output");
    *out = NULL;
    const st_tensor *t;
    PISSA_TRY(find(f, name, &t));
    PISSA_TRY(check_float(f, t));
    const unsigned char *src = f->buffer + t->begin;
    if (t->dtype == PISSA_F32 && (uintptr_t)src % sizeof(float) == 0)
        return pissa__tensor_mapped(f->map, (const float *)(const void *)src, t->ndim, t->shape, out);
    PISSA_TRY(pissa_tensor_create(t->ndim, t->shape, out));
    pissa_status st = pissa_convert_to_f32(pissa_tensor_data(*out), src, t->dtype, (size_t)t->numel);
    pissa__mapping_drop(f->map, src, (size_t)(t->end - t->begin)); /* copied: the pages go back */
    return st;
}

pissa_status pissa_st_read_f32(const pissa_st_file *f, const char *name, float *dst, int64_t n) {
    const st_tensor *t;
    PISSA_TRY(find(f, name, &t));
    PISSA_TRY(check_float(f, t));
    if (n != t->numel)
        return pissa__fail(PISSA_ERR_SHAPE, "%s: tensor '%s' has %lld elements, the destination %lld", f->path, t->name,
                           (long long)t->numel, (long long)n);
    if (n == 0) return PISSA_OK;
    if (!dst) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_read_f32: NULL destination");
    pissa_status st = pissa_convert_to_f32(dst, f->buffer + t->begin, t->dtype, (size_t)n);
    pissa__mapping_drop(f->map, f->buffer + t->begin, (size_t)(t->end - t->begin)); /* copied: the pages go back */
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* writer                                                                                         */

typedef enum { SRC_F32, SRC_RAW, SRC_FILL } wr_source;

typedef struct wr_tensor {
    char *name;
    pissa_dtype dtype;
    int ndim;
    int64_t shape[PISSA_MAX_DIMS];
    uint64_t nbytes;
    wr_source src;
    const void *data;          /* F32: float32 values; RAW: bytes in DTYPE */
    const pissa_mapping *map; /* the file mapping DATA lies in, whose pages are given back as they are written */
    pissa_st_fill_fn fill;
    void *user;
} wr_tensor;

struct pissa_st_writer {
    wr_tensor *t; /* (n) in order of addition */
    size_t n, cap;
    size_t *slots; /* open-addressing hash of names: index + 1 into t, 0 = empty; nslots a power of 2 */
    size_t nslots;
    char **meta; /* (2 * n_meta) key, value; "format" is entry 0 */
    size_t n_meta, meta_cap;
};

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Slot holding NAME, or the empty slot where it would go. */
static size_t *name_slot(const pissa_st_writer *w, const char *name) {
    size_t i = (size_t)hash_name(name) & (w->nslots - 1);
    while (w->slots[i] && strcmp(w->t[w->slots[i] - 1].name, name) != 0) i = (i + 1) & (w->nslots - 1);
    return &w->slots[i];
}

static pissa_status grow(pissa_st_writer *w) {
    if (w->n < w->cap) return PISSA_OK;
    size_t cap = w->cap ? 2 * w->cap : 16;
    wr_tensor *t = realloc(w->t, cap * sizeof *t);
    size_t *slots = pissa__calloc(2 * cap, sizeof *slots); /* load factor <= 1/2 */
    if (!t || !slots) {
        if (t) w->t = t;
        free(slots);
        return pissa__fail(PISSA_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->t = t;
    w->cap = cap;
    free(w->slots);
    w->slots = slots;
    w->nslots = 2 * cap;
    for (size_t i = 0; i < w->n; i++) *name_slot(w, w->t[i].name) = i + 1;
    return PISSA_OK;
}

pissa_status pissa_st_writer_create(pissa_st_writer **out) {
    if (!out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_writer_create: NULL output");
    *out = calloc(1, sizeof **out);
    if (!*out) return pissa__fail(PISSA_ERR_NOMEM, "safetensors writer: out of memory");
    pissa_status st = pissa_st_writer_set_metadata(*out, "format", "pt");
    if (st != PISSA_OK) {
        pissa_st_writer_free(*out);
        *out = NULL;
    }
    return st;
}

void pissa_st_writer_free(pissa_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->t);
    free(w->slots);
    free(w->meta);
    free(w);
}

static int utf8_ok(const char *s) { return utf8_check((const unsigned char *)s, strlen(s)) == strlen(s); }

pissa_status pissa_st_writer_set_metadata(pissa_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_writer_set_metadata: NULL argument");
    if (!utf8_ok(key) || !utf8_ok(value))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: metadata '%s' is not valid UTF-8", key);
    char *v = pissa__strdup(value);
    if (!v) return pissa__fail(PISSA_ERR_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[2 * i], key) == 0) {
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return PISSA_OK;
        }
    char *k = pissa__strdup(key);
    if (w->n_meta == w->meta_cap) {
        size_t cap = w->meta_cap ? 2 * w->meta_cap : 4;
        char **m = realloc(w->meta, 2 * cap * sizeof *m);
        if (m) w->meta = m, w->meta_cap = cap;
    }
    if (!k || w->n_meta == w->meta_cap) {
        free(k);
        free(v);
        return pissa__fail(PISSA_ERR_NOMEM, "safetensors writer: out of memory");
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return PISSA_OK;
}

static pissa_status add(pissa_st_writer *w, const char *name, pissa_dtype dtype, int ndim, const int64_t *shape,
                        wr_source src, const void *data, pissa_st_fill_fn fill, void *user) {
    if (!w || !name) return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: NULL argument");
    if (!*name || strcmp(name, "__metadata__") == 0 || !utf8_ok(name))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: invalid tensor name '%s'", name);
    if ((unsigned)dtype >= PISSA_DTYPE_COUNT)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: tensor '%s': invalid dtype %d", name,
                           (int)dtype);
    if (src != SRC_RAW && !pissa_dtype_is_float(dtype))
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "safetensors writer: tensor '%s': cannot store float32 values as %s",
                           name, pissa_dtype_name(dtype));
    if (ndim < 0 || ndim > PISSA_MAX_DIMS || (ndim > 0 && !shape))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: tensor '%s': ndim %d outside 0..%d", name, ndim,
                           PISSA_MAX_DIMS);
    int64_t numel = pissa__numel(ndim, shape);
    size_t esize = pissa_dtype_size(dtype);
    if (numel < 0 || (double)numel * (double)esize >= JSON_MAX_EXACT)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: tensor '%s': negative or oversized shape", name);
    if (numel > 0 && (src == SRC_FILL ? !fill : !data))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: tensor '%s': NULL data", name);
    PISSA_TRY(grow(w));
    size_t *slot = name_slot(w, name);
    if (*slot) return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: tensor '%s' added twice", name);
    wr_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = pissa__strdup(name))) return pissa__fail(PISSA_ERR_NOMEM, "safetensors writer: out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = (uint64_t)numel * esize;
    t->src = src;
    t->data = data;
    t->fill = fill;
    t->user = user;
    *slot = ++w->n;
    return PISSA_OK;
}

pissa_status pissa_st_writer_add_f32(pissa_st_writer *w, const char *name, pissa_dtype dtype, int ndim,
                                     const int64_t *shape, const float *data) {
    return add(w, name, dtype, ndim, shape, SRC_F32, data, NULL, NULL);
}
pissa_status pissa_st_writer_add_raw(pissa_st_writer *w, const char *name, pissa_dtype dtype, int ndim,
                                     const int64_t *shape, const void *data) {
    return add(w, name, dtype, ndim, shape, SRC_RAW, data, NULL, NULL);
}
pissa_status pissa_st_writer_add_fill(pissa_st_writer *w, const char *name, pissa_dtype dtype, int ndim,
                                      const int64_t *shape, pissa_st_fill_fn fill, void *user) {
    return add(w, name, dtype, ndim, shape, SRC_FILL, NULL, fill, user);
}

pissa_status pissa__st_writer_from_mapping(pissa_st_writer *w, const pissa_mapping *m) {
    if (!w || !w->n || w->t[w->n - 1].src == SRC_FILL)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: no tensor with data to attach a mapping to");
    w->t[w->n - 1].map = m;
    return PISSA_OK;
}

/* Position of each dtype in the reference's Dtype enum, whose derived order its writer sorts by
 * (descending): roughly "larger element first", with ties broken by enum position, e.g. BF16 before F16. */
static int rust_dtype_rank(pissa_dtype dt) {
    static const int rank[PISSA_DTYPE_COUNT] = {
        [PISSA_BOOL] = 0, [PISSA_U8] = 1,   [PISSA_I8] = 2,   [PISSA_F8_E5M2] = 3, [PISSA_F8_E4M3] = 4,
        [PISSA_I16] = 5,  [PISSA_U16] = 6,  [PISSA_F16] = 7,  [PISSA_BF16] = 8,    [PISSA_I32] = 9,
        [PISSA_U32] = 10, [PISSA_F32] = 11, [PISSA_F64] = 12, [PISSA_I64] = 13,    [PISSA_U64] = 14,
    };
    return rank[dt];
}

static int cmp_write_order(const void *a, const void *b) {
    const wr_tensor *x = *(const wr_tensor *const *)a, *y = *(const wr_tensor *const *)b;
    int rx = rust_dtype_rank(x->dtype), ry = rust_dtype_rank(y->dtype);
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_meta_keys(const void *a, const void *b) {
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* A JSON string as serde_json writes it: only '"', '\\' and control characters escaped; UTF-8 kept. */
static void sb_json_string(pissa__strbuf *b, const char *s) {
    pissa__sb_put(b, "\"", 1);
    for (const unsigned char *u = (const unsigned char *)s; *u; u++) {
        char esc[8];
        switch (*u) {
        case '"': pissa__sb_puts(b, "\\\""); break;
        case '\\': pissa__sb_puts(b, "\\\\"); break;
        case '\b': pissa__sb_puts(b, "\\b"); break;
        case '\f': pissa__sb_puts(b, "\\f"); break;
        case '\n': pissa__sb_puts(b, "\\n"); break;
        case '\r': pissa__sb_puts(b, "\\r"); break;
        case '\t': pissa__sb_puts(b, "\\t"); break;
        default:
            if (*u < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *u);
                pissa__sb_puts(b, esc);
            } else {
                pissa__sb_put(b, (const char *)u, 1);
            }
        }
    }
    pissa__sb_put(b, "\"", 1);
}

/* The header as the reference writer emits it (serde_json, compact): "__metadata__" first, then the
 * tensors in write order, each {"dtype":..,"shape":[..],"data_offsets":[BEGIN,END]}; spaces pad it to
 * a multiple of 8 so the data that follows is 8-byte aligned. */
static pissa_status build_header(const pissa_st_writer *w, wr_tensor *const *order, pissa__strbuf *b) {
    char num[64];
    pissa__sb_puts(b, "{\"__metadata__\":{");
    char ***keys = pissa__alloc(w->n_meta, sizeof *keys); /* sorted: Rust's HashMap order is random */
    if (!keys) return pissa__fail(PISSA_ERR_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->n_meta; i++) keys[i] = &w->meta[2 * i];
    qsort(keys, w->n_meta, sizeof *keys, cmp_meta_keys);
    for (size_t i = 0; i < w->n_meta; i++) {
        if (i) pissa__sb_puts(b, ",");
        sb_json_string(b, keys[i][0]);
        pissa__sb_puts(b, ":");
        sb_json_string(b, keys[i][1]);
    }
    free(keys);
    pissa__sb_puts(b, "}");
    uint64_t pos = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wr_tensor *t = order[i];
        pissa__sb_puts(b, ",");
        sb_json_string(b, t->name);
        pissa__sb_puts(b, ":{\"dtype\":");
        sb_json_string(b, pissa_dtype_name(t->dtype));
        pissa__sb_puts(b, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            pissa__sb_puts(b, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)pos,
                 (unsigned long long)(pos + t->nbytes));
        pissa__sb_puts(b, num);
        pos += t->nbytes;
    }
    pissa__sb_puts(b, "}");
    while (!b->oom && b->n % 8) pissa__sb_put(b, " ", 1);
    if (b->oom) return pissa__fail(PISSA_ERR_NOMEM, "safetensors writer: out of memory");
    if (b->n > PISSA_ST_MAX_HEADER)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "safetensors writer: header of %zu bytes exceeds the %llu-byte limit",
                           b->n, PISSA_ST_MAX_HEADER);
    return PISSA_OK;
}

enum { CHUNK = 16384 }; /* elements converted per write: bounded scratch memory for any tensor size */
/* Source bytes written between two give-backs of a mapped tensor's pages: the resident set of a copy from a mapping
 * grows by this much at most, whatever the tensor's size (a multiple of 4 and of every element size). */
#define MAPPED_SPAN ((size_t)4 << 20)

/* float32 values stored as DTYPE, converted a chunk at a time. */
static pissa_status write_converted(pissa_atomic_file *af, const float *src, size_t n, pissa_dtype dtype,
                                    unsigned char *scratch) {
    if (dtype == PISSA_F32) return pissa__atomic_write(af, src, n * sizeof(float));
    size_t esize = pissa_dtype_size(dtype);
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        PISSA_TRY(pissa_convert_from_f32(scratch, src + i, dtype, k));
        PISSA_TRY(pissa__atomic_write(af, scratch, k * esize));
    }
    return PISSA_OK;
}

/* RAW bytes or F32 values of T, a span at a time; a mapped source gives each span's pages back once written. */
static pissa_status write_data(pissa_atomic_file *af, const wr_tensor *t, size_t numel, unsigned char *scratch) {
    const unsigned char *src = t->data;
    size_t esize = t->src == SRC_RAW ? pissa_dtype_size(t->dtype) : sizeof(float), per = MAPPED_SPAN / esize;
    if (!t->map) per = numel; /* memory the caller owns: one pass */
    for (size_t i = 0; i < numel; i += per) {
        size_t k = numel - i < per ? numel - i : per;
        const unsigned char *p = src + i * esize;
        PISSA_TRY(t->src == SRC_RAW ? pissa__atomic_write(af, p, k * esize)
                                    : write_converted(af, (const float *)(const void *)p, k, t->dtype, scratch));
        pissa__mapping_drop(t->map, p, k * esize);
    }
    return PISSA_OK;
}

static pissa_status write_tensor(pissa_atomic_file *af, const char *path, const wr_tensor *t, unsigned char *scratch) {
    size_t numel = (size_t)(t->nbytes / pissa_dtype_size(t->dtype));
    if (t->src != SRC_FILL) return write_data(af, t, numel, scratch);
    float *vals = pissa__alloc(numel, sizeof *vals);
    if (!vals) return pissa__fail(PISSA_ERR_NOMEM, "%s: tensor '%s': cannot allocate %zu floats", path, t->name, numel);
    pissa_status st = t->fill(t->user, t->name, vals, (int64_t)numel);
    if (st != PISSA_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", pissa_last_error());
        free(vals);
        return pissa__fail(st, "%s: tensor '%s': fill callback failed with %s%s%s", path, t->name,
                           pissa_status_name(st), why[0] ? ": " : "", why);
    }
    st = write_converted(af, vals, numel, t->dtype, scratch);
    free(vals);
    return st;
}

pissa_status pissa_st_writer_write(pissa_st_writer *w, const char *path) {
    if (!w || !path) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_writer_write: NULL argument");
    wr_tensor **order = pissa__alloc(w->n, sizeof *order);
    unsigned char *scratch = pissa__alloc(CHUNK, sizeof(float));
    pissa__strbuf hdr = {0};
    pissa_status st = PISSA_OK;
    if (!order || !scratch) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    if (st == PISSA_OK) {
        for (size_t i = 0; i < w->n; i++) order[i] = &w->t[i];
        qsort(order, w->n, sizeof *order, cmp_write_order);
        st = build_header(w, order, &hdr);
    }
    pissa_atomic_file af;
    if (st == PISSA_OK) st = pissa__atomic_open(path, &af);
    if (st == PISSA_OK) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.n >> (8 * i));
        st = pissa__atomic_write(&af, len8, 8);
        if (st == PISSA_OK) st = pissa__atomic_write(&af, hdr.p, hdr.n);
        for (size_t i = 0; st == PISSA_OK && i < w->n; i++) st = write_tensor(&af, path, order[i], scratch);
        if (st == PISSA_OK) st = pissa__atomic_commit(&af);
        else pissa__atomic_abort(&af);
    }
    free(hdr.p);
    free(scratch);
    free(order);
    return st;
}

pissa_mapping *pissa__st_mapping(const pissa_st_file *f) { return f ? f->map : NULL; }
