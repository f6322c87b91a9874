"""The rank family: how many directions a matrix really uses, each under its own name.

Every function takes the singular values ``s`` of a matrix A (any order, all >= 0; A is a
feature matrix Phi of N examples by d features, or a weight matrix) and returns one number.
With ``s_1 >= s_2 >= ... >= s_r`` (r = min of A's shape):

    effective_rank       exp(-sum_k p_k log p_k),  p_k = s_k / sum_j s_j,  0 log 0 = 0
                         (Roy and Vetterli 2007; Dohare et al. 2024)
    srank(delta)         min{k : sum_{i<=k} s_i / sum_i s_i >= 1 - delta},  delta = 0.01
                         (Kumar et al. 2021; Dohare et al.'s "abs approximate rank")
    approximate_rank     min{k : sum_{i<=k} s_i^2 / sum_i s_i^2 >= threshold},  threshold = 0.99
                         (Yang et al. 2019, used by Dohare et al. 2024)
    feature_rank(eps)    #{k : s_k / sqrt(N) > eps},  eps = 0.01: the singular values of
                         Phi / sqrt(N) above eps (Lyle et al. 2022)
    stable_rank          sum_k s_k^2 / s_1^2 = ||A||_F^2 / ||A||_2^2
    numerical_rank       #{k : s_k > rtol s_1},  rtol = max(A.shape) * eps(dtype) by default
                         (numpy.linalg.matrix_rank's tolerance)

A zero matrix has every rank 0. Sums run in float64 whatever the dtype of ``s``.
"""

import numpy as np

from ..overflow import finite


def singular_values(matrix):
    """Singular values of a 2-D array, descending (LAPACK ``gesdd`` through numpy, no vectors);
    :class:`~refplastic.overflow.NotFinite` if the matrix is not finite."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {matrix.shape}")
    if matrix.size == 0:
        return np.zeros(0, matrix.dtype)
    return np.linalg.svd(finite(matrix, "the matrix"), compute_uv=False)


def _descending(s):
    return np.sort(np.asarray(s, dtype=np.float64))[::-1]


def effective_rank(s):
    """``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum_j s_j`` (Roy and Vetterli 2007)."""
    s = np.asarray(s, dtype=np.float64)
    total = s.sum()
    if total == 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def _smallest_prefix_reaching(values, fraction):
    """``min{k : sum_{i<=k} values_i >= fraction * sum values}`` for values sorted descending."""
    total = values.sum()
    if total == 0:
        return 0
    k = int(np.searchsorted(np.cumsum(values), fraction * total, side="left")) + 1
    return min(k, values.size)  # rounding in the cumulative sum cannot push k past the end


def srank(s, delta=0.01):
    """``min{k : sum_{i<=k} s_i / sum_i s_i >= 1 - delta}`` (Kumar et al. 2021, delta = 0.01), 0 <= delta < 1."""
    if not 0 <= delta < 1:
        raise ValueError(f"srank: delta must lie in [0, 1), got {delta}")
    return _smallest_prefix_reaching(_descending(s), 1.0 - delta)


def approximate_rank(s, threshold=0.99):
    """``min{k : sum_{i<=k} s_i^2 / sum_i s_i^2 >= threshold}`` (Yang et al. 2019; Dohare et al. 2024),
    0 < threshold <= 1."""
    if not 0 < threshold <= 1:
        raise ValueError(f"approximate_rank: threshold must lie in (0, 1], got {threshold}")
    return _smallest_prefix_reaching(_descending(s) ** 2, threshold)


def feature_rank(s, num_rows, eps=0.01):
    """``#{k : s_k / sqrt(num_rows) > eps}``: singular values of ``Phi / sqrt(N)`` above eps (Lyle et al. 2022)."""
    s = np.asarray(s, dtype=np.float64)
    return int(np.count_nonzero(s / np.sqrt(num_rows) > eps))


def stable_rank(s):
    """``sum_k s_k^2 / max_k s_k^2 = ||A||_F^2 / ||A||_2^2``."""
    s = np.asarray(s, dtype=np.float64)
    top = s.max(initial=0.0)
    return float(np.sum((s / top) ** 2)) if top > 0 else 0.0


def default_rtol(shape, dtype):
    """``max(shape) * eps(dtype)``: numpy.linalg.matrix_rank's relative tolerance."""
    return max(shape) * float(np.finfo(dtype).eps)


def numerical_rank(s, rtol):
    """``#{k : s_k > rtol * max_j s_j}``."""
    s = np.asarray(s, dtype=np.float64)
    return int(np.count_nonzero(s > rtol * s.max(initial=0.0)))


def largest_singular_value(s):
    """``max_k s_k = ||A||_2``, the spectral norm (0 for an empty matrix)."""
    return float(np.max(np.asarray(s, dtype=np.float64), initial=0.0))
