"""Continual backprop: a hand computation on a tiny layer (utilities, ages, the fraction owed, which
unit goes when), a per-unit loop written after loss-of-plasticity's gnt.py for both utilities,
the optimiser moments, convolutional units, and the state through HDF5 and back."""

import h5py
import numpy as np
import pytest

from refplastic.nn import Adam, MSELoss, Network
from refplastic.nn.init import torch_default_init_
from refplastic.plasticity.continual_backprop import (DECAY_RATE, MATURITY_THRESHOLD, REPLACEMENT_RATE,
                                                      ContinualBackprop)

TINY = [{"type": "Linear", "in_features": 2, "out_features": 4}, {"type": "ReLU"},
        {"type": "Linear", "in_features": 4, "out_features": 3}]
MLP = [{"type": "Linear", "in_features": 3, "out_features": 6}, {"type": "ReLU"},
       {"type": "Linear", "in_features": 6, "out_features": 5}, {"type": "ReLU"},
       {"type": "Linear", "in_features": 5, "out_features": 2}]


def test_defaults_are_the_papers_and_the_rl_configuration():
    assert (DECAY_RATE, REPLACEMENT_RATE, MATURITY_THRESHOLD) == (0.99, 1e-4, 10_000)


def tiny_network():
    """TINY with outgoing weights whose column sums of |w| are 3, 1, 2, 4, and an Adam state."""
    net = Network.from_architecture(TINY, np.random.default_rng(0))
    opt = Adam(net.flat, lr=1e-2)
    x = np.random.default_rng(1).standard_normal((4, 2))
    for _ in range(2):
        opt.step(net.loss_and_grad(x, np.ones((4, 3)), MSELoss())[1])
    net.set_parameter("2.weight", [[1.0, -0.5, 1.0, 2.0], [1.0, 0.25, -0.5, 1.0], [-1.0, 0.25, 0.5, -1.0]])
    return net, opt


# mean |h| per unit = 1, 2, 0.25, 1 and mean h = 0, 0, 0.25, 1, so the contributions are
# mean|h| * sum|w_out| = 3, 2, 0.5, 4
H = np.array([[1.0, -2.0, 0.5, 1.0], [-1.0, 2.0, 0.0, 1.0]])


def test_hand_computation_on_a_tiny_layer():
    net, opt = tiny_network()
    cbp = ContinualBackprop(net, replacement_rate=0.25, maturity_threshold=2, decay_rate=0.5)
    rng, draws = np.random.default_rng(5), np.random.default_rng(5)
    contribution = np.array([3.0, 2.0, 0.5, 4.0])
    for step in (1, 2):  # ages 1, 2: nobody is mature (age > 2), nothing is owed
        assert cbp.step(net, opt, [H], rng) == [0]
        state = cbp.state_dict()
        np.testing.assert_array_equal(state["0.age"], [step] * 4)
        np.testing.assert_array_equal(state["0.utility"], (1 - 0.5 ** step) * contribution)
        np.testing.assert_array_equal(state["0.mean_activity"], (1 - 0.5 ** step) * np.array([0, 0, 0.25, 1]))
        assert state["0.units_owed"] == 0

    # step 3: four mature units owe 4 * 0.25 = 1 unit: the smallest bias-corrected utility, unit 2
    before = {name: np.array(a) for name, a in net.named_parameters()}
    buffers = {k: v.copy() for k, v in opt.buffers.items()}
    assert cbp.step(net, opt, [H], rng) == [1]
    expected_row = np.empty((1, 2))
    torch_default_init_(expected_row, None, draws)  # fresh weights as at initialisation; bias 0
    after = dict(net.named_parameters())
    np.testing.assert_array_equal(after["0.weight"][2], expected_row[0])
    assert after["0.bias"][2] == 0
    np.testing.assert_array_equal(after["2.weight"][:, 2], 0)
    for name in after:
        keep = np.ones(before[name].shape, bool)
        keep[{"0.weight": (2,), "0.bias": (2,), "2.weight": (slice(None), 2), "2.bias": ()}[name]] = False
        np.testing.assert_array_equal(after[name][keep], before[name][keep], err_msg=name)
    changed = np.zeros(net.num_parameters, bool)
    changed[[4, 5, 8 + 2, 12 + 2, 12 + 6, 12 + 10]] = True  # row 2 of (4, 2), bias 2, column 2 of (3, 4)
    for name, buffer in opt.buffers.items():
        assert np.all(buffer[changed] == 0)
        np.testing.assert_array_equal(buffer[~changed], buffers[name][~changed])
    state = cbp.state_dict()
    np.testing.assert_array_equal(state["0.age"], [3, 3, 0, 3])
    np.testing.assert_array_equal(state["0.utility"], [2.625, 1.75, 0, 3.5])
    np.testing.assert_array_equal(state["0.mean_activity"], [0, 0, 0, 0.875])
    assert state["0.units_owed"] == 0

    # step 4: three mature units owe 0.75, so nobody goes; step 5: 1.5, so the lowest of 0, 1, 3 goes
    assert cbp.step(net, opt, [H], rng) == [0]
    assert cbp.state_dict()["0.units_owed"] == 0.75
    row1 = np.array(net.get_parameter("0.weight")[1])
    assert cbp.step(net, opt, [H], rng) == [1]
    state = cbp.state_dict()
    np.testing.assert_array_equal(state["0.age"], [5, 0, 2, 5])
    assert state["0.units_owed"] == 0.5
    torch_default_init_(expected_row, None, draws)
    np.testing.assert_array_equal(net.get_parameter("0.weight")[1], expected_row[0])
    assert not np.array_equal(row1, expected_row[0])
    np.testing.assert_array_equal(net.get_parameter("2.weight")[:, [1, 2]], 0)


