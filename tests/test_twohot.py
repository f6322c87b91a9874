"""The two-hot encoding: exact round trip inside the support, clipping outside, a distribution
always, one-hot vectors at the support points, MuZero's worked example, and bad arguments."""

import numpy as np
import pytest

from refplastic.plasticity.twohot import BINS, expectation, support, two_hot, value_support

SUPPORTS = {
    "unit": support(-300, 300, 601),  # MuZero's
    "classification": value_support(0.99),  # [0, 1/(1 - 0.99)], 51 bins
    "uneven": np.array([-1.0, -0.25, 0.0, 0.5, 3.0, 10.0]),
}


@pytest.mark.parametrize("name", SUPPORTS)
def test_round_trip_is_exact_inside_the_support(name):
    z = SUPPORTS[name]
    values = np.random.default_rng(0).uniform(z[0], z[-1], size=(40, 7))
    p = two_hot(values, z)
    assert p.shape == (40, 7, z.size) and p.dtype == np.float64
    np.testing.assert_allclose(expectation(p, z), values, rtol=0, atol=4 * np.finfo(float).eps * np.abs(z).max())
    assert np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=0, atol=np.finfo(float).eps)
    nonzero = p > 0
    assert np.all(nonzero.sum(axis=-1) <= 2)
    low = np.argmax(nonzero, axis=-1)  # the mass sits on two neighbouring bins: low and low + 1
    k = np.clip(np.searchsorted(z, values, side="right") - 1, 0, z.size - 2)
    np.testing.assert_array_equal(low, k)


@pytest.mark.parametrize("name", SUPPORTS)
def test_support_points_encode_as_one_hot_vectors_exactly(name):
    z = SUPPORTS[name]
    np.testing.assert_array_equal(two_hot(z, z), np.eye(z.size))
    np.testing.assert_array_equal(expectation(np.eye(z.size), z), z)


def test_values_outside_the_support_are_clipped_to_its_ends():
    z = support(0, 10, 11)
    p = two_hot([-3.0, -np.inf, 10.5, np.inf, 1e300], z)
    np.testing.assert_array_equal(p, np.eye(11)[[0, 0, 10, 10, 10]])
    np.testing.assert_array_equal(expectation(p, z), [0, 0, 10, 10, 10])


def test_muzero_example_and_a_hand_computed_split():
    p = two_hot(3.7, support(-300, 300, 601))  # MuZero, appendix F: weight 0.3 on 3 and 0.7 on 4
    np.testing.assert_allclose(p[[303, 304]], [0.3, 0.7], rtol=1e-13)
    assert p.sum() == pytest.approx(1.0, abs=1e-16) and np.count_nonzero(p) == 2
    p = two_hot([1.5, 4.0], value_support(0.5, bins=5))  # support 0, 0.5, 1, 1.5, 2; 4 clips to 2
    np.testing.assert_array_equal(p, [[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])
    p = two_hot(0.2, [0.0, 1.0])
    np.testing.assert_array_equal(p, [1 - 0.2, 0.2])


def test_classification_support_spans_the_returns_of_rewards_in_0_1():
    z = value_support(0.9)
    assert z.size == BINS == 51 and z[0] == 0 and z[-1] == pytest.approx(10.0, rel=1e-15)
    np.testing.assert_allclose(np.diff(z), 10.0 / 50, rtol=1e-13)


def test_nan_values_give_nan_probabilities():
    p = two_hot([np.nan, 1.0], support(0, 2, 3))
    assert np.all(np.isnan(p[0, -2:])) and np.all(p[0, :-2] == 0)
    np.testing.assert_array_equal(p[1], [0, 1, 0])


@pytest.mark.parametrize("args", [(1, 1, 5), (2, 1, 5), (0, np.inf, 5), (0, 1, 1), (0, 1, 2.5)])
def test_bad_support_arguments(args):
    with pytest.raises(ValueError, match="support needs"):
        support(*args)


@pytest.mark.parametrize("z", [[0.0], [1.0, 0.0], [0.0, 0.0, 1.0], [[0.0, 1.0]], [0.0, np.nan]])
def test_bad_supports_are_refused(z):
    with pytest.raises(ValueError, match="increasing"):
        two_hot(0.5, z)


def test_bad_discount_and_probability_shapes():
    with pytest.raises(ValueError, match="discount"):
        value_support(1.0)
    with pytest.raises(ValueError, match="bins"):
        expectation(np.ones((2, 3)) / 3, support(0, 1, 4))
