"""Fixtures for tests/test_quant.c: NF4 and INT8 quantization following bitsandbytes' rules, in numpy.

The rules are those of bitsandbytes' CPU kernels (bitsandbytes/backends/default/ops.py at commit 95f9af30,
`quantize_4bit` with quant_type "nf4" and blocksize 64, `int8_vectorwise_quant`, and the dequantizations
`_dequantize_4bit_compute` and `int8_vectorwise_dequant`), written again here in numpy, float32 throughout:

NF4: W flattened row-major, blocks of 64.
  full blocks:      absmax = max|x| (stored as is);            scaled = x * (1 / max(absmax, 1e-38))
  short last block: absmax = max(max|x|, 1e-38) (stored so);   scaled = x / absmax
  code = bucketize(scaled, midpoints) (right=False): the number of midpoints strictly below scaled, i.e. the
  nearest level with ties to the lower one; midpoints = (level[:-1] + level[1:]) / 2 in float32.
  Packed two per byte, first element in the high nibble; an odd count pads the last low nibble with 0.0's code (7).
  dequantized = level[code] * absmax[block].
INT8 (per row): absmax = max|x|; q = round_half_even(x * (127 / absmax)), saturated to [-127, 127], NaN -> 0
  (a zero row; bitsandbytes leaves NaN -> int8 and +-inf -> int8 undefined, libpissa defines them so);
  dequantized = (q * absmax) * float32(7.874015718698502e-3).

Run with /usr/bin/python3 (numpy); it rewrites quant_ref_* next to this script: a manifest quant_ref_cases.txt
("name rows cols" per line) and, per case, raw little-endian files:
  quant_ref_<name>_W.f32            W (rows, cols)
  quant_ref_<name>_nf4_codes.u8     ceil(rows*cols/2) packed codes
  quant_ref_<name>_nf4_absmax.f32   ceil(rows*cols/64) block absmax
  quant_ref_<name>_nf4_deq.f32      dequantized (rows, cols)
  quant_ref_<name>_int8_codes.i8    (rows, cols)
  quant_ref_<name>_int8_absmax.f32  (rows)
  quant_ref_<name>_int8_deq.f32     (rows, cols)
"""
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
F32 = np.float32

# bitsandbytes get_4bit_type("nf4") (functional.py).
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=F32)
NF4_MIDPOINTS = ((NF4_LEVELS[:-1] + NF4_LEVELS[1:]) / F32(2)).astype(F32)

# The decision constants of bitsandbytes' CUDA dQuantizeNF4 (csrc/kernels.cu), ascending: the same midpoints.
CUDA_THRESHOLDS = [-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
                   -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
                   0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
                   0.5016634166240692, 0.6427869200706482, 0.8614784181118011]
assert np.array_equal(np.array(CUDA_THRESHOLDS, dtype=F32), NF4_MIDPOINTS), "midpoints != dQuantizeNF4 thresholds"

MIN_ABSMAX = F32(1e-38)
INV127 = F32(7.874015718698502e-3)
BLOCK = 64


def nf4_quantize(w):
    """(packed codes uint8, absmax float32) of w (any shape), as bitsandbytes quantize_4bit(nf4, blocksize=64)."""
    flat = np.ascontiguousarray(w, dtype=F32).reshape(-1)
    n = flat.size
    full = n - n % BLOCK
    absmax, scaled = [], []
    if full:
        blocks = flat[:full].reshape(-1, BLOCK)
        am = np.abs(blocks).max(axis=1)
        inv = (F32(1) / np.maximum(am, MIN_ABSMAX)).astype(F32)
        absmax.append(am)
        scaled.append((blocks * inv[:, None]).reshape(-1))
    if n % BLOCK:
        tail = flat[full:]
        am = np.maximum(np.abs(tail).max(), MIN_ABSMAX).astype(F32)
        absmax.append(np.array([am], dtype=F32))
        scaled.append((tail / am).astype(F32))
    absmax = np.concatenate(absmax).astype(F32)
    scaled = np.clip(np.concatenate(scaled), F32(-1), F32(1)).astype(F32)
    assert scaled.dtype == F32 and absmax.dtype == F32
    codes = np.searchsorted(NF4_MIDPOINTS, scaled, side="left").astype(np.uint8)  # == torch.bucketize(right=False)
    if codes.size % 2:
        codes = np.append(codes, np.searchsorted(NF4_MIDPOINTS, F32(0), side="left").astype(np.uint8))
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)
    return packed, absmax


def nf4_dequantize(packed, absmax, shape):
    n = int(np.prod(shape))
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 15
    vals = NF4_LEVELS[codes[:n]]
    scale = np.repeat(absmax, BLOCK)[:n]
    return (vals * scale).astype(F32).reshape(shape)


def int8_quantize(w):
    """(int8 codes, row absmax float32) of w (rows, cols), as bitsandbytes int8_vectorwise_quant (threshold 0)."""
    w = np.ascontiguousarray(w, dtype=F32)
    absmax = np.abs(w).max(axis=1).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = (F32(127) / absmax).astype(F32)
        v = (w * scale[:, None]).astype(F32)
    v = np.where(np.isnan(v), F32(0), np.clip(v, F32(-127), F32(127)))
    return np.rint(v).astype(np.int8), absmax  # rint: round half to even, as torch.round


def int8_dequantize(q, absmax):
    return ((q.astype(F32) * absmax[:, None]).astype(F32) * INV127).astype(F32)


