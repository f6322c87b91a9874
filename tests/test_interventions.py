"""Each intervention's effect on parameters and optimiser state, checked by hand on small networks:
which entries change (and to what), which stay bit-identical, moments zeroed exactly where
parameters changed, and the same numbers from the same seed."""

import numpy as np
import pytest

from refplastic.nn import SGD, Adam, AdamW, MSELoss, Network
from refplastic.nn.init import torch_default_init_
from refplastic.plasticity import interventions
from refplastic.plasticity.interventions import (PERTURB, SHRINK, WEIGHT_DECAY, brownian_step, l2_penalty, redo,
                                                 reset_last_layer, reset_optimizer_state, shrink_and_perturb)
from refplastic.stats.units import dormant_scores

MLP = [{"type": "Linear", "in_features": 3, "out_features": 6}, {"type": "ReLU"},
       {"type": "Linear", "in_features": 6, "out_features": 5}, {"type": "ReLU"},
       {"type": "Linear", "in_features": 5, "out_features": 2}]
CNN = [{"type": "Conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3}, {"type": "ReLU"},
       {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3}, {"type": "ReLU"},
       {"type": "Flatten"}, {"type": "Linear", "in_features": 16, "out_features": 2}]


def trained(arch, optimizer_class=Adam, steps=3, dtype=np.float64, seed=0, **hyperparameters):
    """A network and its optimiser after a few steps of regression, so that every buffer is non-zero."""
    rng = np.random.default_rng(seed)
    net = Network.from_architecture(arch, rng, dtype)
    opt = optimizer_class(net.flat, lr=1e-2, **hyperparameters)
    x = batch(arch, rng)
    t = rng.standard_normal((x.shape[0], 2))
    for _ in range(steps):
        net.loss_and_grad(x, t, MSELoss())
        opt.step(net.grad)
    return net, opt, x


def batch(arch, rng, n=8):
    return rng.standard_normal((n, 3) if arch[0]["type"] == "Linear" else (n, 2, 6, 6))


def span(net, *names):
    """Boolean mask over net.flat of the parameters called ``names``."""
    mask = np.zeros(net.num_parameters, bool)
    offsets = net.parameter_offsets()
    for name in names:
        mask[slice(*offsets[name])] = True
    return mask


def assert_moments(opt, before, changed):
    """Every buffer is 0 exactly on ``changed`` (a mask over net.flat) and bit-identical elsewhere."""
    assert opt.buffers.keys() == before.keys()
    for name, buffer in opt.buffers.items():
        assert np.all(buffer[changed] == 0), name
        np.testing.assert_array_equal(buffer[~changed], before[name][~changed], err_msg=name)


def copy_buffers(opt):
    return {k: v.copy() for k, v in opt.buffers.items()}


# ---- reset the last layer -------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer_class, hyperparameters", [(Adam, {}), (Adam, {"amsgrad": True}),
                                                              (SGD, {"momentum": 0.9})])
def test_reset_last_layer_redraws_only_the_last_linear_layer_and_its_state(optimizer_class, hyperparameters):
    net, opt, _ = trained(MLP, optimizer_class, **hyperparameters)
    flat, buffers, step = net.get_flat(), copy_buffers(opt), opt.step_count
    reset_last_layer(net, opt, np.random.default_rng(7))
    last = span(net, "4.weight", "4.bias")
    np.testing.assert_array_equal(net.flat[~last], flat[~last])
    expected_w, expected_b = np.empty((2, 5)), np.empty(2)
    torch_default_init_(expected_w, expected_b, np.random.default_rng(7))  # PyTorch's default, weight then bias
    np.testing.assert_array_equal(net.get_parameter("4.weight"), expected_w)
    np.testing.assert_array_equal(net.get_parameter("4.bias"), expected_b)
    assert np.all(net.flat[last] != flat[last]) and np.all(np.abs(net.flat[last]) <= 1 / np.sqrt(5))
    assert_moments(opt, buffers, last)
    assert opt.step_count == step


def test_reset_last_layer_without_an_optimizer_and_without_a_linear_layer():
    net = Network.from_architecture(MLP, np.random.default_rng(0))
    flat = net.get_flat()
    reset_last_layer(net, None, np.random.default_rng(1))
    assert np.array_equal(net.flat[:-12], flat[:-12]) and not np.array_equal(net.flat[-12:], flat[-12:])
    conv_only = Network.from_architecture(CNN[:4], np.random.default_rng(0))
    with pytest.raises(ValueError, match="no Linear layer"):
        reset_last_layer(conv_only, None, np.random.default_rng(0))


