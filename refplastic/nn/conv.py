"""2-d convolution (PyTorch's ``Conv2d``: cross-correlation, NCHW, zero padding, groups = 1).

With ``conv(x, W)[n, o, oy, ox] = sum_{c,i,j} W[o, c, i, j] xpad[n, c, oy sh + i, ox sw + j]``
(xpad: x with ph, pw zeros on each side), ``convT`` its adjoint in x (the transposed convolution)
and ``corr(g, x)[o, c, i, j] = sum_{n,oy,ox} g[n, o, oy, ox] xpad[n, c, oy sh + i, ox sw + j]``
its adjoint in W, the maps are, for a parameter direction ``(V, Vb)``:

    forward     y   = conv(x, W) + b
    backward    gx  = convT(gy, W),                 gW  = corr(gy, x),                 gb  = sum_{n,oy,ox} gy
    forward_r   Ry  = conv(Rx, W) + conv(x, V) + Vb
    backward_r  Rgx = convT(Rgy, W) + convT(gy, V), RgW = corr(Rgy, x) + corr(gy, Rx), Rgb = sum_{n,oy,ox} Rgy

The layer is bilinear in (x, W), so there is no other second-order term.

Scheme: im2col (:mod:`refplastic.kernels.im2col`) unrolls x into ``cols`` of shape
(C kh kw, N OH OW), and with ``W2 = W.reshape(O, C kh kw)`` and ``gy2`` = gy as (O, N OH OW):

    conv(x, W) = W2 @ cols,    corr(gy, x) = gy2 @ cols^T,    convT(gy, W) = col2im(W2^T @ gy2),

each one BLAS matrix product, with a block transpose between the (O, N, OH OW) order of the
products and NCHW. The forward pass keeps ``cols`` for the other maps; the K tangents of the
R-maps are a leading axis of the same products (im2col of Rx is done for all K at once).
"""

import numpy as np

from ..kernels.im2col import col2im, conv_output_size, im2col
from .init import torch_default_init_
from .layer import Layer


