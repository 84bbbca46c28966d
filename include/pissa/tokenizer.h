/* libpissa — tokenizers: llama2.c's tokenizer.bin and Hugging Face's tokenizer.json, behind one handle.
 *
 * pissa_tokenizer_load takes a llama2.c tokenizer file, a tokenizer.json, or a folder holding a tokenizer.json (the
 * kind is told by the content, not the name). Functions marked "(both kinds)" work on either; the first group below
 * keeps the llama2.c semantics it always had, and says what it does on a tokenizer.json. docs/tokenizers.md lists what
 * of tokenizer.json is supported.
 *
 * llama2.c (docs/formats.md): karpathy/llama2.c run.c's build_tokenizer, encode and decode, with validation of the
 * file and an encoder that stays fast on long texts.
 * File: int32 max_token_length, then for each of the V tokens: float32 score, int32 length, `length` bytes
 * (all little-endian). Ids 0 <unk>, 1 BOS, 2 EOS, 3..258 the byte tokens <0x00>..<0xFF>.
 *
 * Encoding gives exactly run.c's tokens for any text without NUL bytes: optional BOS; if the text is non-empty,
 * the token for " " (the dummy prefix, added ONCE at the start of the text); each UTF-8 code point (a lead byte
 * plus at most 3 continuation bytes, as run.c groups them) becomes its token if the vocabulary has it, else its
 * bytes as byte tokens (byte + 3); then the adjacent pair whose concatenation is in the vocabulary with the
 * highest score is merged, the leftmost on ties, until no pair merges (a score must exceed -1e10f, run.c's
 * starting best). run.c rescans the whole sequence per merge (O(n²)); libpissa keeps the candidate pairs in a
 * heap ordered by (score, position) and gets the same merges in O(n log n), so a whole 1 MB text is encoded as
 * one string — the same tokens run.c would give for it — in well under a second. A long text is never split.
 *
 * Differences from run.c, all in cases run.c cannot handle: vocabulary strings compare as (bytes, length), so a
 * NUL byte in the text is looked up like any other byte (it falls back to <0x00>); duplicate pieces resolve to
 * the lowest id (run.c's bsearch picks an unspecified one); if the vocabulary has no " " the dummy prefix is the
 * byte token <0x20> (run.c would emit id -1).
 *
 * tokenizer.json: the ids of Hugging Face tokenizers (the Rust library behind transformers' fast tokenizers) for
 * BPE models — added tokens, normalizers, pre-tokenizers, byte fallback, post-processor and decoders — with what
 * transformers layers on top from tokenizer_config.json (special tokens, add_bos_token / add_eos_token for the Llama
 * and Gemma classes, clean_up_tokenization_spaces, chat_template) and generation_config.json (eos_token_id).
 * Text must be valid UTF-8 (PISSA_ERR_INVALID_ARG naming the byte offset otherwise, as Python cannot hold it).
 * A tokenizer is immutable once loaded: every function may be called from several threads at once. */
#ifndef PISSA_TOKENIZER_H
#define PISSA_TOKENIZER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PISSA_TOKEN_UNK 0
#define PISSA_TOKEN_BOS 1
#define PISSA_TOKEN_EOS 2

typedef struct pissa_tokenizer pissa_tokenizer;

/* Loads a tokenizer (both kinds). PATH is a llama2.c file, a tokenizer.json, or a folder holding tokenizer.json; the
 * files tokenizer_config.json, generation_config.json and chat_template.jinja beside a tokenizer.json are read when
 * present.
 * llama2.c: VOCAB_SIZE is the model's vocabulary size: exactly that many tokens are read (bytes after them are
 * ignored, as run.c does). VOCAB_SIZE 0 reads tokens up to the end of the file, which must end exactly after a token
 * (the format is self-delimiting, so V is unambiguous). PISSA_ERR_FORMAT, naming the file and token index, for: a
 * truncated file, fewer tokens than VOCAB_SIZE, a negative max_token_length or piece length, a piece longer than
 * max_token_length (run.c's merge buffer would overflow), a NaN score, or fewer than 259 tokens (ids 0..258 are
 * reserved for <unk>, BOS, EOS and the bytes).
 * tokenizer.json: VOCAB_SIZE > 0 is the model's vocabulary size, and a token with an id at or beyond it is
 * PISSA_ERR_FORMAT (the model could not embed it); 0 checks nothing. Components libpissa does not implement
 * (Unigram, WordPiece or WordLevel models, other normalizer / pre-tokenizer / post-processor / decoder types) are
 * PISSA_ERR_UNSUPPORTED naming the component and its JSON path; malformed fields are PISSA_ERR_FORMAT naming the field.
 * PISSA_ERR_NOT_FOUND for a folder without tokenizer.json. Caller frees with pissa_tokenizer_free. */
