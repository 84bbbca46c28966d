/* Reading tokenizer.json (and tokenizer_config.json, generation_config.json, chat_template.jinja beside it) into a
 * pissa__hf. Every component is checked as tokenizers' deserializer checks it; unknown component types are refused
 * with PISSA_ERR_UNSUPPORTED naming the type and its JSON path, malformed fields with PISSA_ERR_FORMAT naming the
 * field. Nothing is allocated from a size the file declares: tables are sized by what the file holds, and ids must
 * lie within a margin of the number of tokens actually listed. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hf_internal.h"

/* Ids of the model vocabulary may leave gaps, but at most this many beyond the number of entries. */
#define ID_SLACK 65536

typedef struct {
    const char *file; // for messages
    pissa__hf *t;
    int32_t n_vocab;  // entries in model.vocab
    int32_t max_id;   // largest id seen
} loader;

/* ---- JSON access with messages naming FILE: PATH ---- */

/* snprintf for JSON paths (a path too long for the buffer is cut; it only names things in messages). */
static void pathf(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

static pissa_status bad(const loader *L, const char *path, const char *what) {
    return pissa__fail(PISSA_ERR_FORMAT, "%s: %s %s", L->file, path, what);
}

static pissa_status unsupported(const loader *L, const char *path, const char *type) {
    return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: %s \"%s\" is not supported", L->file, path, type);
}

/* A boolean field: absent or null -> DFLT. */
static pissa_status get_bool(const loader *L, const cJSON *o, const char *key, const char *path, int dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char p[512];
    pathf(p, sizeof p, "%s.%s", path, key);
    if (!v || cJSON_IsNull(v)) *out = dflt;
    else if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else return bad(L, p, "must be true or false");
    return PISSA_OK;
}

/* A string field: absent or null -> *OUT = NULL (an error when REQUIRED). */
static pissa_status get_str(const loader *L, const cJSON *o, const char *key, const char *path, int required,
                            const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    char p[512];
    pathf(p, sizeof p, "%s.%s", path, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return required ? bad(L, p, "is missing") : PISSA_OK;
    if (!cJSON_IsString(v)) return bad(L, p, "must be a string");
    *out = v->valuestring;
    return PISSA_OK;
}

/* An integer in [lo, hi]. */
static int as_int(const cJSON *v, double lo, double hi, int64_t *out) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) || v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (int64_t)v->valuedouble;
    return 1;
}

/* A single Unicode character given as a string. */
static pissa_status get_char(const loader *L, const cJSON *o, const char *key, const char *path, int32_t *cp) {
    const char *s;
    char p[512];
    pathf(p, sizeof p, "%s.%s", path, key);
    PISSA_TRY(get_str(L, o, key, path, 1, &s));
    size_t n = strlen(s);
    if (n == 0 || (size_t)pissa__utf8_decode(s, cp) != n) return bad(L, p, "must be a single character");
    return PISSA_OK;
}

