/* tokenizers' BPE model: a word's characters become vocabulary ids, then adjacent pairs merge by rank (the pair
 * listed first in model.merges merges first; among equal ranks, the leftmost) until no listed pair remains.
 *
 * Short words (the usual case after a pre-tokenizer) merge by scanning their pair ranks; long ones (a SentencePiece
 * vocabulary with no pre-tokenizer sees whole paragraphs as one word) keep candidate pairs in a heap ordered by
 * (rank, position), as tokenizers' Word::merge_all does. Both give the same merges. Words of fewer than 256 bytes
 * are cached per encoding call, so repeated words are merged once. */
#include <stdlib.h>
#include <string.h>

#include "hf_internal.h"

/* ---- hashing ---- */

static uint64_t mix64(uint64_t h) {
    h ^= h >> 31;
    h *= 0x7FB5D329728EA185ull;
    h ^= h >> 27;
    h *= 0x81DADEF4BC2DD44Dull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    return mix64(h ^ w);
}

/* ---- string -> id map ---- */

int pissa__strmap_init(pissa__strmap *m, size_t n_expected) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < 2 * n_expected + 2) {
        if (cap > SIZE_MAX / 4) return 0;
        cap *= 2;
    }
    m->key = pissa__calloc(cap, sizeof *m->key);
    m->len = pissa__alloc(cap, sizeof *m->len);
    m->value = pissa__alloc(cap, sizeof *m->value);
    m->mask = cap - 1;
    if (!m->key || !m->len || !m->value) {
        pissa__strmap_free(m);
        return 0;
    }
    return 1;
}

void pissa__strmap_free(pissa__strmap *m) {
    free(m->key);
    free(m->len);
    free(m->value);
    memset(m, 0, sizeof *m);
}

int32_t pissa__strmap_put(pissa__strmap *m, const char *key, size_t len, int32_t value) {
    size_t i = (size_t)hash_bytes(key, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (!m->key[i]) break;
        if (m->len[i] == len && memcmp(m->key[i], key, len) == 0) return m->value[i];
    }
    if (2 * (m->n + 1) > m->mask + 1 || len > UINT32_MAX) return INT32_MIN;
    m->key[i] = key;
    m->len[i] = (uint32_t)len;
    m->value[i] = value;
    m->n++;
    return value;
}

int32_t pissa__strmap_get(const pissa__strmap *m, const char *key, size_t len) {
    if (!m->key) return -1;
    size_t i = (size_t)hash_bytes(key, len) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        if (!m->key[i]) return -1;
        if (m->len[i] == len && memcmp(m->key[i], key, len) == 0) return m->value[i];
    }
}

/* ---- merges ---- */

static uint64_t pair_of(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

void pissa__hf_bpe_add_merge(pissa__hf_bpe *m, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = pair_of(left, right);
    size_t i = (size_t)mix64(key) & m->merges_mask;
    while (m->merges[i].pair != UINT64_MAX && m->merges[i].pair != key) i = (i + 1) & m->merges_mask;
    m->merges[i] = (pissa__hf_merge){key, rank, merged};
}

static const pissa__hf_merge *find_merge(const pissa__hf_bpe *m, int32_t a, int32_t b) {
    if (!m->merges) return NULL;
    uint64_t key = pair_of(a, b);
    size_t i = (size_t)mix64(key) & m->merges_mask;
    for (;; i = (i + 1) & m->merges_mask) {
        if (m->merges[i].pair == key) return &m->merges[i];
        if (m->merges[i].pair == UINT64_MAX) return NULL;
    }
}

void pissa__hf_bpe_free(pissa__hf_bpe *m) {
    pissa__strmap_free(&m->vocab);
    free(m->merges);
    free(m->prefix);
    free(m->suffix);
    memset(m, 0, sizeof *m);
}

/* ---- per-call scratch: symbols, heap, word cache ---- */

typedef struct {
    int32_t rank;
    uint32_t pos;
    int32_t merged;
} cand;

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len; // into cache_keys
    uint32_t ids_off, ids_n;   // into cache_ids
    int used;
} cache_slot;

struct pissa__hf_bpe_work {
    int32_t *sym;       // (cap) symbol ids
    int32_t *rank;      // (cap) rank of the pair (i, next) in the scan merge, INT32_MAX for none
    int32_t *merged;    // (cap)
    uint32_t *prev, *next; // (cap) neighbours in the heap merge
    size_t cap;
    cand *heap;
    size_t heap_n, heap_cap;
    cache_slot *slot;   // (mask + 1)
    size_t mask, used;
    pissa__strbuf cache_keys;
    pissa__ids cache_ids;
    pissa__strbuf tmp;  // a character with its prefix/suffix
};

