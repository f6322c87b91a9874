"""Stochastic Lanczos quadrature (SLQ) for the spectral density (Ghorbani, Krishnan and Xiao 2019).

The spectral density of a symmetric A (dim P, eigenvalues lambda_j), smoothed by a Gaussian of
variance s^2, is

    phi(t) = (1/P) sum_j N(t; lambda_j, s^2),    N(t; mu, s^2) = exp(-(t - mu)^2 / (2 s^2)) / sqrt(2 pi s^2).

For a probe v with E[v v^T] = I / P (here a Rademacher vector over sqrt(P)), v^T f(A) v is an
unbiased estimate of (1/P) tr f(A), and m Lanczos steps from v give its Gauss quadrature
``sum_i w_i f(theta_i)``: nodes theta_i the eigenvalues of T, weights ``w_i = s_i[0]^2`` the
squared first components of its eigenvectors (exact for polynomials f of degree < 2m). So

    phi(t) ~ (1/S) sum_s sum_i w_si N(t; theta_si, s^2)         (S probes),

each probe's weights summing to 1, so phi integrates to 1. As in Ghorbani et al.'s reference
code, the variance is ``s^2 = sigma_squared * max(1, width)`` with ``width`` the span of the
grid, which by default runs from the smallest node - 0.01 to the largest + 0.01;
``sigma_squared`` defaults to 1e-5 (they suggest trying 1e-5 to 1e-1).
"""

from typing import NamedTuple

import numpy as np

from .lanczos import lanczos, ritz


class Quadrature(NamedTuple):
    """Nodes and weights, shape (S, m): one row per probe."""

    nodes: np.ndarray
    weights: np.ndarray


def slq_quadrature(matvec, dim, num_probes, num_steps, rng, dtype=np.float64, progress=None):
    """Gauss quadrature nodes and weights from ``num_probes`` Rademacher probes drawn from ``rng``.

    A probe whose Krylov space closes early has fewer nodes; its row is padded with weight 0.
    ``progress(done, num_probes)`` is called after each probe.
    """
    m = min(num_steps, dim)
    nodes, weights = np.zeros((num_probes, m)), np.zeros((num_probes, m))
    for s in range(num_probes):
        start = rng.choice(np.array([-1.0, 1.0]), size=dim)
        theta, S = ritz(lanczos(matvec, dim, m, start=start, dtype=dtype))
        nodes[s, :len(theta)], weights[s, :len(theta)] = theta, S[0] ** 2
        nodes[s, len(theta):] = theta[-1]
        if progress is not None:
            progress(s + 1, num_probes)
    return Quadrature(nodes, weights)


def default_grid(quadrature, num_points=1000, expand=1e-2):
    """``num_points`` points from min(nodes) - expand to max(nodes) + expand."""
    return np.linspace(quadrature.nodes.min() - expand, quadrature.nodes.max() + expand, num_points)


def kernel_variance(grid, sigma_squared=1e-5):
    """``s^2 = sigma_squared * max(1, grid[-1] - grid[0])``."""
    return sigma_squared * max(1.0, float(grid[-1] - grid[0]))


def gaussian_density(points, weights, grid, variance):
    """``(1/S) sum_s sum_i weights[s, i] N(grid; points[s, i], variance)`` for (S, m) arrays."""
    points, weights = np.atleast_2d(points), np.atleast_2d(weights)
    d = grid[:, None, None] - points[None]
    kernel = np.exp(-d * d / (2 * variance)) / np.sqrt(2 * np.pi * variance)
    return (kernel * weights[None]).sum(axis=2).mean(axis=1)


def slq_density(quadrature, grid=None, sigma_squared=1e-5):
    """``(grid, phi(grid), s^2)``, the smoothed density estimate from the quadrature."""
    grid = default_grid(quadrature) if grid is None else np.asarray(grid, dtype=np.float64)
    variance = kernel_variance(grid, sigma_squared)
    return grid, gaussian_density(quadrature.nodes, quadrature.weights, grid, variance), variance


def quadrature_estimates(quadrature, dim):
    """Estimates from the quadrature of f(lambda) = lambda and |lambda|:

        trace          ~ P (1/S) sum_s sum_i w_si theta_si                      (exact per probe)
        negative_mass  ~ sum_si w_si |theta_si| [theta_si < 0] / sum_si w_si |theta_si|
    """
    nodes, weights = quadrature
    magnitude = weights * np.abs(nodes)
    total = float(magnitude.sum())
    return {"trace_estimate": float(dim * np.sum(weights * nodes) / len(nodes)),
            "negative_mass_estimate": float(magnitude[nodes < 0].sum() / total) if total > 0 else 0.0}


def exact_density(eigenvalues, grid, variance):
    """The smoothed density ``(1/P) sum_j N(grid; lambda_j, variance)`` of known eigenvalues."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    return gaussian_density(eigenvalues[None], np.full((1, eigenvalues.size), 1 / eigenvalues.size), grid, variance)
