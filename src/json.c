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

/* ensure_ascii: non-ASCII code points become \uXXXX (surrogate pairs above U+FFFF). */
static void put_string(pissa__strbuf *b, const char *s) {
    pissa__sb_put(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    char tmp[16];
    while (*u) {
        unsigned c = *u;
        if (c == '"') pissa__sb_puts(b, "\\\"");
        else if (c == '\\') pissa__sb_puts(b, "\\\\");
        else if (c == '\n') pissa__sb_puts(b, "\\n");
        else if (c == '\r') pissa__sb_puts(b, "\\r");
        else if (c == '\t') pissa__sb_puts(b, "\\t");
        else if (c == '\b') pissa__sb_puts(b, "\\b");
        else if (c == '\f') pissa__sb_puts(b, "\\f");
        else if (c < 0x20) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            pissa__sb_puts(b, tmp);
        } else if (c < 0x80) {
            pissa__sb_put(b, (const char *)u, 1);
        } else {
            int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            unsigned cp = c & (len == 4 ? 0x07 : len == 3 ? 0x0F : 0x1F);
            for (int i = 1; i < len && (u[i] & 0xC0) == 0x80; i++) cp = (cp << 6) | (u[i] & 0x3F);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            }
            pissa__sb_puts(b, tmp);
            for (int i = 1; i < len && u[1]; i++) u++;
        }
        u++;
    }
    pissa__sb_put(b, "\"", 1);
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

static void dump(pissa__strbuf *b, const cJSON *it, int depth) {
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
                put_string(b, items[i]->string);
                pissa__sb_puts(b, ": ");
            }
            dump(b, items[i], depth + 1);
            if (i + 1 < n) pissa__sb_put(b, ",", 1);
        }
        indent(b, depth);
        pissa__sb_put(b, obj ? "}" : "]", 1);
        free(items);
    } else if (cJSON_IsString(it)) put_string(b, it->valuestring);
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
    pissa__strbuf b = {0};
    dump(&b, item, 0);
    if (b.oom || !b.p) {
        free(b.p);
        return pissa__fail(PISSA_ERR_NOMEM, "JSON output: out of memory");
    }
    *out = b.p;
    return PISSA_OK;
}
