"""QPiSSA's quantization error on a real model, stories260K, for tests/test_qpissa.c: per projection, the PiSSA repo's
error reduction against QLoRA (calculate_quantization_error.py) after init_qpissa.py's rounds, computed by the torch
transliteration of make_qpissa_reference.py (its pissa_quant and error_reduction, the NF4 quantizer of
make_quant_reference.py in place of bitsandbytes).

Input: stories260K in the Hugging Face layout, as `pissa-merge --model stories260K.bin --to-hf --dtype bf16` writes it
(the q/k rows permuted from llama2.c's RoPE to rotate_half, which changes which elements share an NF4 block; the
export itself is checked against llama2.c by tests/test_weights.c and tests/test_model.c). The safetensors file is
read here with numpy, not with libpissa.

Usage: /usr/bin/python3 make_qpissa_stories_reference.py HF_DIR [OUT]
writes OUT (default qpissa_stories260K.txt next to this script), one line per case and projection:
  case qtype qiter r module nuc_qlora nuc_qpissa err_reduction codes_same codes_total
plus a line "# margin case module m": the smallest distance of a scaled value to an NF4 decision boundary in that
case's last round (a value within float32 SVD noise of a boundary may round the other way in libpissa).
"""
import json
import os
import struct
import sys

import numpy as np
import torch

import make_qpissa_reference as ref

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = [("nf4_r8_t1", "nf4", 1, 8), ("nf4_r8_t5", "nf4", 5, 8)]  # name, qtype, qiter, r (alpha = r: scale 1)
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
        "mlp.up_proj", "mlp.down_proj"]


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        if info["dtype"] == "BF16":
            x = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F32":
            x = np.frombuffer(raw, dtype="<f4")
        else:
            raise SystemExit("%s: dtype %s" % (name, info["dtype"]))
        out[name] = x.reshape(info["shape"]).astype(np.float32)
    return out


def main():
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "qpissa_stories260K.txt")
    cfg = json.load(open(os.path.join(src, "config.json")))
    w = read_safetensors(os.path.join(src, "model.safetensors"))
    lines = []
    for name, qtype, qiter, r in CASES:
        for l in range(cfg["num_hidden_layers"]):
            for p in PROJ:
                module = "model.layers.%d.%s" % (l, p)
                W = torch.from_numpy(w[module + ".weight"].copy())
                w_deq, A, B, (codes, scales), m = ref.pissa_quant(W, r, qiter, qtype, r)
                stored = w_deq.to(torch.bfloat16).to(torch.float32)  # the residual as the bf16 checkpoint holds it
                nuc_a, nuc_b, red = ref.error_reduction(W, stored, A, B, 1.0, qtype)
                _, (codes2, _) = ref.qdq(stored, qtype)
                c1 = np.stack([codes >> 4, codes & 15], axis=1).reshape(-1)[: W.numel()]
                c2 = np.stack([codes2 >> 4, codes2 & 15], axis=1).reshape(-1)[: W.numel()]
                lines.append("%s %s %d %d %s %.9g %.9g %.9g %d %d" % (name, qtype, qiter, r, module, nuc_b, nuc_a, red,
                                                                    int((c1 == c2).sum()), c1.size))
                lines.append("# margin %s %s %.3g" % (name, module, m))
        reds = [float(x.split()[7]) for x in lines if x.startswith(name + " ")]
        print(name, "mean error reduction %.4f%% over %d matrices" % (100 * sum(reds) / len(reds), len(reds)))
    with open(dst, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
