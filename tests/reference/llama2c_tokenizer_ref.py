#!/usr/bin/python3
"""Reference encodings for test_tokenizer: a direct, pure-Python transliteration of karpathy/llama2.c run.c's
build_tokenizer / encode / decode (the O(n^2) merge loop as written there), independent of libpissa's C code.

Usage: /usr/bin/python3 tests/reference/llama2c_tokenizer_ref.py [TOK512_BIN]
Writes tests/reference/tok512_encodings.json: a list of {"text", "bos", "eos", "ids", "decoded"}.
"decoded" follows libpissa's whole-sequence rule (run.c's per-token decode, BOS/EOS produce no bytes).
"""
import json
import os
import random
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_TOK = os.path.join(HERE, "..", "..", "..", "shared", "data", "stories260K", "tok512.bin")


def build_tokenizer(path):
    """run.c build_tokenizer, reading tokens up to the end of the file."""
    data = open(path, "rb").read()
    (max_token_length,) = struct.unpack_from("<i", data, 0)
    off = 4
    vocab, scores = [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        vocab.append(data[off:off + n])
        scores.append(score)
        off += n
    assert off == len(data)
    return vocab, scores, max_token_length


def str_lookup(s, sorted_vocab):
    # run.c: bsearch over the vocabulary sorted by strcmp; a dict keeps the first (lowest) id of a piece
    return sorted_vocab.get(s, -1)


def encode(vocab, scores, text, bos, eos):
    """run.c encode(t, text, bos, eos, tokens, n_tokens) on the UTF-8 bytes of TEXT."""
    sorted_vocab = {}
    for i, piece in enumerate(vocab):
        sorted_vocab.setdefault(piece, i)
    tokens = []
    if bos:
        tokens.append(1)
    if len(text) > 0:  # add_dummy_prefix, only for a non-empty text
        tokens.append(str_lookup(b" ", sorted_vocab))
    buf = b""
    for k, c in enumerate(text):
        if (c & 0xC0) != 0x80:  # not a continuation byte: a new code point starts
            buf = b""
        buf += bytes([c])
        nxt = text[k + 1] if k + 1 < len(text) else 0  # the NUL terminator in C
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        i = str_lookup(buf, sorted_vocab)
        if i != -1:
            tokens.append(i)
        else:
            for b in buf:  # byte fallback: <0x00> is id 3
                tokens.append(b + 3)
        buf = b""
    while True:  # merge the best consecutive pair each iteration
        best_score = struct.unpack("<f", struct.pack("<f", -1e10))[0]
        best_id = -1
        best_idx = -1
        for i in range(len(tokens) - 1):
            j = str_lookup(vocab[tokens[i]] + vocab[tokens[i + 1]], sorted_vocab)
            if j != -1 and scores[j] > best_score:
                best_score = scores[j]
                best_id = j
                best_idx = i
        if best_idx == -1:
            break
        tokens[best_idx] = best_id
        del tokens[best_idx + 1]
    if eos:
        tokens.append(2)
    return tokens


def decode_piece(vocab, prev_token, token):
    """run.c decode: strip a leading space after BOS; '<0xHH>' is a raw byte."""
    piece = vocab[token]
    if prev_token == 1 and piece[:1] == b" ":
        piece = piece[1:]
    if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece


def decode(vocab, ids):
    out = b""
    for i, t in enumerate(ids):
        if t in (1, 2):
            continue
        out += decode_piece(vocab, ids[i - 1] if i > 0 else -1, t)
    return out


def long_text():
    """A few KB of varied, deterministic text: many merges and many equal-score candidates."""
    rng = random.Random(1234)
    words = ["the", "cat", "sat", "on", "a", "mat", "Lily", "Tim", "happy", "big", "dog", "played", "and", "ran",
             "to", "park", "sun", "was", "very", "said", "\"Hello!\"", "café", "naïve", "it's", "they're", "up",
             "down", "tree", "bird", "sang", "—", "2024", "x", "zz", "qq", "  ", "\t"]
    parts = []
    for _ in range(500):
        parts.append(rng.choice(words))
        r = rng.random()
        parts.append(". " if r < 0.1 else ",\n" if r < 0.15 else "\n\n" if r < 0.17 else " ")
    return "".join(parts)


SAMPLES = [
    ("Once upon a time, there was a little girl named Lily.", 1, 0),
    ("Hello, world! How are you? (fine; thanks) -- 'quotes' \"double\" #1 $2 %3 & *", 1, 0),
    ("line one\nline two\n\nline four\r\n\ttabbed", 1, 0),
    ("Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe", 1, 0),
    ("emoji \U0001F600 and \U0001F408\u200d\u2b1b cat, CJK \u4e2d\u6587", 1, 0),
    ("", 1, 0),
    ("", 0, 0),
    ("   leading spaces", 1, 0),
    ("trailing spaces   ", 1, 0),
    (" ", 1, 0),
    ("a", 1, 0),
    ("The dog ran to the park. The sun was big and happy.", 0, 0),
    ("The dog ran to the park. The sun was big and happy.", 1, 1),
    ("~[]{}|\\^`@<0x41>", 1, 0),
    (long_text(), 1, 0),
]


def main():
    tok_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_TOK
    vocab, scores, _ = build_tokenizer(tok_path)
    cases = []
    for text, bos, eos in SAMPLES:
        ids = encode(vocab, scores, text.encode("utf-8"), bos, eos)
        decoded = decode(vocab, ids).decode("utf-8")
        cases.append({"text": text, "bos": bos, "eos": eos, "ids": ids, "decoded": decoded})
    out = os.path.join(HERE, "tok512_encodings.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote", out, len(cases), "cases")


if __name__ == "__main__":
    main()
