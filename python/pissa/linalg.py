"""Truncated SVD (exact and randomized) and LoRA/PiSSA adapter initialisation of one weight matrix."""
import ctypes

from . import _core
from ._lib import check, lib


def _matrix(W):
    b = _core.as_input(W, "W", "f", (2,))
    m, n = b.shape
    return b, m, n


def _rank(rank, limit=None):
    if not isinstance(rank, int) or isinstance(rank, bool):
        raise TypeError(f"rank: expected an int, got {type(rank).__name__}")
    if rank < 1 or (limit is not None and rank > limit):
        raise ValueError(f"rank {rank}: must lie in [1, {limit if limit is not None else 'min(out, in)'}]")
    return rank


def svd_exact(W, rank):
    """Top RANK singular triplets of W (m, n) by LAPACK gesdd: (U (m, r), S (r), Vt (r, n)), S descending."""
    b, m, n = _matrix(W)
    _rank(rank, min(m, n))
    U, pu = _core.new_output((m, rank))
    S, ps = _core.new_output((rank,))
    Vt, pv = _core.new_output((rank, n))
    check(lib.pissa_svd_exact(b.ptr, m, n, rank, pu, ps, pv))
    return U, S, Vt


def _override(opts, **fields):
    """OPTS (a library defaults struct) with the fields given a value other than None set."""
    for name, value in fields.items():
        if value is not None:
            setattr(opts, name, value)
    return opts


def svd_randomized(W, rank, *, oversample=None, niter=None, seed=None):
    """Randomized truncated SVD (Halko et al., QR after every product); defaults from pissa_rsvd_default_opts
    (oversample 8, niter 4, seed 0). oversample=0 is torch.svd_lowrank(W, q=rank, niter=niter)."""
    b, m, n = _matrix(W)
    _rank(rank, min(m, n))
    o = _override(lib.pissa_rsvd_default_opts(), oversample=oversample, niter=niter, seed=seed)
    U, pu = _core.new_output((m, rank))
    S, ps = _core.new_output((rank,))
    Vt, pv = _core.new_output((rank, n))
    check(lib.pissa_svd_randomized(b.ptr, m, n, rank, ctypes.byref(o), pu, ps, pv))
    return U, S, Vt


def singular_values(W):
    """All min(m, n) singular values of W, descending."""
    b, m, n = _matrix(W)
    S, ps = _core.new_output((min(m, n),))
    check(lib.pissa_singular_values(b.ptr, m, n, ps))
    return S


def init_opts(method="pissa", rank=8, alpha=None, *, rslora=False, niter=None, oversample=None, seed=None):
    """A pissa_init_opts from PEFT's init_lora_weights spelling ("pissa", "pissa_niter_4", "lora"/"true",
    "gaussian"); other fields from pissa_init_default_opts. alpha defaults to rank (scale 1)."""
    _rank(rank)
    o = lib.pissa_init_default_opts()
    if not isinstance(method, str):
        raise TypeError(f"method: expected a str such as 'pissa' or 'pissa_niter_4', got {type(method).__name__}")
    check(lib.pissa_init_parse(method.encode(), ctypes.byref(o)))
    o.rank = rank
    o.alpha = float(rank if alpha is None else alpha)
    o.use_rslora = 1 if rslora else 0
    return _override(o, niter=niter, oversample=oversample, seed=seed)


def lora_scale(alpha, rank, rslora=False):
    """s = alpha / rank, or alpha / sqrt(rank) with rsLoRA."""
    return lib.pissa_lora_scale(float(alpha), rank, 1 if rslora else 0)


def adapter_init(W, method="pissa", rank=8, alpha=None, *, rslora=False, niter=None, oversample=None, seed=None):
    """Initialises the adapter of a linear weight W (out, in) as PEFT does; returns (A (r, in), B (out, r), W_res)
    with W_res = W - s*B*A (s = alpha/rank, alpha defaulting to rank). W is not modified."""
    b, out, inn = _matrix(W)
    o = init_opts(method, rank, alpha, rslora=rslora, niter=niter, oversample=oversample, seed=seed)
    A, pa = _core.new_output((rank, inn))
    B, pb = _core.new_output((out, rank))
    R, pr = _core.new_output((out, inn))
    check(lib.pissa_adapter_init(b.ptr, out, inn, ctypes.byref(o), pa, pb, pr))
    return A, B, R
