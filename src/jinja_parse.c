/* Jinja parser: tokens to a syntax tree, with jinja2's operator precedence (lowest first): `x if c else y`, or,
 * and, not, comparisons (==, !=, <, >, <=, >=, in, not in; chained), + and -, ~, * / // %, **, unary - and +,
 * then postfix: .attr, [key], [a:b:c], (call), | filter, is test. */
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

typedef struct parser {
    const jtok *t;
    size_t pos, n;
    jarena *a;
    int depth;
    int generation; /* a {% generation %} block was seen */
} parser;

#define NOMEM() pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory")

static const jtok *cur(parser *P) { return &P->t[P->pos]; }
static const jtok *peek(parser *P, size_t k) { return &P->t[P->pos + k < P->n ? P->pos + k : P->n - 1]; }
static int is_op(const jtok *t, int op) { return t->t == TK_OP && t->op == op; }
static int is_name(const jtok *t, const char *w) { return t->t == TK_NAME && strcmp(t->s->p, w) == 0; }

static const char *tok_desc(const jtok *t) {
    switch (t->t) {
    case TK_EOF: return "end of template";
    case TK_TEXT: return "text";
    case TK_BLOCK_BEGIN: return "'{%'";
    case TK_BLOCK_END: return "'%}'";
    case TK_VAR_BEGIN: return "'{{'";
    case TK_VAR_END: return "'}}'";
    case TK_NAME: return t->s->p;
    case TK_STRING: return "a string";
    case TK_INT: case TK_FLOAT: return "a number";
    case TK_OP: break;
    }
    static const char *names[] = {"", "'+'", "'-'", "'*'", "'/'", "'//'", "'%'", "'**'", "'~'", "'=='", "'!='",
                                  "'<'", "'>'", "'<='", "'>='", "'='", "'('", "')'", "'['", "']'", "'{'", "'}'",
                                  "','", "'.'", "':'", "'|'"};
    return t->op > 0 && t->op < (int)(sizeof names / sizeof names[0]) ? names[t->op] : "an operator";
}

static pissa_status unexpected(parser *P, const char *wanted) {
    const jtok *t = cur(P);
    return pissa__jinja_syntax_error(t->line, t->col, "expected %s, found %s", wanted, tok_desc(t));
}

static pissa_status expect_op(parser *P, int op, const char *wanted) {
    if (!is_op(cur(P), op)) return unexpected(P, wanted);
    P->pos++;
    return PISSA_OK;
}

static jnode *node(parser *P, jnode_kind kind, const jtok *at) {
    jnode *x = ja_alloc(P->a, sizeof *x);
    if (!x) return NULL;
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->line = at->line;
    x->col = at->col;
    return x;
}

/* A growable array of node pointers, copied into the arena when done. */
typedef struct nvec {
    jnode **v;
    const jstr **names;
    int n, cap;
} nvec;

static int nv_push(nvec *v, jnode *x, const jstr *name) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        jnode **p = realloc(v->v, (size_t)cap * sizeof *p);
        const jstr **q = realloc(v->names, (size_t)cap * sizeof *q);
        if (p) v->v = p;
        if (q) v->names = q;
        if (!p || !q) return 0;
        v->cap = cap;
    }
    v->names[v->n] = name;
    v->v[v->n++] = x;
    return 1;
}

static void nv_free(nvec *v) {
    free(v->v);
    free(v->names);
}

static int nv_store(parser *P, nvec *v, jnode ***items, const jstr ***names) {
    size_t n = (size_t)(v->n ? v->n : 1);
    *items = ja_alloc(P->a, n * sizeof **items);
    if (names) *names = ja_alloc(P->a, n * sizeof **names);
    if (!*items || (names && !*names)) return 0;
    if (v->n) memcpy(*items, v->v, (size_t)v->n * sizeof **items);
    if (names && v->n) memcpy(*names, v->names, (size_t)v->n * sizeof **names);
    return 1;
}

static pissa_status parse_expr(parser *P, jnode **out);
static pissa_status parse_or(parser *P, jnode **out);
static pissa_status parse_unary(parser *P, int with_filter, jnode **out);
static pissa_status parse_primary(parser *P, jnode **out);
static pissa_status parse_postfix(parser *P, jnode *x, jnode **out);

static pissa_status enter(parser *P) {
    if (++P->depth > PISSA__JINJA_MAX_NESTING)
        return pissa__jinja_syntax_error(cur(P)->line, cur(P)->col, "expressions or blocks nested deeper than %d",
                                         PISSA__JINJA_MAX_NESTING);
    return PISSA_OK;
}