# ---- shrink and perturb ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shrink_and_perturb_mixes_with_a_fresh_network_from_the_same_generator(dtype):
    net, opt, _ = trained(CNN, dtype=dtype)
    flat, buffers = net.get_flat(), copy_buffers(opt)
    shrink_and_perturb(net, np.random.default_rng(3), shrink=0.4, perturb=0.1)
    fresh = Network.from_architecture(CNN, np.random.default_rng(3), dtype)
    assert net.flat.dtype == dtype
    np.testing.assert_array_equal(net.flat, dtype(0.4) * flat + dtype(0.1) * fresh.flat)
    for name, buffer in opt.buffers.items():  # the optimiser is left alone
        np.testing.assert_array_equal(buffer, buffers[name])


def test_shrink_and_perturb_defaults_and_its_identity():
    assert (SHRINK, PERTURB) == (0.4, 0.1)  # Ash & Adams (2020), github.com/JordanAsh/warm_start run.py
    net = Network.from_architecture(MLP, np.random.default_rng(0))
    flat = net.get_flat()
    shrink_and_perturb(net, np.random.default_rng(1), shrink=1.0, perturb=0.0)
    np.testing.assert_array_equal(net.flat, flat)
    shrink_and_perturb(net, np.random.default_rng(1))
    fresh = Network.from_architecture(MLP, np.random.default_rng(1))
    np.testing.assert_array_equal(net.flat, 0.4 * flat + 0.1 * fresh.flat)


def test_shrink_and_perturb_moves_layernorm_weights_towards_one():
    arch = [MLP[0], {"type": "LayerNorm", "normalized_shape": 6}, *MLP[1:]]
    net = Network.from_architecture(arch, np.random.default_rng(0))
    net.set_parameter("1.weight", np.full(6, 3.0))
    shrink_and_perturb(net, np.random.default_rng(1), shrink=0.5, perturb=0.25)
    np.testing.assert_array_equal(net.get_parameter("1.weight"), np.full(6, 0.5 * 3.0 + 0.25))
    np.testing.assert_array_equal(net.get_parameter("1.bias"), np.zeros(6))


# ---- weight decay (coupled L2) --------------------------------------------------------------------
def test_l2_penalty_is_torch_adams_coupled_weight_decay_bit_for_bit():
    assert WEIGHT_DECAY == 1e-5
    coefficient = 0.05
    runs = {}
    for how in ("penalty", "adam", "adamw"):
        net, _, x = trained(MLP, steps=0)
        opt = {"penalty": Adam(net.flat, lr=1e-2), "adam": Adam(net.flat, lr=1e-2, weight_decay=coefficient),
               "adamw": AdamW(net.flat, lr=1e-2, weight_decay=coefficient)}[how]
        t = np.random.default_rng(5).standard_normal((x.shape[0], 2))
        for _ in range(4):
            _, grad = net.loss_and_grad(x, t, MSELoss())
            if how == "penalty":
                assert l2_penalty(grad, net.flat, coefficient) is grad
            opt.step(grad)
        runs[how] = net.get_flat()
    np.testing.assert_array_equal(runs["penalty"], runs["adam"])
    assert not np.allclose(runs["penalty"], runs["adamw"], rtol=1e-6, atol=0)  # not decoupled


def test_l2_penalty_adds_the_coefficient_times_the_parameters():
    grad, params = np.array([1.0, -2.0, 0.5]), np.array([10.0, 20.0, -30.0])
    np.testing.assert_array_equal(l2_penalty(grad, params, 0.1), [2.0, 0.0, -2.5])
    grad32 = np.ones(2, np.float32)
    l2_penalty(grad32, np.array([1.0, 2.0], np.float32), 0.5)
    assert grad32.dtype == np.float32 and list(grad32) == [1.5, 2.0]


# ---- resetting the optimiser only -----------------------------------------------------------------
def test_reset_optimizer_state_forgets_state_and_keeps_parameters():
    net, opt, x = trained(MLP)
    flat = net.get_flat()
    reset_optimizer_state(opt)
    np.testing.assert_array_equal(net.flat, flat)
    assert opt.step_count == 0 and all(np.all(b == 0) for b in opt.buffers.values())
    twin = net.copy()
    fresh = Adam(twin.flat, lr=1e-2)
    t = np.ones((x.shape[0], 2))
    for n, o in ((net, opt), (twin, fresh)):
        o.step(n.loss_and_grad(x, t, MSELoss())[1])
    np.testing.assert_array_equal(net.flat, twin.flat)  # the next step is a new optimiser's first


# ---- ReDo ---------------------------------------------------------------------------------------------
def all_active(net, x, biases):
    """Set the biases named to 10 (so that every unit is active on ``x``) and check it."""
    for name in biases:
        net.get_parameter(name)[...] = 10.0
    outputs = net.layer_outputs(x)
    assert all(np.all(np.abs(outputs[i]).mean(axis=0) > 0) for i, layer in enumerate(net.layers)
               if type(layer).__name__ == "ReLU")
    return net