PISSA_API pissa_status pissa_tokenizer_load(const char *path, int32_t vocab_size, pissa_tokenizer **out);
PISSA_API void pissa_tokenizer_free(pissa_tokenizer *tok); /* NULL is a no-op */

typedef enum pissa_tokenizer_kind {
    PISSA_TOKENIZER_LLAMA2C = 0, /* a llama2.c tokenizer.bin */
    PISSA_TOKENIZER_HF = 1,      /* a Hugging Face tokenizer.json */
} pissa_tokenizer_kind;
PISSA_API pissa_tokenizer_kind pissa_tokenizer_get_kind(const pissa_tokenizer *tok);

/* Number of ids (both kinds): ids are [0, vocab_size). A tokenizer.json may leave some without a token. */
PISSA_API int32_t pissa_tokenizer_vocab_size(const pissa_tokenizer *tok);
/* The token string of ID, i.e. Hugging Face's id_to_token (both kinds): the piece as stored in the file, or the
 * tokenizer.json vocabulary / added-token string ("Ġthe", "▁the", "<0x0A>", "<|im_end|>"). NUL-terminated; *len,
 * if not NULL, gets its length. NULL when ID has no token. Borrowed, valid until pissa_tokenizer_free. */
PISSA_API const char *pissa_tokenizer_piece(const pissa_tokenizer *tok, int32_t id, size_t *len);
/* The llama2.c score of ID; NaN when out of range and for a tokenizer.json (its BPE ranks merges, not tokens). */
PISSA_API float pissa_tokenizer_score(const pissa_tokenizer *tok, int32_t id);
/* Hugging Face's token_to_id (both kinds): the id of the token string TOKEN (LEN bytes; an added token first, then
 * the vocabulary; llama2.c: the lowest id with that piece), or -1 when there is none. */
PISSA_API int32_t pissa_tokenizer_token_to_id(const pissa_tokenizer *tok, const char *token, size_t len);

/* Most tokens an encoding of LEN bytes can have with a llama2.c tokenizer: BOS + dummy prefix + one per byte + EOS.
 * pissa_tokenizer_max_tokens gives the bound for either kind. */
#define PISSA_TOKENIZER_MAX_TOKENS(len) ((size_t)(len) + 3)
/* Most tokens pissa_tokenizer_encode or pissa_tokenizer_encode_text can return for LEN bytes of text (both kinds;
 * SIZE_MAX when the bound does not fit). For a tokenizer.json it follows from how far the normalizers can grow the
 * text (NFKC up to 11x, Replace by its content), so it may be well above the real count: a size query (ids NULL,
 * cap 0) gives the exact one. */
PISSA_API size_t pissa_tokenizer_max_tokens(const pissa_tokenizer *tok, size_t len);

/* Encodes LEN bytes of TEXT (need not be NUL-terminated) with explicit BOS / EOS (both kinds).
 * llama2.c: as run.c's encode(tok, text, bos, eos) does.
 * tokenizer.json: the encoding without special tokens (add_special_tokens=False), then the bos token first if BOS
 * and the eos token last if EOS; PISSA_ERR_INVALID_ARG if one is asked for and the tokenizer has none.
 * Capacity contract: IDS has room for CAP tokens. *N is always set to the length of the encoding. If it exceeds
 * CAP, nothing is written and PISSA_ERR_INVALID_ARG is returned, so IDS = NULL, CAP = 0 is a size query
 * (a second call with CAP = *N succeeds); CAP >= pissa_tokenizer_max_tokens(tok, LEN) always suffices. */