static char *dup_n(const char *s, size_t n) {
    char *d = pissa__alloc(n + 1, 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* {"String": s} or {"Regex": r} */
static pissa_status get_pattern(const loader *L, const cJSON *o, const char *path, pissa__hf_pattern **out) {
    char p[512], where[640];
    pathf(p, sizeof p, "%s.pattern", path);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "pattern");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(v, "String"), *r = cJSON_GetObjectItemCaseSensitive(v, "Regex");
    if (!cJSON_IsObject(v) || (!s == !r)) return bad(L, p, "must be {\"String\": ...} or {\"Regex\": ...}");
    const cJSON *x = s ? s : r;
    if (!cJSON_IsString(x)) return bad(L, p, "must hold a string");
    pathf(where, sizeof where, "%s: %s.%s", L->file, p, s ? "String" : "Regex");
    return pissa__hf_pattern_new(x->valuestring, strlen(x->valuestring), r != NULL, where, out);
}

static pissa_status get_type(const loader *L, const cJSON *o, const char *path, const char **type) {
    if (!cJSON_IsObject(o)) return bad(L, path, "must be an object or null");
    return get_str(L, o, "type", path, 1, type);
}

/* Sequences are flattened: a sequence of sequences is their concatenation. */
#define FOR_SEQUENCE(o, key, path, fn, cap)                                                  \
    do {                                                                                     \
        const cJSON *a_ = cJSON_GetObjectItemCaseSensitive((o), key);                        \
        char p_[512];                                                                        \
        pathf(p_, sizeof p_, "%s.%s", (path), key);                                       \
        if (!cJSON_IsArray(a_)) return bad(L, p_, "must be an array");                       \
        int i_ = 0;                                                                          \
        for (const cJSON *e_ = a_->child; e_; e_ = e_->next, i_++) {                         \
            char q_[512];                                                                    \
            pathf(q_, sizeof q_, "%s[%d]", p_, i_);                                       \
            PISSA_TRY(fn(L, e_, q_, cap));                                                   \
        }                                                                                    \
    } while (0)

/* ---- normalizers ---- */

static pissa_status parse_normalizer(loader *L, const cJSON *o, const char *path, size_t *cap) {
    pissa__hf *t = L->t;
    const char *type;
    PISSA_TRY(get_type(L, o, path, &type));
    if (!strcmp(type, "Sequence")) {
        FOR_SEQUENCE(o, "normalizers", path, parse_normalizer, cap);
        return PISSA_OK;
    }
    pissa__hf_normalizer z = {0};
    if (!strcmp(type, "NFC")) z.kind = HF_NORM_NFC;
    else if (!strcmp(type, "NFD")) z.kind = HF_NORM_NFD;
    else if (!strcmp(type, "NFKC")) z.kind = HF_NORM_NFKC;
    else if (!strcmp(type, "NFKD")) z.kind = HF_NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) z.kind = HF_NORM_LOWERCASE;
    else if (!strcmp(type, "ByteLevel")) z.kind = HF_NORM_BYTE_LEVEL;
    else if (!strcmp(type, "Strip")) {
        z.kind = HF_NORM_STRIP;
        PISSA_TRY(get_bool(L, o, "strip_left", path, 0, &z.strip_left));
        PISSA_TRY(get_bool(L, o, "strip_right", path, 0, &z.strip_right));
    } else if (!strcmp(type, "Prepend") || !strcmp(type, "Replace")) {
        const char *s;
        int prepend = !strcmp(type, "Prepend");
        z.kind = prepend ? HF_NORM_PREPEND : HF_NORM_REPLACE;
        PISSA_TRY(get_str(L, o, prepend ? "prepend" : "content", path, 1, &s));
        z.text_len = strlen(s);
        if (!(z.text = dup_n(s, z.text_len))) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
        if (!prepend) {
            pissa_status st = get_pattern(L, o, path, &z.pattern);
            if (st != PISSA_OK) {
                free(z.text);
                return st;
            }
        }
    } else {
        return unsupported(L, path, type);
    }
    if (t->n_norm == *cap) {
        size_t c = *cap ? 2 * *cap : 4;
        pissa__hf_normalizer *v = realloc(t->norm, c * sizeof *v);
        if (!v) {
            pissa__hf_normalizer_clear(&z);
            return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
        }
        t->norm = v;
        *cap = c;
    }
    t->norm[t->n_norm++] = z;
    return PISSA_OK;
}

/* ---- pre-tokenizers ---- */

static pissa_status get_behavior(const loader *L, const cJSON *o, const char *path, int required,
                                 pissa__hf_behavior *out) {
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    const char *s;
    char p[512];
    pathf(p, sizeof p, "%s.behavior", path);
    PISSA_TRY(get_str(L, o, "behavior", path, required, &s));
    if (!s) {
        *out = HF_SPLIT_ISOLATED;
        return PISSA_OK;
    }
    for (int i = 0; i < 5; i++)
        if (!strcmp(s, names[i])) {
            *out = (pissa__hf_behavior)i;
            return PISSA_OK;
        }
    return bad(L, p, "must be Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous");
}

/* Metaspace's prepend_scheme, with the legacy add_prefix_space (false must come with "never"). */
static pissa_status get_prepend(const loader *L, const cJSON *o, const char *path, pissa__hf_prepend *out) {
    const char *s;
    char p[512];
    pathf(p, sizeof p, "%s.prepend_scheme", path);
    PISSA_TRY(get_str(L, o, "prepend_scheme", path, 0, &s));
    if (!s || !strcmp(s, "always")) *out = HF_PREPEND_ALWAYS;
    else if (!strcmp(s, "first")) *out = HF_PREPEND_FIRST;
    else if (!strcmp(s, "never")) *out = HF_PREPEND_NEVER;
    else return bad(L, p, "must be \"always\", \"first\" or \"never\"");
    const cJSON *aps = cJSON_GetObjectItemCaseSensitive(o, "add_prefix_space");
    if (cJSON_IsFalse(aps) && *out != HF_PREPEND_NEVER)
        return bad(L, p, "does not match add_prefix_space false (which needs \"never\")");
    return PISSA_OK;
}

static pissa_status add_pretok(loader *L, pissa__hf_pretok *z, size_t *cap) {
    pissa__hf *t = L->t;
    if (t->n_pre == *cap) {
        size_t c = *cap ? 2 * *cap : 4;
        pissa__hf_pretok *v = realloc(t->pre, c * sizeof *v);
        if (!v) {
            pissa__hf_pretok_clear(z);
            return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
        }
        t->pre = v;
        *cap = c;
    }
    t->pre[t->n_pre++] = *z;
    return PISSA_OK;
}

