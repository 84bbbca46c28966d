"""Reference values for tests/test_adapter.c: PEFT's PiSSA initialisation run through PyTorch in float32.

The lines marked "PEFT" are copied from peft/tuners/lora/layer.py (LoraLayer.pissa_init). Run with
/usr/bin/python3 (numpy + torch); it rewrites the pissa_ref_*.f32 files next to this script:
raw little-endian float32, row-major, shapes given in the names and in test_adapter.c.

For each case NAME (shape out x in, rank r, alpha a, rslora or not, init exact or pissa_niter_4):
  pissa_ref_W_<out>x<in>.f32     W (out, in)  (shared by the cases of that shape)
  pissa_ref_<NAME>_sBA.f32       s * B @ A    (out, in)  sign-independent
  pissa_ref_<NAME>_Wres.f32      W_res        (out, in)
  pissa_ref_<NAME>_Anorm2.f32    squared row norms of A (r) = S_r / s, sign-independent
"""
import math
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def make_w(out, inp):
    """A deterministic W with a clear spectral gap after the 4th singular value (so the rank-4 subspace is
    well defined and a randomized SVD recovers it) plus a small full-rank part."""
    i = np.arange(out, dtype=np.float64)[:, None]
    j = np.arange(inp, dtype=np.float64)[None, :]
    w = np.zeros((out, inp))
    for k in range(4):
        w += (3.0 - 0.6 * k) * np.sin((k + 1) * (0.31 * i + 0.17)) * np.cos((k + 1) * (0.23 * j + 0.05))
    w += 0.01 * np.sin(1.7 * i * j + 0.3 * i + 0.1)
    return torch.from_numpy(w.astype(np.float32))


def pissa_init(weight, r, lora_alpha, use_rslora, init):
    scaling = lora_alpha / math.sqrt(r) if use_rslora else lora_alpha / r  # PEFT update_layer
    weight = weight.to(torch.float32)
    if init == "pissa":
        # USV^T = W <-> VSU^T = W^T, where W^T = weight.data in R^{out_channel, in_channel},
        V, S, Uh = torch.linalg.svd(weight.data, full_matrices=False)  # PEFT
        Vr = V[:, :r]  # PEFT
        Sr = S[:r]  # PEFT
        Sr /= scaling  # PEFT
        Uhr = Uh[:r]  # PEFT
    else:
        niter = int(init.split("_niter_")[-1])  # PEFT
        Vr, Sr, Ur = torch.svd_lowrank(weight.data, r, niter=niter)  # PEFT
        Sr /= scaling  # PEFT
        Uhr = Ur.t()  # PEFT
    lora_A = torch.diag(torch.sqrt(Sr)) @ Uhr  # PEFT
    lora_B = Vr @ torch.diag(torch.sqrt(Sr))  # PEFT
    weight = weight.data - scaling * lora_B @ lora_A  # PEFT
    return lora_A, lora_B, weight, scaling


def save(name, t):
    t.detach().contiguous().numpy().astype("<f4").tofile(os.path.join(HERE, "pissa_ref_" + name + ".f32"))


def main():
    torch.manual_seed(0)
    cases = [  # (out, in, r, alpha, rslora, init)
        (24, 16, 4, 8.0, False, "pissa"),
        (24, 16, 4, 8.0, True, "pissa"),
        (12, 20, 4, 8.0, False, "pissa"),
        (12, 20, 4, 8.0, True, "pissa"),
        (24, 16, 4, 8.0, False, "pissa_niter_4"),
    ]
    for out, inp, r, alpha, rslora, init in cases:
        w = make_w(out, inp)
        s_all = torch.linalg.svdvals(w.double())
        assert s_all[3] / s_all[4] > 10, "W must have a spectral gap after r = 4"
        save("W_%dx%d" % (out, inp), w)
        A, B, w_res, s = pissa_init(w.clone(), r, alpha, rslora, init)
        name = "%s_%dx%d_r%d_a%g%s" % (init, out, inp, r, alpha, "_rslora" if rslora else "")
        save(name + "_sBA", s * (B @ A))
        save(name + "_Wres", w_res)
        save(name + "_Anorm2", (A * A).sum(dim=1))
        print(name, "scale", s, "S[:r]", s_all[:r].tolist())


if __name__ == "__main__":
    main()