/* (args) of a call, filter or test: positional then keyword arguments. The '(' is current. */
static pissa_status parse_args(parser *P, jnode *x) {
    P->pos++;
    nvec pos = {0}, kw = {0};
    pissa_status st = PISSA_OK;
    while (!is_op(cur(P), OP_RPAREN)) {
        if ((pos.n || kw.n) && (st = expect_op(P, OP_COMMA, "',' or ')'")) != PISSA_OK) goto done;
        if (is_op(cur(P), OP_RPAREN)) break; /* trailing comma */
        jnode *arg;
        if (is_op(cur(P), OP_MUL) || is_op(cur(P), OP_POW)) { /* f(*list) and f(**dict), once each */
            int star2 = is_op(cur(P), OP_POW);
            jnode **slot = star2 ? &x->c : &x->b;
            if (*slot) {
                st = pissa__jinja_syntax_error(cur(P)->line, cur(P)->col, "%s given twice in a call",
                                               star2 ? "**" : "*");
                goto done;
            }
            P->pos++;
            if ((st = parse_expr(P, slot)) != PISSA_OK) goto done;
            continue;
        }
        if (cur(P)->t == TK_NAME && is_op(peek(P, 1), OP_ASSIGN)) {
            const jstr *name = cur(P)->s;
            P->pos += 2;
            if ((st = parse_expr(P, &arg)) != PISSA_OK) goto done;
            if (!nv_push(&kw, arg, name)) goto nomem;
        } else {
            if (kw.n) {
                st = pissa__jinja_syntax_error(cur(P)->line, cur(P)->col, "positional argument after keyword "
                                               "arguments");
                goto done;
            }
            if ((st = parse_expr(P, &arg)) != PISSA_OK) goto done;
            if (!nv_push(&pos, arg, NULL)) goto nomem;
        }
    }
    P->pos++;
    if (!nv_store(P, &pos, &x->items, NULL) || !nv_store(P, &kw, &x->kwvals, &x->kwnames)) goto nomem;
    x->n = pos.n;
    x->nkw = kw.n;
    goto done;
nomem:
    st = NOMEM();
done:
    nv_free(&pos);
    nv_free(&kw);
    return st;
}

static pissa_status parse_subscript(parser *P, jnode *obj, jnode **out) {
    const jtok *at = cur(P);
    P->pos++;
    jnode *parts[3] = {0};
    int k = 0, is_slice = 0;
    for (;;) {
        if (!is_op(cur(P), OP_COLON) && !is_op(cur(P), OP_RBRACKET)) PISSA_TRY(parse_expr(P, &parts[k]));
        if (is_op(cur(P), OP_COLON) && k < 2) {
            is_slice = 1;
            k++;
            P->pos++;
            continue;
        }
        break;
    }
    PISSA_TRY(expect_op(P, OP_RBRACKET, "']'"));
    if (!is_slice && !parts[0]) return pissa__jinja_syntax_error(at->line, at->col, "empty subscript");
    jnode *x = node(P, is_slice ? E_SLICE : E_ITEM, at);
    if (!x) return NOMEM();
    x->a = obj;
    x->b = parts[0];
    x->c = parts[1];
    x->body = parts[2]; /* the step of a slice */
    *out = x;
    return PISSA_OK;
}

static pissa_status parse_postfix(parser *P, jnode *x, jnode **out) {
    for (;;) {
        const jtok *t = cur(P);
        if (is_op(t, OP_DOT)) {
            const jtok *name = peek(P, 1);
            jnode *y = node(P, E_ATTR, t);
            if (!y) return NOMEM();
            if (name->t == TK_NAME) {
                y->name = name->s;
            } else if (name->t == TK_INT) { /* foo.0 is foo[0] */
                y->kind = E_ITEM;
                if (!(y->b = node(P, E_CONST, name))) return NOMEM();
                y->b->val = jv_int(name->i);
            } else {
                P->pos++;
                return unexpected(P, "an attribute name after '.'");
            }
            y->a = x;
            P->pos += 2;
            x = y;
        } else if (is_op(t, OP_LBRACKET)) {
            PISSA_TRY(parse_subscript(P, x, &x));
        } else if (is_op(t, OP_LPAREN)) {
            jnode *y = node(P, E_CALL, t);
            if (!y) return NOMEM();
            y->a = x;
            PISSA_TRY(parse_args(P, y));
            x = y;
        } else {
            break;
        }
    }
    *out = x;
    return PISSA_OK;
}

/* A filter whose name is current: name or name(args), applied to X. */
static pissa_status parse_one_filter(parser *P, jnode *x, jnode **out) {
    if (cur(P)->t != TK_NAME) return unexpected(P, "a filter name");
    if (!jb_is_filter(cur(P)->s->p)) /* jinja2 checks filter names when it compiles */
        return pissa__jinja_syntax_error(cur(P)->line, cur(P)->col, "no filter named '%s'", cur(P)->s->p);
    jnode *y = node(P, E_FILTER, cur(P));
    if (!y) return NOMEM();
    y->name = cur(P)->s;
    P->pos++;
    if (is_op(cur(P), OP_LPAREN)) PISSA_TRY(parse_args(P, y));
    y->a = x;
    *out = y;
    return PISSA_OK;
}

