"""One entry point: ``compute_statistics(net, x, t, loss, names)`` returns a flat dict of floats.

Names
-----
A statistic is asked for as ``base[/parameter=value ...][/layer=i]``; a parameter left out takes
its default, and ``layer=i`` keeps only layer i's value. Each key returned spells out every
parameter of the statistic, in the order of :data:`STATISTICS`, then the layer if any::

    dormant_fraction                  -> dormant_fraction/tau=0.025, dormant_fraction/tau=0.025/layer=1, ...
    dormant_fraction/tau=0            -> dormant_fraction/tau=0, dormant_fraction/tau=0/layer=1, ...
    dormant_fraction/tau=0/layer=3    -> dormant_fraction/tau=0/layer=3
    feature_srank                     -> feature_srank/delta=0.01/layer=1, feature_srank/delta=0.01/layer=3

``layer`` is the layer's index in the Sequential (torch's ``"3.weight"`` is layer 3). Values
are written as Python's ``repr`` of the float without a trailing ``.0`` (``tau=0``,
``tau=0.025``, ``eps=1e-06``). A key without ``layer=`` is:

- for per-unit statistics (the fractions, the pre-activation moments and shifts), the mean over
  every unit of every layer the statistic applies to (so the dormant fraction of the network is
  the number of dormant units over the number of units, as ReDo counts it);
- for parameter and gradient statistics, the same formula on all parameters (weights: all
  weight matrices);
- absent for the rank statistics of features and weights, which exist per layer only.

A statistic that applies to no layer of the network gives no key (a Tanh network has no
``dead_fraction``), and so do the gradient cosine statistics for a batch of one; every value
returned is a finite float (one that overflows raises a ValueError naming the statistic). The statistics are
of the network as it is: its mode (train-mode BatchNorm normalises with the batch statistics) and
dtype; its buffers are left unchanged.
"""

import functools
import math
from typing import Callable, NamedTuple, Optional

import numpy as np

from ..curvature import (CurvatureBatch, eigenvalues, ggn, hessian, lanczos_extremes, ntk, preserved_buffers,
                         spectrum_scalars)
from ..nn import Conv2d, LeakyReLU, Linear, ReLU, Sigmoid, SpectralNormLinear, Tanh, make_loss
from ..overflow import finite, reported_as
from ..nn.activations import Elementwise
from . import gradients, preactivations, rank, units, weights

MAX_EXACT_DIMENSION = 5000  # largest P (Hessian, GGN) or N * D (NTK) for an exact spectrum


class Statistic(NamedTuple):
    """``compute(context, **parameters) -> {layer index or None: value}``; ``parameters``: defaults;
    ``needs``: "loss" (targets and a loss) and/or "init" (the network at initialisation)."""

    compute: Callable
    parameters: dict
    needs: tuple = ()


class Context:
    """A network on a batch, computing each shared quantity once (outputs, SVDs, gradients)."""

    def __init__(self, net, x, t, loss, init_net, seed):
        self.net, self.x, self.t, self.loss, self.init_net, self.seed = net, x, t, loss, init_net, seed
        self._feature_sv, self._weight_sv = {}, {}

    def layers(self, kinds):
        """Indices of the layers that are instances of ``kinds``."""
        return [i for i, layer in enumerate(self.net.layers) if isinstance(layer, kinds)]

    @functools.cached_property
    def outputs(self):
        with preserved_buffers(self.net):
            return self.net.layer_outputs(self.x)

    @functools.cached_property
    def init_outputs(self):
        with preserved_buffers(self.init_net):
            return self.init_net.layer_outputs(self.x)

    @functools.cached_property
    def batch(self):
        return CurvatureBatch(self.net, self.loss, self.x, self.t)

    @functools.cached_property
    def gradient_cosine(self):
        gram = gradients.per_example_gradient_gram(self.net, self.loss, self.x, self.t, batch=self.batch)
        return gradients.cosine_from_gram(gram)

    def features(self, i):
        """Layer i's output as an (N, d) feature matrix."""
        out = self.outputs[i]
        return out.reshape(out.shape[0], -1)

    def feature_singular_values(self, i):
        if i not in self._feature_sv:
            self._feature_sv[i] = rank.singular_values(self.features(i))
        return self._feature_sv[i]

    def weight(self, i):
        return weights.weight_matrix(self.net.layers[i].params["weight"])

    def weight_singular_values(self, i):
        if i not in self._weight_sv:
            self._weight_sv[i] = rank.singular_values(self.weight(i))
        return self._weight_sv[i]


