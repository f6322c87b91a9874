"""The full Hessian ``H = d^2 L / d theta^2`` (P x P) from batched Hessian-vector products.

Column j is ``H e_j``; blocks of K unit directions go through one R-forward and R-backward along
the layers' tangent axis. A direction inside layer i's parameters has a zero tangent below
layer i, so its pass starts at layer i (``Rx = None``) and its R-backward stops there: it yields
only ``H[p, q]`` for q in layer i and p in layers i and above. The rest follows from symmetry,
``H[q, p] = H[p, q]``, so each pair of layers is computed once (about half the work of P full
HVPs).

The blocks of a layer with itself are computed directly and are symmetric only to rounding;
``asymmetry = max |H - H^T| / max |H|`` is reported, and with ``symmetrize`` (the default) the
result is ``(H + H^T) / 2``.
"""

import numpy as np

from .hvp import CurvatureBatch


def hessian(net, loss, x, t, block_size=64, symmetrize=True, progress=None, return_asymmetry=False):
    """The P x P Hessian of the loss on the batch ``(x, t)``; buffers are left unchanged.

    ``block_size`` directions go through each pass. ``progress(done, total)`` is called after each
    block, counting directions. With ``return_asymmetry`` returns ``(H, asymmetry)``.
    """
    batch = CurvatureBatch(net, loss, x, t)
    P = batch.num_parameters
    H = np.empty((P, P), net.dtype)
    scale, asymmetry, done = np.finfo(H.dtype).tiny, 0.0, 0
    units = np.zeros((block_size, P), net.dtype)  # rows e_a .. e_(b-1), reset after each block
    for start, (lo, hi) in _layer_parameter_ranges(net):
        for a in range(lo, hi, block_size):
            b = min(hi, a + block_size)
            V, ones = units[:b - a], (np.arange(b - a), np.arange(a, b))
            V[ones] = 1
            rz, rcaches = batch.r_forward(V, start)
            batch.r_backward(rcaches, batch.output_hvp(rz), H[a:b], start)
            V[ones] = 0
            written = H[a:b, lo:]
            scale = max(scale, float(written.max()), -float(written.min()))
            done += b - a
            if progress is not None:
                progress(done, P)
        H[lo:hi, :lo] = H[:lo, lo:hi].T
        diagonal = H[lo:hi, lo:hi]
        asymmetry = max(asymmetry, float(np.max(np.abs(diagonal - diagonal.T))))
        if symmetrize:
            diagonal[...] = (diagonal + diagonal.T) / 2
    asymmetry /= scale
    return (H, asymmetry) if return_asymmetry else H


def _layer_parameter_ranges(net):
    """``[(layer index, (start, stop)), ...]`` of the flat-vector range of each layer with parameters."""
    out, offset = [], 0
    for i, layer in enumerate(net.layers):
        size = sum(int(np.prod(s)) for s in layer.param_shapes.values())
        if size:
            out.append((i, (offset, offset + size)))
        offset += size
    return out