# ---- the cases ----

def up(x):
    return np.nextafter(x, F32(np.inf), dtype=F32)


def down(x):
    return np.nextafter(x, F32(-np.inf), dtype=F32)


def ties(a):
    """47 values of absmax a: a, then a*m rounded for the 15 midpoints m, and an ulp above and below each."""
    am = (F32(a) * NF4_MIDPOINTS).astype(F32)
    return np.concatenate([[F32(a)], am, up(am), down(am)]).astype(F32)


def edge_row(a):
    """64 values of absmax a: ties(a), a times the 16 levels, -a and 0. With a = 1 the scaled values are the values,
    so each tie and near-tie is decided by the rule itself; with a = 3, x * (1/3) and x / 3 differ on some."""
    row = np.concatenate([ties(a), (F32(a) * NF4_LEVELS).astype(F32), [F32(-a), F32(0)]]).astype(F32)
    assert row.size == 64
    return row


def codes_by(x, a, divide):
    s = (x / F32(a)).astype(F32) if divide else (x * (F32(1) / F32(a))).astype(F32)
    return np.searchsorted(NF4_MIDPOINTS, s, side="left")


def cases():
    rng = np.random.default_rng(20240613)
    out = []

    # Gaussian 13 x 37 = 481 = 7 blocks + a short block of 33 (odd: a padding nibble); block 2 all zeros.
    w = rng.standard_normal((13, 37)).astype(F32) * F32(0.02)
    w.reshape(-1)[128:192] = 0
    out.append(("gauss_13x37", w))

    # One block per row (cols = 64).
    m = NF4_MIDPOINTS
    e3 = edge_row(3)  # the full-block rule multiplies by the reciprocal: the fixture must tell it from a division
    assert (codes_by(e3, 3, False) != codes_by(e3, 3, True)).any()
    rows = [edge_row(1),
            e3,
            np.concatenate([[F32(-2.5)], rng.uniform(-2.5, 2.5, 63).astype(F32)]),  # absmax from a negative value
            (np.arange(64, dtype=F32) - F32(20)) * F32(1e-42),  # all denormal, absmax < 1e-38: clamped scale
            np.concatenate([[F32(1.1e-38)], rng.uniform(-1.1e-38, 1.1e-38, 63).astype(F32)]),  # denormal absmax > 1e-38
            np.zeros(64, dtype=F32),  # an all-zero full block
            np.concatenate([[F32(0.75)], F32(0.75) * m, rng.standard_normal(48).astype(F32) * F32(1e-40)]),
            ]
    out.append(("edges_7x64", np.stack(rows).astype(F32)))

    # 3 x 30 = 90: one full block, then a short block of 26 zeros (its absmax is stored clamped to 1e-38).
    w = rng.standard_normal((3, 30)).astype(F32)
    w.reshape(-1)[64:] = 0
    out.append(("shortzero_3x30", w))

    # A short block (46 values) of absmax 3: the short-block rule divides, and here that differs from x * (1/3).
    t3 = ties(3)[:46]
    assert (codes_by(t3, 3, False) != codes_by(t3, 3, True)).any()
    out.append(("shortties_1x46", t3.reshape(1, 46)))

    # A single element: a short block of 1 (code 0 for a negative value: it is -absmax), padded.
    out.append(("single_1x1", np.array([[-0.3]], dtype=F32)))

    # INT8 edges: absmax 127 makes the scale exactly 1, so x.5 values are exact ties; a zero row; a denormal row
    # (127 / absmax overflows to inf: nonzero values saturate); a row whose largest magnitude is negative.
    w = np.zeros((4, 9), dtype=F32)
    w[0] = [127, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5, -2.5, -125.5]
    w[2] = [1e-40, -3e-41, 0, 7e-45, -1e-40, 2e-42, 0, 5e-41, -1.4e-45]
    w[3] = [-3.0, 1.0, 2.0, -1.5, 0.25, 2.9, -2.99, 0.0, 1e-3]
    out.append(("int8edges_4x9", w))

    # Odd shape with a wide dynamic range across rows.
    w = rng.standard_normal((5, 77)).astype(F32) * np.exp2(rng.integers(-20, 8, (5, 1))).astype(F32)
    out.append(("scaledrows_5x77", w))
    return out


def save(name, suffix, a):
    a.tofile(os.path.join(HERE, "quant_ref_%s_%s" % (name, suffix)))


def main():
    lines = []
    for name, w in cases():
        assert w.dtype == F32 and w.ndim == 2
        rows, cols = w.shape
        packed, absmax = nf4_quantize(w)
        deq = nf4_dequantize(packed, absmax, w.shape)
        q8, am8 = int8_quantize(w)
        deq8 = int8_dequantize(q8, am8)
        save(name, "W.f32", w.astype("<f4"))
        save(name, "nf4_codes.u8", packed)
        save(name, "nf4_absmax.f32", absmax.astype("<f4"))
        save(name, "nf4_deq.f32", deq.astype("<f4"))
        save(name, "int8_codes.i8", q8)
        save(name, "int8_absmax.f32", am8.astype("<f4"))
        save(name, "int8_deq.f32", deq8.astype("<f4"))
        lines.append("%s %d %d" % (name, rows, cols))
        print(name, rows, cols, "nf4 code histogram", np.bincount(np.concatenate([packed >> 4, packed & 15]),
                                                                minlength=16).tolist())
    with open(os.path.join(HERE, "quant_ref_cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
