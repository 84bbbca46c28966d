/* Jinja values: the arena they live in, Python's rules for truth, equality, ordering, str() and repr(), json.dumps
 * as transformers' tojson calls it, and the JSON reader that turns a render's context into values. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

/* ---- arena ---- */

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jarena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (cap > SIZE_MAX - sizeof *b || (a->limit && a->total + cap + sizeof *b > a->limit)) {
            a->failed = 2;
            return NULL;
        }
        jarena_block *nb = malloc(sizeof *nb + cap);
        if (!nb) {
            a->failed = 1;
            return NULL;
        }
        nb->used = 0;
        nb->cap = cap;
        a->total += sizeof *nb + cap;
        if (b && b->cap - b->used > 1024 && n > 65536) { /* a big one-off: keep filling the current block */
            nb->next = b->next;
            b->next = nb;
            nb->used = n;
            return nb->data;
        }
        nb->next = b;
        a->head = b = nb;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void ja_free(jarena *a) {
    for (jarena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->total = 0;
}

/* ---- constructors ---- */

const jstr *js_new(jarena *a, const char *p, size_t n) {
    if (n > SIZE_MAX - sizeof(jstr) - 1) return NULL;
    jstr *s = ja_alloc(a, sizeof *s + n + 1);
    if (!s) return NULL;
    s->n = n;
    if (n) memcpy(s->p, p, n);
    s->p[n] = '\0';
    return s;
}

jv jv_str(const jstr *s) { return (jv){.t = JV_STR, .u.s = s}; }
jv jv_int(int64_t i) { return (jv){.t = JV_INT, .u.i = i}; }
jv jv_float(double f) { return (jv){.t = JV_FLOAT, .u.f = f}; }
jv jv_bool(int b) { return (jv){.t = JV_BOOL, .u.i = b != 0}; }
jv jv_none(void) { return (jv){.t = JV_NONE}; }
jv jv_undef(const jstr *hint) { return (jv){.t = JV_UNDEF, .u.s = hint}; }

jlist *jl_new(jarena *a, size_t cap) {
    jlist *l = ja_alloc(a, sizeof *l);
    if (!l) return NULL;
    l->n = 0;
    l->cap = cap ? cap : 4;
    l->tuple = 0;
    l->v = ja_alloc(a, l->cap * sizeof *l->v);
    return l->v ? l : NULL;
}

int jl_push(jarena *a, jlist *l, jv x) {
    if (l->n == l->cap) {
        jv *v = ja_alloc(a, 2 * l->cap * sizeof *v);
        if (!v) return 0;
        memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap *= 2;
    }
    l->v[l->n++] = x;
    return 1;
}

jdict *jd_new(jarena *a) {
    jdict *d = ja_alloc(a, sizeof *d);
    if (!d) return NULL;
    d->n = 0;
    d->cap = 4;
    d->idx = NULL;
    d->idx_cap = 0;
    d->k = ja_alloc(a, d->cap * sizeof *d->k);
    d->v = ja_alloc(a, d->cap * sizeof *d->v);
    return d->k && d->v ? d : NULL;
}

/* FNV-1a over bytes. */
static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211u;
    return h;
}

/* A hash that agrees with jv_equal: 1, 1.0 and True hash alike, as in Python. Unhashable values (lists, dicts)
 * all hash to 0; they never equal a stored key that is hashable, and the lookup compares anyway. */
static uint64_t hash_value(jv k) {
    switch (k.t) {
    case JV_STR: return hash_bytes(k.u.s->p, k.u.s->n);
    case JV_BOOL: case JV_INT: return (uint64_t)k.u.i * 0x9E3779B97F4A7C15u;
    case JV_FLOAT:
        if (k.u.f == floor(k.u.f) && fabs(k.u.f) < 9.2e18) return (uint64_t)(int64_t)k.u.f * 0x9E3779B97F4A7C15u;
        return hash_bytes((const char *)&k.u.f, sizeof k.u.f);
    case JV_NONE: return 7;
    case JV_LIST:
        if (k.u.l->tuple) {
            uint64_t h = 31;
            for (size_t i = 0; i < k.u.l->n; i++) h = h * 1000003u ^ hash_value(k.u.l->v[i]);
            return h;
        }
        return 0;
    default: return 0;
    }
}