pissa__hf_bpe_work *pissa__hf_bpe_work_new(void) { return calloc(1, sizeof(pissa__hf_bpe_work)); }

void pissa__hf_bpe_work_free(pissa__hf_bpe_work *w) {
    if (!w) return;
    free(w->sym);
    free(w->rank);
    free(w->merged);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->slot);
    free(w->cache_keys.p);
    free(w->cache_ids.v);
    free(w->tmp.p);
    free(w);
}

static int reserve(pissa__hf_bpe_work *w, size_t n) {
    if (n <= w->cap) return 1;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n) cap *= 2;
    int32_t *sym = realloc(w->sym, cap * sizeof *sym);
    if (sym) w->sym = sym;
    int32_t *rank = realloc(w->rank, cap * sizeof *rank);
    if (rank) w->rank = rank;
    int32_t *merged = realloc(w->merged, cap * sizeof *merged);
    if (merged) w->merged = merged;
    uint32_t *prev = realloc(w->prev, cap * sizeof *prev);
    if (prev) w->prev = prev;
    uint32_t *next = realloc(w->next, cap * sizeof *next);
    if (next) w->next = next;
    if (!sym || !rank || !merged || !prev || !next) return 0;
    w->cap = cap;
    return 1;
}

#define CACHE_MAX_WORD 256

static cache_slot *cache_find(pissa__hf_bpe_work *w, const char *s, size_t n, uint64_t h) {
    if (!w->slot) return NULL;
    for (size_t i = (size_t)h & w->mask;; i = (i + 1) & w->mask) {
        cache_slot *c = &w->slot[i];
        if (!c->used) return c;
        if (c->hash == h && c->key_len == n && memcmp(w->cache_keys.p + c->key_off, s, n) == 0) return c;
    }
}

static void cache_put(pissa__hf_bpe_work *w, const char *s, size_t n, uint64_t h, const int32_t *ids, size_t k) {
    if (2 * (w->used + 1) > (w->slot ? w->mask + 1 : 0)) { /* grow (or create) the table */
        size_t cap = w->slot ? 2 * (w->mask + 1) : 1024;
        cache_slot *slot = pissa__calloc(cap, sizeof *slot);
        if (!slot) return; /* the cache is an optimisation: carry on without it */
        for (size_t i = 0; w->slot && i <= w->mask; i++) {
            if (!w->slot[i].used) continue;
            size_t j = (size_t)w->slot[i].hash & (cap - 1);
            while (slot[j].used) j = (j + 1) & (cap - 1);
            slot[j] = w->slot[i];
        }
        free(w->slot);
        w->slot = slot;
        w->mask = cap - 1;
    }
    if (w->cache_keys.n + n > UINT32_MAX || w->cache_ids.n + k > UINT32_MAX) return;
    cache_slot *c = cache_find(w, s, n, h);
    if (c->used) return;
    size_t key_off = w->cache_keys.n, ids_off = w->cache_ids.n;
    pissa__sb_put(&w->cache_keys, s, n);
    pissa__ids_append(&w->cache_ids, ids, k);
    if (w->cache_keys.oom || w->cache_ids.oom) return;
    *c = (cache_slot){h, (uint32_t)key_off, (uint32_t)n, (uint32_t)ids_off, (uint32_t)k, 1};
    w->used++;
}

/* ---- merging ---- */

#define NONE UINT32_MAX

/* Scan merge of SYM[0..*n): repeatedly the lowest-rank pair, the leftmost among equal ranks. */
static void merge_scan(const pissa__hf_bpe *m, pissa__hf_bpe_work *w, size_t *n_sym) {
    int32_t *sym = w->sym, *rank = w->rank, *merged = w->merged;
    size_t n = *n_sym;
    for (size_t i = 0; i + 1 < n; i++) {
        const pissa__hf_merge *g = find_merge(m, sym[i], sym[i + 1]);
        rank[i] = g ? g->rank : INT32_MAX;
        merged[i] = g ? g->merged : -1;
    }
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == INT32_MAX) break;
        /* symbol best+1 goes; pair best+1 goes (the pairs after it move down), pairs best-1 and best change */
        sym[best] = merged[best];
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        if (best + 3 <= n) {
            memmove(rank + best + 1, rank + best + 2, (n - best - 3) * sizeof *rank);
            memmove(merged + best + 1, merged + best + 2, (n - best - 3) * sizeof *merged);
        }
        n--;
        for (size_t i = best ? best - 1 : 0; i <= best && i + 1 < n; i++) {
            const pissa__hf_merge *g = find_merge(m, sym[i], sym[i + 1]);
            rank[i] = g ? g->rank : INT32_MAX;
            merged[i] = g ? g->merged : -1;
        }
    }
    *n_sym = n;
}

