"""ReLU and its backward map in one pass each, split across threads.

    relu(x)              = max(x, 0)            (NaN stays NaN, as torch's clamp_min)
    relu_backward(x, gy) = 0 if x <= 0 else gy  (torch's threshold_backward: a where, not a product,
                                           so a NaN input passes its gradient, as in torch)

Flat loops over contiguous arrays with ``[start, stop)`` chunks for
:mod:`refplastic.kernels.threads`; NumPy twins below.
"""

import numpy as np
from numba import njit

from .threads import parallel_range


# Each kernel slices its chunk first and loops from 0: an index that starts at an arbitrary
# ``start`` could be negative as far as Numba knows, and the wraparound test that follows from
# that blocks vectorisation (ten times slower).
@njit(cache=True, nogil=True)
def _relu(x, y, start, stop):
    x, y = x[start:stop], y[start:stop]
    for i in range(x.size):
        v = x[i]
        y[i] = 0 if v <= 0 else v


@njit(cache=True, nogil=True)
def _relu_backward(x, gy, gx, start, stop):
    x, gy, gx = x[start:stop], gy[start:stop], gx[start:stop]
    for i in range(x.size):
        gx[i] = 0 if x[i] <= 0 else gy[i]


def relu(x):
    """``max(x, 0)`` elementwise, a new array of x's shape and dtype."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    parallel_range(_relu, x.size, 2, x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(x, gy):
    """0 where ``x <= 0``, else ``gy``: the ReLU input gradient, a new array of gy's shape."""
    x, gy = np.ascontiguousarray(x), np.ascontiguousarray(gy, dtype=x.dtype)
    if x.shape != gy.shape:
        raise ValueError(f"relu_backward: x and gy must have the same shape, got {x.shape} and {gy.shape}")
    gx = np.empty_like(gy)
    parallel_range(_relu_backward, x.size, 3, x.reshape(-1), gy.reshape(-1), gx.reshape(-1))
    return gx


def relu_naive(x):
    """NumPy twin of :func:`relu`."""
    return np.maximum(x, 0)


def relu_backward_naive(x, gy):
    """NumPy twin of :func:`relu_backward`."""
    return np.where(x <= 0, 0, gy).astype(gy.dtype)
