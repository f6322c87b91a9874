"""im2col and its adjoint col2im: a 2-d convolution as one matrix product.

The kernels take *batch-last* images ``x`` of shape (G, C, H, W, B): G groups (the tangent axis
K of the R-maps, or 1) of C channel planes, each pixel a run of B values, one per image of the
batch. For kernel (kh, kw), stride (sh, sw) and zero padding (ph, pw), the output has
``OH = (H + 2 ph - kh) // sh + 1`` rows (likewise OW) and

    cols[g, (c, i, j), (oy, ox, b)] = x[g, c, oy sh + i - ph, ox sw + j - pw, b]   (0 outside x)

an array of shape (G, C kh kw, OH OW B), so that the convolution of ``x[g]`` with a weight W of
shape (O, C, kh, kw) is the single product ``W.reshape(O, -1) @ cols[g]`` of shape
(O, OH OW B): the output, batch-last again. Rows (c, i, j) follow W's C order.

Why batch-last: every copy moves a whole pixel run of B values (with stride 1, a whole output
row of OW B values), where the batch-first layout (images N, C, H, W) moves OW values at a time;
for the DQN network's 3x3 convolution on 9x9 maps (OW = 7) that was 5x slower.

``col2im`` is the adjoint (transpose) of ``im2col``: it scatter-adds every entry of ``cols`` back
to the pixel it was read from, summing where windows overlap,

    x[g, c, y, x, b] = sum of cols[g, (c, i, j), (oy, ox, b)] over oy sh + i - ph = y, ox sw + j - pw = x,

which takes column gradients back to image gradients.
"""

import numpy as np
from numba import njit, uint64


def conv_output_size(size, kernel, stride, padding):
    """Output length ``(size + 2 padding - kernel) // stride + 1`` of a window scan (<= 0: none fits)."""
    return (size + 2 * padding - kernel) // stride + 1


# The kernels see no padding: the wrappers pad x with zeros before im2col and crop after col2im,
# a copy of the images, which are kh kw / (sh sw) times smaller than cols.
# They index flat arrays with unsigned offsets: a signed index makes Numba test it for
# wraparound (negative indices count from the end) on every access, which blocks vectorization.
# They move runs of pixels (B values each): with stride 1 an output row of ow pixels is one
# contiguous run. Inlined into the kernels by Numba (a call per run costs twice the copy).
# They are serial: the GEMMs between them already use every core, and Numba's threads would
# fight OpenBLAS's for them (docs/performance.md).


@njit(cache=True, inline="always")
def copy_runs(dst, at, dst_step, src, frm, src_step, count, run):
    """``dst[at + r dst_step + k] = src[frm + r src_step + k]`` for r < count, k < run."""
    if run == 1:  # one image: a strided copy
        for r in range(count):
            dst[at + uint64(r * dst_step)] = src[frm + uint64(r * src_step)]
    else:
        for r in range(count):
            to, fr = at + uint64(r * dst_step), frm + uint64(r * src_step)
            for k in range(run):
                dst[to + uint64(k)] = src[fr + uint64(k)]


@njit(cache=True, inline="always")
def add_runs(dst, at, dst_step, src, frm, src_step, count, run):
    """``dst[at + r dst_step + k] += src[frm + r src_step + k]`` for r < count, k < run."""
    if run == 1:
        for r in range(count):
            dst[at + uint64(r * dst_step)] += src[frm + uint64(r * src_step)]
    else:
        for r in range(count):
            to, fr = at + uint64(r * dst_step), frm + uint64(r * src_step)
            for k in range(run):
                dst[to + uint64(k)] += src[fr + uint64(k)]


@njit(cache=True)
def _im2col(x, kh, kw, sh, sw, oh, ow, cols):
    G, C, H, W, B = x.shape
    src = x.reshape(-1)
    dst = cols.reshape(-1)
    count, run = (1, ow * B) if sw == 1 else (ow, B)  # runs of an output row
    for g in range(G):
        for c in range(C):
            image = (g * C + c) * H * W * B  # x[g, c]
            for i in range(kh):
                for oy in range(oh):
                    line = image + (oy * sh + i) * W * B  # x[g, c, oy sh + i]
                    for j in range(kw):
                        out = ((((g * C + c) * kh + i) * kw + j) * oh + oy) * ow * B  # cols[g, (c, i, j), (oy, 0, 0)]
                        copy_runs(dst, uint64(out), run, src, uint64(line + j * B), sw * B, count, run)


