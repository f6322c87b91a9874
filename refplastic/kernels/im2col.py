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

Both also work on a range of output pixels ``first <= p < stop`` (p = oy OW + ox): ``im2col_pixels``
makes the columns ``cols[:, :, first B:stop B]`` and ``col2im_pixels`` adds back what those columns
give, so that a convolution can lower and multiply block by block (:mod:`refplastic.nn.conv`).
"""

import numpy as np
from numba import njit, uint64


def conv_output_size(size, kernel, stride, padding):
    """Output length ``(size + 2 padding - kernel) // stride + 1`` of a window scan (<= 0: none fits)."""
    return (size + 2 * padding - kernel) // stride + 1


# The kernels handle the padding themselves: im2col writes zeros where a window reads outside
# the image, col2im gives nothing back from there, so that no padded copy of the images is made
# (one for conv2 of the probe CNN, 16x16x16 images in a batch of 64, was as large as the images).
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


@njit(cache=True, inline="always")
def fill_zeros(dst, at, count):
    """``dst[at + k] = 0`` for k < count."""
    for k in range(count):
        dst[at + uint64(k)] = 0


@njit(cache=True, inline="always")
def _inside(j, pad, stride, size, count):
    """``(first, stop)``: the output positions o < count whose tap j reads inside the image,
    ``0 <= o stride + j - pad < size``; ``first == stop`` when there are none."""
    first = max(0, (pad - j + stride - 1) // stride)
    stop = min(count, (size - 1 + pad - j) // stride + 1)
    return first, max(first, stop)


@njit(cache=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, first, stop, cols):
    # The columns of the output pixels first <= p < stop (p = oy ow + ox), as cols[g, (c, i, j), (p - first, b)].
    G, C, H, W, B = x.shape
    src = x.reshape(-1)
    dst = cols.reshape(-1)
    width = (stop - first) * B  # a row of cols
    for g in range(G):
        for c in range(C):
            image = (g * C + c) * H * W * B  # x[g, c]
            for i in range(kh):
                for oy in range(first // ow, (stop - 1) // ow + 1):
                    lo, hi = max(0, first - oy * ow), min(ow, stop - oy * ow)  # the row's pixels in the range
                    iy = oy * sh + i - ph
                    for j in range(kw):
                        out = (((g * C + c) * kh + i) * kw + j) * width + (oy * ow + lo - first) * B  # cols[g, (c, i, j), (oy, lo, 0)]
                        if iy < 0 or iy >= H:  # a row of padding
                            fill_zeros(dst, uint64(out), (hi - lo) * B)
                            continue
                        start, end = _inside(j, pw, sw, W, ow)
                        if lo > 0 or hi < ow:  # part of a row: its pixels inside the image
                            start = min(max(start, lo), hi)
                            end = max(min(end, hi), start)
                        fill_zeros(dst, uint64(out), (start - lo) * B)
                        if end > start:  # the runs of the output row inside the image
                            at = uint64(out + (start - lo) * B)
                            frm = uint64(image + (iy * W + start * sw + j - pw) * B)  # x[g, c, iy, start sw + j - pw]
                            if sw == 1:
                                copy_runs(dst, at, 0, src, frm, 0, 1, (end - start) * B)
                            else:
                                copy_runs(dst, at, B, src, frm, sw * B, end - start, B)
                        fill_zeros(dst, uint64(out + (end - lo) * B), (hi - end) * B)


@njit(cache=True)
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, first, stop, zero, x):
    # x += the columns of the output pixels first <= p < stop, cols[g, (c, i, j), (p - first, b)];
    # with zero, each plane of x is zeroed first.
    G, C, H, W, B = x.shape
    src = cols.reshape(-1)
    dst = x.reshape(-1)
    width = (stop - first) * B  # a row of cols
    for g in range(G):
        for c in range(C):
            image = (g * C + c) * H * W * B
            if zero:
                fill_zeros(dst, uint64(image), H * W * B)
            for i in range(kh):
                for oy in range(first // ow, (stop - 1) // ow + 1):
                    iy = oy * sh + i - ph
                    if iy < 0 or iy >= H:  # read from padding: nothing to give back
                        continue
                    lo, hi = max(0, first - oy * ow), min(ow, stop - oy * ow)
                    for j in range(kw):
                        start, end = _inside(j, pw, sw, W, ow)
                        if lo > 0 or hi < ow:
                            start = min(max(start, lo), hi)
                            end = max(min(end, hi), start)
                        if end == start:
                            continue
                        out = uint64((((g * C + c) * kh + i) * kw + j) * width + (oy * ow + start - first) * B)
                        to = uint64(image + (iy * W + start * sw + j - pw) * B)
                        if sw == 1:
                            add_runs(dst, to, 0, src, out, 0, 1, (end - start) * B)
                        else:
                            add_runs(dst, to, sw * B, src, out, B, end - start, B)


TILE = 8  # see _batch_last_copy


@njit(cache=True)
def _batch_last_copy(x, out):
    # out[g, m, b] = x[g, b, m]: each group's (B, M) matrix transposed, in tiles of 8 images by 8
    # values. The rows of a batch of 32x32 images lie 4 KiB apart, so the 64 rows of a plain
    # column-by-column loop all map to the same set of the 8-way L1 cache and evict each other:
    # 1.9 ms for ten batches of 64 such images (float32), as NumPy's transposed copy; in blocks of
    # 8 images, 0.49 ms. A whole tile's loops have constant bounds, which LLVM unrolls and turns
    # into vector shuffles: 0.065 ms against 0.151 for one batch of 64 3x32x32 images (float32).
    G, B, M = x.shape
    src = x.reshape(-1)
    dst = out.reshape(-1)
    whole_b, whole_m = B - B % TILE, M - M % TILE  # the tiles that are whole
    for g in range(G):
        for b0 in range(0, B, TILE):
            nb = min(TILE, B - b0)
            for m0 in range(0, M, TILE):
                frm = uint64((g * B + b0) * M + m0)  # x[g, b0, m0]
                to = uint64((g * M + m0) * B + b0)  # out[g, m0, b0]
                if b0 < whole_b and m0 < whole_m:
                    for k in range(TILE):
                        for m in range(TILE):
                            dst[to + uint64(m * B + k)] = src[frm + uint64(k * M + m)]
                else:
                    for k in range(nb):
                        for m in range(min(TILE, M - m0)):
                            dst[to + uint64(m * B + k)] = src[frm + uint64(k * M + m)]


def batch_last_copy(x):
    """Batch-last images ``x`` (G, C, H, W, B) as a C-contiguous array: ``x`` itself if it is one,
    a blocked transposed copy if x is the batch-last view of batch-first images (a network's
    input), NumPy's copy otherwise."""
    if x.flags.c_contiguous:
        return x
    G, C, H, W, B = x.shape
    first = x.transpose(0, 4, 1, 2, 3)
    if not first.flags.c_contiguous:
        return np.ascontiguousarray(x)
    out = np.empty(x.shape, x.dtype)
    _batch_last_copy(first.reshape(G, B, -1), out.reshape(G, -1, B))
    return out


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
    _im2col(batch_last_copy(x), *kernel, *stride, *padding, oh, ow, 0, oh * ow, cols)
    return cols


def im2col_pixels(x, kernel, stride, padding, first, stop, out=None):
    """The columns of :func:`im2col` for the output pixels ``first <= p < stop`` (p = oy OW + ox),
    ``cols[:, :, first B:stop B]``, of shape (G, C kh kw, (stop - first) B), written into ``out``
    (C-contiguous) if given, from C-contiguous batch-last images ``x`` (:func:`batch_last_copy`).
    Called once per block of a blocked convolution, so it checks nothing."""
    G, C, H, W, B = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if out is None:
        out = np.empty((G, C * kh * kw, (stop - first) * B), x.dtype)
    _im2col(x, kh, kw, sh, sw, ph, pw, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1, first, stop, out)
    return out


def col2im(cols, x_shape, kernel, stride, padding):
    """Batch-last images of shape ``x_shape`` (G, C, H, W, B) from ``cols`` (G, C kh kw, OH OW B),
    summing overlaps."""
    G, C, H, W, B = x_shape
    oh, ow = conv_output_hw((H, W), kernel, stride, padding)
    x = np.empty(x_shape, cols.dtype)
    _col2im(np.ascontiguousarray(cols), *kernel, *stride, *padding, oh, ow, 0, oh * ow, True, x)
    return x


def col2im_pixels(cols, x, kernel, stride, padding, first, stop):
    """Add into batch-last images ``x`` (G, C, H, W, B), C-contiguous, what :func:`col2im` gives back
    from the columns ``cols`` (G, C kh kw, (stop - first) B), C-contiguous, of the output pixels
    ``first <= p < stop``. Called once per block of a blocked convolution, so it checks nothing."""
    G, C, H, W, B = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    _col2im(cols, kh, kw, sh, sw, ph, pw, (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1, first, stop,
            False, x)


# ---- naive NumPy twins ----------------------------------------------------------------------

def batch_last_copy_naive(x):
    """NumPy twin of :func:`batch_last_copy`."""
    return np.ascontiguousarray(x)


def im2col_pixels_naive(x, kernel, stride, padding, first, stop):
    """NumPy twin of :func:`im2col_pixels`: a slice of :func:`im2col_naive`."""
    B = x.shape[-1]
    return im2col_naive(x, kernel, stride, padding)[:, :, first * B:stop * B]


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


def col2im_pixels_naive(cols, x, kernel, stride, padding, first, stop):
    """NumPy twin of :func:`col2im_pixels`: :func:`col2im_naive` of the columns in place, zeros elsewhere."""
    B = x.shape[-1]
    oh, ow = conv_output_hw(x.shape[2:4], kernel, stride, padding)
    whole = np.zeros((*cols.shape[:2], oh * ow * B), cols.dtype)
    whole[:, :, first * B:stop * B] = cols
    x += col2im_naive(whole, x.shape, kernel, stride, padding)


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