ACTIVATIONS = (Elementwise,)  # ReLU, LeakyReLU, Tanh, Sigmoid, GELU, Identity
PREACTIVATIONS = WEIGHTED = (Linear, SpectralNormLinear, Conv2d)  # SpectralNormLinear: its parameter W, not W / sigma


def _mean_over_units(per_layer):
    """``{i: per-unit values}`` -> each layer's mean over its units, and (key None) the mean over all units."""
    if not per_layer:
        return {}
    values = {i: np.asarray(v, dtype=np.float64) for i, v in per_layer.items()}
    out = {None: float(np.mean(np.concatenate(list(values.values()))))}
    out.update({i: float(v.mean()) for i, v in values.items()})
    return out


def _unit_statistic(kinds, per_unit):
    """``per_unit(h, **parameters)`` on the output h of each layer of ``kinds``, averaged over units."""
    def compute(ctx, **parameters):
        return _mean_over_units({i: per_unit(ctx.outputs[i], **parameters) for i in ctx.layers(kinds)})
    return compute


def _saturated_fraction(ctx, threshold):
    return _mean_over_units({i: units.saturated_fraction(ctx.outputs[i], type(ctx.net.layers[i]).__name__, threshold)
                             for i in ctx.layers((Tanh, Sigmoid))})


def _preactivation_shift(which):
    """Per-unit |mean - mean0| (which = 0) or |std - std0| (which = 1) of each Linear/Conv2d output."""
    def compute(ctx):
        return _mean_over_units({i: preactivations.moment_shift(ctx.outputs[i], ctx.init_outputs[i])[which]
                                 for i in ctx.layers(PREACTIVATIONS)})
    return compute


def _feature_statistic(value):
    """``value(singular values, features, **parameters)`` for each activation layer's (N, d) features."""
    def compute(ctx, **parameters):
        return {i: float(value(ctx.feature_singular_values(i), ctx.features(i), **parameters))
                for i in ctx.layers(ACTIVATIONS)}
    return compute


def _weight_statistic(value):
    """``value(singular values, weight matrix, **parameters)`` for each Linear/Conv2d weight."""
    def compute(ctx, **parameters):
        return {i: float(value(ctx.weight_singular_values(i), ctx.weight(i), **parameters))
                for i in ctx.layers(WEIGHTED)}
    return compute


def _parameters(net, i):
    return list(net.layers[i].params.values())


def _parameter_statistic(value, *nets):
    """``value(arrays of each net)`` per layer with parameters, and (key None) on all parameters."""
    layers = [i for i, layer in enumerate(nets[0].layers) if layer.params]
    if not layers:
        return {}
    out = {None: value(*[[a for i in layers for a in _parameters(net, i)] for net in nets])}
    out.update({i: value(*[_parameters(net, i) for net in nets]) for i in layers})
    return out


def _weight_abs_sum(ctx):
    layers = ctx.layers(WEIGHTED)
    if not layers:
        return {}
    out = {None: weights.abs_sum([ctx.net.layers[i].params["weight"] for i in layers])}
    out.update({i: weights.abs_sum([ctx.net.layers[i].params["weight"]]) for i in layers})
    return out


def _gradient_norm(ctx):
    grads = ctx.net.unflatten(ctx.batch.grad)
    out = {None: gradients.gradient_norm(ctx.batch.grad)}
    out.update({i: gradients.gradient_norm(np.concatenate([g.ravel() for g in grads[i].values()]))
                for i, layer in enumerate(ctx.net.layers) if layer.params})
    return out


