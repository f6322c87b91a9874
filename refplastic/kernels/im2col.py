"""im2col and its adjoint col2im: a 2-d convolution as one matrix product.

For images ``x`` of shape (G, B, C, H, W) (G groups of B images; G is the tangent axis K of the
R-maps, or 1), kernel (kh, kw), stride (sh, sw) and zero padding (ph, pw), the output has
``OH = (H + 2 ph - kh) // sh + 1`` rows (likewise OW) and

    cols[g, (c, i, j), (b, oy, ox)] = x[g, b, c, oy sh + i - ph, ox sw + j - pw]   (0 outside x)

an array of shape (G, C kh kw, B OH OW), so that the convolution of ``x[g]`` with a weight W of
shape (O, C, kh, kw) is the single product ``W.reshape(O, -1) @ cols[g]`` of shape (O, B OH OW).
Rows (c, i, j) follow W's C order; columns are image by image, so each image's block is already
(O, OH OW), that is NCHW after a block transpose.

``col2im`` is the adjoint (transpose) of ``im2col``: it scatter-adds every entry of ``cols`` back
to the pixel it was read from, summing where windows overlap,

    x[g, b, c, y, x] = sum of cols[g, (c, i, j), (b, oy, ox)] over oy sh + i - ph = y, ox sw + j - pw = x,

which takes column gradients back to image gradients.
"""

import numpy as np
from numba import njit, prange, uint64


def conv_output_size(size, kernel, stride, padding):
    """Output length ``(size + 2 padding - kernel) // stride + 1`` of a window scan (<= 0: none fits)."""
    return (size + 2 * padding - kernel) // stride + 1


# The kernels index flat arrays with unsigned offsets: a signed index makes Numba test it for
# wraparound (negative indices count from the end) on every access, which blocks vectorization.


@njit(cache=True, inline="always")
def _valid_range(j, stride, padding, width, out_width):
    """The outputs ``ox`` whose input column ``ox stride + j - padding`` lies in [0, width)."""
    lo = max(0, -((j - padding) // stride))
    hi = min(out_width, (width - 1 + padding - j) // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True, parallel=True)
def _im2col(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    G, B, C, H, W = x.shape
    rows = C * kh * kw
    src = x.reshape(-1)
    dst = cols.reshape(-1)
    for gr in prange(G * rows):  # one row (g, (c, i, j)) of cols per task
        g = gr // rows
        c = gr % rows // (kh * kw)
        i = gr % (kh * kw) // kw
        j = gr % kw
        lo, hi = _valid_range(j, sw, pw, W, ow)
        out = uint64(gr * B * oh * ow)
        for b in range(B):
            image = ((g * B + b) * C + c) * H * W
            for oy in range(oh):
                iy = oy * sh + i - ph
                if iy < 0 or iy >= H:
                    for ox in range(ow):
                        dst[out + uint64(ox)] = 0
                else:
                    for ox in range(lo):
                        dst[out + uint64(ox)] = 0
                    at = uint64(image + iy * W + lo * sw + j - pw)
                    for ox in range(lo, hi):
                        dst[out + uint64(ox)] = src[at + uint64((ox - lo) * sw)]
                    for ox in range(hi, ow):
                        dst[out + uint64(ox)] = 0
                out += uint64(ow)


@njit(cache=True, parallel=True)
def _col2im(cols, kh, kw, sh, sw, ph, pw, oh, ow, x):
    G, B, C, H, W = x.shape
    rows = C * kh * kw
    src = cols.reshape(-1)
    dst = x.reshape(-1)
    for gbc in prange(G * B * C):  # one image plane (g, b, c) per task: no two tasks write alike
        g = gbc // (B * C)
        b = gbc // C % B
        c = gbc % C
        image = uint64(gbc * H * W)
        for k in range(H * W):
            dst[image + uint64(k)] = 0
        for i in range(kh):
            for j in range(kw):
                lo, hi = _valid_range(j, sw, pw, W, ow)
                row = ((g * rows + (c * kh + i) * kw + j) * B + b) * oh * ow
                for oy in range(oh):
                    iy = oy * sh + i - ph
                    if iy < 0 or iy >= H:
                        continue
                    at = image + uint64(iy * W + lo * sw + j - pw)
                    frm = uint64(row + oy * ow)
                    for ox in range(lo, hi):
                        dst[at + uint64((ox - lo) * sw)] += src[frm + uint64(ox)]


def im2col(x, kernel, stride, padding):
    """``cols`` of shape (G, C kh kw, B OH OW) from images ``x`` of shape (G, B, C, H, W)."""
    G, B, C, H, W = x.shape
    oh, ow = (conv_output_size(n, k, s, p) for n, k, s, p in zip((H, W), kernel, stride, padding))
    cols = np.empty((G, C * kernel[0] * kernel[1], B * oh * ow), x.dtype)
    _im2col(np.ascontiguousarray(x), *kernel, *stride, *padding, oh, ow, cols)
    return cols


def col2im(cols, x_shape, kernel, stride, padding):
    """Images of shape ``x_shape`` (G, B, C, H, W) from ``cols`` (G, C kh kw, B OH OW), summing overlaps."""
    H, W = x_shape[-2:]
    oh, ow = (conv_output_size(n, k, s, p) for n, k, s, p in zip((H, W), kernel, stride, padding))
    x = np.empty(x_shape, cols.dtype)
    _col2im(np.ascontiguousarray(cols), *kernel, *stride, *padding, oh, ow, x)
    return x


def im2col_naive(x, kernel, stride, padding):
    """NumPy twin of :func:`im2col`: one strided slice of the zero-padded images per (i, j)."""
    G, B, C, H, W = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((G, C, kh, kw, B, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            cols[:, :, i, j] = window.transpose(0, 2, 1, 3, 4)
    return cols.reshape(G, C * kh * kw, B * oh * ow)


def col2im_naive(cols, x_shape, kernel, stride, padding):
    """NumPy twin of :func:`col2im`: add each (i, j) slice back into the padded images, then crop."""
    G, B, C, H, W = x_shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = conv_output_size(H, kh, sh, ph), conv_output_size(W, kw, sw, pw)
    cols = cols.reshape(G, C, kh, kw, B, oh, ow)
    xp = np.zeros((G, B, C, H + 2 * ph, W + 2 * pw), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xp[:, :, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += cols[:, :, i, j].transpose(0, 2, 1, 3, 4)
    return xp[:, :, :, ph:ph + H, pw:pw + W]
