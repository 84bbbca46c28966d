/* Jinja strings: Python's str methods (strip, split, replace, startswith, find, format, ...) and the helpers the
 * filters share, on UTF-8 text. Case mappings are ASCII-only (docs/chat.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

#define NOMEM() pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory")

/* Argument POS, or the keyword NAME, or DEF. */
jv jb_arg(const jargs *a, int pos, const char *name, jv def) {
    if (pos >= 0 && pos < a->n) return a->pos[pos];
    for (int i = 0; i < a->nkw; i++)
        if (name && !strcmp(a->kwnames[i]->p, name)) return a->kw[i];
    return def;
}

jv jb_mkstr(jctx *c, const char *p, size_t n) {
    const jstr *s = js_new(c->a, p, n);
    return s ? jv_str(s) : jv_undef(NULL);
}

/* Finishes a result built in a strbuf: the string, or an error. */
pissa_status jb_sb_result(jctx *c, const jnode *at, pissa__strbuf *b, jv *out) {
    pissa_status st = PISSA_OK;
    if (b->oom) st = NOMEM();
    else {
        const jstr *s = js_new(c->a, b->p ? b->p : "", b->n);
        if (!s) st = jx_oom(c, at);
        else *out = jv_str(s);
    }
    free(b->p);
    return st;
}

pissa_status jb_need_str(jctx *c, const jnode *at, jv x, const char *what) {
    if (x.t == JV_STR) return PISSA_OK;
    if (x.t == JV_UNDEF) return jx_undefined_error(c, at, x);
    return jx_error(c, at, "%s expects a string, not '%s'", what, jv_type_name(x));
}

static int ascii_lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }
static int ascii_upper(int ch) { return ch >= 'a' && ch <= 'z' ? ch - 32 : ch; }
static int is_alpha(int ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'); }

/* First occurrence of NEEDLE in HAY, or NULL; the bytes compared are charged to the step count (a naive search
 * can take |hay|·|needle| comparisons, which a hostile template could otherwise use to hang the render). */
const char *jb_find_bytes(jctx *c, const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0) return hay;
    uint64_t work = 0;
    const char *hit = NULL;
    for (size_t i = 0; i + m <= n;) {
        const char *p = memchr(hay + i, needle[0], n - m + 1 - i);
        if (!p) break;
        size_t k = 1;
        while (k < m && p[k] == needle[k]) k++;
        work += k;
        if (k == m) {
            hit = p;
            break;
        }
        i = (size_t)(p - hay) + 1;
    }
    c->steps += work / 64 + n / 64;
    return hit;
}

size_t jb_cp_count(const jstr *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) n += ((unsigned char)s->p[i] & 0xC0) != 0x80;
    return n;
}

/* ---- str methods ---- */

/* strip/lstrip/rstrip: with CHARS NULL, Python whitespace; else any code point of CHARS. */
static int in_chars(const jstr *chars, const char *p, size_t n, size_t *len) {
    if (!chars) return pissa__jinja_space_at((const unsigned char *)p, n, len);
    *len = 1;
    while (*len < n && ((unsigned char)p[*len] & 0xC0) == 0x80) (*len)++;
    for (size_t i = 0; i + *len <= chars->n; i++)
        if (!memcmp(chars->p + i, p, *len) && (i == 0 || ((unsigned char)chars->p[i] & 0xC0) != 0x80)) return 1;
    return 0;
}

void jb_strip_range(const jstr *s, const jstr *chars, int left, int right, size_t *b, size_t *e) {
    size_t i = 0, n = s->n, len;
    if (left)
        while (i < n && in_chars(chars, s->p + i, n - i, &len)) i += len;
    if (right)
        while (n > i) {
            size_t k = n - 1;
            while (k > i && ((unsigned char)s->p[k] & 0xC0) == 0x80) k--;
            if (!in_chars(chars, s->p + k, n - k, &len) || k + len != n) break;
            n = k;
        }
    *b = i;
    *e = n;
}

