"""Max pooling that records where each maximum is, and the gather and scatter through that record.

For planes ``x`` of shape (M, H, W), kernel (kh, kw), stride (sh, sw) and implicit ``-inf``
padding (ph, pw), output (oy, ox) scans the window ``iy = oy sh - ph + i``, ``ix = ox sw - pw + j``
(i < kh, j < kw, inside the plane) row by row, exactly as PyTorch's CPU kernel does:

    best, argmax = -inf, first position of the window
    for each position p in scan order:  if x[p] > best or x[p] is NaN:  best, argmax = x[p], p
    y[m, oy, ox] = best,   argmax[m, oy, ox] = iy W + ix  (flat index in the plane)

so ties go to the first maximal element and a NaN propagates. Then, for K tangents,

    gather(t, argmax)[k, m, o]  = t[k, m].flat[argmax[m, o]]
    scatter(g, argmax)[k, m, p] = sum of g[k, m, o] over the outputs o with argmax[m, o] = p

``scatter`` is the adjoint of ``gather``.
"""

import numpy as np
from numba import njit

from .im2col import conv_output_hw, conv_output_size


@njit(cache=True)
def _maxpool(x, kh, kw, sh, sw, ph, pw, y, argmax):
    M, H, W = x.shape
    OH, OW = y.shape[1:]
    for m in range(M):
        for oy in range(OH):
            y0 = max(oy * sh - ph, 0)
            y1 = min(oy * sh - ph + kh, H)
            for ox in range(OW):
                x0 = max(ox * sw - pw, 0)
                x1 = min(ox * sw - pw + kw, W)
                best = -np.inf
                arg = y0 * W + x0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        value = x[m, iy, ix]
                        if value > best or np.isnan(value):
                            best = value
                            arg = iy * W + ix
                y[m, oy, ox] = best
                argmax[m, oy, ox] = arg


@njit(cache=True)
def _gather(t, argmax, out):
    K, M = t.shape[:2]
    for k in range(K):
        for m in range(M):
            for o in range(argmax.shape[1]):
                out[k, m, o] = t[k, m, argmax[m, o]]


@njit(cache=True)
def _scatter(g, argmax, out):
    K, M = g.shape[:2]
    out[...] = 0
    for k in range(K):
        for m in range(M):
            for o in range(argmax.shape[1]):
                out[k, m, argmax[m, o]] += g[k, m, o]


def maxpool(x, kernel, stride, padding):
    """``(y, argmax)``, both of shape (M, OH, OW), for planes ``x`` of shape (M, H, W)."""
    M, H, W = x.shape
    oh, ow = conv_output_hw((H, W), kernel, stride, padding)
    y = np.empty((M, oh, ow), x.dtype)
    argmax = np.empty((M, oh, ow), np.int64)
    _maxpool(np.ascontiguousarray(x), *kernel, *stride, *padding, y, argmax)
    return y, argmax


def gather(t, argmax):
    """``t`` (K, M, H, W) read at ``argmax`` (M, OH, OW): shape (K, M, OH, OW). Any plane shapes do:
    ``t[k, m]`` is read at the flat positions ``argmax[m]``."""
    K, M = t.shape[:2]
    out = np.empty((K, M, argmax[0].size), t.dtype)
    _gather(np.ascontiguousarray(t).reshape(K, M, -1), argmax.reshape(M, -1), out)
    return out.reshape(K, *argmax.shape)


def scatter(g, argmax, hw):
    """``g`` (K, M, OH, OW) summed into planes of shape ``hw`` at ``argmax``: shape (K, M, H, W)."""
    K, M = g.shape[:2]
    out = np.empty((K, M, hw[0] * hw[1]), g.dtype)
    _scatter(np.ascontiguousarray(g).reshape(K, M, -1), argmax.reshape(M, -1), out)
    return out.reshape(K, M, *hw)


def maxpool_naive(x, kernel, stride, padding):
    """NumPy twin of :func:`maxpool`: the same scan, one window position at a time for all outputs."""
    M, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    oy = np.arange(oh)[:, None] * sh - ph
    ox = np.arange(ow)[None, :] * sw - pw
    best = np.full((M, oh, ow), -np.inf, x.dtype)
    argmax = np.broadcast_to(np.maximum(oy, 0) * W + np.maximum(ox, 0), (M, oh, ow)).copy()
    for i in range(kh):
        for j in range(kw):
            value = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            better = (value > best) | np.isnan(value)  # never at the -inf padding
            best = np.where(better, value, best)
            argmax = np.where(better, (oy + i) * W + ox + j, argmax)
    return best, argmax


def gather_naive(t, argmax):
    """NumPy twin of :func:`gather`."""
    K, M = t.shape[:2]
    flat = np.take_along_axis(t.reshape(K, M, -1), argmax.reshape(1, M, -1), axis=2)
    return flat.reshape(K, *argmax.shape)


def scatter_naive(g, argmax, hw):
    """NumPy twin of :func:`scatter`."""
    K, M = g.shape[:2]
    out = np.zeros((K, M, hw[0] * hw[1]), g.dtype)
    k, m, _ = np.indices((K, M, argmax[0].size))
    np.add.at(out, (k, m, np.broadcast_to(argmax.reshape(1, M, -1), k.shape)), g.reshape(K, M, -1))
    return out.reshape(K, M, *hw)
