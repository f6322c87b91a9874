"""ReLU and its backward map, one pass over memory each.

    relu(x)              = max(x, 0)            (NaN stays NaN, as torch's clamp_min)
    relu_backward(x, gy) = 0 if x <= 0 else gy  (torch's threshold_backward: a where, not a product,
                                                 so a NaN input passes its gradient, as in torch)

NumPy needs three passes and two temporaries for the backward map (``gy * (x > 0)`` with a cast);
these loops vectorise (AVX-512 on this host) and make one. NumPy twins below.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _relu(x, y):
    for i in range(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else v


@njit(cache=True)
def _relu_backward(x, gy, gx):
    for i in range(x.size):
        gx[i] = 0 if x[i] <= 0 else gy[i]


def memory_order(a):
    """``(order, inverse)``: axis permutations with ``a.transpose(order)`` C-contiguous whenever
    ``a`` is one dense block in some axis order (a transposed view, such as a convolution's
    output), and ``transpose(inverse)`` undoing it; ``None`` for a C-contiguous ``a``. The
    kernels run over that memory in place of a copy, and their outputs keep ``a``'s layout."""
    if a.flags.c_contiguous:
        return None
    order = np.argsort([-abs(stride) for stride in a.strides], kind="stable")
    return order, np.argsort(order)


def relu(x):
    """``max(x, 0)`` elementwise, a new array of x's shape, dtype and memory layout."""
    order = memory_order(x)
    if order is not None:
        return relu(np.ascontiguousarray(x.transpose(order[0]))).transpose(order[1])
    y = np.empty_like(x)
    _relu(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(x, gy):
    """0 where ``x <= 0``, else ``gy``: the ReLU input gradient, a new array of gy's shape in x's
    memory layout."""
    if x.shape != gy.shape:
        raise ValueError(f"relu_backward: x and gy must have the same shape, got {x.shape} and {gy.shape}")
    order = memory_order(x)
    if order is not None:
        x, gy = np.ascontiguousarray(x.transpose(order[0])), gy.transpose(order[0])
        return relu_backward(x, gy).transpose(order[1])
    gy = np.ascontiguousarray(gy, dtype=x.dtype)
    gx = np.empty_like(gy)
    _relu_backward(x.reshape(-1), gy.reshape(-1), gx.reshape(-1))
    return gx


def relu_naive(x):
    """NumPy twin of :func:`relu`."""
    return np.maximum(x, 0)


def relu_backward_naive(x, gy):
    """NumPy twin of :func:`relu_backward`."""
    return np.where(x <= 0, 0, gy).astype(gy.dtype)
