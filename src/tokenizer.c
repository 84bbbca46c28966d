/* The tokenizer handle: the llama2.c BPE tokenizer (run.c's build_tokenizer / encode / decode, with a heap-based
 * merge loop that makes the same merges as run.c's rescanning loop in O(n log n)), and the entry points shared with
 * tokenizer.json (hf_*.c), which dispatch on the kind loaded. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hf_internal.h"

#define N_RESERVED 259 /* <unk>, BOS, EOS, 256 byte tokens */

struct sorted_piece { /* run.c's TokenIndex */
    const char *s;
    size_t len;
    int32_t id;
};

struct pissa_tokenizer {
    int32_t vocab_size;          // V
    int32_t max_token_length;    // the longest piece (the header's value is only a bound, and may be huge)
    char **pieces;               // (V) NUL-terminated, into blob
    int32_t *lens;               // (V) piece lengths in bytes
    float *scores;               // (V)
    struct sorted_piece *sorted; // (V) pieces sorted by (bytes, length), ties by id: for binary search
    char *blob;                  // all pieces back to back, each followed by a NUL
    unsigned char byte_pieces[512]; // byte i as a 1-byte string at 2*i (run.c's byte_pieces)
    pissa__hf *hf;                  // a tokenizer.json (then the fields above are unused)
    char *hf_bytes;                 // tokenizer.json: each id's pissa_tokenizer_decode_piece bytes, back to back
    size_t *hf_bytes_off;           // (V + 1) offsets into hf_bytes
};

/* ---- loading ---- */

