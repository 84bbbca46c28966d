/* What the Jinja lexer, parser and evaluator share: the arena, values, tokens and the syntax tree. */
#ifndef PISSA_JINJA_INTERNAL_H
#define PISSA_JINJA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "jinja.h"

/* The files share short names; the linker sees them with the library's internal prefix. */
#define ja_alloc pissa__jinja_ja_alloc
#define ja_free pissa__jinja_ja_free
#define jb_arg pissa__jinja_jb_arg
#define jb_binop pissa__jinja_jb_binop
#define jb_attr_path pissa__jinja_jb_attr_path
#define jb_builtin pissa__jinja_jb_builtin
#define jb_case pissa__jinja_jb_case
#define jb_contains pissa__jinja_jb_contains
#define jb_cp_count pissa__jinja_jb_cp_count
#define jb_filter pissa__jinja_jb_filter
#define jb_find_bytes pissa__jinja_jb_find_bytes
#define jb_has_method pissa__jinja_jb_has_method
#define jb_is_filter pissa__jinja_jb_is_filter
#define jb_is_test pissa__jinja_jb_is_test
#define jb_join pissa__jinja_jb_join
#define jb_method pissa__jinja_jb_method
#define jb_mkstr pissa__jinja_jb_mkstr
#define jb_need_str pissa__jinja_jb_need_str
#define jb_percent_format pissa__jinja_jb_percent_format
#define jb_replace pissa__jinja_jb_replace
#define jb_sb_result pissa__jinja_jb_sb_result
#define jb_split pissa__jinja_jb_split
#define jb_splitlines pissa__jinja_jb_splitlines
#define jb_str_pred pissa__jinja_jb_str_pred
#define jb_strip pissa__jinja_jb_strip
#define jb_strip_range pissa__jinja_jb_strip_range
#define jb_test pissa__jinja_jb_test
#define jd_get pissa__jinja_jd_get
#define jd_get_str pissa__jinja_jd_get_str
#define jd_new pissa__jinja_jd_new
#define jd_set pissa__jinja_jd_set
#define jl_new pissa__jinja_jl_new
#define jl_push pissa__jinja_jl_push
#define js_new pissa__jinja_js_new
#define jv_bool pissa__jinja_jv_bool
#define jv_compare pissa__jinja_jv_compare
#define jv_equal pissa__jinja_jv_equal
#define jv_float pissa__jinja_jv_float
#define jv_from_cjson pissa__jinja_jv_from_cjson
#define jv_from_json pissa__jinja_jv_from_json
#define jv_int pissa__jinja_jv_int
#define jv_is_number pissa__jinja_jv_is_number
#define jv_none pissa__jinja_jv_none
#define jv_num pissa__jinja_jv_num
#define jv_str pissa__jinja_jv_str
#define jv_to_text pissa__jinja_jv_to_text
#define jv_tojson pissa__jinja_jv_tojson
#define jv_truthy pissa__jinja_jv_truthy
#define jv_type_name pissa__jinja_jv_type_name
#define jv_undef pissa__jinja_jv_undef
#define jx_call pissa__jinja_jx_call
#define jx_error pissa__jinja_jx_error
#define jx_getattr pissa__jinja_jx_getattr
#define jx_getitem pissa__jinja_jx_getitem
#define jx_iterate pissa__jinja_jx_iterate
#define jx_oom pissa__jinja_jx_oom
#define jx_step pissa__jinja_jx_step
#define jx_text pissa__jinja_jx_text
#define jx_undefined_error pissa__jinja_jx_undefined_error
#define py_float_repr pissa__jinja_py_float_repr

/* ---- arena: every value of a render and every node of a template lives in one, freed at once ---- */

typedef struct jarena_block {
    struct jarena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} jarena_block;

typedef struct jarena {
    jarena_block *head;
    size_t total, limit; /* bytes obtained from malloc; limit 0 = none */
    int failed;          /* 1: out of memory, 2: limit reached */
} jarena;

void *ja_alloc(jarena *a, size_t n); /* 16-byte aligned, uninitialised; NULL (and a->failed set) on failure */
void ja_free(jarena *a);

/* ---- values ---- */