/* Dicts of more than 8 keys get an open-addressing index of positions + 1 (0 = empty), at most half full, so
 * that a big context object or a dict built in a loop is not quadratic. */
static jv *lookup(const jdict *d, jv key, uint64_t h, const char *s, size_t sn) {
    if (!d->idx) {
        for (size_t i = 0; i < d->n; i++)
            if (s ? d->k[i].t == JV_STR && d->k[i].u.s->n == sn && memcmp(d->k[i].u.s->p, s, sn) == 0
                  : jv_equal(d->k[i], key, NULL))
                return &d->v[i];
        return NULL;
    }
    for (size_t j = h & (d->idx_cap - 1);; j = (j + 1) & (d->idx_cap - 1)) {
        uint32_t e = d->idx[j];
        if (!e) return NULL;
        jv k = d->k[e - 1];
        if (s ? k.t == JV_STR && k.u.s->n == sn && memcmp(k.u.s->p, s, sn) == 0 : jv_equal(k, key, NULL))
            return &d->v[e - 1];
    }
}

jv *jd_get(const jdict *d, jv key) { return lookup(d, key, d->idx ? hash_value(key) : 0, NULL, 0); }

jv *jd_get_str(const jdict *d, const char *key, size_t n) {
    return lookup(d, jv_none(), d->idx ? hash_bytes(key, n) : 0, key, n);
}

static int reindex(jarena *a, jdict *d, size_t cap) {
    uint32_t *idx = ja_alloc(a, cap * sizeof *idx);
    if (!idx || cap > UINT32_MAX) return 0;
    memset(idx, 0, cap * sizeof *idx);
    for (size_t i = 0; i < d->n; i++) {
        size_t j = hash_value(d->k[i]) & (cap - 1);
        while (idx[j]) j = (j + 1) & (cap - 1);
        idx[j] = (uint32_t)(i + 1);
    }
    d->idx = idx;
    d->idx_cap = cap;
    return 1;
}

int jd_set(jarena *a, jdict *d, jv key, jv val) {
    jv *slot = jd_get(d, key);
    if (slot) { /* Python keeps the first key and its position */
        *slot = val;
        return 1;
    }
    if (d->n == d->cap) {
        jv *k = ja_alloc(a, 2 * d->cap * sizeof *k), *v = ja_alloc(a, 2 * d->cap * sizeof *v);
        if (!k || !v) return 0;
        memcpy(k, d->k, d->n * sizeof *k);
        memcpy(v, d->v, d->n * sizeof *v);
        d->k = k;
        d->v = v;
        d->cap *= 2;
    }
    d->k[d->n] = key;
    d->v[d->n++] = val;
    if (d->n > 8 && 2 * d->n > d->idx_cap) return reindex(a, d, d->idx_cap ? 2 * d->idx_cap : 32);
    if (d->idx) {
        size_t j = hash_value(key) & (d->idx_cap - 1);
        while (d->idx[j]) j = (j + 1) & (d->idx_cap - 1);
        d->idx[j] = (uint32_t)d->n;
    }
    return 1;
}

/* ---- Python semantics ---- */

const char *jv_type_name(jv x) {
    switch (x.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return x.u.l->tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_BUILTIN: case JV_METHOD: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    }
    return "object";
}

int jv_truthy(jv x) {
    switch (x.t) {
    case JV_UNDEF: case JV_NONE: return 0;
    case JV_BOOL: case JV_INT: return x.u.i != 0;
    case JV_FLOAT: return x.u.f != 0.0;
    case JV_STR: return x.u.s->n != 0;
    case JV_LIST: return x.u.l->n != 0;
    case JV_DICT: return x.u.d->n != 0;
    default: return 1;
    }
}

int jv_is_number(jv x) { return x.t == JV_BOOL || x.t == JV_INT || x.t == JV_FLOAT; }
double jv_num(jv x) { return x.t == JV_FLOAT ? x.u.f : (double)x.u.i; }

