/* JSON output as Python's json.dumps(obj, indent=2, sort_keys=True) writes it, so adapter_config.json
 * files match PEFT's byte for byte where the values agree. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void pissa__sb_put(pissa__strbuf *b, const char *s, size_t len) {
    if (b->oom) return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

void pissa__sb_puts(pissa__strbuf *b, const char *s) { pissa__sb_put(b, s, strlen(s)); }

static void indent(pissa__strbuf *b, int depth) {
    pissa__sb_put(b, "\n", 1);
    for (int i = 0; i < depth; i++) pissa__sb_put(b, "  ", 2);
}

/* Length of the valid UTF-8 sequence at U (1..4; at most N bytes), or 0 if it is not one: overlong forms,
 * surrogates and code points above U+10FFFF are invalid. *CP receives the code point. */
static int utf8_seq(const unsigned char *u, size_t n, unsigned *cp) {
    unsigned c = u[0];
    if (c < 0x80) return *cp = c, 1;
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
    if (!len || c > 0xF4 || (size_t)len > n) return 0;
    unsigned v = c & (len == 4 ? 0x07 : len == 3 ? 0x0F : 0x1F);
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (u[i] & 0x3F);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    return *cp = v, len;
}

int pissa__json_put_string(pissa__strbuf *b, const char *s, size_t n, int ensure_ascii, size_t *bad) {
    pissa__sb_put(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    char tmp[16];
    for (size_t i = 0; i < n;) {
        unsigned c = u[i], cp;
        int len = utf8_seq(u + i, n - i, &cp);
        if (!len) {
            if (bad) return *bad = i, 0;
            pissa__sb_put(b, (const char *)u + i, 1), i++;
            continue;
        }
        if (c == '"') pissa__sb_puts(b, "\\\"");
        else if (c == '\\') pissa__sb_puts(b, "\\\\");
        else if (c == '\n') pissa__sb_puts(b, "\\n");
        else if (c == '\r') pissa__sb_puts(b, "\\r");
        else if (c == '\t') pissa__sb_puts(b, "\\t");
        else if (c == '\b') pissa__sb_puts(b, "\\b");
        else if (c == '\f') pissa__sb_puts(b, "\\f");
        else if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) { /* Python escapes everything outside " ".."~" */
            if (cp >= 0x10000)
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
                         0xDC00 + ((cp - 0x10000) & 0x3FF));
            else snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            pissa__sb_puts(b, tmp);
        } else {
            pissa__sb_put(b, (const char *)u + i, (size_t)len);
        }
        i += (size_t)len;
    }
    pissa__sb_put(b, "\"", 1);
    return 1;
}

/* What dump() writes into, and the first string it could not write. */
typedef struct dump_ctx {
    pissa__strbuf b;
    const char *key;     /* the object key being written (for the message) */
    const char *bad_key; /* set at the first invalid string */
    size_t bad_off;
    unsigned bad_byte;
} dump_ctx;

/* As Python's json.dumps with ensure_ascii. A string that is not valid UTF-8 has no JSON form that reads back as the
 * same bytes: it is refused (the first one is recorded in D), never mangled into lone surrogates. */
static void put_string(dump_ctx *d, const char *s) {
    size_t off;
    if (!pissa__json_put_string(&d->b, s, strlen(s), 1, &off) && !d->bad_key) {
        d->bad_key = d->key ? d->key : "(value)";
        d->bad_off = off;
        d->bad_byte = (unsigned char)s[off];
    }
}

static void put_number(pissa__strbuf *b, double v) {
    char tmp[40];
    if (!isfinite(v)) snprintf(tmp, sizeof tmp, "%s", isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    else if (v == floor(v) && fabs(v) < 1e15) snprintf(tmp, sizeof tmp, "%.0f", v);
    else {
        for (int prec = 15; prec <= 17; prec++) { /* shortest text that reads back the same double */
            snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (strtod(tmp, NULL) == v) break;
        }
    }
    pissa__sb_puts(b, tmp);
}

static int cmp_keys(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static void dump(dump_ctx *d, const cJSON *it, int depth) {
    pissa__strbuf *b = &d->b;
    if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
        int obj = cJSON_IsObject(it), n = cJSON_GetArraySize(it);
        if (n == 0) {
            pissa__sb_puts(b, obj ? "{}" : "[]");
            return;
        }
        const cJSON **items = malloc(sizeof *items * (size_t)n);
        if (!items) {
            b->oom = 1;
            return;
        }
        int k = 0;
        for (const cJSON *c = it->child; c; c = c->next) items[k++] = c;
        if (obj) qsort(items, (size_t)n, sizeof *items, cmp_keys);
        pissa__sb_put(b, obj ? "{" : "[", 1);
        for (int i = 0; i < n; i++) {
            indent(b, depth + 1);
            if (obj) {
                d->key = items[i]->string;
                put_string(d, items[i]->string);
                pissa__sb_puts(b, ": ");
            }
            dump(d, items[i], depth + 1);
            if (i + 1 < n) pissa__sb_put(b, ",", 1);
        }
        indent(b, depth);
        pissa__sb_put(b, obj ? "}" : "]", 1);
        free(items);
    } else if (cJSON_IsString(it)) put_string(d, it->valuestring);
    else if (cJSON_IsNumber(it)) put_number(b, it->valuedouble);
    else if (cJSON_IsRaw(it)) pissa__sb_puts(b, it->valuestring); /* pre-formatted number text */
    else if (cJSON_IsTrue(it)) pissa__sb_puts(b, "true");
    else if (cJSON_IsFalse(it)) pissa__sb_puts(b, "false");
    else pissa__sb_puts(b, "null");
}

cJSON *pissa__json_float(double v) {
    pissa__strbuf b = {0};
    put_number(&b, v);
    if (!b.oom && b.p && !strpbrk(b.p, ".eEN")) pissa__sb_puts(&b, ".0"); /* Python writes float 0 as 0.0 */
    cJSON *item = b.oom || !b.p ? NULL : cJSON_CreateRaw(b.p);
    free(b.p);
    return item;
}

pissa_status pissa__json_dump_sorted(const cJSON *item, char **out) {
    dump_ctx d = {{0}, NULL, NULL, 0, 0};
    dump(&d, item, 0);
    pissa_status st = PISSA_OK;
    if (d.bad_key)
        st = pissa__fail(PISSA_ERR_INVALID_ARG, "JSON output: field '%s' is not valid UTF-8 (byte 0x%02x at offset %zu)",
                         d.bad_key, d.bad_byte, d.bad_off);
    else if (d.b.oom || !d.b.p) st = pissa__fail(PISSA_ERR_NOMEM, "JSON output: out of memory");
    if (st != PISSA_OK) {
        free(d.b.p);
        return st;
    }
    *out = d.b.p;
    return PISSA_OK;
}

pissa_status pissa__json_parse_object(const char *text, size_t len, const char *source, cJSON **out) {
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*out)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", source,
                           end ? (size_t)(end - text) : (size_t)0);
    size_t k = (size_t)(end - text);
    while (k < len && (text[k] == ' ' || text[k] == '\t' || text[k] == '\n' || text[k] == '\r')) k++;
    if (k < len) {
        cJSON_Delete(*out);
        *out = NULL;
        return pissa__fail(PISSA_ERR_FORMAT, "%s: not valid JSON (trailing characters at byte %zu)", source, k);
    }
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return pissa__fail(PISSA_ERR_FORMAT, "%s: top level is not a JSON object", source);
    }
    return PISSA_OK;
}
