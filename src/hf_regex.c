/* UTF-8, the Unicode character classes tokenizers uses, and its patterns: literal strings and Oniguruma regexes run
 * by PCRE2.
 *
 * tokenizers compiles {"Regex": ...} patterns with Oniguruma (Ruby syntax, UTF-8) and iterates matches with the onig
 * crate's find_iter. PCRE2 with UTF and UCP reads the patterns real tokenizer files use the same way except for a
 * few escapes, which are rewritten before compiling:
 *   \s \S    Oniguruma: Unicode White_Space; PCRE2's UCP \s also takes U+180E  -> \p{White_Space}, \P{White_Space}
 *   \w \W    Oniguruma: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, and outside a class ²³¹¼½¾ (its
 *            Latin-1 table); PCRE2's UCP \w is L, N and "_"                  -> those classes spelled out
 *   \h \H    Oniguruma: a hex digit; PCRE2: horizontal space                  -> [0-9A-Fa-f], [^0-9A-Fa-f]
 *   \uHHHH   Oniguruma only                                                   -> \x{HHHH}
 *   (?m)     Ruby's m is PCRE2's s (dot matches newline)                      -> (?s)
 * and "^"/"$" are line anchors in Ruby syntax (PCRE2_MULTILINE with LF newlines; "." excludes only LF as there).
 * Constructs that PCRE2 would accept with another meaning are refused (PISSA_ERR_UNSUPPORTED): an interval followed
 * by "+" (Ruby: a repeat of the repeat; PCRE2: possessive), nested character classes and class intersection, and
 * \W or \H inside a class. tests/test_hf_regex.c checks the rewritten classes
 * against Oniguruma 6.9.8 (the version the onig crate bundles) on every code point, and the real patterns on every
 * fixture string: with PCRE2 10.42 they agree everywhere, case-insensitive groups included (both fold s/S/U+017F and
 * k/K/U+212A together). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "hf_internal.h"

/* ---- growable arrays ---- */

void pissa__ids_append(pissa__ids *a, const int32_t *ids, size_t n) {
    if (a->oom || n == 0) return;
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap < a->n + n) cap *= 2;
        int32_t *v = pissa__alloc(cap, sizeof *v);
        if (!v) {
            a->oom = 1;
            return;
        }
        if (a->n) memcpy(v, a->v, a->n * sizeof *v);
        free(a->v);
        a->v = v;
        a->cap = cap;
    }
    memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
}

void pissa__ids_push(pissa__ids *a, int32_t id) { pissa__ids_append(a, &id, 1); }

static void spans_push(pissa__spans *s, size_t start, size_t end) {
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        size_t(*v)[2] = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = 1;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n][0] = start;
    s->v[s->n][1] = end;
    s->n++;
}

/* ---- UTF-8 ---- */

/* Length of the well-formed sequence at S (N bytes left), 0 if S starts an ill-formed one (Unicode table 3-7). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (n <= i || (s[i] & 0xC0) != 0x80) return 0;
    return len;
}

size_t pissa__utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

int pissa__utf8_decode(const char *s, int32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) {
        *cp = u[0];
        return 1;
    }
    if (u[0] < 0xE0) {
        *cp = (int32_t)((u[0] & 0x1Fu) << 6 | (u[1] & 0x3Fu));
        return 2;
    }
    if (u[0] < 0xF0) {
        *cp = (int32_t)((u[0] & 0x0Fu) << 12 | (u[1] & 0x3Fu) << 6 | (u[2] & 0x3Fu));
        return 3;
    }
    *cp = (int32_t)((u[0] & 0x07u) << 18 | (u[1] & 0x3Fu) << 12 | (u[2] & 0x3Fu) << 6 | (u[3] & 0x3Fu));
    return 4;
}

int pissa__utf8_encode(int32_t cp, char out[4]) {
    uint32_t c = (uint32_t)cp;
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3F));
    out[2] = (char)(0x80 | (c >> 6 & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* Maximal subparts (Unicode §3.9, "U+FFFD substitution of maximal subparts"): an ill-formed sequence is replaced up
 * to the first byte that cannot continue it. */
void pissa__utf8_lossy(pissa__strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t k = u[i] < 0x80 ? 1 : utf8_seq(u + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        pissa__sb_put(b, s + run, i - run);
        pissa__sb_put(b, "\xEF\xBF\xBD", 3);
        /* skip the lead byte and the continuation bytes that were still acceptable after it */
        unsigned c = u[i];
        unsigned lo = 0x80, hi = 0xBF;
        size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
        size_t j = i + 1;
        if (len > 1 && j < n && u[j] >= lo && u[j] <= hi) {
            j++;
            while (j < n && j < i + len && (u[j] & 0xC0) == 0x80) j++;
        }
        i = j;
        run = i;
    }
    pissa__sb_put(b, s + run, n - run);
}