static pissa_status parse_pretok(loader *L, const cJSON *o, const char *path, size_t *cap) {
    const char *type;
    char where[640];
    PISSA_TRY(get_type(L, o, path, &type));
    if (!strcmp(type, "Sequence")) {
        FOR_SEQUENCE(o, "pretokenizers", path, parse_pretok, cap);
        return PISSA_OK;
    }
    pissa__hf_pretok z = {0};
    if (!strcmp(type, "Split")) {
        z.kind = HF_PRE_SPLIT;
        PISSA_TRY(get_behavior(L, o, path, 1, &z.behavior));
        const cJSON *inv = cJSON_GetObjectItemCaseSensitive(o, "invert");
        char p[512];
        pathf(p, sizeof p, "%s.invert", path);
        if (!cJSON_IsBool(inv)) return bad(L, p, "must be true or false");
        z.invert = cJSON_IsTrue(inv);
        PISSA_TRY(get_pattern(L, o, path, &z.pattern));
    } else if (!strcmp(type, "ByteLevel")) {
        z.kind = HF_PRE_BYTE_LEVEL;
        int use_regex = 1;
        PISSA_TRY(get_bool(L, o, "add_prefix_space", path, 1, &z.add_prefix_space));
        PISSA_TRY(get_bool(L, o, "use_regex", path, 1, &use_regex));
        pathf(where, sizeof where, "%s: %s (the GPT-2 regex)", L->file, path);
        if (use_regex)
            PISSA_TRY(pissa__hf_pattern_new(pissa__hf_gpt2_pattern, strlen(pissa__hf_gpt2_pattern), 1, where,
                                            &z.pattern));
    } else if (!strcmp(type, "Metaspace")) {
        z.kind = HF_PRE_METASPACE;
        PISSA_TRY(get_char(L, o, "replacement", path, &z.rep_cp));
        z.rep_len = pissa__utf8_encode(z.rep_cp, z.rep);
        PISSA_TRY(get_prepend(L, o, path, &z.prepend));
        PISSA_TRY(get_bool(L, o, "split", path, 1, &z.split));
    } else if (!strcmp(type, "Digits")) {
        z.kind = HF_PRE_DIGITS;
        PISSA_TRY(get_bool(L, o, "individual_digits", path, 0, &z.individual_digits));
    } else if (!strcmp(type, "Whitespace")) {
        z.kind = HF_PRE_WHITESPACE;
        pathf(where, sizeof where, "%s: %s", L->file, path);
        PISSA_TRY(pissa__hf_pattern_new(pissa__hf_whitespace_pattern, strlen(pissa__hf_whitespace_pattern), 1, where,
                                        &z.pattern));
    } else if (!strcmp(type, "WhitespaceSplit")) {
        z.kind = HF_PRE_WHITESPACE_SPLIT;
    } else if (!strcmp(type, "Punctuation")) {
        z.kind = HF_PRE_PUNCTUATION;
        PISSA_TRY(get_behavior(L, o, path, 0, &z.behavior));
    } else {
        return unsupported(L, path, type);
    }
    return add_pretok(L, &z, cap);
}

/* ---- post-processors ---- */

static pissa_status id_ok(const loader *L, int64_t id, const char *path) {
    if (id < 0 || id >= L->t->n_ids || !L->t->token[id]) return bad(L, path, "names an id that has no token");
    return PISSA_OK;
}

static pissa_status append_ids(int32_t **v, size_t *n, const int32_t *ids, size_t k, int front) {
    int32_t *w = pissa__alloc(*n + k, sizeof *w);
    if (!w) return pissa__fail(PISSA_ERR_NOMEM, "post-processor: out of memory");
    if (front) {
        if (k) memcpy(w, ids, k * sizeof *w);
        if (*n) memcpy(w + k, *v, *n * sizeof *w);
    } else {
        if (*n) memcpy(w, *v, *n * sizeof *w);
        if (k) memcpy(w + *n, ids, k * sizeof *w);
    }
    free(*v);
    *v = w;
    *n += k;
    return PISSA_OK;
}

/* TemplateProcessing "single": the ids of the SpecialToken items before and after Sequence A. A later processor
 * in a Sequence wraps what the earlier ones made. */