pissa_status jb_strip(jctx *c, const jnode *at, jv x, jv chars, int left, int right, jv *out) {
    PISSA_TRY(jb_need_str(c, at, x, "strip"));
    if (chars.t != JV_STR && chars.t != JV_NONE && chars.t != JV_UNDEF)
        return jx_error(c, at, "strip arg must be None or str");
    size_t b, e; /* each code point is looked up in CHARS */
    PISSA_TRY(jx_step(c, at, (x.u.s->n / 64 + 1) * (chars.t == JV_STR ? chars.u.s->n / 16 + 1 : 1)));
    jb_strip_range(x.u.s, chars.t == JV_STR ? chars.u.s : NULL, left, right, &b, &e);
    *out = jb_mkstr(c, x.u.s->p + b, e - b);
    return out->t == JV_STR ? PISSA_OK : jx_oom(c, at);
}

/* Python's str.split / rsplit: by SEP, or (SEP none) by runs of whitespace; at most MAXSPLIT splits. */
pissa_status jb_split(jctx *c, const jnode *at, jv x, jv sep, jv maxsplit, int from_right, jv *out) {
    PISSA_TRY(jb_need_str(c, at, x, "split"));
    int64_t max = maxsplit.t == JV_INT ? maxsplit.u.i : -1;
    jlist *l = jl_new(c->a, 4);
    if (!l) return jx_oom(c, at);
    const jstr *s = x.u.s;
    if (sep.t == JV_STR) {
        const jstr *d = sep.u.s;
        if (d->n == 0) return jx_error(c, at, "empty separator");
        int64_t done = 0;
        if (!from_right) {
            size_t start = 0;
            for (size_t i = 0; i + d->n <= s->n && (max < 0 || done < max);) {
                if (memcmp(s->p + i, d->p, d->n)) {
                    i++;
                    continue;
                }
                jv piece = jb_mkstr(c, s->p + start, i - start);
                if (piece.t != JV_STR || !jl_push(c->a, l, piece)) return jx_oom(c, at);
                i += d->n;
                start = i;
                done++;
            }
            jv tail = jb_mkstr(c, s->p + start, s->n - start);
            if (tail.t != JV_STR || !jl_push(c->a, l, tail)) return jx_oom(c, at);
        } else { /* from the right, then reversed */
            size_t end = s->n;
            for (size_t i = s->n; i >= d->n && (max < 0 || done < max);) {
                if (memcmp(s->p + i - d->n, d->p, d->n)) {
                    i--;
                    continue;
                }
                jv piece = jb_mkstr(c, s->p + i, end - i);
                if (piece.t != JV_STR || !jl_push(c->a, l, piece)) return jx_oom(c, at);
                i -= d->n;
                end = i;
                done++;
            }
            jv head = jb_mkstr(c, s->p, end);
            if (head.t != JV_STR || !jl_push(c->a, l, head)) return jx_oom(c, at);
            for (size_t i = 0; i < l->n / 2; i++) {
                jv t = l->v[i];
                l->v[i] = l->v[l->n - 1 - i];
                l->v[l->n - 1 - i] = t;
            }
        }
        PISSA_TRY(jx_step(c, at, s->n / 16 + l->n));
        *out = jv_list(l);
        return PISSA_OK;
    }
    if (sep.t != JV_NONE && sep.t != JV_UNDEF) return jx_error(c, at, "must be str or None, not %s", jv_type_name(sep));
    /* whitespace split (left to right; rsplit with a limit is rare enough to share it) */
    size_t i = 0, len;
    int64_t done = 0;
    while (i < s->n) {
        while (i < s->n && pissa__jinja_space_at((const unsigned char *)s->p + i, s->n - i, &len)) i += len;
        if (i >= s->n) break;
        size_t j = i;
        if (max >= 0 && done >= max) { /* the rest, as it is (Python keeps its trailing whitespace) */
            jv piece = jb_mkstr(c, s->p + i, s->n - i);
            if (piece.t != JV_STR || !jl_push(c->a, l, piece)) return jx_oom(c, at);
            break;
        }
        while (j < s->n && !pissa__jinja_space_at((const unsigned char *)s->p + j, s->n - j, &len)) j++;
        jv piece = jb_mkstr(c, s->p + i, j - i);
        if (piece.t != JV_STR || !jl_push(c->a, l, piece)) return jx_oom(c, at);
        done++;
        i = j;
    }
    PISSA_TRY(jx_step(c, at, s->n / 16 + l->n));
    *out = jv_list(l);
    return PISSA_OK;
}

