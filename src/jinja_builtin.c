/* Jinja builtins: operators, globals (range, namespace, dict, raise_exception, strftime_now), tests and filters,
 * each following its jinja2 or Python definition. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jinja_internal.h"

#define NOMEM() pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory")

/* ---- operators ---- */

static pissa_status bad_operands(jctx *c, const jnode *at, int op, jv x, jv y) {
    static const char *sym[] = {"", "+", "-", "*", "/", "//", "%", "**"};
    if (x.t == JV_UNDEF) return jx_undefined_error(c, at, x);
    if (y.t == JV_UNDEF) return jx_undefined_error(c, at, y);
    if (op == OP_ADD && x.t == JV_STR)
        return jx_error(c, at, "can only concatenate str (not \"%s\") to str", jv_type_name(y));
    return jx_error(c, at, "unsupported operand type(s) for %s: '%s' and '%s'", op <= OP_POW ? sym[op] : "?",
                    jv_type_name(x), jv_type_name(y));
}

static pissa_status repeat(jctx *c, const jnode *at, jv seq, int64_t times, jv *out) {
    if (times < 0) times = 0;
    size_t unit = seq.t == JV_STR ? seq.u.s->n : seq.u.l->n;
    if (unit && (uint64_t)times > (c->lim->max_memory / 16) / unit)
        return jx_error(c, at, "the render needed more than %zu bytes of memory (the limit)", c->lim->max_memory);
    PISSA_TRY(jx_step(c, at, (uint64_t)times));
    if (seq.t == JV_STR) {
        size_t n = unit * (size_t)times;
        jstr *s = ja_alloc(c->a, sizeof *s + n + 1);
        if (!s) return jx_oom(c, at);
        s->n = n;
        for (int64_t i = 0; i < times; i++) memcpy(s->p + (size_t)i * unit, seq.u.s->p, unit);
        s->p[n] = '\0';
        *out = jv_str(s);
        return PISSA_OK;
    }
    jlist *l = jl_new(c->a, unit * (size_t)times);
    if (!l) return jx_oom(c, at);
    l->tuple = seq.u.l->tuple;
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < unit; k++) l->v[l->n++] = seq.u.l->v[k];
    *out = jv_list(l);
    return PISSA_OK;
}

pissa_status jb_binop(jctx *c, const jnode *at, int op, jv x, jv y, jv *out) {
    if (x.t == JV_UNDEF || y.t == JV_UNDEF) return bad_operands(c, at, op, x, y);
    int ints = (x.t == JV_INT || x.t == JV_BOOL) && (y.t == JV_INT || y.t == JV_BOOL);
    if (jv_is_number(x) && jv_is_number(y)) {
        int64_t a = x.u.i, b = y.u.i, r;
        double f = jv_num(x), g = jv_num(y);
        switch (op) {
        case OP_ADD:
            if (!ints) *out = jv_float(f + g);
            else if (__builtin_add_overflow(a, b, &r)) goto overflow;
            else *out = jv_int(r);
            return PISSA_OK;
        case OP_SUB:
            if (!ints) *out = jv_float(f - g);
            else if (__builtin_sub_overflow(a, b, &r)) goto overflow;
            else *out = jv_int(r);
            return PISSA_OK;
        case OP_MUL:
            if (!ints) *out = jv_float(f * g);
            else if (__builtin_mul_overflow(a, b, &r)) goto overflow;
            else *out = jv_int(r);
            return PISSA_OK;
        case OP_DIV:
            if (g == 0) return jx_error(c, at, "division by zero");
            *out = jv_float(f / g);
            return PISSA_OK;
        case OP_FLOORDIV: case OP_MOD:
            if (ints ? b == 0 : g == 0)
                return jx_error(c, at, op == OP_MOD ? "integer modulo by zero" : "integer division or modulo by zero");
            if (ints) {
                if (a == INT64_MIN && b == -1) goto overflow;
                int64_t q = a / b, m = a % b;
                if (m != 0 && ((m < 0) != (b < 0))) { /* Python floors */
                    q--;
                    m += b;
                }
                *out = jv_int(op == OP_FLOORDIV ? q : m);
            } else {
                double m = fmod(f, g);
                if (m != 0 && ((m < 0) != (g < 0))) m += g;
                *out = jv_float(op == OP_FLOORDIV ? floor(f / g) : m);
            }
            return PISSA_OK;
        case OP_POW:
            if (ints && b >= 0) {
                int64_t base = a, result = 1;
                for (int64_t e = b; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(result, base, &result)) goto overflow;
                    if (e > 1 && __builtin_mul_overflow(base, base, &base)) goto overflow;
                }
                *out = jv_int(result);
            } else {
                if (f == 0 && g < 0) return jx_error(c, at, "0.0 cannot be raised to a negative power");
                *out = jv_float(pow(f, g));
            }
            return PISSA_OK;
        default: break;
        }
    }
    if (op == OP_ADD && x.t == JV_STR && y.t == JV_STR) {
        size_t n = x.u.s->n + y.u.s->n;
        jstr *s = ja_alloc(c->a, sizeof *s + n + 1);
        if (!s) return jx_oom(c, at);
        s->n = n;
        memcpy(s->p, x.u.s->p, x.u.s->n);
        memcpy(s->p + x.u.s->n, y.u.s->p, y.u.s->n);
        s->p[n] = '\0';
        *out = jv_str(s);
        return PISSA_OK;
    }
    if (op == OP_ADD && x.t == JV_LIST && y.t == JV_LIST && x.u.l->tuple == y.u.l->tuple) {
        jlist *l = jl_new(c->a, x.u.l->n + y.u.l->n);
        if (!l) return jx_oom(c, at);
        l->tuple = x.u.l->tuple;
        memcpy(l->v, x.u.l->v, x.u.l->n * sizeof *l->v);
        memcpy(l->v + x.u.l->n, y.u.l->v, y.u.l->n * sizeof *l->v);
        l->n = x.u.l->n + y.u.l->n;
        PISSA_TRY(jx_step(c, at, l->n));
        *out = jv_list(l);
        return PISSA_OK;
    }
    if (op == OP_MUL && (x.t == JV_STR || x.t == JV_LIST) && (y.t == JV_INT || y.t == JV_BOOL))
        return repeat(c, at, x, y.u.i, out);
    if (op == OP_MUL && (y.t == JV_STR || y.t == JV_LIST) && (x.t == JV_INT || x.t == JV_BOOL))
        return repeat(c, at, y, x.u.i, out);
    if (op == OP_MOD && x.t == JV_STR) return jb_percent_format(c, at, x.u.s, y, out);
    return bad_operands(c, at, op, x, y);
