"""The full Hessian ``H = d^2 L / d theta^2`` (P x P) from batched Hessian-vector products.

Column j is ``H e_j``; blocks of K unit directions go through one R-forward and R-backward along
the layers' tangent axis. A direction inside layer i's parameters has a zero tangent below
layer i, so its pass starts at layer i (``Rx = None``) and its R-backward stops there: it yields
only ``H[p, q]`` for q in layer i and p in layers i and above. The rest follows from symmetry,
``H[q, p] = H[p, q]``, so each pair of layers is computed once (about half the work of P full
HVPs).

Linear layers under an MLP top. When layer i is a Linear layer on inputs x of shape (N, in),
every layer above is Linear or elementwise and the loss's output Hessian H_z is block diagonal
over examples (all built-in losses), the unit directions of layer i factor: with
``X = [x, 1]`` (N x B, the 1 for the bias), the direction of ``W[a, b]`` (or of ``b[a]``) moves
layer i's output by ``X[n, b] e_a`` for example n, and everything above is linear in that tangent
and acts example by example. So one R-pass with the ``out`` tangents ``E_a`` (``e_a`` for every
example) gives, for each layer above and each example, the R-quantities ``Rx_a``, ``R{gy}_a``;
the Hessian rows are their example sums weighted by ``X[n, b]``. For a Linear layer u above
(input ``x_u``, output cotangent ``gy_u``) and for layer i itself (where ``Rx = 0``):

    H[(a, b), W_u[c, d]] = sum_n X[n, b] (R{gy}_a[n, c] x_u[n, d] + gy_u[n, c] Rx_a[n, d])
    H[(a, b), b_u[c]]    = sum_n X[n, b] R{gy}_a[n, c]

each a few large matrix products: ``out`` directions pass through the layers instead of
``out * B``. Other layers take the unit-direction route.

The blocks B_i of a layer with itself are computed directly and are symmetric only to rounding
(the others are symmetric by construction); ``asymmetry = max_i max |B_i - B_i^T| / max_i max |B_i|``
is reported, and with ``symmetrize`` (the default) each B_i is replaced by ``(B_i + B_i^T) / 2``.
"""

import numpy as np

from ..nn.activations import Elementwise
from ..nn.linear import Linear
from ..nn.losses import CrossEntropyLoss, HuberLoss, MSELoss
from .hvp import CurvatureBatch


def hessian(net, loss, x, t, block_size=64, symmetrize=True, progress=None, return_asymmetry=False, batch=None):
    """The P x P Hessian of the loss on the batch ``(x, t)``; buffers are left unchanged.

    ``block_size`` directions (or output units of a Linear layer) go through each pass.
    ``progress(done, total)`` is called after each layer's rows, counting directions. With
    ``return_asymmetry`` returns ``(H, asymmetry)``. ``batch``: an existing
    :class:`CurvatureBatch` for the same batch to reuse (then x and t are ignored).
    """
    batch = CurvatureBatch(net, loss, x, t) if batch is None else batch
    P = batch.num_parameters
    H = np.empty((P, P), net.dtype)
    scale, asymmetry = np.finfo(H.dtype).tiny, 0.0
    ranges = _layer_parameter_ranges(net)
    for start, (lo, hi) in ranges:
        if _factors(batch, start):
            _linear_rows(batch, start, ranges, block_size, H)
        else:
            _unit_direction_rows(batch, start, lo, hi, block_size, H)
        if progress is not None:
            progress(hi, P)
        H[lo:hi, :lo] = H[:lo, lo:hi].T
        block, transposed = H[lo:hi, lo:hi], H[lo:hi, lo:hi].T.copy()
        skew = np.subtract(block, transposed)
        asymmetry = max(asymmetry, float(skew.max()), -float(skew.min()))
        scale = max(scale, float(block.max()), -float(block.min()))
        if symmetrize:  # (B + B^T) / 2, exactly symmetric since + commutes
            block += transposed
            block *= 0.5
    asymmetry /= scale
    return (H, asymmetry) if return_asymmetry else H


def _unit_direction_rows(batch, start, lo, hi, block_size, H):
    """``H[lo:hi, lo:]`` by R-passes of unit directions from layer ``start`` up and back."""
    units = np.zeros((min(block_size, hi - lo), batch.num_parameters), batch.net.dtype)
    for a in range(lo, hi, block_size):
        b = min(hi, a + block_size)
        V, ones = units[:b - a], (np.arange(b - a), np.arange(a, b))
        V[ones] = 1
        rz, rcaches = batch.r_forward(V, start)
        batch.r_backward(rcaches, batch.output_hvp(rz), H[a:b], start)
        V[ones] = 0


