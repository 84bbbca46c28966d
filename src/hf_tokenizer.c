/* The tokenizer.json pipeline: added tokens, encoding (normalize, pre-tokenize, BPE, post-process) and decoding
 * (the decoder chain, then transformers' clean_up_tokenization).
 *
 * Added tokens are found as tokenizers' AddedVocabulary finds them: leftmost-longest matches of the tokens with
 * normalized false in the raw text, then of those with normalized true (their content normalized) in each normalized
 * piece; single_word discards a match touching a word character (\w) on either side, lstrip and rstrip take the
 * whitespace on that side into the token. */
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

/* ---- a byte trie of added-token strings ---- */

typedef struct {
    int32_t child;   // first child, -1 for none
    int32_t sibling; // next sibling, -1 for none
    int32_t token;   // index into t->added ending here, -1 for none
    unsigned char byte;
} trie_node;

struct pissa__hf_trie {
    trie_node *node; // node 0 is the root
    size_t n, cap;
    int32_t root[256]; // the root's children by byte (-1 for none)
};

void pissa__hf_trie_free(pissa__hf_trie *trie) {
    if (!trie) return;
    free(trie->node);
    free(trie);
}

static int32_t trie_new_node(pissa__hf_trie *trie, unsigned char byte) {
    if (trie->n == trie->cap) {
        size_t cap = trie->cap ? 2 * trie->cap : 64;
        trie_node *v = realloc(trie->node, cap * sizeof *v);
        if (!v) return -1;
        trie->node = v;
        trie->cap = cap;
    }
    trie->node[trie->n] = (trie_node){-1, -1, -1, byte};
    return (int32_t)trie->n++;
}

/* Adds S -> TOKEN; a string already present keeps its first token. Returns 0 on allocation failure. */
static int trie_add(pissa__hf_trie *trie, const char *s, size_t n, int32_t token) {
    int32_t cur = -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t next;
        if (cur < 0) {
            next = trie->root[b];
            if (next < 0 && (next = trie_new_node(trie, b)) >= 0) trie->root[b] = next;
        } else {
            next = trie->node[cur].child;
            while (next >= 0 && trie->node[next].byte != b) next = trie->node[next].sibling;
            if (next < 0 && (next = trie_new_node(trie, b)) >= 0) {
                trie->node[next].sibling = trie->node[cur].child;
                trie->node[cur].child = next;
            }
        }
        if (next < 0) return 0;
        cur = next;
    }
    if (trie->node[cur].token < 0) trie->node[cur].token = token;
    return 1;
}

/* The longest token string starting at S[0]: its length (0 for none) and *TOKEN. */
static size_t trie_longest(const pissa__hf_trie *trie, const char *s, size_t n, int32_t *token) {
    int32_t cur = trie->root[(unsigned char)s[0]];
    size_t best = 0;
    for (size_t i = 1; cur >= 0; i++) {
        if (trie->node[cur].token >= 0) {
            best = i;
            *token = trie->node[cur].token;
        }
        if (i == n) break;
        unsigned char b = (unsigned char)s[i];
        cur = trie->node[cur].child;
        while (cur >= 0 && trie->node[cur].byte != b) cur = trie->node[cur].sibling;
    }
    return best;
}

/* ---- finishing the added vocabulary at load ---- */

