/* Internal interfaces of the Hugging Face tokenizer.json implementation (hf_*.c). Not installed.
 *
 * The pipeline is Hugging Face tokenizers' (the Rust library behind transformers' fast tokenizers), stage by stage:
 * added tokens split out of the raw text (hf_tokenizer.c) -> normalizers -> added tokens split out of the
 * normalized text -> pre-tokenizers (hf_text.c) -> the BPE model on each piece (hf_bpe.c) -> post-processor;
 * decoding runs the decoder chain (hf_tokenizer.c). Patterns (Split, Replace) are Oniguruma regexes in the file,
 * run by PCRE2 after a small rewrite (hf_regex.c). hf_load.c reads tokenizer.json and its companion files. */
#ifndef PISSA_HF_INTERNAL_H
#define PISSA_HF_INTERNAL_H

#include <stdint.h>

#include "internal.h"

/* ---- growable arrays ---- */

typedef struct pissa__ids {
    int32_t *v;
    size_t n, cap;
    int oom;
} pissa__ids;

void pissa__ids_push(pissa__ids *a, int32_t id);
void pissa__ids_append(pissa__ids *a, const int32_t *ids, size_t n);

/* ---- UTF-8 and Unicode character classes (hf_regex.c) ---- */

/* Length of the longest prefix of S that is valid UTF-8 (so S is valid iff the result is N). */
size_t pissa__utf8_valid_prefix(const char *s, size_t n);
/* The code point at S[0] of a VALID UTF-8 string and its byte length (1..4). */
int pissa__utf8_decode(const char *s, int32_t *cp);
/* Writes the UTF-8 form of CP (a Unicode scalar value) into OUT, returns its length. */
int pissa__utf8_encode(int32_t cp, char out[4]);
/* Appends S to B, replacing each maximal invalid subsequence by U+FFFD (Rust's String::from_utf8_lossy, the
 * WHATWG decoder). */
void pissa__utf8_lossy(pissa__strbuf *b, const char *s, size_t n);
/* Unicode White_Space (Rust's char::is_whitespace, Oniguruma's and the regex crate's \s). */
int pissa__uni_is_white_space(int32_t cp);
/* General category N (Rust's char::is_numeric). */
int pissa__uni_is_numeric(int32_t cp);
/* ASCII punctuation or general category P (tokenizers' Punctuation pre-tokenizer). */
int pissa__uni_is_punctuation(int32_t cp);

/* ---- patterns: tokenizers' {"String": ...} and {"Regex": ...} (hf_regex.c) ---- */

typedef struct pissa__hf_pattern pissa__hf_pattern;

typedef struct pissa__spans {
    size_t (*v)[2]; // (n) [start, end) byte offsets
    size_t n, cap;
    int oom;
} pissa__spans;

/* A literal string (REGEX 0) or an Oniguruma regex (REGEX 1) compiled with PCRE2 (UTF, UCP, JIT). WHERE names the
 * pattern in messages ("tokenizer.json: pre_tokenizer.pattern"); copied. PISSA_ERR_FORMAT for a regex PCRE2 cannot
 * compile, PISSA_ERR_UNSUPPORTED for Oniguruma constructs PCRE2 would read differently. */
pissa_status pissa__hf_pattern_new(const char *src, size_t len, int regex, const char *where,
                                   pissa__hf_pattern **out);
void pissa__hf_pattern_free(pissa__hf_pattern *p);
/* Appends to OUT the matches of P in the valid UTF-8 text S, leftmost first, as Oniguruma's find_iter yields
 * them: after a match ending at e, the next search starts at e, and an empty match at the end of the previous
 * match is skipped by moving one character on. */
pissa_status pissa__hf_pattern_find(const pissa__hf_pattern *p, const char *s, size_t n, pissa__spans *out);

/* ---- normalizers and pre-tokenizers (hf_text.c) ---- */