def with_dead_units(arch, rng_seed=0):
    """The trained network, every unit active, then units 1 and 4 of layer 0 and unit 0 of layer 2
    made dead: zero incoming weights and a negative bias, so that their ReLU output is 0 on every input."""
    net, opt, x = trained(arch, seed=rng_seed)
    all_active(net, x, ["0.bias", "2.bias"])
    for name, units in (("0", [1, 4]), ("2", [0])):
        weight, bias = net.get_parameter(f"{name}.weight"), net.get_parameter(f"{name}.bias")
        weight[units] = 0.0
        bias[units] = -1.0
    return net, opt, x


def test_redo_recycles_exactly_the_dead_units_of_an_mlp():
    net, opt, x = with_dead_units(MLP)
    flat, buffers, step, out = net.get_flat(), copy_buffers(opt), opt.step_count, net(x)
    before = {name: np.array(a) for name, a in net.named_parameters()}
    assert redo(net, opt, x, tau=0.0, rng=np.random.default_rng(11)) == [2, 1]
    after = dict(net.named_parameters())

    rng = np.random.default_rng(11)  # the fresh values: layer 0's two units, then layer 2's one
    w0, b0, w2, b2 = np.empty((2, 3)), np.empty(2), np.empty((1, 6)), np.empty(1)
    torch_default_init_(w0, b0, rng)
    torch_default_init_(w2, b2, rng)
    expected = {k: v.copy() for k, v in before.items()}
    expected["0.weight"][[1, 4]], expected["0.bias"][[1, 4]] = w0, b0
    expected["2.weight"][[0]], expected["2.bias"][[0]] = w2, b2
    expected["2.weight"][:, [1, 4]] = 0.0  # outgoing weights of layer 0's units: last, so W2[0, 1] = W2[0, 4] = 0
    expected["4.weight"][:, [0]] = 0.0
    for name in expected:
        np.testing.assert_array_equal(after[name], expected[name], err_msg=name)

    masks = {name: np.zeros(a.shape, bool) for name, a in before.items()}
    masks["0.weight"][[1, 4]] = masks["0.bias"][[1, 4]] = True
    masks["2.weight"][0] = masks["2.bias"][0] = True
    masks["2.weight"][:, [1, 4]] = True
    masks["4.weight"][:, 0] = True
    changed = np.concatenate([masks[name].ravel() for name in net.parameter_names])
    assert np.all(net.flat[~changed] == flat[~changed])
    assert_moments(opt, buffers, changed)
    assert opt.step_count == step
    np.testing.assert_allclose(net(x), out, rtol=1e-14, atol=1e-15)  # recycled units add nothing yet


def test_redo_draws_the_same_numbers_from_the_same_seed_and_nothing_without_dormant_units():
    nets = [with_dead_units(MLP)[:2] for _ in range(2)]
    x = with_dead_units(MLP)[2]
    for net, opt in nets:
        redo(net, opt, x, 0.0, np.random.default_rng(4))
    np.testing.assert_array_equal(nets[0][0].flat, nets[1][0].flat)
    np.testing.assert_array_equal(nets[0][1].buffers["exp_avg"], nets[1][1].buffers["exp_avg"])
    net, opt, x = trained(MLP)
    all_active(net, x, ["0.bias", "2.bias"])
    flat, buffers = net.get_flat(), copy_buffers(opt)
    scores = [dormant_scores(h) for h in (net.layer_outputs(x)[1], net.layer_outputs(x)[3])]
    tau = 0.5 * min(s.min() for s in scores)
    assert redo(net, opt, x, tau, np.random.default_rng(0)) == [0, 0]
    np.testing.assert_array_equal(net.flat, flat)
    assert_moments(opt, buffers, np.zeros(net.num_parameters, bool))


def test_redo_tau_selects_units_by_their_normalised_score():
    net, opt, x = trained(MLP, seed=3)
    scores = dormant_scores(net.layer_outputs(x)[1])
    order = np.argsort(scores)
    tau = 0.5 * (scores[order[1]] + scores[order[2]])  # between the second and third lowest scores
    second = dormant_scores(net.layer_outputs(x)[3])
    expected_second = int(np.sum(second <= tau))
    rows = net.get_parameter("0.weight").copy()
    assert redo(net, opt, x, tau, np.random.default_rng(0)) == [2, expected_second]
    moved = np.any(net.get_parameter("0.weight") != rows, axis=1)
    np.testing.assert_array_equal(np.flatnonzero(moved), np.sort(order[:2]))


