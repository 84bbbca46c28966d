#!/usr/bin/python3
"""Reference generations for test_generate: a direct numpy transliteration of karpathy/llama2.c run.c's
memory_map_weights / forward / sample_argmax / generate, independent of libpissa's C code.

It reads the llama2.c checkpoint as run.c does and keeps the ORIGINAL (unpermuted) wq/wk with run.c's own RoPE
on adjacent pairs (2i, 2i+1), so agreement with libpissa (which permutes the rows to Hugging Face's rotate_half
form) also checks that permutation. Arithmetic is float64 (run.c uses float32; the difference is far below the
tolerance of the test, and float64 is the closer of the two to the exact values).

Usage: /usr/bin/python3 tests/reference/llama2c_generate_ref.py [MODEL_BIN TOKENIZER_BIN]
Writes tests/reference/stories260K_greedy.json:
  "generations": [{"prompt", "steps", "tokens" (every position's token, the prompt's included, BOS first),
                   "text" (the bytes run.c's generate prints: decode(prev, next) of every token after the first,
                   without run.c's safe_printf filter), "min_margin" (smallest top-1 minus top-2 logit of a
                   greedy choice: how far the test is from a near-tie)}],
  "logits": {"tokens": [seq_len token ids, BOS first], "positions": [...], "file": "stories260K_logits.f32"}
and tests/reference/stories260K_logits.f32: the full logit rows (vocab_size float32 each, little-endian) of the
forward pass over "tokens" at each of "positions" in that order, from the first to the last position the model
supports.
"""
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from llama2c_tokenizer_ref import build_tokenizer, decode_piece, encode  # noqa: E402  (run.c's tokenizer)

DATA = os.path.join(HERE, "..", "..", "..", "shared", "data", "stories260K")


def read_checkpoint(path):
    """run.c read_checkpoint + memory_map_weights for the legacy (version 0) format."""
    data = open(path, "rb").read()
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = struct.unpack_from("<7i", data, 0)
    shared_weights = vocab_size > 0
    vocab_size = abs(vocab_size)
    f = np.frombuffer(data, dtype="<f4", offset=28).astype(np.float64)
    head_size = dim // n_heads
    kv_dim = n_kv_heads * head_size
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = f[off:off + n].reshape(shape)
        off += n
        return a

    w = {}
    w["token_embedding_table"] = take(vocab_size, dim)
    w["rms_att_weight"] = take(n_layers, dim)
    w["wq"] = take(n_layers, n_heads * head_size, dim)
    w["wk"] = take(n_layers, kv_dim, dim)
    w["wv"] = take(n_layers, kv_dim, dim)
    w["wo"] = take(n_layers, dim, n_heads * head_size)
    w["rms_ffn_weight"] = take(n_layers, dim)
    w["w1"] = take(n_layers, hidden_dim, dim)
    w["w2"] = take(n_layers, dim, hidden_dim)
    w["w3"] = take(n_layers, hidden_dim, dim)
    w["rms_final_weight"] = take(dim)
    off += seq_len * head_size // 2  # skip what used to be freq_cis_real (for RoPE)
    off += seq_len * head_size // 2  # skip what used to be freq_cis_imag (for RoPE)
    w["wcls"] = w["token_embedding_table"] if shared_weights else take(vocab_size, dim)
    assert off == f.size, "file size does not match the layout"
    cfg = dict(dim=dim, hidden_dim=hidden_dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads,
               vocab_size=vocab_size, seq_len=seq_len)
    return cfg, w


def rmsnorm(x, weight):
    ss = np.mean(x * x) + 1e-5
    return weight * (x / np.sqrt(ss))