static int32_t rd_i32(const unsigned char *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

static float rd_f32(const unsigned char *p) {
    int32_t v = rd_i32(p);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

/* Order of pieces as run.c's strcmp orders them (for strings without NUL): bytes as unsigned, then length. */
static int piece_cmp(const char *a, size_t na, const char *b, size_t nb) {
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return (na > nb) - (na < nb);
}

static int sorted_cmp(const void *pa, const void *pb) {
    const struct sorted_piece *a = pa, *b = pb;
    int c = piece_cmp(a->s, a->len, b->s, b->len);
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

void pissa_tokenizer_free(pissa_tokenizer *tok) {
    if (!tok) return;
    pissa__hf_free(tok->hf);
    free(tok->hf_bytes);
    free(tok->hf_bytes_off);
    free(tok->pieces);
    free(tok->lens);
    free(tok->scores);
    free(tok->sorted);
    free(tok->blob);
    free(tok);
}

/* A llama2.c file whose contents (RAW, SIZE bytes) are already read. */
static pissa_status load_llama2c(const char *path, const char *raw, size_t size, int32_t vocab_size,
                                 pissa_tokenizer **out) {
    const unsigned char *p = (const unsigned char *)raw;
    pissa_status st = PISSA_OK;
    pissa_tokenizer *tok = NULL;

    if (size < 4) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: truncated tokenizer file (%zu bytes, no max_token_length)", path, size);
        goto done;
    }
    int32_t max_len = rd_i32(p);
    if (max_len < 0) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: negative max_token_length %d", path, (int)max_len);
        goto done;
    }

    /* Pass 1: walk the records to validate them and find V (when inferred) and the blob size. */
    int32_t V = 0, longest = 0;
    size_t off = 4, blob_bytes = 0;
    for (;;) {
        if (vocab_size > 0 && V == vocab_size) break;
        if (vocab_size == 0 && off == size) break;
        if (size - off < 8) {
            if (vocab_size > 0 && off == size)
                st = pissa__fail(PISSA_ERR_FORMAT, "%s: token %d is missing: the file has %d tokens, fewer than the "
                                 "vocab size %d", path, (int)V, (int)V, (int)vocab_size);
            else
                st = pissa__fail(PISSA_ERR_FORMAT, "%s: truncated in the header of token %d (offset %zu)", path,
                                 (int)V, off);
            goto done;
        }
        float score = rd_f32(p + off);
        int32_t len = rd_i32(p + off + 4);
        if (isnan(score)) {
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: token %d has a NaN score", path, (int)V);
            goto done;
        }
        if (len < 0) {
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: token %d has negative length %d", path, (int)V, (int)len);
            goto done;
        }
        if (len > max_len) {
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: token %d has length %d > max_token_length %d", path, (int)V,
                             (int)len, (int)max_len);
            goto done;
        }
        if ((size_t)len > size - off - 8) {
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: truncated in token %d (length %d, %zu bytes left)", path, (int)V,
                             (int)len, size - off - 8);
            goto done;
        }
        off += 8 + (size_t)len;
        blob_bytes += (size_t)len + 1;
        if (len > longest) longest = len;
        if (V == INT32_MAX) {
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: too many tokens", path);
            goto done;
        }
        V++;
    }
    if (V < N_RESERVED) {
        st = pissa__fail(PISSA_ERR_FORMAT, "%s: %d tokens; a llama2.c vocabulary needs at least %d (<unk>, BOS, EOS, "
                         "256 byte tokens)", path, (int)V, N_RESERVED);
        goto done;
    }

    /* Pass 2: copy the pieces. */
    tok = calloc(1, sizeof *tok);
    if (!tok) goto nomem;
    tok->vocab_size = V;
    tok->max_token_length = longest; /* sizes the merge buffer: never the header's claim */
    tok->pieces = pissa__alloc((size_t)V, sizeof *tok->pieces);
    tok->lens = pissa__alloc((size_t)V, sizeof *tok->lens);
    tok->scores = pissa__alloc((size_t)V, sizeof *tok->scores);
    tok->sorted = pissa__alloc((size_t)V, sizeof *tok->sorted);
    tok->blob = pissa__alloc(blob_bytes, 1);
    if (!tok->pieces || !tok->lens || !tok->scores || !tok->sorted || !tok->blob) goto nomem;
    off = 4;
    char *b = tok->blob;
    for (int32_t i = 0; i < V; i++) {
        tok->scores[i] = rd_f32(p + off);
        tok->lens[i] = rd_i32(p + off + 4);
        memcpy(b, p + off + 8, (size_t)tok->lens[i]);
        b[tok->lens[i]] = '\0';
        tok->pieces[i] = b;
        b += tok->lens[i] + 1;
        off += 8 + (size_t)tok->lens[i];
        tok->sorted[i] = (struct sorted_piece){tok->pieces[i], (size_t)tok->lens[i], i};
    }
    qsort(tok->sorted, (size_t)V, sizeof *tok->sorted, sorted_cmp);
    for (int i = 0; i < 256; i++) {
        tok->byte_pieces[2 * i] = (unsigned char)i;
        tok->byte_pieces[2 * i + 1] = '\0';
    }
    *out = tok;
    tok = NULL;
    goto done;
nomem:
    st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory loading the tokenizer", path);
done:
    pissa_tokenizer_free(tok);
    return st;
}

/* A JSON object starts with "{" then a key or "}" (a llama2.c file starting with byte '{' = max_token_length 123
 * has NUL bytes next). */
static int looks_like_json(const char *s, size_t n) {
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    if (i == n || s[i++] != '{') return 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    return i < n && (s[i] == '"' || s[i] == '}');
}