PISSA_API pissa_status pissa_tokenizer_encode(const pissa_tokenizer *tok, const char *text, size_t len, int bos,
                                              int eos, int32_t *ids, size_t cap, size_t *n);

/* Encodes TEXT as transformers' tokenizer(text, add_special_tokens=ADD_SPECIAL_TOKENS)["input_ids"] does (both
 * kinds; for llama2.c, ADD_SPECIAL_TOKENS means BOS first, as llama2.c trains). Same capacity contract as
 * pissa_tokenizer_encode. */
PISSA_API pissa_status pissa_tokenizer_encode_text(const pissa_tokenizer *tok, const char *text, size_t len,
                                                   int add_special_tokens, int32_t *ids, size_t cap, size_t *n);

/* Bytes that token ID prints as when it follows PREV (both kinds).
 * llama2.c (run.c decode): after BOS (PREV == 1) a leading space of the piece is dropped; a piece "<0xHH>" is the
 * single raw byte 0xHH; any other piece is returned as is (BOS and EOS included).
 * tokenizer.json: PREV is ignored; the token through the decoders that act on single tokens (Replace, ByteFallback,
 * ByteLevel, Metaspace without its start-of-text rule; Fuse and Strip act on whole texts): raw bytes, so a byte-level
 * token may hold part of a UTF-8 character; an added token is its content. For text as transformers decodes it, use
 * pissa_tokenizer_decode_text or a pissa_token_stream.
 * *len gets the byte count (a raw byte may be NUL). Returns NULL if ID has no token. Borrowed, valid until
 * pissa_tokenizer_free. */
PISSA_API const char *pissa_tokenizer_decode_piece(const pissa_tokenizer *tok, int32_t prev, int32_t id,
                                                   size_t *len);

/* Decodes a whole sequence into BUF (both kinds).
 * llama2.c: the concatenation of decode_piece(ids[i-1], ids[i]) (the first token has no predecessor), except that
 * BOS and EOS tokens produce no bytes (they still count as the previous token), so decode(encode(x, bos=1)) == x for
 * valid UTF-8 x. An out-of-range id is PISSA_ERR_INVALID_ARG naming its position.
 * tokenizer.json: pissa_tokenizer_decode_text with skip_special_tokens = 1.
 * BUF receives the bytes and a terminating NUL; *LEN is always set to the byte count without the NUL. If BUF cannot
 * hold *LEN + 1 bytes nothing is written and PISSA_ERR_INVALID_ARG is returned (BUF = NULL, CAP = 0 is a size
 * query). */
PISSA_API pissa_status pissa_tokenizer_decode(const pissa_tokenizer *tok, const int32_t *ids, size_t n, char *buf,
                                              size_t cap, size_t *len);

/* Decodes as transformers' tokenizer.decode(ids, skip_special_tokens=SKIP_SPECIAL_TOKENS) does (both kinds), with
 * the same buffer contract as pissa_tokenizer_decode.
 * tokenizer.json: the decoder chain over the tokens (special ones dropped when SKIP_SPECIAL_TOKENS), then
 * clean_up_tokenization when tokenizer_config.json sets clean_up_tokenization_spaces; the text is valid UTF-8 (bytes
 * that do not form characters become U+FFFD, as in Python). Ids without a token are skipped, as tokenizers does; a
 * negative id is PISSA_ERR_INVALID_ARG.
 * llama2.c: pissa_tokenizer_decode (BOS and EOS never print; SKIP_SPECIAL_TOKENS changes nothing). */
PISSA_API pissa_status pissa_tokenizer_decode_text(const pissa_tokenizer *tok, const int32_t *ids, size_t n,
                                                   int skip_special_tokens, char *buf, size_t cap, size_t *len);

/* ---- special tokens, chat template, generation (both kinds) ---- */

typedef enum pissa_special_token {
    PISSA_SPECIAL_BOS = 0,
    PISSA_SPECIAL_EOS = 1,
    PISSA_SPECIAL_UNK = 2,
    PISSA_SPECIAL_PAD = 3,
} pissa_special_token;

/* The id of a special token, -1 when the tokenizer has none. tokenizer.json: the bos_token / eos_token / unk_token /
 * pad_token of tokenizer_config.json (without that file, all -1). llama2.c: BOS 1, EOS 2, UNK 0, PAD -1. */