pissa_status pissa__hf_added_finish(pissa__hf *t, const char *path) {
    pissa__strbuf a = {0}, b = {0};
    pissa_status st = PISSA_OK;
    int need_word = 0;
    pissa__hf_trie *tries[2] = {calloc(1, sizeof **tries), calloc(1, sizeof **tries)};
    if (!tries[0] || !tries[1]) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    for (int k = 0; k < 2 && tries[k]; k++) memset(tries[k]->root, 0xFF, sizeof tries[k]->root);
    /* special tokens first, then the others (tokenizers' order; the first of two equal strings wins) */
    for (int pass = 0; pass < 2 && st == PISSA_OK; pass++) {
        for (size_t i = 0; i < t->n_added && st == PISSA_OK; i++) {
            pissa__hf_added *x = &t->added[i];
            if (x->special != (pass == 0)) continue;
            need_word |= x->single_word;
            if (!x->match) {
                x->match = x->content;
                x->match_len = x->len;
            }
            if (x->normalized && t->n_norm) {
                const pissa__strbuf *out;
                st = pissa__hf_normalize(t->norm, t->n_norm, x->content, x->len, &a, &b, &out);
                if (st != PISSA_OK) break;
                if (out->n != x->len || memcmp(out->p, x->content, x->len)) {
                    char *m = pissa__alloc(out->n + 1, 1);
                    if (!m) {
                        st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
                        break;
                    }
                    memcpy(m, out->p, out->n);
                    m[out->n] = '\0';
                    x->match = m;
                    x->match_len = out->n;
                }
            }
            if (x->match_len && !trie_add(tries[x->normalized], x->match, x->match_len, (int32_t)i))
                st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    free(a.p);
    free(b.p);
    for (int k = 0; k < 2; k++) {
        if (st == PISSA_OK && tries[k] && tries[k]->n) continue;
        pissa__hf_trie_free(tries[k]);
        tries[k] = NULL;
    }
    t->raw_trie = tries[0];
    t->norm_trie = tries[1];
    if (st == PISSA_OK && need_word) {
        st = pissa__hf_pattern_new(pissa__hf_word_char_pattern, strlen(pissa__hf_word_char_pattern), 1,
                                   "single_word's \\w", &t->word_re);
    }
    return st;
}

int32_t pissa__hf_token_id(const pissa__hf *t, const char *s, size_t n) {
    int32_t k = pissa__strmap_get(&t->added_map, s, n);
    return k >= 0 ? t->added[k].id : pissa__strmap_get(&t->bpe.vocab, s, n);
}

/* tokens <= bound_a * len + bound_b: how far each stage can grow the text (UAX #15 gives the normalization forms'
 * UTF-8 expansion: 3x for NFC/NFD, 11x for NFKC/NFKD), then one token per byte at most. */
void pissa__hf_token_bound(pissa__hf *t) {
    double a = 1, b = 0; /* bytes of a segment of L input bytes <= a L + b */
    for (size_t i = 0; i < t->n_norm; i++) {
        const pissa__hf_normalizer *z = &t->norm[i];
        double f = 1, g = 0;
        switch (z->kind) {
        case HF_NORM_NFC:
        case HF_NORM_NFD: f = 3; break;
        case HF_NORM_NFKC:
        case HF_NORM_NFKD: f = 11; break;
        case HF_NORM_LOWERCASE:
        case HF_NORM_BYTE_LEVEL: f = 2; break;
        case HF_NORM_STRIP: break;
        case HF_NORM_PREPEND: g = (double)z->text_len; break;
        case HF_NORM_REPLACE: f = (double)z->text_len + 1, g = (double)z->text_len; break;
        }
        a = f * a, b = f * b + g;
    }
    for (size_t i = 0; i < t->n_pre; i++) { /* ByteLevel: a prefix space per piece, 2-byte characters */
        const pissa__hf_pretok *z = &t->pre[i];
        double f = z->kind == HF_PRE_BYTE_LEVEL ? 4 : z->kind == HF_PRE_METASPACE ? 2.0 * z->rep_len : 1;
        a *= f, b *= f;
    }
    double per_byte = 1 + (double)t->bpe.prefix_len + (double)t->bpe.suffix_len; /* byte fallback with affixes */
    a *= per_byte, b *= per_byte;
    /* segments <= len + 1, added tokens <= len */
    t->bound_a = a + b + 1;
    t->bound_b = b + (double)(t->post.n_before + t->post.n_after);
}

/* ---- splitting out added tokens (AddedVocabulary::find_matches) ---- */

typedef struct {
    size_t (*v)[3]; // start, end, added index + 1 (0 for text)
    size_t n, cap;
    int oom;
} segments;

static void seg_push(segments *s, size_t a, size_t z, size_t token) {
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        size_t(*v)[3] = realloc(s->v, cap * sizeof *v);
        if (!v) {
            s->oom = 1;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n][0] = a, s->v[s->n][1] = z, s->v[s->n][2] = token;
    s->n++;
}

static int is_word_char(const pissa__hf *t, const char *s, size_t n) {
    pissa__spans m = {0};
    int32_t cp;
    size_t k = n ? (size_t)pissa__utf8_decode(s, &cp) : 0;
    int word = k && pissa__hf_pattern_find(t->word_re, s, k, &m) == PISSA_OK && m.n > 0;
    free(m.v);
    return word;
}

static int ends_with_word(const pissa__hf *t, const char *s, size_t n) {
    if (n == 0) return 0;
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return is_word_char(t, s + k, n - k);
}

static pissa_status split_added(const pissa__hf *t, const pissa__hf_trie *trie, const char *s, size_t n,
                                segments *out) {
    out->n = 0;
    size_t start_offset = 0, i = 0;
    while (trie && i < n) {
        int32_t tok;
        size_t len = trie_longest(trie, s + i, n - i, &tok);
        if (!len) {
            i++;
            continue;
        }
        size_t start = i, stop = i + len;
        i = stop; /* the search goes on after the match, whatever becomes of it */
        const pissa__hf_added *x = &t->added[tok];
        if (x->single_word && ((start > 0 && ends_with_word(t, s, start)) || (stop < n && is_word_char(t, s + stop, n - stop))))
            continue;
        if (x->lstrip) { /* the whitespace before it, not taken by the previous match */
            size_t a = start;
            while (a > start_offset) {
                size_t k = a - 1;
                while (k > start_offset && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
                int32_t cp;
                pissa__utf8_decode(s + k, &cp);
                if (!pissa__uni_is_white_space(cp)) break;
                a = k;
            }
            start = a;
        }
        if (x->rstrip) {
            while (stop < n) {
                int32_t cp;
                int k = pissa__utf8_decode(s + stop, &cp);
                if (!pissa__uni_is_white_space(cp)) break;
                stop += (size_t)k;
            }
        }
        if (start_offset < start) seg_push(out, start_offset, start, 0);
        seg_push(out, start, stop, (size_t)tok + 1);
        start_offset = stop;
    }
    if (start_offset < n || (n == 0 && !trie)) seg_push(out, start_offset, n, 0);
    if (out->oom) return pissa__fail(PISSA_ERR_NOMEM, "added tokens: out of memory");
    return PISSA_OK;
}

/* ---- encoding ---- */

typedef struct {
    const pissa__hf *t;
    pissa__ids *out;
    segments raw, norm;
    pissa__strbuf a, b;
    pissa__hf_pieces io, tmp;
    pissa__spans spans;
    pissa__hf_bpe_work *work;
} encoder;

/* Pre-tokenizers and the model on S, a piece of normalized text without added tokens. */
static pissa_status encode_piece(encoder *e, const char *s, size_t n, int at_origin) {
    const pissa__hf *t = e->t;
    if (t->n_pre == 0) return pissa__hf_bpe_tokenize(&t->bpe, e->work, s, n, e->out);
    pissa__hf_pieces_clear(&e->io);
    pissa__hf_pieces_add(&e->io, s, n, at_origin);
    if (e->io.oom || e->io.text.oom) return pissa__fail(PISSA_ERR_NOMEM, "encode: out of memory");
    PISSA_TRY(pissa__hf_pre_tokenize(t->pre, t->n_pre, &e->io, &e->tmp, &e->spans));
    for (size_t i = 0; i < e->io.n; i++)
        PISSA_TRY(pissa__hf_bpe_tokenize(&t->bpe, e->work, e->io.text.p + e->io.v[i].off, e->io.v[i].len, e->out));
    return PISSA_OK;
}

static pissa_status encode_text(encoder *e, const char *text, size_t len) {
    const pissa__hf *t = e->t;
    PISSA_TRY(split_added(t, t->raw_trie, text, len, &e->raw));
    for (size_t i = 0; i < e->raw.n; i++) {
        size_t a = e->raw.v[i][0], z = e->raw.v[i][1];
        if (e->raw.v[i][2]) {
            pissa__ids_push(e->out, t->added[e->raw.v[i][2] - 1].id);
            continue;
        }
        if (a == z) continue;
        const char *s = text + a;
        size_t n = z - a;
        if (t->n_norm) {
            const pissa__strbuf *ns;
            PISSA_TRY(pissa__hf_normalize(t->norm, t->n_norm, s, n, &e->a, &e->b, &ns));
            s = ns->p;
            n = ns->n;
        }
        if (!t->norm_trie) {
            if (n) PISSA_TRY(encode_piece(e, s, n, a == 0));
            continue;
        }
        PISSA_TRY(split_added(t, t->norm_trie, s, n, &e->norm));
        for (size_t k = 0; k < e->norm.n; k++) {
            size_t b = e->norm.v[k][0], y = e->norm.v[k][1];
            if (e->norm.v[k][2]) pissa__ids_push(e->out, t->added[e->norm.v[k][2] - 1].id);
            else if (y > b) PISSA_TRY(encode_piece(e, s + b, y - b, a == 0 && b == 0));
        }
    }
    return PISSA_OK;
}

pissa_status pissa__hf_encode(const pissa__hf *t, const char *text, size_t len, int add_special_tokens,
                              pissa__ids *out) {
    encoder e = {.t = t, .out = out};
    e.work = pissa__hf_bpe_work_new();
    if (!e.work) return pissa__fail(PISSA_ERR_NOMEM, "encode: out of memory");
    if (add_special_tokens) pissa__ids_append(out, t->post.before, t->post.n_before);
    pissa_status st = encode_text(&e, text, len);
    if (add_special_tokens) pissa__ids_append(out, t->post.after, t->post.n_after);
    if (st == PISSA_OK && out->oom) st = pissa__fail(PISSA_ERR_NOMEM, "encode: out of memory (%zu bytes)", len);
    free(e.raw.v);
    free(e.norm.v);
    free(e.a.p);
    free(e.b.p);
    pissa__hf_pieces_free(&e.io);
    pissa__hf_pieces_free(&e.tmp);
    free(e.spans.v);
    pissa__hf_bpe_work_free(e.work);
    return st;
}

pissa_status pissa__hf_debug_pre_tokenize(const pissa__hf *t, const char *text, size_t len, pissa__hf_pieces *out) {
    pissa__hf_pieces tmp = {0};
    pissa__spans spans = {0};
    pissa__hf_pieces_clear(out);
    pissa__hf_pieces_add(out, text, len, 1);
    pissa_status st = pissa__hf_pre_tokenize(t->pre, t->n_pre, out, &tmp, &spans);
    pissa__hf_pieces_free(&tmp);
    free(spans.v);
    return st;
}

/* ---- decoding: tokens -> decoder chain -> text ---- */

/* A list of strings (empty ones included) in one buffer. */
typedef struct {
    pissa__strbuf text;
    size_t (*v)[2]; // (n) offset, length
    size_t n, cap;
    int oom;
} strlist;

/* Ends the string that began at START (text[start .. text.n)). */
static void sl_end(strlist *l, size_t start) {
    if (l->oom) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        size_t(*v)[2] = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n][0] = start;
    l->v[l->n][1] = l->text.n - start;
    l->n++;
}

static void sl_clear(strlist *l) {
    l->text.n = 0;
    l->text.oom = 0;
    l->n = 0;
}

static const char *sl_at(const strlist *l, size_t i) { return l->text.p ? l->text.p + l->v[i][0] : ""; }

/* ByteFallback's "<0xHH>" (Rust's u8::from_str_radix on the two characters, which also takes "+H"). */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0 && !(i == 3 && c == '+')) return -1;
        v = d < 0 ? 0 : v * 16 + d;
    }
    return v;
}

