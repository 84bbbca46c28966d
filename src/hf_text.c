/* tokenizers' normalizers and pre-tokenizers, on UTF-8 strings (no offsets are tracked: libpissa needs the ids).
 *
 * Normalizers map a string to a string; pre-tokenizers map a list of pieces to a list of pieces, each through
 * tokenizers' NormalizedString::split: the piece is cut into events (byte ranges that match the pattern or not,
 * covering it), the events are grouped by the split behaviour, and empty pieces are dropped. Unicode normalization
 * is utf8proc's; lowercase is utf8proc's simple mapping plus U+0130 -> "i̇", which is what Rust's char::to_lowercase
 * adds. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "hf_internal.h"

const char pissa__hf_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* The Whitespace pre-tokenizer's \w+|[^\w\s]+ and single_word's \w run in Rust's regex crate, whose \w (UTS #18)
 * also takes Join_Control (U+200C, U+200D), unlike Oniguruma's. */
#define REGEX_CRATE_WORD "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
const char pissa__hf_whitespace_pattern[] = "[" REGEX_CRATE_WORD "]+|[^" REGEX_CRATE_WORD "\\s]+";
const char pissa__hf_word_char_pattern[] = "[" REGEX_CRATE_WORD "]";

/* ---- the byte-level alphabet (GPT-2's bytes_to_unicode) ---- */

/* Bytes 33..126, 161..172 and 174..255 stand for themselves; the others (0..32, 127..160, 173), in order, for the
 * code points from 256 on. */
int32_t pissa__hf_byte_char(unsigned b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return (int32_t)b;
    if (b <= 32) return 256 + (int32_t)b;
    if (b <= 160) return 256 + 33 + (int32_t)(b - 127);
    return 256 + 67; /* 173 */
}

int pissa__hf_byte_of_char(int32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return cp;
    if (cp >= 256 && cp <= 288) return cp - 256;
    if (cp >= 289 && cp <= 322) return cp - 289 + 127;
    if (cp == 323) return 173;
    return -1;
}

static void put_byte_level(pissa__strbuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char u[4];
        int k = pissa__utf8_encode(pissa__hf_byte_char((unsigned char)s[i]), u);
        pissa__sb_put(b, u, (size_t)k);
    }
}

/* ---- normalizers ---- */

void pissa__hf_normalizer_clear(pissa__hf_normalizer *n) {
    free(n->text);
    pissa__hf_pattern_free(n->pattern);
    memset(n, 0, sizeof *n);
}

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

static pissa_status unicode_form(pissa__hf_norm_kind kind, const char *s, size_t n, pissa__strbuf *out) {
    if (is_ascii(s, n)) { /* ASCII is invariant under every normalization form */
        pissa__sb_put(out, s, n);
        return PISSA_OK;
    }
    int opt = UTF8PROC_STABLE;
    opt |= kind == HF_NORM_NFC || kind == HF_NORM_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
    if (kind == HF_NORM_NFKC || kind == HF_NORM_NFKD) opt |= UTF8PROC_COMPAT;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)opt);
    if (m < 0) {
        free(dst);
        return m == UTF8PROC_ERROR_NOMEM ? pissa__fail(PISSA_ERR_NOMEM, "unicode normalization: out of memory")
                                         : pissa__fail(PISSA_ERR_INVALID_ARG, "unicode normalization: %s",
                                                       utf8proc_errmsg(m));
    }
    pissa__sb_put(out, (const char *)dst, (size_t)m);
    free(dst);
    return PISSA_OK;
}

static void lowercase(const char *s, size_t n, pissa__strbuf *out) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            char l = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            pissa__sb_put(out, &l, 1);
            i++;
            continue;
        }
        int32_t cp;
        i += (size_t)pissa__utf8_decode(s + i, &cp);
        if (cp == 0x130) { /* the one unconditional multi-character lowercase mapping (SpecialCasing.txt) */
            pissa__sb_put(out, "i\xCC\x87", 3);
            continue;
        }
        char u[4];
        int k = pissa__utf8_encode(utf8proc_tolower(cp), u);
        pissa__sb_put(out, u, (size_t)k);
    }
}