/* | name(args) and `is [not] name [arg]`, left to right, after a unary expression. */
static pissa_status parse_filters(parser *P, jnode *x, jnode **out) {
    for (;;) {
        const jtok *t = cur(P);
        if (is_op(t, OP_PIPE)) {
            P->pos++;
            PISSA_TRY(parse_one_filter(P, x, &x));
        } else if (is_name(t, "is")) {
            P->pos++;
            int neg = 0;
            if (is_name(cur(P), "not")) {
                neg = 1;
                P->pos++;
            }
            if (cur(P)->t != TK_NAME) return unexpected(P, "a test name after 'is'");
            if (!jb_is_test(cur(P)->s->p))
                return pissa__jinja_syntax_error(cur(P)->line, cur(P)->col, "no test named '%s'", cur(P)->s->p);
            jnode *y = node(P, E_TEST, cur(P));
            if (!y) return NOMEM();
            y->name = cur(P)->s;
            y->op = neg;
            y->a = x;
            P->pos++;
            const jtok *u = cur(P);
            if (is_op(u, OP_LPAREN)) {
                PISSA_TRY(parse_args(P, y));
            } else if ((u->t == TK_NAME && !is_name(u, "else") && !is_name(u, "or") && !is_name(u, "and") &&
                        !is_name(u, "is") && !is_name(u, "if") && !is_name(u, "in") && !is_name(u, "not")) ||
                       u->t == TK_STRING || u->t == TK_INT || u->t == TK_FLOAT || is_op(u, OP_LBRACKET) ||
                       is_op(u, OP_LBRACE)) {
                /* one argument without parentheses: `is divisibleby 3`, `is sameas false` */
                jnode *arg;
                PISSA_TRY(parse_primary(P, &arg));
                PISSA_TRY(parse_postfix(P, arg, &arg));
                if (!(y->items = ja_alloc(P->a, sizeof *y->items))) return NOMEM();
                y->items[0] = arg;
                y->n = 1;
            }
            x = y;
        } else if (is_op(t, OP_LPAREN)) {
            jnode *y = node(P, E_CALL, t);
            if (!y) return NOMEM();
            y->a = x;
            PISSA_TRY(parse_args(P, y));
            x = y;
        } else {
            break;
        }
    }
    *out = x;
    return PISSA_OK;
}

/* [a, b], (a, b) and {k: v}, with trailing commas. The opener is current. */
static pissa_status parse_seq(parser *P, jnode_kind kind, int close, jnode **out) {
    const jtok *at = cur(P);
    P->pos++;
    jnode *x = node(P, kind, at);
    if (!x) return NOMEM();
    nvec v = {0};
    pissa_status st = PISSA_OK;
    while (!is_op(cur(P), close)) {
        if (v.n && (st = expect_op(P, OP_COMMA, "','")) != PISSA_OK) goto done;
        if (is_op(cur(P), close)) break;
        jnode *item;
        if ((st = parse_expr(P, &item)) != PISSA_OK) goto done;
        if (!nv_push(&v, item, NULL)) goto nomem;
        if (kind == E_DICT) {
            if ((st = expect_op(P, OP_COLON, "':' in a dict literal")) != PISSA_OK) goto done;
            if ((st = parse_expr(P, &item)) != PISSA_OK) goto done;
            if (!nv_push(&v, item, NULL)) goto nomem;
        }
    }
    P->pos++;
    if (!nv_store(P, &v, &x->items, NULL)) goto nomem;
    x->n = v.n;
    *out = x;
    goto done;
nomem:
    st = NOMEM();
done:
    nv_free(&v);
    return st;
}

