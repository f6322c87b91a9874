"""2-d max pooling (PyTorch's ``MaxPool2d``: NCHW, implicit ``-inf`` padding, floor output size).

Each output o takes the input at ``a(o)``, the first maximal element of its window in scan order
(PyTorch's choice on ties; see :mod:`refplastic.kernels.maxpool`). With ``a`` fixed the map is
linear, and ``a`` is locally constant in x, so the maps are a gather and its adjoint scatter:

    forward     y[o]   = x[a(o)]
    backward    gx[p]  = sum_{o : a(o) = p} gy[o]
    forward_r   Ry[o]  = Rx[a(o)]
    backward_r  Rgx[p] = sum_{o : a(o) = p} Rgy[o]     (no second-order term: piecewise linear)
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
        plane. An input lying batch-last in memory (a convolution's output, (C, H, W, N)) is pooled
        in place, its images as lanes, and the output lies batch-last too; any other is pooled as
        N C contiguous planes."""
        if x.ndim != 4:
            raise ValueError(f"{self!r} expects input of shape (N, C, H, W), got {x.shape}")
        N, C, H, W = x.shape
        if any(n + 2 * p < k for n, p, k in zip((H, W), self.padding, self.kernel_size)):
            raise ValueError(f"{self!r}: kernel {self.kernel_size} is larger than the padded input "
                             f"{(H + 2 * self.padding[0], W + 2 * self.padding[1])}")
        batch_last = not x.flags.c_contiguous and x.transpose(1, 2, 3, 0).flags.c_contiguous
        if batch_last:
            y, argmax = maxpool(x.transpose(1, 2, 3, 0), self.kernel_size, self.stride, self.padding)
            return y.transpose(3, 0, 1, 2), (x.shape, argmax, True)
        y, argmax = maxpool(x.reshape(N * C, H, W), self.kernel_size, self.stride, self.padding)
        return y.reshape(N, C, *y.shape[1:]), (x.shape, argmax, False)

    def backward(self, cache, gy, grads, need_input_grad=True):
        """``gx = scatter(gy)`` to the argmax of each window."""
        if not need_input_grad:
            return None
        return self._scatter(gy[None], cache)[0]

    def forward_r(self, cache, rx, v):
        """``Ry = Rx[a]``, all K tangents at once."""
        if rx is None:
            return None, None
        x_shape, argmax, batch_last = cache
        ry = gather(_planes(rx, batch_last), argmax.reshape(argmax.shape[0], -1))
        return _images(ry, batch_last, x_shape[:2], argmax.shape[1:3]), None

    def backward_r(self, cache, rcache, gy, rgy, rgrads, need_input_grad=True):
        """``Rgx = scatter(Rgy)``."""
        return self._scatter(rgy, cache) if need_input_grad else None

    def _scatter(self, g, cache):
        """Tangent-shaped (K, N, C, OH, OW) cotangents scattered back to (K, N, C, H, W), in the
        input's memory layout."""
        x_shape, argmax, batch_last = cache
        planes = _planes(g, batch_last)
        gx = scatter(planes, argmax.reshape(argmax.shape[0], -1), (int(np.prod(x_shape)) // argmax.shape[0],))
        return _images(gx, batch_last, x_shape[:2], x_shape[2:])


def _planes(t, batch_last):
    """Tangents (K, N, C, H, W) as the kernels' planes: (K, C, H W N) batch-last, else (K, N C, H W)."""
    K, N, C = t.shape[:3]
    if batch_last:
        return np.ascontiguousarray(t.transpose(0, 2, 3, 4, 1)).reshape(K, C, -1)
    return t.reshape(K, N * C, -1)


def _images(planes, batch_last, nc, hw):
    """The inverse of :func:`_planes`: (K, N, C, *hw), a view of batch-last memory if ``batch_last``."""
    K, (N, C) = planes.shape[0], nc
    if batch_last:
        return planes.reshape(K, C, *hw, N).transpose(0, 4, 1, 2, 3)
    return planes.reshape(K, N, C, *hw)