/* Python ==. STEPS (may be NULL) counts the elements visited, for the step limit. */
int jv_equal(jv a, jv b, uint64_t *steps) {
    if (steps) (*steps)++;
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) return a.u.i == b.u.i;
        return jv_num(a) == jv_num(b);
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case JV_UNDEF: case JV_NONE: return 1;
    case JV_STR:
        if (steps) *steps += a.u.s->n / 64;
        return a.u.s->n == b.u.s->n && memcmp(a.u.s->p, b.u.s->p, a.u.s->n) == 0;
    case JV_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i], steps)) return 0;
        return 1;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *v = jd_get(b.u.d, a.u.d->k[i]);
            if (!v || !jv_equal(a.u.d->v[i], *v, steps)) return 0;
        }
        return 1;
    case JV_NS: return a.u.d == b.u.d;
    case JV_LOOP: return a.u.loop == b.u.loop;
    case JV_MACRO: return a.u.m == b.u.m;
    case JV_BUILTIN: return a.u.i == b.u.i;
    case JV_METHOD: return a.u.bm == b.u.bm;
    default: return 0;
    }
}

/* Python's <, as a three-way result in *RES; 0 when the types do not order (a TypeError in Python). */
int jv_compare(jv a, jv b, int *res) {
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) *res = (a.u.i > b.u.i) - (a.u.i < b.u.i);
        else {
            double x = jv_num(a), y = jv_num(b);
            *res = (x > y) - (x < y);
        }
        return 1;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s->n < b.u.s->n ? a.u.s->n : b.u.s->n;
        int c = memcmp(a.u.s->p, b.u.s->p, n); /* UTF-8 byte order is code point order */
        *res = c ? (c > 0) - (c < 0) : (a.u.s->n > b.u.s->n) - (a.u.s->n < b.u.s->n);
        return 1;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && a.u.l->tuple == b.u.l->tuple) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_equal(a.u.l->v[i], b.u.l->v[i], NULL)) continue;
            return jv_compare(a.u.l->v[i], b.u.l->v[i], res);
        }
        *res = (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
        return 1;
    }
    return 0;
}

/* Python's repr(float): the shortest digits that read back, fixed notation for exponents in [-4, 16). */
void py_float_repr(double v, char out[40]) {
    if (isnan(v)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(v)) {
        strcpy(out, v > 0 ? "inf" : "-inf");
        return;
    }
    char digits[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(digits, sizeof digits, "%.*e", prec - 1, v);
        if (strtod(digits, NULL) == v) break;
    }
    /* digits is [-]d[.ddd]e[+-]xx: take the mantissa digits and the exponent */
    char mant[24];
    int nm = 0, neg = digits[0] == '-';
    const char *p = digits + neg;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') mant[nm++] = *p;
    mant[nm] = '\0';
    int exp = atoi(p + 1);
    while (nm > 1 && mant[nm - 1] == '0') mant[--nm] = '\0';
    char *o = out;
    if (neg) *o++ = '-';
    if (exp >= 16 || exp < -4) {
        *o++ = mant[0];
        if (nm > 1) {
            *o++ = '.';
            memcpy(o, mant + 1, (size_t)nm - 1);
            o += nm - 1;
        }
        sprintf(o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        return;
    }
    if (exp < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -exp - 1; i++) *o++ = '0';
        memcpy(o, mant, (size_t)nm);
        o += nm;
    } else {
        for (int i = 0; i <= exp; i++) *o++ = i < nm ? mant[i] : '0';
        *o++ = '.';
        if (nm > exp + 1) {
            memcpy(o, mant + exp + 1, (size_t)(nm - exp - 1));
            o += nm - exp - 1;
        } else {
            *o++ = '0';
        }
    }
    *o = '\0';
}

static void put_int(pissa__strbuf *b, int64_t i) {
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%lld", (long long)i);
    pissa__sb_puts(b, tmp);
}

/* Python's repr() of a str: single quotes unless the text holds ' and no ". */
static void repr_str(pissa__strbuf *b, const jstr *s) {
    char q = memchr(s->p, '\'', s->n) && !memchr(s->p, '"', s->n) ? '"' : '\'';
    pissa__sb_put(b, &q, 1);
    for (size_t i = 0; i < s->n; i++) {
        unsigned char c = (unsigned char)s->p[i];
        char tmp[8];
        if (c == (unsigned char)q || c == '\\') {
            pissa__sb_put(b, "\\", 1);
            pissa__sb_put(b, (const char *)&c, 1);
        } else if (c == '\n') pissa__sb_puts(b, "\\n");
        else if (c == '\r') pissa__sb_puts(b, "\\r");
        else if (c == '\t') pissa__sb_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7F) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            pissa__sb_puts(b, tmp);
        } else pissa__sb_put(b, (const char *)&c, 1);
    }
    pissa__sb_put(b, &q, 1);
}

