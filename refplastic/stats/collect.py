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
``dead_fraction``), and so do the gradient cosine statistics for a batch of one;
:func:`unavailable` says which requested names give none, and why. Every value returned is a
finite float (one that overflows raises a ValueError naming the statistic). The statistics are
of the network as it is: its mode (train-mode BatchNorm normalises with the batch statistics) and
dtype; its buffers are left unchanged. Thresholds are compared in float64 whatever the dtype.

:data:`STATISTICS` holds each statistic's one-line formula and its parameters' defaults and
allowed intervals (checked by :func:`parse_name`); :func:`describe_statistics` lists them.
"""

import difflib
import functools
import math
from typing import Callable, NamedTuple, Optional

import numpy as np

from ..curvature import (CurvatureBatch, eigenvalues, ggn, hessian, lanczos_extremes, ntk, preserved_buffers,
                         spectrum_scalars)
from ..memory import check_memory, cosine_estimate, ggn_estimate, hessian_estimate, ntk_estimate, sizes
from ..nn import Conv2d, LeakyReLU, Linear, ReLU, Sigmoid, SpectralNormLinear, Tanh, make_loss
from ..overflow import finite, reported_as
from ..nn.activations import Elementwise
from . import gradients, preactivations, rank, units, weights

MAX_EXACT_DIMENSION = 5000  # largest P (Hessian, GGN) or N * D (NTK) for an exact spectrum


class Parameter(NamedTuple):
    """A statistic's parameter: its default and the interval of values it may take, from ``low`` to
    ``high`` (``math.inf`` for no bound), ``closed`` saying which ends belong to it: "[]", "[)", "(]" or "()"."""

    default: float
    low: float
    high: float
    closed: str

    @property
    def interval(self):
        """The interval as written: ``[0, 1)``, ``[0, inf)``."""
        return f"{self.closed[0]}{format_number(self.low)}, {format_number(self.high)}{self.closed[1]}"

    def admits(self, value):
        above = value >= self.low if self.closed[0] == "[" else value > self.low
        below = value <= self.high if self.closed[1] == "]" else value < self.high
        return above and below


PARAMETERS = "parameters"  # Statistic.reads: every layer that has parameters


class Statistic(NamedTuple):
    """``compute(context, layers, **parameters) -> {layer index or None: value}``, ``layers`` the
    indices of the layers it ``reads``: layer classes, :data:`PARAMETERS`, or None for the network
    as a whole (then ``layers`` is None and only the key None is returned). ``formula``: one line,
    in the notation of docs/statistics.md. ``parameters``: name -> :class:`Parameter`. ``needs``:
    "loss" (targets and a loss) and/or "init" (the network at initialisation). ``min_examples``:
    the smallest batch it has a value for."""

    compute: Callable
    formula: str
    parameters: dict
    reads: object
    needs: tuple = ()
    min_examples: int = 1


class Context:
    """A network on a batch, computing each shared quantity once (outputs, SVDs, gradients)."""

    def __init__(self, net, x, t, loss, init_net, seed):
        self.net, self.x, self.t, self.loss, self.init_net, self.seed = net, x, t, loss, init_net, seed
        self._feature_sv, self._weight_sv = {}, {}

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


def _unit_statistic(per_unit):
    """``per_unit(h, **parameters)`` on the output h of each layer read, averaged over units."""
    def compute(ctx, layers, **parameters):
        return _mean_over_units({i: per_unit(ctx.outputs[i], **parameters) for i in layers})
    return compute


def _saturated_fraction(ctx, layers, threshold):
    return _mean_over_units({i: units.saturated_fraction(ctx.outputs[i], type(ctx.net.layers[i]).__name__, threshold)
                             for i in layers})


def _preactivation_shift(which):
    """Per-unit |mean - mean0| (which = 0) or |std - std0| (which = 1) of each layer read."""
    def compute(ctx, layers):
        return _mean_over_units({i: preactivations.moment_shift(ctx.outputs[i], ctx.init_outputs[i])[which]
                                 for i in layers})
    return compute


def _feature_statistic(value):
    """``value(singular values, features, **parameters)`` for each layer's (N, d) features."""
    def compute(ctx, layers, **parameters):
        return {i: float(value(ctx.feature_singular_values(i), ctx.features(i), **parameters)) for i in layers}
    return compute


