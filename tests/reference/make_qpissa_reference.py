"""Reference values for tests/test_qpissa.c: QPiSSA initialisation as the official GraphPKU/PiSSA
utils/init_qpissa.py runs it, and its quantization error metric as calculate_quantization_error.py computes it,
transliterated to torch (float32, as the originals) with the NF4 / INT8 quantizer of make_quant_reference.py in
place of bitsandbytes (which needs CUDA or a newer torch than this machine has).

Lines marked "init_qpissa.py" / "calculate_quantization_error.py" follow those scripts. The script's LoraConfig has
lora_alpha = rank, so its scale is 1; a case with alpha = 2r checks the general scale s (S_r / s as PEFT's PiSSA):
  res = W; T times: U, S, Vh = svd(res); B = U_r sqrt(S_r / s); A = sqrt(S_r / s) Vh_r;
                    Q = q(W - s B A); res = W - deq(Q)
The residual is written in the base's dtype (here bf16, as the official recipe saves a bf16 base) and the metric
re-quantizes it as loading it with a 4-bit base does:
  1 - ||W - (deq(q(W_res_bf16)) + s B A)||_* / ||W - deq(q(W))||_*.

W (48, 41) = 1968 elements: 30 NF4 blocks and a short one of 48. W is bfloat16-representable (a bf16 checkpoint).
Quantization is discontinuous: a value within rounding noise of an NF4 midpoint (or of an INT8 half-integer) could
be quantized differently by two correct SVDs. The seed is chosen so that, in every round, every scaled value is at
least MARGIN from a decision boundary (printed), far above the float32 SVD differences (~1e-6).

Run with /usr/bin/python3 (numpy + torch). It rewrites next to this script, raw little-endian float32:
  qpissa_ref_W.f32                    W (48, 41)
  qpissa_ref_<case>_A.f32, _B.f32     A (r, 41), B (48, r)   (signs are not unique: the test compares products)
  qpissa_ref_<case>_sBA.f32           s B A (48, 41)
  qpissa_ref_<case>_Wres.f32          W_res = deq(Q) (48, 41), float32 (before the bf16 cast)
and qpissa_ref_cases.txt, one line per case:
  name qtype qiter r alpha nuc_qpissa nuc_qlora err_reduction codes_same codes_total scales_same scales_total
"""
import os

import numpy as np
import torch

import make_quant_reference as Q

HERE = os.path.dirname(os.path.abspath(__file__))
OUT, IN, R = 48, 41, 4
MARGIN = 2e-5
CASES = [  # name, qtype, qiter, alpha
    ("nf4_t1", "nf4", 1, R),
    ("nf4_t3", "nf4", 3, R),
    ("int8_t3", "int8", 3, R),
    ("nf4_t3_a8", "nf4", 3, 2 * R),
]


def qdq(w, qtype):
    """deq(q(w)) and q's (codes, scales) for a float32 torch matrix."""
    a = w.detach().numpy().astype(np.float32)
    if qtype == "nf4":
        codes, scales = Q.nf4_quantize(a)
        return torch.from_numpy(Q.nf4_dequantize(codes, scales, a.shape)), (codes, scales)
    codes, scales = Q.int8_quantize(a)
    return torch.from_numpy(Q.int8_dequantize(codes, scales)), (codes, scales)


def margin(w, qtype):
    """Distance of w's scaled values to the nearest decision boundary of qtype (in scaled units)."""
    a = w.detach().numpy().astype(np.float32)
    if qtype == "nf4":
        flat = a.reshape(-1)
        n, full = flat.size, flat.size - flat.size % Q.BLOCK
        am = np.abs(flat[:full].reshape(-1, Q.BLOCK)).max(axis=1)
        tail = flat[full:] / np.abs(flat[full:]).max() if full < n else flat[:0]  # the short last block, if any
        s = np.concatenate([(flat[:full].reshape(-1, Q.BLOCK) / am[:, None]).reshape(-1), tail])
        return float(np.abs(s[:, None] - Q.NF4_MIDPOINTS[None, :]).min())
    am = np.abs(a).max(axis=1)
    v = a * (127.0 / am[:, None])
    return float(np.abs(np.abs(v - np.floor(v)) - 0.5).min())