typedef enum {
    HF_NORM_NFC,
    HF_NORM_NFD,
    HF_NORM_NFKC,
    HF_NORM_NFKD,
    HF_NORM_LOWERCASE,
    HF_NORM_STRIP,
    HF_NORM_PREPEND,
    HF_NORM_REPLACE,
    HF_NORM_BYTE_LEVEL,
} pissa__hf_norm_kind;

typedef struct pissa__hf_normalizer {
    pissa__hf_norm_kind kind;
    int strip_left, strip_right; // Strip
    char *text;                  // Prepend's prefix or Replace's content
    size_t text_len;
    pissa__hf_pattern *pattern;  // Replace
} pissa__hf_normalizer;

/* Applies the N normalizers in order to S (LEN bytes, valid UTF-8); the result is in *OUT (a buffer of A or B). */
pissa_status pissa__hf_normalize(const pissa__hf_normalizer *v, size_t n, const char *s, size_t len,
                                 pissa__strbuf *a, pissa__strbuf *b, const pissa__strbuf **out);

typedef enum {
    HF_SPLIT_REMOVED,
    HF_SPLIT_ISOLATED,
    HF_SPLIT_MERGED_WITH_PREVIOUS,
    HF_SPLIT_MERGED_WITH_NEXT,
    HF_SPLIT_CONTIGUOUS,
} pissa__hf_behavior;

typedef enum {
    HF_PRE_SPLIT,
    HF_PRE_BYTE_LEVEL,
    HF_PRE_METASPACE,
    HF_PRE_DIGITS,
    HF_PRE_WHITESPACE,
    HF_PRE_WHITESPACE_SPLIT,
    HF_PRE_PUNCTUATION,
} pissa__hf_pre_kind;

typedef enum { HF_PREPEND_ALWAYS, HF_PREPEND_FIRST, HF_PREPEND_NEVER } pissa__hf_prepend;

typedef struct pissa__hf_pretok {
    pissa__hf_pre_kind kind;
    pissa__hf_pattern *pattern;  // Split; Whitespace's \w+|[^\w\s]+; ByteLevel's GPT-2 regex when use_regex
    pissa__hf_behavior behavior; // Split, Punctuation
    int invert;                  // Split
    int add_prefix_space;        // ByteLevel
    char rep[4];                 // Metaspace replacement character (UTF-8)
    int rep_len;
    int32_t rep_cp;
    pissa__hf_prepend prepend;   // Metaspace
    int split;                   // Metaspace
    int individual_digits;       // Digits
} pissa__hf_pretok;

/* Pieces of text being pre-tokenized: each is TEXT[off, off + len). AT_ORIGIN marks a piece that starts where the
 * input text starts (Metaspace's prepend_scheme "first"). */
typedef struct pissa__hf_piece {
    size_t off, len;
    int at_origin;
} pissa__hf_piece;

typedef struct pissa__hf_pieces {
    pissa__strbuf text;
    pissa__hf_piece *v;
    size_t n, cap;
    int oom;
} pissa__hf_pieces;

void pissa__hf_pieces_clear(pissa__hf_pieces *p);
void pissa__hf_pieces_free(pissa__hf_pieces *p);
void pissa__hf_pieces_add(pissa__hf_pieces *p, const char *s, size_t len, int at_origin);

/* Runs the N pre-tokenizers over the pieces in *IO (TMP and SPANS are scratch space); empty pieces are dropped
 * after every step, as tokenizers' PreTokenizedString::split does. */
pissa_status pissa__hf_pre_tokenize(const pissa__hf_pretok *v, size_t n, pissa__hf_pieces *io,
                                    pissa__hf_pieces *tmp, pissa__spans *spans);

/* GPT-2's byte-to-character table (tokenizers' bytes_char): the code point byte B stands for, and back (-1 for code
 * points outside the table). */
int32_t pissa__hf_byte_char(unsigned b);
int pissa__hf_byte_of_char(int32_t cp);

