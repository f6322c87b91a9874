"""BatchNorm1d and BatchNorm2d: standardise each channel (axis 1) over the batch and space.

PyTorch semantics. With A all axes but the channel axis and ``n`` the number of values per channel:

- training mode: ``y = gamma (x - mean_A(x)) / sqrt(var_A(x) + eps) + beta`` with the batch
  statistics (biased variance), and the running statistics move towards them,

      running_mean <- (1 - f) running_mean + f mean_A(x)
      running_var  <- (1 - f) running_var  + f var_A(x) n / (n - 1)      (unbiased)
      num_batches_tracked <- num_batches_tracked + 1

  with ``f = momentum``, or ``f = 1 / num_batches_tracked`` (a cumulative average) when
  ``momentum`` is None;
- eval mode: the same affine map with the running statistics in place of the batch ones, so
  ``y`` is affine in x (``S g = r g`` in :mod:`refplastic.nn.normalization`);
- ``track_running_stats=False``: batch statistics in both modes and no buffers.

gamma (ones at init) and beta (zeros) have one entry per channel; ``affine=False`` drops them.
Only ``forward`` (and ``ensemble_forward``) updates the running statistics; the other maps read
the forward cache only. In an ensemble each member has its own batch statistics, running
statistics and count (buffers (E, C) and (E,)).
"""

import numpy as np

from .arguments import finite_float, positive_int
from .normalization import Normalization, Standardized, standardize


class _BatchNorm(Normalization):
    input_ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = positive_int(num_features, "num_features")
        self.eps = finite_float(eps, "eps", 0, strictly_above=True)
        self.momentum = None if momentum is None else finite_float(momentum, "momentum", 0, 1)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.param_shapes = {"weight": (self.num_features,), "bias": (self.num_features,)}

    def config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "affine": self.affine, "track_running_stats": self.track_running_stats}

    def reset_parameters(self, rng):
        if self.affine:
            self.params["weight"][...] = 1
            self.params["bias"][...] = 0

    def allocate_buffers(self, dtype):
        if self.track_running_stats:
            self.buffers = {"running_mean": np.zeros(self.num_features, dtype),
                            "running_var": np.ones(self.num_features, dtype),
                            "num_batches_tracked": np.array(0, np.int64)}

    def reset_buffers(self):
        if self.track_running_stats:
            self.buffers["running_mean"][...] = 0
            self.buffers["running_var"][...] = 1
            self.buffers["num_batches_tracked"][...] = 0

    def standardize(self, x, ensemble=False):
        name = type(self).__name__
        lead = int(ensemble)  # the ensemble axis E, before the member's batch axis
        channel = lead + 1
        if x.ndim - lead not in self.input_ndims:
            raise ValueError(f"{name} expects {' or '.join(str(n + lead) for n in self.input_ndims)}-dimensional "
                             f"{'ensemble ' if ensemble else ''}inputs, got shape {x.shape}")
        if x.shape[channel] != self.num_features:
            raise ValueError(f"{name}({self.num_features}) expects {self.num_features} channels in axis {channel}, "
                             f"got shape {x.shape}")
        axes = tuple(i - x.ndim for i in range(lead, x.ndim) if i != channel)
        if self.track_running_stats and not self.training:
            shape = tuple(1 if i - x.ndim in axes else n for i, n in enumerate(x.shape))
            r = 1 / np.sqrt(self.buffers["running_var"] + self.eps).reshape(shape)
            return Standardized((x - self.buffers["running_mean"].reshape(shape)) * r, r, None, axes)
        n = int(np.prod([x.shape[a] for a in axes]))
        if n == 1:
            raise ValueError(f"{name}: expected more than 1 value per channel when training, got shape {x.shape}")
        xhat, r, mean, var = standardize(x, axes, self.eps)
        if self.training and self.track_running_stats:
            stats_shape = self.buffers["running_mean"].shape
            self._update_running_stats(mean.reshape(stats_shape), var.reshape(stats_shape) * (n / (n - 1)))
        return Standardized(xhat, r, axes, axes)

    def _update_running_stats(self, batch_mean, batch_var_unbiased):
        """Move the running statistics towards the batch's by ``f`` (see the module docstring); each
        member of an ensemble (buffers (E, C), counts (E,)) by its own ``f``."""
        count = self.buffers["num_batches_tracked"]
        count += 1
        f = 1 / count[..., None] if self.momentum is None else self.momentum
        dtype = batch_mean.dtype  # 1 - f and f rounded to it, as NumPy does with a Python float
        keep, take = np.asarray(1 - f, dtype), np.asarray(f, dtype)
        for name, batch in (("running_mean", batch_mean), ("running_var", batch_var_unbiased)):
            running = self.buffers[name]
            running *= keep
            running += take * batch


class BatchNorm1d(_BatchNorm):
    """BatchNorm over inputs (N, C) or (N, C, L)."""

    input_ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over inputs (N, C, H, W)."""

    input_ndims = (4,)
