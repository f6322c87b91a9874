"""The entry point: the naming scheme, the default set on every kind of network (finite floats,
buffers and parameters untouched), feature/weight statistics against torch, curvature on
demand against torch's reverse-over-reverse Hessian, and the HDF5 file."""

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from oracle import torch_module

from refplastic.nn import (GELU, BatchNorm1d, BatchNorm2d, Flatten, Identity, LayerNorm, LeakyReLU, Linear, Network,
                           ReLU, Sigmoid, SpectralNormLinear, Tanh, make_loss)
from refplastic.nn.conv import Conv2d
from refplastic.nn.pool import MaxPool2d
from refplastic.overflow import NotFinite
from refplastic.stats import (CURVATURE_STATISTICS, DEFAULT_STATISTICS, INIT_STATISTICS, STATISTICS, compute_statistics,
                              describe_statistics, format_statistics, parse_name, read_statistics_h5, unavailable,
                              write_statistics_h5)
from refplastic.stats.collect import format_number
from refplastic.stats.rank import effective_rank


def mlp(activation=ReLU):
    return [Linear(6, 10), activation(), Linear(10, 8), activation(), Linear(8, 3)]


NETWORKS = {
    **{f"mlp-{a.__name__}": (lambda a=a: mlp(a), (12, 6)) for a in (ReLU, Tanh, Sigmoid, GELU, LeakyReLU, Identity)},
    "cnn": (lambda: [Conv2d(2, 4, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(4, 3, 3), Tanh(), Flatten(),
                     Linear(3, 3)], (12, 2, 6, 6)),
    "layernorm": (lambda: [Linear(6, 8), LayerNorm(8), ReLU(), Linear(8, 3)], (12, 6)),
    "batchnorm1d": (lambda: [Linear(6, 8), BatchNorm1d(8), ReLU(), Linear(8, 3)], (12, 6)),
    "batchnorm2d": (lambda: [Conv2d(2, 3, 3), BatchNorm2d(3), ReLU(), Flatten(), Linear(3 * 4 * 4, 3)], (12, 2, 6, 6)),
    "linear": (lambda: [Linear(6, 3)], (12, 6)),
    "spectralnorm": (lambda: [SpectralNormLinear(6, 8), ReLU(), Linear(8, 3)], (12, 6)),  # buffers u, v
}
KEY = re.compile(r"^[a-z_]+(/[a-z]+=[0-9.e+-]+)*(/layer=\d+)?$")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("arch", NETWORKS)
def test_default_set_is_finite_floats_and_leaves_the_network_alone(arch, training, loss_name, dtype):
    layers, shape = NETWORKS[arch]
    rng = np.random.default_rng(0)
    net = Network(layers(), rng, dtype).train(training)
    x = rng.normal(size=shape)
    t = rng.integers(0, 3, size=shape[0]) if loss_name == "cross_entropy" else rng.normal(size=(shape[0], 3))
    state = net.state_dict()
    out = compute_statistics(net, x, t, loss_name)
    assert out and all(type(v) is float and np.isfinite(v) for v in out.values())
    assert all(KEY.match(k) for k in out), [k for k in out if not KEY.match(k)]
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    requested = {parse_name(n).base for n in DEFAULT_STATISTICS}
    produced = {k.split("/")[0] for k in out}
    assert produced <= requested
    assert {"parameter_norm", "loss", "gradient_norm", "gradient_cosine_mean", "preactivation_mean"} <= produced
    assert {parse_name(n).base for n in unavailable(net, DEFAULT_STATISTICS, shape[0])} == requested - produced
    activations = {type(layer).__name__ for layer in net.layers}
    assert ("dead_fraction" in produced) == ("ReLU" in activations)
    assert ("saturated_fraction" in produced) == bool(activations & {"Tanh", "Sigmoid"})
    assert ("feature_srank" in produced) == bool(activations & {"ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU",
                                                                "Identity"})


def test_names_keys_and_layer_filter():
    assert parse_name("dormant_fraction").parameters == {"tau": 0.025}
    assert parse_name("dormant_fraction/tau=0/layer=3").layer == 3
    assert parse_name("feature_rank/eps=1e-6").key(1) == "feature_rank/eps=1e-06/layer=1"
    assert [format_number(v) for v in (0, 0.025, 1e-6, 100, 0.1)] == ["0", "0.025", "1e-06", "100", "0.1"]
    rng = np.random.default_rng(1)
    net = Network(mlp(), rng)
    x, t = rng.normal(size=(9, 6)), rng.integers(0, 3, size=9)
    out = compute_statistics(net, x, t, "cross_entropy", ["dormant_fraction", "feature_srank/layer=3"])
    assert list(out) == ["dormant_fraction/tau=0.025", "dormant_fraction/tau=0.025/layer=1",
                         "dormant_fraction/tau=0.025/layer=3", "feature_srank/delta=0.01/layer=3"]
    assert compute_statistics(net, x, None, None, ["dormant_fraction/tau=0.025/layer=1"]) == {
        "dormant_fraction/tau=0.025/layer=1": out["dormant_fraction/tau=0.025/layer=1"]}


@pytest.mark.parametrize("name, message", [
    ("nonsense", "unknown statistic 'nonsense'"),
    ("dead_fractoin", "unknown statistic 'dead_fractoin'; nearest: dead_fraction"),
    ("dormant_fraction/eps=1", "has no parameter 'eps'"),
    ("dormant_fraction/tau=abc", "must be a number"),
    ("dormant_fraction/tau=nan", "must be finite"),
    ("dormant_fraction/tau", "expected parameter=value"),
    ("dormant_fraction/tau=0.1/tau=0.2", "dormant_fraction/tau=0.1/tau=0.2: tau is given twice"),
    ("dead_fraction/layer=1/layer=3", "dead_fraction/layer=1/layer=3: layer is given twice"),
    ("dormant_fraction/tau=-1", "dormant_fraction/tau=-1: tau must lie in [0, inf), got -1"),
    ("feature_srank/delta=-1", "delta must lie in [0, 1)"),
    ("feature_srank/delta=1", "feature_srank/delta=1: delta must lie in [0, 1), got 1"),
    ("feature_approximate_rank/threshold=1.5", "threshold must lie in (0, 1], got 1.5"),
    ("feature_rank/eps=-1", "feature_rank/eps=-1: eps must lie in [0, inf), got -1"),
    ("saturated_fraction/threshold=1", "threshold must lie in [0.5, 1), got 1"),
    ("low_activity_fraction/threshold=0", "threshold must lie in (0, 1], got 0"),
    ("dead_fraction/layer=-1", "non-negative integer"),
    ("dead_fraction/layer=0", "dead_fraction/layer=0: layer 0 is a Linear; dead_fraction reads ReLU layers "
                              "(layers 1, 3)"),
    ("dead_fraction/layer=5", "dead_fraction/layer=5: the network has no layer 5 (its layers are 0 to 4)"),
    ("saturated_fraction/layer=1", "layer 1 is a ReLU; saturated_fraction reads Tanh or Sigmoid layers (none in this "
                                   "network)"),
    ("ntk_effective_rank/layer=1", "ntk_effective_rank/layer=1: ntk_effective_rank is a value of the whole network"),
    ("gradient_norm", "needs targets and a loss"),
    ("parameter_distance", "needs the network at initialisation"),
])
def test_bad_names_say_what_is_wrong(name, message):
    net = Network(mlp(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=re.escape(message)):
        compute_statistics(net, np.zeros((3, 6)), None, None, [name])


@pytest.mark.parametrize("base", [b for b, s in STATISTICS.items() if s.parameters])
def test_every_parameter_is_checked_against_its_interval_when_parsed(base):
    """Closed ends are accepted, open ends and values beyond either end are refused, before any work."""
    for key, parameter in STATISTICS[base].parameters.items():
        assert parameter.admits(parameter.default)
        ends = [(parameter.low, parameter.closed[0] == "[", -1), (parameter.high, parameter.closed[1] == "]", 1)]
        for end, closed, outward in ends:
            if math.isinf(end):
                continue
            for value, admitted in ((end, closed), (end + outward * 1e-9, False)):
                name = f"{base}/{key}={value!r}"
                if admitted:
                    assert parse_name(name).parameters[key] == value
                else:
                    with pytest.raises(ValueError, match=re.escape(f"{name}: {key} must lie in {parameter.interval}")):
                        parse_name(name)


@pytest.mark.parametrize("arch, batch, expected", [
    ("mlp-Tanh", 12, {"dead_fraction": "ReLU", "low_activity_fraction/threshold=0.01": "ReLU",
                      "active_fraction": "ReLU", "linearised_fraction": "ReLU or LeakyReLU"}),
    ("mlp-ReLU", 12, {"saturated_fraction/threshold=0.99": "Tanh or Sigmoid"}),
    ("linear", 12, {"dead_fraction": "ReLU", "dormant_fraction/tau=0": "activation",
                    "dormant_fraction/tau=0.025": "activation", "low_activity_fraction/threshold=0.01": "ReLU",
                    "active_fraction": "ReLU", "linearised_fraction": "ReLU or LeakyReLU",
                    "saturated_fraction/threshold=0.99": "Tanh or Sigmoid", "feature_effective_rank": "activation",
                    "feature_srank/delta=0.01": "activation", "feature_approximate_rank/threshold=0.99": "activation",
                    "feature_rank/eps=0.01": "activation", "feature_stable_rank": "activation",
                    "feature_numerical_rank": "activation"}),
])
def test_unavailable_names_what_gives_no_value_and_which_layers_it_reads(arch, batch, expected):
    layers, shape = NETWORKS[arch]
    net = Network(layers(), np.random.default_rng(0))
    assert unavailable(net, DEFAULT_STATISTICS, batch) == {
        name: f"it reads {kinds} layers; the network has none" for name, kinds in expected.items()}


def test_a_batch_of_one_has_no_gradient_cosines():
    net = Network(mlp(), np.random.default_rng(0))
    names = ["loss", "gradient_cosine_mean", "gradient_cosine_negative_fraction"]
    why = "it needs 2 examples or more; the batch has 1"
    assert unavailable(net, names, 1) == {names[1]: why, names[2]: why}
    assert list(compute_statistics(net, np.zeros((1, 6)), np.zeros((1, 3)), "mse", names)) == ["loss"]
    assert unavailable(net, names, 2) == {}


def test_every_statistic_has_a_one_line_formula_and_is_listed():
    lines = describe_statistics().splitlines()
    assert len(lines) == len(STATISTICS)
    for line, (base, statistic) in zip(lines, STATISTICS.items()):
        assert statistic.formula and "\n" not in statistic.formula
        name, formula = line.split(None, 1)
        assert parse_name(name).base == base and name == parse_name(name).key(None)  # every default spelled out
        intervals = "".join(f"; {k} in {p.interval}" for k, p in statistic.parameters.items())
        assert formula == statistic.formula + intervals
    assert "dormant_fraction/tau=0.025" in describe_statistics()
    assert "; tau in [0, inf)" in describe_statistics()


def test_the_docs_table_has_every_statistic_with_the_librarys_formula_and_parameters():
    """docs/statistics.md is written by hand; its table of statistics must say what STATISTICS says."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "statistics.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 6 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            assert cells[0][1:-1] not in rows, cells[0]
            rows[cells[0][1:-1]] = cells
    assert list(rows) == list(STATISTICS)
    for base, statistic in STATISTICS.items():
        parameters = ", ".join(f"`{k}` = {format_number(p.default)} in {p.interval}"
                               for k, p in statistic.parameters.items())
        assert rows[base][1:3] == [parameters, statistic.formula], base


@pytest.mark.parametrize("where", ["x", "t", "net", "init_net"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_inputs_targets_or_parameters_are_errors(where, bad):
    """A NaN would pass silently as a value: a NaN activation is not > 0, so its unit counts as dormant."""
    rng = np.random.default_rng(0)
    net, x, t = Network(mlp(), rng), rng.normal(size=(5, 6)), rng.normal(size=(5, 3))
    init_net = net.copy()
    {"x": x, "t": t, "net": net.flat, "init_net": init_net.flat}[where][0] = bad
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        compute_statistics(net, x, t, "mse", ["dormant_fraction", "loss", "parameter_distance"], init_net=init_net)


@pytest.mark.parametrize("name", [*DEFAULT_STATISTICS, *CURVATURE_STATISTICS])
def test_statistics_that_overflow_are_named_without_warnings(name):
    """Weights of 1e80: the loss is finite, some statistics are not; those raise one line naming the
    statistic, and no NumPy warning escapes."""
    rng = np.random.default_rng(0)
    net, x, t = Network(mlp(), rng), rng.normal(size=(5, 6)), rng.normal(size=(5, 3))
    net.flat[...] *= 1e80
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = compute_statistics(net, x, t, "mse", [name])
        except NotFinite as e:
            assert str(e) == f"{parse_name(name).key(None)}: not finite on this batch (the network overflows)"
        else:
            assert all(np.isfinite(v) for v in values.values())


def test_names_must_be_a_list_and_init_net_must_match():
    net = Network(mlp(), np.random.default_rng(0))
    with pytest.raises(TypeError, match="list"):
        compute_statistics(net, np.zeros((3, 6)), None, None, "dead_fraction")
    other = Network(mlp(Tanh), np.random.default_rng(0))
    with pytest.raises(ValueError, match="same architecture"):
        compute_statistics(net, np.zeros((3, 6)), None, None, ["parameter_distance"], init_net=other)


def test_registry_lists_every_named_set():
    for names in (DEFAULT_STATISTICS, INIT_STATISTICS, CURVATURE_STATISTICS):
        for name in names:
            request = parse_name(name)
            assert request.base in STATISTICS
            if name in DEFAULT_STATISTICS and STATISTICS[request.base].parameters:
                assert "=" in name  # the default set spells its parameters out
    assert set(STATISTICS) == {parse_name(n).base for n in DEFAULT_STATISTICS + INIT_STATISTICS + CURVATURE_STATISTICS}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("arch", ["mlp-ReLU", "cnn"])
def test_feature_and_weight_statistics_against_torch(arch, dtype):
    layers, shape = NETWORKS[arch]
    rng = np.random.default_rng(2)
    init = Network(layers(), rng, dtype)
    net = init.copy()
    net.flat[...] += rng.normal(scale=0.2, size=net.num_parameters).astype(dtype)
    x = rng.normal(size=shape)
    names = [n for n in DEFAULT_STATISTICS if not STATISTICS[parse_name(n).base].needs] + ["parameter_distance"]
    out = compute_statistics(net, x, None, None, names, init_net=init)
    module, module0 = torch_module(net), torch_module(init)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    y = torch.from_numpy(np.asarray(x, dtype))
    with torch.no_grad():
        for i, layer in enumerate(module):
            y = layer(y)
            if isinstance(layer, (torch.nn.ReLU, torch.nn.Tanh)):
                phi = y.reshape(y.shape[0], -1).double()
                s = torch.linalg.svdvals(phi)
                p = s / s.sum()
                p = p[p > 0]
                assert out[f"feature_effective_rank/layer={i}"] == pytest.approx(float(torch.exp(-(p * p.log()).sum())),
                                                                                  rel=rtol)
                assert out[f"feature_stable_rank/layer={i}"] == pytest.approx(
                    float(torch.linalg.matrix_norm(phi) ** 2 / torch.linalg.matrix_norm(phi, 2) ** 2), rel=rtol)
                assert out[f"feature_rank/eps=0.01/layer={i}"] == float((s / np.sqrt(len(phi)) > 0.01).sum())
                assert out[f"feature_numerical_rank/layer={i}"] == float(np.linalg.matrix_rank(y.reshape(len(y), -1)))
    layers = {}  # layer index -> {"weight": ..., "bias": ...} of net and of init
    for (name, p), (_, p0) in zip(module.named_parameters(), module0.named_parameters()):
        i, kind = name.split(".")
        layers.setdefault(int(i), {})[kind] = (p.detach().double(), p0.detach().double())
    for i, params in layers.items():
        flat = torch.cat([p.reshape(-1) for p, _ in params.values()])
        flat0 = torch.cat([p0.reshape(-1) for _, p0 in params.values()])
        assert out[f"parameter_norm/layer={i}"] == pytest.approx(float(flat.norm()), rel=rtol)
        assert out[f"parameter_abs_mean/layer={i}"] == pytest.approx(float(flat.abs().mean()), rel=rtol)
        assert out[f"parameter_distance/layer={i}"] == pytest.approx(float((flat - flat0).norm()), rel=rtol)
        W = params["weight"][0].reshape(len(params["weight"][0]), -1)
        s = torch.linalg.svdvals(W)
        assert out[f"weight_abs_sum/layer={i}"] == pytest.approx(float(W.abs().sum()), rel=rtol)
        assert out[f"weight_largest_singular_value/layer={i}"] == pytest.approx(float(s[0]), rel=rtol)
        assert out[f"weight_effective_rank/layer={i}"] == pytest.approx(effective_rank(s.numpy()), rel=rtol)
    every = torch.cat([p.reshape(-1) for params in layers.values() for p, _ in params.values()])
    assert out["parameter_norm"] == pytest.approx(float(every.norm()), rel=rtol)
    weights = [params["weight"][0] for params in layers.values()]
    assert out["weight_abs_sum"] == pytest.approx(float(sum(w.abs().sum() for w in weights)), rel=rtol)


def test_curvature_on_demand_against_torch():
    rng = np.random.default_rng(3)
    net = Network([Linear(3, 5), Tanh(), Linear(5, 2)], rng)  # P = 32
    x, t = rng.normal(size=(10, 3)), rng.normal(size=(10, 2))
    out = compute_statistics(net, x, t, make_loss("mse"), CURVATURE_STATISTICS, seed=4)
    module = torch_module(net)
    params = list(module.parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    def unflatten(v):
        out, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            out.append(v[i:i + n].reshape(s))
            i += n
        return out

    def outputs(v):
        return torch.func.functional_call(module, dict(zip([n for n, _ in module.named_parameters()], unflatten(v))),
                                          (torch.from_numpy(x),))

    H = torch.autograd.functional.hessian(lambda v: torch.nn.functional.mse_loss(outputs(v), torch.from_numpy(t)), flat)
    J = torch.autograd.functional.jacobian(outputs, flat).reshape(-1, flat.numel())
    G = 2 / J.shape[0] * J.T @ J  # MSE: d^2L/dz^2 = (2 / (N D)) I
    spectra = {"hessian": torch.linalg.eigvalsh(H), "ggn": torch.linalg.eigvalsh(G),
               "ntk": torch.linalg.eigvalsh(J @ J.T)}
    for which, lam in spectra.items():
        assert out[f"{which}_effective_rank"] == pytest.approx(effective_rank(np.abs(lam.numpy())), rel=1e-9)
    for which in ("hessian", "ggn"):
        assert out[f"{which}_largest_eigenvalue"] == pytest.approx(float(spectra[which][-1]), rel=1e-9)


def test_exact_spectra_refuse_large_matrices():
    net = Network([Linear(100, 60), Linear(60, 2)], np.random.default_rng(0))  # P = 6182
    with pytest.raises(ValueError, match="limit is 5000"):
        compute_statistics(net, np.zeros((2, 100)), np.zeros((2, 2)), "mse", ["hessian_effective_rank"])


def test_hdf5_round_trip_and_text(tmp_path):
    rng = np.random.default_rng(5)
    net = Network(mlp(), rng)
    out = compute_statistics(net, rng.normal(size=(8, 6)), rng.integers(0, 3, size=8), "cross_entropy")
    path = tmp_path / "stats.h5"
    write_statistics_h5(path, out, attrs={"loss": "cross_entropy", "num_examples": 8})
    back, attrs = read_statistics_h5(path)
    assert back == out and list(back) == list(out)
    assert attrs["format"] == "refplastic-statistics" and attrs["version"] == 1
    assert attrs["loss"] == "cross_entropy" and attrs["num_examples"] == 8 and "refplastic_version" in attrs
    assert [p.name for p in tmp_path.iterdir()] == ["stats.h5"]  # no temporary file left
    lines = format_statistics(out).splitlines()
    assert len(lines) == len(out) and lines[0].split() == ["dead_fraction", f"{out['dead_fraction']:.6g}"]
    with pytest.raises(ValueError, match="not a refplastic statistics file"):
        import h5py
        with h5py.File(tmp_path / "other.h5", "w"):
            pass
        read_statistics_h5(tmp_path / "other.h5")