static void repr_rec(pissa__strbuf *b, jv x, int depth);

/* str(): what {{ x }} prints. */
void jv_to_text(pissa__strbuf *b, jv x) {
    switch (x.t) {
    case JV_UNDEF: return;
    case JV_STR: pissa__sb_put(b, x.u.s->p, x.u.s->n); return;
    default: repr_rec(b, x, 0);
    }
}

static void repr_rec(pissa__strbuf *b, jv x, int depth) {
    char tmp[40];
    if (depth > 64) { /* only reachable through a namespace that holds itself */
        pissa__sb_puts(b, "...");
        return;
    }
    switch (x.t) {
    case JV_UNDEF:
        if (depth > 0) pissa__sb_puts(b, "Undefined"); /* repr() inside a list; str() of it alone is "" */
        return;
    case JV_NONE: pissa__sb_puts(b, "None"); return;
    case JV_BOOL: pissa__sb_puts(b, x.u.i ? "True" : "False"); return;
    case JV_INT: put_int(b, x.u.i); return;
    case JV_FLOAT: py_float_repr(x.u.f, tmp); pissa__sb_puts(b, tmp); return;
    case JV_STR:
        if (depth == 0) pissa__sb_put(b, x.u.s->p, x.u.s->n);
        else repr_str(b, x.u.s);
        return;
    case JV_LIST:
        pissa__sb_puts(b, x.u.l->tuple ? "(" : "[");
        for (size_t i = 0; i < x.u.l->n; i++) {
            if (i) pissa__sb_puts(b, ", ");
            repr_rec(b, x.u.l->v[i], depth + 1);
        }
        pissa__sb_puts(b, x.u.l->tuple && x.u.l->n == 1 ? ",)" : x.u.l->tuple ? ")" : "]");
        return;
    case JV_DICT: case JV_NS:
        pissa__sb_puts(b, x.t == JV_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < x.u.d->n; i++) {
            if (i) pissa__sb_puts(b, ", ");
            repr_rec(b, x.u.d->k[i], depth + 1);
            pissa__sb_puts(b, ": ");
            repr_rec(b, x.u.d->v[i], depth + 1);
        }
        pissa__sb_puts(b, x.t == JV_NS ? "}>" : "}");
        return;
    case JV_MACRO: pissa__sb_puts(b, "<Macro>"); return;
    case JV_LOOP: pissa__sb_puts(b, "<LoopContext>"); return;
    default: pissa__sb_puts(b, "<built-in function>"); return;
    }
}

/* ---- tojson: json.dumps(x, ensure_ascii=False, indent=INDENT, separators=None, sort_keys=False) ---- */

/* A JSON string; with ENSURE_ASCII, code points above 0x7F as \uXXXX (surrogate pairs above U+FFFF). */
static void json_str(pissa__strbuf *b, const jstr *s, int ensure_ascii) {
    pissa__json_put_string(b, s->p, s->n, ensure_ascii, NULL);
}

static void newline_indent(pissa__strbuf *b, int indent, int depth) {
    pissa__sb_put(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++) pissa__sb_put(b, " ", 1);
}