static pissa_status load_hf(const char *path, const char *raw, size_t size, int32_t vocab_size,
                            pissa_tokenizer **out) {
    pissa_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    pissa_status st = pissa__hf_load(path, raw, size, vocab_size, &tok->hf);
    if (st == PISSA_OK) {
        tok->vocab_size = tok->hf->n_ids;
        tok->hf_bytes_off = pissa__alloc((size_t)tok->vocab_size + 1, sizeof *tok->hf_bytes_off);
        pissa__strbuf b = {0}, x = {0}, y = {0};
        for (int32_t id = 0; tok->hf_bytes_off && id < tok->vocab_size; id++) {
            tok->hf_bytes_off[id] = b.n;
            pissa__hf_token_bytes(tok->hf, id, &b, &x, &y);
            pissa__sb_put(&b, "\0", 1); /* each is a C string too */
        }
        if (tok->hf_bytes_off) tok->hf_bytes_off[tok->vocab_size] = b.n;
        tok->hf_bytes = b.p;
        free(x.p);
        free(y.p);
        if (!tok->hf_bytes_off || b.oom) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    }
    if (st != PISSA_OK) {
        pissa_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return PISSA_OK;
}

pissa_status pissa_tokenizer_load(const char *path, int32_t vocab_size, pissa_tokenizer **out) {
    if (!path || !out || vocab_size < 0)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_load: NULL argument or negative vocab_size");
    *out = NULL;
    struct stat sb;
    char *json_path = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (!(json_path = pissa__path_join(path, "tokenizer.json")))
            return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
        if (stat(json_path, &sb) != 0) {
            free(json_path);
            return pissa__fail(PISSA_ERR_NOT_FOUND, "%s: a folder without tokenizer.json", path);
        }
        path = json_path;
    }
    char *raw;
    size_t size;
    pissa_status st = pissa__read_file(path, &raw, &size);
    if (st == PISSA_OK) {
        st = looks_like_json(raw, size) ? load_hf(path, raw, size, vocab_size, out)
                                        : load_llama2c(path, raw, size, vocab_size, out);
        free(raw);
    }
    free(json_path);
    return st;
}

pissa__hf *pissa__tokenizer_hf(const pissa_tokenizer *tok) { return tok ? tok->hf : NULL; }

pissa_tokenizer_kind pissa_tokenizer_get_kind(const pissa_tokenizer *tok) {
    return tok && tok->hf ? PISSA_TOKENIZER_HF : PISSA_TOKENIZER_LLAMA2C;
}

int32_t pissa_tokenizer_vocab_size(const pissa_tokenizer *tok) { return tok ? tok->vocab_size : 0; }

const char *pissa_tokenizer_piece(const pissa_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->vocab_size) return NULL;
    if (tok->hf) {
        if (!tok->hf->token[id]) return NULL;
        if (len) *len = tok->hf->token_len[id];
        return tok->hf->token[id];
    }
    if (len) *len = (size_t)tok->lens[id];
    return tok->pieces[id];
}

float pissa_tokenizer_score(const pissa_tokenizer *tok, int32_t id) {
    if (!tok || tok->hf || id < 0 || id >= tok->vocab_size) return NAN;
    return tok->scores[id];
}

/* Lowest id whose piece is S (N bytes), or -1: run.c's str_lookup. The sort puts equal pieces in id order, so
 * the lower bound is the lowest id. */
static int32_t lookup(const pissa_tokenizer *tok, const char *s, size_t n) {
    size_t lo = 0, hi = (size_t)tok->vocab_size;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (piece_cmp(tok->sorted[mid].s, tok->sorted[mid].len, s, n) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo == (size_t)tok->vocab_size) return -1;
    const struct sorted_piece *e = &tok->sorted[lo];
    return piece_cmp(e->s, e->len, s, n) == 0 ? e->id : -1;
}

/* ---- encoding ---- */

/* A candidate merge of the adjacent nodes (left, right) into `merged`, valid while both nodes still carry the
 * versions they had when it was pushed. */
typedef struct {
    float score;
    int32_t merged;
    uint32_t left, right;
    uint32_t ver_left, ver_right;
} merge_cand;

/* Max-heap order: higher score first; on equal scores the leftmost pair, as run.c's strict `>` scan picks it.
 * Node indices are original token positions, and merging preserves order, so smaller index = further left. */
static int cand_before(const merge_cand *a, const merge_cand *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

typedef struct {
    merge_cand *a;
    size_t n, cap;
} cand_heap;

static int heap_push(cand_heap *h, merge_cand c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        merge_cand *a = realloc(h->a, cap * sizeof *a);
        if (!a) return 0;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &h->a[parent])) break;
        h->a[i] = h->a[parent];
        i = parent;
    }
    h->a[i] = c;
    return 1;
}

