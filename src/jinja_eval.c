/* Jinja evaluator: statements and expressions over the syntax tree, with jinja2's scoping (a for loop's body gets a
 * fresh scope each iteration; macros see the scope they were defined in) and its default Undefined (prints as
 * nothing, is false, iterates as empty; an attribute, item, call or arithmetic on it is an error). */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

pissa_status jx_error(jctx *c, const jnode *at, const char *fmt, ...) {
    (void)c;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pissa__fail(PISSA_ERR_FORMAT, "chat template line %d: %s", at ? at->line : 0, msg);
}

pissa_status jx_oom(jctx *c, const jnode *at) {
    if (c->a->failed == 2)
        return jx_error(c, at, "the render needed more than %zu bytes of memory (the limit)", c->lim->max_memory);
    return pissa__fail(PISSA_ERR_NOMEM, "chat template line %d: out of memory", at ? at->line : 0);
}

pissa_status jx_step(jctx *c, const jnode *at, uint64_t n) {
    c->steps += n;
    if (c->steps > c->lim->max_steps)
        return jx_error(c, at, "the render took more than %llu steps (the limit)",
                        (unsigned long long)c->lim->max_steps);
    return PISSA_OK;
}

pissa_status jx_undefined_error(jctx *c, const jnode *at, jv u) {
    return jx_error(c, at, "%s", u.u.s ? u.u.s->p : "undefined value");
}

const jstr *jx_text(jctx *c, jv x) {
    if (x.t == JV_STR) return x.u.s;
    pissa__strbuf b = {0};
    jv_to_text(&b, x);
    const jstr *s = b.oom ? NULL : js_new(c->a, b.p ? b.p : "", b.n);
    free(b.p);
    return s;
}

/* jinja2's name for an object in "has no attribute" messages. */
static const char *object_repr(jv x) {
    switch (x.t) {
    case JV_NONE: return "None";
    case JV_DICT: return "dict object";
    case JV_STR: return "str object";
    case JV_LIST: return x.u.l->tuple ? "tuple object" : "list object";
    case JV_INT: return "int object";
    case JV_FLOAT: return "float object";
    case JV_BOOL: return "bool object";
    case JV_NS: return "jinja2.utils.Namespace object";
    default: return "object";
    }
}

static jv undefined_attr(jctx *c, jv obj, jv name) {
    pissa__strbuf b = {0};
    pissa__sb_puts(&b, "'");
    pissa__sb_puts(&b, object_repr(obj));
    pissa__sb_puts(&b, "' has no attribute ");
    if (name.t == JV_STR) {
        pissa__sb_puts(&b, "'");
        pissa__sb_put(&b, name.u.s->p, name.u.s->n);
        pissa__sb_puts(&b, "'");
    } else {
        jv_to_text(&b, name);
    }
    const jstr *hint = b.oom ? NULL : js_new(c->a, b.p, b.n);
    free(b.p);
    return jv_undef(hint);
}

/* ---- scopes ---- */

static jscope *scope_new(jctx *c, jscope *parent) {
    jscope *s = ja_alloc(c->a, sizeof *s);
    if (!s || !(s->vars = jd_new(c->a))) return NULL;
    s->parent = parent;
    return s;
}

static jv lookup(jctx *c, const jstr *name) {
    for (jscope *s = c->scope; s; s = s->parent) {
        jv *v = jd_get_str(s->vars, name->p, name->n);
        if (v) return *v;
    }
    pissa__strbuf b = {0};
    pissa__sb_puts(&b, "'");
    pissa__sb_put(&b, name->p, name->n);
    pissa__sb_puts(&b, "' is undefined");
    const jstr *hint = b.oom ? NULL : js_new(c->a, b.p, b.n);
    free(b.p);
    return jv_undef(hint);
}

static pissa_status assign(jctx *c, const jnode *at, const jstr *name, jv v) {
    return jd_set(c->a, c->scope->vars, jv_str(name), v) ? PISSA_OK : jx_oom(c, at);
}

/* Binds V to a name or a tuple of names (unpacking a sequence, as Python does). */
static pissa_status bind(jctx *c, const jnode *target, jv v) {
    if (target->kind == E_NAME) return assign(c, target, target->name, v);
    jlist *items;
    if (v.t == JV_LIST) items = v.u.l;
    else PISSA_TRY(jx_iterate(c, target, v, &items));
    if (items->n != (size_t)target->n)
        return jx_error(c, target, "%s values to unpack (expected %d, got %zu)",
                        items->n < (size_t)target->n ? "not enough" : "too many", target->n, items->n);
    for (int i = 0; i < target->n; i++) PISSA_TRY(assign(c, target, target->items[i]->name, items->v[i]));
    return PISSA_OK;
}

/* ---- attributes, items, iteration ---- */