def _weight_statistic(value):
    """``value(singular values, weight matrix, **parameters)`` for each layer's weight."""
    def compute(ctx, layers, **parameters):
        return {i: float(value(ctx.weight_singular_values(i), ctx.weight(i), **parameters)) for i in layers}
    return compute


def _parameter_statistic(value, init=False):
    """``value(arrays)`` (or ``value(arrays, initial arrays)``) per layer read, and (key None) on all of them."""
    def compute(ctx, layers):
        nets = (ctx.net, ctx.init_net) if init else (ctx.net,)
        out = {None: value(*[[a for i in layers for a in net.layers[i].params.values()] for net in nets])}
        out.update({i: value(*[list(net.layers[i].params.values()) for net in nets]) for i in layers})
        return out
    return compute


def _weight_abs_sum(ctx, layers):
    out = {None: weights.abs_sum([ctx.net.layers[i].params["weight"] for i in layers])}
    out.update({i: weights.abs_sum([ctx.net.layers[i].params["weight"]]) for i in layers})
    return out


def _gradient_norm(ctx, layers):
    grads = ctx.net.unflatten(ctx.batch.grad)
    out = {None: gradients.gradient_norm(ctx.batch.grad)}
    out.update({i: gradients.gradient_norm(np.concatenate([g.ravel() for g in grads[i].values()])) for i in layers})
    return out


def _cosine(summary):
    def compute(ctx, layers):
        return {None: summary(ctx.gradient_cosine)}
    return compute


def _largest_eigenvalue(which):
    def compute(ctx, layers):
        matvec = ctx.batch.hvp if which == "hessian" else ctx.batch.ggn_vp
        extremes = lanczos_extremes(matvec, ctx.net.num_parameters, 1, np.random.default_rng(ctx.seed))
        return {None: float(extremes.top[-1])}
    return compute


def _exact_effective_rank(which):
    def compute(ctx, layers):
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


# The ranges, from the formulas (docs/statistics.md, "Parameters", gives the reasons in full):
TAU = Parameter(0.025, 0, math.inf, "[)")  # s_i >= 0: below 0 no unit is ever dormant
LOW_ACTIVITY = Parameter(0.01, 0, 1, "(]")  # an active fraction in [0, 1] below 0 (none) or above 1 (every unit)
SATURATION = Parameter(0.99, 0.5, 1, "[)")  # below 0.5 the Sigmoid's tails overlap; |h| > 1 never holds
DELTA = Parameter(0.01, 0, 1, "[)")  # a share 1 - delta of sum s: above 1 never reached, 0 reached by k = 1
SHARE = Parameter(0.99, 0, 1, "(]")  # a share of sum s^2: above 1 never reached, 0 reached by k = 1
EPS = Parameter(0.01, 0, math.inf, "[)")  # s_k >= 0: below 0 every singular value counts, zeros too
SRANK = "min{k : sum_{i<=k} s_i / sum_i s_i >= 1 - delta}"
APPROXIMATE_RANK = "min{k : sum_{i<=k} s_i^2 / sum_i s_i^2 >= threshold}"
EFFECTIVE_RANK = "exp(-sum_k p_k log p_k), p_k = s_k / sum_j s_j"