static pissa_status parse_template(loader *L, const cJSON *o, const char *path) {
    char p[512];
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(o, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(o, "special_tokens");
    pathf(p, sizeof p, "%s.single", path);
    if (!cJSON_IsArray(single)) return bad(L, p, "must be an array");
    pathf(p, sizeof p, "%s.special_tokens", path);
    if (!cJSON_IsObject(specials)) return bad(L, p, "must be an object");
    int32_t *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    int seen_a = 0, i = 0;
    pissa_status st = PISSA_OK;
    for (const cJSON *e = single->child; e && st == PISSA_OK; e = e->next, i++) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *sq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
        pathf(p, sizeof p, "%s.single[%d]", path, i);
        if (sq) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(sq, "id");
            if (!cJSON_IsString(id) || strcmp(id->valuestring, "A") || seen_a)
                st = bad(L, p, "must be the sequence \"A\", once");
            seen_a = 1;
            continue;
        }
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
        if (!cJSON_IsString(name)) {
            st = bad(L, p, "must be {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {\"id\": \"A\"}}");
            break;
        }
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, name->valuestring);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(def, "ids");
        pathf(p, sizeof p, "%s.special_tokens[\"%.100s\"].ids", path, name->valuestring);
        if (!cJSON_IsArray(ids)) {
            st = bad(L, p, "is missing or not an array");
            break;
        }
        for (const cJSON *x = ids->child; x && st == PISSA_OK; x = x->next) {
            int64_t id;
            if (!as_int(x, 0, INT32_MAX, &id)) st = bad(L, p, "must hold non-negative integers");
            else if ((st = id_ok(L, id, p)) == PISSA_OK)
                st = append_ids(seen_a ? &after : &before, seen_a ? &na : &nb, &(int32_t){(int32_t)id}, 1, 0);
        }
    }
    if (st == PISSA_OK && !seen_a) st = unsupported(L, path, "TemplateProcessing without the sequence $A");
    pissa__hf_template *T = &L->t->post;
    if (st == PISSA_OK) st = append_ids(&T->before, &T->n_before, before, nb, 1);
    if (st == PISSA_OK) st = append_ids(&T->after, &T->n_after, after, na, 0);
    T->present = 1;
    free(before);
    free(after);
    return st;
}

static pissa_status parse_post(loader *L, const cJSON *o, const char *path, size_t *unused) {
    const char *type;
    PISSA_TRY(get_type(L, o, path, &type));
    if (!strcmp(type, "Sequence")) {
        FOR_SEQUENCE(o, "processors", path, parse_post, unused);
        return PISSA_OK;
    }
    if (!strcmp(type, "TemplateProcessing")) return parse_template(L, o, path);
    if (!strcmp(type, "ByteLevel")) return PISSA_OK; /* trims offsets only */
    return unsupported(L, path, type);
}

/* ---- decoders ---- */

static pissa_status parse_decoder(loader *L, const cJSON *o, const char *path, size_t *cap) {
    pissa__hf *t = L->t;
    const char *type;
    PISSA_TRY(get_type(L, o, path, &type));
    if (!strcmp(type, "Sequence")) {
        FOR_SEQUENCE(o, "decoders", path, parse_decoder, cap);
        return PISSA_OK;
    }
    pissa__hf_decoder z = {0};
    if (!strcmp(type, "ByteLevel")) z.kind = HF_DEC_BYTE_LEVEL;
    else if (!strcmp(type, "ByteFallback")) z.kind = HF_DEC_BYTE_FALLBACK;
    else if (!strcmp(type, "Fuse")) z.kind = HF_DEC_FUSE;
    else if (!strcmp(type, "Strip")) {
        z.kind = HF_DEC_STRIP;
        PISSA_TRY(get_char(L, o, "content", path, &z.cp));
        const char *keys[2] = {"start", "stop"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
            int64_t x;
            char p[512];
            pathf(p, sizeof p, "%s.%s", path, keys[k]);
            if (!as_int(v, 0, 1e9, &x)) return bad(L, p, "must be a non-negative integer");
            *(k ? &z.stop : &z.start) = (size_t)x;
        }
    } else if (!strcmp(type, "Metaspace")) {
        pissa__hf_prepend pre;
        z.kind = HF_DEC_METASPACE;
        PISSA_TRY(get_char(L, o, "replacement", path, &z.cp));
        PISSA_TRY(get_prepend(L, o, path, &pre));
        z.prepend = pre != HF_PREPEND_NEVER;
    } else if (!strcmp(type, "Replace")) {
        const char *s;
        z.kind = HF_DEC_REPLACE;
        PISSA_TRY(get_str(L, o, "content", path, 1, &s));
        z.text_len = strlen(s);
        if (!(z.text = dup_n(s, z.text_len))) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
        pissa_status st = get_pattern(L, o, path, &z.pattern);
        if (st != PISSA_OK) {
            free(z.text);
            return st;
        }
    } else {
        return unsupported(L, path, type);
    }
    if (t->n_dec == *cap) {
        size_t c = *cap ? 2 * *cap : 4;
        pissa__hf_decoder *v = realloc(t->dec, c * sizeof *v);
        if (!v) {
            free(z.text);
            pissa__hf_pattern_free(z.pattern);
            return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
        }
        t->dec = v;
        *cap = c;
    }
    t->dec[t->n_dec++] = z;
    return PISSA_OK;
}