pissa_status jx_getattr(jctx *c, const jnode *at, jv obj, const jstr *name, jv *out) {
    switch (obj.t) {
    case JV_UNDEF: return jx_undefined_error(c, at, obj);
    case JV_NS: {
        jv *v = jd_get_str(obj.u.d, name->p, name->n);
        *out = v ? *v : undefined_attr(c, obj, jv_str(name));
        return PISSA_OK;
    }
    case JV_LOOP: {
        const jloop *L = obj.u.loop;
        size_t n = L->items->n, i = L->index0;
        const char *w = name->p;
        if (!strcmp(w, "index")) *out = jv_int((int64_t)i + 1);
        else if (!strcmp(w, "index0")) *out = jv_int((int64_t)i);
        else if (!strcmp(w, "revindex")) *out = jv_int((int64_t)(n - i));
        else if (!strcmp(w, "revindex0")) *out = jv_int((int64_t)(n - i - 1));
        else if (!strcmp(w, "first")) *out = jv_bool(i == 0);
        else if (!strcmp(w, "last")) *out = jv_bool(i + 1 == n);
        else if (!strcmp(w, "length")) *out = jv_int((int64_t)n);
        else if (!strcmp(w, "depth")) *out = jv_int(1);
        else if (!strcmp(w, "depth0")) *out = jv_int(0);
        else if (!strcmp(w, "previtem") || !strcmp(w, "nextitem")) {
            int prev = w[0] == 'p';
            if (prev ? i > 0 : i + 1 < n) *out = L->items->v[prev ? i - 1 : i + 1];
            else {
                const char *msg = prev ? "there is no previous item" : "there is no next item";
                const jstr *hint = js_new(c->a, msg, strlen(msg));
                if (!hint) return jx_oom(c, at);
                *out = jv_undef(hint);
            }
        } else if (!strcmp(w, "cycle")) goto method;
        else *out = undefined_attr(c, obj, jv_str(name));
        return PISSA_OK;
    }
    default: break;
    }
    if (jb_has_method(obj, name->p)) {
    method:;
        jbound *b = ja_alloc(c->a, sizeof *b);
        if (!b) return jx_oom(c, at);
        b->self = obj;
        b->name = name->p;
        *out = (jv){.t = JV_METHOD, .u.bm = b};
        return PISSA_OK;
    }
    if (obj.t == JV_DICT) {
        jv *v = jd_get_str(obj.u.d, name->p, name->n);
        *out = v ? *v : undefined_attr(c, obj, jv_str(name));
        return PISSA_OK;
    }
    *out = undefined_attr(c, obj, jv_str(name));
    return PISSA_OK;
}

/* Byte offset of code point K of S (S->n when K is the count). */
static size_t cp_offset(const jstr *s, size_t k) {
    size_t i = 0;
    for (; i < s->n; i++)
        if (((unsigned char)s->p[i] & 0xC0) != 0x80 && k-- == 0) break;
    return i;
}

static const jstr *cp_at(jctx *c, const jstr *s, size_t k) {
    size_t a = cp_offset(s, k), b = a + 1;
    while (b < s->n && ((unsigned char)s->p[b] & 0xC0) == 0x80) b++;
    return js_new(c->a, s->p + a, b - a);
}

pissa_status jx_getitem(jctx *c, const jnode *at, jv obj, jv key, jv *out) {
    if (obj.t == JV_UNDEF) return jx_undefined_error(c, at, obj);
    if ((obj.t == JV_LIST || obj.t == JV_STR) && (key.t == JV_INT || key.t == JV_BOOL)) {
        if (obj.t == JV_STR) PISSA_TRY(jx_step(c, at, obj.u.s->n / 64)); /* code points are counted from the start */
        int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)jb_cp_count(obj.u.s), i = key.u.i;
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
            *out = undefined_attr(c, obj, key);
            return PISSA_OK;
        }
        if (obj.t == JV_LIST) {
            *out = obj.u.l->v[i];
            return PISSA_OK;
        }
        const jstr *s = cp_at(c, obj.u.s, (size_t)i);
        if (!s) return jx_oom(c, at);
        *out = jv_str(s);
        return PISSA_OK;
    }
    if (obj.t == JV_DICT) {
        jv *v = jd_get(obj.u.d, key);
        if (v) {
            *out = *v;
            return PISSA_OK;
        }
    }
    if (key.t == JV_STR) return jx_getattr(c, at, obj, key.u.s, out); /* jinja2 falls back to the attribute */
    *out = undefined_attr(c, obj, key);
    return PISSA_OK;
}

pissa_status jx_iterate(jctx *c, const jnode *at, jv x, jlist **out) {
    jlist *l;
    switch (x.t) {
    case JV_UNDEF: return (*out = jl_new(c->a, 1)) ? PISSA_OK : jx_oom(c, at);
    case JV_LIST: *out = x.u.l; return PISSA_OK;
    case JV_DICT:
        if (!(l = jl_new(c->a, x.u.d->n))) return jx_oom(c, at);
        for (size_t i = 0; i < x.u.d->n; i++) l->v[l->n++] = x.u.d->k[i];
        *out = l;
        return PISSA_OK;
    case JV_STR: {
        if (!(l = jl_new(c->a, x.u.s->n))) return jx_oom(c, at);
        const jstr *s = x.u.s;
        for (size_t i = 0; i < s->n;) {
            size_t j = i + 1;
            while (j < s->n && ((unsigned char)s->p[j] & 0xC0) == 0x80) j++;
            const jstr *ch = js_new(c->a, s->p + i, j - i);
            if (!ch) return jx_oom(c, at);
            l->v[l->n++] = jv_str(ch);
            i = j;
        }
        *out = l;
        return PISSA_OK;
    }
    default: return jx_error(c, at, "'%s' object is not iterable", jv_type_name(x));
    }
}

