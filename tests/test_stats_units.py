"""Unit and pre-activation statistics: hand-built cases with known answers (a unit forced dead,
a unit forced linear, a dead channel), and torch formulas on the activations of random dense
and convolutional networks, in float64 and float32."""

import numpy as np
import pytest
import torch
from oracle import torch_module

from refplastic.nn import Flatten, Linear, Network, ReLU, Sigmoid, Tanh
from refplastic.nn.conv import Conv2d
from refplastic.stats import compute_statistics, preactivations, units


def torch_outputs(net, x):
    """Every layer's output, computed by torch."""
    module = torch_module(net)
    out, y = [], torch.from_numpy(np.asarray(x, dtype=net.dtype))
    with torch.no_grad():
        for layer in module:
            y = layer(y)
            out.append(y)
    return out


def test_dormant_scores_of_a_hand_built_layer():
    h = np.array([[0.0, 1.0, 2.0], [0.0, -3.0, 2.0]])  # E|h| = 0, 2, 2; layer mean 4/3
    np.testing.assert_array_equal(units.dormant_scores(h), [0.0, 1.5, 1.5])
    np.testing.assert_array_equal(units.dormant_units(h, tau=0), [True, False, False])
    np.testing.assert_array_equal(units.dormant_units(h, tau=1.5), [True, True, True])
    np.testing.assert_array_equal(units.dormant_scores(np.zeros((4, 3))), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(units.dead_units(h), [True, False, False])


def test_conv_units_are_channels_averaged_over_space():
    h = np.zeros((2, 3, 2, 2))
    h[:, 1] = 1.0
    h[1, 2, 0, 1] = 4.0  # channel 2: active at one position of one example out of 8 samples
    np.testing.assert_array_equal(units.dead_units(h), [True, False, False])
    np.testing.assert_array_equal(units.active_fraction(h), [0.0, 1.0, 1 / 8])
    np.testing.assert_array_equal(units.dormant_scores(h), [0.0, 2.0, 1.0])  # E|h| = 0, 1, 0.5
    np.testing.assert_array_equal(units.low_activity_units(h, threshold=0.2), [True, False, True])
    np.testing.assert_array_equal(units.linearised_units(h), [False, True, False])
    assert units.unit_samples(h).shape == (8, 3)


def test_saturation_of_hand_built_tanh_and_sigmoid_outputs():
    tanh = np.array([[0.995, 0.5], [-0.999, 0.2], [0.98, -0.991]])
    np.testing.assert_allclose(units.saturated_fraction(tanh, "Tanh"), [2 / 3, 1 / 3])
    np.testing.assert_allclose(units.saturated_fraction(tanh, "Tanh", threshold=0.97), [1, 1 / 3])
    sigmoid = np.array([[0.005, 0.5], [0.995, 0.9], [0.5, 0.999]])
    np.testing.assert_allclose(units.saturated_fraction(sigmoid, "Sigmoid"), [2 / 3, 1 / 3])
    with pytest.raises(ValueError, match="Tanh"):
        units.saturated_fraction(tanh, "ReLU")


def test_thresholds_are_compared_in_float64_on_float32_activations():
    """Each float32 case lies between a threshold and the threshold's float32 rounding, where a
    comparison made in float32 gives the other answer (in brackets)."""
    f32 = np.float32
    tanh = np.array([[0.99], [1.0], [-0.5]], f32)  # float32(0.99) = 0.99000001 > 0.99
    np.testing.assert_array_equal(units.saturated_fraction(tanh, "Tanh", 0.99), [2 / 3])  # [1/3]
    np.testing.assert_array_equal(units.saturated_fraction(tanh, "Tanh", 0.99999999), [1 / 3])  # [0]: 1 > 1
    sigmoid = np.array([[0.01], [0.5]], f32)  # float32(0.01) = 0.0099999998 < 1 - 0.99
    np.testing.assert_array_equal(units.saturated_fraction(sigmoid, "Sigmoid", 0.99), [1 / 2])  # [0]
    h = np.array([[1.0, 3.0]], f32)  # scores 0.5 and 1.5; float32(0.49999999) = 0.5
    np.testing.assert_array_equal(units.dormant_units(h, tau=0.49999999), [False, False])  # [True, False]
    h = np.array([[1.0], [0.0]], f32)  # active on half the samples; float32(0.50000001) = 0.5
    np.testing.assert_array_equal(units.low_activity_units(h, threshold=0.50000001), [True])  # [False]


def test_a_float32_network_saturates_as_a_float64_one():
    """tanh(+-100) is exactly +-1 in both dtypes, above 0.99999999; rounded to float32 that threshold is 1."""
    for dtype in (np.float64, np.float32):
        net = Network([Linear(2, 2), Tanh(), Linear(2, 1)], np.random.default_rng(0), dtype)
        net.get_parameter("0.weight")[...] = 100 * np.eye(2)
        net.get_parameter("0.bias")[...] = 0
        x = np.array([[1.0, -1.0], [-2.0, 3.0]])
        out = compute_statistics(net, x, None, None, ["saturated_fraction/threshold=0.99999999"])
        assert out["saturated_fraction/threshold=0.99999999"] == 1.0, dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_unit_forced_dead_and_a_unit_forced_linear(dtype):
    rng = np.random.default_rng(0)
    net = Network([Linear(4, 6), ReLU(), Linear(6, 2)], rng, dtype)
    W, b = net.get_parameter("0.weight"), net.get_parameter("0.bias")
    W[2], b[2] = 0, -1  # unit 2: pre-activation -1 on every input
    W[4], b[4] = 0, 1   # unit 4: pre-activation +1 on every input
    x = 10 * rng.normal(size=(64, 4))  # large inputs: no other unit keeps one sign by its bias
    out = compute_statistics(net, x, None, None, ["dead_fraction", "dormant_fraction/tau=0", "linearised_fraction",
                                                  "preactivation_one_sided_fraction/layer=0", "active_fraction"])
    assert out["dead_fraction/layer=1"] == out["dead_fraction"] == 1 / 6
    assert out["dormant_fraction/tau=0/layer=1"] == 1 / 6
    assert out["linearised_fraction/layer=1"] == 1 / 6
    assert out["preactivation_one_sided_fraction/layer=0"] == 2 / 6
    h = torch_outputs(net, x)[1]
    assert out["active_fraction"] == pytest.approx(1 - float((h == 0).double().mean()), abs=1e-15)


def test_a_channel_forced_dead_in_a_cnn():
    rng = np.random.default_rng(1)
    net = Network([Conv2d(2, 4, 3), ReLU(), Flatten(), Linear(4 * 4 * 4, 3)], rng)
    net.get_parameter("0.weight")[1] = 0
    net.get_parameter("0.bias")[1] = -0.5
    x = rng.normal(size=(5, 2, 6, 6))
    out = compute_statistics(net, x, None, None, ["dead_fraction/layer=1", "dormant_fraction/tau=0/layer=1"])
    assert out == {"dead_fraction/layer=1": 0.25, "dormant_fraction/tau=0/layer=1": 0.25}


def sokar_scores(h):
    """ReDo's score (Sokar et al. 2023): mean |h| over every axis but the units, over the layer mean
    (+1e-9); torch NCHW puts the units on axis 1."""
    axes = tuple(a for a in range(h.dim()) if a != 1)
    score = h.abs().mean(dim=axes)
    return score / (score.mean() + 1e-9)


ARCHITECTURES = {
    "mlp": (lambda: [Linear(6, 16), ReLU(), Linear(16, 16), Tanh(), Linear(16, 16), Sigmoid(), Linear(16, 3)], (40, 6)),
    "cnn": (lambda: [Conv2d(2, 5, 3, padding=1), ReLU(), Conv2d(5, 4, 3), Tanh(), Flatten(), Linear(4 * 4 * 4, 3)],
            (7, 2, 6, 6)),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_unit_statistics_against_torch_formulas(arch, dtype):
    layers, shape = ARCHITECTURES[arch]
    rng = np.random.default_rng(2)
    net = Network(layers(), rng, dtype)
    net.flat[...] *= 3  # push tanh/sigmoid units towards saturation
    x = rng.normal(size=shape)
    names = ["dead_fraction", "dormant_fraction/tau=0.025", "dormant_fraction/tau=0.9", "active_fraction",
             "linearised_fraction", "saturated_fraction/threshold=0.99", "saturated_fraction/threshold=0.9",
             "low_activity_fraction/threshold=0.3", "preactivation_mean", "preactivation_std",
             "preactivation_one_sided_fraction"]
    out = compute_statistics(net, x, None, None, names)
    outs = torch_outputs(net, x)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    per_unit = {}  # name -> {layer: per-unit tensor}

    def units_axis_first(h):
        return h.transpose(0, 1).reshape(h.shape[1], -1)  # (C, samples)

    for i, layer in enumerate(net.layers):
        h = outs[i]
        kind = type(layer).__name__
        if kind in ("Linear", "Conv2d"):
            z = units_axis_first(h).double()
            per_unit.setdefault("preactivation_mean", {})[i] = z.mean(1)
            per_unit.setdefault("preactivation_std", {})[i] = z.std(1, unbiased=False)
            per_unit.setdefault("preactivation_one_sided_fraction", {})[i] = ((z > 0).all(1) | (z < 0).all(1)).double()
        if kind in ("ReLU", "Tanh", "Sigmoid"):
            for tau in (0.025, 0.9):
                per_unit.setdefault(f"dormant_fraction/tau={tau}", {})[i] = (sokar_scores(h.double()) <= tau).double()
        if kind == "ReLU":
            u = units_axis_first(h)
            per_unit.setdefault("dead_fraction", {})[i] = (u == 0).all(1).double()
            per_unit.setdefault("active_fraction", {})[i] = (u != 0).double().mean(1)
            per_unit.setdefault("linearised_fraction", {})[i] = (u > 0).all(1).double()
            low = (u != 0).double().mean(1) < 0.3
            per_unit.setdefault("low_activity_fraction/threshold=0.3", {})[i] = low.double()
        if kind in ("Tanh", "Sigmoid"):
            u = units_axis_first(h).double()  # thresholds are compared in float64
            for th in (0.99, 0.9):
                sat = u.abs() > th if kind == "Tanh" else (u < 1 - th) | (u > th)
                per_unit.setdefault(f"saturated_fraction/threshold={th}", {})[i] = sat.double().mean(1)
    expected = {}
    for name, layers_ in per_unit.items():
        expected[name] = float(torch.cat(list(layers_.values())).mean())
        expected.update({f"{name}/layer={i}": float(v.mean()) for i, v in layers_.items()})
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, rel=rtol, abs=rtol * 1e-3), key
    assert 0 < out["saturated_fraction/threshold=0.99"] < 1  # the case is not trivial


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_preactivation_shift_from_initialisation(arch):
    layers, shape = ARCHITECTURES[arch]
    rng = np.random.default_rng(3)
    init = Network(layers(), rng)
    net = init.copy()
    net.flat[...] += rng.normal(scale=0.1, size=net.num_parameters)
    x = rng.normal(size=shape)
    out = compute_statistics(net, x, None, None, ["preactivation_mean_shift", "preactivation_std_shift"], init_net=init)
    now, then = torch_outputs(net, x), torch_outputs(init, x)
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (Linear, Conv2d)):
            z, z0 = (h.transpose(0, 1).reshape(h.shape[1], -1) for h in (now[i], then[i]))
            mean_shift = float((z.mean(1) - z0.mean(1)).abs().mean())
            std_shift = float((z.std(1, unbiased=False) - z0.std(1, unbiased=False)).abs().mean())
            assert out[f"preactivation_mean_shift/layer={i}"] == pytest.approx(mean_shift, rel=1e-12)
            assert out[f"preactivation_std_shift/layer={i}"] == pytest.approx(std_shift, rel=1e-12)
    same = compute_statistics(init, x, None, None, ["preactivation_mean_shift"], init_net=init)
    assert all(v == 0 for v in same.values())


def test_unit_moments_and_one_sided_units_by_hand():
    z = np.array([[1.0, -2.0, 0.0], [3.0, -4.0, 1.0]])
    mean, std = preactivations.unit_moments(z)
    np.testing.assert_array_equal(mean, [2.0, -3.0, 0.5])
    np.testing.assert_array_equal(std, [1.0, 1.0, 0.5])
    np.testing.assert_array_equal(preactivations.one_sided_units(z), [True, True, False])