static pissa_status parse_primary(parser *P, jnode **out) {
    const jtok *t = cur(P);
    jnode *x = NULL;
    PISSA_TRY(enter(P));
    if (t->t == TK_NAME) {
        const char *w = t->s->p;
        x = node(P, E_CONST, t);
        if (!x) return NOMEM();
        if (!strcmp(w, "true") || !strcmp(w, "True")) x->val = jv_bool(1);
        else if (!strcmp(w, "false") || !strcmp(w, "False")) x->val = jv_bool(0);
        else if (!strcmp(w, "none") || !strcmp(w, "None")) x->val = jv_none();
        else {
            x->kind = E_NAME;
            x->name = t->s;
        }
        P->pos++;
    } else if (t->t == TK_STRING) {
        /* adjacent string literals are concatenated, as in Python */
        size_t total = 0, k = 0;
        while (peek(P, k)->t == TK_STRING) total += peek(P, k++)->s->n;
        x = node(P, E_CONST, t);
        if (!x) return NOMEM();
        if (k == 1) {
            x->val = jv_str(t->s);
        } else {
            char *buf = malloc(total + 1);
            if (!buf) return NOMEM();
            size_t m = 0;
            for (size_t i = 0; i < k; i++) {
                memcpy(buf + m, peek(P, i)->s->p, peek(P, i)->s->n);
                m += peek(P, i)->s->n;
            }
            const jstr *s = js_new(P->a, buf, m);
            free(buf);
            if (!s) return NOMEM();
            x->val = jv_str(s);
        }
        P->pos += k;
    } else if (t->t == TK_INT || t->t == TK_FLOAT) {
        x = node(P, E_CONST, t);
        if (!x) return NOMEM();
        x->val = t->t == TK_INT ? jv_int(t->i) : jv_float(t->f);
        P->pos++;
    } else if (is_op(t, OP_LPAREN)) {
        /* (expr) or a tuple: (), (a,), (a, b) */
        P->pos++;
        if (is_op(cur(P), OP_RPAREN)) {
            P->pos++;
            if (!(x = node(P, E_TUPLE, t))) return NOMEM();
        } else {
            PISSA_TRY(parse_expr(P, &x));
            if (is_op(cur(P), OP_COMMA)) {
                nvec v = {0};
                pissa_status st = nv_push(&v, x, NULL) ? PISSA_OK : NOMEM();
                while (st == PISSA_OK && is_op(cur(P), OP_COMMA)) {
                    P->pos++;
                    if (is_op(cur(P), OP_RPAREN)) break;
                    jnode *item;
                    if ((st = parse_expr(P, &item)) == PISSA_OK && !nv_push(&v, item, NULL)) st = NOMEM();
                }
                jnode *tu = st == PISSA_OK ? node(P, E_TUPLE, t) : NULL;
                if (st == PISSA_OK && (!tu || !nv_store(P, &v, &tu->items, NULL))) st = NOMEM();
                if (tu) tu->n = v.n;
                nv_free(&v);
                PISSA_TRY(st);
                x = tu;
            }
            PISSA_TRY(expect_op(P, OP_RPAREN, "')'"));
        }
    } else if (is_op(t, OP_LBRACKET)) {
        PISSA_TRY(parse_seq(P, E_LIST, OP_RBRACKET, &x));
    } else if (is_op(t, OP_LBRACE)) {
        PISSA_TRY(parse_seq(P, E_DICT, OP_RBRACE, &x));
    } else {
        return unexpected(P, "an expression");
    }
    P->depth--;
    *out = x;
    return PISSA_OK;
}

static pissa_status parse_unary(parser *P, int with_filter, jnode **out) {
    const jtok *t = cur(P);
    jnode *x = NULL;
    PISSA_TRY(enter(P));
    if (is_op(t, OP_SUB) || is_op(t, OP_ADD)) {
        P->pos++;
        jnode *y;
        PISSA_TRY(parse_unary(P, 0, &y));
        if (!(x = node(P, is_op(t, OP_SUB) ? E_NEG : E_POS, t))) return NOMEM();
        x->a = y;
    } else {
        PISSA_TRY(parse_primary(P, &x));
    }
    PISSA_TRY(parse_postfix(P, x, &x));
    if (with_filter) PISSA_TRY(parse_filters(P, x, &x));
    P->depth--;
    *out = x;
    return PISSA_OK;
}

static pissa_status binop(parser *P, const jtok *at, int op, jnode *l, jnode *r, jnode **out) {
    jnode *x = node(P, E_BINOP, at);
    if (!x) return NOMEM();
    x->op = op;
    x->a = l;
    x->b = r;
    *out = x;
    return PISSA_OK;
}

static pissa_status parse_pow(parser *P, jnode **out) {
    jnode *x = NULL, *y = NULL;
    PISSA_TRY(parse_unary(P, 1, &x));
    while (is_op(cur(P), OP_POW)) {
        const jtok *at = cur(P);
        P->pos++;
        PISSA_TRY(parse_unary(P, 1, &y));
        PISSA_TRY(binop(P, at, OP_POW, x, y, &x));
    }
    *out = x;
    return PISSA_OK;
}

static pissa_status parse_mul(parser *P, jnode **out) {
    jnode *x = NULL, *y = NULL;
    PISSA_TRY(parse_pow(P, &x));
    for (const jtok *at = cur(P); is_op(at, OP_MUL) || is_op(at, OP_DIV) || is_op(at, OP_FLOORDIV) ||
                                  is_op(at, OP_MOD); at = cur(P)) {
        P->pos++;
        PISSA_TRY(parse_pow(P, &y));
        PISSA_TRY(binop(P, at, at->op, x, y, &x));
    }
    *out = x;
    return PISSA_OK;
}

static pissa_status parse_concat(parser *P, jnode **out) {
    jnode *x = NULL;
    PISSA_TRY(parse_mul(P, &x));
    if (!is_op(cur(P), OP_TILDE)) {
        *out = x;
        return PISSA_OK;
    }
    const jtok *at = cur(P);
    nvec v = {0};
    pissa_status st = nv_push(&v, x, NULL) ? PISSA_OK : NOMEM();
    while (st == PISSA_OK && is_op(cur(P), OP_TILDE)) {
        P->pos++;
        jnode *y;
        if ((st = parse_mul(P, &y)) == PISSA_OK && !nv_push(&v, y, NULL)) st = NOMEM();
    }
    jnode *c = st == PISSA_OK ? node(P, E_CONCAT, at) : NULL;
    if (st == PISSA_OK && (!c || !nv_store(P, &v, &c->items, NULL))) st = NOMEM();
    if (c) c->n = v.n;
    nv_free(&v);
    *out = c;
    return st;
}

