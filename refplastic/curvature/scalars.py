"""Scalars of a spectrum: the summaries of H and G used to track loss of plasticity.

For the eigenvalues lambda_1..lambda_P of a symmetric matrix (exact, :func:`eigenvalues`), with
``a = max_i |lambda_i|`` and the rank threshold ``tol * a``:

    largest_eigenvalue   max_i lambda_i
    trace                sum_i lambda_i
    negative_mass        sum_{lambda_i < 0} |lambda_i| / sum_i |lambda_i|            (0 if all are 0)
    numerical_rank       #{i : |lambda_i| > tol a}
    effective_rank       exp(-sum_i p_i log p_i),  p_i = |lambda_i| / sum_j |lambda_j|
                         (Roy and Vetterli 2007, on the singular values |lambda_i|; 0 log 0 = 0)
    condition_number     max_i lambda_i / min{lambda_i : lambda_i > tol a}, on the positive part
                         (nan if no eigenvalue is above the threshold)

``tol`` defaults to ``P * eps`` of the dtype, numpy's ``matrix_rank`` convention.
"""

import numpy as np

from ..overflow import finite


def eigenvalues(matrix):
    """All eigenvalues of a symmetric matrix, ascending (LAPACK ``syevd`` through numpy);
    :class:`~refplastic.overflow.NotFinite` if the matrix is not finite."""
    return np.linalg.eigvalsh(finite(matrix, "the matrix"))


def default_tolerance(size, dtype=np.float64):
    """``size * eps(dtype)``: the relative threshold below which an eigenvalue counts as zero."""
    return size * float(np.finfo(dtype).eps)


def spectrum_scalars(eigenvalues, tol=None):
    """The scalars above as a dict (and ``rank_tolerance``, the ``tol`` used)."""
    lam = np.asarray(eigenvalues)
    tol = default_tolerance(lam.size, lam.dtype) if tol is None else float(tol)
    lam = lam.astype(np.float64)
    magnitude = np.abs(lam)
    total = float(magnitude.sum())
    threshold = tol * float(magnitude.max(initial=0.0))
    p = magnitude[magnitude > 0] / total if total > 0 else np.zeros(0)
    positive = lam[lam > threshold]
    return {
        "largest_eigenvalue": float(lam.max()),
        "trace": float(lam.sum()),
        "negative_mass": float(magnitude[lam < 0].sum() / total) if total > 0 else 0.0,
        "numerical_rank": int(np.count_nonzero(magnitude > threshold)),
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))) if total > 0 else 0.0,
        "condition_number": float(positive.max() / positive.min()) if positive.size else float("nan"),
        "rank_tolerance": tol,
    }