static void strip(const char *s, size_t n, int left, int right, pissa__strbuf *out) {
    size_t a = 0, z = n;
    int32_t cp;
    while (left && a < z) {
        int k = pissa__utf8_decode(s + a, &cp);
        if (!pissa__uni_is_white_space(cp)) break;
        a += (size_t)k;
    }
    while (right && z > a) {
        size_t k = z - 1;
        while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        pissa__utf8_decode(s + k, &cp);
        if (!pissa__uni_is_white_space(cp)) break;
        z = k;
    }
    pissa__sb_put(out, s + a, z - a);
}

/* Replaces every match of P in S by CONTENT (NormalizedString::replace), stopping once OUT passes LIMIT bytes. */
static pissa_status replace(const pissa__hf_pattern *p, const char *content, size_t content_len, const char *s,
                            size_t n, size_t limit, pissa__strbuf *out) {
    pissa__spans m = {0};
    pissa_status st = pissa__hf_pattern_find(p, s, n, &m);
    if (st == PISSA_OK) {
        size_t at = 0;
        for (size_t i = 0; i < m.n && out->n <= limit; i++) {
            pissa__sb_put(out, s + at, m.v[i][0] - at);
            pissa__sb_put(out, content, content_len);
            at = m.v[i][1];
        }
        if (out->n <= limit) pissa__sb_put(out, s + at, n - at);
    }
    free(m.v);
    return st;
}

/* How far normalizers may grow a text of LEN bytes. Real ones stay within a few times it (NFKD's longest expansion
 * is 11x, "▁" for " " 3x), but an empty-match Replace inserts its content at every position, as tokenizers and
 * transformers.js do, and a Sequence of them multiplies: refused rather than allocated. */
#define HF_NORM_GROWTH 64
#define HF_NORM_SLACK 4096

pissa_status pissa__hf_normalize(const pissa__hf_normalizer *v, size_t n, const char *s, size_t len,
                                 pissa__strbuf *a, pissa__strbuf *b, const pissa__strbuf **out) {
    a->n = 0;
    a->oom = 0;
    pissa__sb_put(a, s, len);
    pissa__strbuf *cur = a, *next = b;
    const size_t limit = len > (SIZE_MAX - HF_NORM_SLACK) / HF_NORM_GROWTH ? SIZE_MAX
                                                                           : HF_NORM_GROWTH * len + HF_NORM_SLACK;
    for (size_t i = 0; i < n; i++) {
        const pissa__hf_normalizer *z = &v[i];
        next->n = 0;
        next->oom = 0;
        pissa__sb_put(next, "", 0); /* allocate, so next->p is never NULL */
        const char *t = cur->p ? cur->p : "";
        pissa_status st = PISSA_OK;
        switch (z->kind) {
        case HF_NORM_NFC:
        case HF_NORM_NFD:
        case HF_NORM_NFKC:
        case HF_NORM_NFKD: st = unicode_form(z->kind, t, cur->n, next); break;
        case HF_NORM_LOWERCASE: lowercase(t, cur->n, next); break;
        case HF_NORM_STRIP: strip(t, cur->n, z->strip_left, z->strip_right, next); break;
        case HF_NORM_PREPEND:
            if (cur->n) pissa__sb_put(next, z->text, z->text_len);
            pissa__sb_put(next, t, cur->n);
            break;
        case HF_NORM_REPLACE: st = replace(z->pattern, z->text, z->text_len, t, cur->n, limit, next); break;
        case HF_NORM_BYTE_LEVEL: put_byte_level(next, t, cur->n); break;
        }
        if (st != PISSA_OK) return st;
        if (next->oom) return pissa__fail(PISSA_ERR_NOMEM, "normalizer: out of memory (%zu bytes)", cur->n);
        if (next->n > limit)
            return pissa__fail(PISSA_ERR_UNSUPPORTED,
                               "normalizer %zu grew a text of %zu bytes past %zu bytes (normalizers may grow a text "
                               "to %d times its length + %d bytes)", i, len, limit, HF_NORM_GROWTH, HF_NORM_SLACK);
        pissa__strbuf *tmp = cur;
        cur = next;
        next = tmp;
    }
    if (cur->oom) return pissa__fail(PISSA_ERR_NOMEM, "normalizer: out of memory (%zu bytes)", len);
    *out = cur;
    return PISSA_OK;
}