void pissa__hf_normalizer_clear(pissa__hf_normalizer *n);
void pissa__hf_pretok_clear(pissa__hf_pretok *p);
/* The Oniguruma pattern of the ByteLevel pre-tokenizer (GPT-2's) and of the Whitespace pre-tokenizer. */
extern const char pissa__hf_gpt2_pattern[];
extern const char pissa__hf_whitespace_pattern[];
extern const char pissa__hf_word_char_pattern[]; /* the regex crate's \w, for single_word */

/* ---- the BPE model (hf_bpe.c) ---- */

/* String -> id hash map over keys owned by someone else. */
typedef struct pissa__strmap {
    const char **key;  // (cap) NULL for an empty slot
    uint32_t *len;     // (cap)
    int32_t *value;    // (cap)
    size_t mask;       // cap - 1, cap a power of two
    size_t n;
} pissa__strmap;

int pissa__strmap_init(pissa__strmap *m, size_t n_expected); /* 0 on allocation failure */
void pissa__strmap_free(pissa__strmap *m);
/* Inserts KEY -> VALUE unless KEY is present; returns the value now stored (the old one if present). The map never
 * fills: it was sized for n_expected keys and refuses (returns INT32_MIN) beyond that. */
int32_t pissa__strmap_put(pissa__strmap *m, const char *key, size_t len, int32_t value);
int32_t pissa__strmap_get(const pissa__strmap *m, const char *key, size_t len); /* -1 when absent */

typedef struct pissa__hf_merge {
    uint64_t pair;  // left << 32 | right, UINT64_MAX for an empty slot
    int32_t rank;   // position in model.merges
    int32_t merged; // id of the merged token
} pissa__hf_merge;

typedef struct pissa__hf_bpe {
    pissa__strmap vocab;       // model.vocab
    pissa__hf_merge *merges;   // (mask + 1) open addressing on pair
    size_t merges_mask;
    int32_t unk;               // id of unk_token, -1 without one
    int byte_fallback, fuse_unk, ignore_merges;
    char *prefix, *suffix;     // continuing_subword_prefix, end_of_word_suffix; NULL when absent
    size_t prefix_len, suffix_len;
    int32_t byte_token[256];   // ids of "<0x00>".."<0xFF>", -1 where absent (byte_fallback)
    size_t scan_max;           // words of up to this many symbols merge by scanning, longer ones with a heap
    int32_t cut[4];            // characters a long word may be cut before (see pissa__hf_bpe_find_cuts)
    int n_cut;
} pissa__hf_bpe;

/* Finds the characters before which a word can be cut without changing its BPE result: a character c that is a
 * token, such that no vocabulary string holds c after another character than c (so no merge joins a symbol ending
 * in d != c with one starting with c, and merges on either side never meet), when no affix or ignore_merges ties
 * the result to the whole word. SentencePiece vocabularies have such a c in "▁": a paragraph that reaches the model
 * as one word then merges word by word (and the per-call cache serves repeated words). */
void pissa__hf_bpe_find_cuts(pissa__hf_bpe *m);

void pissa__hf_bpe_free(pissa__hf_bpe *m);
/* Adds merge number RANK of LEFT and RIGHT into MERGED (a later duplicate replaces an earlier one, as the Rust
 * map does). The table must have been allocated for all merges. */
void pissa__hf_bpe_add_merge(pissa__hf_bpe *m, int32_t left, int32_t right, int32_t rank, int32_t merged);

/* Scratch space of one encoding call: symbols, the merge heap and a cache of words already encoded. */
typedef struct pissa__hf_bpe_work pissa__hf_bpe_work;
pissa__hf_bpe_work *pissa__hf_bpe_work_new(void);
void pissa__hf_bpe_work_free(pissa__hf_bpe_work *w);

