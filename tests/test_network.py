"""The sequential network: parameter order and state dicts as torch, whole-network derivatives."""

import numpy as np
import pytest
import torch
from oracle import RTOL, assert_close, check_network, torch_module

from refplastic.nn import GELU, Flatten, Linear, MSELoss, Network, ReLU, Sigmoid, Tanh, make_loss


def mlp(rng, dtype=np.float64, act=Tanh):
    return Network([Linear(6, 8), act(), Linear(8, 8), act(), Linear(8, 3)], rng, dtype)


def test_parameter_names_and_order_match_torch():
    net = mlp(np.random.default_rng(0))
    module = torch_module(net)
    assert net.parameter_names == [n for n, _ in module.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy()
    np.testing.assert_array_equal(net.flat, flat)
    assert net.num_parameters == sum(p.numel() for p in module.parameters())


def test_views_share_the_flat_vector():
    net = mlp(np.random.default_rng(0))
    net.flat[0] = 123.0
    assert net.get_parameter("0.weight")[0, 0] == 123.0
    net.set_parameter("2.bias", np.full(8, 7.0))
    start, stop = net.parameter_offsets()["2.bias"]
    np.testing.assert_array_equal(net.flat[start:stop], 7.0)


def test_default_initialisation_bounds_and_determinism():
    a, b = mlp(np.random.default_rng(5)), mlp(np.random.default_rng(5))
    np.testing.assert_array_equal(a.flat, b.flat)
    assert not np.array_equal(a.flat, mlp(np.random.default_rng(6)).flat)
    for name, p in a.named_parameters():
        fan_in = 6 if name.startswith("0.") else 8
        assert np.all(np.abs(p) <= 1 / np.sqrt(fan_in))
    big = Network([Linear(100, 400)], np.random.default_rng(0))
    w = big.get_parameter("0.weight")
    assert abs(w.std() - 0.1 / np.sqrt(3)) < 2e-3  # U(-b, b) has std b / sqrt(3), b = 1/sqrt(100)


def test_state_dict_round_trip_and_copy():
    net = mlp(np.random.default_rng(0))
    other = mlp(np.random.default_rng(1))
    other.load_state_dict(net.state_dict())
    np.testing.assert_array_equal(other.flat, net.flat)
    twin = net.copy()
    twin.flat[:] = 0
    assert np.any(net.flat != 0)
    assert np.all(twin.get_parameter("0.weight") == 0)
    x = np.ones((2, 6))
    np.testing.assert_array_equal(other(x), net(x))


def test_load_state_dict_rejects_mismatch():
    net = mlp(np.random.default_rng(0))
    state = net.state_dict()
    state.pop("0.bias")
    with pytest.raises(ValueError, match="missing"):
        net.load_state_dict(state)
    state = net.state_dict()
    state["0.bias"] = np.zeros(3)
    with pytest.raises(ValueError, match="0.bias"):
        net.load_state_dict(state)


def test_architecture_round_trip():
    net = mlp(np.random.default_rng(0))
    rebuilt = Network.from_architecture(net.architecture(), np.random.default_rng(0))
    np.testing.assert_array_equal(rebuilt.flat, net.flat)
    with pytest.raises(ValueError, match="unknown layer type 'Dense'"):
        Network.from_architecture([{"type": "Dense"}], np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not take"):
        Network.from_architecture([{"type": "Linear", "in_features": 2, "out_features": 2, "units": 3}],
                                  np.random.default_rng(0))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", [Tanh, ReLU, GELU, Sigmoid])
@pytest.mark.parametrize("loss_name", ["mse", "huber", "cross_entropy"])
def test_network_gradient_and_hvp_against_torch(act, loss_name, dtype):
    rng = np.random.default_rng(1)
    net = mlp(rng, dtype, act)
    x = rng.normal(size=(10, 6)).astype(dtype)
    t = rng.integers(0, 3, size=10) if loss_name == "cross_entropy" else rng.normal(size=(10, 3)).astype(dtype)
    check_network(net, x, t, make_loss(loss_name), rng)


def test_input_dtype_is_cast_to_the_network_dtype():
    net = mlp(np.random.default_rng(0), np.float32)
    assert net(np.ones((2, 6))).dtype == np.float32
    with pytest.raises(ValueError, match="float64 or float32"):
        mlp(np.random.default_rng(0), np.int32)


def test_layer_outputs_are_each_layers_output():
    net = mlp(np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(4, 6))
    outs = net.layer_outputs(x)
    assert len(outs) == 5
    np.testing.assert_allclose(outs[1], np.tanh(outs[0]))
    np.testing.assert_array_equal(outs[-1], net(x))
    assert MSELoss()(outs[-1], outs[-1]) == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_network_with_normalisation_against_torch(mode, dtype):
    from refplastic.nn import BatchNorm1d, LayerNorm

    rng = np.random.default_rng(4)
    net = Network([Linear(6, 8), BatchNorm1d(8), Tanh(), Linear(8, 8), LayerNorm(8), GELU(), Linear(8, 3)], rng, dtype)
    for _ in range(3):  # non-trivial running statistics
        net(rng.normal(size=(12, 6)))
    net.train(mode == "train")
    module = torch_module(net)
    x = rng.normal(size=(10, 6)).astype(dtype)
    t = rng.normal(size=(10, 3)).astype(dtype)
    buffers = net.state_dict()
    value, grad = net.loss_and_grad(x, t, MSELoss())
    params = list(module.parameters())
    lt = torch.nn.functional.mse_loss(module(torch.tensor(x)), torch.tensor(t))
    gt = torch.autograd.grad(lt, params)
    rtol = RTOL[dtype]
    assert_close(value, lt.item(), rtol, "loss")
    assert_close(grad, torch.cat([g.reshape(-1) for g in gt]).numpy(), rtol, "gradient")
    for name, buf in net.named_buffers():
        assert_close(buf, module.state_dict()[name].numpy(), rtol, name)
        if mode == "eval":
            np.testing.assert_array_equal(buf, buffers[name])


def test_torch_constructor_signatures_are_accepted():
    from refplastic.nn import Conv2d

    conv = Conv2d(4, 8, 3, 2, 1, 1, 1, False)  # torch's positional order: ..., dilation, groups, bias
    assert conv.config()["bias"] is False and "bias" not in conv.param_shapes
    arch = [{"type": "Linear", "in_features": 3, "out_features": 4}, {"type": "ReLU", "inplace": True},
            {"type": "LeakyReLU", "negative_slope": 0.2, "inplace": False}]
    net = Network.from_architecture(arch, np.random.default_rng(0))
    assert net(np.ones((2, 3))).shape == (2, 4)


def test_backward_without_parameter_gradients_gives_the_same_cotangents():
    from refplastic.curvature import CurvatureBatch
    from refplastic.nn import BatchNorm2d, Conv2d, Flatten, LayerNorm, MaxPool2d

    rng = np.random.default_rng(7)
    net = Network([Conv2d(2, 3, 3, padding=1), BatchNorm2d(3), ReLU(), MaxPool2d(2), Flatten(), Linear(12, 5),
                   LayerNorm(5), Tanh(), Linear(5, 2)], rng)
    x, t = rng.normal(size=(4, 2, 4, 4)), rng.normal(size=(4, 2))
    _, caches = net.forward_cached(x)
    gy = rng.normal(size=(4, 2))
    for i in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[i]
        grads = {k: np.full_like(p, np.nan) for k, p in layer.params.items()}
        with_grads = layer.backward(caches[i], gy, grads)
        without = layer.backward(caches[i], gy, None)
        np.testing.assert_array_equal(without, with_grads)
        assert all(np.all(np.isfinite(g)) for g in grads.values())
        gy = with_grads
    batch = CurvatureBatch(net, MSELoss(), x, t)
    np.testing.assert_array_equal(batch.grad, net.loss_and_grad(x, t, MSELoss())[1])


def test_inputs_that_are_not_a_real_batch_are_clear_errors():
    net = Network([Linear(3, 2)], np.random.default_rng(0))
    for x, match in [(np.ones((2, 3), complex), "real numbers"), (np.array([["a", "b", "c"]]), "real numbers"),
                     (np.ones((0, 3)), "must not be empty")]:
        with pytest.raises(ValueError, match=match):
            net(x)
    assert net(np.ones((2, 3), np.int64)).dtype == np.float64  # integers (pixels) are converted
    with pytest.raises(ValueError, match="out of range"):
        Network([Flatten(2)], np.random.default_rng(0))(np.ones(4))
