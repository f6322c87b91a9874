"""LayerNorm's forward and backward maps for samples stored as the columns of a matrix.

A convolution's output is an NCHW view of (C, H, W, N) memory (refplastic.nn.conv), so the
samples a LayerNorm after it standardises are the columns of the C-contiguous (D, N) = (C H W, N)
matrix. NumPy's reductions and broadcasts over that view run inner loops of N elements (32 for a
DQN minibatch) and take about five times as long as over C-contiguous samples; these loops run
along the rows with N accumulators in float64, and the layer keeps the layout for the next
convolution. For x (D, N), weight w and bias b (D,):

    mu_n = mean_d x[d, n],   r_n = (mean_d (x[d, n] - mu_n)^2 + eps)^(-1/2)    (biased variance)
    forward    xhat = (x - mu) r,   y = w xhat + b
    backward   g = w gy,   gx = r (g - mean_d(g) - xhat mean_d(xhat g)),
               gw = sum_n gy xhat,   gb = sum_n gy

(the maps of refplastic.nn.normalization, whose NumPy code is the reference). NumPy twins below.
"""

import numpy as np
from numba import njit


@njit(cache=True)
def _layer_norm_columns(x, weight, bias, eps, y, xhat, r):
    depth, samples = x.shape
    mu = np.zeros(samples)
    for d in range(depth):
        for n in range(samples):
            mu[n] += x[d, n]
    mu /= depth
    squares = np.zeros(samples)
    for d in range(depth):
        for n in range(samples):
            c = x[d, n] - mu[n]
            squares[n] += c * c
    for n in range(samples):
        r[n] = 1.0 / np.sqrt(squares[n] / depth + eps)
    for d in range(depth):
        w, b = weight[d], bias[d]
        for n in range(samples):
            h = (x[d, n] - mu[n]) * r[n]
            xhat[d, n] = h
            y[d, n] = w * h + b


@njit(cache=True)
def _layer_norm_columns_backward(gy, xhat, r, weight, gx, gweight, gbias):
    depth, samples = gy.shape
    mean_g = np.zeros(samples)
    mean_xg = np.zeros(samples)
    for d in range(depth):
        w = weight[d]
        sum_w, sum_b = 0.0, 0.0
        for n in range(samples):
            g, h = gy[d, n], xhat[d, n]
            sum_w += g * h
            sum_b += g
            mean_g[n] += w * g
            mean_xg[n] += h * (w * g)
        gweight[d], gbias[d] = sum_w, sum_b
    mean_g /= depth
    mean_xg /= depth
    for d in range(depth):
        w = weight[d]
        for n in range(samples):
            gx[d, n] = r[n] * (w * gy[d, n] - mean_g[n] - xhat[d, n] * mean_xg[n])


def _check(name, **arrays):
    for key, a in arrays.items():
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: {key} must be C-contiguous")


def layer_norm_columns(x, weight, bias, eps, out=None):
    """``(y, xhat, r)`` for the columns of ``x`` (D, N), C-contiguous; ``weight`` and ``bias``
    (D,) of x's dtype; r (N,). Outputs in x's dtype, written into ``out`` if given."""
    y, xhat, r = (np.empty_like(x), np.empty_like(x), np.empty(x.shape[1], x.dtype)) if out is None else out
    _check("layer_norm_columns", x=x, weight=weight, bias=bias, y=y, xhat=xhat, r=r)
    _layer_norm_columns(x, weight, bias, float(eps), y, xhat, r)
    return y, xhat, r


def layer_norm_columns_backward(gy, xhat, r, weight, out=None):
    """``(gx, gw, gb)`` for the output gradient ``gy`` (D, N) of :func:`layer_norm_columns`,
    given its ``xhat`` and ``r`` and the ``weight``; all C-contiguous, of one dtype; written into
    ``out`` if given."""
    depth = gy.shape[0]
    gx, gweight, gbias = (np.empty_like(gy), np.empty(depth, gy.dtype), np.empty(depth, gy.dtype)) if out is None else out
    _check("layer_norm_columns_backward", gy=gy, xhat=xhat, r=r, weight=weight, gx=gx, gweight=gweight, gbias=gbias)
    _layer_norm_columns_backward(gy, xhat, r, weight, gx, gweight, gbias)
    return gx, gweight, gbias


def layer_norm_columns_naive(x, weight, bias, eps):
    """NumPy twin of :func:`layer_norm_columns` (float64 inside, as the kernel)."""
    x64 = x.astype(np.float64)
    xc = x64 - x64.mean(axis=0)
    r = (1 / np.sqrt((xc * xc).mean(axis=0) + eps)).astype(x.dtype)
    xhat = xc * r
    y = weight[:, None] * xhat + bias[:, None]
    return y.astype(x.dtype), xhat.astype(x.dtype), r


def layer_norm_columns_backward_naive(gy, xhat, r, weight):
    """NumPy twin of :func:`layer_norm_columns_backward`."""
    gy64, xhat64 = gy.astype(np.float64), xhat.astype(np.float64)
    g = weight[:, None] * gy64
    gx = r * (g - g.mean(axis=0) - xhat64 * (xhat64 * g).mean(axis=0))
    return gx.astype(gy.dtype), (gy64 * xhat64).sum(axis=1).astype(gy.dtype), gy64.sum(axis=1).astype(gy.dtype)