/* Line breaks of str.splitlines(): \n, \r, \r\n, \v, \f, \x1c-\x1e, U+0085, U+2028, U+2029. Length of the break at
 * P, or 0. */
static size_t line_break(const char *p, size_t n) {
    unsigned char c = (unsigned char)p[0];
    if (c == '\r') return n > 1 && p[1] == '\n' ? 2 : 1;
    if (c == '\n' || c == '\v' || c == '\f' || (c >= 0x1C && c <= 0x1E)) return 1;
    if (c == 0xC2 && n > 1 && (unsigned char)p[1] == 0x85) return 2;
    if (c == 0xE2 && n > 2 && (unsigned char)p[1] == 0x80 &&
        ((unsigned char)p[2] == 0xA8 || (unsigned char)p[2] == 0xA9))
        return 3;
    return 0;
}

pissa_status jb_splitlines(jctx *c, const jnode *at, const jstr *s, jlist **out) {
    jlist *l = jl_new(c->a, 4);
    if (!l) return jx_oom(c, at);
    size_t start = 0, i = 0;
    while (i < s->n) {
        size_t br = line_break(s->p + i, s->n - i);
        if (!br) {
            i++;
            continue;
        }
        jv line = jb_mkstr(c, s->p + start, i - start);
        if (line.t != JV_STR || !jl_push(c->a, l, line)) return jx_oom(c, at);
        i += br;
        start = i;
    }
    if (start < s->n) {
        jv line = jb_mkstr(c, s->p + start, s->n - start);
        if (line.t != JV_STR || !jl_push(c->a, l, line)) return jx_oom(c, at);
    }
    *out = l;
    return PISSA_OK;
}

pissa_status jb_replace(jctx *c, const jnode *at, jv x, jv old, jv new, jv count, jv *out) {
    PISSA_TRY(jb_need_str(c, at, x, "replace"));
    const jstr *s = x.u.s, *o = old.t == JV_STR ? old.u.s : jx_text(c, old),
               *w = new.t == JV_STR ? new.u.s : jx_text(c, new);
    if (!o || !w) return jx_oom(c, at);
    int64_t max = count.t == JV_INT ? count.u.i : -1;
    pissa__strbuf b = {0};
    pissa__sb_put(&b, "", 0);
    size_t i = 0;
    int64_t done = 0;
    if (o->n == 0) { /* Python inserts NEW between every code point and at both ends */
        for (; i <= s->n; done++) {
            if (max >= 0 && done >= max) break;
            pissa__sb_put(&b, w->p, w->n);
            if (i == s->n) {
                i++;
                break;
            }
            size_t j = i + 1;
            while (j < s->n && ((unsigned char)s->p[j] & 0xC0) == 0x80) j++;
            pissa__sb_put(&b, s->p + i, j - i);
            i = j;
        }
        if (i <= s->n) pissa__sb_put(&b, s->p + i, s->n - i);
    } else {
        while (i < s->n) {
            const char *hit = (max < 0 || done < max) ? jb_find_bytes(c, s->p + i, s->n - i, o->p, o->n) : NULL;
            if (!hit) break;
            pissa__sb_put(&b, s->p + i, (size_t)(hit - (s->p + i)));
            pissa__sb_put(&b, w->p, w->n);
            i = (size_t)(hit - s->p) + o->n;
            done++;
        }
        pissa__sb_put(&b, s->p + i, s->n - i);
    }
    if (jx_step(c, at, s->n / 16 + (uint64_t)done) != PISSA_OK) {
        free(b.p);
        return jx_step(c, at, 0);
    }
    return jb_sb_result(c, at, &b, out);
}