/* Appends the bytes of a token under ByteLevel: each character's byte, or the token's own UTF-8 when some
 * character is outside the byte alphabet. */
static void byte_level_bytes(pissa__strbuf *b, const char *s, size_t n) {
    size_t start = b->n, i = 0;
    while (i < n) {
        int32_t cp;
        i += (size_t)pissa__utf8_decode(s + i, &cp);
        int byte = pissa__hf_byte_of_char(cp);
        if (byte < 0) {
            b->n = start;
            pissa__sb_put(b, s, n);
            return;
        }
        char c = (char)byte;
        pissa__sb_put(b, &c, 1);
    }
}

/* Appends S with the decoder's per-token rules (Replace, ByteFallback on one token, Metaspace, Strip). FIRST: S is
 * the first token (Metaspace drops its replacement characters then). */
static pissa_status decode_token(const pissa__hf_decoder *d, const char *s, size_t n, int first, pissa__strbuf *b) {
    switch (d->kind) {
    case HF_DEC_REPLACE: {
        pissa__spans m = {0};
        pissa_status st = pissa__hf_pattern_find(d->pattern, s, n, &m);
        size_t at = 0;
        for (size_t i = 0; st == PISSA_OK && i < m.n; i++) {
            pissa__sb_put(b, s + at, m.v[i][0] - at);
            pissa__sb_put(b, d->text, d->text_len);
            at = m.v[i][1];
        }
        pissa__sb_put(b, s + at, n - at);
        free(m.v);
        return st;
    }
    case HF_DEC_METASPACE:
        for (size_t i = 0; i < n;) {
            int32_t cp;
            int k = pissa__utf8_decode(s + i, &cp);
            if (cp != d->cp) pissa__sb_put(b, s + i, (size_t)k);
            else if (!(first && d->prepend)) pissa__sb_put(b, " ", 1);
            i += (size_t)k;
        }
        return PISSA_OK;
    case HF_DEC_STRIP: { /* up to `start` leading and `stop` trailing content characters */
        size_t a = 0, z = n;
        for (size_t k = 0; k < d->start && a < z; k++) {
            int32_t cp;
            int len = pissa__utf8_decode(s + a, &cp);
            if (cp != d->cp) break;
            a += (size_t)len;
        }
        for (size_t k = 0; k < d->stop && z > a; k++) {
            size_t j = z - 1;
            while (j > a && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
            int32_t cp;
            pissa__utf8_decode(s + j, &cp);
            if (cp != d->cp) break;
            z = j;
        }
        pissa__sb_put(b, s + a, z - a);
        return PISSA_OK;
    }
    default: pissa__sb_put(b, s, n); return PISSA_OK;
    }
}

static pissa_status decode_step(const pissa__hf_decoder *d, const strlist *in, strlist *out, pissa__strbuf *tmp) {
    sl_clear(out);
    if (d->kind == HF_DEC_FUSE || d->kind == HF_DEC_BYTE_LEVEL) { /* the whole list becomes one string */
        tmp->n = 0;
        for (size_t i = 0; i < in->n; i++) {
            if (d->kind == HF_DEC_FUSE) pissa__sb_put(tmp, sl_at(in, i), in->v[i][1]);
            else byte_level_bytes(tmp, sl_at(in, i), in->v[i][1]);
        }
        pissa__utf8_lossy(&out->text, tmp->p ? tmp->p : "", tmp->n);
        sl_end(out, 0);
        return PISSA_OK;
    }
    if (d->kind == HF_DEC_BYTE_FALLBACK) { /* runs of <0xHH> become their UTF-8 text, or one U+FFFD per byte */
        for (size_t i = 0; i < in->n;) {
            int byte = byte_token(sl_at(in, i), in->v[i][1]);
            if (byte < 0) {
                size_t start = out->text.n;
                pissa__sb_put(&out->text, sl_at(in, i), in->v[i][1]);
                sl_end(out, start);
                i++;
                continue;
            }
            tmp->n = 0;
            for (; i < in->n && (byte = byte_token(sl_at(in, i), in->v[i][1])) >= 0; i++) {
                char c = (char)byte;
                pissa__sb_put(tmp, &c, 1);
            }
            size_t start = out->text.n;
            if (tmp->p && pissa__utf8_valid_prefix(tmp->p, tmp->n) == tmp->n) pissa__sb_put(&out->text, tmp->p, tmp->n);
            else
                for (size_t k = 0; k < tmp->n; k++) pissa__sb_put(&out->text, "\xEF\xBF\xBD", 3);
            sl_end(out, start);
        }
        return PISSA_OK;
    }
    for (size_t i = 0; i < in->n; i++) {
        size_t start = out->text.n;
        PISSA_TRY(decode_token(d, sl_at(in, i), in->v[i][1], i == 0, &out->text));
        sl_end(out, start);
    }
    return PISSA_OK;
}

/* transformers' clean_up_tokenization: each replacement over the whole text, in this order. */
static void clean_up(pissa__strbuf *b, pissa__strbuf *tmp) {
    static const char *from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (size_t r = 0; r < sizeof from / sizeof *from; r++) {
        size_t fl = strlen(from[r]), i = 0;
        int found = 0;
        for (size_t k = 0; b->p && k + fl <= b->n && !found; k++) found = !memcmp(b->p + k, from[r], fl);
        if (!found) continue;
        tmp->n = 0;
        while (i < b->n) {
            if (i + fl <= b->n && !memcmp(b->p + i, from[r], fl)) {
                pissa__sb_puts(tmp, to[r]);
                i += fl;
            } else {
                pissa__sb_put(tmp, b->p + i, 1);
                i++;
            }
        }
        pissa__strbuf swap = *b;
        *b = *tmp;
        *tmp = swap;
    }
}

pissa_status pissa__hf_decode(const pissa__hf *t, const int32_t *ids, size_t n, int skip_special_tokens, int cleanup,
                              pissa__strbuf *b) {
    strlist l[2];
    memset(l, 0, sizeof l);
    pissa__strbuf tmp = {0};
    pissa_status st = PISSA_OK;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0) {
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "decode: id %d at position %zu is negative", (int)id, i);
            break;
        }
        if (id >= t->n_ids || !t->token[id]) continue; /* tokenizers skips ids without a token */
        if (skip_special_tokens && (t->flags[id] & HF_TOK_SPECIAL)) continue;
        if (!t->has_decoder && l[0].n) pissa__sb_put(&l[0].text, " ", 1); /* no decoder: tokens joined by " " */
        size_t start = l[0].text.n;
        pissa__sb_put(&l[0].text, t->token[id], t->token_len[id]);
        sl_end(&l[0], start);
    }
    int cur = 0;
    for (size_t k = 0; st == PISSA_OK && t->has_decoder && k < t->n_dec; k++) {
        st = decode_step(&t->dec[k], &l[cur], &l[1 - cur], &tmp);
        cur = 1 - cur;
        if (st == PISSA_OK && (l[cur].oom || l[cur].text.oom || tmp.oom))
            st = pissa__fail(PISSA_ERR_NOMEM, "decode: out of memory");
    }
    if (st == PISSA_OK) {
        size_t start = b->n;
        if (!t->has_decoder) pissa__sb_put(b, l[cur].text.p ? l[cur].text.p : "", l[cur].text.n);
        else
            for (size_t i = 0; i < l[cur].n; i++) pissa__sb_put(b, sl_at(&l[cur], i), l[cur].v[i][1]);
        if (cleanup && t->clean_up_spaces) { /* on what this call appended */
            pissa__strbuf part = {0};
            pissa__sb_put(&part, b->p ? b->p + start : "", b->n - start);
            clean_up(&part, &tmp);
            b->n = start;
            pissa__sb_put(b, part.p ? part.p : "", part.n);
            if (part.oom) b->oom = 1;
            free(part.p);
        }
        if (b->oom || tmp.oom) st = pissa__fail(PISSA_ERR_NOMEM, "decode: out of memory");
    }
    for (int k = 0; k < 2; k++) {
        free(l[k].text.p);
        free(l[k].v);
    }
    free(tmp.p);
    return st;
}

