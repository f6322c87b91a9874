"""Space-to-depth and shift-add: a strided convolution whose kernel is a multiple of its stride.

When the kernel (kh, kw) is (mh sh, mw sw) for the stride (sh, sw), every window is made of whole
sh x sw blocks of the (padded) image. Cutting each image plane into such blocks,

    S[g, (c, a, b), (n, I, J)] = x[g, n, c, sh I + a, sw J + b]        (space to depth)

of shape (G, C sh sw, N Bh Bw) with ``Bh = OH - 1 + mh`` block rows (likewise Bw), turns the
strided convolution into a stride-1 convolution with an mh x mw kernel over the blocks. With the
weight rearranged as ``Wall[(p, q, o), (c, a, b)] = W[o, c, sh p + a, sw q + b]``, one product
``Z = Wall @ S`` of shape (mh mw O, N Bh Bw) holds every partial sum, and

    y[g, n, o, i, j] = bias[g, o] + sum_{p, q} Z[g, (p, q, o), (n, i + p, j + q)]       (shift-add)

S is about as large as x, where im2col's ``cols`` is kh kw / (sh sw) times larger.

The weight enters as the matrix ``Wall``; ``block_weight`` makes it from W and ``unblock_weight``
writes a matrix of that layout (a weight gradient) back into W's layout. NumPy's transposed copy
of these six-axis arrays runs in pieces of ``sw`` elements and took 85 us for the DQN network's
conv2 weight (64x32x4x4); the kernel takes half of that.

The adjoints: ``shift_scatter`` (of shift-add, without the bias) copies ``gy[g, n, o, I - p, J - q]``
into ``G[g, (p, q, o), (n, I, J)]`` (0 where that is outside gy), and ``depth_to_space`` (of
space-to-depth) puts the blocks back into images, with zeros on the rows and columns past the
last block, which no window reads.

The kernels index flat arrays with unsigned offsets and run serially, as in
:mod:`refplastic.kernels.im2col` (which says why). Each has a naive NumPy twin.
"""

import numpy as np
from numba import njit, uint64


@njit(cache=True)
def _space_to_depth(x, sh, sw, bh, bw, s):
    G, N, C, H, W = x.shape
    src = x.reshape(-1)
    dst = s.reshape(-1)
    plane = bh * bw
    row_length = N * plane
    for g in range(G):
        for n in range(N):
            for c in range(C):
                image = ((g * N + n) * C + c) * H * W  # x[g, n, c]
                for I in range(bh):
                    for a in range(sh):
                        line = image + (sh * I + a) * W  # x[g, n, c, sh I + a]
                        for b in range(sw):
                            row = (((g * C + c) * sh + a) * sw + b) * row_length  # S[g, (c, a, b)]
                            at = uint64(row + n * plane + I * bw)
                            frm = uint64(line + b)
                            for J in range(bw):
                                dst[at + uint64(J)] = src[frm + uint64(J * sw)]


@njit(cache=True)
def _depth_to_space(s, sh, sw, bh, bw, x):
    G, N, C, H, W = x.shape
    src = s.reshape(-1)
    dst = x.reshape(-1)
    plane = bh * bw
    row_length = N * plane
    for g in range(G):
        for n in range(N):
            for c in range(C):
                image = ((g * N + n) * C + c) * H * W
                for k in range(H * W):
                    dst[uint64(image + k)] = 0
                for I in range(bh):
                    for a in range(sh):
                        line = image + (sh * I + a) * W
                        for b in range(sw):
                            row = (((g * C + c) * sh + a) * sw + b) * row_length
                            frm = uint64(row + n * plane + I * bw)
                            at = uint64(line + b)
                            for J in range(bw):
                                dst[at + uint64(J * sw)] = src[frm + uint64(J)]