overflow:
    return jx_error(c, at, "integer overflow (libpissa's integers are 64-bit)");
}

pissa_status jb_contains(jctx *c, const jnode *at, jv hay, jv needle, int *out) {
    switch (hay.t) {
    case JV_UNDEF: *out = 0; return PISSA_OK;
    case JV_STR:
        if (needle.t != JV_STR)
            return jx_error(c, at, "'in <string>' requires string as left operand, not %s", jv_type_name(needle));
        *out = jb_find_bytes(c, hay.u.s->p, hay.u.s->n, needle.u.s->p, needle.u.s->n) != NULL;
        return jx_step(c, at, 1);
    case JV_LIST:
        *out = 0;
        for (size_t i = 0; i < hay.u.l->n && !*out; i++) *out = jv_equal(hay.u.l->v[i], needle, &c->steps);
        return jx_step(c, at, 0);
    case JV_DICT: case JV_NS:
        *out = jd_get(hay.u.d, needle) != NULL; /* hashed past 8 keys */
        return jx_step(c, at, 1);
    default: return jx_error(c, at, "argument of type '%s' is not iterable", jv_type_name(hay));
    }
}

/* ---- globals ---- */

pissa_status jb_builtin(jctx *c, const jnode *at, int id, const jargs *a, jv *out) {
    switch (id) {
    case BI_RAISE: {
        const jstr *msg = a->n ? jx_text(c, a->pos[0]) : NULL;
        return pissa__fail(PISSA_ERR_INVALID_ARG, "chat template raised an error (line %d): %s", at->line,
                           msg ? msg->p : "");
    }
    case BI_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->n < 1 || a->n > 3) return jx_error(c, at, "range expected 1 to 3 arguments, got %d", a->n);
        for (int i = 0; i < a->n; i++) {
            if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL)
                return jx_error(c, at, "'%s' object cannot be interpreted as an integer", jv_type_name(a->pos[i]));
            v[a->n == 1 ? 1 : i] = a->pos[i].u.i;
        }
        if (v[2] == 0) return jx_error(c, at, "range() arg 3 must not be zero");
        double count = ceil(((double)v[1] - (double)v[0]) / (double)v[2]);
        if (count < 0) count = 0;
        if (count * sizeof(jv) > (double)c->lim->max_memory || count > (double)c->lim->max_steps)
            return jx_error(c, at, "range of %.0f items passes the render's limits", count);
        PISSA_TRY(jx_step(c, at, (uint64_t)count));
        jlist *l = jl_new(c->a, (size_t)count);
        if (!l) return jx_oom(c, at);
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) l->v[l->n++] = jv_int(i);
        *out = jv_list(l);
        return PISSA_OK;
    }
    case BI_NAMESPACE: case BI_DICT: {
        jdict *d = jd_new(c->a);
        if (!d) return jx_oom(c, at);
        for (int i = 0; i < a->n; i++) {
            if (a->pos[i].t != JV_DICT && a->pos[i].t != JV_NS)
                return jx_error(c, at, "%s() takes a mapping or keyword arguments",
                                id == BI_DICT ? "dict" : "namespace");
            for (size_t k = 0; k < a->pos[i].u.d->n; k++)
                if (!jd_set(c->a, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k])) return jx_oom(c, at);
        }
        for (int i = 0; i < a->nkw; i++)
            if (!jd_set(c->a, d, jv_str(a->kwnames[i]), a->kw[i])) return jx_oom(c, at);
        *out = (jv){.t = id == BI_DICT ? JV_DICT : JV_NS, .u.d = d};
        return PISSA_OK;
    }
    case BI_STRFTIME: {
        jv f = jb_arg(a, 0, NULL, jv_undef(NULL));
        PISSA_TRY(jb_need_str(c, at, f, "strftime_now"));
        time_t now = time(NULL);
        struct tm tm;
        char buf[512];
        if (!localtime_r(&now, &tm)) return jx_error(c, at, "strftime_now: no local time");
        size_t n = strftime(buf, sizeof buf, f.u.s->p, &tm);
        *out = jb_mkstr(c, buf, n);
        return out->t == JV_STR ? PISSA_OK : jx_oom(c, at);
    }
    default: return jx_error(c, at, "internal error: unknown builtin");
    }
}