/* ---- pieces ---- */

void pissa__hf_pieces_clear(pissa__hf_pieces *p) {
    p->text.n = 0;
    p->text.oom = 0;
    p->n = 0;
    p->oom = 0;
}

void pissa__hf_pieces_free(pissa__hf_pieces *p) {
    free(p->text.p);
    free(p->v);
    memset(p, 0, sizeof *p);
}

/* Appends a piece whose text is already at the end of p->text (LEN bytes). Empty pieces are dropped. */
static void piece_commit(pissa__hf_pieces *p, size_t len, int at_origin) {
    if (len == 0 || p->oom) return;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        pissa__hf_piece *v = realloc(p->v, cap * sizeof *v);
        if (!v) {
            p->oom = 1;
            return;
        }
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n++] = (pissa__hf_piece){p->text.n - len, len, at_origin};
}

void pissa__hf_pieces_add(pissa__hf_pieces *p, const char *s, size_t len, int at_origin) {
    if (len == 0) return;
    pissa__sb_put(&p->text, s, len);
    piece_commit(p, len, at_origin);
}

/* ---- splitting a piece (NormalizedString::split) ---- */

typedef struct {
    size_t (*v)[3]; // (n) start, end, is_match
    size_t n, cap;
    int oom;
} events;

static void ev_push(events *e, size_t start, size_t end, int match) {
    if (e->oom) return;
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 64;
        size_t(*v)[3] = realloc(e->v, cap * sizeof *v);
        if (!v) {
            e->oom = 1;
            return;
        }
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n][0] = start;
    e->v[e->n][1] = end;
    e->v[e->n][2] = (size_t)match;
    e->n++;
}

/* Events of a regex or string pattern (the Pattern impl of SysRegex): the gaps and the matches, in order. */
static pissa_status pattern_events(const pissa__hf_pattern *p, const char *s, size_t n, pissa__spans *spans,
                                   events *e) {
    e->n = 0;
    if (n == 0) {
        ev_push(e, 0, 0, 0);
        return PISSA_OK;
    }
    spans->n = 0;
    PISSA_TRY(pissa__hf_pattern_find(p, s, n, spans));
    size_t prev = 0;
    for (size_t i = 0; i < spans->n; i++) {
        if (prev != spans->v[i][0]) ev_push(e, prev, spans->v[i][0], 0);
        ev_push(e, spans->v[i][0], spans->v[i][1], 1);
        prev = spans->v[i][1];
    }
    if (prev != n) ev_push(e, prev, n, 0);
    return PISSA_OK;
}

/* Events of a character predicate (the Pattern impl of Fn(char) -> bool): each matching character alone. */
static void char_events(int (*pred)(int32_t, int32_t), int32_t arg, const char *s, size_t n, events *e) {
    e->n = 0;
    if (n == 0) {
        ev_push(e, 0, 0, 0);
        return;
    }
    size_t last = 0, i = 0;
    while (i < n) {
        int32_t cp;
        size_t k = (size_t)pissa__utf8_decode(s + i, &cp);
        if (pred(cp, arg)) {
            if (last < i) ev_push(e, last, i, 0);
            ev_push(e, i, i + k, 1);
            last = i + k;
        }
        i += k;
    }
    if (n > last) ev_push(e, last, n, 0);
}

