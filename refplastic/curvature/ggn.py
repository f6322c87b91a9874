"""The generalised Gauss-Newton matrix ``G = J^T H_z J``.

With z the outputs of the whole batch (M = N * D entries), ``J = dz/dtheta`` (M x P) and
``H_z = d^2 L / dz^2`` (M x M, block diagonal over examples for the built-in losses):

    G v = J^T (H_z (J v))      one R-forward, the loss's output Hessian, one R-backward without
                               second-order terms (see refplastic.curvature.hvp)
    G   = J^T (H_z J)          from the full Jacobian: columns ``H_z J e_p``, then one product

G is the Hessian without the terms ``sum_m (dL/dz_m) d^2 z_m / dtheta^2``; it is positive
semi-definite when H_z is (MSE, cross-entropy, Huber).
"""

from .hvp import CurvatureBatch
from .jacobian import jacobian


def ggn_vp(net, loss, x, t, V):
    """``G V`` for V of shape (P,) or (K, P); buffers are left unchanged.

    For many products on one batch, make a :class:`CurvatureBatch` once and call its ``ggn_vp``.
    """
    return CurvatureBatch(net, loss, x, t).ggn_vp(V)


def ggn(net, loss, x, t, block_size=256, mode="auto", batch=None, J=None):
    """The P x P Gauss-Newton matrix, symmetric (``(A + A^T) / 2`` of the product).

    ``batch``: an existing :class:`CurvatureBatch` for the same batch to reuse (then x and t are
    ignored); ``J``: its Jacobian, if already computed.
    """
    batch = CurvatureBatch(net, loss, x, t) if batch is None else batch
    J = jacobian(net, None, block_size, mode, batch=batch) if J is None else J
    P = batch.num_parameters
    HJ = batch.output_hvp(J.T.reshape(P, *batch.z.shape)).reshape(P, -1)  # row p: H_z J e_p
    G = HJ @ J
    return (G + G.T) / 2
