"""Space-to-depth and shift-add: a strided convolution whose kernel is a multiple of its stride.

When the kernel (kh, kw) is (mh sh, mw sw) for the stride (sh, sw), every window is made of whole
sh x sw blocks of the (padded) image. Cutting each channel plane of batch-last images x
(G, C, H, W, B) (see :mod:`refplastic.kernels.im2col`) into such blocks,

    S[g, (c, a, b), (I, J, n)] = x[g, c, sh I + a, sw J + b, n]        (space to depth)

of shape (G, C sh sw, Bh Bw B) with ``Bh = OH - 1 + mh`` block rows (likewise Bw), turns the
strided convolution into a stride-1 convolution with an mh x mw kernel over the blocks. With the
weight rearranged as ``Wall[(p, q, o), (c, a, b)] = W[o, c, sh p + a, sw q + b]``, one product
``Z = Wall @ S`` of shape (mh mw O, Bh Bw B) holds every partial sum, and

    y[g, o, i, j, n] = bias[g, o] + sum_{p, q} Z[g, (p, q, o), (i + p, j + q, n)]       (shift-add)

is the output, batch-last. S is about as large as x, where im2col's ``cols`` is kh kw / (sh sw)
times larger. Each copy moves the B values of a pixel; shift-add and its adjoint move whole
output rows of OW B values.

The weight enters as the matrix ``Wall``; ``block_weight`` makes it from W and ``unblock_weight``
writes a matrix of that layout (a weight gradient) back into W's layout. Both are a fixed
permutation of the weight's entries, so they are gathers (:func:`refplastic.kernels.maxpool.gather`)
through that permutation and its inverse, which the NumPy twin computes once per geometry.
NumPy's transposed copy of these six-axis arrays runs in pieces of ``sw`` elements and took 85 us
for the DQN network's conv2 weight (64x32x4x4), a seven-deep loop 41 us, the gather 16 us.

The adjoints: ``shift_scatter`` (of shift-add, without the bias) copies ``gy[g, o, I - p, J - q, n]``
into ``G[g, (p, q, o), (I, J, n)]`` (0 where that is outside gy), and ``depth_to_space`` (of
space-to-depth) puts the blocks back into images, with zeros on the rows and columns past the
last block, which no window reads.

The kernels run serially and, but for space-to-depth (which reads the images through their
strides), index flat arrays with unsigned offsets, as in :mod:`refplastic.kernels.im2col`
(which says why). Each has a naive NumPy twin.
"""

from functools import lru_cache

import numpy as np
from numba import njit, uint64

from .im2col import _col2im  # the kernel: its wrapper derives the output size, which here is the blocks
from .maxpool import gather


@njit(cache=True)
def _space_to_depth(x, sh, sw, bh, bw, s):
    # Indexed by position, so x may have any strides: a batch-first input (the network's images)
    # is read through its batch-last view in this one pass, with no transposed copy first.
    G, C, H, W, B = x.shape
    for g in range(G):
        for c in range(C):
            for I in range(bh):
                for a in range(sh):
                    for b in range(sw):
                        row = (c * sh + a) * sw + b  # S[g, (c, a, b)]
                        if B == 1:  # a strided copy along the image row
                            for J in range(bw):
                                s[g, row, I * bw + J] = x[g, c, sh * I + a, sw * J + b, 0]
                            continue
                        for J in range(bw):
                            column = (I * bw + J) * B  # S[g, :, (I, J, 0)]
                            for n in range(B):
                                s[g, row, column + n] = x[g, c, sh * I + a, sw * J + b, n]


@njit(cache=True)
def _shift_add(z, mh, mw, bh, bw, bias, y):
    G, O, oh, ow, B = y.shape
    src = z.reshape(-1)
    dst = y.reshape(-1)
    run = ow * B  # an output row
    for g in range(G):
        for o in range(O):
            out = (g * O + o) * oh * run  # y[g, o]
            value = bias[g, o]
            for k in range(oh * run):
                dst[uint64(out + k)] = value
            for p in range(mh):
                for q in range(mw):
                    block = (((g * mh + p) * mw + q) * O + o) * bh * bw * B  # Z[g, (p, q, o)]
                    for i in range(oh):
                        frm = uint64(block + ((i + p) * bw + q) * B)
                        at = uint64(out + i * run)
                        for k in range(run):
                            dst[at + uint64(k)] += src[frm + uint64(k)]