@njit(cache=True)
def _col2im(cols, kh, kw, sh, sw, oh, ow, x):
    G, C, H, W, B = x.shape
    src = cols.reshape(-1)
    dst = x.reshape(-1)
    count, run = (1, ow * B) if sw == 1 else (ow, B)
    for g in range(G):
        for c in range(C):
            image = (g * C + c) * H * W * B
            for k in range(H * W * B):
                dst[uint64(image + k)] = 0
            for i in range(kh):
                for oy in range(oh):
                    line = image + (oy * sh + i) * W * B
                    for j in range(kw):
                        out = ((((g * C + c) * kh + i) * kw + j) * oh + oy) * ow * B
                        add_runs(dst, uint64(line + j * B), sw * B, src, uint64(out), run, count, run)


def conv_output_hw(hw, kernel, stride, padding):
    """``(OH, OW)``: :func:`conv_output_size` along height and width of images of size ``hw``."""
    return tuple(conv_output_size(n, k, s, p) for n, k, s, p in zip(hw, kernel, stride, padding))


def pad_images(x, padding):
    """Batch-last images (G, C, H, W, B) with ``padding`` (ph, pw) zeros on each side of H and W."""
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw), (0, 0))) if ph or pw else x


def crop_images(x, padding):
    """The inverse of :func:`pad_images` (a contiguous copy when there is padding)."""
    ph, pw = padding
    if not (ph or pw):
        return x
    H, W = x.shape[2] - 2 * ph, x.shape[3] - 2 * pw
    return np.ascontiguousarray(x[:, :, ph:ph + H, pw:pw + W])


def im2col(x, kernel, stride, padding):
    """``cols`` of shape (G, C kh kw, OH OW B) from batch-last images ``x`` of shape (G, C, H, W, B)."""
    G, C, H, W, B = x.shape
    oh, ow = conv_output_hw((H, W), kernel, stride, padding)
    cols = np.empty((G, C * kernel[0] * kernel[1], oh * ow * B), x.dtype)
    _im2col(np.ascontiguousarray(pad_images(x, padding)), *kernel, *stride, oh, ow, cols)
    return cols


def col2im(cols, x_shape, kernel, stride, padding):
    """Batch-last images of shape ``x_shape`` (G, C, H, W, B) from ``cols`` (G, C kh kw, OH OW B),
    summing overlaps."""
    G, C, H, W, B = x_shape
    oh, ow = conv_output_hw((H, W), kernel, stride, padding)
    ph, pw = padding
    x = np.empty((G, C, H + 2 * ph, W + 2 * pw, B), cols.dtype)
    _col2im(np.ascontiguousarray(cols), *kernel, *stride, oh, ow, x)
    return crop_images(x, padding)


# ---- naive NumPy twins ----------------------------------------------------------------------

def im2col_naive(x, kernel, stride, padding):
    """NumPy twin of :func:`im2col`: one strided slice of the zero-padded images per (i, j)."""
    G, C, H, W, B = x.shape
    (kh, kw), (sh, sw) = kernel, stride
    oh, ow = conv_output_hw((H, W), kernel, stride, padding)
    xp = pad_images(x, padding)
    cols = np.empty((G, C, kh, kw, oh, ow, B), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    return cols.reshape(G, C * kh * kw, oh * ow * B)


def col2im_naive(cols, x_shape, kernel, stride, padding):
    """NumPy twin of :func:`col2im`: add each (i, j) slice back into the padded images, then crop."""
    G, C, H, W, B = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = conv_output_hw((H, W), kernel, stride, padding)
    cols = cols.reshape(G, C, kh, kw, oh, ow, B)
    xp = np.zeros((G, C, H + 2 * ph, W + 2 * pw, B), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    return xp[:, :, ph:ph + H, pw:pw + W]
