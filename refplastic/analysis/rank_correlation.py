"""Spearman's rank correlation and its percentile bootstrap interval.

**Average ranks** (ties share the mean of the positions they occupy): with the n values sorted,
a group of equal values at 0-based sorted positions i..j gets the rank ``(i + j) / 2 + 1`` each,
so ranks run from 1 to n and always sum to n (n + 1) / 2 (scipy.stats.rankdata, method "average").

**Spearman's rho** (Spearman 1904) is the Pearson correlation of the average ranks r, s::

    rho = sum_i (r_i - mean r)(s_i - mean s) / sqrt(sum_i (r_i - mean r)^2 sum_i (s_i - mean s)^2)

which, with ties, is what scipy.stats.spearmanr computes (the 1 - 6 sum d^2 / (n (n^2 - 1)) form
holds only without ties). It is undefined (NaN) when either side is constant. Pairs holding a NaN
are dropped first, and the count of dropped pairs is returned.

**Percentile bootstrap interval** (Efron and Tibshirani 1993, "An Introduction to the Bootstrap",
ch. 13): draw B resamples of the n pairs with replacement, as one call
``rng.integers(0, n, size=(B, n))`` of a ``numpy.random.Generator``; rho*_b is the rho of
resample b; the interval at level 1 - alpha is the alpha/2 and 1 - alpha/2 quantiles of the
rho*_b (``numpy.quantile``, linear interpolation, as scipy.stats.bootstrap's ``method="percentile"``).
A resample whose one side is constant has no rho; it is left out of the quantiles and the
number kept is returned. Memory: a few (B, n) float64 arrays.
"""

from typing import NamedTuple

import numpy as np


def average_ranks(values):
    """The average ranks (1..n, ties averaged) of ``values`` along the last axis; any leading
    axes are independent rows (a (B, n) array gives B rankings at once)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    order = np.argsort(values, axis=-1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=-1)
    position = np.broadcast_to(np.arange(n), values.shape)
    starts = np.ones(values.shape, dtype=bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = np.ones(values.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, position, n - 1), axis=-1), axis=-1), axis=-1)
    ranks = np.empty(values.shape)
    np.put_along_axis(ranks, order, (first + last) / 2 + 1, axis=-1)
    return ranks


def rank_pearson(r, s):
    """The Pearson correlation of rankings ``r`` and ``s`` along the last axis (NaN where either
    is constant, i.e. all its ranks are equal)."""
    dr = r - r.mean(axis=-1, keepdims=True)
    ds = s - s.mean(axis=-1, keepdims=True)
    constant = (np.ptp(r, axis=-1) == 0) | (np.ptp(s, axis=-1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (dr * ds).sum(axis=-1) / np.sqrt((dr * dr).sum(axis=-1) * (ds * ds).sum(axis=-1))
    return np.where(constant, np.nan, np.clip(rho, -1.0, 1.0))


class Spearman(NamedTuple):
    """``rho`` of the ``n`` pairs kept; ``dropped`` pairs held a NaN."""

    rho: float
    n: int
    dropped: int


def finite_pairs(x, y):
    """``(x, y)`` as float64 arrays without the pairs where either is NaN, and how many were dropped."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two 1-d arrays of one length, got shapes {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep], int((~keep).sum())


def spearman(x, y):
    """Spearman's rho of the pairs (x_i, y_i) without NaN (NaN with fewer than 2 pairs)."""
    x, y, dropped = finite_pairs(x, y)
    if len(x) < 2:
        return Spearman(float("nan"), len(x), dropped)
    return Spearman(float(rank_pearson(average_ranks(x), average_ranks(y))), len(x), dropped)


class Interval(NamedTuple):
    """A percentile bootstrap interval; ``kept`` resamples had a rho (the others a constant side)."""

    low: float
    high: float
    kept: int


def bootstrap_interval(x, y, resamples, rng, level=0.95):
    """The percentile bootstrap interval of Spearman's rho at ``level`` from ``resamples``
    resamples of the pairs without NaN, drawn from the Generator ``rng`` (module docstring).
    NaN bounds when no resample has a rho (fewer than 2 pairs, or a constant side)."""
    x, y, _ = finite_pairs(x, y)
    n = len(x)
    if n < 2:
        return Interval(float("nan"), float("nan"), 0)
    index = rng.integers(0, n, size=(resamples, n))
    rho = rank_pearson(average_ranks(x[index]), average_ranks(y[index]))
    rho = rho[~np.isnan(rho)]
    if not len(rho):
        return Interval(float("nan"), float("nan"), 0)
    alpha = 1.0 - level
    low, high = np.quantile(rho, [alpha / 2, 1 - alpha / 2])
    return Interval(float(low), float(high), len(rho))
