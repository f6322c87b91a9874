"""The activation kernels (ReLU's fused maps, GELU in both forms) against their NumPy twins, and
ReLU's backward against torch's for a NaN input."""

import numpy as np
import pytest
import torch

from refplastic.kernels.relu import relu, relu_backward, relu_backward_naive, relu_naive


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_kernels_match_naive_including_special_values(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5, 7)).astype(dtype)
    x.flat[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30]
    gy = rng.normal(size=x.shape).astype(dtype)
    gy.flat[6:9] = [np.nan, np.inf, -np.inf]
    np.testing.assert_array_equal(relu(x), relu_naive(x))
    assert relu(x).dtype == dtype
    np.testing.assert_array_equal(relu_backward(x, gy), relu_backward_naive(x, gy))
    xt, gyt = x.transpose(2, 0, 1), gy.transpose(2, 0, 1)  # non-contiguous inputs
    np.testing.assert_array_equal(relu(xt), relu_naive(xt))
    np.testing.assert_array_equal(relu_backward(xt, gyt), relu_backward_naive(xt, gyt))
    with pytest.raises(ValueError, match="same shape"):
        relu_backward(x, gy[0])


def test_relu_kernels_keep_the_memory_layout_of_a_transposed_input():
    """A convolution's output is an NCHW view of (C, H, W, N) memory: ReLU keeps that layout, so
    the next convolution lowers it without a copy; gy in another layout is taken in x's."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5, 6, 3)).transpose(3, 0, 1, 2)  # (N, C, H, W) view of (C, H, W, N)
    y = relu(x)
    np.testing.assert_array_equal(y, relu_naive(x))
    assert y.transpose(1, 2, 3, 0).flags.c_contiguous
    gy = rng.normal(size=x.shape)  # C-contiguous NCHW
    gx = relu_backward(x, gy)
    np.testing.assert_array_equal(gx, relu_backward_naive(x, gy))
    assert gx.transpose(1, 2, 3, 0).flags.c_contiguous
    strided = rng.normal(size=(6, 8))[::2, ::-2]  # not one dense block: copied
    np.testing.assert_array_equal(relu(strided), relu_naive(strided))


def test_relu_backward_follows_torch_at_nan_and_zero():
    x = np.array([np.nan, -1.0, 0.0, -0.0, 2.0, np.inf, -np.inf])
    gy = np.arange(1.0, 8.0)
    xt = torch.tensor(x, requires_grad=True)
    torch.relu(xt).backward(torch.tensor(gy))
    np.testing.assert_array_equal(relu_backward(x, gy), xt.grad.numpy())
    np.testing.assert_array_equal(relu(x), torch.relu(torch.tensor(x)).numpy())


@pytest.mark.parametrize("form", ["", "_tanh"])
def test_gelu_kernels_match_naive(form):
    from refplastic.kernels import gelu as kernels

    x = np.concatenate([np.linspace(-9.0, 9.0, 2001), [0.0, -0.0, 1e-12, -40.0, 40.0]])
    for suffix in ("", "_d1", "_d2"):
        fast, naive = getattr(kernels, f"gelu{form}{suffix}"), getattr(kernels, f"gelu{form}{suffix}_naive")
        np.testing.assert_allclose(fast(x), naive(x), rtol=1e-13, atol=1e-13, err_msg=f"gelu{form}{suffix}")  # cancellation near -1
        assert fast(x.astype(np.float32)).dtype == np.float32


def test_gelu_rejects_unknown_forms():
    from refplastic.nn import GELU

    with pytest.raises(ValueError, match="'none' or 'tanh'"):
        GELU("erf")