typedef enum jv_type {
    JV_UNDEF,   /* s: the hint jinja2 names in its UndefinedError ("'x' is undefined") */
    JV_NONE,
    JV_BOOL,    /* i */
    JV_INT,     /* i */
    JV_FLOAT,   /* f */
    JV_STR,     /* s */
    JV_LIST,    /* l (l->tuple for tuples) */
    JV_DICT,    /* d */
    JV_NS,      /* d: a namespace() */
    JV_MACRO,   /* m */
    JV_BUILTIN, /* i: a global function (enum jbuiltin) */
    JV_METHOD,  /* bm: a method bound to its object (str.strip, dict.items, loop.cycle, ...) */
    JV_LOOP,    /* loop: the loop variable of a for */
} jv_type;

typedef struct jstr {
    size_t n;
    char p[]; /* n bytes then a NUL */
} jstr;

struct jlist;
struct jdict;
struct jmacro;
struct jbound;
struct jloop;

typedef struct jv {
    jv_type t;
    union {
        int64_t i;
        double f;
        const jstr *s;
        struct jlist *l;
        struct jdict *d;
        struct jmacro *m;
        struct jbound *bm;
        struct jloop *loop;
    } u;
} jv;

typedef struct jlist {
    size_t n, cap;
    int tuple;
    jv *v;
} jlist;

typedef struct jdict { /* insertion-ordered, as Python's dict */
    size_t n, cap;
    jv *k, *v;
    uint32_t *idx; /* past 8 keys: an open-addressing index of positions + 1 (idx_cap slots, a power of 2) */
    size_t idx_cap;
} jdict;

/* ---- tokens ---- */

typedef enum jtok_type {
    TK_EOF,
    TK_TEXT,
    TK_BLOCK_BEGIN,
    TK_BLOCK_END,
    TK_VAR_BEGIN,
    TK_VAR_END,
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP,
} jtok_type;

/* Operators, each one token. */
enum {
    OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_TILDE,
    OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_ASSIGN,
    OP_LPAREN, OP_RPAREN, OP_LBRACKET, OP_RBRACKET, OP_LBRACE, OP_RBRACE,
    OP_COMMA, OP_DOT, OP_COLON, OP_PIPE,
    /* comparison operators that are words, used only in the tree */
    OP_IN, OP_NOTIN,
};

typedef struct jtok {
    jtok_type t;
    int op;
    int line, col;
    const jstr *s; /* TEXT, NAME, STRING */
    int64_t i;
    double f;
} jtok;

/* Splits SRC into tokens, applying Jinja's whitespace control, trim_blocks and lstrip_blocks; text and names are
 * copied into A. The array ends with TK_EOF. */
pissa_status pissa__jinja_lex(const char *src, size_t len, jarena *a, jtok **out, size_t *n);

/* ---- syntax tree ---- */

typedef enum jnode_kind {
    /* statements */
    N_BODY, N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK,
    N_BREAK, N_CONTINUE, N_GENERATION,
    /* expressions */
    E_CONST, E_NAME, E_LIST, E_TUPLE, E_DICT, E_ATTR, E_ITEM, E_SLICE, E_CALL, E_FILTER, E_TEST,
    E_NEG, E_POS, E_NOT, E_BINOP, E_COMPARE, E_AND, E_OR, E_COND, E_CONCAT,
} jnode_kind;

typedef struct jnode {
    jnode_kind kind;
    int line, col;
    int op;                /* E_BINOP: OP_*; E_TEST: 1 if negated; N_FOR: 1 if it has an if-filter */
    jv val;                /* E_CONST */
    const jstr *name;      /* E_NAME, E_ATTR, E_FILTER, E_TEST, N_MACRO, N_SETBLOCK, N_FILTERBLOCK */
    struct jnode *a, *b, *c; /* call/filter/test: b = the *args expression, c = the **kwargs one (or NULL) */
    struct jnode **items;  /* N_BODY statements; E_LIST/E_TUPLE/E_CONCAT items; E_DICT keys and values
                              interleaved; call/filter/test positional args; E_COMPARE operands after a */
    int n;
    const jstr **kwnames;  /* call/filter/test keyword names; N_MACRO/N_CALLBLOCK parameter names */
    struct jnode **kwvals; /* their values; N_MACRO/N_CALLBLOCK parameter defaults (NULL where none) */
    int nkw;
    int *ops;              /* E_COMPARE: n operators */
    struct jnode *body, *orelse;
    struct jnode *target;  /* N_FOR / N_SET: E_NAME, E_TUPLE of names, or (N_SET) E_ATTR */
} jnode;

