"""A sequential network whose parameters are views into one flat vector.

The flat vector follows PyTorch's ``named_parameters()`` order for ``torch.nn.Sequential``:
"0.weight", "0.bias", "2.weight", ... (layer index, then the layer's own parameter order), so a
state dict maps one to one onto torch's. Gradients are written into a second flat vector laid out
the same way, which lets an optimizer update every parameter in one kernel.
"""

import copy

import numpy as np

from .build import build_layer
from .layer import Layer

DTYPES = {"float64": np.float64, "float32": np.float32}


def as_dtype(dtype):
    """``np.float64`` or ``np.float32`` from a dtype or its name; anything else is an error."""
    dt = np.dtype(DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype)
    if dt not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    return dt.type


def _assignable(value, target):
    """Whether ``value`` may be copied into ``target`` without losing meaning: integers into
    integer buffers, real (float or integer, not bool or complex) numbers into float arrays."""
    if np.issubdtype(target.dtype, np.integer):
        return np.issubdtype(value.dtype, np.integer)
    return np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)


class Network:
    """``torch.nn.Sequential`` with hand-written derivatives.

    Parameters
    ----------
    layers : list of :class:`Layer`
    rng : numpy.random.Generator
        Source of PyTorch's default initialisation, drawn layer by layer in parameter order.
    dtype : float64 (the reference, default) or float32.
    """

    def __init__(self, layers, rng, dtype=np.float64):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is not a refplastic Layer: {layer!r}")
        self.dtype = as_dtype(dtype)
        self.parameter_names = []
        self.parameter_shapes = []
        for i, layer in enumerate(self.layers):
            for name, shape in layer.param_shapes.items():
                self.parameter_names.append(f"{i}.{name}")
                self.parameter_shapes.append(tuple(shape))
        self.num_parameters = sum(int(np.prod(s)) for s in self.parameter_shapes)
        self.flat = np.zeros(self.num_parameters, self.dtype)
        self.grad = np.zeros(self.num_parameters, self.dtype)
        for layer, views in zip(self.layers, self.unflatten(self.flat)):
            layer.params = views
            layer.allocate_buffers(self.dtype)
        self.reset_parameters(rng)

    @classmethod
    def from_architecture(cls, architecture, rng, dtype=np.float64):
        """Build from a list of ``{"type": <torch.nn class name>, **constructor kwargs}``."""
        return cls([build_layer(spec) for spec in architecture], rng, dtype)

    def architecture(self):
        """The list of ``{"type": ..., **kwargs}`` that :meth:`from_architecture` takes."""
        return [{"type": type(layer).__name__, **layer.config()} for layer in self.layers]

    # ---- parameters and buffers ----------------------------------------------------------------
    def reset_parameters(self, rng):
        """PyTorch's default initialisation of every layer, in order, and fresh buffers."""
        for layer in self.layers:
            layer.reset_parameters(rng)
            layer.reset_buffers()

    def unflatten(self, vector):
        """Per-layer dicts of views into ``vector``, keyed by parameter name.

        ``vector`` has shape (P,), or (K, P) for K tangents, giving views of shape (K, *shape).
        """
        if vector.shape[-1:] != (self.num_parameters,) or vector.ndim > 2:
            raise ValueError(f"expected shape ({self.num_parameters},) or (K, {self.num_parameters}), "
                             f"got {vector.shape}")
        lead = vector.shape[:-1]
        out, offset = [], 0
        for layer in self.layers:
            views = {}
            for name, shape in layer.param_shapes.items():
                size = int(np.prod(shape))
                views[name] = vector[..., offset:offset + size].reshape(lead + tuple(shape))
                offset += size
            out.append(views)
        return out

    def named_parameters(self):
        """``[(name, array view), ...]`` in PyTorch order."""
        return [(f"{i}.{n}", a) for i, layer in enumerate(self.layers) for n, a in layer.params.items()]

    def named_buffers(self):
        """``[(name, array), ...]`` of buffers (BatchNorm running statistics, spectral-norm u, v) in PyTorch order."""
        return [(f"{i}.{n}", a) for i, layer in enumerate(self.layers) for n, a in layer.buffers.items()]

    def parameter_offsets(self):
        """``{name: (start, stop)}``: where each parameter lies in the flat vector."""
        out, offset = {}, 0
        for name, shape in zip(self.parameter_names, self.parameter_shapes):
            size = int(np.prod(shape))
            out[name] = (offset, offset + size)
            offset += size
        return out

    def bind_storage(self, flat, grad):
        """Keep the parameters in ``flat`` and write gradients into ``grad`` from now on.

        Both are writeable arrays of shape (P,) and the network's dtype (say, rows of an
        :class:`refplastic.nn.Ensemble`'s stacked arrays); the current parameter values are
        copied into ``flat`` and every layer's parameters become views of it.
        """
        for name, array in (("flat", flat), ("grad", grad)):
            if not (isinstance(array, np.ndarray) and array.shape == self.flat.shape and array.dtype == self.dtype
                    and array.flags.writeable):
                raise ValueError(f"{name} must be a writeable {np.dtype(self.dtype).name} array of shape "
                                 f"{self.flat.shape}, got {getattr(array, 'dtype', type(array).__name__)} "
                                 f"{getattr(array, 'shape', '')}")
        flat[...] = self.flat
        self.flat, self.grad = flat, grad
        for layer, views in zip(self.layers, self.unflatten(flat)):
            layer.params = views

    def get_flat(self):
        """A copy of the flat parameter vector."""
        return self.flat.copy()

    def set_flat(self, vector):
        """Copy ``vector`` (shape (P,)) into the parameters."""
        vector = np.asarray(vector)
        if vector.shape != self.flat.shape:
            raise ValueError(f"expected a vector of shape {self.flat.shape}, got {vector.shape}")
        self.flat[...] = vector

    def get_parameter(self, name):
        return self._named(name, self.named_parameters(), "parameter")

    def set_parameter(self, name, value):
        target = self.get_parameter(name)
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"parameter {name} has shape {target.shape}, got {value.shape}")
        target[...] = value

    def state_dict(self):
        """Copies of all parameters and buffers, keyed and ordered as PyTorch's ``state_dict()``."""
        out = {}
        for i, layer in enumerate(self.layers):
            for n, a in list(layer.params.items()) + list(layer.buffers.items()):
                out[f"{i}.{n}"] = a.copy()
        return out

    def load_state_dict(self, state):
        """Copy every entry of a PyTorch-style state dict in; keys and shapes must match exactly, and
        values must be real numbers (integers for integer buffers such as ``num_batches_tracked``)."""
        mine = self.state_dict()
        missing = [k for k in mine if k not in state]
        unexpected = [k for k in state if k not in mine]
        if missing or unexpected:
            raise ValueError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
        targets = dict(self.named_parameters() + self.named_buffers())
        for key, target in targets.items():
            value = np.asarray(state[key])
            if value.shape != target.shape:
                raise ValueError(f"{key}: expected shape {target.shape}, got {value.shape}")
            if not _assignable(value, target):
                kind = "integer" if np.issubdtype(target.dtype, np.integer) else "real"
                raise ValueError(f"{key}: expected {kind} numbers, got {value.dtype}")
            target[...] = value

    def copy(self):
        """An independent deep copy (parameters, buffers, mode)."""
        return copy.deepcopy(self)

    def __deepcopy__(self, memo):
        new = object.__new__(Network)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("layers", "flat", "grad")})
        new.layers = [copy.copy(layer) for layer in self.layers]
        new.flat = self.flat.copy()
        new.grad = np.zeros_like(self.grad)
        for old, layer, views in zip(self.layers, new.layers, new.unflatten(new.flat)):
            layer.params = views
            layer.buffers = {k: v.copy() for k, v in old.buffers.items()}
        return new

    # ---- modes -------------------------------------------------------------------------------
    def train(self, mode=True):
        """Training mode (BatchNorm uses batch statistics and updates running ones; SpectralNormLinear
        runs its power iteration at every forward)."""
        for layer in self.layers:
            layer.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (BatchNorm uses running statistics)."""
        return self.train(False)

    @property
    def training(self):
        return all(layer.training for layer in self.layers)

    # ---- forward and backward (the R-maps of the whole network: refplastic.curvature.CurvatureBatch) -
    def as_input(self, x):
        """``x`` as an array of the network's dtype (no copy when it already is one); a ValueError
        for an empty batch or for values that are not real numbers."""
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
                or x.dtype == np.bool_):
            raise ValueError(f"network inputs must be real numbers, got dtype {x.dtype}")
        if x.size == 0:
            raise ValueError(f"network inputs must not be empty, got shape {x.shape}")
        return x.astype(self.dtype, copy=False)

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        """Network output for input ``x``; no cache is kept."""
        y = self.as_input(x)
        for layer in self.layers:
            y, _ = layer.forward(y)
        return y

    def forward_cached(self, x):
        """``(output, caches)``: the forward pass with every layer's cache, for the other maps."""
        y = self.as_input(x)
        caches = []
        for layer in self.layers:
            y, cache = layer.forward(y)
            caches.append(cache)
        return y, caches

    def layer_outputs(self, x):
        """Every layer's output, in order: ``outs[i]`` is the output of layer ``i``.

        :mod:`refplastic.stats` takes pre-activations from the Linear, SpectralNormLinear and Conv2d layers and
        activations from the activation layers; the input itself is not included.
        """
        y = self.as_input(x)
        outs = []
        for layer in self.layers:
            y, _ = layer.forward(y)
            outs.append(y)
        return outs

    def backward(self, caches, gz, out=None, need_input_grad=False):
        """Write ``dL/dtheta`` for output cotangent ``gz`` into ``out`` (default ``self.grad``).

        Returns ``(out, gx)`` where ``gx`` is ``dL/dx`` if ``need_input_grad`` else ``None``.
        """
        out = self.grad if out is None else out
        g = gz
        grads = self.unflatten(out)
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(caches[i], g, grads[i], need_input_grad=i > 0 or need_input_grad)
        return out, g

    def loss_and_grad(self, x, t, loss):
        """``(L, grad)`` for a batch; ``grad`` is ``self.grad``, overwritten by the next call."""
        z, caches = self.forward_cached(x)
        value, lcache = loss.forward(z, t)
        self.backward(caches, loss.backward(lcache))
        return value, self.grad

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Network(dtype={np.dtype(self.dtype).name}, parameters={self.num_parameters}\n{inner}\n)"

    @staticmethod
    def _named(name, pairs, kind):
        for n, a in pairs:
            if n == name:
                return a
        raise KeyError(f"no {kind} named {name!r}; have {[n for n, _ in pairs]}")
