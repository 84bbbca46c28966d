/* Jinja lexer: text and tags, with the whitespace rules of jinja2's lexer under transformers' settings
 * (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_internal.h"

pissa_status pissa__jinja_syntax_error(int line, int col, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pissa__fail(PISSA_ERR_FORMAT, "chat template line %d, column %d: %s", line, col, msg);
}

/* Python's str.isspace() for the code point starting at P (of N >= 1 bytes); its length in *LEN. */
int pissa__jinja_space_at(const unsigned char *p, size_t n, size_t *len) {
    *len = 1;
    unsigned c = p[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (c < 0xC2 || n < 2) return 0;
    unsigned cp;
    if (c < 0xE0) {
        cp = (c & 0x1Fu) << 6 | (p[1] & 0x3Fu);
        *len = 2;
    } else if (c < 0xF0 && n >= 3) {
        cp = (c & 0x0Fu) << 12 | (p[1] & 0x3Fu) << 6 | (p[2] & 0x3Fu);
        *len = 3;
    } else {
        return 0;
    }
    int sp = cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
             cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
    if (!sp) *len = 1;
    return sp;
}

/* Length of S[0..n) with trailing Python whitespace removed. */
size_t pissa__jinja_rstrip_len(const char *s, size_t n) {
    while (n > 0) {
        size_t k = n - 1; /* start of the last code point */
        while (k > 0 && n - k < 4 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        size_t len;
        if (!pissa__jinja_space_at((const unsigned char *)s + k, n - k, &len) || k + len != n) break;
        n = k;
    }
    return n;
}

/* Bytes of Python whitespace at the start of S[0..n). */
size_t pissa__jinja_lstrip_len(const char *s, size_t n) {
    size_t i = 0, len;
    while (i < n && pissa__jinja_space_at((const unsigned char *)s + i, n - i, &len)) i += len;
    return i;
}

typedef struct lexer {
    const char *s; /* source with newlines normalised */
    size_t n, pos;
    int line;
    const char *line_start;
    jarena *a;
    jtok *toks;
    size_t ntok, cap;
} lexer;

static int col_of(const lexer *L, const char *p) { return (int)(p - L->line_start) + 1; }

static void advance_to(lexer *L, size_t pos) {
    for (size_t i = L->pos; i < pos; i++)
        if (L->s[i] == '\n') {
            L->line++;
            L->line_start = L->s + i + 1;
        }
    L->pos = pos;
}

static jtok *push(lexer *L, jtok_type t) {
    if (L->ntok == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *p = realloc(L->toks, cap * sizeof *p);
        if (!p) return NULL;
        L->toks = p;
        L->cap = cap;
    }
    jtok *k = &L->toks[L->ntok++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->line = L->line;
    k->col = col_of(L, L->s + L->pos);
    return k;
}

#define NOMEM() pissa__fail(PISSA_ERR_NOMEM, "chat template: out of memory")

/* Python's unicode-escape decoding of a string literal's body, as jinja2 applies it. */
static pissa_status unescape(lexer *L, const char *p, size_t n, const jstr **out) {
    char *buf = malloc(n + 1);
    if (!buf) return NOMEM();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\\' || i + 1 == n) {
            buf[k++] = p[i];
            continue;
        }
        char c = p[++i];
        unsigned long cp = 0;
        int hex = 0;
        switch (c) {
        case '\n': break; /* backslash-newline: a line continuation */
        case '\\': buf[k++] = '\\'; break;
        case '\'': buf[k++] = '\''; break;
        case '"': buf[k++] = '"'; break;
        case 'a': buf[k++] = '\a'; break;
        case 'b': buf[k++] = '\b'; break;
        case 'f': buf[k++] = '\f'; break;
        case 'n': buf[k++] = '\n'; break;
        case 'r': buf[k++] = '\r'; break;
        case 't': buf[k++] = '\t'; break;
        case 'v': buf[k++] = '\v'; break;
        case 'x': hex = 2; break;
        case 'u': hex = 4; break;
        case 'U': hex = 8; break;
        default:
            if (c >= '0' && c <= '7') {
                int d = 0;
                while (d < 3 && i < n && p[i] >= '0' && p[i] <= '7') cp = cp * 8 + (unsigned long)(p[i++] - '0'), d++;
                i--;
                hex = -1;
            } else {
                buf[k++] = '\\';
                buf[k++] = c;
            }
        }
        if (hex > 0) {
            for (int d = 0; d < hex; d++) {
                char h = i + 1 < n ? p[i + 1] : 0;
                int v = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
                if (v < 0) {
                    free(buf);
                    return pissa__jinja_syntax_error(L->line, col_of(L, p + i), "truncated \\%c escape in a string", c);
                }
                cp = cp * 16 + (unsigned long)v;
                i++;
            }
        }
        if (hex != 0) {
            if (cp > 0x10FFFF) {
                free(buf);
                return pissa__jinja_syntax_error(L->line, col_of(L, p + i), "escape beyond U+10FFFF in a string");
            }
            if (cp < 0x80) buf[k++] = (char)cp;
            else if (cp < 0x800) {
                buf[k++] = (char)(0xC0 | cp >> 6);
                buf[k++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[k++] = (char)(0xE0 | cp >> 12);
                buf[k++] = (char)(0x80 | (cp >> 6 & 0x3F));
                buf[k++] = (char)(0x80 | (cp & 0x3F));
            } else {
                buf[k++] = (char)(0xF0 | cp >> 18);
                buf[k++] = (char)(0x80 | (cp >> 12 & 0x3F));
                buf[k++] = (char)(0x80 | (cp >> 6 & 0x3F));
                buf[k++] = (char)(0x80 | (cp & 0x3F));
            }
        }
    }
    *out = js_new(L->a, buf, k);
    free(buf);
    return *out ? PISSA_OK : NOMEM();
}

static int is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Digits with single underscores between them ("1_000"); returns the end, or P if none. */
static size_t digits(const char *s, size_t n, size_t p) {
    size_t i = p;
    if (i >= n || !is_digit(s[i])) return p;
    while (i < n && (is_digit(s[i]) || (s[i] == '_' && i + 1 < n && is_digit(s[i + 1])))) i++;
    return i;
}

static pissa_status lex_number(lexer *L) {
    const char *s = L->s;
    size_t start = L->pos, i = digits(s, L->n, start), end = i;
    int is_float = 0;
    int after_dot = start > 0 && s[start - 1] == '.'; /* foo.0 is an attribute, never a float */
    if (!after_dot && i < L->n && s[i] == '.' && digits(s, L->n, i + 1) > i + 1) {
        end = digits(s, L->n, i + 1);
        is_float = 1;
    }
    if (!after_dot && end < L->n && (s[end] == 'e' || s[end] == 'E')) {
        size_t j = end + 1;
        if (j < L->n && (s[j] == '+' || s[j] == '-')) j++;
        size_t k = digits(s, L->n, j);
        if (k > j) {
            end = k;
            is_float = 1;
        }
    }
    char buf[128];
    size_t m = 0;
    for (size_t k = start; k < end && m + 1 < sizeof buf; k++)
        if (s[k] != '_') buf[m++] = s[k];
    buf[m] = '\0';
    jtok *t = push(L, is_float ? TK_FLOAT : TK_INT);
    if (!t) return NOMEM();
    if (is_float) {
        t->f = strtod(buf, NULL);
    } else {
        int64_t v = 0;
        for (size_t k = 0; k < m; k++) {
            if (v > (INT64_MAX - (buf[k] - '0')) / 10)
                return pissa__jinja_syntax_error(t->line, t->col, "integer literal %s does not fit in 64 bits", buf);
            v = v * 10 + (buf[k] - '0');
        }
        t->i = v;
    }
    advance_to(L, end);
    return PISSA_OK;
}

/* The operator at P (longest match) and its length in *LEN; 0 if none. */
static int match_op(const char *p, size_t avail, size_t *len) {
    static const char two[][3] = {"//", "**", "==", "!=", "<=", ">="};
    static const int two_op[] = {OP_FLOORDIV, OP_POW, OP_EQ, OP_NE, OP_LE, OP_GE};
    static const char one[] = "+-*/%~<>=()[]{},.:|";
    static const int one_op[] = {OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_MOD, OP_TILDE, OP_LT, OP_GT, OP_ASSIGN,
                                 OP_LPAREN, OP_RPAREN, OP_LBRACKET, OP_RBRACKET, OP_LBRACE, OP_RBRACE, OP_COMMA,
                                 OP_DOT, OP_COLON, OP_PIPE};
    if (avail >= 2)
        for (int k = 0; k < 6; k++)
            if (p[0] == two[k][0] && p[1] == two[k][1]) {
                *len = 2;
                return two_op[k];
            }
    const char *hit = p[0] ? strchr(one, p[0]) : NULL;
    *len = 1;
    return hit ? one_op[hit - one] : 0;
}

/* Tokens of one {% %} or {{ }} up to and including its end; *LINE_STARTING tells whether the end consumed a
 * newline (lstrip_blocks then applies to the next tag even without a newline in the text between). */
static pissa_status lex_tag(lexer *L, int block, int *line_starting) {
    int depth = 0, open_line = L->line;
    const char *end = block ? "%}" : "}}";
    for (;;) {
        const char *s = L->s;
        size_t n = L->n;
        while (L->pos < n && (s[L->pos] == ' ' || s[L->pos] == '\t' || s[L->pos] == '\n' || s[L->pos] == '\r' ||
                              s[L->pos] == '\f' || s[L->pos] == '\v'))
            advance_to(L, L->pos + 1);
        size_t p = L->pos;
        if (p >= n)
            return pissa__jinja_syntax_error(open_line, 0, "unexpected end of template: a %s tag opened on line %d is "
                                             "never closed", block ? "{%" : "{{", open_line);
        if (depth == 0) { /* an end tag, with its whitespace control */
            int sign = (s[p] == '-' || s[p] == '+') && p + 3 <= n && memcmp(s + p + 1, end, 2) == 0;
            if (sign || (p + 2 <= n && memcmp(s + p, end, 2) == 0)) {
                if (!push(L, block ? TK_BLOCK_END : TK_VAR_END)) return NOMEM();
                size_t q = p + 2 + (sign ? 1 : 0);
                if (sign && s[p] == '-') q += pissa__jinja_lstrip_len(s + q, n - q);
                else if (!sign && block && q < n && s[q] == '\n') q++; /* trim_blocks */
                *line_starting = q > p && s[q - 1] == '\n';
                advance_to(L, q);
                return PISSA_OK;
            }
        }
        char c = s[p];
        if (is_name_start(c)) {
            size_t q = p;
            while (q < n && (is_name_start(s[q]) || is_digit(s[q]))) q++;
            jtok *t = push(L, TK_NAME);
            if (!t || !(t->s = js_new(L->a, s + p, q - p))) return NOMEM();
            advance_to(L, q);
        } else if (is_digit(c)) {
            PISSA_TRY(lex_number(L));
        } else if (c == '\'' || c == '"') {
            size_t q = p + 1;
            while (q < n && s[q] != c) q += s[q] == '\\' ? 2 : 1;
            if (q >= n) return pissa__jinja_syntax_error(L->line, col_of(L, s + p), "unterminated string");
            jtok *t = push(L, TK_STRING);
            if (!t) return NOMEM();
            PISSA_TRY(unescape(L, s + p + 1, q - p - 1, &t->s));
            advance_to(L, q + 1);
        } else {
            size_t oplen;
            int op = match_op(s + p, n - p, &oplen);
            if (!op) return pissa__jinja_syntax_error(L->line, col_of(L, s + p), "unexpected character '%c'", c);
            jtok *t = push(L, TK_OP);
            if (!t) return NOMEM();
            t->op = op;
            if (t->op == OP_LPAREN || t->op == OP_LBRACKET || t->op == OP_LBRACE) {
                if (++depth > PISSA__JINJA_MAX_NESTING)
                    return pissa__jinja_syntax_error(t->line, t->col, "brackets nested deeper than %d",
                                                     PISSA__JINJA_MAX_NESTING);
            } else if ((t->op == OP_RPAREN || t->op == OP_RBRACKET || t->op == OP_RBRACE) && depth > 0) {
                depth--;
            }
            advance_to(L, p + oplen);
        }
    }
}

/* Is the text of a {% raw %} tag at P ("{% raw %}", "{%- raw -%}", ...)? Returns the end of the tag or 0. */
static size_t raw_tag(const char *s, size_t n, size_t p, const char *word) {
    size_t q = p + 2;
    if (q < n && (s[q] == '-' || s[q] == '+')) q++;
    while (q < n && (s[q] == ' ' || s[q] == '\t' || s[q] == '\n')) q++;
    size_t w = strlen(word);
    if (q + w > n || memcmp(s + q, word, w) != 0) return 0;
    q += w;
    while (q < n && (s[q] == ' ' || s[q] == '\t' || s[q] == '\n')) q++;
    if (q < n && (s[q] == '-' || s[q] == '+')) q++;
    return q + 2 <= n && s[q] == '%' && s[q + 1] == '}' ? q + 2 : 0;
}

static pissa_status emit_text(lexer *L, size_t from, size_t to) {
    if (to <= from) return PISSA_OK;
    jtok *t = push(L, TK_TEXT);
    if (!t || !(t->s = js_new(L->a, L->s + from, to - from))) return NOMEM();
    return PISSA_OK;
}

static pissa_status lex_all(lexer *L) {
    const char *s = L->s;
    size_t n = L->n;
    int line_starting = 1;
    while (L->pos < n) {
        size_t p = L->pos, q = p;
        while (q + 1 < n && !(s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#'))) q++;
        if (q + 1 >= n) { /* no more tags */
            PISSA_TRY(emit_text(L, p, n));
            advance_to(L, n);
            break;
        }
        char kind = s[q + 1], sign = q + 2 < n ? s[q + 2] : 0;
        size_t text_end = q;
        if (sign == '-') {
            text_end = p + pissa__jinja_rstrip_len(s + p, q - p);
        } else if (sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t l = q;
            while (l > p && s[l - 1] != '\n') l--;
            if (l > p || line_starting) {
                size_t k = l;
                while (k < q && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r' || s[k] == '\f' || s[k] == '\v')) k++;
                if (k == q) text_end = l;
            }
        }
        size_t raw_end = kind == '%' ? raw_tag(s, n, q, "raw") : 0;
        PISSA_TRY(emit_text(L, p, text_end));
        advance_to(L, q);
        if (kind == '#') {
            size_t e = q + 2;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) return pissa__jinja_syntax_error(L->line, col_of(L, s + q), "unterminated comment");
            size_t after = e + 2;
            if (s[e - 1] == '-' && e - 1 >= q + 2) after += pissa__jinja_lstrip_len(s + after, n - after);
            else if (!(s[e - 1] == '+' && e - 1 >= q + 2) && after < n && s[after] == '\n') after++;
            line_starting = s[after - 1] == '\n';
            advance_to(L, after);
        } else if (raw_end) {
            /* {% raw %}...{% endraw %}: the body is text; the end tag's own whitespace control applies. */
            size_t e = raw_end;
            while (e + 1 < n && !(s[e] == '{' && s[e + 1] == '%' && raw_tag(s, n, e, "endraw"))) e++;
            if (e + 1 >= n)
                return pissa__jinja_syntax_error(L->line, col_of(L, s + q), "{%% raw %%} without {%% endraw %%}");
            size_t body = raw_end, body_end = e;
            if (s[raw_end - 3] == '-') body += pissa__jinja_lstrip_len(s + body, e - body);
            if (s[e + 2] == '-') body_end = body + pissa__jinja_rstrip_len(s + body, e - body);
            advance_to(L, body);
            PISSA_TRY(emit_text(L, body, body_end));
            size_t after = raw_tag(s, n, e, "endraw");
            if (s[after - 3] == '-') after += pissa__jinja_lstrip_len(s + after, n - after);
            else if (s[after - 3] != '+' && after < n && s[after] == '\n') after++;
            line_starting = s[after - 1] == '\n';
            advance_to(L, after);
        } else {
            if (!push(L, kind == '%' ? TK_BLOCK_BEGIN : TK_VAR_BEGIN)) return NOMEM();
            advance_to(L, q + 2 + (sign == '-' || sign == '+' ? 1 : 0));
            PISSA_TRY(lex_tag(L, kind == '%', &line_starting));
        }
    }
    return push(L, TK_EOF) ? PISSA_OK : NOMEM();
}

pissa_status pissa__jinja_lex(const char *src, size_t len, jarena *a, jtok **out, size_t *n) {
    /* jinja2 reads \r\n and \r as \n, and drops one trailing newline (keep_trailing_newline=False). */
    char *s = malloc(len + 1);
    if (!s) return NOMEM();
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[m++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[m++] = src[i];
        }
    }
    if (m > 0 && s[m - 1] == '\n') m--;
    s[m] = '\0';
    lexer L = {.s = s, .n = m, .line = 1, .line_start = s, .a = a};
    pissa_status st = lex_all(&L);
    free(s);
    /* Tokens point into the arena (names, strings, text), never into S. */
    if (st != PISSA_OK) {
        free(L.toks);
        return st;
    }
    *out = L.toks;
    *n = L.ntok;
    return PISSA_OK;
}
