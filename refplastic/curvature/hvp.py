"""Hessian-vector products by Pearlmutter's R-operator, forward over reverse, written by hand.

For the loss ``L(theta) = loss(f(x; theta), t)`` of one batch, ``H = d^2 L / d theta^2`` and a
direction ``v``, ``R{.} = d/dr (.)(theta + r v)|_{r=0}`` applied to the backward pass gives

    H v = R{grad L}:  Rz = J v (R-forward up the layers),  R{gz} = (d^2 L / dz^2) Rz + 0,
                      then each layer's R-backward down to the first (see refplastic.nn.layer).

The primal forward and backward passes do not depend on ``v``: :class:`CurvatureBatch` runs them
once and keeps every layer's cache and output cotangent ``gy``, so each further product costs one
R-forward and one R-backward. K directions (rows of V, shape (K, P)) go through in one pass along
the layers' leading tangent axis.

The same two passes give the other exact products (J the Jacobian of the outputs z of the whole
batch with respect to theta, H_z = d^2 L / dz^2):

    jvp      J V                    R-forward only
    vjp      J^T U                  R-backward with every cotangent ``gy`` set to 0: the
                                    second-order terms of each layer are linear in ``gy``
                                    and vanish, leaving the transposed Jacobian
    ggn_vp   J^T H_z J V            R-forward, H_z, then that R-backward

Train-mode BatchNorm moves its running statistics in ``forward``; the batch's forward pass runs
inside :func:`preserved_buffers`, so the network's buffers are as they were, while the curvature
is that of the train-mode loss (batch statistics), as torch computes it. Likewise a train-mode
SpectralNormLinear's power iteration runs once, in that forward pass, and the curvature is that of
the loss with the u and v it leaves, held constant (as torch's derivatives hold them).
A batch stays valid while the parameters stay as they were when it was made.
"""

import contextlib
import functools

import numpy as np


@contextlib.contextmanager
def preserved_buffers(net):
    """Restore every buffer (BatchNorm running statistics, spectral-norm u and v) of ``net`` on exit."""
    saved = [(a, a.copy()) for _, a in net.named_buffers()]
    try:
        yield net
    finally:
        for array, copy in saved:
            array[...] = copy


