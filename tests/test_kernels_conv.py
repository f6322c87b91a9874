"""The im2col/col2im and max-pool kernels against their naive NumPy twins."""

import numpy as np
import pytest
from oracle import assert_close

from refplastic.kernels.im2col import col2im, col2im_naive, im2col, im2col_naive
from refplastic.kernels.maxpool import gather, gather_naive, maxpool, maxpool_naive, scatter, scatter_naive

DTYPES = [np.float64, np.float32]
SUM_RTOL = {np.float64: 1e-14, np.float32: 1e-6}  # sums of a few terms, possibly in another order

CONV_GEOMETRIES = [  # x shape (G, B, C, H, W), kernel, stride, padding
    ((1, 2, 3, 7, 6), (3, 3), (1, 1), (0, 0)),
    ((2, 3, 2, 7, 6), (3, 2), (2, 1), (1, 2)),
    ((1, 1, 2, 5, 5), (5, 5), (1, 1), (2, 2)),
    ((3, 2, 1, 8, 9), (2, 2), (3, 3), (2, 2)),
    ((1, 2, 4, 84, 84), (8, 8), (4, 4), (0, 0)),
    ((1, 1, 1, 3, 3), (3, 3), (3, 3), (2, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,stride,padding", CONV_GEOMETRIES)
def test_im2col_and_col2im_match_naive_and_are_adjoint(shape, kernel, stride, padding, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    cols = im2col(x, kernel, stride, padding)
    np.testing.assert_array_equal(cols, im2col_naive(x, kernel, stride, padding))
    g = rng.normal(size=cols.shape).astype(dtype)
    back = col2im(g, shape, kernel, stride, padding)
    assert_close(back, col2im_naive(g, shape, kernel, stride, padding), SUM_RTOL[dtype], "col2im")
    if dtype == np.float64:  # <g, im2col(x)> = <col2im(g), x>
        assert abs(np.vdot(g, cols) - np.vdot(back, x)) <= 1e-12 * np.abs(g).sum() * np.abs(x).max()


def test_im2col_reads_non_contiguous_input():
    x = np.random.default_rng(1).normal(size=(1, 3, 4, 9, 8)).transpose(0, 2, 1, 3, 4)
    np.testing.assert_array_equal(im2col(x, (3, 2), (2, 1), (1, 0)), im2col_naive(x, (3, 2), (2, 1), (1, 0)))


POOL_GEOMETRIES = [  # planes shape (M, H, W), kernel, stride, padding
    ((6, 7, 8), (3, 2), (2, 1), (1, 1)),
    ((4, 6, 6), (2, 2), (2, 2), (0, 0)),
    ((3, 6, 5), (3, 3), (1, 1), (1, 1)),
    ((2, 9, 9), (3, 3), (2, 2), (0, 0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["normal", "ties", "special"])
@pytest.mark.parametrize("shape,kernel,stride,padding", POOL_GEOMETRIES)
def test_maxpool_gather_scatter_match_naive(shape, kernel, stride, padding, values, dtype):
    rng = np.random.default_rng(2)
    if values == "normal":
        x = rng.normal(size=shape)
    else:
        x = rng.integers(0, 3, size=shape).astype(float)
        if values == "special":
            x[0, :3, :3] = -np.inf
            x[1, 1:4, 2] = np.nan
            x[1, 2, 3] = np.nan
    x = x.astype(dtype)
    y, argmax = maxpool(x, kernel, stride, padding)
    y0, argmax0 = maxpool_naive(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(argmax, argmax0)
    t = rng.normal(size=(2, *shape)).astype(dtype)
    np.testing.assert_array_equal(gather(t, argmax), gather_naive(t, argmax))
    g = rng.normal(size=(2, *argmax.shape)).astype(dtype)
    assert_close(scatter(g, argmax, shape[1:]), scatter_naive(g, argmax, shape[1:]), SUM_RTOL[dtype], "scatter")
