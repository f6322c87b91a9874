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
from numba import njit, uint64


def conv_output_size(size, kernel, stride, padding):
    """Output length ``(size + 2 padding - kernel) // stride + 1`` of a window scan (<= 0: none fits)."""
    return (size + 2 * padding - kernel) // stride + 1


# The kernels see no padding: the wrappers pad x with zeros before im2col and crop after col2im,
# a copy of the images, which are kh kw / (sh sw) times smaller than cols.
# They index flat arrays with unsigned offsets: a signed index makes Numba test it for
# wraparound (negative indices count from the end) on every access, which blocks vectorization.
# One input row (im2col) or output row (col2im) serves all kw kernel columns while it is in L1.
# They are serial: the GEMMs between them already use every core, and Numba's threads would
# fight OpenBLAS's for them (and its OpenMP layer breaks fork()ed worker processes).


@njit(cache=True)
def _im2col(x, kh, kw, sh, sw, oh, ow, cols):
    G, B, C, H, W = x.shape
    src = x.reshape(-1)
    dst = cols.reshape(-1)
    row_length = B * oh * ow
    for g in range(G):
        for c in range(C):
            for i in range(kh):
                row = ((g * C + c) * kh + i) * kw * row_length  # cols[g, (c, i, 0)]
                for b in range(B):
                    image = ((g * B + b) * C + c) * H * W  # x[g, b, c]
                    for oy in range(oh):
                        line = image + (oy * sh + i) * W
                        out = row + (b * oh + oy) * ow
                        for j in range(kw):
                            at = uint64(out + j * row_length)
                            frm = uint64(line + j)
                            for ox in range(ow):
                                dst[at + uint64(ox)] = src[frm + uint64(ox * sw)]


@njit(cache=True)
def _col2im(cols, kh, kw, sh, sw, oh, ow, x):
    G, B, C, H, W = x.shape
    src = cols.reshape(-1)
    dst = x.reshape(-1)
    row_length = B * oh * ow
    for g in range(G):
        for b in range(B):
            for c in range(C):
                image = ((g * B + b) * C + c) * H * W  # x[g, b, c]
                for k in range(H * W):
                    dst[uint64(image + k)] = 0
                for i in range(kh):
                    row = ((g * C + c) * kh + i) * kw * row_length  # cols[g, (c, i, 0)]
                    for oy in range(oh):
                        line = image + (oy * sh + i) * W
                        out = row + (b * oh + oy) * ow
                        for j in range(kw):
                            at = uint64(line + j)
                            frm = uint64(out + j * row_length)
                            for ox in range(ow):
                                dst[at + uint64(ox * sw)] += src[frm + uint64(ox)]


def _output_hw(hw, kernel, stride, padding):
    return tuple(conv_output_size(n, k, s, p) for n, k, s, p in zip(hw, kernel, stride, padding))


def im2col(x, kernel, stride, padding):
    """``cols`` of shape (G, C kh kw, B OH OW) from images ``x`` of shape (G, B, C, H, W)."""
    G, B, C = x.shape[:3]
    oh, ow = _output_hw(x.shape[3:], kernel, stride, padding)
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((G, C * kernel[0] * kernel[1], B * oh * ow), x.dtype)
    _im2col(np.ascontiguousarray(x), *kernel, *stride, oh, ow, cols)
    return cols


def col2im(cols, x_shape, kernel, stride, padding):
    """Images of shape ``x_shape`` (G, B, C, H, W) from ``cols`` (G, C kh kw, B OH OW), summing overlaps."""
    G, B, C, H, W = x_shape
    oh, ow = _output_hw((H, W), kernel, stride, padding)
    ph, pw = padding
    x = np.empty((G, B, C, H + 2 * ph, W + 2 * pw), cols.dtype)
    _col2im(np.ascontiguousarray(cols), *kernel, *stride, oh, ow, x)
    return np.ascontiguousarray(x[:, :, :, ph:ph + H, pw:pw + W]) if ph or pw else x


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
            window = xp[:, :, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            window += cols[:, :, i, j].transpose(0, 2, 1, 3, 4)
    return xp[:, :, :, ph:ph + H, pw:pw + W]
