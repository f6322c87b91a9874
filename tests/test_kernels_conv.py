"""The im2col/col2im, space-to-depth and max-pool kernels against their naive NumPy twins."""

import numpy as np
import pytest
from oracle import assert_close

from refplastic.kernels.im2col import (batch_last_copy, batch_last_copy_naive, col2im, col2im_naive, col2im_pixels,
                                      col2im_pixels_naive, conv_output_hw, im2col, im2col_naive, im2col_pixels,
                                      im2col_pixels_naive)
from refplastic.kernels.space_to_depth import (block_weight, block_weight_naive, depth_to_space, depth_to_space_naive,
                                               shift_add, shift_add_naive, shift_scatter, shift_scatter_naive,
                                               space_to_depth, space_to_depth_naive, unblock_weight,
                                               unblock_weight_naive)
from refplastic.kernels.maxpool import gather, gather_naive, maxpool, maxpool_naive, scatter, scatter_naive

DTYPES = [np.float64, np.float32]
SUM_RTOL = {np.float64: 1e-14, np.float32: 1e-6}  # sums of a few terms, possibly in another order

CONV_GEOMETRIES = [  # batch-last x shape (G, C, H, W, B), kernel, stride, padding
    ((1, 3, 7, 6, 2), (3, 3), (1, 1), (0, 0)),
    ((2, 2, 7, 6, 3), (3, 2), (2, 1), (1, 2)),
    ((2, 2, 7, 6, 3), (2, 3), (1, 2), (0, 1)),
    ((1, 2, 5, 5, 1), (5, 5), (1, 1), (2, 2)),
    ((3, 1, 8, 9, 2), (2, 2), (3, 3), (2, 2)),
    ((1, 4, 84, 84, 2), (8, 8), (4, 4), (0, 0)),
    ((1, 1, 3, 3, 1), (3, 3), (3, 3), (2, 2)),
    ((1, 2, 6, 5, 4), (3, 3), (1, 1), (1, 1)),  # padding inside the kernels: stride-1 runs cut short
    ((2, 1, 32, 32, 3), (5, 5), (2, 2), (2, 2)),  # the probe CNN's convolutions
    ((2, 3, 16, 16, 3), (3, 3), (2, 2), (1, 1)),
    ((1, 1, 2, 3, 2), (4, 5), (1, 2), (3, 3)),  # windows wholly in the padding on both sides
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kernel,stride,padding", CONV_GEOMETRIES)
def test_im2col_and_col2im_of_ranges_of_pixels_match_naive(shape, kernel, stride, padding, dtype):
    """Ranges of output pixels: all, one, parts of rows at either end, whole rows between; adding
    every block's col2im_pixels into zeros is col2im."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(dtype)
    oh, ow = conv_output_hw(shape[2:4], kernel, stride, padding)
    pixels = oh * ow
    for first, stop in {(0, pixels), (pixels - 1, pixels), (0, 1), (ow // 2, pixels - ow // 2), (1, min(pixels, ow + 2))}:
        if stop <= first:
            continue
        cols = im2col_pixels(x, kernel, stride, padding, first, stop)
        np.testing.assert_array_equal(cols, im2col_pixels_naive(x, kernel, stride, padding, first, stop))
        out = np.full(cols.shape, np.nan, dtype)
        assert im2col_pixels(x, kernel, stride, padding, first, stop, out) is out
        np.testing.assert_array_equal(out, cols)
        g = rng.normal(size=cols.shape).astype(dtype)
        back, back_naive = x.copy(), x.copy()
        col2im_pixels(g, back, kernel, stride, padding, first, stop)
        col2im_pixels_naive(g, back_naive, kernel, stride, padding, first, stop)
        assert_close(back, back_naive, SUM_RTOL[dtype], "col2im_pixels")
    g = rng.normal(size=(shape[0], shape[1] * kernel[0] * kernel[1], pixels * shape[-1])).astype(dtype)
    blocks = np.zeros(shape, dtype)
    step = max(1, pixels // 3)
    for first in range(0, pixels, step):
        stop = min(pixels, first + step)
        col2im_pixels(np.ascontiguousarray(g[:, :, first * shape[-1]:stop * shape[-1]]), blocks, kernel, stride,
                      padding, first, stop)
    assert_close(blocks, col2im(g, shape, kernel, stride, padding), SUM_RTOL[dtype], "col2im in blocks")


@pytest.mark.parametrize("batch", [1, 8, 13])
def test_batch_last_copy_of_batch_first_images_and_of_other_layouts(batch):
    rng = np.random.default_rng(2)
    first = rng.normal(size=(2, batch, 3, 4, 5))  # (G, B, C, H, W)
    for x in (first.transpose(0, 2, 3, 4, 1),  # its batch-last view: the blocked transpose
              np.ascontiguousarray(first.transpose(0, 2, 3, 4, 1)),  # already batch-last
              rng.normal(size=(2, 5, 4, 3, batch)).transpose(0, 3, 2, 1, 4)):  # another layout
        copied = batch_last_copy(x)
        assert copied.flags.c_contiguous
        np.testing.assert_array_equal(copied, batch_last_copy_naive(x))


def test_im2col_reads_non_contiguous_input():
    x = np.random.default_rng(1).normal(size=(1, 9, 8, 3, 4)).transpose(0, 4, 1, 2, 3)
    np.testing.assert_array_equal(im2col(x, (3, 2), (2, 1), (1, 0)), im2col_naive(x, (3, 2), (2, 1), (1, 0)))



S2D_GEOMETRIES = [  # batch-last x shape (G, C, H, W, B), stride, multiple (kernel = multiple * stride)
    ((1, 3, 9, 8, 2), (2, 2), (2, 2)),
    ((2, 2, 13, 12, 3), (4, 4), (2, 2)),
    ((2, 3, 7, 6, 1), (2, 1), (2, 2)),
    ((1, 2, 7, 9, 2), (1, 2), (3, 2)),
    ((1, 2, 11, 10, 2), (3, 3), (2, 2)),
    ((3, 2, 5, 7, 1), (2, 3), (1, 1)),
    ((1, 4, 84, 84, 2), (4, 4), (2, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,stride,multiple", S2D_GEOMETRIES)
def test_space_to_depth_and_shift_add_match_naive_and_are_adjoint(shape, stride, multiple, dtype):
    rng = np.random.default_rng(0)
    G, C, H, W, B = shape
    out_hw = tuple((n - m * s) // s + 1 for n, m, s in zip((H, W), multiple, stride))
    blocks = tuple(o - 1 + m for o, m in zip(out_hw, multiple))
    x = rng.normal(size=shape).astype(dtype)
    s = space_to_depth(x, stride, blocks)
    np.testing.assert_array_equal(s, space_to_depth_naive(x, stride, blocks))
    ds = rng.normal(size=s.shape).astype(dtype)
    back = depth_to_space(ds, shape, stride, blocks)
    np.testing.assert_array_equal(back, depth_to_space_naive(ds, shape, stride, blocks))

    O = 3
    z = rng.normal(size=(G, multiple[0] * multiple[1] * O, blocks[0] * blocks[1] * B)).astype(dtype)
    bias = rng.normal(size=(G, O)).astype(dtype)
    y = shift_add(z, out_hw, multiple, bias)
    assert y.shape == (G, O, *out_hw, B)
    assert_close(y, shift_add_naive(z, out_hw, multiple, bias), SUM_RTOL[dtype], "shift_add")
    gy = rng.normal(size=y.shape).astype(dtype)
    gz = shift_scatter(gy, multiple)
    np.testing.assert_array_equal(gz, shift_scatter_naive(gy, multiple))
    if dtype == np.float64:  # both pairs are adjoint
        assert abs(np.vdot(ds, s) - np.vdot(back, x)) <= 1e-12 * np.abs(ds).sum() * np.abs(x).max()
        y0 = shift_add(z, out_hw, multiple)
        assert abs(np.vdot(gy, y0) - np.vdot(gz, z)) <= 1e-12 * np.abs(gy).sum() * np.abs(z).max()


def test_space_to_depth_reads_non_contiguous_input():
    x = np.random.default_rng(1).normal(size=(1, 9, 8, 3, 4)).transpose(0, 4, 1, 2, 3)
    np.testing.assert_array_equal(space_to_depth(x, (2, 2), (4, 4)), space_to_depth_naive(x, (2, 2), (4, 4)))


POOL_GEOMETRIES = [  # planes shape (M, H, W), kernel, stride, padding
    ((6, 7, 8), (3, 2), (2, 1), (1, 1)),
    ((4, 6, 6), (2, 2), (2, 2), (0, 0)),
    ((3, 6, 5), (3, 3), (1, 1), (1, 1)),
    ((2, 9, 9), (3, 3), (2, 2), (0, 0)),
]


@pytest.mark.parametrize("lanes", [None, 1, 5])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["normal", "ties", "special"])
@pytest.mark.parametrize("shape,kernel,stride,padding", POOL_GEOMETRIES)
def test_maxpool_gather_scatter_match_naive(shape, kernel, stride, padding, values, dtype, lanes):
    """Planes (M, H, W), and planes of L lanes (M, H, W, L) whose argmax indexes the (H, W, L) block."""
    rng = np.random.default_rng(2)
    if values == "normal":
        x = rng.normal(size=shape)
    else:
        x = rng.integers(0, 3, size=shape).astype(float)
        if values == "special":
            x[0, :3, :3] = -np.inf
            x[1, 1:4, 2] = np.nan
            x[1, 2, 3] = np.nan
    if lanes is not None:  # lane l is plane set x scaled differently: other maxima, same specials
        x = np.stack([x * (1 + (-1) ** lane * 0.5 * lane) for lane in range(lanes)], axis=-1)
        shape = x.shape
    x = x.astype(dtype)
    y, argmax = maxpool(x, kernel, stride, padding)
    y0, argmax0 = maxpool_naive(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(argmax, argmax0)
    t = rng.normal(size=(2, *shape)).astype(dtype)
    np.testing.assert_array_equal(gather(t, argmax), gather_naive(t, argmax))
    g = rng.normal(size=(2, *argmax.shape)).astype(dtype)
    assert_close(scatter(g, argmax, shape[1:]), scatter_naive(g, argmax, shape[1:]), SUM_RTOL[dtype], "scatter")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,shape,multiple,stride", [
    ((), (32, 4, 8, 8), (2, 2), (4, 4)), ((3,), (5, 2, 4, 6), (2, 3), (2, 2)), ((2,), (3, 2, 2, 3), (1, 1), (2, 3)),
    ((), (4, 3, 6, 2), (3, 1), (2, 2))])
def test_block_weight_and_unblock_weight_match_naive_and_invert(lead, shape, multiple, stride, dtype):
    w = np.random.default_rng(0).normal(size=(*lead, *shape)).astype(dtype)
    m = block_weight(w, multiple, stride)
    np.testing.assert_array_equal(m, block_weight_naive(w, multiple, stride))
    back, back_naive = np.empty_like(w), np.empty_like(w)
    unblock_weight(m, multiple, stride, back)
    unblock_weight_naive(m, multiple, stride, back_naive)
    np.testing.assert_array_equal(back, w)
    np.testing.assert_array_equal(back_naive, w)
    strided = np.empty((*w.shape[:-1], 2 * w.shape[-1]), dtype)[..., ::2]  # a non-contiguous target
    unblock_weight(m, multiple, stride, strided)
    np.testing.assert_array_equal(strided, w)