def pissa_quant(weight, r, niter, qtype, alpha):
    s = alpha / r
    res = weight.to(torch.float32)  # init_qpissa.py
    margins = []
    for _ in range(niter):  # init_qpissa.py
        U, S, Vh = torch.linalg.svd(res, full_matrices=False)  # init_qpissa.py
        Sr = S[:r] / s  # PEFT's Sr /= scaling (s = 1 in init_qpissa.py)
        L = U[:, :r] @ torch.diag(torch.sqrt(Sr))  # init_qpissa.py: L = U @ sqrt(diag(S)[:, :r])
        Rm = torch.diag(torch.sqrt(Sr)) @ Vh[:r]  # init_qpissa.py: R = sqrt(diag(S)[:r, :]) @ Vh
        res = weight - s * (L @ Rm)  # init_qpissa.py: res = weight - L @ R
        margins.append(margin(res, qtype))
        weight_dequantized, codes = qdq(res, qtype)  # init_qpissa.py
        res = weight - weight_dequantized  # init_qpissa.py
    return weight_dequantized, Rm, L, codes, min(margins)  # lora_A = R, lora_B = L


def error_reduction(W, W_res, lora_A, lora_B, scaling, qtype):  # calculate_quantization_error.py
    W_dequantized, _ = qdq(W, qtype)
    W_res_dequantized, _ = qdq(W_res, qtype)
    W_res_dequantized = W_res_dequantized + scaling * lora_B @ lora_A
    nuc_adapted = torch.linalg.svdvals(W - W_res_dequantized).sum()
    nuc_base = torch.linalg.svdvals(W - W_dequantized).sum()
    return float(nuc_adapted), float(nuc_base), float(1 - nuc_adapted / nuc_base)


def make_w(seed):
    g = torch.Generator().manual_seed(seed)
    # A decaying spectrum (a few strong directions, like a trained projection) plus outlier columns.
    U, _ = torch.linalg.qr(torch.randn(OUT, OUT, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(IN, IN, generator=g, dtype=torch.float64))
    sigma = 0.05 * (torch.arange(IN, dtype=torch.float64) + 1) ** -0.7
    w = (U[:, :IN] * sigma) @ V.T + 0.002 * torch.randn(OUT, IN, generator=g, dtype=torch.float64)
    w[:, 5] *= 4.0
    return w.to(torch.bfloat16).to(torch.float32)


def run(seed):
    W = make_w(seed)
    out = []
    for name, qtype, qiter, alpha in CASES:
        w_deq, A, B, (codes, scales), m = pissa_quant(W, R, qiter, qtype, alpha)
        s = alpha / R
        stored = w_deq.to(torch.bfloat16).to(torch.float32)  # the residual as the bf16 checkpoint holds it
        nuc_a, nuc_b, red = error_reduction(W, stored, A, B, s, qtype)
        _, (codes2, scales2) = qdq(stored, qtype)  # loading it with a quantized base
        if qtype == "nf4":
            c1 = np.stack([codes >> 4, codes & 15], axis=1).reshape(-1)[: OUT * IN]
            c2 = np.stack([codes2 >> 4, codes2 & 15], axis=1).reshape(-1)[: OUT * IN]
        else:
            c1, c2 = codes.reshape(-1), codes2.reshape(-1)
        same = int((c1 == c2).sum())
        ssame = int((scales.view(np.uint32) == scales2.view(np.uint32)).sum())
        out.append((name, qtype, qiter, alpha, W, A, B, s, w_deq, nuc_a, nuc_b, red, same, c1.size, ssame,
                    scales.size, m))
    return W, out


def save(name, t):
    t.detach().contiguous().numpy().astype("<f4").tofile(os.path.join(HERE, "qpissa_ref_" + name + ".f32"))


def main():
    for seed in range(100):
        W, out = run(seed)
        worst = min(o[-1] for o in out)
        print("seed", seed, "margin", worst)
        if worst >= MARGIN:
            break
    else:
        raise SystemExit("no seed gives every scaled value a margin of %g" % MARGIN)
    save("W", W)
    lines = []
    for name, qtype, qiter, alpha, W, A, B, s, w_deq, nuc_a, nuc_b, red, same, total, ssame, stotal, m in out:
        save(name + "_A", A)
        save(name + "_B", B)
        save(name + "_sBA", s * (B @ A))
        save(name + "_Wres", w_deq)
        lines.append("%s %s %d %d %d %.9g %.9g %.9g %d %d %d %d" % (name, qtype, qiter, R, alpha, nuc_a, nuc_b, red,
                                                                    same, total, ssame, stotal))
        print(lines[-1], "margin %.3g" % m)
    with open(os.path.join(HERE, "qpissa_ref_cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