/* ---- character classes ---- */

int pissa__uni_is_white_space(int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int pissa__uni_is_numeric(int32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

int pissa__uni_is_punctuation(int32_t c) {
    if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
                         (c >= 0x7B && c <= 0x7E);
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* ---- patterns ---- */

struct pissa__hf_pattern {
    char *literal; // the string of a {"String": ...} pattern
    size_t literal_len;
    pcre2_code *code; // a {"Regex": ...} pattern
    char *where;
};

void pissa__hf_pattern_free(pissa__hf_pattern *p) {
    if (!p) return;
    free(p->literal);
    if (p->code) pcre2_code_free(p->code);
    free(p->where);
    free(p);
}

/* Oniguruma's \w outside and inside a class: the Latin-1 digits-and-fractions ²³¹¼½¾ count only outside. */
#define WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}"
#define WORD_IN_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}"

/* Oniguruma (Ruby syntax) -> PCRE2, as described at the top of the file. */
static pissa_status rewrite(const char *src, size_t len, const char *where, pissa__strbuf *out) {
    int in_class = 0;
    size_t i = 0;
    while (i < len) {
        char c = src[i];
        if (c == '\\') {
            if (i + 1 >= len) {
                pissa__sb_put(out, src + i, 1);
                break;
            }
            char e = src[i + 1];
            const char *rep = NULL;
            switch (e) {
            case 's': rep = "\\p{White_Space}"; break;
            case 'S': rep = "\\P{White_Space}"; break;
            case 'w': rep = in_class ? WORD_IN_CLASS : "[" WORD_CLASS "]"; break;
            case 'W': rep = in_class ? NULL : "[^" WORD_CLASS "]"; break;
            case 'h': rep = in_class ? "0-9A-Fa-f" : "[0-9A-Fa-f]"; break;
            case 'H': rep = in_class ? NULL : "[^0-9A-Fa-f]"; break;
            default: break;
            }
            if ((e == 'W' || e == 'H') && in_class)
                return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: \\%c inside a character class is not supported", where,
                                   e);
            if (rep) {
                pissa__sb_puts(out, rep);
                i += 2;
                continue;
            }
            if (e == 'u' && i + 6 <= len) {
                int hex = 1;
                for (size_t k = i + 2; k < i + 6; k++)
                    if (!src[k] || !strchr("0123456789abcdefABCDEF", src[k])) hex = 0;
                if (hex) {
                    pissa__sb_puts(out, "\\x{");
                    pissa__sb_put(out, src + i + 2, 4);
                    pissa__sb_puts(out, "}");
                    i += 6;
                    continue;
                }
            }
            /* any other escape means the same in both; copy the backslash and the (whole) next character */
            int32_t cp;
            size_t k = (size_t)pissa__utf8_decode(src + i + 1, &cp);
            pissa__sb_put(out, src + i, 1 + k);
            i += 1 + k;
            continue;
        }
        if (in_class) {
            if (c == '[') {
                if (i + 1 < len && src[i + 1] == ':') { /* POSIX bracket [:alpha:] */
                    const char *end = memchr(src + i + 2, ']', len - i - 2);
                    if (end && end[-1] == ':') {
                        pissa__sb_put(out, src + i, (size_t)(end - (src + i)) + 1);
                        i = (size_t)(end - src) + 1;
                        continue;
                    }
                }
                return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: nested character classes are not supported", where);
            }
            if (c == '&' && i + 1 < len && src[i + 1] == '&')
                return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: character class intersection (&&) is not supported",
                                   where);
            if (c == ']') in_class = 0;
            pissa__sb_put(out, src + i, 1);
            i++;
            continue;
        }
        if (c == '[') {
            in_class = 1;
            pissa__sb_put(out, src + i, 1);
            i++;
            /* a leading ^ and a leading ] are part of the class */
            if (i < len && src[i] == '^') pissa__sb_put(out, src + i++, 1);
            if (i < len && src[i] == ']') pissa__sb_put(out, src + i++, 1);
            continue;
        }
        if (c == '{') { /* an interval {n}, {n,}, {,m}, {n,m} followed by + */
            size_t k = i + 1;
            int digits = 0;
            while (k < len && ((src[k] >= '0' && src[k] <= '9') || src[k] == ',')) {
                digits |= src[k] != ',';
                k++;
            }
            if (digits && k < len && src[k] == '}' && k + 1 < len && src[k + 1] == '+')
                return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: an interval followed by '+' (a repeat of a repeat in "
                                   "Oniguruma, possessive in PCRE2) is not supported", where);
        }
        if (c == '(' && i + 2 < len && src[i + 1] == '?') { /* (?imx-imx) or (?imx-imx:...) */
            size_t k = i + 2;
            while (k < len && src[k] && strchr("imx-", src[k])) k++;
            if (k > i + 2 && k < len && (src[k] == ')' || src[k] == ':')) {
                pissa__sb_put(out, "(?", 2);
                for (size_t j = i + 2; j < k; j++) pissa__sb_put(out, src[j] == 'm' ? "s" : src + j, 1);
                i = k;
                continue;
            }
        }
        pissa__sb_put(out, src + i, 1);
        i++;
    }
    if (out->oom) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
    return PISSA_OK;
}

pissa_status pissa__hf_pattern_new(const char *src, size_t len, int regex, const char *where,
                                   pissa__hf_pattern **out) {
    *out = NULL;
    pissa__hf_pattern *p = calloc(1, sizeof *p);
    if (!p || !(p->where = pissa__strdup(where))) {
        free(p);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
    }
    if (!regex) {
        p->literal = pissa__alloc(len + 1, 1);
        if (!p->literal) {
            pissa__hf_pattern_free(p);
            return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
        }
        memcpy(p->literal, src, len);
        p->literal[len] = '\0';
        p->literal_len = len;
        *out = p;
        return PISSA_OK;
    }
    pissa__strbuf b = {0};
    pissa_status st = rewrite(src, len, where, &b);
    if (st == PISSA_OK) {
        pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
        if (cc) pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
        int err;
        PCRE2_SIZE off;
        p->code = cc ? pcre2_compile((PCRE2_SPTR)(b.p ? b.p : ""), b.n, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &err,
                                     &off, cc)
                     : NULL;
        pcre2_compile_context_free(cc);
        if (!cc) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", where);
        else if (!p->code) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: invalid regex \"%.*s\": %s (at offset %zu)", where,
                             (int)(len > 200 ? 200 : len), src, (const char *)msg, (size_t)off);
        } else {
            pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE); /* without JIT (unsupported CPU) pcre2_match interprets */
        }
    }
    free(b.p);
    if (st != PISSA_OK) {
        pissa__hf_pattern_free(p);
        return st;
    }
    *out = p;
    return PISSA_OK;
}