/* ---- the BPE model ---- */

/* (Messages are formatted only on failure: there is one path per merge and per token.) */
static pissa_status bad_merge(const loader *L, int rank, const char *what) {
    char p[64];
    pathf(p, sizeof p, "model.merges[%d]", rank);
    return bad(L, p, what);
}

static pissa_status bad_vocab(const loader *L, const char *key, const char *what) {
    char p[160];
    pathf(p, sizeof p, "model.vocab[\"%.100s\"]", key);
    return bad(L, p, what);
}

static pissa_status parse_merges(loader *L, const cJSON *merges) {
    pissa__hf_bpe *m = &L->t->bpe;
    int n = cJSON_GetArraySize(merges);
    size_t cap = 16;
    while (cap < 2 * (size_t)n + 2) cap *= 2;
    m->merges = pissa__alloc(cap, sizeof *m->merges);
    if (!m->merges) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for %d merges", L->file, n);
    for (size_t i = 0; i < cap; i++) m->merges[i].pair = UINT64_MAX;
    m->merges_mask = cap - 1;
    pissa__strbuf b = {0};
    pissa_status st = PISSA_OK;
    int rank = 0;
    for (const cJSON *e = merges->child; e && st == PISSA_OK; e = e->next, rank++) {
        const char *a, *z;
        size_t na, nz;
        if (cJSON_IsString(e)) { /* "a b": exactly one space */
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = bad_merge(L, rank, "must be two tokens separated by one space");
                break;
            }
            a = e->valuestring;
            na = (size_t)(sp - a);
            z = sp + 1;
            nz = strlen(z);
        } else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
            a = e->child->valuestring;
            na = strlen(a);
            z = e->child->next->valuestring;
            nz = strlen(z);
        } else {
            st = bad_merge(L, rank, "must be \"a b\" or [\"a\", \"b\"]");
            break;
        }
        int32_t ia = pissa__strmap_get(&m->vocab, a, na), iz = pissa__strmap_get(&m->vocab, z, nz);
        if (ia < 0 || iz < 0) {
            char msg[160];
            pathf(msg, sizeof msg, "names the token \"%.60s\", which is not in model.vocab",
                     ia < 0 ? a : z);
            st = bad_merge(L, rank, msg);
            break;
        }
        /* the merged token drops the right part's continuing_subword_prefix (tokenizers: a + b[prefix_len..]) */
        size_t skip = m->prefix ? m->prefix_len : 0;
        if (skip > nz || (skip < nz && ((unsigned char)z[skip] & 0xC0) == 0x80)) {
            st = bad_merge(L, rank, "has a right part shorter than continuing_subword_prefix");
            break;
        }
        b.n = 0;
        pissa__sb_put(&b, a, na);
        pissa__sb_put(&b, z + skip, nz - skip);
        if (b.oom) {
            st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
            break;
        }
        int32_t im = pissa__strmap_get(&m->vocab, b.p, b.n);
        if (im < 0) {
            char msg[160];
            pathf(msg, sizeof msg, "makes \"%.60s\", which is not in model.vocab", b.p);
            st = bad_merge(L, rank, msg);
            break;
        }
        pissa__hf_bpe_add_merge(m, ia, iz, rank, im);
    }
    free(b.p);
    return st;
}

static pissa_status opt_affix(loader *L, const cJSON *o, const char *key, char **out, size_t *len) {
    const char *s;
    PISSA_TRY(get_str(L, o, key, "model", 0, &s));
    if (!s || !*s) return PISSA_OK; /* "" acts as no affix */
    *len = strlen(s);
    if (!(*out = dup_n(s, *len))) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
    return PISSA_OK;
}