def _cosine(summary):
    def compute(ctx):
        return {None: summary(ctx.gradient_cosine)} if ctx.batch.z.shape[0] >= 2 else {}
    return compute


def _largest_eigenvalue(which):
    def compute(ctx):
        matvec = ctx.batch.hvp if which == "hessian" else ctx.batch.ggn_vp
        extremes = lanczos_extremes(matvec, ctx.net.num_parameters, 1, np.random.default_rng(ctx.seed))
        return {None: float(extremes.top[-1])}
    return compute


def _exact_effective_rank(which):
    def compute(ctx):
        dimension = ctx.outputs[-1].size if which == "ntk" else ctx.net.num_parameters
        if dimension > MAX_EXACT_DIMENSION:
            raise ValueError(f"{which}_effective_rank needs the exact spectrum of a {dimension} x {dimension} "
                             f"matrix; the limit is {MAX_EXACT_DIMENSION}")
        if which == "ntk":
            matrix = ntk(ctx.net, None, batch=ctx.batch)
        elif which == "hessian":
            matrix = hessian(ctx.net, ctx.loss, ctx.x, ctx.t, batch=ctx.batch)
        else:
            matrix = ggn(ctx.net, ctx.loss, ctx.x, ctx.t, batch=ctx.batch)
        return {None: spectrum_scalars(eigenvalues(matrix))["effective_rank"]}
    return compute


def _numerical_rank(s, matrix):
    return rank.numerical_rank(s, rank.default_rtol(matrix.shape, matrix.dtype))


def _srank(s, matrix, delta):
    return rank.srank(s, delta)


def _approximate_rank(s, matrix, threshold):
    return rank.approximate_rank(s, threshold)


def _feature_rank(s, matrix, eps):
    return rank.feature_rank(s, matrix.shape[0], eps)


def _of_singular_values(function):
    return lambda s, matrix: function(s)


STATISTICS = {
    # units: outputs of activation layers
    "dead_fraction": Statistic(_unit_statistic(ReLU, units.dead_units), {}),
    "dormant_fraction": Statistic(_unit_statistic(ACTIVATIONS, units.dormant_units), {"tau": 0.025}),
    "low_activity_fraction": Statistic(_unit_statistic(ReLU, units.low_activity_units), {"threshold": 0.01}),
    "active_fraction": Statistic(_unit_statistic(ReLU, units.active_fraction), {}),
    "linearised_fraction": Statistic(_unit_statistic((ReLU, LeakyReLU), units.linearised_units), {}),
    "saturated_fraction": Statistic(_saturated_fraction, {"threshold": 0.99}),
    # pre-activations: outputs of Linear, SpectralNormLinear and Conv2d layers
    "preactivation_mean": Statistic(_unit_statistic(PREACTIVATIONS, lambda z: preactivations.unit_moments(z)[0]), {}),
    "preactivation_std": Statistic(_unit_statistic(PREACTIVATIONS, lambda z: preactivations.unit_moments(z)[1]), {}),
    "preactivation_one_sided_fraction": Statistic(_unit_statistic(PREACTIVATIONS, preactivations.one_sided_units), {}),
    "preactivation_mean_shift": Statistic(_preactivation_shift(0), {}, ("init",)),
    "preactivation_std_shift": Statistic(_preactivation_shift(1), {}, ("init",)),
    # features: outputs of activation layers as (N, d) matrices
    "feature_effective_rank": Statistic(_feature_statistic(_of_singular_values(rank.effective_rank)), {}),
    "feature_srank": Statistic(_feature_statistic(_srank), {"delta": 0.01}),
    "feature_approximate_rank": Statistic(_feature_statistic(_approximate_rank), {"threshold": 0.99}),
    "feature_rank": Statistic(_feature_statistic(_feature_rank), {"eps": 0.01}),
    "feature_stable_rank": Statistic(_feature_statistic(_of_singular_values(rank.stable_rank)), {}),
    "feature_numerical_rank": Statistic(_feature_statistic(_numerical_rank), {}),
    # parameters
    "parameter_norm": Statistic(lambda ctx: _parameter_statistic(weights.l2_norm, ctx.net), {}),
    "parameter_abs_mean": Statistic(lambda ctx: _parameter_statistic(weights.abs_mean, ctx.net), {}),
    "parameter_distance": Statistic(lambda ctx: _parameter_statistic(weights.distance, ctx.net, ctx.init_net), {},
                                    ("init",)),
    "weight_abs_sum": Statistic(_weight_abs_sum, {}),
    "weight_effective_rank": Statistic(_weight_statistic(_of_singular_values(rank.effective_rank)), {}),
    "weight_srank": Statistic(_weight_statistic(_srank), {"delta": 0.01}),
    "weight_approximate_rank": Statistic(_weight_statistic(_approximate_rank), {"threshold": 0.99}),
    "weight_stable_rank": Statistic(_weight_statistic(_of_singular_values(rank.stable_rank)), {}),
    "weight_numerical_rank": Statistic(_weight_statistic(_numerical_rank), {}),
    "weight_largest_singular_value": Statistic(_weight_statistic(_of_singular_values(rank.largest_singular_value)), {}),
    # loss and gradients
    "loss": Statistic(lambda ctx: {None: float(ctx.batch.value)}, {}, ("loss",)),
    "gradient_norm": Statistic(_gradient_norm, {}, ("loss",)),
    "gradient_cosine_mean": Statistic(_cosine(gradients.cosine_mean), {}, ("loss",)),
    "gradient_cosine_negative_fraction": Statistic(_cosine(gradients.negative_fraction), {}, ("loss",)),
    # curvature, on demand
    "hessian_largest_eigenvalue": Statistic(_largest_eigenvalue("hessian"), {}, ("loss",)),
    "ggn_largest_eigenvalue": Statistic(_largest_eigenvalue("ggn"), {}, ("loss",)),
    "hessian_effective_rank": Statistic(_exact_effective_rank("hessian"), {}, ("loss",)),
    "ggn_effective_rank": Statistic(_exact_effective_rank("ggn"), {}, ("loss",)),
    "ntk_effective_rank": Statistic(_exact_effective_rank("ntk"), {}),
}