/* Returns NULL, or the type name Python's json refuses ("Undefined", "Namespace", ...). */
const char *jv_tojson(pissa__strbuf *b, jv x, const jjson_opts *o, int depth) {
    int indent = o->indent;
    char tmp[40];
    if (depth > PISSA__JINJA_MAX_NESTING) return "a structure nested this deep";
    switch (x.t) {
    case JV_NONE: pissa__sb_puts(b, "null"); return NULL;
    case JV_BOOL: pissa__sb_puts(b, x.u.i ? "true" : "false"); return NULL;
    case JV_INT: put_int(b, x.u.i); return NULL;
    case JV_FLOAT:
        if (isnan(x.u.f)) pissa__sb_puts(b, "NaN");
        else if (isinf(x.u.f)) pissa__sb_puts(b, x.u.f > 0 ? "Infinity" : "-Infinity");
        else {
            py_float_repr(x.u.f, tmp);
            pissa__sb_puts(b, tmp);
        }
        return NULL;
    case JV_STR: json_str(b, x.u.s, o->ensure_ascii); return NULL;
    case JV_LIST:
        if (x.u.l->n == 0) {
            pissa__sb_puts(b, "[]");
            return NULL;
        }
        pissa__sb_puts(b, "[");
        for (size_t i = 0; i < x.u.l->n; i++) {
            if (i) pissa__sb_puts(b, o->item_sep);
            if (indent >= 0) newline_indent(b, indent, depth + 1);
            const char *bad = jv_tojson(b, x.u.l->v[i], o, depth + 1);
            if (bad) return bad;
        }
        if (indent >= 0) newline_indent(b, indent, depth);
        pissa__sb_puts(b, "]");
        return NULL;
    case JV_DICT: {
        const jdict *d = x.u.d;
        if (d->n == 0) {
            pissa__sb_puts(b, "{}");
            return NULL;
        }
        size_t *order = malloc(d->n * sizeof *order);
        if (!order) {
            b->oom = 1;
            return NULL;
        }
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) /* insertion sort: dicts in templates are small; keys compare as Python orders them */
            for (size_t i = 1; i < d->n; i++)
                for (size_t k = i; k > 0; k--) {
                    int r;
                    if (!jv_compare(d->k[order[k - 1]], d->k[order[k]], &r)) {
                        free(order);
                        return "a dict whose keys do not sort";
                    }
                    if (r <= 0) break;
                    size_t t = order[k];
                    order[k] = order[k - 1];
                    order[k - 1] = t;
                }
        const char *bad = NULL;
        pissa__sb_puts(b, "{");
        for (size_t j = 0; j < d->n && !bad; j++) {
            size_t i = order[j];
            if (j) pissa__sb_puts(b, o->item_sep);
            if (indent >= 0) newline_indent(b, indent, depth + 1);
            jv k = d->k[i];
            /* json.dumps turns int, float, bool and None keys into strings; others are a TypeError */
            if (k.t == JV_STR) json_str(b, k.u.s, o->ensure_ascii);
            else if (k.t == JV_INT || k.t == JV_FLOAT || k.t == JV_BOOL || k.t == JV_NONE) {
                pissa__sb_puts(b, "\"");
                jv_tojson(b, k, o, 0);
                pissa__sb_puts(b, "\"");
            } else {
                bad = "a dict key of that type";
                break;
            }
            pissa__sb_puts(b, o->key_sep);
            bad = jv_tojson(b, d->v[i], o, depth + 1);
        }
        free(order);
        if (bad) return bad;
        if (indent >= 0) newline_indent(b, indent, depth);
        pissa__sb_puts(b, "}");
        return NULL;
    }
    default: return jv_type_name(x);
    }
}

/* ---- the context: JSON text read as Python's json.loads reads it ---- */

typedef struct jreader {
    const char *s;
    size_t n, pos;
    jarena *a;
    int depth;
    char err[160];
} jreader;

static int jr_fail(jreader *r, const char *what) {
    snprintf(r->err, sizeof r->err, "%s at byte %zu", what, r->pos);
    return 0;
}

static void jr_ws(jreader *r) {
    while (r->pos < r->n && (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' || r->s[r->pos] == '\n' ||
                             r->s[r->pos] == '\r'))
        r->pos++;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char h = p[i];
        int d = h >= '0' && h <= '9'   ? h - '0'
                : h >= 'a' && h <= 'f' ? h - 'a' + 10
                : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                       : -1;
        if (d < 0) return 0;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 1;
}

