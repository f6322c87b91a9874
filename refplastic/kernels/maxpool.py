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

*Lanes.* A convolution's output lies batch-last in memory, (C, H, W, N) (see
refplastic/nn/conv.py), so its images are the innermost axis. ``maxpool`` also takes
``x`` of shape (M, H, W, L): L lanes (images) pooled side by side, each exactly as above, with
``argmax[m, oy, ox, l] = (iy W + ix) L + l``, the flat index in the (H, W, L) block of plane m.
``gather`` and ``scatter`` then serve unchanged, with planes of H W L values.
"""

import numpy as np
from numba import njit

from .im2col import conv_output_hw, conv_output_size


@njit(inline="always")
def _window(o, stride, padding, kernel, size):
    """``(start, stop)``: the rows (or columns) of output position ``o``'s window inside the image."""
    return max(o * stride - padding, 0), min(o * stride - padding + kernel, size)


@njit(cache=True)
def _maxpool(x, kh, kw, sh, sw, ph, pw, y, argmax):
    M, H, W = x.shape
    OH, OW = y.shape[1:]
    for m in range(M):
        for oy in range(OH):
            y0, y1 = _window(oy, sh, ph, kh, H)
            for ox in range(OW):
                x0, x1 = _window(ox, sw, pw, kw, W)
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
def _maxpool_lanes(x, kh, kw, sh, sw, ph, pw, y, argmax):
    M, H, W, L = x.shape
    OH, OW = y.shape[1:3]
    for m in range(M):
        for oy in range(OH):
            y0, y1 = _window(oy, sh, ph, kh, H)
            for ox in range(OW):
                x0, x1 = _window(ox, sw, pw, kw, W)
                best, arg = y[m, oy, ox], argmax[m, oy, ox]
                first = (y0 * W + x0) * L
                for lane in range(L):
                    best[lane] = -np.inf
                    arg[lane] = first + lane
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        values, position = x[m, iy, ix], (iy * W + ix) * L
                        for lane in range(L):
                            value = values[lane]
                            if value > best[lane] or np.isnan(value):
                                best[lane] = value
                                arg[lane] = position + lane


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
    """``(y, argmax)``, both of shape (M, OH, OW), for planes ``x`` of shape (M, H, W); or both of
    shape (M, OH, OW, L) for planes of L lanes, ``x`` of shape (M, H, W, L)."""
    M, H, W = x.shape[:3]
    oh, ow = conv_output_hw((H, W), kernel, stride, padding)
    y = np.empty((M, oh, ow, *x.shape[3:]), x.dtype)
    argmax = np.empty(y.shape, np.int64)
    kernel_of_rank = _maxpool if x.ndim == 3 else _maxpool_lanes
    kernel_of_rank(np.ascontiguousarray(x), *kernel, *stride, *padding, y, argmax)
    return y, argmax


def gather(t, argmax):
    """``t`` (K, M, H, W) read at ``argmax`` (M, OH, OW): shape (K, M, OH, OW). Any plane shapes do:
    ``t[k, m]`` is read at the flat positions ``argmax[m]``."""
    K, M = t.shape[:2]
    out = np.empty((K, M, argmax[0].size), t.dtype)
    _gather(np.ascontiguousarray(t).reshape(K, M, -1), argmax.reshape(M, -1), out)
    return out.reshape(K, *argmax.shape)


def scatter(g, argmax, plane):
    """``g`` (K, M, OH, OW) summed into planes of shape ``plane`` (such as (H, W)) at ``argmax``:
    shape (K, M, *plane). Any output plane shapes do, as for :func:`gather`."""
    K, M = g.shape[:2]
    out = np.empty((K, M, int(np.prod(plane))), g.dtype)
    _scatter(np.ascontiguousarray(g).reshape(K, M, -1), argmax.reshape(M, -1), out)
    return out.reshape(K, M, *plane)


def maxpool_naive(x, kernel, stride, padding):
    """NumPy twin of :func:`maxpool`: the same scan, one window position at a time for all outputs;
    lanes as planes of their own."""
    if x.ndim == 4:
        M, H, W, L = x.shape
        y, argmax = maxpool_naive(x.transpose(0, 3, 1, 2).reshape(M * L, H, W), kernel, stride, padding)
        lanes = np.arange(L)
        y = y.reshape(M, L, *y.shape[1:]).transpose(0, 2, 3, 1)
        return y, argmax.reshape(M, L, *argmax.shape[1:]).transpose(0, 2, 3, 1) * L + lanes
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


def scatter_naive(g, argmax, plane):
    """NumPy twin of :func:`scatter`."""
    K, M = g.shape[:2]
    out = np.zeros((K, M, int(np.prod(plane))), g.dtype)
    k, m, _ = np.indices((K, M, argmax[0].size))
    np.add.at(out, (k, m, np.broadcast_to(argmax.reshape(1, M, -1), k.shape)), g.reshape(K, M, -1))
    return out.reshape(K, M, *plane)