static merge_cand heap_pop(cand_heap *h) {
    merge_cand top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && cand_before(&h->a[c + 1], &h->a[c])) c++;
        if (!cand_before(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

typedef struct {
    int32_t *id;    // (n) current token of each node
    uint32_t *prev, *next; // (n) neighbours; NONE at the ends
    uint32_t *ver;  // (n) bumped whenever a node's token changes or the node dies
    uint8_t *dead;  // (n)
} token_list;

#define NONE UINT32_MAX

/* Pushes the candidate merge of node L with its right neighbour, if their concatenation is a vocabulary piece
 * with a score run.c would accept (> -1e10f, its initial best_score). */
static int push_pair(const pissa_tokenizer *tok, const token_list *tl, uint32_t l, cand_heap *h, char *buf) {
    uint32_t r = tl->next[l];
    if (r == NONE) return 1;
    int32_t a = tl->id[l], b = tl->id[r];
    size_t na = (size_t)tok->lens[a], nb = (size_t)tok->lens[b];
    memcpy(buf, tok->pieces[a], na);
    memcpy(buf + na, tok->pieces[b], nb);
    int32_t m = lookup(tok, buf, na + nb);
    if (m < 0 || !(tok->scores[m] > -1e10f)) return 1;
    merge_cand c = {tok->scores[m], m, l, r, tl->ver[l], tl->ver[r]};
    return heap_push(h, c);
}

/* Merges TOKENS[0..*n) in place, exactly as run.c's loop "merge the best consecutive pair each iteration". */
static pissa_status bpe_merge(const pissa_tokenizer *tok, int32_t *tokens, size_t *n) {
    size_t len = *n;
    if (len < 2) return PISSA_OK;
    pissa_status st = PISSA_OK;
    token_list tl = {0};
    cand_heap h = {0};
    char *buf = malloc(2 * (size_t)tok->max_token_length + 1);
    tl.id = tokens;
    tl.prev = pissa__alloc(len, sizeof *tl.prev);
    tl.next = pissa__alloc(len, sizeof *tl.next);
    tl.ver = pissa__calloc(len, sizeof *tl.ver);
    tl.dead = pissa__calloc(len, 1);
    if (!buf || !tl.prev || !tl.next || !tl.ver || !tl.dead) goto nomem;
    for (size_t i = 0; i < len; i++) {
        tl.prev[i] = i ? (uint32_t)(i - 1) : NONE;
        tl.next[i] = i + 1 < len ? (uint32_t)(i + 1) : NONE;
    }
    for (size_t i = 0; i + 1 < len; i++)
        if (!push_pair(tok, &tl, (uint32_t)i, &h, buf)) goto nomem;

    while (h.n > 0) {
        merge_cand c = heap_pop(&h);
        uint32_t l = c.left, r = c.right;
        if (tl.dead[l] || tl.dead[r] || tl.next[l] != r || tl.ver[l] != c.ver_left || tl.ver[r] != c.ver_right)
            continue; /* stale: one of the two nodes changed since this pair was pushed */
        /* node l becomes the merged token; node r is unlinked */
        tl.id[l] = c.merged;
        tl.ver[l]++;
        tl.dead[r] = 1;
        tl.ver[r]++;
        tl.next[l] = tl.next[r];
        if (tl.next[r] != NONE) tl.prev[tl.next[r]] = l;
        if (tl.prev[l] != NONE && !push_pair(tok, &tl, tl.prev[l], &h, buf)) goto nomem;
        if (!push_pair(tok, &tl, l, &h, buf)) goto nomem;
    }
    /* compact the surviving nodes, in list order (= index order) */
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (!tl.dead[i]) tokens[k++] = tokens[i];
    *n = k;
    goto done;
nomem:
    st = pissa__fail(PISSA_ERR_NOMEM, "pissa_tokenizer_encode: out of memory (%zu tokens)", len);
done:
    free(buf);
    free(tl.prev);
    free(tl.next);
    free(tl.ver);
    free(tl.dead);
    free(h.a);
    return st;
}

/* run.c's encode into TOKENS, which has room for PISSA_TOKENIZER_MAX_TOKENS(len). */
static pissa_status encode_into(const pissa_tokenizer *tok, const char *text, size_t len, int bos, int eos,
                          int32_t *tokens, size_t *n_tokens) {
    size_t n = 0;
    if (bos) tokens[n++] = PISSA_TOKEN_BOS;
    /* add_dummy_prefix: one " " before a non-empty text */
    if (len > 0) {
        int32_t sp = lookup(tok, " ", 1);
        tokens[n++] = sp >= 0 ? sp : ' ' + 3;
    }
    /* code points (lead byte + up to 3 continuation bytes, grouped as run.c groups them) */
    const unsigned char *t = (const unsigned char *)text;
    char cp[4];
    size_t cp_len = 0;
    for (size_t k = 0; k < len; k++) {
        if ((t[k] & 0xC0) != 0x80) cp_len = 0;
        cp[cp_len++] = (char)t[k];
        unsigned char next = k + 1 < len ? t[k + 1] : 0; /* run.c reads the NUL terminator */
        if ((next & 0xC0) == 0x80 && cp_len < 4) continue;
        int32_t id = lookup(tok, cp, cp_len);
        if (id >= 0) {
            tokens[n++] = id;
        } else {
            for (size_t i = 0; i < cp_len; i++) tokens[n++] = (int32_t)(unsigned char)cp[i] + 3; /* byte fallback */
        }
        cp_len = 0;
    }
    /* like run.c, the merge runs over BOS too (and EOS is appended after it) */
    PISSA_TRY(bpe_merge(tok, tokens, &n));
    if (eos) tokens[n++] = PISSA_TOKEN_EOS;
    *n_tokens = n;
    return PISSA_OK;
}

static pissa_status encode_hf(const pissa_tokenizer *tok, const char *text, size_t len, int add_special, int bos,
                              int eos, int32_t *ids, size_t cap, size_t *n);

pissa_status pissa_tokenizer_encode(const pissa_tokenizer *tok, const char *text, size_t len, int bos, int eos,
                                    int32_t *ids, size_t cap, size_t *n) {
    if (!tok || (!text && len) || !n || (!ids && cap))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_encode: NULL argument");
    if (tok->hf) return encode_hf(tok, text, len, 0, bos, eos, ids, cap, n);
    if (len > (size_t)INT32_MAX - 3)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_encode: text of %zu bytes is too long", len);
    int32_t *tmp = pissa__alloc(PISSA_TOKENIZER_MAX_TOKENS(len), sizeof *tmp);
    if (!tmp) return pissa__fail(PISSA_ERR_NOMEM, "pissa_tokenizer_encode: out of memory (%zu bytes)", len);
    size_t m;
    pissa_status st = encode_into(tok, text, len, bos, eos, tmp, &m);
    if (st == PISSA_OK) {
        *n = m;
        if (m > cap)
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_encode: %zu tokens do not fit in capacity %zu", m,
                             cap);
        else if (m)
            memcpy(ids, tmp, m * sizeof *ids);
    }
    free(tmp);
    return st;
}

/* ---- decoding ---- */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

const char *pissa_tokenizer_decode_piece(const pissa_tokenizer *tok, int32_t prev, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->vocab_size) return NULL;
    if (tok->hf) {
        if (!tok->hf->token[id]) return NULL;
        if (len) *len = tok->hf_bytes_off[id + 1] - tok->hf_bytes_off[id] - 1;
        return tok->hf_bytes + tok->hf_bytes_off[id];
    }
    const char *piece = tok->pieces[id];
    size_t n = (size_t)tok->lens[id];
    /* following BOS, sentencepiece's decoder strips the leading whitespace */
    if (prev == PISSA_TOKEN_BOS && n > 0 && piece[0] == ' ') {
        piece++;
        n--;
    }
    /* raw byte tokens look like "<0x0A>" */
    if (n == 6 && memcmp(piece, "<0x", 3) == 0 && piece[5] == '>') {
        int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
        if (hi >= 0 && lo >= 0) {
            if (len) *len = 1;
            return (const char *)tok->byte_pieces + 2 * (hi * 16 + lo);
        }
    }
    if (len) *len = n;
    return piece;
}