def _factors(batch, start):
    """Whether the rows of layer ``start`` factor as in the module docstring."""
    layers = batch.net.layers
    return (isinstance(layers[start], Linear) and batch.caches[start].ndim == 2
            and all(isinstance(layer, (Linear, Elementwise)) for layer in layers[start + 1:])
            and isinstance(batch.loss, (MSELoss, HuberLoss, CrossEntropyLoss)))


def _linear_rows(batch, start, ranges, block_size, H):
    """``H[rows of Linear layer start, columns of layers start and above]`` by the factored passes."""
    net, layers, dtype = batch.net, batch.net.layers, batch.net.dtype
    x = batch.caches[start]
    n, (out, d) = x.shape[0], layers[start].params["weight"].shape
    X = np.concatenate([x, np.ones((n, 1), dtype)], axis=1) if layers[start].bias else x
    columns = dict(ranges)
    lo = columns[start][0]
    weight_rows = H[lo:lo + out * d].reshape(out, d, -1)  # [a, b]: the row of W[a, b]
    bias_rows = H[lo + out * d:lo + out * d + out] if layers[start].bias else None  # [a]: the row of b[a]
    for a0 in range(0, out, block_size):
        a1 = min(out, a0 + block_size)
        k = a1 - a0
        r = np.zeros((k, n, out), dtype)
        r[np.arange(k), :, np.arange(a0, a1)] = 1
        zero = net.unflatten(np.zeros((k, net.num_parameters), dtype))
        inputs, rcaches = {}, {}
        for u in range(start + 1, len(layers)):
            inputs[u] = r
            r, rcaches[u] = layers[u].forward_r(batch.caches[u], r, zero[u])
        rg = batch.output_hvp(r)
        scratch = net.unflatten(np.empty((k, net.num_parameters), dtype))
        for u in range(len(layers) - 1, start - 1, -1):
            if isinstance(layers[u], Linear):
                u_input = x if u == start else batch.caches[u]
                sums = _weighted_sums(X, u_input, batch.gys[u], rg, inputs.get(u))
                _put(sums, layers[u], columns[u], weight_rows[a0:a1], None if bias_rows is None else bias_rows[a0:a1])
            if u > start:
                rg = layers[u].backward_r(batch.caches[u], rcaches[u], batch.gys[u], rg, scratch[u])


def _weighted_sums(X, xu, gy, rgy, rx):
    """``(S_W, S_b)`` with ``S_W[a, c, b, d] = sum_n X[n, b] (R{gy}[a, n, c] x_u[n, d] + gy[n, c] Rx[a, n, d])``
    and ``S_b[a, c, b] = sum_n X[n, b] R{gy}[a, n, c]``."""
    k, n, out = rgy.shape
    B, d = X.shape[1], xu.shape[1]
    rgy_t = rgy.transpose(0, 2, 1)  # (K, out, N)
    sums_w = (rgy_t.reshape(k * out, n) @ (X[:, :, None] * xu[:, None, :]).reshape(n, B * d)).reshape(k, out, B, d)
    if rx is not None:
        xg = (X[:, :, None] * gy[:, None, :]).reshape(n, B * out)
        sums_w += (xg.T @ rx.transpose(1, 0, 2).reshape(n, k * d)).reshape(B, out, k, d).transpose(2, 1, 0, 3)
    return sums_w, rgy_t @ X


def _put(sums, layer, columns, weight_rows, bias_rows):
    """Write the sums into the rows of the start layer's weight (K, in, P) and bias (K, P) for the
    columns of ``layer`` (its weight, then its bias)."""
    sums_w, sums_b = sums
    c0, c1 = columns
    out_u, d_u = layer.params["weight"].shape
    cw = c0 + out_u * d_u
    d = weight_rows.shape[1]
    weight_rows[:, :, c0:cw].reshape(*weight_rows.shape[:2], out_u, d_u)[...] = sums_w[:, :, :d].transpose(0, 2, 1, 3)
    if layer.bias:
        weight_rows[:, :, cw:c1] = sums_b[:, :, :d].transpose(0, 2, 1)
    if bias_rows is not None:
        bias_rows[:, c0:cw].reshape(-1, out_u, d_u)[...] = sums_w[:, :, d]
        if layer.bias:
            bias_rows[:, cw:c1] = sums_b[:, :, d]


def _layer_parameter_ranges(net):
    """``[(layer index, (start, stop)), ...]`` of the flat-vector range of each layer with parameters."""
    out, offset = [], 0
    for i, layer in enumerate(net.layers):
        size = sum(int(np.prod(s)) for s in layer.param_shapes.values())
        if size:
            out.append((i, (offset, offset + size)))
        offset += size
    return out
