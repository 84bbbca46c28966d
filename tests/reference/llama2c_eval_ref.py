#!/usr/bin/python3
"""Reference held-out loss for test_model's pissa-eval test: stories260K on the first BYTES bytes of tinyshakespeare,
computed by the numpy transliteration of llama2.c run.c (llama2c_generate_ref.Transformer, float64) on the tokens of
the pure-Python run.c tokenizer (llama2c_tokenizer_ref.encode), independent of libpissa's C code.

The rows follow libpissa's documented plain-text rule (include/pissa/data.h): the text is encoded once with BOS and
no EOS, giving t[0..N); row i is t[i(T-1) .. i(T-1) + T) (windows overlapping by one token), rows =
floor((N - 1) / (T - 1)), the tail that does not fill a window is dropped. Every position of a row but the last
predicts the next token of the row; the loss is the mean cross-entropy over all those targets (pissa-eval's
token-weighted mean).

Usage: /usr/bin/python3 tests/reference/llama2c_eval_ref.py [MODEL_BIN TOKENIZER_BIN TEXT]
Writes tests/reference/stories260K_eval.json: {"bytes", "seq", "rows", "tokens" (targets counted), "loss"}.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama2c_generate_ref import Transformer, read_checkpoint  # noqa: E402
from llama2c_tokenizer_ref import build_tokenizer, encode  # noqa: E402

DATA = os.path.join(HERE, "..", "..", "..", "shared", "data")
BYTES, SEQ = 4000, 128


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DATA, "stories260K", "stories260K.bin")
    tok = sys.argv[2] if len(sys.argv) > 2 else os.path.join(DATA, "stories260K", "tok512.bin")
    text = sys.argv[3] if len(sys.argv) > 3 else os.path.join(DATA, "tinyshakespeare", "input.txt")
    cfg, w = read_checkpoint(model)
    vocab, scores, _ = build_tokenizer(tok)
    with open(text, "rb") as f:
        t = encode(vocab, scores, f.read()[:BYTES], 1, 0)
    rows = (len(t) - 1) // (SEQ - 1)
    nll, count = 0.0, 0
    for i in range(rows):
        row = t[i * (SEQ - 1): i * (SEQ - 1) + SEQ]
        m = Transformer(cfg, w)  # a fresh KV cache per row
        for p in range(SEQ - 1):
            logits = m.forward(row[p], p)
            mx = np.max(logits)
            nll += mx + np.log(np.sum(np.exp(logits - mx))) - logits[row[p + 1]]
            count += 1
    out = {"bytes": BYTES, "seq": SEQ, "rows": rows, "tokens": count, "loss": nll / count}
    print(out)
    with open(os.path.join(HERE, "stories260K_eval.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