static pissa_status parse_add(parser *P, jnode **out) {
    jnode *x = NULL, *y = NULL;
    PISSA_TRY(parse_concat(P, &x));
    for (const jtok *at = cur(P); is_op(at, OP_ADD) || is_op(at, OP_SUB); at = cur(P)) {
        P->pos++;
        PISSA_TRY(parse_concat(P, &y));
        PISSA_TRY(binop(P, at, at->op, x, y, &x));
    }
    *out = x;
    return PISSA_OK;
}

static int compare_op(parser *P) {
    const jtok *t = cur(P);
    if (t->t == TK_OP && t->op >= OP_EQ && t->op <= OP_GE) return t->op;
    if (is_name(t, "in")) return OP_IN;
    if (is_name(t, "not") && is_name(peek(P, 1), "in")) return OP_NOTIN;
    return 0;
}

static pissa_status parse_compare(parser *P, jnode **out) {
    jnode *x = NULL;
    PISSA_TRY(parse_add(P, &x));
    if (!compare_op(P)) {
        *out = x;
        return PISSA_OK;
    }
    jnode *c = node(P, E_COMPARE, cur(P));
    if (!c) return NOMEM();
    c->a = x;
    nvec v = {0};
    int ops[64], nops = 0;
    pissa_status st = PISSA_OK;
    for (int op; st == PISSA_OK && (op = compare_op(P)) != 0;) {
        if (nops == 64) {
            st = pissa__jinja_syntax_error(cur(P)->line, cur(P)->col, "more than 64 chained comparisons");
            break;
        }
        P->pos += op == OP_NOTIN ? 2 : 1;
        ops[nops++] = op;
        jnode *y;
        if ((st = parse_add(P, &y)) == PISSA_OK && !nv_push(&v, y, NULL)) st = NOMEM();
    }
    if (st == PISSA_OK && (!nv_store(P, &v, &c->items, NULL) || !(c->ops = ja_alloc(P->a, sizeof ops)))) st = NOMEM();
    if (st == PISSA_OK) memcpy(c->ops, ops, sizeof ops);
    c->n = v.n;
    nv_free(&v);
    *out = c;
    return st;
}

static pissa_status parse_not(parser *P, jnode **out) {
    if (is_name(cur(P), "not")) {
        const jtok *at = cur(P);
        P->pos++;
        PISSA_TRY(enter(P));
        jnode *y, *x = node(P, E_NOT, at);
        PISSA_TRY(parse_not(P, &y));
        if (!x) return NOMEM();
        x->a = y;
        P->depth--;
        *out = x;
        return PISSA_OK;
    }
    return parse_compare(P, out);
}

static pissa_status parse_and(parser *P, jnode **out) {
    jnode *x = NULL, *y = NULL;
    PISSA_TRY(parse_not(P, &x));
    while (is_name(cur(P), "and")) {
        const jtok *at = cur(P);
        P->pos++;
        PISSA_TRY(parse_not(P, &y));
        jnode *z = node(P, E_AND, at);
        if (!z) return NOMEM();
        z->a = x;
        z->b = y;
        x = z;
    }
    *out = x;
    return PISSA_OK;
}

static pissa_status parse_or(parser *P, jnode **out) {
    jnode *x = NULL, *y = NULL;
    PISSA_TRY(parse_and(P, &x));
    while (is_name(cur(P), "or")) {
        const jtok *at = cur(P);
        P->pos++;
        PISSA_TRY(parse_and(P, &y));
        jnode *z = node(P, E_OR, at);
        if (!z) return NOMEM();
        z->a = x;
        z->b = y;
        x = z;
    }
    *out = x;
    return PISSA_OK;
}

/* `a if c else b` (else optional: undefined), right-nested as jinja2 parses it. */
static pissa_status parse_expr(parser *P, jnode **out) {
    jnode *x = NULL;
    PISSA_TRY(enter(P));
    PISSA_TRY(parse_or(P, &x));
    while (is_name(cur(P), "if")) {
        jnode *z = node(P, E_COND, cur(P));
        if (!z) return NOMEM();
        P->pos++;
        PISSA_TRY(parse_or(P, &z->a));
        z->b = x;
        if (is_name(cur(P), "else")) {
            P->pos++;
            PISSA_TRY(parse_expr(P, &z->c));
        }
        x = z;
    }
    P->depth--;
    *out = x;
    return PISSA_OK;
}