static void put_utf8(pissa__strbuf *b, unsigned cp) {
    char u[4];
    int k = 0;
    if (cp < 0x80) u[k++] = (char)cp;
    else if (cp < 0x800) {
        u[k++] = (char)(0xC0 | cp >> 6);
        u[k++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        u[k++] = (char)(0xE0 | cp >> 12);
        u[k++] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[k++] = (char)(0x80 | (cp & 0x3F));
    } else {
        u[k++] = (char)(0xF0 | cp >> 18);
        u[k++] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[k++] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[k++] = (char)(0x80 | (cp & 0x3F));
    }
    pissa__sb_put(b, u, (size_t)k);
}

static int jr_string(jreader *r, const jstr **out) {
    r->pos++; /* the opening quote */
    pissa__strbuf b = {0};
    pissa__sb_put(&b, "", 0);
    while (r->pos < r->n && r->s[r->pos] != '"') {
        char c = r->s[r->pos];
        if ((unsigned char)c < 0x20) {
            free(b.p);
            return jr_fail(r, "control character in a string");
        }
        if (c != '\\') {
            size_t k = r->pos;
            while (k < r->n && r->s[k] != '"' && r->s[k] != '\\' && (unsigned char)r->s[k] >= 0x20) k++;
            pissa__sb_put(&b, r->s + r->pos, k - r->pos);
            r->pos = k;
            continue;
        }
        if (r->pos + 1 >= r->n) break;
        char e = r->s[++r->pos];
        r->pos++;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (simple && e) {
            static const char repl[] = "\"\\/\b\f\n\r\t";
            pissa__sb_put(&b, &repl[simple - "\"\\/bfnrt"], 1);
        } else if (e == 'u') {
            unsigned cp, lo;
            if (r->pos + 4 > r->n || !hex4(r->s + r->pos, &cp)) {
                free(b.p);
                return jr_fail(r, "bad \\u escape");
            }
            r->pos += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && r->pos + 6 <= r->n && r->s[r->pos] == '\\' &&
                r->s[r->pos + 1] == 'u' && hex4(r->s + r->pos + 2, &lo) && lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                r->pos += 6;
            }
            put_utf8(&b, cp); /* a lone surrogate is written as its 3-byte form, as Python keeps it */
        } else {
            free(b.p);
            return jr_fail(r, "bad escape in a string");
        }
    }
    if (r->pos >= r->n) {
        free(b.p);
        return jr_fail(r, "unterminated string");
    }
    r->pos++;
    *out = b.oom ? NULL : js_new(r->a, b.p, b.n);
    free(b.p);
    return *out ? 1 : jr_fail(r, "out of memory");
}

static int jr_value(jreader *r, jv *out) {
    jr_ws(r);
    if (r->pos >= r->n) return jr_fail(r, "unexpected end of JSON");
    if (++r->depth > 512) return jr_fail(r, "JSON nested deeper than 512");
    char c = r->s[r->pos];
    int ok = 1;
    if (c == '{') {
        jdict *d = jd_new(r->a);
        if (!d) return jr_fail(r, "out of memory");
        r->pos++;
        jr_ws(r);
        if (r->pos < r->n && r->s[r->pos] == '}') r->pos++;
        else
            for (;;) {
                jr_ws(r);
                if (r->pos >= r->n || r->s[r->pos] != '"') return jr_fail(r, "expected a string key");
                const jstr *k;
                jv v;
                if (!jr_string(r, &k)) return 0;
                jr_ws(r);
                if (r->pos >= r->n || r->s[r->pos] != ':') return jr_fail(r, "expected ':'");
                r->pos++;
                if (!jr_value(r, &v)) return 0;
                if (!jd_set(r->a, d, jv_str(k), v)) return jr_fail(r, "out of memory");
                jr_ws(r);
                if (r->pos < r->n && r->s[r->pos] == ',') {
                    r->pos++;
                    continue;
                }
                if (r->pos < r->n && r->s[r->pos] == '}') {
                    r->pos++;
                    break;
                }
                return jr_fail(r, "expected ',' or '}'");
            }
        *out = (jv){.t = JV_DICT, .u.d = d};
    } else if (c == '[') {
        jlist *l = jl_new(r->a, 4);
        if (!l) return jr_fail(r, "out of memory");
        r->pos++;
        jr_ws(r);
        if (r->pos < r->n && r->s[r->pos] == ']') r->pos++;
        else
            for (;;) {
                jv v;
                if (!jr_value(r, &v)) return 0;
                if (!jl_push(r->a, l, v)) return jr_fail(r, "out of memory");
                jr_ws(r);
                if (r->pos < r->n && r->s[r->pos] == ',') {
                    r->pos++;
                    continue;
                }
                if (r->pos < r->n && r->s[r->pos] == ']') {
                    r->pos++;
                    break;
                }
                return jr_fail(r, "expected ',' or ']'");
            }
        *out = (jv){.t = JV_LIST, .u.l = l};
    } else if (c == '"') {
        const jstr *s;
        if (!jr_string(r, &s)) return 0;
        *out = jv_str(s);
    } else if (r->n - r->pos >= 4 && !memcmp(r->s + r->pos, "true", 4)) {
        *out = jv_bool(1);
        r->pos += 4;
    } else if (r->n - r->pos >= 5 && !memcmp(r->s + r->pos, "false", 5)) {
        *out = jv_bool(0);
        r->pos += 5;
    } else if (r->n - r->pos >= 4 && !memcmp(r->s + r->pos, "null", 4)) {
        *out = jv_none();
        r->pos += 4;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        size_t p = r->pos + (c == '-'), q = p;
        while (q < r->n && r->s[q] >= '0' && r->s[q] <= '9') q++;
        if (q == p || (r->s[p] == '0' && q > p + 1)) return jr_fail(r, "bad number");
        int is_float = 0;
        if (q < r->n && r->s[q] == '.') {
            size_t k = ++q;
            while (q < r->n && r->s[q] >= '0' && r->s[q] <= '9') q++;
            if (q == k) return jr_fail(r, "bad number");
            is_float = 1;
        }
        if (q < r->n && (r->s[q] == 'e' || r->s[q] == 'E')) {
            q++;
            if (q < r->n && (r->s[q] == '+' || r->s[q] == '-')) q++;
            size_t k = q;
            while (q < r->n && r->s[q] >= '0' && r->s[q] <= '9') q++;
            if (q == k) return jr_fail(r, "bad number");
            is_float = 1;
        }
        char buf[64];
        size_t len = q - r->pos;
        if (len >= sizeof buf) { /* long digit strings: Python keeps them exactly; a float is the best here */
            is_float = 1;
            len = sizeof buf - 1;
        }
        memcpy(buf, r->s + r->pos, len);
        buf[len] = '\0';
        if (!is_float) {
            errno = 0;
            long long v = strtoll(buf, NULL, 10);
            if (errno == ERANGE) is_float = 1; /* beyond int64: kept as a float (Python keeps the exact integer) */
            else *out = jv_int(v);
        }
        if (is_float) *out = jv_float(strtod(buf, NULL));
        r->pos = q;
    } else {
        ok = jr_fail(r, "unexpected character");
    }
    r->depth--;
    return ok;
}