static int cand_before(const cand *a, const cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static int heap_push(pissa__hf_bpe_work *w, cand c) {
    if (w->heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
        cand *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return 0;
        w->heap = h;
        w->heap_cap = cap;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_before(&c, &w->heap[parent])) break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = c;
    return 1;
}

static cand heap_pop(pissa__hf_bpe_work *w) {
    cand top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!cand_before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static int push_pair(const pissa__hf_bpe *m, pissa__hf_bpe_work *w, uint32_t pos) {
    uint32_t r = w->next[pos];
    if (r == NONE) return 1;
    const pissa__hf_merge *g = find_merge(m, w->sym[pos], w->sym[r]);
    return g ? heap_push(w, (cand){g->rank, pos, g->merged}) : 1;
}

/* Heap merge (Word::merge_all): the same merges as merge_scan in O(n log n). */
static int merge_heap(const pissa__hf_bpe *m, pissa__hf_bpe_work *w, size_t *n_sym) {
    size_t n = *n_sym;
    int32_t *sym = w->sym;
    for (size_t i = 0; i < n; i++) {
        w->prev[i] = i ? (uint32_t)(i - 1) : NONE;
        w->next[i] = i + 1 < n ? (uint32_t)(i + 1) : NONE;
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (!push_pair(m, w, (uint32_t)i)) return 0;
    while (w->heap_n) {
        cand c = heap_pop(w);
        uint32_t l = c.pos, r = w->next[l];
        if (sym[l] < 0 || r == NONE) continue; /* removed, or now the last symbol */
        const pissa__hf_merge *g = find_merge(m, sym[l], sym[r]);
        if (!g || g->merged != c.merged) continue; /* stale: the pair at l changed since it was pushed */
        sym[l] = c.merged;
        sym[r] = -1;
        w->next[l] = w->next[r];
        if (w->next[r] != NONE) w->prev[w->next[r]] = l;
        if (w->prev[l] != NONE && !push_pair(m, w, w->prev[l])) return 0;
        if (!push_pair(m, w, l)) return 0;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (sym[i] >= 0) sym[k++] = sym[i];
    *n_sym = k;
    return 1;
}

/* ---- cut points ---- */

void pissa__hf_bpe_find_cuts(pissa__hf_bpe *m) {
    static const int32_t candidates[] = {0x2581 /* ▁ */, ' ', 0x120 /* Ġ */, '\n'};
    m->n_cut = 0;
    if (m->ignore_merges || m->prefix || m->suffix) return;
    for (size_t k = 0; k < sizeof candidates / sizeof *candidates; k++) {
        char c[4];
        int cl = pissa__utf8_encode(candidates[k], c);
        if (pissa__strmap_get(&m->vocab, c, (size_t)cl) < 0) continue;
        int ok = 1;
        for (size_t i = 0; ok && i <= m->vocab.mask; i++) {
            const char *s = m->vocab.key[i];
            if (!s) continue;
            size_t n = m->vocab.len[i];
            int32_t prev = -1, cp;
            for (size_t j = 0; ok && j < n; j += (size_t)pissa__utf8_decode(s + j, &cp), prev = cp) {
                pissa__utf8_decode(s + j, &cp);
                if (cp == candidates[k] && j > 0 && prev != cp) ok = 0; /* c after another character */
            }
        }
        if (ok) m->cut[m->n_cut++] = candidates[k];
    }
}

/* ---- a word ---- */

static pissa_status tokenize_word(const pissa__hf_bpe *m, pissa__hf_bpe_work *w, const char *word, size_t n,
                                  pissa__ids *out);

pissa_status pissa__hf_bpe_tokenize(const pissa__hf_bpe *m, pissa__hf_bpe_work *w, const char *word, size_t n,
                                    pissa__ids *out) {
    if (n < CACHE_MAX_WORD || m->n_cut == 0) return tokenize_word(m, w, word, n, out);
    /* a long word: merge the pieces between cut points on their own (see pissa__hf_bpe_find_cuts) */
    size_t start = 0, i = 0;
    int32_t prev = -1;
    while (i < n) {
        int32_t cp;
        size_t k = (size_t)pissa__utf8_decode(word + i, &cp);
        int cut = 0;
        for (int c = 0; c < m->n_cut; c++) cut |= cp == m->cut[c];
        if (cut && i > start && prev != cp) {
            PISSA_TRY(tokenize_word(m, w, word + start, i - start, out));
            start = i;
        }
        prev = cp;
        i += k;
    }
    return tokenize_word(m, w, word + start, n - start, out);
}

static pissa_status tokenize_word(const pissa__hf_bpe *m, pissa__hf_bpe_work *w, const char *word, size_t n,
                                  pissa__ids *out) {
    if (n == 0) return PISSA_OK;
    if (m->ignore_merges) {
        int32_t id = pissa__strmap_get(&m->vocab, word, n);
        if (id >= 0) {
            pissa__ids_push(out, id);
            return PISSA_OK;
        }
    }
    uint64_t h = 0;
    if (n < CACHE_MAX_WORD) {
        h = hash_bytes(word, n);
        cache_slot *c = cache_find(w, word, n, h);
        if (c && c->used) { /* a word of unknown characters without unk_token has no ids: cache_ids may be NULL */
            if (c->ids_n) pissa__ids_append(out, w->cache_ids.v + c->ids_off, c->ids_n);
            return PISSA_OK;
        }
    }
    if (!reserve(w, n + 1)) return pissa__fail(PISSA_ERR_NOMEM, "BPE: out of memory for a word of %zu bytes", n);

    /* characters -> symbols (BPE::merge_word) */
    size_t n_sym = 0, i = 0;
    int32_t unk = -1; /* pending unk_token (fused over consecutive unknown characters under fuse_unk) */
    while (i < n) {
        int32_t cp;
        size_t k = (size_t)pissa__utf8_decode(word + i, &cp);
        const char *s = word + i;
        size_t len = k;
        if ((i > 0 && m->prefix) || (i + k == n && m->suffix)) {
            w->tmp.n = 0;
            if (i > 0 && m->prefix) pissa__sb_put(&w->tmp, m->prefix, m->prefix_len);
            pissa__sb_put(&w->tmp, word + i, k);
            if (i + k == n && m->suffix) pissa__sb_put(&w->tmp, m->suffix, m->suffix_len);
            if (w->tmp.oom) return pissa__fail(PISSA_ERR_NOMEM, "BPE: out of memory");
            s = w->tmp.p;
            len = w->tmp.n;
        }
        i += k;
        int32_t id = pissa__strmap_get(&m->vocab, s, len);
        if (id >= 0) {
            if (unk >= 0) w->sym[n_sym++] = unk;
            unk = -1;
            w->sym[n_sym++] = id;
            continue;
        }
        if (m->byte_fallback) {
            int all = 1;
            for (size_t b = 0; b < len; b++) all &= m->byte_token[(unsigned char)s[b]] >= 0;
            if (all) { /* (like tokenizers, without flushing a pending unk first) */
                if (!reserve(w, n_sym + len + n)) return pissa__fail(PISSA_ERR_NOMEM, "BPE: out of memory");
                for (size_t b = 0; b < len; b++) w->sym[n_sym++] = m->byte_token[(unsigned char)s[b]];
                continue;
            }
        }
        if (m->unk >= 0) {
            if (unk >= 0 && !m->fuse_unk) w->sym[n_sym++] = unk;
            unk = m->unk;
        }
    }
    if (unk >= 0) w->sym[n_sym++] = unk;

    if (n_sym > 1) {
        if (n_sym <= m->scan_max) merge_scan(m, w, &n_sym);
        else if (!merge_heap(m, w, &n_sym)) return pissa__fail(PISSA_ERR_NOMEM, "BPE: out of memory (%zu symbols)", n_sym);
    }
    pissa__ids_append(out, w->sym, n_sym);
    if (n < CACHE_MAX_WORD) cache_put(w, word, n, h, w->sym, n_sym);
    if (out->oom) return pissa__fail(PISSA_ERR_NOMEM, "BPE: out of memory");
    return PISSA_OK;
}
