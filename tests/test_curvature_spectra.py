"""Spectra: Lanczos against exact eigenvalues, Hutchinson and SLQ against exact traces and
densities within stated statistical tolerances, and the derived scalars on known spectra."""

import numpy as np
import pytest

from refplastic.curvature import CurvatureBatch, ggn, hessian
from refplastic.curvature.hutchinson import hutchinson_trace
from refplastic.curvature.lanczos import lanczos, lanczos_extremes, ritz
from refplastic.curvature.scalars import eigenvalues, spectrum_scalars
from refplastic.curvature.slq import (exact_density, kernel_variance, quadrature_estimates, slq_density,
                                      slq_quadrature)
from refplastic.nn import Linear, Network, Tanh, make_loss


@pytest.fixture(scope="module")
def small():
    """A tanh MLP (P = 99) on a cross-entropy batch: its CurvatureBatch, exact H and exact G."""
    rng = np.random.default_rng(0)
    net = Network([Linear(5, 6), Tanh(), Linear(6, 6), Tanh(), Linear(6, 3)], rng)
    net.flat[...] += rng.normal(scale=0.5, size=net.num_parameters)
    x, t = rng.normal(size=(20, 5)), rng.integers(0, 3, size=20)
    loss = make_loss("cross_entropy")
    return CurvatureBatch(net, loss, x, t), hessian(net, loss, x, t), ggn(net, loss, x, t)


def test_lanczos_with_dim_steps_is_exact_and_orthonormal():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(30, 30))
    A = A + A.T
    t = lanczos(lambda V: V @ A, 30, 30, rng)
    np.testing.assert_allclose(t.Q @ t.Q.T, np.eye(30), atol=1e-13)
    np.testing.assert_allclose(t.Q @ A @ t.Q.T, t.matrix(), atol=1e-12)
    np.testing.assert_allclose(ritz(t)[0], np.linalg.eigvalsh(A), atol=1e-12)


def test_lanczos_keeps_orthogonality_without_ghost_eigenvalues():
    """Many steps past convergence of isolated eigenvalues: plain Lanczos would repeat them."""
    A = np.diag(np.r_[np.linspace(0, 1, 390), np.arange(5.0, 15.0)])
    for dtype, tol in ((np.float64, 1e-13), (np.float32, 1e-5)):
        t = lanczos(lambda V: V @ A.astype(dtype), 400, 120, np.random.default_rng(0), dtype=dtype)
        assert np.abs(t.Q @ t.Q.T - np.eye(120)).max() < tol
        np.testing.assert_allclose(ritz(t)[0][-11:], np.r_[1.0, np.arange(5.0, 15.0)], atol=1e3 * tol)


def test_lanczos_stops_on_an_invariant_subspace():
    A = np.diag(np.repeat([1.0, 2.0, 3.0], 10))  # three distinct eigenvalues: Krylov space of dim 3
    t = lanczos(lambda V: V @ A, 30, 30, np.random.default_rng(2))
    assert len(t.alpha) == 3
    np.testing.assert_allclose(ritz(t)[0], [1, 2, 3], atol=1e-13)


def test_lanczos_float32_does_not_stop_on_a_small_real_beta():
    """A float32 operator of 200,000 dimensions with one outlier eigenvalue (1000, the rest in
    [0, 1]): every beta after the first steps is about 0.3, 0.03% of |T|, real and far above
    float32 rounding. The worst-case rounding bound dim * eps * |T| (2.4% of |T|) took it for zero
    and stopped after three steps; sqrt(dim) * eps * |T| does not."""
    rng = np.random.default_rng(0)
    d = np.r_[1000.0, rng.uniform(0, 1, 199_999)].astype(np.float32)
    t = lanczos(lambda V: V * d, d.size, 30, np.random.default_rng(1), dtype=np.float32)
    assert len(t.alpha) == 30
    top = ritz(t)[0][-2:]
    assert top[1] == pytest.approx(1000, rel=1e-5) and 0.95 < top[0] <= 1.0 + 1e-4


@pytest.mark.parametrize("which", ["hessian", "ggn"])
def test_lanczos_extremes_match_exact_eigenvalues(small, which):
    batch, H, G = small
    matvec, exact = (batch.hvp, eigenvalues(H)) if which == "hessian" else (batch.ggn_vp, eigenvalues(G))
    k = 4
    result = lanczos_extremes(matvec, batch.num_parameters, k, np.random.default_rng(3), num_steps=70)
    scale = np.abs(exact).max()
    assert np.all(np.diff(result.ritz_values) >= 0)
    # every Ritz value lies within its residual of an eigenvalue (symmetric A)
    gaps = np.abs(result.ritz_values[:, None] - exact[None]).min(axis=1)
    assert np.all(gaps <= result.residuals + 1e-12 * scale)
    np.testing.assert_allclose(result.top, exact[-k:], rtol=0, atol=1e-8 * scale)
    if which == "hessian":  # G is singular: its bottom eigenvalues are a cluster at 0
        np.testing.assert_allclose(result.bottom, exact[:k], rtol=0, atol=1e-8 * scale)
    again = lanczos_extremes(matvec, batch.num_parameters, k, np.random.default_rng(3), num_steps=70)
    np.testing.assert_array_equal(again.ritz_values, result.ritz_values)