static pissa_status parse_model(loader *L, const cJSON *o) {
    pissa__hf *t = L->t;
    pissa__hf_bpe *m = &t->bpe;
    const char *type;
    if (!cJSON_IsObject(o)) return bad(L, "model", "is missing or not an object");
    PISSA_TRY(get_str(L, o, "type", "model", 0, &type));
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(o, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(o, "merges");
    if (type ? strcmp(type, "BPE") != 0 : !merges) return unsupported(L, "model.type", type ? type : "(untyped)");
    if (!cJSON_IsObject(vocab)) return bad(L, "model.vocab", "must be an object");
    if (!cJSON_IsArray(merges)) return bad(L, "model.merges", "must be an array");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(o, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: model.dropout is not supported (encodings would be random)",
                           L->file);
    PISSA_TRY(get_bool(L, o, "byte_fallback", "model", 0, &m->byte_fallback));
    PISSA_TRY(get_bool(L, o, "fuse_unk", "model", 0, &m->fuse_unk));
    PISSA_TRY(get_bool(L, o, "ignore_merges", "model", 0, &m->ignore_merges));
    PISSA_TRY(opt_affix(L, o, "continuing_subword_prefix", &m->prefix, &m->prefix_len));
    PISSA_TRY(opt_affix(L, o, "end_of_word_suffix", &m->suffix, &m->suffix_len));

    /* vocab: the strings go into one blob, the map points into it */
    size_t n = 0, bytes = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        n++;
        bytes += strlen(e->string) + 1;
    }
    if (n >= (size_t)INT32_MAX - ID_SLACK) return bad(L, "model.vocab", "has too many entries");
    L->n_vocab = (int32_t)n;
    t->blob = pissa__alloc(bytes + 1, 1);
    if (!t->blob || !pissa__strmap_init(&m->vocab, n))
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for %zu tokens", L->file, n);
    char *w = t->blob;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int64_t id;
        if (!as_int(e, 0, (double)n + ID_SLACK - 1, &id))
            return bad_vocab(L, e->string, "must be an integer id in [0, number of tokens + 65536)");
        size_t len = strlen(e->string);
        memcpy(w, e->string, len + 1);
        if (pissa__strmap_put(&m->vocab, w, len, (int32_t)id) != (int32_t)id)
            return bad_vocab(L, e->string, "appears twice");
        if (id > L->max_id) L->max_id = (int32_t)id;
        w += len + 1;
    }
    const char *unk;
    PISSA_TRY(get_str(L, o, "unk_token", "model", 0, &unk));
    m->unk = unk ? pissa__strmap_get(&m->vocab, unk, strlen(unk)) : -1;
    if (unk && m->unk < 0) return bad(L, "model.unk_token", "is not in model.vocab");
    for (int b = 0; b < 256; b++) {
        char s[8];
        pathf(s, sizeof s, "<0x%02X>", b);
        m->byte_token[b] = pissa__strmap_get(&m->vocab, s, 6);
    }
    PISSA_TRY(parse_merges(L, merges));
    pissa__hf_bpe_find_cuts(m);
    return PISSA_OK;
}

/* ---- added tokens ---- */

/* tokenizers' AddedVocabulary::add_tokens: an existing content keeps its id and takes the new flags; a new one takes
 * the model's id for that string, else the next free id after the model vocabulary and the added tokens. */
static pissa_status add_token(loader *L, const char *content, int special, int lstrip, int rstrip, int single_word,
                              int normalized, int64_t declared, int32_t *next_id) {
    pissa__hf *t = L->t;
    size_t len = strlen(content);
    if (len == 0) return PISSA_OK;
    if (len > HF_ADDED_MAX) /* the added-token search walks up to this far at every byte of a text */
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: added token \"%.40s...\" is longer than %d bytes", L->file,
                           content, HF_ADDED_MAX);
    int32_t known = pissa__strmap_get(&t->added_map, content, len);
    if (known >= 0) {
        pissa__hf_added *a = &t->added[known];
        a->special = special, a->lstrip = lstrip, a->rstrip = rstrip;
        a->single_word = single_word, a->normalized = normalized;
        return PISSA_OK;
    }
    int32_t id = pissa__strmap_get(&t->bpe.vocab, content, len);
    if (id < 0) {
        if (*next_id == INT32_MAX) return bad(L, "added_tokens", "has too many tokens");
        id = (*next_id)++;
    }
    if (declared >= 0 && declared != id)
        pissa__log(PISSA_LOG_WARN, "%s: added token \"%.60s\" declares id %lld but gets id %d (as tokenizers "
                   "assigns it)", L->file, content, (long long)declared, (int)id);
    pissa__hf_added a = {id, dup_n(content, len), len, NULL, 0, special, single_word, lstrip, rstrip, normalized};
    if (!a.content) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
    if ((t->n_added & (t->n_added + 1)) == 0 || t->n_added == 0) { /* grow at 0, 1, 3, 7, ... */
        pissa__hf_added *v = realloc(t->added, (2 * t->n_added + 2) * sizeof *v);
        if (!v) {
            free(a.content);
            return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
        }
        t->added = v;
    }
    if (pissa__strmap_put(&t->added_map, a.content, len, (int32_t)t->n_added) != (int32_t)t->n_added) {
        free(a.content);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: too many added tokens", L->file);
    }
    t->added[t->n_added++] = a;
    if (id > L->max_id) L->max_id = id;
    return PISSA_OK;
}

static int32_t first_free_id(const loader *L) {
    int32_t max = -1;
    for (size_t i = 0; i < L->t->n_added; i++)
        if (L->t->added[i].id > max) max = L->t->added[i].id;
    if (max < 0) return L->n_vocab;
    return max >= L->n_vocab || L->n_vocab == 0 ? max + 1 : L->n_vocab;
}