@njit(cache=True)
def _shift_scatter(gy, mh, mw, bh, bw, z):
    G, O, oh, ow, B = gy.shape
    src = gy.reshape(-1)
    dst = z.reshape(-1)
    run = ow * B
    for g in range(G):
        for p in range(mh):
            for q in range(mw):
                for o in range(O):
                    block = (((g * mh + p) * mw + q) * O + o) * bh * bw * B  # G[g, (p, q, o)]
                    image = (g * O + o) * oh * run  # gy[g, o]
                    for I in range(bh):
                        at = uint64(block + I * bw * B)
                        i = I - p
                        if i < 0 or i >= oh:
                            for k in range(bw * B):
                                dst[at + uint64(k)] = 0
                            continue
                        for k in range(q * B):
                            dst[at + uint64(k)] = 0
                        frm = uint64(image + i * run)
                        at += uint64(q * B)
                        for k in range(run):
                            dst[at + uint64(k)] = src[frm + uint64(k)]
                        at += uint64(run)
                        for k in range((bw - q - ow) * B):
                            dst[at + uint64(k)] = 0


@lru_cache(maxsize=None)
def block_permutation(shape, multiple, stride):
    """``(index, inverse)``: ``Wall.flat[k] = w.flat[index[k]]`` for weights of shape ``shape``
    (O, C, kh, kw), and ``w.flat[j] = Wall.flat[inverse[j]]``. :func:`block_weight_naive` applied
    to the positions of w, once per geometry."""
    index = block_weight_naive(np.arange(np.prod(shape)).reshape(shape), multiple, stride).reshape(-1)
    inverse = np.argsort(index)
    index.flags.writeable = inverse.flags.writeable = False
    return index, inverse


def block_weight(w, multiple, stride):
    """``Wall[..., (p, q, o), (c, a, b)] = w[..., o, c, sh p + a, sw q + b]`` from weights ``w``
    (..., O, C, mh sh, mw sw)."""
    (mh, mw), (sh, sw) = multiple, stride
    *lead, O, C, kh, kw = w.shape
    index, _ = block_permutation((O, C, kh, kw), multiple, stride)
    return gather(w.reshape(-1, 1, index.size), index[None]).reshape(*lead, mh * mw * O, C * sh * sw)


def unblock_weight(m, multiple, stride, out):
    """Write the matrix ``m`` (..., (p, q, o), (c, a, b)) into the weight-shaped ``out`` (..., O, C, kh, kw):
    the inverse of :func:`block_weight`."""
    _, inverse = block_permutation(out.shape[-4:], multiple, stride)
    np.copyto(out, gather(m.astype(out.dtype, copy=False).reshape(-1, 1, inverse.size), inverse[None]).reshape(out.shape))


def space_to_depth(x, stride, blocks):
    """``S`` of shape (G, C sh sw, bh bw B) from batch-last images ``x`` (G, C, H, W, B) in any
    memory layout, H >= sh bh, W >= sw bw."""
    G, C, H, W, B = x.shape
    (sh, sw), (bh, bw) = stride, blocks
    s = np.empty((G, C * sh * sw, bh * bw * B), x.dtype)
    _space_to_depth(x, sh, sw, bh, bw, s)
    return s


def depth_to_space(s, x_shape, stride, blocks):
    """Batch-last images of shape ``x_shape`` (G, C, H, W, B) from blocks ``s`` (G, C sh sw, bh bw B),
    zeros elsewhere. Space-to-depth is im2col with the kernel equal to the stride (windows that do
    not overlap), so this is its col2im."""
    x = np.empty(x_shape, s.dtype)
    _col2im(np.ascontiguousarray(s), *stride, *stride, 0, 0, *blocks, 0, blocks[0] * blocks[1], True, x)
    return x


def shift_add(z, out_hw, multiple, bias=None):
    """Batch-last ``y`` (G, O, OH, OW, B) from partial sums ``z`` (G, mh mw O, bh bw B), plus
    ``bias`` (G, O) if given."""
    (mh, mw), (oh, ow) = multiple, out_hw
    G, rows = z.shape[:2]
    O = rows // (mh * mw)
    bh, bw = oh - 1 + mh, ow - 1 + mw
    B = z.shape[2] // (bh * bw)
    bias = np.zeros((G, O), z.dtype) if bias is None else np.ascontiguousarray(bias, dtype=z.dtype).reshape(G, O)
    y = np.empty((G, O, oh, ow, B), z.dtype)
    _shift_add(np.ascontiguousarray(z), mh, mw, bh, bw, bias, y)
    return y