pissa_status jb_case(jctx *c, const jnode *at, jv x, int mode, jv *out) {
    /* mode: 'u' upper, 'l' lower, 'c' capitalize, 't' str.title(), 'T' jinja2's title filter */
    const jstr *s = x.t == JV_STR ? x.u.s : jx_text(c, x);
    if (!s) return jx_oom(c, at);
    char *p = malloc(s->n + 1);
    if (!p) return NOMEM();
    int prev_cased = 0, word_start = 1;
    for (size_t i = 0; i < s->n; i++) {
        int ch = (unsigned char)s->p[i];
        switch (mode) {
        case 'u': ch = ascii_upper(ch); break;
        case 'l': ch = ascii_lower(ch); break;
        case 'c': ch = i == 0 ? ascii_upper(ch) : ascii_lower(ch); break;
        case 't':
            ch = prev_cased ? ascii_lower(ch) : ascii_upper(ch);
            prev_cased = is_alpha(ch) || ch >= 0x80;
            break;
        default: /* jinja2: words begin after spaces, '-', '(', '{', '[' or '<' */
            ch = word_start ? ascii_upper(ch) : ascii_lower(ch);
            word_start = ch == ' ' || (ch >= 0x09 && ch <= 0x0D) || ch == '-' || ch == '(' || ch == '{' ||
                         ch == '[' || ch == '<';
        }
        p[i] = (char)ch;
    }
    *out = jb_mkstr(c, p, s->n);
    free(p);
    return out->t == JV_STR ? PISSA_OK : jx_oom(c, at);
}

pissa_status jb_attr_path(jctx *c, const jnode *at, jv v, const jstr *path, jv *out) {
    size_t start = 0;
    for (size_t i = 0; i <= path->n; i++) {
        if (i < path->n && path->p[i] != '.') continue;
        const char *part = path->p + start;
        size_t n = i - start, k = 0;
        while (k < n && part[k] >= '0' && part[k] <= '9') k++;
        jv key;
        if (n > 0 && k == n && n < 18) {
            key = jv_int(strtoll(part, NULL, 10));
        } else {
            key = jb_mkstr(c, part, n);
            if (key.t != JV_STR) return jx_oom(c, at);
        }
        PISSA_TRY(jx_getitem(c, at, v, key, &v));
        start = i + 1;
    }
    *out = v;
    return PISSA_OK;
}

pissa_status jb_join(jctx *c, const jnode *at, jv seq, jv sep, jv attribute, jv *out) {
    jlist *items;
    PISSA_TRY(jx_iterate(c, at, seq, &items));
    PISSA_TRY(jx_step(c, at, items->n));
    const jstr *d = sep.t == JV_UNDEF ? NULL : jx_text(c, sep);
    pissa__strbuf b = {0};
    pissa__sb_put(&b, "", 0);
    for (size_t i = 0; i < items->n; i++) {
        jv v = items->v[i];
        if (attribute.t == JV_STR) {
            pissa_status st = jb_attr_path(c, at, v, attribute.u.s, &v);
            if (st != PISSA_OK) {
                free(b.p);
                return st;
            }
        }
        if (i && d) pissa__sb_put(&b, d->p, d->n);
        jv_to_text(&b, v);
    }
    return jb_sb_result(c, at, &b, out);
}