int jv_from_json(jarena *a, const char *text, jv *out, char err[160]) {
    jreader r = {.s = text, .n = strlen(text), .a = a};
    if (!jr_value(&r, out)) {
        memcpy(err, r.err, sizeof r.err);
        return 0;
    }
    jr_ws(&r);
    if (r.pos != r.n) {
        jr_fail(&r, "trailing characters after the JSON value");
        memcpy(err, r.err, sizeof r.err);
        return 0;
    }
    return 1;
}

int jv_from_cjson(jarena *a, const cJSON *c, jv *out, int depth) {
    if (depth > 512) return 0;
    if (cJSON_IsObject(c)) {
        jdict *d = jd_new(a);
        if (!d) return 0;
        for (const cJSON *it = c->child; it; it = it->next) {
            jv v;
            const jstr *k = js_new(a, it->string ? it->string : "", it->string ? strlen(it->string) : 0);
            if (!k || !jv_from_cjson(a, it, &v, depth + 1) || !jd_set(a, d, jv_str(k), v)) return 0;
        }
        *out = (jv){.t = JV_DICT, .u.d = d};
    } else if (cJSON_IsArray(c)) {
        jlist *l = jl_new(a, 4);
        if (!l) return 0;
        for (const cJSON *it = c->child; it; it = it->next) {
            jv v;
            if (!jv_from_cjson(a, it, &v, depth + 1) || !jl_push(a, l, v)) return 0;
        }
        *out = (jv){.t = JV_LIST, .u.l = l};
    } else if (cJSON_IsString(c)) {
        const jstr *s = js_new(a, c->valuestring, strlen(c->valuestring));
        if (!s) return 0;
        *out = jv_str(s);
    } else if (cJSON_IsNumber(c)) {
        double v = c->valuedouble;
        *out = v == floor(v) && fabs(v) < 9007199254740992.0 ? jv_int((int64_t)v) : jv_float(v);
    } else if (cJSON_IsBool(c)) {
        *out = jv_bool(cJSON_IsTrue(c));
    } else {
        *out = jv_none();
    }
    return 1;
}
