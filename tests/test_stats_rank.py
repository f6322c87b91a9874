"""The rank family on matrices of known singular values, against the formulas as the source
repositories compute them (Dohare et al.'s loops, written here in torch), and against numpy's
matrix_rank and torch's norms."""

import numpy as np
import pytest
import torch

from refplastic.stats import rank

S = np.array([4.0, 2.0, 1.0, 0.5])


def known_matrix(s, rows, cols, dtype, seed=0):
    """``U diag(s) V^T`` with orthonormal U (rows x r), V (cols x r), r = len(s): singular values s."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(rows, len(s))))
    V, _ = np.linalg.qr(rng.normal(size=(cols, len(s))))
    return ((U * s) @ V.T).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ranks_of_known_singular_values(dtype):
    phi = known_matrix(S, 50, 8, dtype)
    s = rank.singular_values(phi)
    assert s.dtype == dtype and s.shape == (8,)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(s[:4], S, rtol=tol)
    p = S / S.sum()
    assert rank.effective_rank(s) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=tol)
    # cumulative shares of sum s: .533 .8 .933 1; of sum s^2: .753 .941 .988 1
    assert rank.srank(s) == 4 and rank.srank(s, delta=0.1) == 3 and rank.srank(s, delta=0.3) == 2
    assert rank.approximate_rank(s) == 4 and rank.approximate_rank(s, 0.95) == 3 and rank.approximate_rank(s, 0.9) == 2
    # s / sqrt(50) = .566 .283 .141 .0707
    assert rank.feature_rank(s, 50) == 4 and rank.feature_rank(s, 50, eps=0.1) == 3
    assert rank.feature_rank(s, 50, eps=0.2) == 2
    assert rank.stable_rank(s) == pytest.approx(21.25 / 16, rel=tol)
    assert rank.numerical_rank(s, rank.default_rtol(phi.shape, dtype)) == 4 == np.linalg.matrix_rank(phi)
    assert rank.largest_singular_value(s) == pytest.approx(4.0, rel=tol)


def test_thresholds_are_inclusive_at_exact_shares():
    s = np.array([3.0, 1.0])  # shares of sum s: 0.75, 1; of sum s^2: 0.9, 1
    assert rank.srank(s, delta=0.25) == 1
    assert rank.approximate_rank(s, threshold=0.9) == 1
    assert rank.srank(s, delta=0.0) == 2


@pytest.mark.parametrize("call, message", [
    (lambda s: rank.srank(s, delta=-0.5), "delta must lie in"),
    (lambda s: rank.srank(s, delta=1.0), "delta must lie in"),
    (lambda s: rank.approximate_rank(s, threshold=0.0), "threshold must lie in"),
    (lambda s: rank.approximate_rank(s, threshold=1.5), "threshold must lie in"),
])
def test_shares_outside_their_range_are_errors(call, message):
    """srank's 1 - delta and approximate_rank's threshold are shares of a sum: outside (0, 1] the
    formula has no answer (or the empty prefix), not the full rank or 1."""
    with pytest.raises(ValueError, match=message):
        call(np.array([4.0, 3.0, 2.0, 1.0]))


def test_zero_and_empty_matrices_have_rank_zero():
    for s in (np.zeros(5), np.zeros(0)):
        assert rank.effective_rank(s) == 0.0
        assert rank.srank(s) == rank.approximate_rank(s) == rank.feature_rank(s, 10) == 0
        assert rank.stable_rank(s) == 0.0 and rank.numerical_rank(s, 1e-10) == 0
        assert rank.largest_singular_value(s) == 0.0


# Dohare et al.'s definitions as their code computes them (loss-of-plasticity, lop/utils/miscellaneous.py)
def lop_effective_rank(sv):
    norm_sv = sv / torch.sum(torch.abs(sv))
    entropy = torch.tensor(0.0, dtype=sv.dtype)
    for p in norm_sv:
        if p > 0.0:
            entropy -= p * torch.log(p)
    return float(torch.exp(entropy))


def lop_approximate_rank(sv, prop=0.99, square=True):
    values = sv ** 2 if square else sv
    normed = torch.flip(torch.sort(values / torch.sum(values))[0], dims=(0,))
    cumulative, k = 0.0, 0
    while cumulative < prop:
        cumulative += normed[k]
        k += 1
    return k


@pytest.mark.parametrize("seed", range(4))
def test_against_the_loss_of_plasticity_code(seed):
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(40, 12)) @ rng.normal(size=(12, 30)) * rng.uniform(0, 1, 30)  # rank 12
    sv = torch.linalg.svdvals(torch.from_numpy(phi))
    s = rank.singular_values(phi)
    np.testing.assert_allclose(s, sv.numpy(), rtol=1e-12, atol=1e-12 * s[0])
    assert rank.effective_rank(s) == pytest.approx(lop_effective_rank(sv), rel=1e-12)
    assert rank.approximate_rank(s) == lop_approximate_rank(sv)
    assert rank.srank(s) == lop_approximate_rank(sv, square=False)  # Dohare et al.'s "abs approximate rank"
    fro = float(torch.linalg.matrix_norm(torch.from_numpy(phi), "fro"))
    two = float(torch.linalg.matrix_norm(torch.from_numpy(phi), 2))
    assert rank.stable_rank(s) == pytest.approx(fro ** 2 / two ** 2, rel=1e-12)
    assert rank.numerical_rank(s, rank.default_rtol(phi.shape, phi.dtype)) == np.linalg.matrix_rank(phi) == 12
    assert rank.feature_rank(s, 40) == int((sv / np.sqrt(40) > 0.01).sum())


def test_singular_values_needs_a_matrix():
    with pytest.raises(ValueError, match="2-D"):
        rank.singular_values(np.zeros(3))


def test_thresholds_are_compared_in_float64_on_float32_singular_values():
    """Each case lies between a threshold and its float32 rounding, where a comparison made in
    float32 gives the other answer (in brackets)."""
    f32 = np.float32
    s = np.array([1.0, 1.0], f32)  # half the sum (and of the sum of squares) in s_1
    assert rank.srank(s, delta=0.49999999) == 2  # [1]: 1 - float32(0.49999999) = 0.5
    assert rank.approximate_rank(s, threshold=0.50000001) == 2  # [1]: float32(0.50000001) = 0.5
    assert rank.feature_rank(np.array([1.0], f32), 1, eps=0.99999999) == 1  # [0]: float32(0.99999999) = 1
    # rtol s_1 = 3 2^-23 (1 + 2^-23) = 3 2^-23 + 1.5 2^-45 exactly, 3 2^-23 + 2^-44 = s_2 in float32
    s = np.array([1 + 2.0 ** -23, 3 * 2.0 ** -23 + 2.0 ** -44], f32)
    assert rank.numerical_rank(s, rank.default_rtol((3, 2), f32)) == 2  # [1]
