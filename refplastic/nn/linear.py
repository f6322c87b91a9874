"""Linear (fully connected) layer, PyTorch layout: ``y = x W^T + b``, ``W`` of shape (out, in).

Maps, for ``x`` of shape (..., in):

    forward     y   = x W^T + b
    backward    gx  = gy W,          gW = gy^T x,            gb = sum_n gy     (gx^T = W^T gy^T when x
                                                                       lies feature-major in memory)
    forward_r   Ry  = Rx W^T + x V^T + Vb
    backward_r  Rgx = Rgy W + gy V,  RgW = Rgy^T x + gy^T Rx, Rgb = sum_n Rgy

where ``(V, Vb)`` is the parameter direction and sums run over all leading axes of x. Tangents
carry the leading tangent axis K (see :mod:`refplastic.nn.layer`), so with x viewed as an (n, in)
matrix each R-map is a batched matrix product over K. The ensemble maps are the first two rows
member by member, ``y[e] = x[e] W[e]^T + b[e]`` and so on, one batched matrix product over E each.
"""

import numpy as np

from .arguments import positive_int
from .init import torch_default_init_
from .layer import Layer, shares_input


def _rows(a):
    """View (..., k) as (n, k)."""
    return a.reshape(-1, a.shape[-1])


def _krows(a):
    """View a tangent (K, ..., k) or an ensemble's array (E, ..., k) as (K, n, k)."""
    return a.reshape(a.shape[0], -1, a.shape[-1])


def _feature_major(x, lead=0):
    """Whether inputs ``x`` (..., in), after ``lead`` leading axes (an ensemble's E), lie in memory
    feature by feature (in, ...): a Linear layer's output (a view of y^T), what elementwise
    layers make of it, or a flattened convolution output (batch-last). The input gradient is
    then computed as ``gx^T = W^T gy^T``, in the same layout, so that the layer below (a ReLU's
    backward map) reads both in one order (docs/performance.md)."""
    return np.moveaxis(x, -1, lead).flags.c_contiguous and not x.flags.c_contiguous


class Linear(Layer):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.bias = bool(bias)
        self.param_shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            self.param_shapes["bias"] = (self.out_features,)

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias}

    def reset_parameters(self, rng):
        torch_default_init_(self.params["weight"], self.params.get("bias"), rng)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects inputs with last dimension {self.in_features}, got shape {x.shape}")
        yt = self.params["weight"] @ _rows(x).T  # y^T: OpenBLAS splits the (out, n) product better
        if self.bias:
            yt += self.params["bias"][:, None]
        return yt.T.reshape(*x.shape[:-1], self.out_features), x

    def backward(self, x, gy, grads, need_input_grad=True):
        if grads is not None:
            gy2 = _rows(gy)
            np.matmul(gy2.T, _rows(x), out=grads["weight"])
            if self.bias:
                np.sum(gy2, axis=0, out=grads["bias"])
        if not need_input_grad:
            return None
        if _feature_major(x):  # gx^T = W^T gy^T, so that gx lies in memory as x does
            return (self.params["weight"].T @ _rows(gy).T).T.reshape(x.shape)
        return gy @ self.params["weight"]

    def ensemble_forward(self, x):
        """``y[e] = x[e] W[e]^T + b[e]``, computed as ``y[e]^T = W[e] x[e]^T`` as :meth:`forward` does;
        inputs shared by every member (``np.broadcast_to``, :func:`~refplastic.nn.conv.shares_input`)
        in one product for all members."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects inputs with last dimension {self.in_features}, got shape {x.shape}")
        weight = self.params["weight"]
        if shares_input(x):  # every member reads the same inputs: one product (E out, in) @ (in, n)
            yt = (weight.reshape(-1, self.in_features) @ _rows(x[0]).T).reshape(len(x), self.out_features, -1)
        else:
            yt = weight @ _krows(x).transpose(0, 2, 1)  # (E, out, n)
        if self.bias:
            yt += self.params["bias"][:, :, None]
        return yt.transpose(0, 2, 1).reshape(*x.shape[:-1], self.out_features), x

    def ensemble_backward(self, x, gy, grads, need_input_grad=True):
        """``gW[e] = gy[e]^T x[e]``, ``gb[e] = sum_n gy[e]``; returns ``gx[e] = gy[e] W[e]`` if asked."""
        gy3 = _krows(gy)
        if grads is not None:
            if shares_input(x):  # one product (E out, n) @ (n, in)
                product = gy3.transpose(0, 2, 1).reshape(-1, gy3.shape[1]) @ _rows(x[0])
                grads["weight"][...] = product.reshape(grads["weight"].shape)
            else:
                np.matmul(gy3.transpose(0, 2, 1), _krows(x), out=grads["weight"])
            if self.bias:
                np.sum(gy3, axis=1, out=grads["bias"])
        if not need_input_grad:
            return None
        if _feature_major(x, lead=1):
            return (self.params["weight"].transpose(0, 2, 1) @ gy3.transpose(0, 2, 1)).transpose(0, 2, 1).reshape(x.shape)
        return (gy3 @ self.params["weight"]).reshape(x.shape)

    def forward_r(self, x, rx, v):
        k = v["weight"].shape[0]
        ry = _rows(x) @ v["weight"].transpose(0, 2, 1)  # (K, n, out)
        if rx is not None:
            ry += _krows(rx) @ self.params["weight"].T
        if self.bias:
            ry += v["bias"][:, None, :]
        return ry.reshape(k, *x.shape[:-1], self.out_features), (rx, v)

    def backward_r(self, x, rcache, gy, rgy, rgrads, need_input_grad=True):
        rx, v = rcache
        k = rgy.shape[0]
        rgy2 = _krows(rgy)  # (K, n, out)
        gy2 = _rows(gy)
        np.matmul(rgy2.transpose(0, 2, 1), _rows(x), out=rgrads["weight"])
        if rx is not None:
            rgrads["weight"] += gy2.T @ _krows(rx)
        if self.bias:
            np.sum(rgy2, axis=1, out=rgrads["bias"])
        if not need_input_grad:
            return None
        rgx = rgy2 @ self.params["weight"] + gy2 @ v["weight"]
        return rgx.reshape(k, *x.shape)