static int pred_numeric(int32_t cp, int32_t arg) { return (void)arg, pissa__uni_is_numeric(cp); }
static int pred_white_space(int32_t cp, int32_t arg) { return (void)arg, pissa__uni_is_white_space(cp); }
static int pred_punctuation(int32_t cp, int32_t arg) { return (void)arg, pissa__uni_is_punctuation(cp); }
static int pred_equal(int32_t cp, int32_t arg) { return cp == arg; }

/* Groups the events by BEHAVIOR (in place; a removed event keeps is_match = 1) and appends the resulting pieces of
 * S to OUT. */
static void split_by(const char *s, events *e, int invert, pissa__hf_behavior behavior, int at_origin,
                     pissa__hf_pieces *out) {
    size_t (*v)[3] = e->v, n = e->n, k = 0;
    if (invert)
        for (size_t i = 0; i < n; i++) v[i][2] = !v[i][2];
    int prev = 0;
    switch (behavior) {
    case HF_SPLIT_REMOVED: k = n; break;
    case HF_SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++) v[i][2] = 0;
        k = n;
        break;
    case HF_SPLIT_CONTIGUOUS: /* runs of matches, and runs of non-matches, become one piece */
        for (size_t i = 0; i < n; i++) {
            int m = (int)v[i][2];
            if (m == prev && k > 0) v[k - 1][1] = v[i][1];
            else v[k][0] = v[i][0], v[k][1] = v[i][1], v[k++][2] = 0;
            prev = m;
        }
        break;
    case HF_SPLIT_MERGED_WITH_PREVIOUS: /* a match joins the piece before it (unless that was a match) */
        for (size_t i = 0; i < n; i++) {
            int m = (int)v[i][2];
            if (m && !prev && k > 0) v[k - 1][1] = v[i][1];
            else v[k][0] = v[i][0], v[k][1] = v[i][1], v[k++][2] = 0;
            prev = m;
        }
        break;
    case HF_SPLIT_MERGED_WITH_NEXT: /* the same from the right: a match joins the piece after it */
        for (size_t i = n; i-- > 0;) {
            int m = (int)v[i][2];
            size_t a = v[i][0], z = v[i][1];
            if (m && !prev && k > 0) v[n - k][0] = a;
            else {
                k++;
                v[n - k][0] = a, v[n - k][1] = z, v[n - k][2] = 0;
            }
            prev = m;
        }
        memmove(v, v + (n - k), k * sizeof *v);
        break;
    }
    for (size_t i = 0; i < k; i++) {
        if (v[i][2]) continue; /* removed */
        pissa__hf_pieces_add(out, s + v[i][0], v[i][1] - v[i][0], at_origin && v[i][0] == 0);
    }
}

/* ---- pre-tokenizers ---- */

void pissa__hf_pretok_clear(pissa__hf_pretok *p) {
    pissa__hf_pattern_free(p->pattern);
    memset(p, 0, sizeof *p);
}