DEFAULT_STATISTICS = (
    "dead_fraction", "dormant_fraction/tau=0", "dormant_fraction/tau=0.025", "low_activity_fraction/threshold=0.01",
    "active_fraction", "linearised_fraction", "saturated_fraction/threshold=0.99",
    "preactivation_mean", "preactivation_std", "preactivation_one_sided_fraction",
    "feature_effective_rank", "feature_srank/delta=0.01", "feature_approximate_rank/threshold=0.99",
    "feature_rank/eps=0.01", "feature_stable_rank", "feature_numerical_rank",
    "parameter_norm", "parameter_abs_mean", "weight_abs_sum", "weight_effective_rank", "weight_srank/delta=0.01",
    "weight_approximate_rank/threshold=0.99", "weight_stable_rank", "weight_numerical_rank",
    "weight_largest_singular_value",
    "loss", "gradient_norm", "gradient_cosine_mean", "gradient_cosine_negative_fraction",
)
"""Cheap statistics needing neither the initial network nor curvature."""

INIT_STATISTICS = ("parameter_distance", "preactivation_mean_shift", "preactivation_std_shift")
"""Statistics that need ``init_net``."""

CURVATURE_STATISTICS = ("hessian_largest_eigenvalue", "ggn_largest_eigenvalue", "hessian_effective_rank",
                        "ggn_effective_rank", "ntk_effective_rank")
"""Expensive statistics: Lanczos on H or G, or an exact spectrum (H, G: P <= 5000; NTK: N D <= 5000)."""