/* Python's slice.indices and the items it selects. */
static pissa_status slice(jctx *c, const jnode *at, jv obj, jv lo, jv hi, jv st, jv *out) {
    int64_t step = 1;
    if (st.t != JV_NONE && st.t != JV_UNDEF) {
        if (st.t != JV_INT && st.t != JV_BOOL) return jx_error(c, at, "slice indices must be integers or None");
        step = st.u.i;
        if (step == 0) return jx_error(c, at, "slice step cannot be zero");
    }
    if (obj.t == JV_UNDEF) return jx_undefined_error(c, at, obj);
    if (obj.t != JV_LIST && obj.t != JV_STR)
        return jx_error(c, at, "'%s' object is not subscriptable", jv_type_name(obj));
    if (obj.t == JV_STR) PISSA_TRY(jx_step(c, at, obj.u.s->n / 64));
    int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)jb_cp_count(obj.u.s);
    int64_t b[2];
    jv bounds[2] = {lo, hi};
    for (int k = 0; k < 2; k++) {
        jv v = bounds[k];
        if (v.t == JV_NONE || v.t == JV_UNDEF) {
            b[k] = step > 0 ? (k ? n : 0) : (k ? -1 : n - 1);
            continue;
        }
        if (v.t != JV_INT && v.t != JV_BOOL) return jx_error(c, at, "slice indices must be integers or None");
        int64_t i = v.u.i;
        if (i < 0) {
            i += n;
            if (i < 0) i = step < 0 ? -1 : 0;
        } else if (i >= n) {
            i = step < 0 ? n - 1 : n;
        }
        b[k] = i;
    }
    size_t count = 0;
    for (int64_t i = b[0]; step > 0 ? i < b[1] : i > b[1]; i += step) count++;
    PISSA_TRY(jx_step(c, at, count));
    if (obj.t == JV_LIST) {
        jlist *l = jl_new(c->a, count);
        if (!l) return jx_oom(c, at);
        l->tuple = obj.u.l->tuple;
        for (int64_t i = b[0]; step > 0 ? i < b[1] : i > b[1]; i += step) l->v[l->n++] = obj.u.l->v[i];
        *out = (jv){.t = JV_LIST, .u.l = l};
        return PISSA_OK;
    }
    /* strings: by code point; offsets of every code point first */
    const jstr *s = obj.u.s;
    size_t *off = ja_alloc(c->a, ((size_t)n + 1) * sizeof *off); /* counted against the memory limit */
    char *buf = ja_alloc(c->a, s->n + 1);
    if (!off || !buf) return jx_oom(c, at);
    for (size_t i = 0, k = 0; i <= s->n; i++)
        if (i == s->n || ((unsigned char)s->p[i] & 0xC0) != 0x80) off[k++] = i;
    size_t m = 0;
    for (int64_t i = b[0]; step > 0 ? i < b[1] : i > b[1]; i += step) {
        memcpy(buf + m, s->p + off[i], off[i + 1] - off[i]);
        m += off[i + 1] - off[i];
    }
    const jstr *r = js_new(c->a, buf, m);
    if (!r) return jx_oom(c, at);
    *out = jv_str(r);
    return PISSA_OK;
}

/* ---- expressions ---- */

static pissa_status ev(jctx *c, const jnode *x, jv *out);
static pissa_status exec_body(jctx *c, const jnode *body);

static pissa_status eval_args(jctx *c, const jnode *x, jargs *a) {
    jv star = jv_undef(NULL), star2 = jv_undef(NULL);
    jlist *extra = NULL;
    if (x->b) { /* f(*xs) */
        PISSA_TRY(ev(c, x->b, &star));
        PISSA_TRY(jx_iterate(c, x, star, &extra));
    }
    if (x->c) { /* f(**d) */
        PISSA_TRY(ev(c, x->c, &star2));
        if (star2.t != JV_DICT)
            return jx_error(c, x, "argument after ** must be a mapping, not %s", jv_type_name(star2));
    }
    size_t n = (size_t)x->n + (extra ? extra->n : 0), nkw = (size_t)x->nkw + (x->c ? star2.u.d->n : 0);
    if (n > INT32_MAX || nkw > INT32_MAX) return jx_error(c, x, "too many arguments");
    a->n = (int)n;
    a->nkw = (int)nkw;
    a->pos = ja_alloc(c->a, (n + 1) * sizeof *a->pos);
    a->kw = ja_alloc(c->a, (nkw + 1) * sizeof *a->kw);
    const jstr **names = ja_alloc(c->a, (nkw + 1) * sizeof *names);
    if (!a->pos || !a->kw || !names) return jx_oom(c, x);
    a->kwnames = names;
    for (int i = 0; i < x->n; i++) PISSA_TRY(ev(c, x->items[i], &a->pos[i]));
    for (size_t i = 0; extra && i < extra->n; i++) a->pos[(size_t)x->n + i] = extra->v[i];
    for (int i = 0; i < x->nkw; i++) {
        names[i] = x->kwnames[i];
        PISSA_TRY(ev(c, x->kwvals[i], &a->kw[i]));
    }
    for (size_t i = 0; x->c && i < star2.u.d->n; i++) {
        jv k = star2.u.d->k[i];
        if (k.t != JV_STR) return jx_error(c, x, "keywords must be strings");
        names[(size_t)x->nkw + i] = k.u.s;
        a->kw[(size_t)x->nkw + i] = star2.u.d->v[i];
    }
    return PISSA_OK;
}

