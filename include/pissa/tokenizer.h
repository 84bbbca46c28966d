/* libpissa — the llama2.c BPE tokenizer (docs/formats.md): karpathy/llama2.c run.c's build_tokenizer, encode and
 * decode, with validation of the file and an encoder that stays fast on long texts.
 *
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
 * byte token <0x20> (run.c would emit id -1). */
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

/* Loads and validates a llama2.c tokenizer file. VOCAB_SIZE is the model's vocabulary size: exactly that many
 * tokens are read (bytes after them are ignored, as run.c does). VOCAB_SIZE 0 reads tokens up to the end of the
 * file, which must end exactly after a token (the format is self-delimiting, so V is unambiguous).
 * PISSA_ERR_FORMAT, naming the file and token index, for: a truncated file, fewer tokens than VOCAB_SIZE,
 * a negative max_token_length or piece length, a piece longer than max_token_length (run.c's merge buffer would
 * overflow), a NaN score, or fewer than 259 tokens (ids 0..258 are reserved for <unk>, BOS, EOS and the bytes).
 * Caller frees with pissa_tokenizer_free. */
PISSA_API pissa_status pissa_tokenizer_load(const char *path, int32_t vocab_size, pissa_tokenizer **out);
PISSA_API void pissa_tokenizer_free(pissa_tokenizer *tok); /* NULL is a no-op */

PISSA_API int32_t pissa_tokenizer_vocab_size(const pissa_tokenizer *tok);
/* The piece of ID as stored in the file (NUL-terminated; *len, if not NULL, gets its length), or NULL when ID
 * is out of range. Borrowed, valid until pissa_tokenizer_free. */
PISSA_API const char *pissa_tokenizer_piece(const pissa_tokenizer *tok, int32_t id, size_t *len);
PISSA_API float pissa_tokenizer_score(const pissa_tokenizer *tok, int32_t id); /* NaN when out of range */

/* Most tokens an encoding of LEN bytes can have: BOS + dummy prefix + one per byte + EOS. */
#define PISSA_TOKENIZER_MAX_TOKENS(len) ((size_t)(len) + 3)

/* Encodes LEN bytes of TEXT (need not be NUL-terminated) as run.c's encode(tok, text, bos, eos) does.
 * Capacity contract: IDS has room for CAP tokens. *N is always set to the length of the encoding. If it exceeds
 * CAP, nothing is written and PISSA_ERR_INVALID_ARG is returned, so IDS = NULL, CAP = 0 is a size query
 * (a second call with CAP = *N succeeds); CAP >= PISSA_TOKENIZER_MAX_TOKENS(LEN) always suffices. */
PISSA_API pissa_status pissa_tokenizer_encode(const pissa_tokenizer *tok, const char *text, size_t len, int bos,
                                              int eos, int32_t *ids, size_t cap, size_t *n);

/* Bytes that token ID prints as when it follows PREV (run.c decode): after BOS (PREV == 1) a leading space of the
 * piece is dropped; a piece "<0xHH>" is the single raw byte 0xHH; any other piece is returned as is (BOS and EOS
 * included). *len gets the byte count (a raw byte may be NUL). Returns NULL if ID is out of range. Borrowed,
 * valid until pissa_tokenizer_free. */
PISSA_API const char *pissa_tokenizer_decode_piece(const pissa_tokenizer *tok, int32_t prev, int32_t id,
                                                   size_t *len);

/* Decodes a whole sequence into BUF: the concatenation of decode_piece(ids[i-1], ids[i]) (the first token has
 * no predecessor), except that BOS and EOS tokens produce no bytes (they still count as the previous token), so
 * decode(encode(x, bos=1)) == x for valid UTF-8 x. BUF receives the bytes and a terminating NUL; *LEN is always
 * set to the byte count without the NUL. If BUF cannot hold *LEN + 1 bytes nothing is written and
 * PISSA_ERR_INVALID_ARG is returned (BUF = NULL, CAP = 0 is a size query). An out-of-range id is
 * PISSA_ERR_INVALID_ARG naming its position. */
PISSA_API pissa_status pissa_tokenizer_decode(const pissa_tokenizer *tok, const int32_t *ids, size_t n, char *buf,
                                              size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