def format_number(value):
    """``repr(float(value))`` without a trailing ``.0``: 0, 0.025, 1e-06."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


class Request(NamedTuple):
    base: str
    parameters: dict
    layer: Optional[int]

    def key(self, layer):
        parts = [self.base] + [f"{k}={format_number(v)}" for k, v in self.parameters.items()]
        return "/".join(parts + ([f"layer={layer}"] if layer is not None else []))


def parse_name(name):
    """The :class:`Request` for ``base[/parameter=value ...][/layer=i]``; a ValueError says what is wrong."""
    base, *fields = str(name).strip().split("/")
    if base not in STATISTICS:
        raise ValueError(f"unknown statistic {base!r}; known: {', '.join(STATISTICS)}")
    defaults = STATISTICS[base].parameters
    given, layer = {}, None
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep:
            raise ValueError(f"{name}: expected parameter=value, got {field!r}")
        if key == "layer":
            if not value.isdigit():
                raise ValueError(f"{name}: layer must be a non-negative integer, got {value!r}")
            layer = int(value)
        elif key in defaults:
            try:
                given[key] = float(value)
            except ValueError:
                raise ValueError(f"{name}: {key} must be a number, got {value!r}") from None
            if not math.isfinite(given[key]):
                raise ValueError(f"{name}: {key} must be finite, got {value!r}")
        else:
            allowed = ", ".join(list(defaults) + ["layer"])
            raise ValueError(f"{name}: {base} has no parameter {key!r} (it takes: {allowed})")
    return Request(base, {k: given.get(k, v) for k, v in defaults.items()}, layer)


def _check_finite(net, x, t, init_net):
    """A ValueError unless the inputs, float targets and parameters (of ``init_net`` too) are finite:
    a NaN would otherwise pass as a value (a NaN activation is not ``> 0``, so a unit would look dormant)."""
    arrays = {"x": x, "t": t, "the parameters of net": net.flat}
    if init_net is not None:
        arrays["the parameters of init_net"] = init_net.flat
    for name, array in arrays.items():
        array = np.asarray(array) if array is not None else None
        if array is not None and np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            raise ValueError(f"{name} contains NaN or infinity")


def needing_init(names):
    """The names among ``names`` whose statistic needs the network at initialisation (``init_net``)."""
    return [name for name in names if "init" in STATISTICS[parse_name(name).base].needs]


def compute_statistics(net, x, t, loss, names=DEFAULT_STATISTICS, *, init_net=None, seed=0):
    """``{key: float}`` for each requested statistic, in request order (see the module docstring).

    ``loss``: a loss object or name ("mse", "cross_entropy", "huber"); it and the targets ``t``
    may be None when no requested statistic needs them. ``init_net``: the same architecture at
    initialisation, for :data:`INIT_STATISTICS`. ``seed``: the Lanczos start vectors
    (``numpy.random.default_rng(seed)``) of the largest-eigenvalue statistics.

    A statistic that overflows on the batch (finite inputs, huge weights) raises a one-line
    :class:`~refplastic.overflow.NotFinite` (a ValueError) naming it; no NumPy floating-point
    warning escapes.
    """
    if isinstance(names, str):
        raise TypeError("names must be a list of statistic names, not one string")
    requests = [parse_name(name) for name in names]
    loss = make_loss(loss) if isinstance(loss, str) else loss
    for request in requests:
        needs = STATISTICS[request.base].needs
        if "loss" in needs and (loss is None or t is None):
            raise ValueError(f"{request.base} needs targets and a loss")
        if "init" in needs and init_net is None:
            raise ValueError(f"{request.base} needs the network at initialisation (init_net)")
    if init_net is not None and init_net.architecture() != net.architecture():
        raise ValueError("init_net must have the same architecture as net")
    _check_finite(net, x, t, init_net)
    ctx = Context(net, x, t, loss, init_net, seed)
    out = {}
    for request in requests:
        with reported_as(request.key(request.layer)):
            values = STATISTICS[request.base].compute(ctx, **request.parameters)
            if request.layer is not None:
                if request.layer not in values:
                    have = sorted(i for i in values if i is not None)
                    raise ValueError(f"{request.key(request.layer)}: layer {request.layer} has no such value "
                                     f"(layers that have one: {have})")
                values = {request.layer: values[request.layer]}
            out.update(finite({request.key(layer): float(value) for layer, value in values.items()}))
    return out