def test_hutchinson_within_four_standard_deviations(small):
    batch, H, _ = small
    S = 200
    estimate, error = hutchinson_trace(batch.hvp, batch.num_parameters, S, np.random.default_rng(4))
    # Rademacher probes: Var[z^T H z] = 2 (|H|_F^2 - sum_i H_ii^2)
    sd = np.sqrt(2 * (np.sum(H * H) - np.sum(np.diag(H) ** 2)) / S)
    assert abs(estimate - np.trace(H)) <= 4 * sd
    assert 0.5 * sd < error < 2 * sd
    assert hutchinson_trace(batch.hvp, batch.num_parameters, S, np.random.default_rng(4))[0] == estimate


def test_slq_quadrature_is_exact_for_each_probe(small):
    """With m = P steps, sum_i w_i f(theta_i) = v^T f(H) v for the probe v = z / sqrt(P)."""
    batch, H, _ = small
    P = batch.num_parameters
    rng = np.random.default_rng(5)
    quad = slq_quadrature(batch.hvp, P, 1, P, rng)
    z = np.random.default_rng(5).choice(np.array([-1.0, 1.0]), size=P)
    lam, U = np.linalg.eigh(H)
    for f in (lambda a: a, lambda a: a ** 3, lambda a: np.exp(-a * a)):
        np.testing.assert_allclose(np.sum(quad.weights[0] * f(quad.nodes[0])),
                                   (z @ U) ** 2 @ f(lam) / P, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(quad.weights.sum(), 1, rtol=1e-12)
    estimates = quadrature_estimates(quad, P)
    np.testing.assert_allclose(estimates["trace_estimate"], z @ H @ z, rtol=1e-10)
    b = (z @ U) ** 2
    np.testing.assert_allclose(estimates["negative_mass_estimate"], b @ (np.abs(lam) * (lam < 0)) / (b @ np.abs(lam)),
                               rtol=1e-8)


def test_slq_density_against_exact_density(small):
    """Pointwise within 5 standard deviations of the probe average (plus 2% of the peak for the
    quadrature error of m = 40 < P steps); the smoothing is wide enough for 40 nodes."""
    batch, H, _ = small
    P, S = batch.num_parameters, 30
    quad = slq_quadrature(batch.hvp, P, S, 40, np.random.default_rng(6))
    lam, U = np.linalg.eigh(H)
    grid = np.linspace(lam[0] - 0.1, lam[-1] + 0.1, 200)
    sigma_squared = (0.03 * (lam[-1] - lam[0])) ** 2 / max(1, grid[-1] - grid[0])
    grid, density, variance = slq_density(quad, grid, sigma_squared)
    assert variance == kernel_variance(grid, sigma_squared)
    exact = exact_density(lam, grid, variance)
    # Var of z^T B z / P for Rademacher z and B = g_t(H) = U diag(N(t; lam, s^2)) U^T
    kernel = np.exp(-(grid[:, None] - lam[None]) ** 2 / (2 * variance)) / np.sqrt(2 * np.pi * variance)
    B = np.einsum("ij,tj,kj->tik", U, kernel, U)
    var = 2 * (np.sum(B * B, axis=(1, 2)) - np.sum(np.diagonal(B, axis1=1, axis2=2) ** 2, axis=1)) / P ** 2
    assert np.all(np.abs(density - exact) <= 5 * np.sqrt(var / S) + 0.02 * exact.max())
    dx = grid[1] - grid[0]
    assert abs(np.sum(density) * dx - np.sum(exact) * dx) < 0.01


def test_spectrum_scalars_on_a_known_spectrum():
    lam = np.array([-1.0, 0.0, 1e-20, 0.5, 2.0, 4.0])
    s = spectrum_scalars(lam)
    assert s["largest_eigenvalue"] == 4.0
    assert s["trace"] == pytest.approx(5.5)
    assert s["negative_mass"] == pytest.approx(1 / 7.5)
    assert s["numerical_rank"] == 4
    p = np.array([1, 1e-20, 0.5, 2, 4]) / 7.5
    assert s["effective_rank"] == pytest.approx(np.exp(-np.sum(p * np.log(p))))
    assert s["condition_number"] == pytest.approx(8.0)
    assert s["rank_tolerance"] == 6 * np.finfo(np.float64).eps
    flat = spectrum_scalars(np.ones(5))
    assert flat["effective_rank"] == pytest.approx(5) and flat["numerical_rank"] == 5 and flat["negative_mass"] == 0
    zero = spectrum_scalars(np.zeros(3))
    assert zero["effective_rank"] == 0 and zero["numerical_rank"] == 0 and np.isnan(zero["condition_number"])
    assert spectrum_scalars(lam, tol=0.2)["numerical_rank"] == 3