void pissa__hf_token_bytes(const pissa__hf *t, int32_t id, pissa__strbuf *b, pissa__strbuf *x, pissa__strbuf *y) {
    if (id < 0 || id >= t->n_ids || !t->token[id]) return;
    const char *s = t->token[id];
    size_t n = t->token_len[id];
    if (!t->has_decoder || (t->flags[id] & HF_TOK_ADDED)) {
        pissa__sb_put(b, s, n);
        return;
    }
    x->n = 0;
    pissa__sb_put(x, s, n);
    for (size_t k = 0; k < t->n_dec && !x->oom; k++) {
        const pissa__hf_decoder *d = &t->dec[k];
        y->n = 0;
        if (d->kind == HF_DEC_BYTE_LEVEL) byte_level_bytes(y, x->p, x->n);
        else if (d->kind == HF_DEC_BYTE_FALLBACK && byte_token(x->p, x->n) >= 0) {
            char c = (char)byte_token(x->p, x->n);
            pissa__sb_put(y, &c, 1);
        } else if (d->kind == HF_DEC_REPLACE || d->kind == HF_DEC_METASPACE) {
            if (decode_token(d, x->p, x->n, 0, y) != PISSA_OK) y->oom = 1;
        } else {
            pissa__sb_put(y, x->p, x->n); /* Fuse and Strip act on the whole text */
        }
        pissa__strbuf swap = *x;
        *x = *y;
        *y = swap;
    }
    if (x->oom) b->oom = 1;
    else pissa__sb_put(b, x->p ? x->p : "", x->n);
}
