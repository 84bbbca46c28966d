"""SVD and adapter initialisation against numpy.linalg.svd; argument checks before C."""
import numpy as np
import pytest

import pissa


def _matrix(m, n, seed=0, decay=None):
    rng = np.random.default_rng(seed)
    if decay is None:
        return rng.standard_normal((m, n)).astype(np.float32)
    k = min(m, n)
    q1, _ = np.linalg.qr(rng.standard_normal((m, k)))
    q2, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return ((q1 * decay ** np.arange(k)) @ q2.T).astype(np.float32)


def test_svd_exact_matches_numpy_svd():
    W = _matrix(40, 24)
    U, S, Vt = pissa.svd_exact(W, 6)
    u, s, vt = np.linalg.svd(W.astype(np.float64), full_matrices=False)
    assert U.shape == (40, 6) and S.shape == (6,) and Vt.shape == (6, 24) and S.dtype == np.float32
    np.testing.assert_allclose(S, s[:6], rtol=1e-5)
    np.testing.assert_allclose((U * S) @ Vt, (u[:, :6] * s[:6]) @ vt[:6], atol=1e-4)
    np.testing.assert_allclose(U.T @ U, np.eye(6), atol=1e-5)


def test_svd_randomized_recovers_a_decaying_spectrum():
    W = _matrix(64, 48, seed=1, decay=0.6)
    s = np.linalg.svd(W.astype(np.float64), compute_uv=False)
    for oversample in (0, 8):
        U, S, Vt = pissa.svd_randomized(W, 5, oversample=oversample, niter=4, seed=3)
        np.testing.assert_allclose(S, s[:5], rtol=1e-4)
    U2, S2, _ = pissa.svd_randomized(W, 5, oversample=8, niter=4, seed=3)
    np.testing.assert_array_equal(S, S2)  # deterministic for a seed


def test_singular_values_match_numpy():
    W = _matrix(17, 29, seed=2)
    np.testing.assert_allclose(pissa.singular_values(W), np.linalg.svd(W.astype(np.float64), compute_uv=False),
                               rtol=1e-5)


def test_pissa_init_factors_come_from_numpy_svd_and_rebuild_W():
    W = _matrix(32, 20, seed=4)
    r, alpha = 4, 8.0
    s = alpha / r
    A, B, R = pissa.adapter_init(W, "pissa", r, alpha)
    u, sv, vt = np.linalg.svd(W.astype(np.float64), full_matrices=False)
    sr = np.sqrt(sv[:r] / s)
    # A = diag(sqrt(S_r / s)) Vt_r and B = U_r diag(sqrt(S_r / s)), up to the sign of each singular pair. A float32
    # SVD gets singular vector k to about eps32·|W|/gap_k (gap_k: distance to the nearest other singular value).
    gaps = np.array([min(abs(sv[k] - sv[j]) for j in range(len(sv)) if j != k) for k in range(r)])
    tol = 4 * np.finfo(np.float32).eps * sv[0] / gaps * sr  # per pair, in units of its entries
    assert (np.abs(np.abs(A) - np.abs(sr[:, None] * vt[:r])) < tol[:, None]).all()
    assert (np.abs(np.abs(B) - np.abs(u[:, :r] * sr)) < tol[None, :]).all()
    gap_r = sv[r - 1] - sv[r]  # the rank-r product depends only on the gap at r
    np.testing.assert_allclose(s * B @ A, (u[:, :r] * sv[:r]) @ vt[:r], atol=4 * np.finfo(np.float32).eps * sv[0] ** 2 / gap_r)
    np.testing.assert_allclose(R + s * B @ A, W, atol=2e-6)
    assert np.array_equal(W, _matrix(32, 20, seed=4))  # W untouched


def test_pissa_niter_residual_plus_adapter_is_W():
    W = _matrix(48, 32, seed=5, decay=0.8)
    A, B, R = pissa.adapter_init(W, "pissa_niter_2", 6, 6, oversample=0, seed=1)
    np.testing.assert_allclose(R + B @ A, W, atol=2e-6)


def test_lora_init_has_zero_B_uniform_A_and_untouched_W():
    W = _matrix(16, 25, seed=6)
    A, B, R = pissa.adapter_init(W, "lora", 3, 3, seed=9)
    assert not B.any() and np.array_equal(R, W)
    assert np.abs(A).max() <= 1 / np.sqrt(25) and A.std() > 0.05


def test_rslora_scale():
    assert pissa.lora_scale(16, 4) == 4.0
    assert pissa.lora_scale(16, 4, rslora=True) == 8.0


def test_bad_arrays_are_refused_before_reaching_c():
    W = _matrix(10, 8)
    with pytest.raises(TypeError, match="float32"):
        pissa.svd_exact(W.astype(np.float64), 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        pissa.svd_exact(W[:, ::2], 2)
    with pytest.raises(ValueError, match="2-D"):
        pissa.svd_exact(W.reshape(2, 5, 8), 2)
    with pytest.raises(ValueError, match="ragged"):
        pissa.svd_exact([[1.0, 2.0], [3.0]], 1)
    with pytest.raises(TypeError):
        pissa.svd_exact("not a matrix", 1)
    with pytest.raises(ValueError, match="rank"):
        pissa.svd_exact(W, 9)
    with pytest.raises(ValueError, match="rank"):
        pissa.adapter_init(W, "pissa", 0)


def test_library_errors_raise_pissa_error_with_the_library_message():
    W = _matrix(10, 8)
    with pytest.raises(pissa.InvalidArgumentError) as e:
        pissa.adapter_init(W, "pissa", 9)  # the library checks r <= min(out, in) for PiSSA
    assert e.value.status == 1 and e.value.status_name == "PISSA_ERR_INVALID_ARG" and e.value.message
    with pytest.raises(pissa.Error, match="pissa_niter"):
        pissa.adapter_init(W, "pissa_niter_x", 2)


def test_peft_config_fields_by_their_peft_names():
    c = pissa.PeftConfig(r=16, lora_alpha=32, target_modules=["q_proj", "o_proj"], init_lora_weights="pissa_niter_4",
                         rank_pattern={"down_proj": 8})
    assert (c.r, c.lora_alpha, c.target_modules, c.init_lora_weights) == (16, 32, ["o_proj", "q_proj"],  # a set
                                                                          "pissa_niter_4")
    assert c.rank_pattern == {"down_proj": 8} and c.layers_to_transform is None
    c.target_modules = "all-linear"
    c.init_lora_weights = "true"
    back = pissa.PeftConfig.from_json(c.to_json())
    assert back.to_json() == c.to_json() and back.target_modules == "all-linear" and back.init_lora_weights == "true"
    d = c.copy()
    d.r = 4
    assert (c.r, d.r) == (16, 4)  # a copy, not a view
    with pytest.raises(pissa.Error, match="lora_dropout"):
        c.lora_dropout = "a lot"
    with pytest.raises(AttributeError):
        _ = c.no_such_field
    assert c.r == 16  # a refused set changes nothing