STATISTICS = {
    # units: outputs of activation layers
    "dead_fraction": Statistic(_unit_statistic(units.dead_units), "fraction of units with h = 0 on every sample",
                               {}, (ReLU,)),
    "dormant_fraction": Statistic(_unit_statistic(units.dormant_units),
                                  "fraction of units with s_i <= tau, s_i = E|h_i| / ((1/C) sum_k E|h_k|)",
                                  {"tau": TAU}, ACTIVATIONS),
    "low_activity_fraction": Statistic(_unit_statistic(units.low_activity_units),
                                       "fraction of units with mean(h_i != 0) < threshold",
                                       {"threshold": LOW_ACTIVITY}, (ReLU,)),
    "active_fraction": Statistic(_unit_statistic(units.active_fraction),
                                 "mean over units of mean(h_i != 0) = 1 - mean(h == 0)", {}, (ReLU,)),
    "linearised_fraction": Statistic(_unit_statistic(units.linearised_units),
                                     "fraction of units with h > 0 on every sample", {}, (ReLU, LeakyReLU)),
    "saturated_fraction": Statistic(_saturated_fraction,
                                    "mean over units of the fraction of samples with |h| > threshold (Tanh), "
                                    "or h < 1 - threshold or h > threshold (Sigmoid)",
                                    {"threshold": SATURATION}, (Tanh, Sigmoid)),
    # pre-activations: outputs of Linear and Conv2d layers
    "preactivation_mean": Statistic(_unit_statistic(lambda z: preactivations.unit_moments(z)[0]),
                                    "mean over units of E z_i", {}, PREACTIVATIONS),
    "preactivation_std": Statistic(_unit_statistic(lambda z: preactivations.unit_moments(z)[1]),
                                   "mean over units of sqrt(E (z_i - E z_i)^2) (ddof 0)", {}, PREACTIVATIONS),
    "preactivation_one_sided_fraction": Statistic(_unit_statistic(preactivations.one_sided_units),
                                                  "fraction of units with z > 0 on every sample or z < 0 on every "
                                                  "sample", {}, PREACTIVATIONS),
    "preactivation_mean_shift": Statistic(_preactivation_shift(0),
                                          "mean over units of |E z_i - E z0_i|, z0 under theta_0 on the same batch",
                                          {}, PREACTIVATIONS, ("init",)),
    "preactivation_std_shift": Statistic(_preactivation_shift(1),
                                         "mean over units of |std z_i - std z0_i|, z0 under theta_0 on the same "
                                         "batch", {}, PREACTIVATIONS, ("init",)),
    # features: outputs of activation layers as (N, d) matrices Phi, singular values s_1 >= s_2 >= ...
    "feature_effective_rank": Statistic(_feature_statistic(_of_singular_values(rank.effective_rank)),
                                        EFFECTIVE_RANK, {}, ACTIVATIONS),
    "feature_srank": Statistic(_feature_statistic(_srank), SRANK, {"delta": DELTA}, ACTIVATIONS),
    "feature_approximate_rank": Statistic(_feature_statistic(_approximate_rank), APPROXIMATE_RANK,
                                          {"threshold": SHARE}, ACTIVATIONS),
    "feature_rank": Statistic(_feature_statistic(_feature_rank), "#{k : s_k / sqrt(N) > eps}", {"eps": EPS},
                              ACTIVATIONS),
    "feature_stable_rank": Statistic(_feature_statistic(_of_singular_values(rank.stable_rank)),
                                     "sum_k s_k^2 / s_1^2 = ||Phi||_F^2 / ||Phi||_2^2", {}, ACTIVATIONS),
    "feature_numerical_rank": Statistic(_feature_statistic(_numerical_rank), "#{k : s_k > max(N, d) eps_dtype s_1}",
                                        {}, ACTIVATIONS),
    # parameters theta (theta_0 at initialisation); weight matrices W of Linear and Conv2d layers
    "parameter_norm": Statistic(_parameter_statistic(weights.l2_norm), "sqrt(sum theta^2) (layer or all)", {},
                                PARAMETERS),
    "parameter_abs_mean": Statistic(_parameter_statistic(weights.abs_mean), "sum |theta| / #theta (layer or all)",
                                    {}, PARAMETERS),
    "parameter_distance": Statistic(_parameter_statistic(weights.distance, init=True),
                                    "sqrt(sum (theta - theta_0)^2) (layer or all)", {}, PARAMETERS, ("init",)),
    "weight_abs_sum": Statistic(_weight_abs_sum, "sum |W| (layer or all weight matrices)", {}, WEIGHTED),
    "weight_effective_rank": Statistic(_weight_statistic(_of_singular_values(rank.effective_rank)),
                                       EFFECTIVE_RANK, {}, WEIGHTED),
    "weight_srank": Statistic(_weight_statistic(_srank), SRANK, {"delta": DELTA}, WEIGHTED),
    "weight_approximate_rank": Statistic(_weight_statistic(_approximate_rank), APPROXIMATE_RANK,
                                         {"threshold": SHARE}, WEIGHTED),
    "weight_stable_rank": Statistic(_weight_statistic(_of_singular_values(rank.stable_rank)),
                                    "sum_k s_k^2 / s_1^2 = ||W||_F^2 / ||W||_2^2", {}, WEIGHTED),
    "weight_numerical_rank": Statistic(_weight_statistic(_numerical_rank), "#{k : s_k > max(shape) eps_dtype s_1}",
                                       {}, WEIGHTED),
    "weight_largest_singular_value": Statistic(_weight_statistic(_of_singular_values(rank.largest_singular_value)),
                                               "s_1 = ||W||_2", {}, WEIGHTED),
    # loss and gradients
    "loss": Statistic(lambda ctx, layers: {None: float(ctx.batch.value)}, "the batch loss L (mean reduction)", {},
                      None, ("loss",)),
    "gradient_norm": Statistic(_gradient_norm, "||dL/dtheta||_2 (layer or all)", {}, PARAMETERS, ("loss",)),
    "gradient_cosine_mean": Statistic(_cosine(gradients.cosine_mean),
                                      "mean over n != m of C[n, m] = <g_n, g_m> / (|g_n| |g_m|)", {}, None,
                                      ("loss",), 2),
    "gradient_cosine_negative_fraction": Statistic(_cosine(gradients.negative_fraction),
                                                   "fraction of the pairs n != m with C[n, m] < 0", {}, None,
                                                   ("loss",), 2),
    # curvature, on demand
    "hessian_largest_eigenvalue": Statistic(_largest_eigenvalue("hessian"),
                                            "max eigenvalue of H, Lanczos with min(P, 42) steps from a start vector "
                                            "drawn from default_rng(seed)", {}, None, ("loss",)),
    "ggn_largest_eigenvalue": Statistic(_largest_eigenvalue("ggn"),
                                        "max eigenvalue of G = J^T H_z J, Lanczos with min(P, 42) steps from a start "
                                        "vector drawn from default_rng(seed)", {}, None, ("loss",)),
    "hessian_effective_rank": Statistic(_exact_effective_rank("hessian"),
                                        "effective rank of |eigenvalues| of the exact H (P <= 5000)", {}, None,
                                        ("loss",)),
    "ggn_effective_rank": Statistic(_exact_effective_rank("ggn"),
                                    "effective rank of |eigenvalues| of the exact G (P <= 5000)", {}, None, ("loss",)),
    "ntk_effective_rank": Statistic(_exact_effective_rank("ntk"),
                                    "effective rank of the eigenvalues of the empirical NTK J J^T (N D <= 5000)", {},
                                    None),
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
    """The :class:`Request` for ``base[/parameter=value ...][/layer=i]``; a ValueError says what is wrong:
    an unknown name (with the nearest known ones), a parameter it does not take or outside its
    interval, a parameter or layer given twice."""
    base, *fields = str(name).strip().split("/")
    if base not in STATISTICS:
        nearest = difflib.get_close_matches(base, STATISTICS, n=3)
        raise ValueError(f"unknown statistic {base!r}" + (f"; nearest: {', '.join(nearest)}" if nearest else ""))
    parameters = STATISTICS[base].parameters
    given, layer = {}, None
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep:
            raise ValueError(f"{name}: expected parameter=value, got {field!r}")
        if key in given or (key == "layer" and layer is not None):
            raise ValueError(f"{name}: {key} is given twice")
        if key == "layer":
            if not value.isdigit():
                raise ValueError(f"{name}: layer must be a non-negative integer, got {value!r}")
            layer = int(value)
        elif key in parameters:
            try:
                given[key] = float(value)
            except ValueError:
                raise ValueError(f"{name}: {key} must be a number, got {value!r}") from None
            if not math.isfinite(given[key]):
                raise ValueError(f"{name}: {key} must be finite, got {value!r}")
            if not parameters[key].admits(given[key]):
                raise ValueError(f"{name}: {key} must lie in {parameters[key].interval}, got {value}")
        else:
            allowed = ", ".join(list(parameters) + ["layer"])
            raise ValueError(f"{name}: {base} has no parameter {key!r} (it takes: {allowed})")
    return Request(base, {k: given.get(k, p.default) for k, p in parameters.items()}, layer)


def describe_statistics():
    """One line per statistic: its name with the defaults of its parameters, its formula, and the
    interval each parameter must lie in (what ``refplastic stats --list`` prints)."""
    names = {base: Request(base, {k: p.default for k, p in statistic.parameters.items()}, None).key(None)
             for base, statistic in STATISTICS.items()}
    width = max(len(name) for name in names.values())
    lines = []
    for base, statistic in STATISTICS.items():
        intervals = "".join(f"; {k} in {p.interval}" for k, p in statistic.parameters.items())
        lines.append(f"{names[base]:<{width}}  {statistic.formula}{intervals}")
    return "\n".join(lines)


def _layers_read(net, statistic):
    """Indices of the layers of ``net`` that ``statistic`` reads (None: it reads the network as a whole)."""
    if statistic.reads is None:
        return None
    if statistic.reads == PARAMETERS:
        return [i for i, layer in enumerate(net.layers) if layer.params]
    return [i for i, layer in enumerate(net.layers) if isinstance(layer, statistic.reads)]


def _kinds(reads):
    """The layers a statistic reads, in words: "ReLU layers", "Tanh or Sigmoid layers", "layers with parameters"."""
    if reads == PARAMETERS:
        return "layers with parameters"
    return " or ".join("activation" if kind is Elementwise else kind.__name__ for kind in reads) + " layers"


def _check_layer(net, request, layers):
    """A ValueError unless layer ``request.layer`` of ``net`` is among the ``layers`` its statistic reads."""
    where, i = request.key(request.layer), request.layer
    if i >= len(net.layers):
        raise ValueError(f"{where}: the network has no layer {i} (its layers are 0 to {len(net.layers) - 1})")
    if layers is None:
        raise ValueError(f"{where}: {request.base} is a value of the whole network, not of a layer")
    if i not in layers:
        here = (f"layer{'s' if len(layers) > 1 else ''} {', '.join(map(str, layers))}" if layers
                else "none in this network")
        raise ValueError(f"{where}: layer {i} is a {type(net.layers[i]).__name__}; {request.base} reads "
                         f"{_kinds(STATISTICS[request.base].reads)} ({here})")


def unavailable(net, names, num_examples):
    """``{name: why}`` for each of ``names`` that has no value for ``net`` on a batch of
    ``num_examples`` examples, and so no key in :func:`compute_statistics`: the statistic reads
    kinds of layers that the network lacks (``dead_fraction`` reads ReLU layers), or needs more
    examples (the gradient cosines need two). A ValueError for a ``layer=i`` that the network does
    not have or that has no such value."""
    out = {}
    for name in names:
        request = parse_name(name)
        statistic = STATISTICS[request.base]
        layers = _layers_read(net, statistic)
        if request.layer is not None:
            _check_layer(net, request, layers)
        if layers == []:
            out[name] = f"it reads {_kinds(statistic.reads)}; the network has none"
        elif num_examples < statistic.min_examples:
            out[name] = f"it needs {statistic.min_examples} examples or more; the batch has {num_examples}"
    return out


def memory_estimates(s, requests):
    """The :mod:`refplastic.memory` estimates of the requested statistics that build a dense matrix
    (the gradient cosines' Gram matrix, the exact effective ranks within MAX_EXACT_DIMENSION) for the sizes ``s``."""
    bases = {request.base for request in requests}
    cosines = ("gradient_cosine_mean", "gradient_cosine_negative_fraction")
    out = [cosine_estimate(s, 64, base) for base in cosines if base in bases and s.N >= 2]
    exact = {"hessian_effective_rank": (hessian_estimate, 64, s.P), "ggn_effective_rank": (ggn_estimate, 256, s.P),
             "ntk_effective_rank": (ntk_estimate, 256, s.M)}  # the block sizes of hessian, ggn and ntk
    return out + [estimate(s, block, base) for base, (estimate, block, dimension) in exact.items()
                  if base in bases and dimension <= MAX_EXACT_DIMENSION]


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

    A name in :func:`unavailable` (no layer it reads, too few examples) gives no key; a ``layer=i``
    that does not exist or has no such value is a ValueError, raised before any work. Before any
    work too, a statistic that builds a dense matrix (:func:`memory_estimates`) too large for the
    memory available raises :class:`~refplastic.memory.NotEnoughMemory` (a MemoryError) naming it.
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
    skipped = unavailable(net, names, np.shape(x)[0])
    _check_finite(net, x, t, init_net)
    computed = [request for name, request in zip(names, requests) if name not in skipped]
    check_memory(lambda s: memory_estimates(s, computed), sizes(net, x), net.dtype)
    ctx = Context(net, x, t, loss, init_net, seed)
    out = {}
    for name, request in zip(names, requests):
        if name in skipped:
            continue
        statistic = STATISTICS[request.base]
        with reported_as(request.key(request.layer)):
            values = statistic.compute(ctx, _layers_read(net, statistic), **request.parameters)
            if request.layer is not None:
                values = {request.layer: values[request.layer]}
            out.update(finite({request.key(layer): float(value) for layer, value in values.items()}))
    return out