/* Renders BODY into a buffer of its own and returns the text. */
static pissa_status capture(jctx *c, const jnode *body, jv *out) {
    pissa__strbuf buf = {0}, *saved = c->out;
    c->out = &buf;
    pissa_status st = exec_body(c, body);
    c->out = saved;
    if (st == PISSA_OK && buf.oom) st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
    if (st == PISSA_OK) {
        const jstr *s = js_new(c->a, buf.p ? buf.p : "", buf.n);
        if (!s) st = jx_oom(c, body);
        else *out = jv_str(s);
    }
    free(buf.p);
    return st;
}

static pissa_status call_macro(jctx *c, const jnode *at, const jmacro *m, const jargs *a, jv *out) {
    const jnode *def = m->def;
    if (c->depth >= c->lim->max_depth)
        return jx_error(c, at, "macro calls nested deeper than %d (the limit)", c->lim->max_depth);
    jscope *s = scope_new(c, m->closure);
    jlist *varargs = jl_new(c->a, 1);
    jdict *kwargs = jd_new(c->a);
    if (!s || !varargs || !kwargs) return jx_oom(c, at);
    varargs->tuple = 1;
    jscope *saved = c->scope;
    c->scope = s;
    pissa_status st = PISSA_OK;
    for (int i = 0; i < def->nkw && st == PISSA_OK; i++) {
        jv v = jv_undef(NULL);
        int found = 0;
        if (i < a->n) {
            v = a->pos[i];
            found = 1;
        }
        for (int k = 0; k < a->nkw; k++)
            if (a->kwnames[k]->n == def->kwnames[i]->n &&
                !memcmp(a->kwnames[k]->p, def->kwnames[i]->p, a->kwnames[k]->n)) {
                if (found) st = jx_error(c, at, "macro got multiple values for argument '%s'", def->kwnames[i]->p);
                v = a->kw[k];
                found = 1;
            }
        if (!found && def->kwvals[i]) st = ev(c, def->kwvals[i], &v);
        else if (!found) {
            pissa__strbuf b = {0};
            pissa__sb_puts(&b, "parameter '");
            pissa__sb_puts(&b, def->kwnames[i]->p);
            pissa__sb_puts(&b, "' was not provided");
            v = jv_undef(b.oom ? NULL : js_new(c->a, b.p, b.n));
            free(b.p);
        }
        if (st == PISSA_OK) st = assign(c, at, def->kwnames[i], v);
    }
    for (int i = def->nkw; i < a->n && st == PISSA_OK; i++)
        if (!jl_push(c->a, varargs, a->pos[i])) st = jx_oom(c, at);
    for (int k = 0; k < a->nkw && st == PISSA_OK; k++) {
        int named = 0;
        for (int i = 0; i < def->nkw; i++)
            named |= a->kwnames[k]->n == def->kwnames[i]->n &&
                     !memcmp(a->kwnames[k]->p, def->kwnames[i]->p, a->kwnames[k]->n);
        if (!named && !jd_set(c->a, kwargs, jv_str(a->kwnames[k]), a->kw[k])) st = jx_oom(c, at);
    }
    if (st == PISSA_OK) {
        const jstr *vn = js_new(c->a, "varargs", 7), *kn = js_new(c->a, "kwargs", 6), *cn = js_new(c->a, "caller", 6);
        if (!vn || !kn || !cn) st = jx_oom(c, at);
        if (st == PISSA_OK) st = assign(c, at, vn, (jv){.t = JV_LIST, .u.l = varargs});
        if (st == PISSA_OK) st = assign(c, at, kn, (jv){.t = JV_DICT, .u.d = kwargs});
        if (st == PISSA_OK && m->caller.t != JV_UNDEF) st = assign(c, at, cn, m->caller);
    }
    c->depth++;
    if (st == PISSA_OK) st = capture(c, def->body, out);
    c->depth--;
    c->scope = saved;
    return st;
}

pissa_status jx_call(jctx *c, const jnode *at, jv callee, const jargs *a, jv *out) {
    switch (callee.t) {
    case JV_MACRO: return call_macro(c, at, callee.u.m, a, out);
    case JV_BUILTIN: return jb_builtin(c, at, (int)callee.u.i, a, out);
    case JV_METHOD: return jb_method(c, at, callee.u.bm->self, callee.u.bm->name, a, out);
    case JV_UNDEF: return jx_undefined_error(c, at, callee);
    default: return jx_error(c, at, "'%s' object is not callable", jv_type_name(callee));
    }
}