/* "{} {name} {0}".format(...): replacement fields without format specs. */
static pissa_status do_format_method(jctx *c, const jnode *at, const jstr *f, const jargs *a, jv *out) {
    pissa__strbuf b = {0};
    int auto_idx = 0;
    for (size_t i = 0; i < f->n; i++) {
        char ch = f->p[i];
        if ((ch == '{' || ch == '}') && i + 1 < f->n && f->p[i + 1] == ch) {
            pissa__sb_put(&b, &ch, 1);
            i++;
            continue;
        }
        if (ch != '{') {
            pissa__sb_put(&b, &ch, 1);
            continue;
        }
        size_t j = i + 1;
        while (j < f->n && f->p[j] != '}') j++;
        if (j >= f->n || memchr(f->p + i + 1, ':', j - i - 1) || memchr(f->p + i + 1, '!', j - i - 1)) {
            free(b.p);
            return jx_error(c, at, "str.format: only {}, {N} and {name} fields are supported");
        }
        jv v = jv_undef(NULL);
        const char *field = f->p + i + 1;
        size_t fl = j - i - 1;
        if (fl == 0) v = jb_arg(a, auto_idx++, NULL, v);
        else if (field[0] >= '0' && field[0] <= '9') v = jb_arg(a, atoi(field), NULL, v);
        else
            for (int k = 0; k < a->nkw; k++)
                if (a->kwnames[k]->n == fl && !memcmp(a->kwnames[k]->p, field, fl)) v = a->kw[k];
        if (v.t == JV_UNDEF) {
            free(b.p);
            return jx_error(c, at, "str.format: no argument for {%.*s}", (int)fl, field);
        }
        jv_to_text(&b, v);
        i = j;
    }
    return jb_sb_result(c, at, &b, out);
}

/* Python's printf-style "fmt % args": %s %r %d %i %f (with a precision) and %%. */
pissa_status jb_percent_format(jctx *c, const jnode *at, const jstr *f, jv args, jv *out) {
    pissa__strbuf b = {0};
    size_t next = 0;
    jlist one = {.n = 1, .cap = 1, .v = &args};
    jlist *vals = args.t == JV_LIST && args.u.l->tuple ? args.u.l : &one;
    for (size_t i = 0; i < f->n; i++) {
        if (f->p[i] != '%') {
            pissa__sb_put(&b, f->p + i, 1);
            continue;
        }
        if (++i >= f->n) goto bad;
        int prec = -1;
        if (f->p[i] == '.') {
            prec = 0;
            while (++i < f->n && f->p[i] >= '0' && f->p[i] <= '9') prec = prec * 10 + (f->p[i] - '0');
            if (i >= f->n) goto bad;
        }
        char conv = f->p[i];
        if (conv == '%') {
            pissa__sb_put(&b, "%", 1);
            continue;
        }
        if (next >= vals->n) {
            free(b.p);
            return jx_error(c, at, "not enough arguments for format string");
        }
        jv v = vals->v[next++];
        char tmp[64];
        if (conv == 's') jv_to_text(&b, v);
        else if (conv == 'r') {
            if (v.t == JV_STR) { /* repr of a lone string: quoted */
                jlist l1 = {.n = 1, .cap = 1, .v = &v};
                pissa__strbuf r = {0};
                jv_to_text(&r, (jv){.t = JV_LIST, .u.l = &l1});
                if (r.p) pissa__sb_put(&b, r.p + 1, r.n - 2);
                free(r.p);
            } else jv_to_text(&b, v);
        } else if ((conv == 'd' || conv == 'i') && jv_is_number(v)) {
            snprintf(tmp, sizeof tmp, "%lld", v.t == JV_FLOAT ? (long long)v.u.f : (long long)v.u.i);
            pissa__sb_puts(&b, tmp);
        } else if (conv == 'f' && jv_is_number(v)) {
            snprintf(tmp, sizeof tmp, "%.*f", prec < 0 ? 6 : prec > 30 ? 30 : prec, jv_num(v));
            pissa__sb_puts(&b, tmp);
        } else {
            free(b.p);
            return jx_error(c, at, "unsupported %% format '%c' for a '%s'", conv, jv_type_name(v));
        }
    }
    if (next < vals->n) {
        free(b.p);
        return jx_error(c, at, "not all arguments converted during string formatting");
    }
    return jb_sb_result(c, at, &b, out);
bad:
    free(b.p);
    return jx_error(c, at, "incomplete format");
}

