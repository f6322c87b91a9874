"""LayerNorm: standardise each sample over its last ``len(normalized_shape)`` dimensions.

PyTorch's ``LayerNorm(normalized_shape, eps, elementwise_affine, bias)``: with A the trailing
axes of shape ``normalized_shape`` and biased variance,

    y = gamma (x - mean_A(x)) / sqrt(var_A(x) + eps) + beta,

gamma (ones at init) and beta (zeros) of shape ``normalized_shape``, their gradients summed over
the leading axes. The four maps are those of :mod:`refplastic.nn.normalization`.
"""

from .arguments import finite_float, positive_int
from .normalization import Normalization, Standardized, standardize


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

    def standardize(self, x, ensemble=False):
        d = len(self.normalized_shape)
        if x.shape[x.ndim - d:] != self.normalized_shape:
            raise ValueError(f"LayerNorm expects inputs ending in shape {self.normalized_shape}, got shape {x.shape}")
        stat_axes = tuple(range(-d, 0))
        xhat, r, _, _ = standardize(x, stat_axes, self.eps)
        return Standardized(xhat, r, stat_axes, tuple(range(-x.ndim + ensemble, -d)))