/* ---- tests ---- */

static const char *const FILTERS[] = {
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "format",
    "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title",
    "tojson", "trim", "unique", "upper", "wordcount", NULL};
static const char *const TESTS[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "!=", "escaped", "even", "false",
    "filter", "float", "ge", "gt", "greaterthan", "in", "integer", "iterable", "le", "lessthan", "lower", "lt",
    "mapping", "ne", "none", "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper",
    NULL};

static int in_list(const char *const *list, const char *name) {
    for (; *list; list++)
        if (!strcmp(*list, name)) return 1;
    return 0;
}

int jb_is_filter(const char *name) { return in_list(FILTERS, name); }
int jb_is_test(const char *name) { return in_list(TESTS, name); }

pissa_status jb_test(jctx *c, const jnode *at, const jstr *name, jv x, const jargs *a, int *out) {
    const char *w = name->p;
    jv y = jb_arg(a, 0, NULL, jv_undef(NULL));
    int cmp;
    if (!strcmp(w, "defined")) *out = x.t != JV_UNDEF;
    else if (!strcmp(w, "undefined")) *out = x.t == JV_UNDEF;
    else if (!strcmp(w, "none")) *out = x.t == JV_NONE;
    else if (!strcmp(w, "boolean")) *out = x.t == JV_BOOL;
    else if (!strcmp(w, "true")) *out = x.t == JV_BOOL && x.u.i;
    else if (!strcmp(w, "false")) *out = x.t == JV_BOOL && !x.u.i;
    else if (!strcmp(w, "string")) *out = x.t == JV_STR;
    else if (!strcmp(w, "number")) *out = jv_is_number(x);
    else if (!strcmp(w, "integer")) *out = x.t == JV_INT;
    else if (!strcmp(w, "float")) *out = x.t == JV_FLOAT;
    else if (!strcmp(w, "mapping")) *out = x.t == JV_DICT;
    else if (!strcmp(w, "iterable")) *out = x.t == JV_LIST || x.t == JV_DICT || x.t == JV_STR || x.t == JV_UNDEF;
    else if (!strcmp(w, "sequence")) *out = x.t == JV_LIST || x.t == JV_DICT || x.t == JV_STR;
    else if (!strcmp(w, "callable")) *out = x.t == JV_MACRO || x.t == JV_BUILTIN || x.t == JV_METHOD;
    else if (!strcmp(w, "lower") || !strcmp(w, "upper")) {
        const jstr *s = jx_text(c, x);
        jv r;
        if (!s) return jx_oom(c, at);
        PISSA_TRY(jb_str_pred(c, at, s, w[0] == 'l' ? "islower" : "isupper", &r));
        *out = (int)r.u.i;
    } else if (!strcmp(w, "odd") || !strcmp(w, "even") || !strcmp(w, "divisibleby")) {
        int64_t d = w[0] == 'd' ? (y.t == JV_INT || y.t == JV_BOOL ? y.u.i : 0) : 2;
        if (x.t == JV_UNDEF) return jx_undefined_error(c, at, x);
        if (x.t != JV_INT && x.t != JV_BOOL) return jx_error(c, at, "the %s test needs an integer", w);
        if (d == 0) return jx_error(c, at, "integer division or modulo by zero");
        int64_t m = x.u.i % d;
        *out = w[0] == 'o' ? m != 0 : m == 0;
    } else if (!strcmp(w, "eq") || !strcmp(w, "equalto") || !strcmp(w, "==")) *out = jv_equal(x, y, &c->steps);
    else if (!strcmp(w, "ne") || !strcmp(w, "!=")) *out = !jv_equal(x, y, &c->steps);
    else if (!strcmp(w, "sameas"))
        *out = x.t == y.t && (x.t == JV_NONE || x.t == JV_UNDEF ? 1 : x.t == JV_BOOL || x.t == JV_INT ? x.u.i == y.u.i
                                                                    : jv_equal(x, y, NULL) && x.u.l == y.u.l);
    else if (!strcmp(w, "in")) PISSA_TRY(jb_contains(c, at, y, x, out));
    else if (!strcmp(w, "lt") || !strcmp(w, "lessthan") || !strcmp(w, "le") || !strcmp(w, "gt") ||
             !strcmp(w, "greaterthan") || !strcmp(w, "ge")) {
        if (!jv_compare(x, y, &cmp))
            return jx_error(c, at, "'%s' test between '%s' and '%s'", w, jv_type_name(x), jv_type_name(y));
        *out = w[0] == 'l' ? (w[1] == 'e' && w[2] == '\0' ? cmp <= 0 : cmp < 0)
                           : (w[1] == 'e' && w[2] == '\0' ? cmp >= 0 : cmp > 0);
    } else if (!strcmp(w, "filter") || !strcmp(w, "test")) {
        *out = x.t == JV_STR && (w[0] == 'f' ? jb_is_filter(x.u.s->p) : jb_is_test(x.u.s->p));
    } else if (!strcmp(w, "escaped")) *out = 0;
    else return jx_error(c, at, "no test named '%s'", w);
    return PISSA_OK;
}