def softmax(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


class Transformer:
    def __init__(self, cfg, w):
        self.c, self.w = cfg, w
        c = cfg
        head_size = c["dim"] // c["n_heads"]
        kv_dim = c["n_kv_heads"] * head_size
        self.key_cache = np.zeros((c["n_layers"], c["seq_len"], kv_dim))
        self.value_cache = np.zeros((c["n_layers"], c["seq_len"], kv_dim))

    def forward(self, token, pos):
        """run.c forward(transformer, token, pos)."""
        c, w = self.c, self.w
        dim = c["dim"]
        head_size = dim // c["n_heads"]
        kv_dim = c["n_kv_heads"] * head_size
        kv_mul = c["n_heads"] // c["n_kv_heads"]
        x = w["token_embedding_table"][token].copy()
        for l in range(c["n_layers"]):
            xb = rmsnorm(x, w["rms_att_weight"][l])
            q = w["wq"][l] @ xb
            k = w["wk"][l] @ xb
            v = w["wv"][l] @ xb
            # RoPE relative positional encoding: complex-valued rotate q and k in each head
            for i in range(0, dim, 2):
                head_dim = i % head_size
                freq = 1.0 / 10000.0 ** (head_dim / head_size)
                val = pos * freq
                fcr, fci = np.cos(val), np.sin(val)
                rotn = 2 if i < kv_dim else 1  # how many vectors? 2 = q & k, 1 = q only
                for vi in range(rotn):
                    vec = q if vi == 0 else k
                    v0, v1 = vec[i], vec[i + 1]
                    vec[i] = v0 * fcr - v1 * fci
                    vec[i + 1] = v0 * fci + v1 * fcr
            self.key_cache[l, pos] = k
            self.value_cache[l, pos] = v
            xb = np.zeros(dim)
            for h in range(c["n_heads"]):
                qh = q[h * head_size:(h + 1) * head_size]
                kvh = (h // kv_mul) * head_size
                att = self.key_cache[l, :pos + 1, kvh:kvh + head_size] @ qh  # qh · k_t for t = 0..pos
                att = softmax(att / np.sqrt(head_size))
                xb[h * head_size:(h + 1) * head_size] = att @ self.value_cache[l, :pos + 1, kvh:kvh + head_size]
            x = x + w["wo"][l] @ xb
            xb = rmsnorm(x, w["rms_ffn_weight"][l])
            hb = w["w1"][l] @ xb
            hb2 = w["w3"][l] @ xb
            hb = hb * (1.0 / (1.0 + np.exp(-hb))) * hb2  # SwiGLU
            x = x + w["w2"][l] @ hb
        x = rmsnorm(x, w["rms_final_weight"])
        return w["wcls"] @ x


def generate(cfg, w, vocab, scores, prompt, steps):
    """run.c generate() with a greedy sampler (temperature 0): stops after STEPS positions or at BOS."""
    t = Transformer(cfg, w)
    prompt_tokens = encode(vocab, scores, prompt.encode("utf-8"), 1, 0)
    tokens = [prompt_tokens[0]]
    text = b""
    min_margin = float("inf")
    token, pos = prompt_tokens[0], 0
    while pos < steps:
        logits = t.forward(token, pos)
        if pos < len(prompt_tokens) - 1:
            nxt = prompt_tokens[pos + 1]
        else:
            top2 = np.sort(logits)[-2:]
            min_margin = min(min_margin, float(top2[1] - top2[0]))
            nxt = int(np.argmax(logits))
        pos += 1
        if nxt == 1:  # data-dependent terminating condition: the BOS (=1) token delimits sequences
            break
        text += decode_piece(vocab, token, nxt)
        tokens.append(nxt)
        token = nxt
    return tokens, text, min_margin


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(DATA, "stories260K.bin")
    tok = sys.argv[2] if len(sys.argv) > 2 else os.path.join(DATA, "tok512.bin")
    cfg, w = read_checkpoint(model)
    vocab, scores, _ = build_tokenizer(tok)
    out = {"model": os.path.basename(model), "tokenizer": os.path.basename(tok), "generations": []}
    for prompt, steps in [("", 100), ("Once upon a time", 80), ("The little dog", 64)]:
        tokens, text, margin = generate(cfg, w, vocab, scores, prompt, steps)
        out["generations"].append({"prompt": prompt, "steps": steps, "tokens": tokens,
                                   "text": text.decode("utf-8"), "min_margin": margin})
        print(f"{prompt!r}: {len(tokens)} tokens, min margin {margin:.4g}: {text.decode('utf-8')!r}")
    # every position the model supports, on a fixed pseudo-random token sequence (BOS first)
    seq, x = [1], 12345
    while len(seq) < cfg["seq_len"]:
        x = (1103515245 * x + 12345) % 2**31
        seq.append(3 + (x >> 8) % (cfg["vocab_size"] - 3))
    positions = [0, 1, 7, 100, 255, 400, cfg["seq_len"] - 1]
    t = Transformer(cfg, w)
    rows = [t.forward(tk, p) for p, tk in enumerate(seq)]
    out["logits"] = {"tokens": seq, "positions": positions, "file": "stories260K_logits.f32"}
    np.array([rows[p] for p in positions], dtype="<f4").tofile(os.path.join(HERE, "stories260K_logits.f32"))
    with open(os.path.join(HERE, "stories260K_greedy.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