/* An expression, or an unparenthesised tuple of them (`1, 2`) as in set and for statements. */
static pissa_status parse_tuple_expr(parser *P, jnode **out) {
    const jtok *at = cur(P);
    jnode *x = NULL;
    PISSA_TRY(parse_expr(P, &x));
    if (!is_op(cur(P), OP_COMMA)) {
        *out = x;
        return PISSA_OK;
    }
    nvec v = {0};
    pissa_status st = nv_push(&v, x, NULL) ? PISSA_OK : NOMEM();
    while (st == PISSA_OK && is_op(cur(P), OP_COMMA)) {
        P->pos++;
        if (cur(P)->t == TK_BLOCK_END || cur(P)->t == TK_VAR_END) break;
        jnode *y;
        if ((st = parse_expr(P, &y)) == PISSA_OK && !nv_push(&v, y, NULL)) st = NOMEM();
    }
    jnode *tu = st == PISSA_OK ? node(P, E_TUPLE, at) : NULL;
    if (st == PISSA_OK && (!tu || !nv_store(P, &v, &tu->items, NULL))) st = NOMEM();
    if (tu) tu->n = v.n;
    nv_free(&v);
    *out = tu;
    return st;
}

/* Assignment targets: a name, names separated by commas, or (set only) name.attr. */
static pissa_status parse_target(parser *P, int allow_attr, jnode **out) {
    const jtok *at = cur(P);
    nvec v = {0};
    pissa_status st = PISSA_OK;
    for (;;) {
        int paren = is_op(cur(P), OP_LPAREN);
        if (paren) P->pos++;
        do {
            if (cur(P)->t != TK_NAME) {
                st = unexpected(P, "a variable name");
                goto done;
            }
            jnode *x = node(P, E_NAME, cur(P));
            if (!x) goto nomem;
            x->name = cur(P)->s;
            P->pos++;
            if (allow_attr && v.n == 0 && is_op(cur(P), OP_DOT) && peek(P, 1)->t == TK_NAME) {
                jnode *y = node(P, E_ATTR, cur(P));
                if (!y) goto nomem;
                y->a = x;
                y->name = peek(P, 1)->s;
                P->pos += 2;
                *out = y;
                goto done;
            }
            if (!nv_push(&v, x, NULL)) goto nomem;
        } while (paren && is_op(cur(P), OP_COMMA) && (P->pos++, 1));
        if (paren && (st = expect_op(P, OP_RPAREN, "')'")) != PISSA_OK) goto done;
        if (!is_op(cur(P), OP_COMMA)) break;
        P->pos++;
    }
    if (v.n == 1) {
        *out = v.v[0];
    } else {
        jnode *tu = node(P, E_TUPLE, at);
        if (!tu || !nv_store(P, &v, &tu->items, NULL)) goto nomem;
        tu->n = v.n;
        *out = tu;
    }
    goto done;
nomem:
    st = NOMEM();
done:
    nv_free(&v);
    return st;
}

static pissa_status expect_block_end(parser *P) {
    if (cur(P)->t != TK_BLOCK_END) return unexpected(P, "'%}'");
    P->pos++;
    return PISSA_OK;
}

/* Statements until a {% tag %} whose name is one of ENDS (NULL-terminated); that tag's name is left current. */
static pissa_status parse_body(parser *P, const char *const *ends, jnode **out);

static int is_end(parser *P, const char *const *ends) {
    if (cur(P)->t != TK_BLOCK_BEGIN || peek(P, 1)->t != TK_NAME) return 0;
    for (; ends && *ends; ends++)
        if (is_name(peek(P, 1), *ends)) return 1;
    return 0;
}

static pissa_status parse_end(parser *P, const char *name, const jtok *opener) {
    if (!is_name(cur(P), name))
        return pissa__jinja_syntax_error(cur(P)->line, cur(P)->col, "expected '%s' to close the block opened on "
                                         "line %d, found '%s'", name, opener->line, tok_desc(cur(P)));
    P->pos++;
    return expect_block_end(P);
}

static pissa_status parse_params(parser *P, jnode *x) {
    nvec v = {0};
    pissa_status st = expect_op(P, OP_LPAREN, "'('");
    while (st == PISSA_OK && !is_op(cur(P), OP_RPAREN)) {
        if (v.n && (st = expect_op(P, OP_COMMA, "',' or ')'")) != PISSA_OK) break;
        if (cur(P)->t != TK_NAME) {
            st = unexpected(P, "a parameter name");
            break;
        }
        const jstr *name = cur(P)->s;
        jnode *def = NULL;
        P->pos++;
        if (is_op(cur(P), OP_ASSIGN)) {
            P->pos++;
            if ((st = parse_expr(P, &def)) != PISSA_OK) break;
        }
        if (!nv_push(&v, def, name)) st = NOMEM();
    }
    if (st == PISSA_OK) P->pos++;
    if (st == PISSA_OK && !nv_store(P, &v, &x->kwvals, &x->kwnames)) st = NOMEM();
    x->nkw = v.n;
    nv_free(&v);
    return st;
}