int jb_has_method(jv self, const char *name) {
    static const char *str_methods[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith",
                                        "endswith", "replace", "upper", "lower", "title", "capitalize", "find",
                                        "rfind", "count", "join", "format", "isdigit", "isalpha", "isalnum",
                                        "isspace", "isupper", "islower", NULL};
    static const char *dict_methods[] = {"get", "items", "keys", "values", NULL};
    static const char *list_methods[] = {"index", "count", NULL};
    const char **m = self.t == JV_STR ? str_methods : self.t == JV_DICT ? dict_methods
                                                      : self.t == JV_LIST ? list_methods : NULL;
    for (; m && *m; m++)
        if (!strcmp(*m, name)) return 1;
    return 0;
}

pissa_status jb_str_pred(jctx *c, const jnode *at, const jstr *s, const char *name, jv *out) {
    int all = s->n > 0, any_cased = 0;
    for (size_t i = 0; i < s->n; i++) {
        int ch = (unsigned char)s->p[i];
        int ok = 1;
        if (!strcmp(name, "isdigit")) ok = ch >= '0' && ch <= '9';
        else if (!strcmp(name, "isalpha")) ok = is_alpha(ch) || ch >= 0x80;
        else if (!strcmp(name, "isalnum")) ok = is_alpha(ch) || (ch >= '0' && ch <= '9') || ch >= 0x80;
        else if (!strcmp(name, "isspace")) ok = ch == ' ' || (ch >= 0x09 && ch <= 0x0D) || (ch >= 0x1C && ch <= 0x1F);
        else if (!strcmp(name, "isupper")) {
            ok = !(ch >= 'a' && ch <= 'z');
            any_cased |= ch >= 'A' && ch <= 'Z';
        } else {
            ok = !(ch >= 'A' && ch <= 'Z');
            any_cased |= ch >= 'a' && ch <= 'z';
        }
        all &= ok;
    }
    if (!strcmp(name, "isupper") || !strcmp(name, "islower")) all = all && any_cased;
    (void)c;
    (void)at;
    *out = jv_bool(all);
    return PISSA_OK;
}