def test_ties_go_to_the_lower_index():
    net, opt = tiny_network()
    net.set_parameter("2.weight", np.ones((3, 4)))
    cbp = ContinualBackprop(net, replacement_rate=0.5, maturity_threshold=0, decay_rate=0.5)
    h = np.ones((2, 4))
    assert cbp.step(net, opt, [h], np.random.default_rng(0)) == [2]
    np.testing.assert_array_equal(cbp.state_dict()["0.age"], [0, 0, 1, 1])


def naive_step(state, net, outputs, rng, rho, m, eta, kind):
    """One step written unit by unit after gnt.py (test_features, then gen_new_features per layer),
    with the sum over outgoing weights of Dohare et al.'s equation (1), ties to the lower index, and
    the mean-corrected transfer taken before the mean is reset."""
    weights = [net.get_parameter(f"{i}.weight") for i in (0, 2, 4)]
    biases = [net.get_parameter(f"{i}.bias") for i in (0, 2, 4)]
    replaced = []
    for layer, h in enumerate(outputs):
        s = state[layer]
        width = h.shape[1]
        for i in range(width):
            s["age"][i] += 1
            correction = 1 - eta ** s["age"][i]
            s["f"][i] = eta * s["f"][i] + (1 - eta) * np.mean(h[:, i])
            y = np.abs(h[:, i] - s["f"][i] / correction) if kind == "mean_corrected" else np.abs(h[:, i])
            fan_out = sum(abs(w) for w in weights[layer + 1][:, i])
            s["u"][i] = eta * s["u"][i] + (1 - eta) * np.mean(y) * fan_out
        mature = [i for i in range(width) if s["age"][i] > m]
        if mature:
            s["c"] += rho * len(mature)
        count = int(s["c"])
        s["c"] -= count
        chosen = sorted(mature, key=lambda i: (s["u"][i] / (1 - eta ** s["age"][i]), i))[:count]
        for r in chosen:
            if kind == "mean_corrected":
                biases[layer + 1] += weights[layer + 1][:, r] * s["f"][r] / (1 - eta ** s["age"][r])
            fan_in = weights[layer].shape[1]
            weights[layer][r] = rng.uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), size=fan_in)
            biases[layer][r] = 0.0
            weights[layer + 1][:, r] = 0.0
            s["u"][r] = s["f"][r] = s["age"][r] = 0
        replaced.append(len(chosen))
    return replaced