static pissa_status parse_statement(parser *P, jnode **out) {
    P->pos++; /* {% */
    const jtok *t = cur(P);
    if (t->t != TK_NAME) return unexpected(P, "a tag name");
    const char *w = t->s->p;
    P->pos++;
    jnode *x = NULL;
    if (!strcmp(w, "if")) {
        x = node(P, N_IF, t);
        if (!x) return NOMEM();
        PISSA_TRY(parse_tuple_expr(P, &x->a));
        PISSA_TRY(expect_block_end(P));
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        PISSA_TRY(parse_body(P, ends, &x->body));
        jnode *tail = x;
        while (is_name(cur(P), "elif")) {
            jnode *e = node(P, N_IF, cur(P));
            if (!e) return NOMEM();
            P->pos++;
            PISSA_TRY(parse_tuple_expr(P, &e->a));
            PISSA_TRY(expect_block_end(P));
            PISSA_TRY(parse_body(P, ends, &e->body));
            tail->orelse = e;
            tail = e;
        }
        if (is_name(cur(P), "else")) {
            P->pos++;
            PISSA_TRY(expect_block_end(P));
            static const char *const end[] = {"endif", NULL};
            PISSA_TRY(parse_body(P, end, &tail->orelse));
        }
        PISSA_TRY(parse_end(P, "endif", t));
    } else if (!strcmp(w, "for")) {
        x = node(P, N_FOR, t);
        if (!x) return NOMEM();
        PISSA_TRY(parse_target(P, 0, &x->target));
        if (!is_name(cur(P), "in")) return unexpected(P, "'in'");
        P->pos++;
        /* the iterable stops before `if` (the loop filter): parse it without the conditional expression */
        PISSA_TRY(parse_or(P, &x->a));
        if (is_name(cur(P), "if")) {
            P->pos++;
            PISSA_TRY(parse_expr(P, &x->b));
        }
        if (is_name(cur(P), "recursive"))
            return pissa__fail(PISSA_ERR_UNSUPPORTED, "chat template line %d: recursive for loops are not supported",
                               cur(P)->line);
        PISSA_TRY(expect_block_end(P));
        static const char *const ends[] = {"else", "endfor", NULL};
        PISSA_TRY(parse_body(P, ends, &x->body));
        if (is_name(cur(P), "else")) {
            P->pos++;
            PISSA_TRY(expect_block_end(P));
            static const char *const end[] = {"endfor", NULL};
            PISSA_TRY(parse_body(P, end, &x->orelse));
        }
        PISSA_TRY(parse_end(P, "endfor", t));
    } else if (!strcmp(w, "set")) {
        jnode *target;
        PISSA_TRY(parse_target(P, 1, &target));
        if (is_op(cur(P), OP_ASSIGN)) {
            x = node(P, N_SET, t);
            if (!x) return NOMEM();
            x->target = target;
            P->pos++;
            PISSA_TRY(parse_tuple_expr(P, &x->a));
            PISSA_TRY(expect_block_end(P));
        } else {
            if (target->kind != E_NAME) return unexpected(P, "'=' (a block set takes one name)");
            x = node(P, N_SETBLOCK, t);
            if (!x) return NOMEM();
            x->target = target;
            jnode *f = NULL;
            if (is_op(cur(P), OP_PIPE)) { /* {% set x | filter %} */
                jnode *hole = node(P, E_CONST, cur(P));
                if (!hole) return NOMEM();
                hole->val = jv_str(NULL);
                PISSA_TRY(parse_filters(P, hole, &f));
            }
            x->a = f;
            PISSA_TRY(expect_block_end(P));
            static const char *const end[] = {"endset", NULL};
            PISSA_TRY(parse_body(P, end, &x->body));
            PISSA_TRY(parse_end(P, "endset", t));
        }
    } else if (!strcmp(w, "macro")) {
        x = node(P, N_MACRO, t);
        if (!x) return NOMEM();
        if (cur(P)->t != TK_NAME) return unexpected(P, "a macro name");
        x->name = cur(P)->s;
        P->pos++;
        PISSA_TRY(parse_params(P, x));
        PISSA_TRY(expect_block_end(P));
        static const char *const end[] = {"endmacro", NULL};
        PISSA_TRY(parse_body(P, end, &x->body));
        PISSA_TRY(parse_end(P, "endmacro", t));
    } else if (!strcmp(w, "call")) {
        x = node(P, N_CALLBLOCK, t);
        if (!x) return NOMEM();
        if (is_op(cur(P), OP_LPAREN)) PISSA_TRY(parse_params(P, x));
        PISSA_TRY(parse_expr(P, &x->a));
        if (x->a->kind != E_CALL) return pissa__jinja_syntax_error(t->line, t->col, "{%% call %%} needs a call");
        PISSA_TRY(expect_block_end(P));
        static const char *const end[] = {"endcall", NULL};
        PISSA_TRY(parse_body(P, end, &x->body));
        PISSA_TRY(parse_end(P, "endcall", t));
    } else if (!strcmp(w, "filter")) {
        x = node(P, N_FILTERBLOCK, t);
        jnode *hole = node(P, E_CONST, t);
        if (!x || !hole) return NOMEM();
        hole->val = jv_str(NULL);
        PISSA_TRY(parse_one_filter(P, hole, &x->a));
        PISSA_TRY(parse_filters(P, x->a, &x->a));
        PISSA_TRY(expect_block_end(P));
        static const char *const end[] = {"endfilter", NULL};
        PISSA_TRY(parse_body(P, end, &x->body));
        PISSA_TRY(parse_end(P, "endfilter", t));
    } else if (!strcmp(w, "generation")) { /* transformers' AssistantTracker: renders its body, records where */
        x = node(P, N_GENERATION, t);
        if (!x) return NOMEM();
        P->generation = 1;
        PISSA_TRY(expect_block_end(P));
        static const char *const end[] = {"endgeneration", NULL};
        PISSA_TRY(parse_body(P, end, &x->body));
        PISSA_TRY(parse_end(P, "endgeneration", t));
    } else if (!strcmp(w, "break") || !strcmp(w, "continue")) {
        x = node(P, w[0] == 'b' ? N_BREAK : N_CONTINUE, t);
        if (!x) return NOMEM();
        PISSA_TRY(expect_block_end(P));
    } else if (!strcmp(w, "include") || !strcmp(w, "extends") || !strcmp(w, "import") || !strcmp(w, "from") ||
               !strcmp(w, "block") || !strcmp(w, "with") || !strcmp(w, "do") || !strcmp(w, "autoescape")) {
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "chat template line %d: the {%% %s %%} tag is not supported",
                           t->line, w);
    } else {
        return pissa__jinja_syntax_error(t->line, t->col, "unknown tag '%s'", w);
    }
    *out = x;
    return PISSA_OK;
}