struct pissa__jinja_template {
    jarena arena;
    jnode *root; /* N_BODY */
    int has_generation; /* it holds a {% generation %} block */
};

pissa_status pissa__jinja_syntax_error(int line, int col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- values shared by the evaluator (jinja_value.c) ---- */

const jstr *js_new(jarena *a, const char *p, size_t n);
jv jv_str(const jstr *s);
jv jv_int(int64_t i);
jv jv_float(double f);
jv jv_bool(int b);
jv jv_none(void);
jv jv_undef(const jstr *hint);

jlist *jl_new(jarena *a, size_t cap);
int jl_push(jarena *a, jlist *l, jv x); /* 0 on allocation failure */
jdict *jd_new(jarena *a);
jv *jd_get(const jdict *d, jv key);
jv *jd_get_str(const jdict *d, const char *key, size_t n);
int jd_set(jarena *a, jdict *d, jv key, jv val); /* replaces in place, else appends; 0 on allocation failure */

const char *jv_type_name(jv x);    /* Python's name for the type: "str", "dict", "NoneType", ... */
int jv_truthy(jv x);
int jv_is_number(jv x);            /* bool, int or float, as Python's numbers.Number */
double jv_num(jv x);
int jv_equal(jv a, jv b, uint64_t *steps); /* Python ==; STEPS (may be NULL) += elements visited */
int jv_compare(jv a, jv b, int *res);      /* Python ordering: 0 when the types do not order */
void py_float_repr(double v, char out[40]);
void jv_to_text(pissa__strbuf *b, jv x);   /* str(x); undefined is "" */
/* json.dumps(x, ensure_ascii, indent (None when < 0), separators=(item_sep, key_sep), sort_keys): NULL, or what
 * could not be serialised */
typedef struct jjson_opts {
    int indent, ensure_ascii, sort_keys;
    const char *item_sep, *key_sep; /* Python's defaults: ", " (or "," with an indent) and ": " */
} jjson_opts;
const char *jv_tojson(pissa__strbuf *b, jv x, const jjson_opts *o, int depth);
int jv_from_json(jarena *a, const char *text, jv *out, char err[160]);
int jv_from_cjson(jarena *a, const struct cJSON *c, jv *out, int depth);

/* Python whitespace (str.isspace) in UTF-8 text (jinja_lex.c). */
int pissa__jinja_space_at(const unsigned char *p, size_t n, size_t *len);
size_t pissa__jinja_rstrip_len(const char *s, size_t n);
size_t pissa__jinja_lstrip_len(const char *s, size_t n);

/* ---- evaluation (jinja_eval.c), builtins (jinja_builtin.c) ---- */

typedef struct jscope {
    struct jscope *parent;
    jdict *vars;
} jscope;

typedef struct jmacro {
    const jnode *def; /* N_MACRO, or N_CALLBLOCK for the `caller` of a call block */
    jscope *closure;  /* the scope it was defined in */
    jv caller;        /* what `caller` is inside its body (undefined if none) */
} jmacro;

typedef struct jbound {
    jv self;
    const char *name; /* the method: "strip", "items", "cycle", ... */
} jbound;

typedef struct jloop {
    jlist *items;
    size_t index0;
} jloop;

enum jbuiltin { BI_RANGE, BI_NAMESPACE, BI_DICT, BI_RAISE, BI_STRFTIME };

typedef struct jctx {
    jarena *a;
    pissa__strbuf *out; /* where text goes now: the result, or a macro's or a block's own buffer */
    const pissa__jinja_limits *lim;
    uint64_t steps;
    int depth;          /* macro calls in progress */
    int flow;           /* 1 after {% break %}, 2 after {% continue %}, until the loop sees it */
    jscope *scope;      /* innermost scope */
    jv hole;            /* the text a {% filter %} or {% set x | f %} block filters */
    pissa__strbuf *top; /* the result */
    size_t *spans;      /* ({% generation %} blocks: 2 per block) [start, end) in the result, or NULL: not tracked */
    size_t n_spans, cap_spans;
    int track;
} jctx;

/* Arguments of a call, filter or test, evaluated. */
typedef struct jargs {
    jv *pos;
    int n;
    const jstr **kwnames;
    jv *kw;
    int nkw;
} jargs;

pissa_status jx_error(jctx *c, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
pissa_status jx_oom(jctx *c, const jnode *at);
pissa_status jx_step(jctx *c, const jnode *at, uint64_t n); /* charges N steps */
pissa_status jx_undefined_error(jctx *c, const jnode *at, jv u);
pissa_status jx_call(jctx *c, const jnode *at, jv callee, const jargs *args, jv *out);
pissa_status jx_iterate(jctx *c, const jnode *at, jv x, jlist **out); /* the items `for` visits */
pissa_status jx_getattr(jctx *c, const jnode *at, jv obj, const jstr *name, jv *out);
pissa_status jx_getitem(jctx *c, const jnode *at, jv obj, jv key, jv *out);
const jstr *jx_text(jctx *c, jv x); /* str(x) in the arena; NULL when out of memory */

/* helpers shared by the builtins (jinja_string.c) */
static inline jv jv_list(jlist *l) { return (jv){.t = JV_LIST, .u.l = l}; }
jv jb_arg(const jargs *a, int pos, const char *name, jv def); /* argument POS, or keyword NAME, or DEF */
jv jb_mkstr(jctx *c, const char *p, size_t n);                 /* undefined when out of memory */
pissa_status jb_sb_result(jctx *c, const jnode *at, pissa__strbuf *b, jv *out); /* frees B */
pissa_status jb_need_str(jctx *c, const jnode *at, jv x, const char *what);
size_t jb_cp_count(const jstr *s);
const char *jb_find_bytes(jctx *c, const char *hay, size_t n, const char *needle, size_t m);
void jb_strip_range(const jstr *s, const jstr *chars, int left, int right, size_t *b, size_t *e);
pissa_status jb_strip(jctx *c, const jnode *at, jv x, jv chars, int left, int right, jv *out);
pissa_status jb_split(jctx *c, const jnode *at, jv x, jv sep, jv maxsplit, int from_right, jv *out);
pissa_status jb_splitlines(jctx *c, const jnode *at, const jstr *s, jlist **out);
pissa_status jb_replace(jctx *c, const jnode *at, jv x, jv old, jv new, jv count, jv *out);
/* MODE: 'u' upper, 'l' lower, 'c' capitalize, 't' str.title(), 'T' jinja2's title filter */
pissa_status jb_case(jctx *c, const jnode *at, jv x, int mode, jv *out);
/* jinja2's attribute= argument: "a.b.0" is v['a']['b'][0], each step a subscript that falls back to getattr */
pissa_status jb_attr_path(jctx *c, const jnode *at, jv v, const jstr *path, jv *out);
pissa_status jb_join(jctx *c, const jnode *at, jv seq, jv sep, jv attribute, jv *out);
pissa_status jb_str_pred(jctx *c, const jnode *at, const jstr *s, const char *name, jv *out);

pissa_status jb_filter(jctx *c, const jnode *at, const jstr *name, jv x, const jargs *args, jv *out);
pissa_status jb_test(jctx *c, const jnode *at, const jstr *name, jv x, const jargs *args, int *out);
pissa_status jb_method(jctx *c, const jnode *at, jv self, const char *name, const jargs *args, jv *out);
int jb_has_method(jv self, const char *name);
int jb_is_filter(const char *name); /* the names jb_filter and jb_test know, which the parser checks */
int jb_is_test(const char *name);
pissa_status jb_builtin(jctx *c, const jnode *at, int id, const jargs *args, jv *out);
pissa_status jb_binop(jctx *c, const jnode *at, int op, jv x, jv y, jv *out);
pissa_status jb_contains(jctx *c, const jnode *at, jv hay, jv needle, int *out);
pissa_status jb_percent_format(jctx *c, const jnode *at, const jstr *fmt, jv args, jv *out);

#endif
