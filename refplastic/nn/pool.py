"""2-d max pooling (PyTorch's ``MaxPool2d``: NCHW, implicit ``-inf`` padding, floor output size).

Each output o takes the input at ``a(o)``, the first maximal element of its window in scan order
(PyTorch's choice on ties; see :mod:`refplastic.kernels.maxpool`). With ``a`` fixed the map is
linear, and ``a`` is locally constant in x, so the maps are a gather and its adjoint scatter:

    forward     y[o]   = x[a(o)]
    backward    gx[p]  = sum_{o : a(o) = p} gy[o]
    forward_r   Ry[o]  = Rx[a(o)]
    backward_r  Rgx[p] = sum_{o : a(o) = p} Rgy[o]     (no second-order term: piecewise linear)

The layer has no parameters, so an ensemble's members (inputs (E, N, C, H, W)) are pooled as one
batch of E N C planes, and the backward map is the same scatter.
"""

import numpy as np

from ..kernels.maxpool import gather, maxpool, scatter
from .arguments import as_pair
from .layer import Layer


class MaxPool2d(Layer):
    """``MaxPool2d(kernel_size, stride=None, padding=0)``; ``stride`` defaults to ``kernel_size``.

    ``kernel_size``, ``stride`` and ``padding`` are ints or pairs (height, width); ``dilation``,
    ``return_indices`` and ``ceil_mode`` are accepted at their defaults only.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        if as_pair(dilation, "dilation", 1) != (1, 1):
            raise ValueError(f"MaxPool2d supports dilation=1 only, got dilation={dilation!r}")
        if return_indices:
            raise ValueError("MaxPool2d supports return_indices=False only")
        if ceil_mode:
            raise ValueError("MaxPool2d supports ceil_mode=False only")
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride", 1)
        self.padding = as_pair(padding, "padding", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"MaxPool2d padding {self.padding} must be at most half of kernel_size {self.kernel_size}")

    def config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}

    def forward(self, x):
        """``y = x[a]``; the cache is ``(x.shape, a, batch_last)`` with ``a`` the flat argmax in each
        plane (:meth:`_pool`)."""
        if x.ndim != 4:
            raise ValueError(f"{self!r} expects input of shape (N, C, H, W), got {x.shape}")
        return self._pool(x)

    def ensemble_forward(self, x):
        """``y[e] = x[e][a[e]]`` for x (E, N, C, H, W): no parameters, so the pooling of all E N C
        planes at once (:meth:`_pool`); :meth:`backward` is also the ensemble's."""
        if x.ndim != 5:
            raise ValueError(f"{self!r} expects ensemble input of shape (E, N, C, H, W), got {x.shape}")
        return self._pool(x)

    def _pool(self, x):
        """``(y, cache)`` for images x (..., N, C, H, W) after any leading axes (an ensemble's E).
        An input lying batch-last in memory (a convolution's output, (..., C, H, W, N)) is pooled
        in place, its images as lanes, and the output lies batch-last too; any other is pooled as
        contiguous planes."""
        *lead, N, C, H, W = x.shape
        if any(n + 2 * p < k for n, p, k in zip((H, W), self.padding, self.kernel_size)):
            raise ValueError(f"{self!r}: kernel {self.kernel_size} is larger than the padded input "
                             f"{(H + 2 * self.padding[0], W + 2 * self.padding[1])}")
        lanes = np.moveaxis(x, -4, -1)  # (..., C, H, W, N)
        batch_last = not x.flags.c_contiguous and lanes.flags.c_contiguous
        if batch_last:
            y, argmax = maxpool(lanes.reshape(-1, H, W, N), self.kernel_size, self.stride, self.padding)
            return np.moveaxis(y.reshape(*lead, C, *y.shape[1:]), -1, -4), (x.shape, argmax, True)
        y, argmax = maxpool(x.reshape(-1, H, W), self.kernel_size, self.stride, self.padding)
        return y.reshape(*x.shape[:-2], *y.shape[1:]), (x.shape, argmax, False)

    def backward(self, cache, gy, grads, need_input_grad=True):
        """``gx = scatter(gy)`` to the argmax of each window."""
        if not need_input_grad:
            return None
        return self._scatter(gy[None], cache)[0]

    ensemble_backward = backward  # the same scatter: the cache knows the ensemble's planes

    def forward_r(self, cache, rx, v):
        """``Ry = Rx[a]``, all K tangents at once."""
        if rx is None:
            return None, None
        x_shape, argmax, batch_last = cache
        ry = gather(_planes(rx, batch_last, argmax.shape[0]), argmax.reshape(argmax.shape[0], -1))
        return _images(ry, batch_last, x_shape[:-2], argmax.shape[1:3]), None

    def backward_r(self, cache, rcache, gy, rgy, rgrads, need_input_grad=True):
        """``Rgx = scatter(Rgy)``."""
        return self._scatter(rgy, cache) if need_input_grad else None

    def _scatter(self, g, cache):
        """Tangent-shaped (K, ..., N, C, OH, OW) cotangents scattered back to (K, ..., N, C, H, W),
        in the input's memory layout."""
        x_shape, argmax, batch_last = cache
        M = argmax.shape[0]
        gx = scatter(_planes(g, batch_last, M), argmax.reshape(M, -1), (int(np.prod(x_shape)) // M,))
        return _images(gx, batch_last, x_shape[:-2], x_shape[-2:])


def _planes(t, batch_last, M):
    """Tangents (K, ..., N, C, H, W) as the kernels' M planes: (K, M, H W N) batch-last (M the
    product of the leading axes and C), else (K, M, H W) (M that of the leading axes, N and C)."""
    if batch_last:
        t = np.ascontiguousarray(np.moveaxis(t, -4, -1))
    return t.reshape(t.shape[0], M, -1)


def _images(planes, batch_last, lead_nc, hw):
    """The inverse of :func:`_planes`: (K, ..., N, C, *hw) for ``lead_nc`` = (..., N, C), a view of
    batch-last memory if ``batch_last``."""
    K, (*lead, N, C) = planes.shape[0], lead_nc
    if batch_last:
        return np.moveaxis(planes.reshape(K, *lead, C, *hw, N), -1, -4)
    return planes.reshape(K, *lead, N, C, *hw)
