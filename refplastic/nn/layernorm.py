"""LayerNorm: standardise each sample over its last ``len(normalized_shape)`` dimensions.

PyTorch's ``LayerNorm(normalized_shape, eps, elementwise_affine, bias)``: with A the trailing
axes of shape ``normalized_shape`` and biased variance,

    y = gamma (x - mean_A(x)) / sqrt(var_A(x) + eps) + beta,

gamma (ones at init) and beta (zeros) of shape ``normalized_shape``, their gradients summed over
the leading axes. The four maps are those of :mod:`refplastic.nn.normalization`.

A batch of samples laid out batch-last in memory (a convolution's output: an (N, C, H, W) view of
(C, H, W, N) memory) is the columns of a C-contiguous (C H W, N) matrix; the forward and backward
maps then run as the kernels of :mod:`refplastic.kernels.layernorm`, which keep that layout, and
every other case (and the R-maps) as the NumPy code of :mod:`refplastic.nn.normalization`.
"""

import numpy as np

from ..kernels.layernorm import layer_norm_columns, layer_norm_columns_backward
from .arguments import finite_float, positive_int
from .normalization import Normalization, Standardized, standardize


def sample_columns(a, d, members=False):
    """The (G, D, N) C-contiguous array whose ``[g]`` columns are the N samples of ``a`` (N, *S),
    ``len(S) = d``, G = 1 (or of each member g of an ensemble's ``a`` (E, N, *S), G = E), when ``a``
    is laid out batch-last in memory; else ``None``."""
    lead = int(members)
    if a.ndim != d + 1 + lead or a.dtype not in (np.float32, np.float64):
        return None
    batch_last = a.transpose(*range(lead), *range(lead + 1, a.ndim), lead)
    if not batch_last.flags.c_contiguous:
        return None
    return batch_last.reshape(a.shape[0] if members else 1, int(np.prod(a.shape[lead + 1:])), a.shape[lead])


def from_columns(columns, shape, members=False):
    """The view of shape ``shape``, (N, *S) or (E, N, *S), of sample columns (G, D, N): the
    inverse of :func:`sample_columns`."""
    lead = int(members)
    a = columns.reshape(*shape[:lead], *shape[lead + 1:], shape[lead])
    return a.transpose(*range(lead), a.ndim - 1, *range(lead, a.ndim - 1))


class LayerNorm(Normalization):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        if not isinstance(normalized_shape, (list, tuple)):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(positive_int(n, "normalized_shape") for n in normalized_shape)
        if not self.normalized_shape:
            raise ValueError("normalized_shape must not be empty")
        self.eps = finite_float(eps, "eps", 0, strictly_above=True)
        self.elementwise_affine = bool(elementwise_affine)
        self.bias = bool(bias)
        if self.elementwise_affine:
            self.param_shapes["weight"] = self.normalized_shape
            if self.bias:
                self.param_shapes["bias"] = self.normalized_shape

    def config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.bias}

    def reset_parameters(self, rng):
        if "weight" in self.params:
            self.params["weight"][...] = 1
        if "bias" in self.params:
            self.params["bias"][...] = 0

    def _check_shape(self, x):
        d = len(self.normalized_shape)
        if x.shape[x.ndim - d:] != self.normalized_shape:
            raise ValueError(f"LayerNorm expects inputs ending in shape {self.normalized_shape}, got shape {x.shape}")

    def _weight_and_bias(self, dtype, groups):
        """gamma and beta as (groups, D) arrays of ``dtype`` (ones and zeros without them), or
        ``None`` when the parameters have another dtype (NumPy's maps then promote, as torch's)."""
        size = int(np.prod(self.normalized_shape))
        arrays = [self.params[k].reshape(groups, size) if k in self.params else np.full((groups, size), float(k == "weight"), dtype)
                  for k in ("weight", "bias")]
        return arrays if all(a.dtype == dtype for a in arrays) else None

    def _columns_forward(self, x, members):
        """The forward map through the column kernels, or ``None`` where they do not apply."""
        self._check_shape(x)
        d = len(self.normalized_shape)
        columns = sample_columns(x, d, members)
        weight_bias = None if columns is None else self._weight_and_bias(x.dtype, len(columns))
        if weight_bias is None:
            return None
        y, xhat, r = np.empty_like(columns), np.empty_like(columns), np.empty(columns.shape[::2], x.dtype)
        for g, (weight, bias) in enumerate(zip(*weight_bias)):
            layer_norm_columns(columns[g], np.ascontiguousarray(weight), np.ascontiguousarray(bias), self.eps,
                               out=(y[g], xhat[g], r[g]))
        lead = int(members)
        s = Standardized(from_columns(xhat, x.shape, members), r.reshape(*x.shape[:lead + 1], *(1,) * d),
                         tuple(range(-d, 0)), tuple(range(-x.ndim + lead, -d)))
        return from_columns(y, x.shape, members), s

    def _columns_backward(self, s, gy, grads, need_input_grad, members):
        """``(True, the backward map)`` through the column kernels, or ``(False, None)``."""
        d = len(self.normalized_shape)
        xhat = sample_columns(s.xhat, d, members)
        weight_bias = None if xhat is None else self._weight_and_bias(xhat.dtype, len(xhat))
        if weight_bias is None or gy.dtype != xhat.dtype:
            return False, None
        lead = int(members)
        g = np.ascontiguousarray(gy.transpose(*range(lead), *range(lead + 1, gy.ndim), lead)).reshape(xhat.shape)
        r = np.ascontiguousarray(s.r.reshape(len(xhat), -1))
        gx, gweight, gbias = np.empty_like(g), np.empty(xhat.shape[:2], g.dtype), np.empty(xhat.shape[:2], g.dtype)
        for k, weight in enumerate(weight_bias[0]):
            layer_norm_columns_backward(g[k], xhat[k], r[k], np.ascontiguousarray(weight), out=(gx[k], gweight[k], gbias[k]))
        if grads is not None:
            for key, value in (("weight", gweight), ("bias", gbias)):
                if key in self.params:
                    grads[key][...] = value.reshape(grads[key].shape)
        return True, (from_columns(gx, s.xhat.shape, members) if need_input_grad else None)

    def forward(self, x):
        fast = self._columns_forward(x, members=False)
        return super().forward(x) if fast is None else fast

    def ensemble_forward(self, x):
        fast = self._columns_forward(x, members=True)
        return super().ensemble_forward(x) if fast is None else fast

    def backward(self, s, gy, grads, need_input_grad=True):
        done, gx = self._columns_backward(s, gy, grads, need_input_grad, members=False)
        return gx if done else super().backward(s, gy, grads, need_input_grad)

    def ensemble_backward(self, s, gy, grads, need_input_grad=True):
        done, gx = self._columns_backward(s, gy, grads, need_input_grad, members=True)
        return gx if done else super().ensemble_backward(s, gy, grads, need_input_grad)

    def standardize(self, x, ensemble=False):
        d = len(self.normalized_shape)
        self._check_shape(x)
        stat_axes = tuple(range(-d, 0))
        xhat, r, _, _ = standardize(x, stat_axes, self.eps)
        return Standardized(xhat, r, stat_axes, tuple(range(-x.ndim + ensemble, -d)))