pissa_status jb_method(jctx *c, const jnode *at, jv self, const char *name, const jargs *a, jv *out) {
    jv none = jv_none();
    if (self.t == JV_LOOP && !strcmp(name, "cycle")) {
        if (a->n == 0) return jx_error(c, at, "no items for cycling given");
        *out = a->pos[self.u.loop->index0 % (size_t)a->n];
        return PISSA_OK;
    }
    if (self.t == JV_DICT) {
        jdict *d = self.u.d;
        if (!strcmp(name, "get")) {
            if (a->n < 1) return jx_error(c, at, "get expected at least 1 argument, got 0");
            jv *v = jd_get(d, a->pos[0]);
            *out = v ? *v : jb_arg(a, 1, NULL, none);
            return PISSA_OK;
        }
        jlist *l = jl_new(c->a, d->n);
        if (!l) return jx_oom(c, at);
        for (size_t i = 0; i < d->n; i++) {
            if (!strcmp(name, "keys")) l->v[i] = d->k[i];
            else if (!strcmp(name, "values")) l->v[i] = d->v[i];
            else {
                jlist *pair = jl_new(c->a, 2);
                if (!pair) return jx_oom(c, at);
                pair->tuple = 1;
                pair->v[0] = d->k[i];
                pair->v[1] = d->v[i];
                pair->n = 2;
                l->v[i] = jv_list(pair);
            }
        }
        l->n = d->n;
        *out = jv_list(l);
        return PISSA_OK;
    }
    if (self.t == JV_LIST) {
        jlist *l = self.u.l;
        if (a->n < 1) return jx_error(c, at, "%s() takes exactly one argument (0 given)", name);
        int64_t count = 0;
        PISSA_TRY(jx_step(c, at, l->n));
        for (size_t i = 0; i < l->n; i++)
            if (jv_equal(l->v[i], a->pos[0], &c->steps)) {
                if (!strcmp(name, "index")) {
                    *out = jv_int((int64_t)i);
                    return PISSA_OK;
                }
                count++;
            }
        if (!strcmp(name, "index")) return jx_error(c, at, "value is not in list");
        *out = jv_int(count);
        return PISSA_OK;
    }
    /* str */
    const jstr *s = self.u.s;
    if (!strcmp(name, "strip")) return jb_strip(c, at, self, jb_arg(a, 0, "chars", none), 1, 1, out);
    if (!strcmp(name, "lstrip")) return jb_strip(c, at, self, jb_arg(a, 0, "chars", none), 1, 0, out);
    if (!strcmp(name, "rstrip")) return jb_strip(c, at, self, jb_arg(a, 0, "chars", none), 0, 1, out);
    if (!strcmp(name, "split") || !strcmp(name, "rsplit"))
        return jb_split(c, at, self, jb_arg(a, 0, "sep", none), jb_arg(a, 1, "maxsplit", jv_int(-1)), name[0] == 'r',
                        out);
    if (!strcmp(name, "splitlines")) {
        jlist *l;
        PISSA_TRY(jb_splitlines(c, at, s, &l));
        *out = jv_list(l);
        return PISSA_OK;
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        jv p = jb_arg(a, 0, NULL, jv_undef(NULL));
        jlist one = {.n = 1, .cap = 1, .v = &p};
        jlist *cands = p.t == JV_LIST && p.u.l->tuple ? p.u.l : &one;
        int r = 0;
        for (size_t i = 0; i < cands->n; i++) {
            jv q = cands->v[i];
            if (q.t != JV_STR)
                return jx_error(c, at, "%s first arg must be str or a tuple of str, not %s", name, jv_type_name(q));
            if (q.u.s->n <= s->n &&
                !memcmp(name[0] == 's' ? s->p : s->p + s->n - q.u.s->n, q.u.s->p, q.u.s->n))
                r = 1;
        }
        *out = jv_bool(r);
        return PISSA_OK;
    }
    if (!strcmp(name, "replace"))
        return jb_replace(c, at, self, jb_arg(a, 0, NULL, none), jb_arg(a, 1, NULL, none), jb_arg(a, 2, "count", none),
                          out);
    if (!strcmp(name, "upper")) return jb_case(c, at, self, 'u', out);
    if (!strcmp(name, "lower")) return jb_case(c, at, self, 'l', out);
    if (!strcmp(name, "title")) return jb_case(c, at, self, 't', out);
    if (!strcmp(name, "capitalize")) return jb_case(c, at, self, 'c', out);
    if (!strcmp(name, "find") || !strcmp(name, "rfind") || !strcmp(name, "count")) {
        jv sub = jb_arg(a, 0, NULL, none);
        if (sub.t != JV_STR) return jx_error(c, at, "must be str, not %s", jv_type_name(sub));
        const jstr *q = sub.u.s;
        if (q->n == 0) { /* the empty string is found everywhere */
            size_t cps = jb_cp_count(s);
            *out = jv_int(name[0] == 'c' ? (int64_t)cps + 1 : name[0] == 'r' ? (int64_t)cps : 0);
            return PISSA_OK;
        }
        int64_t found = -1, count = 0;
        for (size_t i = 0; i + q->n <= s->n;) { /* non-overlapping occurrences, left to right */
            const char *hit = jb_find_bytes(c, s->p + i, s->n - i, q->p, q->n);
            if (!hit) break;
            found = (int64_t)(hit - s->p);
            count++;
            if (name[0] == 'f') break;
            i = (size_t)found + (name[0] == 'r' ? 1 : q->n); /* rfind wants the last start, overlaps included */
        }
        PISSA_TRY(jx_step(c, at, 1));
        if (name[0] == 'c') {
            *out = jv_int(count);
            return PISSA_OK;
        }
        if (found > 0) { /* a byte offset: Python counts code points */
            int64_t cps = 0;
            for (int64_t i = 0; i < found; i++) cps += ((unsigned char)s->p[i] & 0xC0) != 0x80;
            found = cps;
        }
        *out = jv_int(found);
        return PISSA_OK;
    }
    if (!strcmp(name, "join")) return jb_join(c, at, jb_arg(a, 0, NULL, jv_undef(NULL)), self, jv_undef(NULL), out);
    if (!strcmp(name, "format")) return do_format_method(c, at, s, a, out);
    return jb_str_pred(c, at, s, name, out);
}

