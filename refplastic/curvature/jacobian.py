"""The output Jacobian ``J = dz / dtheta`` of the whole batch and the empirical NTK ``J J^T``.

z holds the network outputs for all N examples, flattened in C order to M = N * D entries, so

    J[m, p] = d z_m / d theta_p                      shape (M, P)
    NTK     = J J^T,  NTK[m, m'] = <dz_m/dtheta, dz_m'/dtheta>    shape (M, M)

(with D outputs per example, ``NTK.reshape(N, D, N, D)[n, d, n', d']`` pairs example n's output
d with example n''s output d'). J is built exactly from blocks of unit vectors, either
forward (columns ``J e_p``, one R-forward per block of K parameters) or reverse (rows
``J^T e_m``, one R-backward per block of K outputs); ``mode="auto"`` takes reverse when
``3 M < P``, an R-backward with its R-forward costing about three R-forwards. With train-mode
BatchNorm an output depends on every example of the batch, and J says so.
"""

import numpy as np

from .hvp import CurvatureBatch


def jacobian(net, x, block_size=256, mode="auto", batch=None):
    """J of shape (N * D, P) for inputs x; buffers are left unchanged.

    ``batch``: an existing :class:`CurvatureBatch` for the same x to reuse (then x is ignored).
    """
    batch = CurvatureBatch(net, None, x, None) if batch is None else batch
    P, M = batch.num_parameters, batch.num_outputs
    if mode == "auto":
        mode = "reverse" if 3 * M < P else "forward"
    J = np.empty((M, P), net.dtype)
    if mode == "forward":
        for a in range(0, P, block_size):
            b = min(P, a + block_size)
            J[:, a:b] = batch.jvp(_unit_rows(a, b, P, net.dtype)).reshape(b - a, M).T
    elif mode == "reverse":
        for a in range(0, M, block_size):
            b = min(M, a + block_size)
            J[a:b] = batch.vjp(_unit_rows(a, b, M, net.dtype).reshape(b - a, *batch.z.shape))
    else:
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    return J


def ntk(net, x, block_size=256, mode="auto", batch=None):
    """The empirical neural tangent kernel ``J J^T`` of shape (N * D, N * D); ``batch`` as in :func:`jacobian`."""
    return gram(jacobian(net, x, block_size, mode, batch=batch))


GRAM_ROWS = 2048


def gram(J, rows=GRAM_ROWS):
    """``J J^T``, computed ``rows`` rows at a time (the same products, the same numbers).

    One product with a 20480 x 20480 result (an NTK of 2048 examples of 10 outputs) crashes
    OpenBLAS 0.3.31 with two threads on this project's machine (SIGSEGV inside the library);
    products of 2048 result rows do not (measured).
    """
    out = np.empty((len(J), len(J)), dtype=J.dtype)
    for start in range(0, len(J), rows):
        np.matmul(J[start:start + rows], J.T, out=out[start:start + rows])
    return out


def _unit_rows(a, b, size, dtype):
    """Rows ``e_a, ..., e_{b-1}`` of the identity of order ``size``."""
    E = np.zeros((b - a, size), dtype)
    E[np.arange(b - a), np.arange(a, b)] = 1
    return E