static pissa_status parse_added(loader *L, const cJSON *arr) {
    if (!arr || cJSON_IsNull(arr)) return PISSA_OK;
    if (!cJSON_IsArray(arr)) return bad(L, "added_tokens", "must be an array");
    int32_t next = first_free_id(L);
    int i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        char p[64];
        pathf(p, sizeof p, "added_tokens[%d]", i);
        const char *content;
        int special = 0, lstrip = 0, rstrip = 0, single_word = 0, normalized = 0;
        int64_t id = -1;
        if (!cJSON_IsObject(e)) return bad(L, p, "must be an object");
        PISSA_TRY(get_str(L, e, "content", p, 1, &content));
        PISSA_TRY(get_bool(L, e, "special", p, 0, &special));
        PISSA_TRY(get_bool(L, e, "lstrip", p, 0, &lstrip));
        PISSA_TRY(get_bool(L, e, "rstrip", p, 0, &rstrip));
        PISSA_TRY(get_bool(L, e, "single_word", p, 0, &single_word));
        PISSA_TRY(get_bool(L, e, "normalized", p, !special, &normalized));
        const cJSON *jid = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (jid && !as_int(jid, 0, INT32_MAX, &id)) return bad(L, p, "has an id that is not a non-negative integer");
        PISSA_TRY(add_token(L, content, special, lstrip, rstrip, single_word, normalized, id, &next));
    }
    return PISSA_OK;
}

/* ---- the whole file ---- */

/* Token strings by id: the model's, then the added tokens' (which win where both name an id, as in decoding). */
static pissa_status build_token_table(loader *L, int32_t vocab_size) {
    pissa__hf *t = L->t;
    if (L->max_id == INT32_MAX) return bad(L, "model.vocab", "has an id too large");
    t->n_ids = L->max_id + 1;
    t->token = pissa__calloc((size_t)t->n_ids, sizeof *t->token);
    t->token_len = pissa__calloc((size_t)t->n_ids, sizeof *t->token_len);
    t->flags = pissa__calloc((size_t)t->n_ids, 1);
    if (!t->token || !t->token_len || !t->flags)
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory for %d ids", L->file, (int)t->n_ids);
    const pissa__strmap *v = &t->bpe.vocab;
    for (size_t i = 0; i <= v->mask; i++) {
        if (!v->key[i]) continue;
        int32_t id = v->value[i];
        if (t->token[id]) {
            char p[160];
            pathf(p, sizeof p, "model.vocab[\"%.60s\"]", v->key[i]);
            return bad(L, p, "has the same id as another token");
        }
        t->token[id] = (char *)v->key[i];
        t->token_len[id] = v->len[i];
    }
    for (size_t i = 0; i < t->n_added; i++) {
        const pissa__hf_added *a = &t->added[i];
        t->token[a->id] = a->content;
        t->token_len[a->id] = (uint32_t)a->len;
        t->flags[a->id] = (uint8_t)(HF_TOK_ADDED | (a->special ? HF_TOK_SPECIAL : 0));
    }
    if (vocab_size > 0 && t->n_ids > vocab_size) {
        for (int32_t id = vocab_size; id < t->n_ids; id++)
            if (t->token[id])
                return pissa__fail(PISSA_ERR_FORMAT, "%s: token \"%.60s\" has id %d, outside the model's vocabulary of "
                                   "%d", L->file, t->token[id], (int)id, (int)vocab_size);
    }
    return PISSA_OK;
}

void pissa__hf_free(pissa__hf *t) {
    if (!t) return;
    pissa__hf_bpe_free(&t->bpe);
    for (size_t i = 0; i < t->n_norm; i++) pissa__hf_normalizer_clear(&t->norm[i]);
    for (size_t i = 0; i < t->n_pre; i++) pissa__hf_pretok_clear(&t->pre[i]);
    for (size_t i = 0; i < t->n_dec; i++) {
        free(t->dec[i].text);
        pissa__hf_pattern_free(t->dec[i].pattern);
    }
    for (size_t i = 0; i < t->n_added; i++) {
        if (t->added[i].match != t->added[i].content) free(t->added[i].match);
        free(t->added[i].content);
    }
    free(t->norm);
    free(t->pre);
    free(t->dec);
    free(t->added);
    pissa__strmap_free(&t->added_map);
    free(t->post.before);
    free(t->post.after);
    pissa__hf_trie_free(t->raw_trie);
    pissa__hf_trie_free(t->norm_trie);
    pissa__hf_pattern_free(t->word_re);
    for (int i = 0; i < 4; i++) free(t->special_str[i]);
    free(t->chat_template);
    free(t->stop_ids);
    free(t->token);
    free(t->token_len);
    free(t->flags);
    free(t->blob);
    free(t);
}