@njit(cache=True)
def _shift_add(z, mh, mw, bh, bw, bias, y):
    G, N, O, oh, ow = y.shape
    src = z.reshape(-1)
    dst = y.reshape(-1)
    plane = bh * bw
    row_length = N * plane
    for g in range(G):
        for n in range(N):
            for o in range(O):
                out = ((g * N + n) * O + o) * oh * ow  # y[g, n, o]
                value = bias[g, o]
                for k in range(oh * ow):
                    dst[uint64(out + k)] = value
                for p in range(mh):
                    for q in range(mw):
                        block = (((g * mh + p) * mw + q) * O + o) * row_length + n * plane  # Z[g, (p, q, o), n]
                        for i in range(oh):
                            frm = uint64(block + (i + p) * bw + q)
                            at = uint64(out + i * ow)
                            for j in range(ow):
                                dst[at + uint64(j)] += src[frm + uint64(j)]


@njit(cache=True)
def _shift_scatter(gy, mh, mw, bh, bw, z):
    G, N, O, oh, ow = gy.shape
    src = gy.reshape(-1)
    dst = z.reshape(-1)
    plane = bh * bw
    row_length = N * plane
    for g in range(G):
        for p in range(mh):
            for q in range(mw):
                for o in range(O):
                    for n in range(N):
                        block = (((g * mh + p) * mw + q) * O + o) * row_length + n * plane  # G[g, (p, q, o), n]
                        image = ((g * N + n) * O + o) * oh * ow  # gy[g, n, o]
                        for I in range(bh):
                            at = uint64(block + I * bw)
                            i = I - p
                            if i < 0 or i >= oh:
                                for J in range(bw):
                                    dst[at + uint64(J)] = 0
                            else:
                                for J in range(q):
                                    dst[at + uint64(J)] = 0
                                frm = uint64(image + i * ow)
                                for j in range(ow):
                                    dst[at + uint64(q + j)] = src[frm + uint64(j)]
                                for J in range(q + ow, bw):
                                    dst[at + uint64(J)] = 0


@njit(cache=True)
def _block_weight(w, mh, mw, sh, sw, out):
    L, O, C = w.shape[:3]
    for l in range(L):
        for p in range(mh):
            for q in range(mw):
                for o in range(O):
                    row = (p * mw + q) * O + o  # Wall[l, (p, q, o)]
                    for c in range(C):
                        for a in range(sh):
                            for b in range(sw):
                                out[l, row, (c * sh + a) * sw + b] = w[l, o, c, sh * p + a, sw * q + b]


@njit(cache=True)
def _unblock_weight(m, mh, mw, sh, sw, out):
    L, O, C = out.shape[:3]
    for l in range(L):
        for p in range(mh):
            for q in range(mw):
                for o in range(O):
                    row = (p * mw + q) * O + o
                    for c in range(C):
                        for a in range(sh):
                            for b in range(sw):
                                out[l, o, c, sh * p + a, sw * q + b] = m[l, row, (c * sh + a) * sw + b]


def block_weight(w, multiple, stride):
    """``Wall[..., (p, q, o), (c, a, b)] = w[..., o, c, sh p + a, sw q + b]`` from weights ``w``
    (..., O, C, mh sh, mw sw)."""
    (mh, mw), (sh, sw) = multiple, stride
    *lead, O, C, kh, kw = w.shape
    out = np.empty((*lead, mh * mw * O, C * sh * sw), w.dtype)
    _block_weight(np.ascontiguousarray(w).reshape(-1, O, C, kh, kw), mh, mw, sh, sw,
                  out.reshape(-1, mh * mw * O, C * sh * sw))
    return out


def unblock_weight(m, multiple, stride, out):
    """Write the matrix ``m`` (..., (p, q, o), (c, a, b)) into the weight-shaped ``out`` (..., O, C, kh, kw):
    the inverse of :func:`block_weight`."""
    (mh, mw), (sh, sw) = multiple, stride
    *lead, O, C, kh, kw = out.shape
    target = out if out.flags.c_contiguous else np.empty(out.shape, out.dtype)
    _unblock_weight(np.ascontiguousarray(m, dtype=out.dtype).reshape(-1, mh * mw * O, C * sh * sw),
                    mh, mw, sh, sw, target.reshape(-1, O, C, kh, kw))
    if target is not out:
        np.copyto(out, target)