static pissa_status ev(jctx *c, const jnode *x, jv *out) {
    PISSA_TRY(jx_step(c, x, 1));
    jv a, b;
    switch (x->kind) {
    case E_CONST:
        *out = x->val.t == JV_STR && !x->val.u.s ? c->hole : x->val;
        return PISSA_OK;
    case E_NAME: *out = lookup(c, x->name); return PISSA_OK;
    case E_LIST: case E_TUPLE: {
        jlist *l = jl_new(c->a, (size_t)x->n);
        if (!l) return jx_oom(c, x);
        l->tuple = x->kind == E_TUPLE;
        for (int i = 0; i < x->n; i++) PISSA_TRY(ev(c, x->items[i], &l->v[l->n++]));
        *out = (jv){.t = JV_LIST, .u.l = l};
        return PISSA_OK;
    }
    case E_DICT: {
        jdict *d = jd_new(c->a);
        if (!d) return jx_oom(c, x);
        for (int i = 0; i + 1 < x->n; i += 2) {
            PISSA_TRY(ev(c, x->items[i], &a));
            PISSA_TRY(ev(c, x->items[i + 1], &b));
            if (a.t == JV_LIST && !a.u.l->tuple) return jx_error(c, x, "unhashable type: 'list'");
            if (a.t == JV_DICT) return jx_error(c, x, "unhashable type: 'dict'");
            if (!jd_set(c->a, d, a, b)) return jx_oom(c, x);
        }
        *out = (jv){.t = JV_DICT, .u.d = d};
        return PISSA_OK;
    }
    case E_ATTR:
        PISSA_TRY(ev(c, x->a, &a));
        return jx_getattr(c, x, a, x->name, out);
    case E_ITEM:
        PISSA_TRY(ev(c, x->a, &a));
        PISSA_TRY(ev(c, x->b, &b));
        return jx_getitem(c, x, a, b, out);
    case E_SLICE: {
        jv lo = jv_none(), hi = jv_none(), st = jv_none();
        PISSA_TRY(ev(c, x->a, &a));
        if (x->b) PISSA_TRY(ev(c, x->b, &lo));
        if (x->c) PISSA_TRY(ev(c, x->c, &hi));
        if (x->body) PISSA_TRY(ev(c, x->body, &st));
        return slice(c, x, a, lo, hi, st, out);
    }
    case E_CALL: {
        jargs args;
        PISSA_TRY(ev(c, x->a, &a));
        PISSA_TRY(eval_args(c, x, &args));
        return jx_call(c, x, a, &args, out);
    }
    case E_FILTER: {
        jargs args;
        PISSA_TRY(ev(c, x->a, &a));
        PISSA_TRY(eval_args(c, x, &args));
        return jb_filter(c, x, x->name, a, &args, out);
    }
    case E_TEST: {
        jargs args;
        int r;
        PISSA_TRY(ev(c, x->a, &a));
        PISSA_TRY(eval_args(c, x, &args));
        PISSA_TRY(jb_test(c, x, x->name, a, &args, &r));
        *out = jv_bool(x->op ? !r : r);
        return PISSA_OK;
    }
    case E_NEG: case E_POS:
        PISSA_TRY(ev(c, x->a, &a));
        if (a.t == JV_UNDEF) return jx_undefined_error(c, x, a);
        if (a.t == JV_FLOAT) *out = jv_float(x->kind == E_NEG ? -a.u.f : a.u.f);
        else if (a.t == JV_INT || a.t == JV_BOOL) {
            if (x->kind == E_NEG && a.u.i == INT64_MIN) return jx_error(c, x, "integer overflow");
            *out = jv_int(x->kind == E_NEG ? -a.u.i : a.u.i);
        } else
            return jx_error(c, x, "bad operand type for unary %c: '%s'", x->kind == E_NEG ? '-' : '+', jv_type_name(a));
        return PISSA_OK;
    case E_NOT:
        PISSA_TRY(ev(c, x->a, &a));
        *out = jv_bool(!jv_truthy(a));
        return PISSA_OK;
    case E_AND: case E_OR: /* Python's: the deciding operand itself */
        PISSA_TRY(ev(c, x->a, &a));
        if (jv_truthy(a) == (x->kind == E_OR)) {
            *out = a;
            return PISSA_OK;
        }
        return ev(c, x->b, out);
    case E_COND:
        PISSA_TRY(ev(c, x->a, &a));
        if (jv_truthy(a)) return ev(c, x->b, out);
        if (x->c) return ev(c, x->c, out);
        *out = jv_undef(NULL);
        return PISSA_OK;
    case E_BINOP:
        PISSA_TRY(ev(c, x->a, &a));
        PISSA_TRY(ev(c, x->b, &b));
        return jb_binop(c, x, x->op, a, b, out);
    case E_CONCAT: {
        pissa__strbuf buf = {0};
        pissa_status st = PISSA_OK;
        pissa__sb_put(&buf, "", 0);
        for (int i = 0; i < x->n && st == PISSA_OK; i++)
            if ((st = ev(c, x->items[i], &a)) == PISSA_OK) jv_to_text(&buf, a);
        const jstr *s = st == PISSA_OK && !buf.oom ? js_new(c->a, buf.p, buf.n) : NULL;
        free(buf.p);
        PISSA_TRY(st);
        if (!s) return jx_oom(c, x);
        *out = jv_str(s);
        return PISSA_OK;
    }
    case E_COMPARE: {
        PISSA_TRY(ev(c, x->a, &a));
        for (int i = 0; i < x->n; i++) {
            PISSA_TRY(ev(c, x->items[i], &b));
            int op = x->ops[i], r, cmp;
            if (op == OP_EQ || op == OP_NE) {
                r = jv_equal(a, b, &c->steps) == (op == OP_EQ);
                PISSA_TRY(jx_step(c, x, 0));
            } else if (op == OP_IN || op == OP_NOTIN) {
                PISSA_TRY(jb_contains(c, x, b, a, &r));
                if (op == OP_NOTIN) r = !r;
            } else {
                if (a.t == JV_UNDEF || b.t == JV_UNDEF) return jx_undefined_error(c, x, a.t == JV_UNDEF ? a : b);
                if (a.t == JV_STR && b.t == JV_STR) PISSA_TRY(jx_step(c, x, a.u.s->n / 64));
                if (!jv_compare(a, b, &cmp)) {
                    static const char *sym[] = {"==", "!=", "<", ">", "<=", ">="};
                    return jx_error(c, x, "'%s' not supported between instances of '%s' and '%s'",
                                    sym[op - OP_EQ], jv_type_name(a), jv_type_name(b));
                }
                r = op == OP_LT ? cmp < 0 : op == OP_GT ? cmp > 0 : op == OP_LE ? cmp <= 0 : cmp >= 0;
            }
            if (!r) {
                *out = jv_bool(0);
                return PISSA_OK;
            }
            a = b;
        }
        *out = jv_bool(1);
        return PISSA_OK;
    }
    default: return jx_error(c, x, "internal error: a statement where an expression belongs");
    }
}