/* Appends to OUT the ids of WORD (N bytes of valid UTF-8), as tokenizers' BPE::tokenize: the vocabulary id of the
 * whole word under ignore_merges, else its characters (with continuing_subword_prefix / end_of_word_suffix; an
 * unknown one as its <0xHH> byte tokens under byte_fallback when all exist, else unk_token, fused under
 * fuse_unk, else dropped) merged by rank, the lowest rank first and the leftmost among equal ranks. */
pissa_status pissa__hf_bpe_tokenize(const pissa__hf_bpe *m, pissa__hf_bpe_work *w, const char *word, size_t n,
                                    pissa__ids *out);

/* ---- the whole tokenizer (hf_load.c, hf_tokenizer.c) ---- */

enum { HF_TOK_ADDED = 1, HF_TOK_SPECIAL = 2 };

/* Longest added token accepted: the search for added tokens walks up to this far at each byte of a text (real
 * added tokens are under 100 bytes). */
#define HF_ADDED_MAX 1024

/* An added token (tokenizer.json "added_tokens", tokenizer_config.json's special tokens). */
typedef struct pissa__hf_added {
    int32_t id;
    char *content;    // as in the file
    size_t len;
    char *match;      // the string matched: content, or content normalized when `normalized`
    size_t match_len;
    int special, single_word, lstrip, rstrip, normalized;
} pissa__hf_added;

/* A byte trie of added-token strings for the leftmost-longest search. */
typedef struct pissa__hf_trie pissa__hf_trie;

typedef enum {
    HF_DEC_BYTE_LEVEL,
    HF_DEC_BYTE_FALLBACK,
    HF_DEC_FUSE,
    HF_DEC_STRIP,
    HF_DEC_REPLACE,
    HF_DEC_METASPACE,
} pissa__hf_dec_kind;

typedef struct pissa__hf_decoder {
    pissa__hf_dec_kind kind;
    int32_t cp;                 // Strip's content, Metaspace's replacement
    size_t start, stop;         // Strip
    int prepend;                // Metaspace: prepend_scheme is not "never"
    char *text;                 // Replace's content
    size_t text_len;
    pissa__hf_pattern *pattern; // Replace
} pissa__hf_decoder;

/* The post-processor as an id template: specials before and after the sequence (TemplateProcessing "single";
 * ByteLevel changes no id). */
typedef struct pissa__hf_template {
    int present;   // some post-processor adds tokens (else add_special_tokens changes nothing)
    int32_t *before, *after;
    size_t n_before, n_after;
} pissa__hf_template;

typedef struct pissa__hf {
    int32_t n_ids;             // ids are [0, n_ids); some may have no token
    char **token;              // (n_ids) NUL-terminated token strings into blob or an added token, NULL where none
    uint32_t *token_len;       // (n_ids)
    uint8_t *flags;            // (n_ids) HF_TOK_*
    char *blob;                // the model vocabulary's strings

    pissa__hf_bpe bpe;
    pissa__hf_normalizer *norm;
    size_t n_norm;
    pissa__hf_pretok *pre;
    size_t n_pre;
    pissa__hf_template post;
    pissa__hf_decoder *dec;
    size_t n_dec;
    int has_decoder;           // else decoding joins tokens with " "

    pissa__hf_added *added;
    size_t n_added;
    pissa__strmap added_map;   // content -> index into added
    pissa__hf_trie *raw_trie;  // added tokens with normalized false, matched on the raw text
    pissa__hf_trie *norm_trie; // added tokens with normalized true, matched on the normalized text
    pissa__hf_pattern *word_re; // \w for single_word (NULL when no token needs it)

    /* tokenizer_config.json / generation_config.json */
    char *special_str[4];      // bos, eos, unk, pad token strings (NULL when absent)
    int32_t special_id[4];     // their ids, -1 when absent or unknown
    char *chat_template;
    int clean_up_spaces;       // clean_up_tokenization_spaces
    int32_t *stop_ids;
    size_t n_stop;

    double bound_a, bound_b;   // tokens <= bound_a * len + bound_b
} pissa__hf;