PISSA_API int32_t pissa_tokenizer_special_id(const pissa_tokenizer *tok, pissa_special_token which);
/* The special token's string as tokenizer_config.json gives it ("<s>", "<|begin_of_text|>"), for chat templates;
 * NULL when absent, and always for llama2.c (its pieces are not token strings). Borrowed, valid until
 * pissa_tokenizer_free. */
PISSA_API const char *pissa_tokenizer_special_token(const pissa_tokenizer *tok, pissa_special_token which);
/* 1 if ID is a special token (skipped by skip_special_tokens): tokenizer.json: an added token marked special;
 * llama2.c: <unk>, BOS, EOS (0, 1, 2). 0 otherwise, and for an id out of range. */
PISSA_API int pissa_tokenizer_is_special(const pissa_tokenizer *tok, int32_t id);
/* The chat template (Jinja source) of tokenizer_config.json ("chat_template", or its entry named "default" when it
 * is a list), else of chat_template.jinja; NULL when there is none, and for llama2.c. Borrowed, valid until
 * pissa_tokenizer_free. */
PISSA_API const char *pissa_tokenizer_chat_template(const pissa_tokenizer *tok);
/* The ids that end a generation: *IDS (borrowed, valid until pissa_tokenizer_free) gets *N of them.
 * tokenizer.json: the eos token, generation_config.json's eos_token_id (an id or a list), and the end-of-turn tokens
 * of the common chat formats that the tokenizer has as special added tokens (<|eot_id|>, <|eom_id|>, <|im_end|>,
 * <|endoftext|>, <|end_of_text|>, <end_of_turn>, <|end|>), without repeats. llama2.c: BOS (1), where run.c stops. */
PISSA_API void pissa_tokenizer_stop_ids(const pissa_tokenizer *tok, const int32_t **ids, size_t *n);

/* ---- streaming decode ---- */

/* Text for tokens that arrive one at a time (generation): the concatenation of what pissa_token_stream_put returns
 * is the decode of all tokens put so far, released as soon as it is final; as tokenizers' DecodeStream, which this
 * follows, without transformers' clean_up_tokenization_spaces (" ?" -> "?", " n't" -> "n't", which
 * pissa_tokenizer_decode_text applies when tokenizer_config.json sets it: a space is released before the token that
 * would remove it arrives). Text once released is never released again: should a decoder rewrite it (a Strip with
 * start > 1 strips within each window; no tokenizer of the supported families has one), only what follows goes out.
 * tokenizer.json: tokenizers' DecodeStream: each token is decoded together with the few tokens before it, and the
 * text after what was already released is returned once it does not end in an incomplete UTF-8 character (so a
 * character split over byte-level tokens comes out whole, with the token that completes it; until then the
 * returned text is empty). Decoders that look at the start of the text (Strip, Metaspace) see the true start.
 * llama2.c: each token's raw bytes as run.c prints them (pissa_tokenizer_decode_piece after the previous token;
 * BOS and EOS print nothing, as in pissa_tokenizer_decode), so a character may be split across calls.
 * SKIP_SPECIAL_TOKENS as in pissa_tokenizer_decode_text. Caller frees with pissa_token_stream_free; the stream
 * borrows TOK, which must outlive it. A stream is used by one thread at a time. */
typedef struct pissa_token_stream pissa_token_stream;
PISSA_API pissa_status pissa_token_stream_create(const pissa_tokenizer *tok, int skip_special_tokens,
                                                 pissa_token_stream **out);
PISSA_API void pissa_token_stream_free(pissa_token_stream *s); /* NULL is a no-op */
/* Puts token ID; *TEXT, *LEN get the bytes released (possibly none: *LEN 0). *TEXT is borrowed, valid until the
 * next call on S. PISSA_ERR_INVALID_ARG for a negative id (and, llama2.c, an id out of range). */
PISSA_API pissa_status pissa_token_stream_put(pissa_token_stream *s, int32_t id, const char **text, size_t *len);
/* What is still held back (an incomplete character at the end, as U+FFFD for tokenizer.json), then starts over. */
PISSA_API pissa_status pissa_token_stream_finish(pissa_token_stream *s, const char **text, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