pissa_status pissa_tokenizer_decode(const pissa_tokenizer *tok, const int32_t *ids, size_t n, char *buf, size_t cap,
                                    size_t *len) {
    if (!tok || (!ids && n) || !len || (!buf && cap))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_decode: NULL argument");
    if (tok->hf) return pissa_tokenizer_decode_text(tok, ids, n, 1, buf, cap, len);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_decode: id %d at position %zu is outside [0, %d)",
                               (int)ids[i], i, (int)tok->vocab_size);
        if (ids[i] == PISSA_TOKEN_BOS || ids[i] == PISSA_TOKEN_EOS) continue;
        size_t k;
        pissa_tokenizer_decode_piece(tok, i ? ids[i - 1] : -1, ids[i], &k);
        total += k;
    }
    *len = total;
    if (cap < total + 1)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_decode: %zu bytes (+ NUL) do not fit in capacity %zu",
                           total, cap);
    char *w = buf;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == PISSA_TOKEN_BOS || ids[i] == PISSA_TOKEN_EOS) continue;
        size_t k;
        const char *s = pissa_tokenizer_decode_piece(tok, i ? ids[i - 1] : -1, ids[i], &k);
        memcpy(w, s, k);
        w += k;
    }
    *w = '\0';
    return PISSA_OK;
}