class CurvatureBatch:
    """The forward and backward pass of ``net`` on ``(x, t)``, kept for exact curvature products.

    With ``loss=None`` (and any ``t``) only the Jacobian products ``jvp`` and ``vjp`` are meaningful.

    Attributes: ``value`` (the loss L), ``z`` (outputs), ``grad`` (dL/dtheta, shape (P,), computed
    on first use).
    Every product takes directions of shape (P,) or (K, P) and returns the same leading shape.
    """

    def __init__(self, net, loss, x, t):
        self.net, self.loss = net, loss
        with preserved_buffers(net):
            self.z, self.caches = net.forward_cached(x)
        if loss is None:  # only the Jacobian products (jvp, vjp) are available
            self.value, self.loss_cache, self.gz = None, None, np.zeros_like(self.z)
        else:
            self.value, self.loss_cache = loss.forward(self.z, t)
            self.gz = loss.backward(self.loss_cache)
        self.gys = [None] * len(net.layers)  # gys[i]: cotangent of layer i's output
        g = self.gz
        for i in range(len(net.layers) - 1, -1, -1):
            self.gys[i] = g
            g = net.layers[i].backward(self.caches[i], g, None, need_input_grad=i > 0)

    @functools.cached_property
    def grad(self):
        """``dL/dtheta`` (P,), from the kept cotangents: products need only those, so it is
        computed on first use."""
        grad = np.empty(self.net.num_parameters, self.net.dtype)
        for layer, cache, gy, grads in zip(self.net.layers, self.caches, self.gys, self.net.unflatten(grad)):
            layer.backward(cache, gy, grads, need_input_grad=False)
        return grad

    @functools.cached_property
    def zero_gys(self):
        """Zero cotangents in the shapes of ``gys``: the R-backward then gives ``J^T R{gz}``."""
        return [np.zeros_like(g) for g in self.gys]

    @property
    def num_parameters(self):
        return self.net.num_parameters

    @property
    def num_outputs(self):
        """Number of entries of z for the whole batch (N * D)."""
        return self.z.size

    def _directions(self, V):
        V = np.asarray(V, dtype=self.net.dtype)
        if V.shape[-1:] != (self.num_parameters,) or V.ndim not in (1, 2):
            raise ValueError(f"directions must have shape ({self.num_parameters},) or "
                             f"(K, {self.num_parameters}), got {V.shape}")
        return np.atleast_2d(V), V.ndim == 1

    def r_forward(self, V, start=0):
        """``(Rz, rcaches)`` for directions V (K, P) whose entries below layer ``start`` are zero."""
        vs = self.net.unflatten(V)
        r, rcaches = None, [None] * len(self.net.layers)
        for i in range(start, len(self.net.layers)):
            r, rcaches[i] = self.net.layers[i].forward_r(self.caches[i], r, vs[i])
        return r, rcaches

    def r_backward(self, rcaches, rgz, out, start=0, gys=None):
        """R-backward from the outputs down to layer ``start``, writing R{dL/dtheta} into ``out``.

        Only the parameters of layers ``start`` and above are written. ``gys=self.zero_gys``
        drops every second-order term, giving ``J^T rgz``.
        """
        gys = self.gys if gys is None else gys
        rgrads = self.net.unflatten(out)
        rg = rgz
        for i in range(len(self.net.layers) - 1, start - 1, -1):
            rg = self.net.layers[i].backward_r(self.caches[i], rcaches[i], gys[i], rg, rgrads[i],
                                               need_input_grad=i > start)
        return out

    def output_hvp(self, rz):
        """``(d^2 L / dz^2) Rz`` for tangents Rz of shape (K, *z.shape)."""
        return self.loss.backward_r(self.loss_cache, rz)

    def hvp(self, V):
        """``H V``: rows are Hessian-vector products."""
        V, single = self._directions(V)
        rz, rcaches = self.r_forward(V)
        out = self.r_backward(rcaches, self.output_hvp(rz), np.empty_like(V))
        return out[0] if single else out

    def jvp(self, V):
        """``J V`` of shape (K, *z.shape) (or z.shape for one direction)."""
        V, single = self._directions(V)
        rz, _ = self.r_forward(V)
        return rz[0] if single else rz

    def vjp(self, U):
        """``J^T U`` (K, P) for output cotangents U of shape (K, *z.shape) (or z.shape)."""
        U = np.asarray(U, dtype=self.net.dtype)
        single = U.shape == self.z.shape
        U = U[None] if single else U
        if U.shape[1:] != self.z.shape:
            raise ValueError(f"cotangents must have shape {self.z.shape} or (K, *{self.z.shape}), got {U.shape}")
        zero = np.zeros((U.shape[0], self.num_parameters), self.net.dtype)
        _, rcaches = self.r_forward(zero)
        out = self.r_backward(rcaches, U, np.empty_like(zero), gys=self.zero_gys)
        return out[0] if single else out

    def ggn_vp(self, V):
        """``G V = J^T H_z J V``, the generalised Gauss-Newton matrix applied to V."""
        V, single = self._directions(V)
        rz, rcaches = self.r_forward(V)
        out = self.r_backward(rcaches, self.output_hvp(rz), np.empty_like(V), gys=self.zero_gys)
        return out[0] if single else out


def hvp(net, loss, x, t, V):
    """``H V`` for the batch ``(x, t)``; V of shape (P,) or (K, P). Buffers are left unchanged.

    For many products on one batch, make a :class:`CurvatureBatch` once and call its ``hvp``.
    """
    return CurvatureBatch(net, loss, x, t).hvp(V)
