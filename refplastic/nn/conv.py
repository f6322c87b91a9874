"""2-d convolution (PyTorch's ``Conv2d``: cross-correlation, NCHW, zero padding, groups = 1).

With ``conv(x, W)[n, o, oy, ox] = sum_{c,i,j} W[o, c, i, j] xpad[n, c, oy sh + i, ox sw + j]``
(xpad: x with ph, pw zeros on each side), ``convT`` its adjoint in x (the transposed convolution)
and ``corr(g, x)[o, c, i, j] = sum_{n,oy,ox} g[n, o, oy, ox] xpad[n, c, oy sh + i, ox sw + j]``
its adjoint in W, the maps are, for a parameter direction ``(V, Vb)``:

    forward     y   = conv(x, W) + b
    backward    gx  = convT(gy, W),                 gW  = corr(gy, x),                 gb  = sum_{n,oy,ox} gy
    forward_r   Ry  = conv(Rx, W) + conv(x, V) + Vb
    backward_r  Rgx = convT(Rgy, W) + convT(gy, V), RgW = corr(Rgy, x) + corr(gy, Rx), Rgb = sum_{n,oy,ox} Rgy

The layer is bilinear in (x, W), so there is no other second-order term.

Scheme: a *lowering* turns the convolution into one BLAS matrix product. It rearranges the
images into a matrix ``L = lower(x)`` of shape (D, P N), the weight into a matrix
``Wm = matrix(W)`` of shape (R, D), and has a linear map ``expand`` from (R, P N) to the output
(N, O, OH, OW) with adjoint ``contract``, such that

    conv(x, W) = expand(Wm @ L),    corr(gy, x) = unmatrix(contract(gy) @ L^T),
    convT(gy, W) = lower^T(Wm^T @ contract(gy)),

where ``unmatrix`` is the inverse rearrangement of ``matrix``. Two lowerings:

* :class:`Im2col` (any geometry): ``L = im2col(x)`` (:mod:`refplastic.kernels.im2col`),
  D = C kh kw, R = O, P = OH OW; ``Wm = W.reshape(O, -1)``; ``expand`` is a reshape.
* :class:`SpaceToDepth` (a kernel that is a multiple of the stride, (kh, kw) = (mh sh, mw sw),
  with a stride of at least 2): ``L`` holds the sh x sw blocks of the padded images
  (:mod:`refplastic.kernels.space_to_depth`), D = C sh sw, R = mh mw O, P = Bh Bw with
  ``Bh = OH - 1 + mh`` (likewise Bw); ``Wm[(p, q, o), (c, a, b)] = W[o, c, sh p + a, sw q + b]``;
  ``expand`` is the shift-add ``y[n, o, i, j] = sum_{p,q} Z[(p, q, o), (i + p, j + q, n)]``.
  L is about the size of x, where im2col's is kh kw / (sh sw) times larger.

Layout: the columns of L run over (pixel, image) with the image fastest, so the kernels copy
runs of N values (docs/performance.md). The layer's inputs and outputs are NCHW arrays as
anywhere else; an output is a *view* (N, O, OH, OW) of memory laid out (O, OH, OW, N), which
elementwise layers keep and the next convolution then lowers without a copy. Im2col copies an
input in any other layout into that one first; space-to-depth reads any layout as it is.

Blocks: OpenBLAS computes a product of at most 10^6 multiply-adds with its small-matrix kernels,
which do not pack their operands; for a product with few rows (a convolution with few output
channels, R = 16 in the probe CNN) they run twice as fast as its packing path (docs/performance.md).
So products with few rows go in blocks of columns of that size (:func:`blocked_product`,
:func:`weight_product`), and an im2col convolution whose blocks hold at least one output pixel of
all N images lowers and multiplies *block by block*: each block's columns ``L[:, :, first N:stop N]``
(the output pixels first <= p < stop) are lowered into a buffer that stays in cache and multiplied
at once, so that the im2col matrix, kh kw / (sh sw) times the size of the images, is never made
whole (:meth:`Conv2d._convolve`). Its backward pass makes ``corr`` and ``convT`` block by block
too, lowering each block again, and ``Wm^T @ contract(gy)`` block by block into col2im.

The forward pass keeps ``L`` for the other maps, or the batch-last images of a blocked forward
pass, which the R-maps lower whole. The K tangents of the R-maps are a leading axis of the same
products (the lowering of Rx is done for all K at once). The ensemble maps are the forward and
backward rows for each member e, ``y[e] = conv(x[e], W[e]) + b[e]`` and so on, with the members
as the lowerings' leading group axis: one lowering of all E N images, whose member e is ``L[e]``
(D, P N), and batched products over E.
"""