/* ---- filters ---- */

/* sort keys: case-insensitive strings unless CASE_SENSITIVE, as jinja2's sort/unique/min/max/dictsort */
typedef struct sortitem {
    jv key, val;
    size_t idx;
} sortitem;

/* Stable merge sort of N items by key (Python's ordering; REVERSE flips it but keeps ties in order, as
 * sorted(..., reverse=True) does). 0 when two keys do not order. */
static int merge_sort(sortitem *v, sortitem *tmp, size_t n, int reverse) {
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int r = 0; /* equal keys need no ordering: jinja2 compares [key] lists, which test == first */
                if (!jv_equal(v[j].key, v[i].key, NULL) && !jv_compare(v[j].key, v[i].key, &r)) return 0;
                if (reverse) r = -r;
                tmp[k++] = r < 0 ? v[j++] : v[i++]; /* take the right one only when strictly smaller: stable */
            }
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, n * sizeof *v);
    }
    return 1;
}

static jv sort_key(jctx *c, jv v, int case_sensitive) {
    if (v.t != JV_STR || case_sensitive) return v;
    jv low;
    return jb_case(c, NULL, v, 'l', &low) == PISSA_OK ? low : v;
}

/* Items of SEQ (or their ATTRIBUTE) sorted: the primitive under sort, dictsort, min, max. */
static pissa_status sorted(jctx *c, const jnode *at, jlist *items, jv attribute, int case_sensitive, int reverse,
                           int by_value, jlist **out) {
    sortitem *s = malloc((items->n + 1) * sizeof *s), *tmp = malloc((items->n + 1) * sizeof *tmp);
    if (!s || !tmp) {
        free(s);
        free(tmp);
        return NOMEM();
    }
    pissa_status st = jx_step(c, at, items->n * 8);
    for (size_t i = 0; i < items->n && st == PISSA_OK; i++) {
        jv k = items->v[i];
        if (by_value >= 0) k = k.u.l->v[by_value]; /* dictsort: (key, value) pairs */
        if (attribute.t == JV_STR) st = jb_attr_path(c, at, k, attribute.u.s, &k);
        s[i] = (sortitem){sort_key(c, k, case_sensitive), items->v[i], i};
    }
    if (st == PISSA_OK && !merge_sort(s, tmp, items->n, reverse))
        st = jx_error(c, at, "'<' not supported between the items being sorted");
    free(tmp);
    jlist *l = st == PISSA_OK ? jl_new(c->a, items->n) : NULL;
    if (st == PISSA_OK && !l) st = jx_oom(c, at);
    for (size_t i = 0; st == PISSA_OK && i < items->n; i++) l->v[l->n++] = s[i].val;
    free(s);
    *out = l;
    return st;
}

/* select/reject/selectattr/rejectattr/map: apply a test (or a filter, for map) to each item. */
static pissa_status select_items(jctx *c, const jnode *at, jv seq, const jargs *a, int by_attr, int keep, jv *out) {
    jlist *items, *l;
    PISSA_TRY(jx_iterate(c, at, seq, &items));
    PISSA_TRY(jx_step(c, at, items->n));
    if (!(l = jl_new(c->a, items->n))) return jx_oom(c, at);
    int first = by_attr ? 1 : 0;
    jv attr = by_attr ? jb_arg(a, 0, NULL, jv_undef(NULL)) : jv_undef(NULL);
    jv test = jb_arg(a, first, NULL, jv_undef(NULL));
    if (by_attr && attr.t != JV_STR) return jx_error(c, at, "selectattr/rejectattr need an attribute name");
    jargs rest = {.pos = a->pos + (a->n > first + 1 ? first + 1 : a->n), .n = a->n > first + 1 ? a->n - first - 1 : 0,
                  .kwnames = a->kwnames, .kw = a->kw, .nkw = a->nkw};
    for (size_t i = 0; i < items->n; i++) {
        jv v = items->v[i];
        if (by_attr) PISSA_TRY(jb_attr_path(c, at, v, attr.u.s, &v));
        int r;
        if (test.t == JV_UNDEF) r = jv_truthy(v);
        else if (test.t != JV_STR) return jx_error(c, at, "a test name must be a string");
        else PISSA_TRY(jb_test(c, at, test.u.s, v, &rest, &r));
        if (r == keep) l->v[l->n++] = items->v[i];
    }
    *out = jv_list(l);
    return PISSA_OK;
}