/* ---- the API shared by both kinds ---- */

static pissa_status check_utf8(const char *text, size_t len) {
    size_t valid = pissa__utf8_valid_prefix(text, len);
    if (valid != len)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "encode: the text is not valid UTF-8 (byte %zu of %zu)", valid, len);
    return PISSA_OK;
}

static pissa_status encode_hf(const pissa_tokenizer *tok, const char *text, size_t len, int add_special, int bos,
                              int eos, int32_t *ids, size_t cap, size_t *n) {
    const pissa__hf *t = tok->hf;
    PISSA_TRY(check_utf8(text, len));
    int32_t b = t->special_id[PISSA_SPECIAL_BOS], e = t->special_id[PISSA_SPECIAL_EOS];
    if ((bos && b < 0) || (eos && e < 0))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "encode: the tokenizer has no %s token", bos && b < 0 ? "bos" : "eos");
    pissa__ids out = {0};
    if (bos) pissa__ids_push(&out, b);
    pissa_status st = pissa__hf_encode(t, text ? text : "", len, add_special, &out);
    if (eos) pissa__ids_push(&out, e);
    if (st == PISSA_OK && out.oom) st = pissa__fail(PISSA_ERR_NOMEM, "encode: out of memory");
    if (st == PISSA_OK) {
        *n = out.n;
        if (out.n > cap)
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_encode: %zu tokens do not fit in capacity %zu",
                             out.n, cap);
        else if (out.n)
            memcpy(ids, out.v, out.n * sizeof *ids);
    }
    free(out.v);
    return st;
}

pissa_status pissa_tokenizer_encode_text(const pissa_tokenizer *tok, const char *text, size_t len,
                                         int add_special_tokens, int32_t *ids, size_t cap, size_t *n) {
    if (!tok || (!text && len) || !n || (!ids && cap))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_encode_text: NULL argument");
    if (tok->hf) return encode_hf(tok, text, len, add_special_tokens, 0, 0, ids, cap, n);
    return pissa_tokenizer_encode(tok, text, len, add_special_tokens != 0, 0, ids, cap, n);
}