/* ---- statements ---- */

static pissa_status out_text(jctx *c, const jnode *at, const char *p, size_t n) {
    if (c->out->n + n > c->lim->max_output)
        return jx_error(c, at, "the output passed %zu bytes (the limit)", c->lim->max_output);
    pissa__sb_put(c->out, p, n);
    return c->out->oom ? pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory") : PISSA_OK;
}

static pissa_status exec_for(jctx *c, const jnode *x) {
    jv seq;
    jlist *items;
    PISSA_TRY(ev(c, x->a, &seq));
    PISSA_TRY(jx_iterate(c, x, seq, &items));
    jscope *outer = c->scope;
    pissa_status st = PISSA_OK;
    if (x->b) { /* {% for x in xs if cond %}: filter first, so that loop.length counts what is visited */
        jlist *kept = jl_new(c->a, items->n);
        if (!kept) return jx_oom(c, x);
        for (size_t i = 0; i < items->n && st == PISSA_OK; i++) {
            jv keep;
            if (!(c->scope = scope_new(c, outer))) st = jx_oom(c, x);
            if (st == PISSA_OK) st = bind(c, x->target, items->v[i]);
            if (st == PISSA_OK) st = ev(c, x->b, &keep);
            if (st == PISSA_OK && jv_truthy(keep)) kept->v[kept->n++] = items->v[i];
        }
        c->scope = outer;
        PISSA_TRY(st);
        items = kept;
    }
    jloop *L = ja_alloc(c->a, sizeof *L);
    if (!L) return jx_oom(c, x);
    L->items = items;
    const jstr *loop_name = js_new(c->a, "loop", 4);
    if (!loop_name) return jx_oom(c, x);
    for (size_t i = 0; i < items->n && st == PISSA_OK; i++) {
        L->index0 = i;
        if (!(c->scope = scope_new(c, outer))) {
            st = jx_oom(c, x);
            break;
        }
        st = assign(c, x, loop_name, (jv){.t = JV_LOOP, .u.loop = L});
        if (st == PISSA_OK) st = bind(c, x->target, items->v[i]);
        if (st == PISSA_OK) st = exec_body(c, x->body);
        if (c->flow == 1) {
            c->flow = 0;
            break;
        }
        c->flow = 0;
    }
    c->scope = outer;
    PISSA_TRY(st);
    if (items->n == 0 && x->orelse) return exec_body(c, x->orelse);
    return PISSA_OK;
}