def test_redo_on_a_cnn_resets_channels_and_their_flattened_columns():
    net, opt, x = trained(CNN)
    net.get_parameter("0.weight")[1] = 0.0
    net.get_parameter("0.bias")[1] = -1.0
    net.get_parameter("2.weight")[2] = 0.0
    net.get_parameter("2.bias")[2] = -1.0
    before = {name: np.array(a) for name, a in net.named_parameters()}
    buffers, out = copy_buffers(opt), net(x)
    assert redo(net, opt, x, 0.0, np.random.default_rng(2)) == [1, 1]
    after = dict(net.named_parameters())
    assert np.all(after["0.weight"][1] != before["0.weight"][1]) and after["0.bias"][1] != -1.0
    np.testing.assert_array_equal(np.delete(after["0.weight"], 1, 0), np.delete(before["0.weight"], 1, 0))
    assert np.all(after["2.weight"][:, 1] == 0)  # channel 1's outgoing kernels, including row 2's
    assert np.all(after["2.weight"][2, [0, 2]] != 0) and after["2.bias"][2] != -1.0
    np.testing.assert_array_equal(np.delete(np.delete(after["2.weight"], 2, 0), 1, 1),
                                  np.delete(np.delete(before["2.weight"], 2, 0), 1, 1))
    linear = np.zeros((2, 16), bool)
    linear[:, 8:12] = True  # channel 2 of a 4-channel 2x2 map: flattened NCHW columns 8..11
    assert np.all(after["5.weight"][linear] == 0)
    np.testing.assert_array_equal(after["5.weight"][~linear], before["5.weight"][~linear])
    np.testing.assert_array_equal(after["5.bias"], before["5.bias"])
    offsets = net.parameter_offsets()
    changed = np.zeros(net.num_parameters, bool)
    changed[offsets["0.weight"][0] + 18:offsets["0.weight"][0] + 36] = True  # row 1 of (3, 2, 3, 3)
    changed[offsets["0.bias"][0] + 1] = True
    conv = np.zeros((4, 3, 3, 3), bool)
    conv[2] = True
    conv[:, 1] = True
    changed[slice(*offsets["2.weight"])] = conv.ravel()
    changed[offsets["2.bias"][0] + 2] = True
    changed[slice(*offsets["5.weight"])] = linear.ravel()
    assert_moments(opt, buffers, changed)
    np.testing.assert_allclose(net(x), out, rtol=1e-14, atol=1e-15)


def test_redo_resets_a_dormant_units_layernorm_entries():
    arch = [MLP[0], {"type": "LayerNorm", "normalized_shape": 6}, *MLP[1:]]
    net, opt, x = trained(arch)
    all_active(net, x, ["1.bias", "3.bias"])
    net.get_parameter("1.weight")[3] = 0.0  # LayerNorm's output for unit 3 is its bias: -1, then ReLU 0
    net.get_parameter("1.bias")[3] = -1.0
    before = {name: np.array(a) for name, a in net.named_parameters()}
    buffers = copy_buffers(opt)
    assert redo(net, opt, x, 0.0, np.random.default_rng(0)) == [1, 0]
    after = dict(net.named_parameters())
    assert after["1.weight"][3] == 1.0 and after["1.bias"][3] == 0.0
    np.testing.assert_array_equal(np.delete(after["1.weight"], 3), np.delete(before["1.weight"], 3))
    assert np.all(after["3.weight"][:, 3] == 0) and np.all(after["0.weight"][3] != before["0.weight"][3])
    offsets = net.parameter_offsets()
    changed = np.zeros(net.num_parameters, bool)
    for name, index in (("0.weight", np.arange(9, 12)), ("0.bias", 3), ("1.weight", 3), ("1.bias", 3),
                        ("3.weight", np.arange(5) * 6 + 3)):
        changed[offsets[name][0] + index] = True
    assert_moments(opt, buffers, changed)


# ---- Brownian motion --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
def test_brownian_step_has_the_given_norm_and_a_gaussian_direction(dtype, rtol):
    params = np.random.default_rng(0).standard_normal(1000).astype(dtype)
    before = params.copy()
    brownian_step(params, 0.37, np.random.default_rng(9))
    step = params.astype(np.float64) - before
    assert params.dtype == dtype
    assert np.linalg.norm(step) == pytest.approx(0.37, rel=rtol * 10)
    z = np.random.default_rng(9).standard_normal(1000)
    np.testing.assert_allclose(step, 0.37 * z / np.linalg.norm(z), rtol=0, atol=rtol * 0.37)


def test_brownian_step_of_zero_length_changes_nothing_and_seeds_repeat():
    params = np.arange(5.0)
    brownian_step(params, 0.0, np.random.default_rng(0))
    np.testing.assert_array_equal(params, np.arange(5.0))
    a, b = np.zeros(7), np.zeros(7)
    brownian_step(a, 1.0, np.random.default_rng(3))
    brownian_step(b, 1.0, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_the_module_lists_what_it_offers():
    assert set(interventions.__all__) <= set(dir(interventions))