size_t pissa_tokenizer_max_tokens(const pissa_tokenizer *tok, size_t len) {
    if (!tok || !tok->hf) return len > SIZE_MAX - 3 ? SIZE_MAX : PISSA_TOKENIZER_MAX_TOKENS(len);
    double bound = ceil(tok->hf->bound_a * (double)len + tok->hf->bound_b) + 2; /* + explicit BOS and EOS */
    return bound >= (double)SIZE_MAX ? SIZE_MAX : (size_t)bound;
}

pissa_status pissa_tokenizer_decode_text(const pissa_tokenizer *tok, const int32_t *ids, size_t n,
                                         int skip_special_tokens, char *buf, size_t cap, size_t *len) {
    if (!tok || (!ids && n) || !len || (!buf && cap))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_decode_text: NULL argument");
    if (!tok->hf) return pissa_tokenizer_decode(tok, ids, n, buf, cap, len);
    pissa__strbuf b = {0};
    pissa_status st = pissa__hf_decode(tok->hf, ids, n, skip_special_tokens, 1, &b);
    if (st == PISSA_OK) {
        *len = b.n;
        if (cap < b.n + 1)
            st = pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_tokenizer_decode: %zu bytes (+ NUL) do not fit in capacity "
                             "%zu", b.n, cap);
        else {
            if (b.n) memcpy(buf, b.p, b.n);
            buf[b.n] = '\0';
        }
    }
    free(b.p);
    return st;
}

int32_t pissa_tokenizer_token_to_id(const pissa_tokenizer *tok, const char *token, size_t len) {
    if (!tok || (!token && len)) return -1;
    if (!tok->hf) return lookup(tok, token, len);
    return pissa__hf_token_id(tok->hf, token ? token : "", len);
}

int32_t pissa_tokenizer_special_id(const pissa_tokenizer *tok, pissa_special_token which) {
    if (!tok || (unsigned)which > PISSA_SPECIAL_PAD) return -1;
    if (tok->hf) return tok->hf->special_id[which];
    static const int32_t llama2c[4] = {PISSA_TOKEN_BOS, PISSA_TOKEN_EOS, PISSA_TOKEN_UNK, -1};
    return llama2c[which];
}

const char *pissa_tokenizer_special_token(const pissa_tokenizer *tok, pissa_special_token which) {
    if (!tok || !tok->hf || (unsigned)which > PISSA_SPECIAL_PAD) return NULL;
    return tok->hf->special_str[which];
}

int pissa_tokenizer_is_special(const pissa_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->vocab_size) return 0;
    if (tok->hf) return (tok->hf->flags[id] & HF_TOK_SPECIAL) != 0;
    return id == PISSA_TOKEN_UNK || id == PISSA_TOKEN_BOS || id == PISSA_TOKEN_EOS;
}

const char *pissa_tokenizer_chat_template(const pissa_tokenizer *tok) {
    return tok && tok->hf ? tok->hf->chat_template : NULL;
}

void pissa_tokenizer_stop_ids(const pissa_tokenizer *tok, const int32_t **ids, size_t *n) {
    static const int32_t llama2c_stop = PISSA_TOKEN_BOS;
    if (ids) *ids = tok && tok->hf ? tok->hf->stop_ids : tok ? &llama2c_stop : NULL;
    if (n) *n = tok && tok->hf ? tok->hf->n_stop : tok ? 1 : 0;
}

/* ---- streaming decode ---- */

struct pissa_token_stream {
    const pissa_tokenizer *tok;
    int skip_special;
    pissa__ids ids;      // tokenizer.json: the window (tokens before prefix_index give context)
    size_t prefix_index;
    pissa__strbuf prefix; // decode of the window up to what was released
    pissa__strbuf text;   // the window's decode, and what is handed out
    int32_t prev;         // llama2.c: the previous token
};