static pissa_status to_int(jctx *c, const jnode *at, jv x, jv def, jv *out) {
    if (x.t == JV_INT || x.t == JV_BOOL) *out = jv_int(x.u.i);
    else if (x.t == JV_FLOAT && isfinite(x.u.f) && fabs(x.u.f) < 9.2e18) *out = jv_int((int64_t)x.u.f);
    else if (x.t == JV_STR) {
        size_t b, e;
        jb_strip_range(x.u.s, NULL, 1, 1, &b, &e);
        char buf[64];
        size_t m = 0;
        for (size_t i = b; i < e && m + 1 < sizeof buf; i++)
            if (x.u.s->p[i] != '_') buf[m++] = x.u.s->p[i];
        buf[m] = '\0';
        char *end;
        long long v = strtoll(buf, &end, 10);
        if (m && *end == '\0') *out = jv_int(v);
        else {
            double f = strtod(buf, &end); /* jinja2 tries int(float(s)) next */
            *out = m && *end == '\0' && isfinite(f) && fabs(f) < 9.2e18 ? jv_int((int64_t)f) : def;
        }
    } else *out = def;
    (void)c;
    (void)at;
    return PISSA_OK;
}

pissa_status jb_filter(jctx *c, const jnode *at, const jstr *name, jv x, const jargs *a, jv *out) {
    const char *w = name->p;
    jv none = jv_none(), undef = jv_undef(NULL);
    jlist *items;
    if (!strcmp(w, "default") || !strcmp(w, "d")) {
        int boolean = jv_truthy(jb_arg(a, 1, "boolean", jv_bool(0)));
        *out = x.t == JV_UNDEF || (boolean && !jv_truthy(x)) ? jb_arg(a, 0, "default_value", jb_mkstr(c, "", 0)) : x;
        return PISSA_OK;
    }
    if (!strcmp(w, "safe")) {
        *out = x;
        return PISSA_OK;
    }
    if (!strcmp(w, "length") || !strcmp(w, "count")) {
        if (x.t == JV_UNDEF) *out = jv_int(0);
        else if (x.t == JV_STR) {
            PISSA_TRY(jx_step(c, at, x.u.s->n / 64));
            *out = jv_int((int64_t)jb_cp_count(x.u.s));
        }
        else if (x.t == JV_LIST) *out = jv_int((int64_t)x.u.l->n);
        else if (x.t == JV_DICT || x.t == JV_NS) *out = jv_int((int64_t)x.u.d->n);
        else return jx_error(c, at, "object of type '%s' has no len()", jv_type_name(x));
        return PISSA_OK;
    }
    if (!strcmp(w, "string")) {
        const jstr *s = jx_text(c, x);
        if (!s) return jx_oom(c, at);
        *out = jv_str(s);
        return PISSA_OK;
    }
    if (!strcmp(w, "trim")) {
        const jstr *s = jx_text(c, x);
        if (!s) return jx_oom(c, at);
        return jb_strip(c, at, jv_str(s), jb_arg(a, 0, "chars", none), 1, 1, out);
    }
    if (!strcmp(w, "upper")) return jb_case(c, at, x, 'u', out);
    if (!strcmp(w, "lower")) return jb_case(c, at, x, 'l', out);
    if (!strcmp(w, "capitalize")) return jb_case(c, at, x, 'c', out);
    if (!strcmp(w, "title")) return jb_case(c, at, x, 'T', out);
    if (!strcmp(w, "replace")) {
        const jstr *s = jx_text(c, x);
        if (!s) return jx_oom(c, at);
        return jb_replace(c, at, jv_str(s), jb_arg(a, 0, "old", none), jb_arg(a, 1, "new", none),
                          jb_arg(a, 2, "count", none), out);
    }
    if (!strcmp(w, "join"))
        return jb_join(c, at, x, jb_arg(a, 0, "d", jb_mkstr(c, "", 0)), jb_arg(a, 1, "attribute", none), out);
    if (!strcmp(w, "tojson")) { /* transformers' tojson: json.dumps(x, ensure_ascii=False, ...) */
        jv ind = jb_arg(a, 1, "indent", none), seps = jb_arg(a, 2, "separators", none);
        if (ind.t != JV_NONE && ind.t != JV_INT) return jx_error(c, at, "tojson: indent must be an integer");
        jjson_opts o = {ind.t == JV_INT ? (int)(ind.u.i < 0    ? 0
                                                : ind.u.i > 64 ? 64
                                                               : ind.u.i)
                                        : -1,
                        jv_truthy(jb_arg(a, 0, "ensure_ascii", jv_bool(0))),
                        jv_truthy(jb_arg(a, 3, "sort_keys", jv_bool(0))), ind.t == JV_INT ? "," : ", ", ": "};
        if (seps.t != JV_NONE) {
            if (seps.t != JV_LIST || seps.u.l->n != 2 || seps.u.l->v[0].t != JV_STR || seps.u.l->v[1].t != JV_STR)
                return jx_error(c, at, "tojson: separators must be a pair of strings");
            o.item_sep = seps.u.l->v[0].u.s->p;
            o.key_sep = seps.u.l->v[1].u.s->p;
        }
        pissa__strbuf b = {0};
        pissa__sb_put(&b, "", 0);
        const char *bad = jv_tojson(&b, x, &o, 0);
        if (bad) {
            free(b.p);
            return jx_error(c, at, "Object of type %s is not JSON serializable", bad);
        }
        pissa_status st = jx_step(c, at, b.n / 16);
        if (st != PISSA_OK) {
            free(b.p);
            return st;
        }
        return jb_sb_result(c, at, &b, out);
    }
    if (!strcmp(w, "list")) {
        PISSA_TRY(jx_iterate(c, at, x, &items));
        jlist *l = jl_new(c->a, items->n);
        if (!l) return jx_oom(c, at);
        memcpy(l->v, items->v, items->n * sizeof *l->v);
        l->n = items->n;
        *out = jv_list(l);
        return jx_step(c, at, l->n);
    }
    if (!strcmp(w, "items")) {
        if (x.t == JV_UNDEF) {
            jlist *l = jl_new(c->a, 1);
            if (!l) return jx_oom(c, at);
            *out = jv_list(l);
            return PISSA_OK;
        }
        if (x.t != JV_DICT) return jx_error(c, at, "can only get item pairs from a mapping, not '%s'", jv_type_name(x));
        jargs none_args = {0};
        return jb_method(c, at, x, "items", &none_args, out);
    }
    if (!strcmp(w, "first") || !strcmp(w, "last")) {
        if (x.t == JV_UNDEF && w[0] == 'l') return jx_undefined_error(c, at, x);
        PISSA_TRY(jx_iterate(c, at, x, &items));
        if (items->n == 0) {
            *out = jb_mkstr(c, w[0] == 'f' ? "No first item, sequence was empty." : "No last item, sequence was empty.",
                            w[0] == 'f' ? 34 : 33);
            *out = jv_undef(out->u.s);
            return PISSA_OK;
        }
        *out = items->v[w[0] == 'f' ? 0 : items->n - 1];
        return PISSA_OK;
    }
    if (!strcmp(w, "reverse")) {
        if (x.t == JV_STR) {
            PISSA_TRY(jx_iterate(c, at, x, &items));
            pissa__strbuf b = {0};
            pissa__sb_put(&b, "", 0);
            for (size_t i = items->n; i-- > 0;) pissa__sb_put(&b, items->v[i].u.s->p, items->v[i].u.s->n);
            return jb_sb_result(c, at, &b, out);
        }
        PISSA_TRY(jx_iterate(c, at, x, &items));
        jlist *l = jl_new(c->a, items->n);
        if (!l) return jx_oom(c, at);
        for (size_t i = items->n; i-- > 0;) l->v[l->n++] = items->v[i];
        *out = jv_list(l);
        return jx_step(c, at, l->n);
    }
    if (!strcmp(w, "abs")) {
        if (x.t == JV_FLOAT) *out = jv_float(fabs(x.u.f));
        else if ((x.t == JV_INT || x.t == JV_BOOL) && x.u.i != INT64_MIN) *out = jv_int(x.u.i < 0 ? -x.u.i : x.u.i);
        else return jx_error(c, at, "bad operand type for abs(): '%s'", jv_type_name(x));
        return PISSA_OK;
    }
    if (!strcmp(w, "int")) return to_int(c, at, x, jb_arg(a, 0, "default", jv_int(0)), out);
    if (!strcmp(w, "float")) {
        jv def = jb_arg(a, 0, "default", jv_float(0.0));
        if (jv_is_number(x)) *out = jv_float(jv_num(x));
        else if (x.t == JV_STR) {
            size_t b, e;
            jb_strip_range(x.u.s, NULL, 1, 1, &b, &e);
            char buf[64], *end;
            size_t m = e - b < sizeof buf - 1 ? e - b : sizeof buf - 1;
            memcpy(buf, x.u.s->p + b, m);
            buf[m] = '\0';
            double f = strtod(buf, &end);
            *out = m && *end == '\0' ? jv_float(f) : def;
        } else *out = def;
        return PISSA_OK;
    }
    if (!strcmp(w, "round")) {
        jv p = jb_arg(a, 0, "precision", jv_int(0)), method = jb_arg(a, 1, "method", undef);
        int prec = p.t == JV_INT ? (int)(p.u.i < -20 ? -20 : p.u.i > 20 ? 20 : p.u.i) : 0;
        if (!jv_is_number(x)) return jx_error(c, at, "type %s doesn't define __round__ method", jv_type_name(x));
        const char *m = method.t == JV_STR ? method.u.s->p : "common";
        if (strcmp(m, "common") && strcmp(m, "ceil") && strcmp(m, "floor"))
            return jx_error(c, at, "method must be common, ceil or floor");
        if (!strcmp(m, "common") && x.t != JV_FLOAT) {
            *out = jv_int(x.u.i); /* round(int, n) stays an int */
            return PISSA_OK;
        }
        double v = jv_num(x), scale = pow(10.0, prec);
        if (!strcmp(m, "common")) {
            char buf[400];
            if (prec >= 0) {
                snprintf(buf, sizeof buf, "%.*f", prec, v); /* exact binary value, ties to even: Python's round */
                v = strtod(buf, NULL);
            } else {
                v = nearbyint(v * scale) / scale;
            }
        } else {
            v = (m[0] == 'c' ? ceil(v * scale) : floor(v * scale)) / scale;
        }
        *out = jv_float(v);
        return PISSA_OK;
    }
    if (!strcmp(w, "escape") || !strcmp(w, "e")) {
        const jstr *s = jx_text(c, x);
        if (!s) return jx_oom(c, at);
        pissa__strbuf b = {0};
        pissa__sb_put(&b, "", 0);
        for (size_t i = 0; i < s->n; i++) {
            char ch = s->p[i];
            if (ch == '&') pissa__sb_puts(&b, "&amp;");
            else if (ch == '<') pissa__sb_puts(&b, "&lt;");
            else if (ch == '>') pissa__sb_puts(&b, "&gt;");
            else if (ch == '"') pissa__sb_puts(&b, "&#34;");
            else if (ch == '\'') pissa__sb_puts(&b, "&#39;");
            else pissa__sb_put(&b, &ch, 1);
        }
        return jb_sb_result(c, at, &b, out);
    }
    if (!strcmp(w, "indent")) {
        const jstr *s = jx_text(c, x);
        jv width = jb_arg(a, 0, "width", jv_int(4));
        int first = jv_truthy(jb_arg(a, 1, "first", jv_bool(0))), blank = jv_truthy(jb_arg(a, 2, "blank", jv_bool(0)));
        if (!s) return jx_oom(c, at);
        const jstr *ind = width.t == JV_STR ? width.u.s : NULL;
        pissa__strbuf pad = {0};
        if (!ind) {
            int64_t k = width.t == JV_INT ? width.u.i : 4;
            for (int64_t i = 0; i < k && i < 4096; i++) pissa__sb_put(&pad, " ", 1);
            pissa__sb_put(&pad, "", 0);
        }
        const char *pp = ind ? ind->p : pad.p;
        size_t pn = ind ? ind->n : pad.n;
        jlist *lines;
        /* jinja2 appends "\n" first so that splitlines keeps a final empty line */
        pissa__strbuf t = {0};
        pissa__sb_put(&t, s->p, s->n);
        pissa__sb_put(&t, "\n", 1);
        const jstr *s2 = t.oom ? NULL : js_new(c->a, t.p, t.n);
        free(t.p);
        if (!s2) {
            free(pad.p);
            return jx_oom(c, at);
        }
        pissa_status st = jb_splitlines(c, at, s2, &lines);
        pissa__strbuf b = {0};
        pissa__sb_put(&b, "", 0);
        if (first) pissa__sb_put(&b, pp, pn);
        for (size_t i = 0; st == PISSA_OK && i < lines->n; i++) {
            const jstr *line = lines->v[i].u.s;
            if (i) {
                pissa__sb_put(&b, "\n", 1);
                if (blank || line->n) pissa__sb_put(&b, pp, pn);
            }
            pissa__sb_put(&b, line->p, line->n);
        }
        free(pad.p);
        if (st != PISSA_OK) {
            free(b.p);
            return st;
        }
        return jb_sb_result(c, at, &b, out);
    }
    if (!strcmp(w, "format")) {
        PISSA_TRY(jb_need_str(c, at, x, "format"));
        jlist *l = jl_new(c->a, (size_t)a->n);
        if (!l) return jx_oom(c, at);
        l->tuple = 1;
        for (int i = 0; i < a->n; i++) l->v[l->n++] = a->pos[i];
        if (a->nkw) {
            jdict *d = jd_new(c->a);
            if (!d) return jx_oom(c, at);
            for (int i = 0; i < a->nkw; i++)
                if (!jd_set(c->a, d, jv_str(a->kwnames[i]), a->kw[i])) return jx_oom(c, at);
            return jx_error(c, at, "format with keyword arguments is not supported");
        }
        return jb_percent_format(c, at, x.u.s, jv_list(l), out);
    }
    if (!strcmp(w, "wordcount")) {
        jv words;
        const jstr *s = jx_text(c, x);
        if (!s) return jx_oom(c, at);
        PISSA_TRY(jb_split(c, at, jv_str(s), none, jv_int(-1), 0, &words));
        *out = jv_int((int64_t)words.u.l->n);
        return PISSA_OK;
    }
    if (!strcmp(w, "attr")) { /* Python's getattr only: a dict's keys are not attributes */
        jv n = jb_arg(a, 0, "name", undef);
        if (n.t != JV_STR) return jx_error(c, at, "attr needs a name");
        if (x.t == JV_DICT && !jb_has_method(x, n.u.s->p)) {
            *out = undef;
            return PISSA_OK;
        }
        return jx_getattr(c, at, x, n.u.s, out);
    }
    if (!strcmp(w, "select")) return select_items(c, at, x, a, 0, 1, out);
    if (!strcmp(w, "reject")) return select_items(c, at, x, a, 0, 0, out);
    if (!strcmp(w, "selectattr")) return select_items(c, at, x, a, 1, 1, out);
    if (!strcmp(w, "rejectattr")) return select_items(c, at, x, a, 1, 0, out);
    if (!strcmp(w, "map")) {
        PISSA_TRY(jx_iterate(c, at, x, &items));
        PISSA_TRY(jx_step(c, at, items->n));
        jlist *l = jl_new(c->a, items->n);
        if (!l) return jx_oom(c, at);
        jv attribute = jb_arg(a, -1, "attribute", undef), def = jb_arg(a, -1, "default", undef);
        jv filt = jb_arg(a, 0, NULL, undef);
        jargs rest = {.pos = a->pos + (a->n ? 1 : 0), .n = a->n ? a->n - 1 : 0};
        for (size_t i = 0; i < items->n; i++) {
            jv v = items->v[i];
            if (attribute.t == JV_STR) {
                PISSA_TRY(jb_attr_path(c, at, v, attribute.u.s, &v));
                if (v.t == JV_UNDEF && def.t != JV_UNDEF) v = def;
            } else if (filt.t == JV_STR) {
                PISSA_TRY(jb_filter(c, at, filt.u.s, v, &rest, &v));
            } else {
                return jx_error(c, at, "map needs a filter name or attribute=");
            }
            l->v[l->n++] = v;
        }
        *out = jv_list(l);
        return PISSA_OK;
    }
    if (!strcmp(w, "sort") || !strcmp(w, "unique") || !strcmp(w, "min") || !strcmp(w, "max") ||
        !strcmp(w, "dictsort")) {
        int dictsort = w[0] == 'd', sort = w[0] == 's' && w[1] == 'o';
        int reverse = jv_truthy(jb_arg(a, sort ? 0 : dictsort ? 2 : -1, "reverse", jv_bool(0)));
        int cs = jv_truthy(jb_arg(a, sort ? 1 : dictsort ? 0 : 0, "case_sensitive", jv_bool(0)));
        jv attribute = jb_arg(a, sort ? 2 : -1, "attribute", undef);
        if (dictsort) {
            if (x.t != JV_DICT) return jx_error(c, at, "you can only sort by either 'key' or 'value' of a mapping");
            jv by = jb_arg(a, 1, "by", jb_mkstr(c, "key", 3));
            jargs none_args = {0};
            jv pairs;
            PISSA_TRY(jb_method(c, at, x, "items", &none_args, &pairs));
            jlist *l;
            PISSA_TRY(sorted(c, at, pairs.u.l, undef, cs, reverse,
                             by.t == JV_STR && !strcmp(by.u.s->p, "value") ? 1 : 0, &l));
            *out = jv_list(l);
            return PISSA_OK;
        }
        PISSA_TRY(jx_iterate(c, at, x, &items));
        if (w[0] == 'u') { /* first occurrence of each, in order */
            jlist *l = jl_new(c->a, items->n), *keys = jl_new(c->a, items->n);
            if (!l || !keys) return jx_oom(c, at);
            for (size_t i = 0; i < items->n; i++) {
                jv k = items->v[i];
                if (attribute.t == JV_STR) PISSA_TRY(jb_attr_path(c, at, k, attribute.u.s, &k));
                k = sort_key(c, k, cs);
                int seen = 0;
                for (size_t j = 0; j < keys->n && !seen; j++) seen = jv_equal(keys->v[j], k, &c->steps);
                PISSA_TRY(jx_step(c, at, 0));
                if (!seen) {
                    keys->v[keys->n++] = k;
                    l->v[l->n++] = items->v[i];
                }
            }
            *out = jv_list(l);
            return PISSA_OK;
        }
        jlist *l;
        PISSA_TRY(sorted(c, at, items, attribute, cs, reverse, -1, &l));
        if (sort) *out = jv_list(l);
        else if (l->n == 0) *out = jv_undef(NULL);
        else *out = l->v[w[1] == 'i' ? 0 : l->n - 1];
        return PISSA_OK;
    }
    if (!strcmp(w, "sum")) {
        PISSA_TRY(jx_iterate(c, at, x, &items));
        jv total = jb_arg(a, 1, "start", jv_int(0)), attribute = jb_arg(a, 0, "attribute", undef);
        for (size_t i = 0; i < items->n; i++) {
            jv v = items->v[i];
            if (attribute.t == JV_STR) PISSA_TRY(jb_attr_path(c, at, v, attribute.u.s, &v));
            PISSA_TRY(jb_binop(c, at, OP_ADD, total, v, &total));
        }
        *out = total;
        return PISSA_OK;
    }
    return jx_error(c, at, "no filter named '%s'", w);
}