/* First match at or after START: *MS, *ME; returns 1, 0 for none, or a negative PCRE2 error. */
static int find_from(const pissa__hf_pattern *p, pcre2_match_data *md, const char *s, size_t n, size_t start,
                     size_t *ms, size_t *me) {
    if (!p->code) {
        const char *hit = p->literal_len == 0 ? s + start : NULL;
        if (p->literal_len && start + p->literal_len <= n) {
            const char *q = s + start, *end = s + n - p->literal_len;
            while (q <= end) {
                q = memchr(q, p->literal[0], (size_t)(end - q) + 1);
                if (!q) break;
                if (memcmp(q, p->literal, p->literal_len) == 0) {
                    hit = q;
                    break;
                }
                q++;
            }
        }
        if (!hit) return 0;
        *ms = (size_t)(hit - s);
        *me = *ms + p->literal_len;
        return 1;
    }
    int rc = pcre2_match(p->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* deep backtracking: the interpreter keeps its frames on the heap */
        rc = pcre2_match(p->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return rc;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    if (*me < *ms) *me = *ms; /* \K can end a match before its start; tokenizers takes (start, start) */
    return 1;
}

pissa_status pissa__hf_pattern_find(const pissa__hf_pattern *p, const char *s, size_t n, pissa__spans *out) {
    pcre2_match_data *md = NULL;
    if (p->code && !(md = pcre2_match_data_create(1, NULL)))
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", p->where);
    pissa_status st = PISSA_OK;
    size_t last_end = 0, last_match_end = SIZE_MAX;
    while (last_end <= n) {
        size_t ms, me;
        int rc = find_from(p, md, s, n, last_end, &ms, &me);
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: the regex failed on a text of %zu bytes: %s", p->where, n,
                             (const char *)msg);
            break;
        }
        if (rc == 0) break;
        if (ms == me && me == last_match_end) { /* no empty match right after the previous match */
            int32_t cp;
            last_end += last_end < n ? (size_t)pissa__utf8_decode(s + last_end, &cp) : 1;
            continue;
        }
        last_end = me;
        last_match_end = me;
        spans_push(out, ms, me);
    }
    pcre2_match_data_free(md);
    if (st == PISSA_OK && out->oom) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", p->where);
    return st;
}