static pissa_status parse_body(parser *P, const char *const *ends, jnode **out) {
    const jtok *at = cur(P);
    PISSA_TRY(enter(P));
    nvec v = {0};
    pissa_status st = PISSA_OK;
    for (;;) {
        const jtok *t = cur(P);
        jnode *x = NULL;
        if (t->t == TK_EOF) {
            if (ends) {
                const char *const *last = ends;
                while (last[1]) last++; /* the end tag closes every list */
                st = pissa__jinja_syntax_error(t->line, t->col, "unexpected end of template: expected {%% %s %%}",
                                               *last);
            }
            break;
        }
        if (is_end(P, ends)) {
            P->pos++; /* leave the tag name current */
            break;
        }
        if (t->t == TK_TEXT) {
            if (!(x = node(P, N_TEXT, t))) goto nomem;
            x->val = jv_str(t->s);
            P->pos++;
        } else if (t->t == TK_VAR_BEGIN) {
            if (!(x = node(P, N_OUTPUT, t))) goto nomem;
            P->pos++;
            if ((st = parse_tuple_expr(P, &x->a)) != PISSA_OK) break;
            if (cur(P)->t != TK_VAR_END) {
                st = unexpected(P, "'}}'");
                break;
            }
            P->pos++;
        } else if (t->t == TK_BLOCK_BEGIN) {
            if (peek(P, 1)->t == TK_NAME) { /* an end tag that closes nothing open here */
                const char *w = peek(P, 1)->s->p;
                if (!strncmp(w, "end", 3) || !strcmp(w, "else") || !strcmp(w, "elif")) {
                    const char *const *last = ends;
                    while (last && last[1]) last++;
                    if (ends)
                        st = pissa__jinja_syntax_error(peek(P, 1)->line, peek(P, 1)->col, "found '%s' where {%% %s %%} "
                                                       "was expected", w, *last);
                    else
                        st = pissa__jinja_syntax_error(peek(P, 1)->line, peek(P, 1)->col, "'%s' without a block to "
                                                       "close", w);
                    break;
                }
            }
            if ((st = parse_statement(P, &x)) != PISSA_OK) break;
        } else {
            st = unexpected(P, "text or a tag");
            break;
        }
        if (x && !nv_push(&v, x, NULL)) goto nomem;
    }
    if (st == PISSA_OK) {
        jnode *b = node(P, N_BODY, at);
        if (!b || !nv_store(P, &v, &b->items, NULL)) goto nomem;
        b->n = v.n;
        *out = b;
    }
    P->depth--;
    nv_free(&v);
    return st;
nomem:
    nv_free(&v);
    return NOMEM();
}

pissa_status pissa__jinja_parse(const char *src, size_t len, pissa__jinja_template **out) {
    if (!src || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "chat template: NULL argument");
    pissa__jinja_template *t = calloc(1, sizeof *t);
    if (!t) return NOMEM();
    jtok *toks = NULL;
    size_t n = 0;
    pissa_status st = pissa__jinja_lex(src, len, &t->arena, &toks, &n);
    if (st == PISSA_OK) {
        parser P = {.t = toks, .n = n, .a = &t->arena};
        st = parse_body(&P, NULL, &t->root);
        t->has_generation = P.generation;
    }
    free(toks);
    if (st != PISSA_OK) {
        pissa__jinja_free(t);
        return st;
    }
    *out = t;
    return PISSA_OK;
}

void pissa__jinja_free(pissa__jinja_template *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t);
}