static pissa_status exec_stmt(jctx *c, const jnode *x) {
    PISSA_TRY(jx_step(c, x, 1));
    jv v;
    switch (x->kind) {
    case N_BODY: return exec_body(c, x);
    case N_TEXT: return out_text(c, x, x->val.u.s->p, x->val.u.s->n);
    case N_OUTPUT: {
        PISSA_TRY(ev(c, x->a, &v));
        if (v.t == JV_STR) return out_text(c, x, v.u.s->p, v.u.s->n);
        if (v.t == JV_UNDEF) return PISSA_OK;
        const jstr *s = jx_text(c, v);
        if (!s) return jx_oom(c, x);
        return out_text(c, x, s->p, s->n);
    }
    case N_IF:
        for (const jnode *b = x; b; b = b->orelse) {
            if (b->kind != N_IF) return exec_body(c, b); /* the else body */
            PISSA_TRY(ev(c, b->a, &v));
            if (jv_truthy(v)) return exec_body(c, b->body);
        }
        return PISSA_OK;
    case N_FOR: return exec_for(c, x);
    case N_SET:
        PISSA_TRY(ev(c, x->a, &v));
        if (x->target->kind == E_ATTR) {
            jv ns = lookup(c, x->target->a->name);
            if (ns.t != JV_NS) return jx_error(c, x, "cannot assign attribute on non-namespace object");
            return jd_set(c->a, ns.u.d, jv_str(x->target->name), v) ? PISSA_OK : jx_oom(c, x);
        }
        return bind(c, x->target, v);
    case N_SETBLOCK: case N_FILTERBLOCK: {
        PISSA_TRY(capture(c, x->body, &v));
        if (x->a) { /* the filter chain, with the block's text in its hole */
            jv saved = c->hole;
            c->hole = v;
            pissa_status st = ev(c, x->a, &v);
            c->hole = saved;
            PISSA_TRY(st);
        }
        if (x->kind == N_SETBLOCK) return bind(c, x->target, v);
        const jstr *s = jx_text(c, v);
        if (!s) return jx_oom(c, x);
        return out_text(c, x, s->p, s->n);
    }
    case N_MACRO: {
        jmacro *m = ja_alloc(c->a, sizeof *m);
        if (!m) return jx_oom(c, x);
        m->def = x;
        m->closure = c->scope;
        m->caller = jv_undef(NULL);
        return assign(c, x, x->name, (jv){.t = JV_MACRO, .u.m = m});
    }
    case N_CALLBLOCK: {
        const jnode *call = x->a;
        jmacro *caller = ja_alloc(c->a, sizeof *caller);
        jargs args;
        if (!caller) return jx_oom(c, x);
        caller->def = x;
        caller->closure = c->scope;
        caller->caller = jv_undef(NULL);
        PISSA_TRY(ev(c, call->a, &v));
        PISSA_TRY(eval_args(c, call, &args));
        if (v.t != JV_MACRO) return jx_error(c, x, "{%% call %%} needs a macro, not '%s'", jv_type_name(v));
        jmacro m = *v.u.m;
        m.caller = (jv){.t = JV_MACRO, .u.m = caller};
        jv r;
        PISSA_TRY(call_macro(c, x, &m, &args, &r));
        return out_text(c, x, r.u.s->p, r.u.s->n);
    }
    case N_GENERATION: { /* as transformers' AssistantTracker: the result's length, plus what the body printed */
        size_t before = c->out->n;
        PISSA_TRY(exec_body(c, x->body));
        if (!c->track) return PISSA_OK;
        size_t start = c->out == c->top ? before : c->top->n, len = c->out->n - before;
        if (c->n_spans + 2 > c->cap_spans) {
            size_t cap = c->cap_spans ? 2 * c->cap_spans : 16, *v = realloc(c->spans, cap * sizeof *v);
            if (!v) return jx_oom(c, x);
            c->spans = v;
            c->cap_spans = cap;
        }
        c->spans[c->n_spans++] = start;
        c->spans[c->n_spans++] = start + len;
        return PISSA_OK;
    }
    case N_BREAK: c->flow = 1; return PISSA_OK;
    case N_CONTINUE: c->flow = 2; return PISSA_OK;
    default: return jx_error(c, x, "internal error: an expression where a statement belongs");
    }
}

static pissa_status exec_body(jctx *c, const jnode *body) {
    for (int i = 0; i < body->n && !c->flow; i++) PISSA_TRY(exec_stmt(c, body->items[i]));
    return PISSA_OK;
}

/* ---- entry points ---- */

