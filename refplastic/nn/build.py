"""Layers from PyTorch-style descriptions ``{"type": <torch.nn class name>, **constructor kwargs}``.

This is how architectures are stored (reference files, checkpoints): the same list rebuilds the
network in torch with ``torch.nn.Sequential(*[getattr(nn, d.pop("type"))(**d) for d in arch])``,
except ``SpectralNormLinear``, a refplastic name for what torch builds as
``spectral_norm(nn.Linear(in_features, out_features, bias), n_power_iterations=n, eps=eps)``
(``torch.nn.utils.parametrizations.spectral_norm``; see :mod:`refplastic.nn.spectral_norm`).
"""

import inspect

from .activations import GELU, Identity, LeakyReLU, ReLU, Sigmoid, Tanh
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import Conv2d
from .flatten import Flatten
from .layernorm import LayerNorm
from .linear import Linear
from .pool import MaxPool2d
from .spectral_norm import SpectralNormLinear

LAYER_TYPES = {cls.__name__: cls for cls in (
    Linear, Conv2d, MaxPool2d, Flatten, ReLU, LeakyReLU, Tanh, Sigmoid, GELU, Identity, LayerNorm, BatchNorm1d, BatchNorm2d,
    SpectralNormLinear,
)}


def build_layer(spec):
    """The layer described by ``spec``; a clear ``ValueError`` for an unknown type or argument."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"a layer description must be a dict with a 'type' key, got {spec!r}")
    kwargs = dict(spec)
    name = kwargs.pop("type")
    cls = LAYER_TYPES.get(name)
    if cls is None:
        raise ValueError(f"unknown layer type {name!r}; supported: {', '.join(LAYER_TYPES)}")
    accepted = inspect.signature(cls.__init__).parameters
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise ValueError(f"{name} does not take argument(s) {', '.join(unknown)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: {e}") from None