def space_to_depth(x, stride, blocks):
    """``S`` of shape (G, C sh sw, B bh bw) from images ``x`` (G, B, C, H, W), H >= sh bh, W >= sw bw."""
    G, B, C = x.shape[:3]
    (sh, sw), (bh, bw) = stride, blocks
    s = np.empty((G, C * sh * sw, B * bh * bw), x.dtype)
    _space_to_depth(np.ascontiguousarray(x), sh, sw, bh, bw, s)
    return s


def depth_to_space(s, x_shape, stride, blocks):
    """Images of shape ``x_shape`` (G, B, C, H, W) from blocks ``s`` (G, C sh sw, B bh bw), zeros elsewhere."""
    (sh, sw), (bh, bw) = stride, blocks
    x = np.empty(x_shape, s.dtype)
    _depth_to_space(np.ascontiguousarray(s), sh, sw, bh, bw, x)
    return x


def shift_add(z, n, out_hw, multiple, bias=None):
    """``y`` (G, n, O, OH, OW) from partial sums ``z`` (G, mh mw O, n bh bw), plus ``bias`` (G, O) if given."""
    (mh, mw), (oh, ow) = multiple, out_hw
    G, rows = z.shape[:2]
    O = rows // (mh * mw)
    bh, bw = oh - 1 + mh, ow - 1 + mw
    bias = np.zeros((G, O), z.dtype) if bias is None else np.ascontiguousarray(bias, dtype=z.dtype).reshape(G, O)
    y = np.empty((G, n, O, oh, ow), z.dtype)
    _shift_add(np.ascontiguousarray(z), mh, mw, bh, bw, bias, y)
    return y


def shift_scatter(gy, multiple):
    """The adjoint of :func:`shift_add` (without bias): (G, n, O, OH, OW) -> (G, mh mw O, n bh bw)."""
    (mh, mw) = multiple
    G, n, O, oh, ow = gy.shape
    bh, bw = oh - 1 + mh, ow - 1 + mw
    z = np.empty((G, mh * mw * O, n * bh * bw), gy.dtype)
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
    G, B, C = x.shape[:3]
    (sh, sw), (bh, bw) = stride, blocks
    blocked = x[:, :, :, :sh * bh, :sw * bw].reshape(G, B, C, bh, sh, bw, sw)
    return blocked.transpose(0, 2, 4, 6, 1, 3, 5).reshape(G, C * sh * sw, B * bh * bw)


def depth_to_space_naive(s, x_shape, stride, blocks):
    """NumPy twin of :func:`depth_to_space`."""
    G, B, C = x_shape[:3]
    (sh, sw), (bh, bw) = stride, blocks
    x = np.zeros(x_shape, s.dtype)
    blocked = s.reshape(G, C, sh, sw, B, bh, bw).transpose(0, 4, 1, 5, 2, 6, 3)
    x[:, :, :, :sh * bh, :sw * bw] = blocked.reshape(G, B, C, bh * sh, bw * sw)
    return x


def shift_add_naive(z, n, out_hw, multiple, bias=None):
    """NumPy twin of :func:`shift_add`: one shifted slice of ``z`` per kernel block (p, q)."""
    (mh, mw), (oh, ow) = multiple, out_hw
    G, rows = z.shape[:2]
    O = rows // (mh * mw)
    z = z.reshape(G, mh, mw, O, n, oh - 1 + mh, ow - 1 + mw)
    y = np.zeros((G, n, O, oh, ow), z.dtype)
    if bias is not None:
        y += np.reshape(bias, (G, 1, O, 1, 1))
    for p in range(mh):
        for q in range(mw):
            y += z[:, p, q, :, :, p:p + oh, q:q + ow].transpose(0, 2, 1, 3, 4)
    return y


def shift_scatter_naive(gy, multiple):
    """NumPy twin of :func:`shift_scatter`."""
    (mh, mw) = multiple
    G, n, O, oh, ow = gy.shape
    z = np.zeros((G, mh, mw, O, n, oh - 1 + mh, ow - 1 + mw), gy.dtype)
    for p in range(mh):
        for q in range(mw):
            z[:, p, q, :, :, p:p + oh, q:q + ow] = gy.transpose(0, 2, 1, 3, 4)
    return z.reshape(G, mh * mw * O, -1)