static pissa_status render(const pissa__jinja_template *t, jarena *arena, jv context,
                           const pissa__jinja_limits *limits, char **out, size_t *out_len, size_t **spans,
                           size_t *n_spans) {
    pissa__jinja_limits lim = limits ? *limits : (pissa__jinja_limits){0};
    if (!lim.max_output) lim.max_output = PISSA__JINJA_MAX_OUTPUT;
    if (!lim.max_steps) lim.max_steps = PISSA__JINJA_MAX_STEPS;
    if (!lim.max_depth) lim.max_depth = PISSA__JINJA_MAX_DEPTH;
    if (!lim.max_memory) lim.max_memory = PISSA__JINJA_MAX_MEMORY;
    pissa__strbuf buf = {0};
    jctx c = {.a = arena, .out = &buf, .lim = &lim, .hole = jv_undef(NULL), .top = &buf, .track = spans != NULL};
    if (!(c.scope = scope_new(&c, NULL))) return jx_oom(&c, NULL);
    static const struct { const char *name; int id; } globals[] = {
        {"range", BI_RANGE}, {"namespace", BI_NAMESPACE}, {"dict", BI_DICT}, {"raise_exception", BI_RAISE},
        {"strftime_now", BI_STRFTIME},
    };
    for (size_t i = 0; i < sizeof globals / sizeof globals[0]; i++) {
        const jstr *name = js_new(arena, globals[i].name, strlen(globals[i].name));
        if (!name || !jd_set(arena, c.scope->vars, jv_str(name), (jv){.t = JV_BUILTIN, .u.i = globals[i].id}))
            return jx_oom(&c, NULL);
    }
    if (context.t == JV_DICT)
        for (size_t i = 0; i < context.u.d->n; i++)
            if (!jd_set(arena, c.scope->vars, context.u.d->k[i], context.u.d->v[i])) return jx_oom(&c, NULL);
    pissa_status st = exec_body(&c, t->root);
    if (st == PISSA_OK && buf.oom) st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
    if (st == PISSA_OK && !buf.p && !(buf.p = calloc(1, 1)))
        st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
    if (st != PISSA_OK) {
        free(buf.p);
        free(c.spans);
        return st;
    }
    *out = buf.p;
    if (out_len) *out_len = buf.n;
    if (spans) *spans = c.spans, *n_spans = c.n_spans / 2;
    return PISSA_OK;
}

static jarena render_arena(const pissa__jinja_limits *limits) {
    return (jarena){.limit = limits && limits->max_memory ? limits->max_memory : PISSA__JINJA_MAX_MEMORY};
}

pissa_status pissa__jinja_render_vars(const pissa__jinja_template *t, int n, const char *const *names,
                                      const char *const *values, const char *object_json,
                                      const pissa__jinja_limits *limits, char **out, size_t *out_len) {
    if (!t || !out || (n > 0 && (!names || !values)))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "chat template render: NULL argument");
    jarena arena = render_arena(limits);
    jdict *ctx = jd_new(&arena);
    pissa_status st = ctx ? PISSA_OK : pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
    char err[160];
    for (int i = 0; i <= n && st == PISSA_OK; i++) {
        const char *text = i < n ? values[i] : object_json;
        jv v;
        if (!text) continue;
        if (!jv_from_json(&arena, text, &v, err)) {
            st = pissa__fail(arena.failed ? PISSA_ERR_NOMEM : PISSA_ERR_INVALID_ARG, "chat template variable %s: %s",
                             i < n ? names[i] : "object", err);
        } else if (i < n) {
            const jstr *name = js_new(&arena, names[i], strlen(names[i]));
            if (!name || !jd_set(&arena, ctx, jv_str(name), v))
                st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
        } else if (v.t != JV_DICT) {
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "chat template context: not a JSON object");
        } else {
            for (size_t k = 0; k < v.u.d->n && st == PISSA_OK; k++) {
                if (jd_get(ctx, v.u.d->k[k]))
                    st = pissa__fail(PISSA_ERR_INVALID_ARG, "chat template context: '%s' is given twice",
                                     v.u.d->k[k].u.s->p);
                else if (!jd_set(&arena, ctx, v.u.d->k[k], v.u.d->v[k]))
                    st = pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory");
            }
        }
    }
    if (st == PISSA_OK) st = render(t, &arena, (jv){.t = JV_DICT, .u.d = ctx}, limits, out, out_len, NULL, NULL);
    ja_free(&arena);
    return st;
}

pissa_status pissa__jinja_render(const pissa__jinja_template *t, const char *context_json,
                                 const pissa__jinja_limits *limits, char **out, size_t *out_len) {
    return pissa__jinja_render_vars(t, 0, NULL, NULL, context_json, limits, out, out_len);
}

pissa_status pissa__jinja_render_cjson(const pissa__jinja_template *t, const cJSON *context,
                                       const pissa__jinja_limits *limits, char **out, size_t *out_len) {
    return pissa__jinja_render_tracked(t, context, limits, out, out_len, NULL, NULL);
}

int pissa__jinja_has_generation(const pissa__jinja_template *t) { return t && t->has_generation; }

pissa_status pissa__jinja_render_tracked(const pissa__jinja_template *t, const cJSON *context,
                                         const pissa__jinja_limits *limits, char **out, size_t *out_len,
                                         size_t **spans, size_t *n_spans) {
    if (spans) *spans = NULL, *n_spans = 0;
    if (!t || !out || (spans && !n_spans))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "chat template render: NULL argument");
    if (context && !cJSON_IsObject(context))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "chat template context: not a JSON object");
    jarena arena = render_arena(limits);
    jv ctx = jv_none();
    if (context && !jv_from_cjson(&arena, context, &ctx, 0)) {
        ja_free(&arena);
        return pissa__fail(PISSA_ERR_NOMEM, "chat template context: out of memory or nested deeper than 512");
    }
    pissa_status st = render(t, &arena, ctx, limits, out, out_len, spans, n_spans);
    ja_free(&arena);
    return st;
}