import numpy as np

from ..kernels.im2col import (batch_last_copy, col2im, col2im_pixels, conv_output_hw, crop_images, im2col,
                              im2col_pixels, pad_images)
from ..kernels.space_to_depth import (block_weight, depth_to_space, shift_add, shift_scatter, space_to_depth,
                                      unblock_weight)
from .arguments import as_pair, positive_int
from .init import torch_default_init_
from .layer import Layer, shares_input


def padding_from_string(padding, kernel, stride):
    """torch's ``padding="valid"`` (no padding) and ``padding="same"`` (stride 1; the output has
    the input's size) as a pair of ints. "same" pads ``(k - 1) / 2`` on each side, so it needs an
    odd kernel: torch pads an even kernel's extra row on one side only, which this layer's
    symmetric padding cannot express (a ValueError says so)."""
    if padding == "valid":
        return (0, 0)
    if padding != "same":
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    if stride != (1, 1):
        raise ValueError(f"padding='same' needs stride 1 (as in torch), got stride={stride}")
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"padding='same' with the even kernel_size {kernel} pads one side more than the other, "
                         "which Conv2d does not support; give the padding as ints")
    return tuple((k - 1) // 2 for k in kernel)


def batch_last(x):
    """The (G, C, H, W, N) view of images ``x`` (G, N, C, H, W): C-contiguous for an output of this
    layer, any strides otherwise (the kernels' wrappers copy what they cannot read)."""
    return x.transpose(0, 2, 3, 4, 1)


def batch_first(a):
    """The (G, N, C, H, W) view of batch-last images ``a`` (G, C, H, W, N)."""
    return a.transpose(0, 4, 1, 2, 3)


SMALL_PRODUCT = 1_000_000
"""Multiply-adds up to which OpenBLAS computes a product with its *small-matrix kernels* (x86-64
with AVX-512, SkylakeX and later: its ``gemm_small_kernel_permit``), which read the operands where
they lie instead of packing them first and run on one thread. For a convolution with few output
channels, ``Wm @ L`` (16 x 75 by 75 x 16384 for the probe CNN's first layer, batch 64) takes 0.9 ms
on the packing path and 0.45 ms as 20 products of 820 columns (float32, one thread;
docs/performance.md)."""
MIN_BLOCK = 256
"""The fewest columns a block may have: narrower blocks lose more to calls than they gain."""
SMALL_TN = 1200
"""The largest result (M N entries) for which OpenBLAS takes the small-matrix kernel with a
transposed first operand, the case of the weight gradient ``g @ L^T`` (``gemm_small_kernel_permit``)."""
MIN_GROUP = 64
"""The fewest columns of a weight gradient's group (:func:`weight_product`)."""


def column_block(rows, depth, columns):
    """The width of the blocks of columns into which :func:`blocked_product` cuts a product of
    (rows, depth) by (depth, columns): the most columns for which a block has at most
    :data:`SMALL_PRODUCT` multiply-adds, evened out over the blocks; ``columns`` (one block) when
    the product is that small already or the blocks would be narrower than :data:`MIN_BLOCK`."""
    width = SMALL_PRODUCT // (rows * depth)
    if width < MIN_BLOCK or columns <= width:
        return columns
    blocks = -(-columns // width)
    return -(-columns // blocks)


def blocked_product(a, b):
    """``a @ b`` for a (..., M, K) and b (..., K, N), computed block of columns by block of columns
    (:func:`column_block`) so that each block's product is one for OpenBLAS's small-matrix kernels."""
    width = column_block(a.shape[-2], a.shape[-1], b.shape[-1])
    if width == b.shape[-1]:
        return a @ b
    out = np.empty((*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1]), np.result_type(a, b))
    for start in range(0, b.shape[-1], width):
        np.matmul(a, b[..., start:start + width], out=out[..., start:start + width])
    return out


def block_of(buffer, groups, rows, columns):
    """A C-contiguous (groups, rows, columns) array in the first entries of the flat ``buffer``."""
    return buffer[:groups * rows * columns].reshape(groups, rows, columns)


def _oriented_weight_product(g, lowered):
    if g.shape[-2] >= lowered.shape[-2]:
        return g @ np.swapaxes(lowered, -1, -2)
    return np.swapaxes(lowered @ np.swapaxes(g, -1, -2), -1, -2)


def weight_groups(rows, depth):
    """The column ranges ``(start, stop)`` of the groups in which :func:`weight_product` makes a
    weight gradient of ``rows`` x ``depth``: groups of at most :data:`SMALL_TN` entries (``SMALL_TN /
    rows`` columns, evened out), or one group of all columns when such groups would have fewer
    than :data:`MIN_GROUP` columns."""
    group = min(depth, SMALL_TN // rows)
    if group < min(depth, MIN_GROUP):
        group = depth
    group = -(-depth // -(-depth // group))
    return [(start, min(depth, start + group)) for start in range(0, depth, group)]


def weight_product(g, lowered):
    """``g @ lowered^T`` (G, R, D), for ``g`` (G, R, P N) and ``lowered`` (G, D, P N), with the longer
    of R and D as the rows of each BLAS product: OpenBLAS splits a product between its threads
    along the rows of its result, so ``(lowered @ g^T)^T`` is the faster when D > R
    (docs/performance.md). A ``lowered`` of one group shared by every group of ``g`` (see
    :func:`shares_input`) takes one product for all of them, ``(G R, P N) @ (P N, D)``.

    With few rows R, the result is made in groups of columns of at most :data:`SMALL_TN` entries
    (:func:`weight_groups`), and each group's sum over P N in blocks of :func:`column_block`
    columns, each a product for OpenBLAS's small-matrix kernels, added up: 90 GFLOP/s against 72
    for the probe CNN's second layer (16 x 4096 by 4096 x 144, float32, one thread)."""
    if len(lowered) == 1 and len(g) > 1:
        return (g.reshape(-1, g.shape[-1]) @ lowered[0].T).reshape(*g.shape[:-1], -1)
    rows, depth, columns = g.shape[-2], lowered.shape[-2], g.shape[-1]
    groups = weight_groups(rows, depth)
    if len(groups) == 1 and rows * depth > SMALL_TN:
        return _oriented_weight_product(g, lowered)
    out = np.empty((*g.shape[:-1], depth), np.result_type(g, lowered))
    for first, stop in groups:
        width = column_block(rows, stop - first, columns)
        part = lowered[..., first:stop, :]
        total = _oriented_weight_product(g[..., :width], part[..., :width])
        for start in range(width, columns, width):
            total += _oriented_weight_product(g[..., start:start + width], part[..., start:start + width])
        out[..., first:stop] = total
    return out


class Im2col:
    """The im2col lowering; every array carries a leading group axis G (the tangent axis K, or 1)."""

    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def lower(self, x):
        """(G, N, C, H, W) -> ``cols`` (G, C kh kw, OH OW N)."""
        return im2col(batch_last(x), self.kernel, self.stride, self.padding)

    def images(self, x):
        """(G, N, C, H, W) -> the C-contiguous batch-last images (G, C, H, W, N) that
        :meth:`lower_pixels` lowers (a copy unless ``x`` is a view of such memory)."""
        return batch_last_copy(batch_last(x))

    def lower_pixels(self, images, first, stop, out=None):
        """The columns ``cols[:, :, first N:stop N]`` of the output pixels ``first <= p < stop`` from
        :meth:`images`, written into ``out`` if given."""
        return im2col_pixels(images, self.kernel, self.stride, self.padding, first, stop, out)

    def add_lower_adjoint_pixels(self, cols, images, first, stop):
        """Add col2im of the columns ``cols`` of the output pixels ``first <= p < stop`` into batch-last
        ``images`` (G, C, H, W, N)."""
        col2im_pixels(cols, images, self.kernel, self.stride, self.padding, first, stop)

    def lower_adjoint(self, cols, x_shape):
        """col2im: (G, C kh kw, OH OW N) -> images of shape ``x_shape`` (G, N, C, H, W)."""
        G, N, C, H, W = x_shape
        return batch_first(col2im(cols, (G, C, H, W, N), self.kernel, self.stride, self.padding))

    def matrix(self, w):
        """(..., O, C, kh, kw) -> (..., O, C kh kw)."""
        return w.reshape(*w.shape[:-4], w.shape[-4], -1)

    def unmatrix(self, m, out):
        """Write the matrix ``m`` (..., O, C kh kw) into the weight-shaped ``out`` (..., O, C, kh, kw)."""
        np.copyto(out, m.reshape(out.shape))

    def expand(self, z, out_hw, bias=None):
        """(G, O, OH OW n) -> (G, n, O, OH, OW), plus ``bias`` (G, O) if given, added into ``z``."""
        G, O = z.shape[:2]
        if bias is not None:
            z += bias.reshape(G, O, 1)
        return batch_first(z.reshape(G, O, *out_hw, -1))

    def contract(self, gy):
        """The adjoint of :meth:`expand`: (G, n, O, OH, OW) -> (G, O, OH OW n)."""
        return batch_last(gy).reshape(gy.shape[0], gy.shape[2], -1)


class SpaceToDepth:
    """The space-to-depth lowering for kernels (mh sh, mw sw); leading group axis G as in :class:`Im2col`."""

    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding
        self.multiple = tuple(k // s for k, s in zip(kernel, stride))

    def blocks(self, hw):
        """(Bh, Bw) = (OH - 1 + mh, OW - 1 + mw) for images of height and width ``hw``."""
        out_hw = conv_output_hw(hw, self.kernel, self.stride, self.padding)
        return tuple(n - 1 + m for n, m in zip(out_hw, self.multiple))

    def lower(self, x):
        """(G, N, C, H, W) -> blocks of the padded images, (G, C sh sw, Bh Bw N)."""
        blocks = self.blocks(x.shape[3:])
        return space_to_depth(pad_images(batch_last(x), self.padding), self.stride, blocks)

    def lower_adjoint(self, s, x_shape):
        """Depth-to-space: (G, C sh sw, Bh Bw N) -> images of shape ``x_shape``, cropped of the padding."""
        G, N, C, H, W = x_shape
        ph, pw = self.padding
        x = depth_to_space(s, (G, C, H + 2 * ph, W + 2 * pw, N), self.stride, self.blocks((H, W)))
        return batch_first(crop_images(x, self.padding))

    def matrix(self, w):
        """(..., O, C, kh, kw) -> ``Wm[..., (p, q, o), (c, a, b)] = w[..., o, c, sh p + a, sw q + b]``."""
        return block_weight(w, self.multiple, self.stride)

    def unmatrix(self, m, out):
        """Write the matrix ``m`` (..., (p, q, o), (c, a, b)) into the weight-shaped ``out`` (..., O, C, kh, kw)."""
        unblock_weight(m, self.multiple, self.stride, out)

    def expand(self, z, out_hw, bias=None):
        """Shift-add: (G, mh mw O, Bh Bw n) -> (G, n, O, OH, OW), plus ``bias`` (G, O) if given."""
        return batch_first(shift_add(z, out_hw, self.multiple, bias))

    def contract(self, gy):
        """The adjoint of :meth:`expand` (shift-scatter): (G, n, O, OH, OW) -> (G, mh mw O, Bh Bw n)."""
        return shift_scatter(batch_last(gy), self.multiple)


class Conv2d(Layer):
    """``Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
    bias=True, padding_mode="zeros")``, torch's signature.

    ``kernel_size``, ``stride`` and ``padding`` are ints or pairs (height, width); ``padding`` may
    also be ``"valid"`` or ``"same"`` (odd kernels, see :func:`padding_from_string`). ``dilation``,
    ``groups`` and ``padding_mode`` are accepted at their defaults only. The lowering is
    :class:`SpaceToDepth` when the kernel is a multiple of a stride of at least 2 (on one axis at
    least), :class:`Im2col` otherwise.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        super().__init__()
        if as_pair(dilation, "dilation", 1) != (1, 1):
            raise ValueError(f"Conv2d supports dilation=1 only, got dilation={dilation!r}")
        if groups != 1:
            raise ValueError(f"Conv2d supports groups=1 only, got groups={groups!r}")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d supports padding_mode='zeros' only, got padding_mode={padding_mode!r}")
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = as_pair(kernel_size, "kernel_size", 1)
        self.stride = as_pair(stride, "stride", 1)
        if isinstance(padding, str):
            padding = padding_from_string(padding, self.kernel_size, self.stride)
        self.padding = as_pair(padding, "padding", 0)
        self.bias = bool(bias)
        self.param_shapes = {"weight": (self.out_channels, self.in_channels, *self.kernel_size)}
        if self.bias:
            self.param_shapes["bias"] = (self.out_channels,)
        blocked = all(k % s == 0 for k, s in zip(self.kernel_size, self.stride)) and max(self.stride) >= 2
        self.lowering = (SpaceToDepth if blocked else Im2col)(self.kernel_size, self.stride, self.padding)

    def config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "bias": self.bias}

    def reset_parameters(self, rng):
        torch_default_init_(self.params["weight"], self.params.get("bias"), rng)

    def output_hw(self, x_shape):
        """(OH, OW) for an input of shape ``x_shape`` (N, C, H, W); a ValueError if it does not fit."""
        if len(x_shape) != 4 or x_shape[1] != self.in_channels:
            raise ValueError(f"{self!r} expects input of shape (N, {self.in_channels}, H, W), got {tuple(x_shape)}")
        out = conv_output_hw(x_shape[2:], self.kernel_size, self.stride, self.padding)
        if min(out) < 1:
            raise ValueError(f"{self!r}: kernel {self.kernel_size} is larger than the padded input "
                             f"{tuple(n + 2 * p for n, p in zip(x_shape[2:], self.padding))}")
        return out

    def example_gradients(self, cache, gy, out):
        """Per-example parameter gradients from a forward cache and the output cotangent ``gy``:
        ``out["weight"][n] = corr(gy_n, x_n)`` (N, O, C, kh, kw) and ``out["bias"][n] = sum gy_n``.
        The gradient of :meth:`backward` is their sum over n."""
        x_shape, stored = cache
        n, low, lowered = x_shape[0], self.lowering, self._lowered(stored[None])[0]
        g = low.contract(gy[None])[0]  # (R, P N)
        g3 = g.reshape(g.shape[0], -1, n).transpose(2, 0, 1)  # (N, R, P)
        gw = g3 @ lowered.reshape(lowered.shape[0], -1, n).transpose(2, 1, 0)  # (N, R, D)
        low.unmatrix(gw, out["weight"])
        if "bias" in out:
            np.sum(gy, axis=(2, 3), out=out["bias"])

    # ---- the four maps, and the ensemble's two ------------------------------------------------
    def _pixel_block(self, rows, x_shape):
        """Output pixels per block of a forward pass that lowers and multiplies block by block: the
        most for which a block's product, ``rows`` by C kh kw by pixels N, is one for OpenBLAS's
        small-matrix kernels (:data:`SMALL_PRODUCT`), evened out over the blocks; 0 (lower whole)
        for the space-to-depth lowering, and when that is less than one pixel or all of them.
        ``x_shape`` (G, N, C, H, W)."""
        N, C = x_shape[1:3]
        oh, ow = conv_output_hw(x_shape[3:], self.kernel_size, self.stride, self.padding)
        pixels = oh * ow
        block = SMALL_PRODUCT // max(1, rows * C * self.kernel_size[0] * self.kernel_size[1] * N)
        if not isinstance(self.lowering, Im2col) or block < 1 or block >= pixels:
            return 0
        return -(-pixels // -(-pixels // block))

    def _lowered(self, stored):
        """``L`` (G, D, P N) from what the forward pass stored: ``L`` itself, or the batch-last images
        (G, C, H, W, N) of a blocked forward pass, lowered now."""
        return im2col(stored, self.kernel_size, self.stride, self.padding) if stored.ndim == 5 else stored

    def _convolve(self, x, out_hw, weight, bias):
        """``(y, stored)`` for G stacks of images convolved each with its own weight:
        ``y[g] = expand(Wm[g] @ L[g]) + b[g]`` with ``L = lower(x)``, one lowering for all G N
        images and one batched product; x (G, N, C, H, W), ``out_hw`` from :meth:`output_hw`,
        weight (G, O, C, kh, kw), bias (G, O) or ``None``. ``stored`` is L, or, when the product
        is made block by block (:meth:`_pixel_block`: each block of output pixels lowered into
        a buffer that stays in cache and multiplied at once), the batch-last images
        (:meth:`Im2col.images`). The bias is added in one pass after the products (a pass per
        block took 6-8 us each where the whole pass takes 20-26 us)."""
        low = self.lowering
        if shares_input(x):  # every group convolves the same images: lower them once, one product
            lowered = low.lower(x[:1])
            matrix = low.matrix(weight)
            z = blocked_product(matrix.reshape(-1, matrix.shape[-1]), lowered[0]).reshape(*matrix.shape[:-1], -1)
            return low.expand(z, out_hw, bias), lowered
        matrix = low.matrix(weight)
        block = self._pixel_block(matrix.shape[-2], x.shape)
        if not block:
            lowered = low.lower(x)
            return low.expand(blocked_product(matrix, lowered), out_hw, bias), lowered
        images = low.images(x)
        (G, rows, depth), n, pixels = matrix.shape, x.shape[1], out_hw[0] * out_hw[1]
        z = np.empty((G, rows, pixels * n), images.dtype)
        buffer = np.empty(G * depth * block * n, images.dtype)
        for first in range(0, pixels, block):
            stop = min(pixels, first + block)
            part = z[..., first * n:stop * n]
            np.matmul(matrix, low.lower_pixels(images, first, stop, block_of(buffer, G, depth, part.shape[-1])), out=part)
        return low.expand(z, out_hw, bias), images

    def _convolve_backward(self, x_shape, stored, gy, weight, grads, need_input_grad):
        """The adjoint of :meth:`_convolve` for G stacks: ``gW[g] = unmatrix(contract(gy)[g] @ L[g]^T)``
        and ``gb[g] = sum gy[g]`` written into ``grads`` (arrays with the leading G; ``None`` skips
        them); returns ``gx[g] = lower^T(Wm[g]^T @ contract(gy)[g])`` (G, N, C, H, W) if asked.
        From stored images (a blocked forward pass) the weight gradient is summed over the same
        blocks, each lowered again into a buffer that stays in cache."""
        low = self.lowering
        g = low.contract(gy)  # (G, R, P N)
        if grads is not None:
            if stored.ndim == 5:
                gw = self._weight_product_blocks(g, stored, x_shape)
            else:
                gw = weight_product(g, stored)
            low.unmatrix(gw, grads["weight"])
            if self.bias:
                np.sum(gy, axis=(1, 3, 4), out=grads["bias"])
        if not need_input_grad:
            return None
        matrix = np.swapaxes(low.matrix(weight), -1, -2)
        if stored.ndim == 5:
            return self._input_gradient_blocks(matrix, g, x_shape)
        return low.lower_adjoint(blocked_product(matrix, g), x_shape)

    def _input_gradient_blocks(self, matrix, g, x_shape):
        """``lower^T(Wm^T @ g)`` (G, N, C, H, W) made block of output pixels by block (:meth:`_pixel_block`):
        each block's product into a buffer that stays in cache, added into the images at once."""
        G, n, C, H, W = x_shape
        block = self._pixel_block(matrix.shape[-1], x_shape)
        pixels = g.shape[-1] // n
        images = np.zeros((G, C, H, W, n), g.dtype)
        buffer = np.empty(G * matrix.shape[-2] * block * n, g.dtype)
        for first in range(0, pixels, block):
            stop = min(pixels, first + block)
            cols = np.matmul(matrix, g[..., first * n:stop * n],
                             out=block_of(buffer, G, matrix.shape[-2], (stop - first) * n))
            self.lowering.add_lower_adjoint_pixels(cols, images, first, stop)
        return batch_first(images)

    def _weight_product_blocks(self, g, images, x_shape):
        """``g @ L^T`` (G, R, D) with ``L`` lowered from ``images`` block of output pixels by block,
        each block's products (:func:`weight_groups`, each group's small enough for OpenBLAS's
        small-matrix kernels) kept apart and summed over the blocks at the end (one sum instead of
        an addition per block)."""
        n, (G, R, columns) = x_shape[1], g.shape
        depth = images.shape[1] * self.kernel_size[0] * self.kernel_size[1]
        groups = weight_groups(R, depth)
        widest = max(stop - first for first, stop in groups)
        pixels = columns // n
        block = min(pixels, max(1, SMALL_PRODUCT // (R * widest * n)))
        starts = range(0, pixels, block)
        parts = [np.empty((len(starts), G, R, stop - first), g.dtype) for first, stop in groups]
        buffer = np.empty(G * depth * block * n, g.dtype)
        for b, first in enumerate(starts):
            stop = min(pixels, first + block)
            cols = self.lowering.lower_pixels(images, first, stop, block_of(buffer, G, depth, (stop - first) * n))
            gb = g[..., first * n:stop * n]
            for (start, end), part in zip(groups, parts):
                np.matmul(gb, np.swapaxes(cols[..., start:end, :], -1, -2), out=part[b])
        return np.concatenate([part.sum(axis=0) for part in parts], axis=-1)

    def forward(self, x):
        """``y = expand(Wm @ L) + b`` with ``L = lower(x)``; the cache is ``(x.shape, L)``, or
        ``(x.shape, images)`` (:meth:`_convolve`)."""
        out_hw = self.output_hw(x.shape)
        bias = self.params.get("bias")
        y, stored = self._convolve(x[None], out_hw, self.params["weight"][None], None if bias is None else bias[None])
        return y[0], (x.shape, stored[0])

    def backward(self, cache, gy, grads, need_input_grad=True):
        """``gW = unmatrix(contract(gy) @ L^T)``, ``gb = sum gy``; returns
        ``gx = lower^T(Wm^T @ contract(gy))`` if asked."""
        x_shape, stored = cache
        gx = self._convolve_backward((1, *x_shape), stored[None], gy[None], self.params["weight"][None],
                                     None if grads is None else {k: v[None] for k, v in grads.items()},
                                     need_input_grad)
        return None if gx is None else gx[0]

    def ensemble_forward(self, x):
        """``y[e] = expand(Wm[e] @ L[e]) + b[e]``, the members as the lowering's groups: ``L = lower(x)``
        for x (E, N, C, H, W) lowers every member's images in one kernel call, (E, D, P N), and
        the E products are one batched product. The cache is ``(x.shape, L)`` or ``(x.shape, images)``."""
        out_hw = self.output_hw(x.shape[1:])
        y, stored = self._convolve(x, out_hw, self.params["weight"], self.params.get("bias"))
        return y, (x.shape, stored)

    def ensemble_backward(self, cache, gy, grads, need_input_grad=True):
        """``gW[e] = unmatrix(contract(gy)[e] @ L[e]^T)``, ``gb[e] = sum gy[e]``; returns
        ``gx[e] = lower^T(Wm[e]^T @ contract(gy)[e])`` if asked."""
        x_shape, stored = cache
        return self._convolve_backward(x_shape, stored, gy, self.params["weight"], grads, need_input_grad)

    def forward_r(self, cache, rx, v):
        """``Ry = expand(Vm @ L + Wm @ lower(Rx)) + Vb`` for all K at once.

        ``rcache = (v, lower(Rx))``, the second ``None`` when Rx is.
        """
        x_shape, stored = cache
        low, lowered = self.lowering, self._lowered(stored[None])[0]
        vm = low.matrix(v["weight"])  # (K, R, D)
        K, R = vm.shape[:2]
        z = (vm.reshape(K * R, -1) @ lowered).reshape(K, R, -1)
        rlowered = None
        if rx is not None:
            rlowered = low.lower(rx)
            z += low.matrix(self.params["weight"]) @ rlowered
        return low.expand(z, self.output_hw(x_shape), v.get("bias")), (v, rlowered)

    def backward_r(self, cache, rcache, gy, rgy, rgrads, need_input_grad=True):
        """``RgW = unmatrix(contract(Rgy) @ L^T + contract(gy) @ lower(Rx)^T)``, ``Rgb = sum Rgy`` and,
        if asked, ``Rgx = lower^T(Wm^T @ contract(Rgy) + Vm^T @ contract(gy))``, for all K at once."""
        x_shape, stored = cache
        v, rlowered = rcache
        low, lowered = self.lowering, self._lowered(stored[None])[0]
        g = low.contract(gy[None])[0]
        rg = low.contract(rgy)  # (K, R, P N)
        rgw = rg @ lowered.T
        if rlowered is not None:
            rgw += g @ rlowered.transpose(0, 2, 1)
        low.unmatrix(rgw, rgrads["weight"])
        if self.bias:
            np.sum(rgy, axis=(1, 3, 4), out=rgrads["bias"])
        if not need_input_grad:
            return None
        rgl = low.matrix(self.params["weight"]).T @ rg
        rgl += low.matrix(v["weight"]).transpose(0, 2, 1) @ g
        return low.lower_adjoint(rgl, (rgy.shape[0], *x_shape))