/* Refuses "\u0000" in strings: cJSON would cut the string there. */
static int has_nul_escape(const char *raw, size_t n) {
    for (const char *p = raw; (p = memchr(p, '\\', (size_t)(raw + n - p))) != NULL;) {
        size_t run = 0;
        while (p + run < raw + n && p[run] == '\\') run++;
        if (run % 2 == 1 && p + run + 5 <= raw + n && !memcmp(p + run, "u0000", 5)) return 1;
        p += run;
    }
    return 0;
}

static pissa_status load_json(loader *L, const cJSON *j, const char *dir, int32_t vocab_size) {
    pissa__hf *t = L->t;
    if (!cJSON_IsObject(j)) return bad(L, "the top level", "must be a JSON object");
    const char *version;
    PISSA_TRY(get_str(L, j, "version", "tokenizer", 0, &version));
    if (version && strcmp(version, "1.0")) return unsupported(L, "version", version);
    PISSA_TRY(parse_model(L, cJSON_GetObjectItemCaseSensitive(j, "model")));
    size_t cap = 0;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "normalizer");
    if (c && !cJSON_IsNull(c)) PISSA_TRY(parse_normalizer(L, c, "normalizer", &cap));
    cap = 0;
    c = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
    if (c && !cJSON_IsNull(c)) PISSA_TRY(parse_pretok(L, c, "pre_tokenizer", &cap));
    cap = 0;
    c = cJSON_GetObjectItemCaseSensitive(j, "decoder");
    if (c && !cJSON_IsNull(c)) {
        PISSA_TRY(parse_decoder(L, c, "decoder", &cap));
        t->has_decoder = 1;
    }

    /* added tokens: the file's, then those transformers adds from tokenizer_config.json when the file lacks them */
    pissa__hf_config cfg;
    PISSA_TRY(pissa__hf_config_read(dir, &cfg));
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    pissa_status st = PISSA_OK;
    if (!pissa__strmap_init(&t->added_map, (size_t)cJSON_GetArraySize(added) + cfg.n_tokens))
        st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", L->file);
    if (st == PISSA_OK) st = parse_added(L, added);
    int32_t next = first_free_id(L);
    for (size_t i = 0; i < cfg.n_tokens && st == PISSA_OK; i++) {
        const pissa__hf_config_token *k = &cfg.tokens[i];
        if (pissa__strmap_get(&t->added_map, k->content, strlen(k->content)) < 0)
            st = add_token(L, k->content, k->special, k->lstrip, k->rstrip, k->single_word, k->normalized, -1, &next);
    }
    if (st == PISSA_OK) st = build_token_table(L, vocab_size);
    c = cJSON_GetObjectItemCaseSensitive(j, "post_processor");
    cap = 0;
    if (st == PISSA_OK && c && !cJSON_IsNull(c)) st = parse_post(L, c, "post_processor", &cap);
    if (st == PISSA_OK) st = pissa__hf_added_finish(t, L->file);
    if (st == PISSA_OK) st = pissa__hf_config_apply(t, &cfg, L->file);
    pissa__hf_token_bound(t);
    pissa__hf_config_free(&cfg);
    return st;
}

pissa_status pissa__hf_load(const char *path, const char *raw, size_t size, int32_t vocab_size, pissa__hf **out) {
    *out = NULL;
    size_t valid = pissa__utf8_valid_prefix(raw, size);
    if (valid != size) return pissa__fail(PISSA_ERR_FORMAT, "%s: not valid UTF-8 (at byte %zu)", path, valid);
    if (has_nul_escape(raw, size))
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: a string holds \\u0000, which libpissa cannot represent", path);
    cJSON *j;
    PISSA_TRY(pissa__json_parse_object(raw, size, path, &j)); /* one object, nothing after it */
    char *dir = pissa__strdup(path);
    pissa__hf *t = calloc(1, sizeof *t);
    pissa_status st = PISSA_OK;
    if (!dir || !t) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    if (st == PISSA_OK) {
        char *slash = strrchr(dir, '/');
        if (slash) *(slash == dir ? slash + 1 : slash) = '\0';
        else strcpy(dir, ".");
        t->bpe.unk = -1;
        t->bpe.scan_max = 48; /* where the O(n^2) scan stops being faster than the heap */
        for (int i = 0; i < 4; i++) t->special_id[i] = -1;
        loader L = {path, t, 0, -1};
        st = load_json(&L, j, dir, vocab_size);
    }
    cJSON_Delete(j);
    free(dir);
    if (st != PISSA_OK) {
        pissa__hf_free(t);
        return st;
    }
    *out = t;
    return PISSA_OK;
}
