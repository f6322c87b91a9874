"""Average ranks, Spearman's rho and its percentile bootstrap interval against scipy (an oracle only)."""

import numpy as np
import pytest

stats = pytest.importorskip("scipy.stats")

from refplastic.analysis.rank_correlation import average_ranks, bootstrap_interval, spearman  # noqa: E402

RNG = np.random.default_rng(20230723)
TIED = RNG.integers(0, 5, size=40).astype(float)                     # many ties
TIED_Y = TIED + RNG.integers(0, 3, size=40)
CONTINUOUS = RNG.normal(size=30)
CONTINUOUS_Y = 0.5 * CONTINUOUS + RNG.normal(size=30)


@pytest.mark.parametrize("values", [TIED, CONTINUOUS, np.array([3.0, 3.0, 3.0]), np.array([2.0, 1.0]),
                                    np.array([1.0, 2.0, 2.0, 2.0, 0.5, 7.0, 7.0])])
def test_average_ranks_are_scipys(values):
    np.testing.assert_array_equal(average_ranks(values), stats.rankdata(values))


def test_average_ranks_of_rows_are_scipys():
    rows = RNG.integers(0, 4, size=(50, 9)).astype(float)
    np.testing.assert_array_equal(average_ranks(rows), stats.rankdata(rows, axis=-1))


@pytest.mark.parametrize("x,y", [(TIED, TIED_Y), (CONTINUOUS, CONTINUOUS_Y), (TIED, -TIED),
                                 (np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])),
                                 (np.array([0.0, 0.0, 1.0, 1.0]), np.array([5.0, 6.0, 6.0, 9.0]))])
def test_spearman_is_scipys_ties_included(x, y):
    result = spearman(x, y)
    assert result.rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-14)
    assert (result.n, result.dropped) == (len(x), 0)


def test_pairs_with_a_nan_are_dropped_and_counted():
    x, y = TIED.copy(), TIED_Y.copy()
    x[[3, 7]], y[[7, 11]] = np.nan, np.nan
    keep = np.ones(len(x), dtype=bool)
    keep[[3, 7, 11]] = False
    result = spearman(x, y)
    assert (result.n, result.dropped) == (len(x) - 3, 3)
    assert result.rho == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic, abs=1e-14)


def test_a_constant_side_or_too_few_pairs_is_nan():
    assert np.isnan(spearman(np.ones(6), np.arange(6.0)).rho)
    assert np.isnan(spearman(np.arange(6.0), np.full(6, 2.5)).rho)
    assert np.isnan(spearman([1.0], [2.0]).rho)
    assert np.isnan(spearman([1.0, np.nan, 3.0], [np.nan, 2.0, 3.0]).rho)
    interval = bootstrap_interval(np.ones(6), np.arange(6.0), 50, np.random.default_rng(0))
    assert np.isnan(interval.low) and np.isnan(interval.high) and interval.kept == 0


def test_the_interval_is_the_percentiles_of_the_resampled_rhos():
    """With the resamples the docstring names (one rng.integers(0, n, size=(B, n)) call), the
    bounds are the 2.5 and 97.5 percentiles of scipy's rho of each resample."""
    x, y, resamples = TIED, TIED_Y, 300
    index = np.random.default_rng(5).integers(0, len(x), size=(resamples, len(x)))
    rhos = np.array([stats.spearmanr(x[i], y[i]).statistic for i in index])
    expected = np.percentile(rhos[~np.isnan(rhos)], [2.5, 97.5])
    interval = bootstrap_interval(x, y, resamples, np.random.default_rng(5))
    np.testing.assert_allclose([interval.low, interval.high], expected, rtol=0, atol=1e-13)
    assert interval.kept == np.count_nonzero(~np.isnan(rhos))


def _ranked_pearson(a, b, axis):
    """Spearman's rho along ``axis`` from scipy's ranks (scipy.stats.bootstrap's vectorised statistic)."""
    ra, rb = stats.rankdata(a, axis=axis), stats.rankdata(b, axis=axis)
    ra, rb = ra - ra.mean(axis=axis, keepdims=True), rb - rb.mean(axis=axis, keepdims=True)
    return (ra * rb).sum(axis=axis) / np.sqrt((ra * ra).sum(axis=axis) * (rb * rb).sum(axis=axis))


@pytest.mark.parametrize("x,y", [(CONTINUOUS, CONTINUOUS_Y), (TIED, TIED_Y)])
def test_the_interval_agrees_with_scipys_percentile_bootstrap(x, y):
    """Both are Monte Carlo estimates of the same two quantiles from independent resamples, so they
    differ by sampling error only. A sample p-quantile of B draws has standard error about
    sqrt(p (1 - p) / B) / f(q_p) (f the density of rho* at the quantile, estimated from scipy's
    bootstrap distribution as 2h / (q_{p+h} - q_{p-h})); the difference of two independent
    estimates, sqrt(2) times that. At B = 100,000 that is 0.0003 to 0.003 here; the tolerance is 5
    of them (0.001 to 0.013), so agreement is not luck, and another estimator fails it: unpaired
    resampling (an interval around 0) by far, the BCa interval's lower bound of the first data set
    (0.02 away) too."""
    resamples, level = 100_000, 0.95
    ours = bootstrap_interval(x, y, resamples, np.random.default_rng(1), level)
    theirs = stats.bootstrap((x, y), _ranked_pearson, paired=True, vectorized=True, method="percentile",
                             n_resamples=resamples, confidence_level=level, rng=np.random.default_rng(2))
    distribution = theirs.bootstrap_distribution
    for p, mine, scipys in ((0.025, ours.low, theirs.confidence_interval.low),
                            (0.975, ours.high, theirs.confidence_interval.high)):
        h = 0.01
        density = 2 * h / np.diff(np.quantile(distribution, [p - h, p + h]))[0]
        tolerance = 5 * np.sqrt(2) * np.sqrt(p * (1 - p) / resamples) / density
        assert tolerance < 0.03
        assert abs(mine - scipys) < tolerance, (p, mine, scipys, tolerance)
    assert ours.kept == resamples


def test_the_same_seed_gives_the_same_interval():
    first = bootstrap_interval(TIED, TIED_Y, 500, np.random.default_rng(7))
    assert bootstrap_interval(TIED, TIED_Y, 500, np.random.default_rng(7)) == first
    assert bootstrap_interval(TIED, TIED_Y, 500, np.random.default_rng(8)) != first