@pytest.mark.parametrize("kind", ["contribution", "mean_corrected"])
def test_against_a_unit_by_unit_loop_after_gnt(kind):
    rho, m, eta = 0.07, 3, 0.9
    net = Network.from_architecture(MLP, np.random.default_rng(0))
    twin = net.copy()
    cbp = ContinualBackprop(net, replacement_rate=rho, maturity_threshold=m, decay_rate=eta, utility=kind)
    state = [{"u": np.zeros(w), "f": np.zeros(w), "age": np.zeros(w, int), "c": 0.0} for w in (6, 5)]
    rng_a, rng_b, data = np.random.default_rng(1), np.random.default_rng(1), np.random.default_rng(2)
    total = np.zeros(2, int)
    for _ in range(40):
        outputs = [data.standard_normal((4, 6)) + 0.5, data.standard_normal((4, 5)) - 0.3]
        got = cbp.step(net, None, outputs, rng_a)
        assert got == naive_step(state, twin, outputs, rng_b, rho, m, eta, kind)
        total += got
        np.testing.assert_allclose(net.flat, twin.flat, rtol=1e-13, atol=1e-15)
        saved = cbp.state_dict()
        for layer, i in enumerate((0, 2)):
            np.testing.assert_allclose(saved[f"{i}.utility"], state[layer]["u"], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(saved[f"{i}.mean_activity"], state[layer]["f"], rtol=1e-12, atol=1e-15)
            np.testing.assert_array_equal(saved[f"{i}.age"], state[layer]["age"])
            assert saved[f"{i}.units_owed"] == pytest.approx(state[layer]["c"], abs=1e-12)
    assert np.all(total >= 4)  # the comparison saw replacements in both layers


@pytest.mark.parametrize("kind", ["contribution", "mean_corrected"])
def test_only_the_mean_corrected_utility_moves_the_mean_contribution_into_the_next_bias(kind):
    net, opt = tiny_network()
    cbp = ContinualBackprop(net, replacement_rate=0.25, maturity_threshold=0, decay_rate=0.5, utility=kind)
    # unit 2 is constant at 2: its mean-corrected utility is 0, so it goes; with "contribution",
    # mean |h| sum |w_out| = 6, 3, 4, 8 and unit 1 goes
    h = np.array([[1.0, -3.0, 2.0, 1.0], [3.0, 3.0, 2.0, 3.0]])
    gone = 2 if kind == "mean_corrected" else 1
    bias, column = np.array(net.get_parameter("2.bias")), np.array(net.get_parameter("2.weight")[:, gone])
    assert cbp.step(net, opt, [h], np.random.default_rng(0)) == [1]
    np.testing.assert_array_equal(net.get_parameter("2.weight")[:, gone], 0)
    if kind == "mean_corrected":  # f = 0.5 * 2, corrected by 1 - 0.5: the mean 2 exactly
        np.testing.assert_array_equal(net.get_parameter("2.bias"), bias + column * 2.0)
    else:
        np.testing.assert_array_equal(net.get_parameter("2.bias"), bias)


def test_convolutional_units_count_every_weight_that_reads_them():
    arch = [{"type": "Conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 3}, {"type": "ReLU"},
            {"type": "Conv2d", "in_channels": 3, "out_channels": 2, "kernel_size": 3}, {"type": "ReLU"},
            {"type": "Flatten"}, {"type": "Linear", "in_features": 8, "out_features": 5}]
    net = Network.from_architecture(arch, np.random.default_rng(0))
    net.set_parameter("2.weight", np.arange(54.0).reshape(2, 3, 3, 3) - 27)
    net.set_parameter("5.weight", np.arange(40.0).reshape(5, 8) * -1)
    cbp = ContinualBackprop(net, replacement_rate=1.0, maturity_threshold=0, decay_rate=0.5)
    x = np.random.default_rng(1).standard_normal((3, 1, 6, 6))
    outputs = net.layer_outputs(x)
    h1, h2 = outputs[1], outputs[3]
    cbp.replacement_rate = 0.0  # first just the utilities
    cbp.step(net, None, [h1, h2], np.random.default_rng(0))
    state = cbp.state_dict()
    conv_fan_out = np.abs(net.get_parameter("2.weight")).sum(axis=(0, 2, 3))
    linear_fan_out = np.abs(net.get_parameter("5.weight")).sum(axis=0).reshape(2, 4).sum(axis=1)
    np.testing.assert_allclose(state["0.utility"], 0.5 * np.abs(h1).mean(axis=(0, 2, 3)) * conv_fan_out, rtol=1e-14)
    np.testing.assert_allclose(state["2.utility"], 0.5 * np.abs(h2).mean(axis=(0, 2, 3)) * linear_fan_out,
                               rtol=1e-14)
    cbp.replacement_rate = 0.5  # one of the two channels of layer 2 (the less useful one), 1.5 of layer 0's
    lowest = int(np.argmin(state["2.utility"]))
    before = np.array(net.get_parameter("5.weight"))
    assert cbp.step(net, None, [h1, h2], np.random.default_rng(0)) == [1, 1]
    columns = np.zeros(8, bool)
    columns[4 * lowest:4 * lowest + 4] = True
    np.testing.assert_array_equal(net.get_parameter("5.weight")[:, columns], 0)
    np.testing.assert_array_equal(net.get_parameter("5.weight")[:, ~columns], before[:, ~columns])


def test_state_survives_hdf5_and_the_run_continues_identically(tmp_path):
    runs = []
    for resume in (False, True):
        net = Network.from_architecture(MLP, np.random.default_rng(0))
        cbp = ContinualBackprop(net, replacement_rate=0.3, maturity_threshold=2, decay_rate=0.9)
        data, rng = np.random.default_rng(3), np.random.default_rng(4)
        for step in range(12):
            if resume and step == 6:
                with h5py.File(tmp_path / "cbp.h5", "w") as f:
                    for key, value in cbp.state_dict().items():
                        f[key] = value
                cbp = ContinualBackprop(net, replacement_rate=0.3, maturity_threshold=2, decay_rate=0.9)
                with h5py.File(tmp_path / "cbp.h5", "r") as f:
                    cbp.load_state_dict({key: f[key][()] for key in f})
            cbp.step(net, None, [data.standard_normal((4, 6)), data.standard_normal((4, 5))], rng)
        runs.append((net.get_flat(), cbp.state_dict()))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    for key, value in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][key], value)
        assert runs[1][1][key].dtype == value.dtype


