"""Elementwise activations ``y = phi(x)`` and their four maps.

For an elementwise map the Jacobian is diagonal, so with ``phi'`` and ``phi''`` evaluated at x:

    forward     y   = phi(x)
    backward    gx  = gy phi'(x)
    forward_r   Ry  = phi'(x) Rx
    backward_r  Rgx = Rgy phi'(x) + gy phi''(x) Rx

ReLU and LeakyReLU are piecewise linear: ``phi'' = 0`` almost everywhere, and at the kink we take
PyTorch's one-sided choice ``phi'(0) = slope of the left piece``.

Elementwise maps have no parameters and ignore shapes, so an ensemble's maps are the same two
maps applied to its whole (E, N, ...) arrays.
"""

import numpy as np

from ..kernels.gelu import gelu, gelu_d1, gelu_d2, gelu_tanh, gelu_tanh_d1, gelu_tanh_d2
from ..kernels.relu import relu, relu_backward
from .arguments import finite_float
from .layer import Layer


class Elementwise(Layer):
    """An activation given by ``phi``, ``d1 = phi'`` and ``d2 = phi''`` (``None`` if zero a.e.)."""

    def phi(self, x):
        raise NotImplementedError

    def d1(self, x, y):
        raise NotImplementedError

    def d2(self, x, y):
        return None

    def forward(self, x):
        y = self.phi(x)
        return y, (x, y)

    def backward(self, cache, gy, grads, need_input_grad=True):
        x, y = cache
        return gy * self.d1(x, y) if need_input_grad else None

    def ensemble_forward(self, x):
        return self.forward(x)

    def ensemble_backward(self, cache, gy, grads, need_input_grad=True):
        return self.backward(cache, gy, grads, need_input_grad)

    def forward_r(self, cache, rx, v):
        x, y = cache
        ry = None if rx is None else self.d1(x, y) * rx
        return ry, rx

    def backward_r(self, cache, rx, gy, rgy, rgrads, need_input_grad=True):
        if not need_input_grad:
            return None
        x, y = cache
        rgx = rgy * self.d1(x, y)
        if rx is not None:
            d2 = self.d2(x, y)
            if d2 is not None:
                rgx += gy * d2 * rx
        return rgx


class Identity(Elementwise):
    """``phi(x) = x``."""

    def phi(self, x):
        return x

    def d1(self, x, y):
        return np.ones_like(x)


class ReLU(Elementwise):
    """``phi(x) = max(x, 0)``, ``phi'(x) = [x > 0]``. ``inplace`` is accepted as in torch and has
    no effect: outputs are always new arrays. The forward and backward maps are fused kernels
    (:mod:`refplastic.kernels.relu`); the backward is 0 where ``x <= 0`` and ``gy`` elsewhere."""

    def __init__(self, inplace=False):
        super().__init__()

    def phi(self, x):
        return relu(x)

    def d1(self, x, y):
        return (x > 0).astype(x.dtype)

    def backward(self, cache, gy, grads, need_input_grad=True):
        x, _ = cache
        return relu_backward(x, gy) if need_input_grad else None


class LeakyReLU(Elementwise):
    """``phi(x) = x if x > 0 else s x``, ``phi'(x) = 1 if x > 0 else s`` (s = negative_slope).
    ``inplace`` is accepted as in torch and has no effect."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = finite_float(negative_slope, "negative_slope")

    def config(self):
        return {"negative_slope": self.negative_slope}

    def phi(self, x):
        return np.where(x > 0, x, x * self.negative_slope)

    def d1(self, x, y):
        return np.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)


class Tanh(Elementwise):
    """``phi = tanh``, ``phi' = 1 - y^2``, ``phi'' = -2 y (1 - y^2)``."""

    def phi(self, x):
        return np.tanh(x)

    def d1(self, x, y):
        return 1 - y * y

    def d2(self, x, y):
        return -2 * y * (1 - y * y)


class Sigmoid(Elementwise):
    """``phi(x) = 1 / (1 + e^-x)``, ``phi' = y (1 - y)``, ``phi'' = y (1 - y)(1 - 2y)``.

    Computed as ``1/(1+e^-|x|)`` or ``e^-|x|/(1+e^-|x|)`` by sign so that neither side overflows
    and tiny outputs keep full relative precision.
    """

    def phi(self, x):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))

    def d1(self, x, y):
        return y * (1 - y)

    def d2(self, x, y):
        return y * (1 - y) * (1 - 2 * y)


class GELU(Elementwise):
    """GELU, ``phi(x) = x Phi(x)`` with ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` (``approximate="none"``,
    torch's default), or torch's tanh approximation (``approximate="tanh"``).

    Exact: ``phi'(x) = Phi(x) + x p(x)`` and ``phi''(x) = p(x) (2 - x^2)``, ``p`` the standard
    normal density. The tanh form and its derivatives are in :mod:`refplastic.kernels.gelu`.
    """

    FORMS = {"none": (gelu, gelu_d1, gelu_d2), "tanh": (gelu_tanh, gelu_tanh_d1, gelu_tanh_d2)}

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in self.FORMS:
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._phi, self._d1, self._d2 = self.FORMS[approximate]

    def config(self):
        return {"approximate": self.approximate}

    def phi(self, x):
        return self._phi(x)

    def d1(self, x, y):
        return self._d1(x)

    def d2(self, x, y):
        return self._d2(x)