pissa_status pissa_token_stream_create(const pissa_tokenizer *tok, int skip_special_tokens, pissa_token_stream **out) {
    if (!tok || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_token_stream_create: NULL argument");
    *out = calloc(1, sizeof **out);
    if (!*out) return pissa__fail(PISSA_ERR_NOMEM, "pissa_token_stream_create: out of memory");
    (*out)->tok = tok;
    (*out)->skip_special = skip_special_tokens != 0;
    (*out)->prev = -1;
    return PISSA_OK;
}

void pissa_token_stream_free(pissa_token_stream *s) {
    if (!s) return;
    free(s->ids.v);
    free(s->prefix.p);
    free(s->text.p);
    free(s);
}

static int ends_incomplete(const pissa__strbuf *b) { return b->n >= 3 && !memcmp(b->p + b->n - 3, "\xEF\xBF\xBD", 3); }

/* tokenizers' step_decode_stream. */
pissa_status pissa_token_stream_put(pissa_token_stream *s, int32_t id, const char **text, size_t *len) {
    if (!s || !text || !len) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_token_stream_put: NULL argument");
    *text = "";
    *len = 0;
    if (id < 0) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_token_stream_put: negative id %d", (int)id);
    const pissa_tokenizer *tok = s->tok;
    if (!tok->hf) {
        size_t k = 0;
        const char *p = pissa_tokenizer_decode_piece(tok, s->prev, id, &k);
        if (!p)
            return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_token_stream_put: id %d is outside [0, %d)", (int)id,
                               (int)tok->vocab_size);
        s->prev = id;
        if (id != PISSA_TOKEN_BOS && id != PISSA_TOKEN_EOS) *text = p, *len = k;
        return PISSA_OK;
    }
    pissa__ids_push(&s->ids, id);
    s->text.n = 0;
    s->text.oom = 0;
    PISSA_TRY(pissa__hf_decode(tok->hf, s->ids.v, s->ids.n, s->skip_special, 0, &s->text));
    if (s->ids.oom || s->text.oom) return pissa__fail(PISSA_ERR_NOMEM, "pissa_token_stream_put: out of memory");
    if (s->text.n <= s->prefix.n || ends_incomplete(&s->text)) return PISSA_OK;
    /* The window's text extends the released prefix. A decoder that rewrites it (Strip with start > 1) makes
     * tokenizers' DecodeStream fail (InvalidPrefix); what was released stays released: only what follows it goes
     * out, from the next character boundary, never a second time. */
    size_t start = s->prefix.n, new_prefix_index = s->ids.n - s->prefix_index;
    while (start < s->text.n && ((unsigned char)s->text.p[start] & 0xC0) == 0x80) start++;
    memmove(s->ids.v, s->ids.v + s->prefix_index, (s->ids.n - s->prefix_index) * sizeof *s->ids.v);
    s->ids.n -= s->prefix_index;
    s->prefix_index = new_prefix_index;
    s->prefix.n = 0;
    PISSA_TRY(pissa__hf_decode(tok->hf, s->ids.v, s->ids.n, s->skip_special, 0, &s->prefix));
    if (s->prefix.oom) return pissa__fail(PISSA_ERR_NOMEM, "pissa_token_stream_put: out of memory");
    *text = s->text.p + start;
    *len = s->text.n - start;
    return PISSA_OK;
}

pissa_status pissa_token_stream_finish(pissa_token_stream *s, const char **text, size_t *len) {
    if (!s || !text || !len) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_token_stream_finish: NULL argument");
    *text = "";
    *len = 0;
    if (s->tok->hf && s->ids.n) {
        s->text.n = 0;
        PISSA_TRY(pissa__hf_decode(s->tok->hf, s->ids.v, s->ids.n, s->skip_special, 0, &s->text));
        if (s->text.n > s->prefix.n) {
            *text = s->text.p + s->prefix.n;
            *len = s->text.n - s->prefix.n;
        }
    }
    s->ids.n = 0;
    s->prefix_index = 0;
    s->prefix.n = 0;
    s->prev = -1;
    return PISSA_OK;
}