/* One pre-tokenizer on one piece. SCRATCH is a string buffer for the transformed piece. */
static pissa_status pre_one(const pissa__hf_pretok *z, const char *s, size_t n, int at_origin, pissa__hf_pieces *out,
                            pissa__spans *spans, events *e, pissa__strbuf *scratch) {
    switch (z->kind) {
    case HF_PRE_SPLIT:
    case HF_PRE_WHITESPACE:
        PISSA_TRY(pattern_events(z->pattern, s, n, spans, e));
        split_by(s, e, z->kind == HF_PRE_WHITESPACE ? 1 : z->invert,
                 z->kind == HF_PRE_WHITESPACE ? HF_SPLIT_REMOVED : z->behavior, at_origin, out);
        return PISSA_OK;
    case HF_PRE_DIGITS:
        char_events(pred_numeric, 0, s, n, e);
        split_by(s, e, 0, z->individual_digits ? HF_SPLIT_ISOLATED : HF_SPLIT_CONTIGUOUS, at_origin, out);
        return PISSA_OK;
    case HF_PRE_WHITESPACE_SPLIT:
        char_events(pred_white_space, 0, s, n, e);
        split_by(s, e, 0, HF_SPLIT_REMOVED, at_origin, out);
        return PISSA_OK;
    case HF_PRE_PUNCTUATION:
        char_events(pred_punctuation, 0, s, n, e);
        split_by(s, e, 0, z->behavior, at_origin, out);
        return PISSA_OK;
    case HF_PRE_BYTE_LEVEL: {
        scratch->n = 0;
        if (z->add_prefix_space && (n == 0 || s[0] != ' ')) pissa__sb_put(scratch, " ", 1);
        pissa__sb_put(scratch, s, n);
        if (scratch->oom) return pissa__fail(PISSA_ERR_NOMEM, "ByteLevel pre-tokenizer: out of memory");
        const char *t = scratch->p;
        size_t m = scratch->n;
        if (z->pattern) {
            PISSA_TRY(pattern_events(z->pattern, t, m, spans, e));
        } else {
            e->n = 0;
            ev_push(e, 0, m, 0);
        }
        for (size_t i = 0; i < e->n; i++) { /* Isolated: every event is a piece, mapped to the byte alphabet */
            size_t a = e->v[i][0], len = e->v[i][1] - a, before = out->text.n;
            put_byte_level(&out->text, t + a, len);
            piece_commit(out, out->text.n - before, at_origin && a == 0);
        }
        return PISSA_OK;
    }
    case HF_PRE_METASPACE: {
        scratch->n = 0;
        int starts_with_rep = n >= (size_t)z->rep_len && memcmp(s, z->rep, (size_t)z->rep_len) == 0;
        if (n > 0 && s[0] == ' ') starts_with_rep = 1; /* the space becomes the replacement */
        if (!starts_with_rep && (z->prepend == HF_PREPEND_ALWAYS || (z->prepend == HF_PREPEND_FIRST && at_origin)))
            pissa__sb_put(scratch, z->rep, (size_t)z->rep_len);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') pissa__sb_put(scratch, z->rep, (size_t)z->rep_len);
            else pissa__sb_put(scratch, s + i, 1);
        }
        if (scratch->oom) return pissa__fail(PISSA_ERR_NOMEM, "Metaspace pre-tokenizer: out of memory");
        const char *t = scratch->p ? scratch->p : "";
        if (!z->split) {
            pissa__hf_pieces_add(out, t, scratch->n, at_origin);
            return PISSA_OK;
        }
        char_events(pred_equal, z->rep_cp, t, scratch->n, e);
        split_by(t, e, 0, HF_SPLIT_MERGED_WITH_NEXT, at_origin, out);
        return PISSA_OK;
    }
    }
    return PISSA_OK;
}

pissa_status pissa__hf_pre_tokenize(const pissa__hf_pretok *v, size_t n, pissa__hf_pieces *io,
                                    pissa__hf_pieces *tmp, pissa__spans *spans) {
    events e = {0};
    pissa__strbuf scratch = {0};
    pissa_status st = PISSA_OK;
    for (size_t k = 0; k < n && st == PISSA_OK; k++) {
        pissa__hf_pieces_clear(tmp);
        for (size_t i = 0; i < io->n && st == PISSA_OK; i++) {
            const pissa__hf_piece *p = &io->v[i];
            st = pre_one(&v[k], io->text.p + p->off, p->len, p->at_origin, tmp, spans, &e, &scratch);
            if (st == PISSA_OK && (e.oom || tmp->oom || tmp->text.oom))
                st = pissa__fail(PISSA_ERR_NOMEM, "pre-tokenizer: out of memory (%zu pieces)", io->n);
        }
        pissa__hf_pieces swap = *io;
        *io = *tmp;
        *tmp = swap;
    }
    free(e.v);
    free(scratch.p);
    return st;
}