/* What tokenizer_config.json, generation_config.json and chat_template.jinja in a tokenizer's directory say
 * (hf_config.c). Strings are owned. */
typedef struct pissa__hf_config_token {
    char *content;
    int special, lstrip, rstrip, single_word, normalized;
    int64_t id; // added_tokens_decoder's key, -1 for the special-token strings
} pissa__hf_config_token;

typedef struct pissa__hf_config {
    char *special[4];              // bos_token, eos_token, unk_token, pad_token (NULL when absent or null)
    char *tokenizer_class;
    int add_bos, add_eos;          // -1 when absent
    int clean_up_spaces;
    char *chat_template;
    pissa__hf_config_token *tokens; // added_tokens_decoder (by id), then the special tokens, to add if absent
    size_t n_tokens;
    int32_t *eos_ids;              // generation_config.json eos_token_id
    size_t n_eos;
} pissa__hf_config;

/* Reads the companion files in DIR (each optional). PISSA_ERR_FORMAT naming the file and field when one is
 * malformed. */
pissa_status pissa__hf_config_read(const char *dir, pissa__hf_config *c);
void pissa__hf_config_free(pissa__hf_config *c);
/* Sets T's special tokens, chat template, clean-up flag and stop ids from C (taking its strings), and rebuilds the
 * post-processor as transformers' Llama and Gemma classes do. Needs T's added tokens and token table. */
struct pissa__hf;
pissa_status pissa__hf_config_apply(struct pissa__hf *t, pissa__hf_config *c, const char *file);

/* Loads tokenizer.json at PATH (its text RAW, SIZE bytes, already read) and the companion files in its directory.
 * VOCAB_SIZE > 0 bounds every id. */
pissa_status pissa__hf_load(const char *path, const char *raw, size_t size, int32_t vocab_size, pissa__hf **out);
void pissa__hf_free(pissa__hf *t);

/* The id of the token string S (an added token first, then the model vocabulary), -1 when there is none. */
int32_t pissa__hf_token_id(const pissa__hf *t, const char *s, size_t n);
/* Sets t->bound_a / bound_b from the normalizers and pre-tokenizers (see pissa_tokenizer_max_tokens). */
void pissa__hf_token_bound(pissa__hf *t);

/* Builds the added-token tries and the token flags once t->added is complete. */
pissa_status pissa__hf_added_finish(pissa__hf *t, const char *path);
void pissa__hf_trie_free(pissa__hf_trie *trie);

/* Encodes LEN bytes of valid UTF-8 TEXT; appends the ids to OUT. */
pissa_status pissa__hf_encode(const pissa__hf *t, const char *text, size_t len, int add_special_tokens,
                              pissa__ids *out);
/* Decodes IDS into B (valid UTF-8). Ids without a token are skipped, as tokenizers does; then transformers'
 * clean_up_tokenization (CLEANUP) if tokenizer_config.json asks for it (tokenizers' own decode, and its DecodeStream, never do). */
pissa_status pissa__hf_decode(const pissa__hf *t, const int32_t *ids, size_t n, int skip_special_tokens, int cleanup,
                              pissa__strbuf *b);
/* The bytes of token ID on its own (decoders that act per token, without the start-of-text rules and without
 * UTF-8 repair); appended to B. X and Y are scratch buffers. */
void pissa__hf_token_bytes(const pissa__hf *t, int32_t id, pissa__strbuf *b, pissa__strbuf *x, pissa__strbuf *y);

/* The tokenizer.json inside a handle, NULL for llama2.c (tokenizer.c). */
pissa__hf *pissa__tokenizer_hf(const pissa_tokenizer *tok);

/* For tests: the pieces the pre-tokenizers make of TEXT (normalization and added tokens skipped). */
pissa_status pissa__hf_debug_pre_tokenize(const pissa__hf *t, const char *text, size_t len, pissa__hf_pieces *out);

#endif