def shift_scatter(gy, multiple):
    """The adjoint of :func:`shift_add` (without bias): (G, O, OH, OW, B) -> (G, mh mw O, bh bw B)."""
    (mh, mw) = multiple
    G, O, oh, ow, B = gy.shape
    bh, bw = oh - 1 + mh, ow - 1 + mw
    z = np.empty((G, mh * mw * O, bh * bw * B), gy.dtype)
    _shift_scatter(np.ascontiguousarray(gy), mh, mw, bh, bw, z)
    return z


# ---- naive NumPy twins ----------------------------------------------------------------------

def block_weight_naive(w, multiple, stride):
    """NumPy twin of :func:`block_weight`: reshape, transpose, reshape."""
    (mh, mw), (sh, sw) = multiple, stride
    *lead, O, C = w.shape[:-2]
    w = w.reshape(*lead, O, C, mh, sh, mw, sw)
    order = tuple(range(len(lead))) + tuple(len(lead) + i for i in (2, 4, 0, 1, 3, 5))
    return w.transpose(order).reshape(*lead, mh * mw * O, C * sh * sw)


def unblock_weight_naive(m, multiple, stride, out):
    """NumPy twin of :func:`unblock_weight`."""
    (mh, mw), (sh, sw) = multiple, stride
    *lead, O, C = out.shape[:-2]
    m = m.reshape(*lead, mh, mw, O, C, sh, sw)
    order = tuple(range(len(lead))) + tuple(len(lead) + i for i in (2, 3, 0, 4, 1, 5))
    np.copyto(out.reshape(*lead, O, C, mh, sh, mw, sw), m.transpose(order))


def space_to_depth_naive(x, stride, blocks):
    """NumPy twin of :func:`space_to_depth`: crop, reshape into blocks, transpose."""
    G, C, H, W, B = x.shape
    (sh, sw), (bh, bw) = stride, blocks
    blocked = x[:, :, :sh * bh, :sw * bw].reshape(G, C, bh, sh, bw, sw, B)
    return blocked.transpose(0, 1, 3, 5, 2, 4, 6).reshape(G, C * sh * sw, bh * bw * B)


def depth_to_space_naive(s, x_shape, stride, blocks):
    """NumPy twin of :func:`depth_to_space`."""
    G, C, H, W, B = x_shape
    (sh, sw), (bh, bw) = stride, blocks
    x = np.zeros(x_shape, s.dtype)
    blocked = s.reshape(G, C, sh, sw, bh, bw, B).transpose(0, 1, 4, 2, 5, 3, 6)
    x[:, :, :sh * bh, :sw * bw] = blocked.reshape(G, C, bh * sh, bw * sw, B)
    return x


def shift_add_naive(z, out_hw, multiple, bias=None):
    """NumPy twin of :func:`shift_add`: one shifted slice of ``z`` per kernel block (p, q)."""
    (mh, mw), (oh, ow) = multiple, out_hw
    G, rows = z.shape[:2]
    O = rows // (mh * mw)
    bh, bw = oh - 1 + mh, ow - 1 + mw
    z = z.reshape(G, mh, mw, O, bh, bw, -1)
    y = np.zeros((G, O, oh, ow, z.shape[-1]), z.dtype)
    if bias is not None:
        y += np.reshape(bias, (G, O, 1, 1, 1))
    for p in range(mh):
        for q in range(mw):
            y += z[:, p, q, :, p:p + oh, q:q + ow]
    return y


def shift_scatter_naive(gy, multiple):
    """NumPy twin of :func:`shift_scatter`."""
    (mh, mw) = multiple
    G, O, oh, ow, B = gy.shape
    z = np.zeros((G, mh, mw, O, oh - 1 + mh, ow - 1 + mw, B), gy.dtype)
    for p in range(mh):
        for q in range(mw):
            z[:, p, q, :, p:p + oh, q:q + ow] = gy
    return z.reshape(G, mh * mw * O, -1)
