"""LayerNorm's column kernels against their NumPy twins (torch's check is tests/test_layers_norm.py)."""

import numpy as np
import pytest

from refplastic.kernels.layernorm import (layer_norm_columns, layer_norm_columns_backward,
                                          layer_norm_columns_backward_naive, layer_norm_columns_naive)

TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("depth,samples", [(12800, 32), (7, 1), (1, 5), (300, 3)])
def test_layer_norm_column_kernels_match_naive(depth, samples, dtype):
    rng = np.random.default_rng(depth + samples)
    x = (rng.normal(size=(depth, samples)) * rng.uniform(0.1, 10, samples) + rng.normal(size=samples) * 5).astype(dtype)
    weight, bias = rng.normal(size=depth).astype(dtype), rng.normal(size=depth).astype(dtype)
    fast, naive = layer_norm_columns(x, weight, bias, 1e-5), layer_norm_columns_naive(x, weight, bias, 1e-5)
    for a, b, name in zip(fast, naive, ("y", "xhat", "r")):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype], err_msg=name)
    _, xhat, r = fast
    gy = rng.normal(size=x.shape).astype(dtype)
    fast, naive = layer_norm_columns_backward(gy, xhat, r, weight), layer_norm_columns_backward_naive(gy, xhat, r, weight)
    for a, b, name in zip(fast, naive, ("gx", "gweight", "gbias")):
        assert a.dtype == dtype
        scale = TOLERANCE[dtype] * (np.sqrt(samples) if name != "gx" else 1)
        np.testing.assert_allclose(a, b, rtol=scale, atol=scale * max(1.0, float(np.abs(b).max())), err_msg=name)


def test_a_constant_column_is_zero_after_standardising_and_the_kernels_want_contiguous_arrays():
    x = np.ones((6, 2))
    x[:, 1] = np.arange(6)
    y, xhat, r = layer_norm_columns(x, np.ones(6), np.zeros(6), 1e-5)
    np.testing.assert_array_equal(xhat[:, 0], 0.0)
    assert r[0] == pytest.approx(1e-5 ** -0.5)
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        layer_norm_columns(np.asfortranarray(np.ones((6, 2))), np.ones(6), np.zeros(6), 1e-5)