def as_pair(value, name, minimum):
    """``(a, b)`` from an int or a pair of ints, each at least ``minimum``; else a ValueError."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair) \
            or min(pair) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)


def channel_major(a):
    """(G, N, O, OH, OW) -> (G, O, N OH OW): the layout of the im2col products."""
    G, N, O = a.shape[:3]
    return np.ascontiguousarray(a.reshape(G, N, O, -1).transpose(0, 2, 1, 3)).reshape(G, O, -1)


def batch_major(a, n, out_hw, bias=None):
    """(G, O, n OH OW) -> (G, n, O, OH, OW), adding ``bias`` of shape (G, O) on the way if given."""
    G, O = a.shape[:2]
    a = a.reshape(G, O, n, -1).transpose(0, 2, 1, 3)
    if bias is None:
        a = np.ascontiguousarray(a)
    else:
        a = np.add(a, bias.reshape(G, 1, O, 1), out=np.empty((G, n, O, a.shape[-1]), a.dtype))
    return a.reshape(G, n, O, *out_hw)


class Conv2d(Layer):
    """``Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True, padding_mode="zeros")``, torch's signature.

    ``kernel_size``, ``stride`` and ``padding`` are ints or pairs (height, width). ``dilation``,
    ``groups`` and ``padding_mode`` are accepted at their defaults only.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        super().__init__()
        if as_pair(dilation, "dilation", 1) != (1, 1):
            raise ValueError(f"Conv2d supports dilation=1 only, got dilation={dilation!r}")
        if groups != 1:
            raise ValueError(f"Conv2d supports groups=1 only, got groups={groups!r}")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d supports padding_mode='zeros' only, got padding_mode={padding_mode!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = as_pair(stride, "stride", 1)
        self.padding = as_pair(padding, "padding", 0)
        self.bias = bool(bias)
        self.param_shapes = {"weight": (self.out_channels, self.in_channels, *self.kernel_size)}
        if self.bias:
            self.param_shapes["bias"] = (self.out_channels,)

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "bias": self.bias}

    def reset_parameters(self, rng):
        torch_default_init_(self.params["weight"], self.params.get("bias"), rng)

    def output_hw(self, x_shape):
        """(OH, OW) for an input of shape ``x_shape`` (N, C, H, W); a ValueError if it does not fit."""
        if len(x_shape) != 4 or x_shape[1] != self.in_channels:
            raise ValueError(f"{self!r} expects input of shape (N, {self.in_channels}, H, W), got {tuple(x_shape)}")
        out = tuple(conv_output_size(*a) for a in zip(x_shape[2:], self.kernel_size, self.stride, self.padding))
        if min(out) < 1:
            raise ValueError(f"{self!r}: kernel {self.kernel_size} is larger than the padded input "
                             f"{tuple(n + 2 * p for n, p in zip(x_shape[2:], self.padding))}")
        return out

    def _unfold(self, x):
        """im2col of images ``x`` (G, N, C, H, W): (G, C kh kw, N OH OW)."""
        return im2col(x, self.kernel_size, self.stride, self.padding)

    def _fold(self, cols, x_shape):
        """col2im, the adjoint of :meth:`_unfold`, to images of shape ``x_shape`` (G, N, C, H, W)."""
        return col2im(cols, x_shape, self.kernel_size, self.stride, self.padding)

    def _matrix(self, w):
        """A weight (..., O, C, kh, kw) as the matrix (..., O, C kh kw) that multiplies ``cols``."""
        return w.reshape(*w.shape[:-4], self.out_channels, -1)

    # ---- the four maps ----------------------------------------------------------------------
    def forward(self, x):
        """``y = conv(x, W) + b`` as ``W2 @ cols``; the cache is ``(x.shape, cols)``."""
        out_hw = self.output_hw(x.shape)
        cols = self._unfold(x[None])[0]
        y = self._matrix(self.params["weight"]) @ cols
        y = batch_major(y[None], x.shape[0], out_hw, self.params.get("bias"))[0]
        return y, (x.shape, cols)

    def backward(self, cache, gy, grads, need_input_grad=True):
        """``gW = gy2 @ cols^T``, ``gb = sum gy``; returns ``gx = col2im(W2^T @ gy2)`` if asked."""
        x_shape, cols = cache
        gy2 = channel_major(gy[None])[0]
        if grads is not None:
            np.matmul(gy2, cols.T, out=self._matrix(grads["weight"]))
            if self.bias:
                np.sum(gy2, axis=1, out=grads["bias"])
        if not need_input_grad:
            return None
        return self._fold((self._matrix(self.params["weight"]).T @ gy2)[None], (1, *x_shape))[0]

    def forward_r(self, cache, rx, v):
        """``Ry = V2 @ cols + W2 @ im2col(Rx) + Vb`` for all K at once.

        ``rcache = (v, im2col(Rx))``, the second ``None`` when Rx is.
        """
        x_shape, cols = cache
        K, N = v["weight"].shape[0], x_shape[0]
        ry = (self._matrix(v["weight"]).reshape(K * self.out_channels, -1) @ cols).reshape(K, self.out_channels, -1)
        rcols = None
        if rx is not None:
            rcols = self._unfold(rx)
            ry += self._matrix(self.params["weight"]) @ rcols
        return batch_major(ry, N, self.output_hw(x_shape), v.get("bias")), (v, rcols)

    def backward_r(self, cache, rcache, gy, rgy, rgrads, need_input_grad=True):
        """``RgW = Rgy2 @ cols^T + gy2 @ im2col(Rx)^T``, ``Rgb = sum Rgy`` and, if asked,
        ``Rgx = col2im(W2^T @ Rgy2 + V2^T @ gy2)``, for all K at once."""
        x_shape, cols = cache
        v, rcols = rcache
        gy2 = channel_major(gy[None])[0]
        rgy2 = channel_major(rgy)  # (K, O, N OH OW)
        rgw = self._matrix(rgrads["weight"])
        np.matmul(rgy2, cols.T, out=rgw)
        if rcols is not None:
            rgw += gy2 @ rcols.transpose(0, 2, 1)
        if self.bias:
            np.sum(rgy2, axis=2, out=rgrads["bias"])
        if not need_input_grad:
            return None
        rgcols = self._matrix(self.params["weight"]).T @ rgy2
        rgcols += self._matrix(v["weight"]).transpose(0, 2, 1) @ gy2
        return self._fold(rgcols, (rgy.shape[0], *x_shape))
