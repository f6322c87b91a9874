"""Flatten dimensions ``start_dim..end_dim`` into one (PyTorch default: all but the batch axis).

A reshape: every map is the same reshape (forward, forward_r) or its inverse (backward,
backward_r), and it has no second derivative. An ensemble's member e flattens ``x[e]``: the
dimensions count from the member's batch axis, after the ensemble axis.
"""

from .arguments import integer
from .layer import Layer


class Flatten(Layer):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = integer(start_dim, "start_dim")
        self.end_dim = integer(end_dim, "end_dim")

    def config(self):
        return {"start_dim": self.start_dim, "end_dim": self.end_dim}

    def _flat_shape(self, shape):
        nd = len(shape)
        if not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd):
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) is out of range for "
                             f"an input of shape {shape}")
        start = self.start_dim % nd
        end = self.end_dim % nd
        if start > end:
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}) does not fit shape {shape}")
        return shape[:start] + (-1,) + shape[end + 1:]

    def forward(self, x):
        return x.reshape(self._flat_shape(x.shape)), x.shape

    def backward(self, shape, gy, grads, need_input_grad=True):
        return gy.reshape(shape) if need_input_grad else None

    def ensemble_forward(self, x):
        return x.reshape(x.shape[:1] + self._flat_shape(x.shape[1:])), x.shape

    ensemble_backward = backward  # the reshape back to the cached input shape

    def forward_r(self, shape, rx, v):
        ry = None if rx is None else rx.reshape((rx.shape[0],) + self._flat_shape(shape))
        return ry, None

    def backward_r(self, shape, rcache, gy, rgy, rgrads, need_input_grad=True):
        return rgy.reshape((rgy.shape[0],) + shape) if need_input_grad else None