def test_bad_state_and_bad_arguments_are_refused():
    net = Network.from_architecture(MLP, np.random.default_rng(0))
    cbp = ContinualBackprop(net)
    state = cbp.state_dict()
    assert sorted(state) == sorted(f"{i}.{n}" for i in (0, 2) for n in ("utility", "mean_activity", "age",
                                                                         "units_owed"))
    with pytest.raises(ValueError, match="missing"):
        cbp.load_state_dict({k: v for k, v in state.items() if k != "0.age"})
    with pytest.raises(ValueError, match="0.utility"):
        cbp.load_state_dict({**state, "0.utility": np.zeros(5)})
    with pytest.raises(ValueError, match="2.age"):
        cbp.load_state_dict({**state, "2.age": np.zeros(5)})  # ages are integers
    with pytest.raises(ValueError, match="utility must be"):
        ContinualBackprop(net, utility="weight")
    for kwargs in ({"replacement_rate": -0.1}, {"decay_rate": 1.0}, {"maturity_threshold": 2.5}):
        with pytest.raises(ValueError):
            ContinualBackprop(net, **kwargs)
    with pytest.raises(ValueError, match="2 hidden layers"):
        cbp.step(net, None, [np.ones((4, 6))], np.random.default_rng(0))
    with pytest.raises(ValueError, match="5 units"):
        cbp.step(net, None, [np.ones((4, 6)), np.ones((4, 6))], np.random.default_rng(0))
    normalised = [MLP[0], MLP[1], {"type": "LayerNorm", "normalized_shape": 6}, *MLP[2:]]
    with pytest.raises(ValueError, match="mean-corrected"):
        ContinualBackprop(Network.from_architecture(normalised, np.random.default_rng(0)), utility="mean_corrected")
