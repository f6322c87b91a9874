"""The math shared by LayerNorm and BatchNorm: standardise over axes A, then an affine map.

With means over the normalised axes A (``mean_A``, kept as broadcastable axes),

    xc = x - mean_A(x),   r = (mean_A(xc^2) + eps)^(-1/2),   xhat = xc r,   y = gamma xhat + beta,

and gamma, beta constant along the other axes B, over which their gradients are summed
(``sum_B``). The Jacobian of ``x -> xhat`` is the symmetric operator

    S g = r (g - mean_A(g) - xhat mean_A(xhat g)),

so it serves both as the JVP (``R{xhat} = S Rx``) and as the VJP (``gx = S gxhat``). Its
derivative along Rx, with ``R{r} = -r^2 mean_A(xhat Rx)``, is

    (dS/dx Rx) g = -r (R{xhat} mean_A(xhat g) + xhat mean_A(R{xhat} g)) - r mean_A(xhat Rx) S g.

When the statistics are fixed (BatchNorm in eval mode, with running mean and variance) the map
is affine in x and ``S g = r g`` with no derivative.

The four maps of :class:`Normalization`, with ``(Vgamma, Vbeta)`` the parameter direction:

    forward     y      = gamma xhat + beta
    backward    gx     = S (gamma gy),                     ggamma = sum_B(gy xhat),   gbeta = sum_B(gy)
    forward_r   Ry     = gamma R{xhat} + Vgamma xhat + Vbeta,   R{xhat} = S Rx
    backward_r  R{gx}  = S (gamma Rgy + Vgamma gy) + (dS/dx Rx)(gamma gy),
                R{ggamma} = sum_B(Rgy xhat + gy R{xhat}),   R{gbeta} = sum_B(Rgy)

Axes are negative, counted from the end, so that the same axes address a primal array and a
tangent with its leading tangent axis K (see :mod:`refplastic.nn.layer`).

An ensemble's maps are ``forward`` and ``backward`` with the statistics and the parameters per
member: for inputs (E, N, ...) the axes A and B are member e's axes of ``x[e]``, so that neither
runs over the ensemble axis, and gamma, beta (and BatchNorm's running statistics) are (E, ...).
"""

from typing import NamedTuple

import numpy as np

from .layer import Layer


def mean(a, axes):
    """``mean_A(a)`` with the reduced axes kept, so that it broadcasts against ``a``."""
    return a.mean(axis=axes, keepdims=True)


def standardize(x, axes, eps):
    """``(xhat, r, mean_A(x), var_A(x))`` with the biased variance ``var_A(x) = mean_A(xc^2)``."""
    mu = mean(x, axes)
    xc = x - mu
    var = mean(xc * xc, axes)
    r = 1 / np.sqrt(var + eps)
    return xc * r, r, mu, var


def standardize_jacobian(g, xhat, r, axes):
    """``S g = r (g - mean_A(g) - xhat mean_A(xhat g))``, the (symmetric) Jacobian of ``x -> xhat``."""
    return r * (g - mean(g, axes) - xhat * mean(xhat * g, axes))


def standardize_curvature(g, xhat, r, rx, rxhat, axes):
    """``(dS/dx Rx) g = -r (Rxhat mean_A(xhat g) + xhat mean_A(Rxhat g)) - r mean_A(xhat Rx) S g``."""
    sg = standardize_jacobian(g, xhat, r, axes)
    return -r * (rxhat * mean(xhat * g, axes) + xhat * mean(rxhat * g, axes) + mean(xhat * rx, axes) * sg)


class Standardized(NamedTuple):
    """The forward cache: ``xhat`` and ``r``; ``stat_axes`` A (``None`` for fixed statistics, where
    ``S g = r g``); ``param_axes`` B, the axes along which gamma and beta are constant."""

    xhat: np.ndarray
    r: np.ndarray
    stat_axes: tuple | None
    param_axes: tuple


class Normalization(Layer):
    """``y = gamma xhat + beta`` with the four maps above.

    Subclasses set ``param_shapes`` ("weight" for gamma, optionally "bias" for beta; no bias
    without a weight, as in torch) and implement :meth:`standardize`, which returns a
    :class:`Standardized` for the input and may update running statistics.
    """

    def standardize(self, x, ensemble=False):
        """The :class:`Standardized` input; with ``ensemble``, x has a leading ensemble axis, which
        the axes A and B leave out."""
        raise NotImplementedError

    @staticmethod
    def _jacobian(s, g):
        """``S g``."""
        return s.r * g if s.stat_axes is None else standardize_jacobian(g, s.xhat, s.r, s.stat_axes)

    def _param(self, a, s, tangent=False):
        """Parameter ``a`` (or a tangent, with leading axis K) shaped to broadcast against x."""
        nd = s.xhat.ndim
        shape = tuple(1 if i - nd in s.param_axes else n for i, n in enumerate(s.xhat.shape))
        return a.reshape(a.shape[:1] + shape if tangent else shape)

    def _gamma_times(self, a, s):
        """``gamma a`` (just ``a`` without a weight)."""
        return a * self._param(self.params["weight"], s) if "weight" in self.params else a

    def forward(self, x):
        return self._affine(self.standardize(x))

    def ensemble_forward(self, x):
        return self._affine(self.standardize(x, ensemble=True))

    def _affine(self, s):
        """``(gamma xhat + beta, s)``."""
        if "weight" not in self.params:
            return s.xhat.copy(), s
        y = s.xhat * self._param(self.params["weight"], s)
        if "bias" in self.params:
            y += self._param(self.params["bias"], s)
        return y, s

    def backward(self, s, gy, grads, need_input_grad=True):
        if grads is not None and "weight" in self.params:
            np.sum(gy * s.xhat, axis=s.param_axes, out=grads["weight"])
        if grads is not None and "bias" in self.params:
            np.sum(gy, axis=s.param_axes, out=grads["bias"])
        return self._jacobian(s, self._gamma_times(gy, s)) if need_input_grad else None

    ensemble_backward = backward  # the cache's axes are member e's, and the parameters (E, ...)

    def forward_r(self, s, rx, v):
        rxhat = None if rx is None else self._jacobian(s, rx)
        if "weight" not in self.params:
            return rxhat, (rx, rxhat, v)
        ry = s.xhat * self._param(v["weight"], s, tangent=True)
        if rxhat is not None:
            ry += self._gamma_times(rxhat, s)
        if "bias" in self.params:
            ry += self._param(v["bias"], s, tangent=True)
        return ry, (rx, rxhat, v)

    def backward_r(self, s, rcache, gy, rgy, rgrads, need_input_grad=True):
        rx, rxhat, v = rcache
        if "weight" in self.params:
            rggamma = rgy * s.xhat if rxhat is None else rgy * s.xhat + gy * rxhat
            np.sum(rggamma, axis=s.param_axes, out=rgrads["weight"])
        if "bias" in self.params:
            np.sum(rgy, axis=s.param_axes, out=rgrads["bias"])
        if not need_input_grad:
            return None
        rgxhat = self._gamma_times(rgy, s)
        if "weight" in self.params:
            rgxhat += self._param(v["weight"], s, tangent=True) * gy
        rgx = self._jacobian(s, rgxhat)
        if rx is not None and s.stat_axes is not None:
            rgx += standardize_curvature(self._gamma_times(gy, s), s.xhat, s.r, rx, rxhat, s.stat_axes)
        return rgx
