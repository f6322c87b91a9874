"""SpectralNormLinear against torch's ``spectral_norm(nn.Linear(...))``: the power iteration (at
registration and at every train-mode forward), the four maps (torch reverse mode and double
backward; central differences with u and v held fixed), per-example gradients, and a network
containing it through refplastic.curvature. The curvature of whole networks with it is also in
tests/test_curvature.py's architecture table."""

import numpy as np
import pytest
import torch
from oracle import RTOL, TORCH_DTYPE, assert_close, check_layer, torch_module, torch_state_name

from refplastic.curvature import CurvatureBatch, hessian, per_example_gradients
from refplastic.nn import Linear, Network, ReLU, SpectralNormLinear, Tanh, build_layer, make_loss
from refplastic.nn.spectral_norm import INITIAL_POWER_ITERATIONS, power_iteration_

DTYPES = [np.float64, np.float32]
spectral_norm = torch.nn.utils.parametrizations.spectral_norm


def perturbed(layer, scale=0.5):
    """``layer`` whose reset also moves W away from its default initialisation, leaving u and v
    those of the default W: the power iteration then has work to do."""
    cls = type(layer)

    def reset_parameters(rng):
        cls.reset_parameters(layer, rng)
        for p in layer.params.values():
            p += rng.normal(scale=scale, size=p.shape)

    layer.reset_parameters = reset_parameters
    return layer


# ---- the four maps -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("shape,bias", [((5, 4), True), ((2, 3, 4), False), ((6, 4), False)])
@pytest.mark.parametrize("n_power_iterations", [1, 3])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_maps_against_torch(training, n_power_iterations, shape, bias, input_grad, dtype):
    # central differences only in eval mode: in train mode u and v would follow W (the maps hold them fixed)
    layer = perturbed(SpectralNormLinear(4, 3, bias=bias, n_power_iterations=n_power_iterations))
    layer.training = training
    check_layer(layer, shape, np.random.default_rng(0), dtype, input_grad=input_grad, fd=not training)


def test_gradient_against_central_differences_with_u_v_fixed():
    """The first- and second-order maps of a network against central differences of its loss and
    gradient at the u, v of one train-mode forward, held fixed (eval mode)."""
    rng = np.random.default_rng(1)
    net = Network([perturbed(SpectralNormLinear(5, 6)), Tanh(), Linear(6, 3)], rng)
    x, t, loss = rng.normal(size=(7, 5)), rng.normal(size=(7, 3)), make_loss("mse")
    net.forward(x)  # one power iteration from the registration's u, v
    net.eval()
    batch = CurvatureBatch(net, loss, x, t)
    theta, h = net.get_flat(), 1e-5
    V = rng.normal(size=(2, net.num_parameters))

    def at(eps, v):
        net.set_flat(theta + eps * v)
        b = CurvatureBatch(net, loss, x, t)
        return b.value, b.grad

    for v, hv in zip(V, batch.hvp(V)):
        (lp, gp), (lm, gm) = at(h, v), at(-h, v)
        assert abs((lp - lm) / (2 * h) - batch.grad @ v) <= 1e-8 * max(1, abs(batch.grad @ v))
        assert_close(hv, (gp - gm) / (2 * h), 1e-6, "HVP vs central differences")
    net.set_flat(theta)


def test_vjp_formula():
    """``gW = (G - <G, W_sn> u v^T) / sigma`` with ``G = gy^T x``, written out, against backward."""
    rng = np.random.default_rng(2)
    net = Network([perturbed(SpectralNormLinear(4, 3))], rng)
    layer = net.layers[0]
    x, gy = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    _, caches = net.forward_cached(x)
    net.backward(caches, gy)
    u, v, W = layer.buffers["u"], layer.buffers["v"], layer.params["weight"]
    sigma = u @ W @ v
    G = gy.T @ x
    expected = (G - np.sum(G * W / sigma) * np.outer(u, v)) / sigma
    np.testing.assert_allclose(net.unflatten(net.grad)[0]["weight"], expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.sum(expected * W), 0, atol=1e-14)  # W_sn is scale invariant in W


# ---- the power iteration and the buffers --------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_power_iterations", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_train_forwards_update_u_v_as_torch(bias, n_power_iterations, dtype):
    rng = np.random.default_rng(3)
    net = Network([perturbed(SpectralNormLinear(5, 4, bias=bias, n_power_iterations=n_power_iterations))], rng, dtype)
    module = torch_module(net)
    for forwards in (1, 2, 3):
        x = rng.normal(size=(6, 5)).astype(dtype)
        assert_close(net.forward(x), module(torch.from_numpy(x)).detach().numpy(), RTOL[dtype], "train forward")
        state = module.state_dict()
        for name, buf in net.named_buffers():
            assert_close(buf, state[torch_state_name(net, name)].numpy(), RTOL[dtype], f"{name} after {forwards}")
        if forwards == 1:
            first = {name: buf.copy() for name, buf in net.named_buffers()}
    assert not np.allclose(first["0.u"], net.layers[0].buffers["u"])  # each forward iterated again

    net.eval(), module.eval()
    before = net.state_dict()
    x = rng.normal(size=(6, 5)).astype(dtype)
    assert_close(net.forward(x), module(torch.from_numpy(x)).detach().numpy(), RTOL[dtype], "eval forward")
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} changed in eval mode")
    u, v, W = (np.asarray(a, np.float64) for a in (before["0.u"], before["0.v"], before["0.weight"]))
    y = x @ (W / (u @ W @ v)).T + (before["0.bias"] if bias else 0)
    assert_close(net.forward(x), y, RTOL[dtype], "eval forward by hand")


def test_maps_after_forward_neither_iterate_nor_touch_buffers():
    rng = np.random.default_rng(4)
    net = Network([perturbed(SpectralNormLinear(3, 4))], rng)
    layer = net.layers[0]
    x = rng.normal(size=(5, 3))
    _, caches = net.forward_cached(x)
    before = {k: b.copy() for k, b in layer.buffers.items()}
    np.testing.assert_array_equal(caches[0].u, before["u"])
    np.testing.assert_array_equal(caches[0].v, before["v"])
    gy = rng.normal(size=(5, 4))
    layer.backward(caches[0], gy, net.unflatten(net.grad)[0])
    ry, rcache = layer.forward_r(caches[0], rng.normal(size=(2, 5, 3)), net.unflatten(rng.normal(size=(2, 16)))[0])
    layer.backward_r(caches[0], rcache, gy, ry, net.unflatten(np.empty((2, 16)))[0])
    for k, b in layer.buffers.items():
        np.testing.assert_array_equal(b, before[k], err_msg=k)


class Replay:
    """A stand-in for a numpy Generator that returns given arrays in order and records the calls."""

    def __init__(self, arrays):
        self.arrays, self.calls = list(arrays), []

    def _next(self, kind, size):
        self.calls.append((kind, tuple(size)))
        return self.arrays.pop(0).reshape(size)

    def uniform(self, low, high, size):
        return self._next("uniform", size)

    def standard_normal(self, size):
        return self._next("normal", size)


@pytest.mark.parametrize("n_power_iterations", [1, 3])
@pytest.mark.parametrize("shape", [(3, 5), (6, 2)])
def test_registration_draws_and_iterates_as_torch(shape, n_power_iterations):
    """Given torch's own draws, the initial W, b, u, v are torch's: W, then b, then u ~ N(0, I_out)
    and v ~ N(0, I_in), normalised, then 15 + n_power_iterations power iterations."""
    fan_in, out = shape[1], shape[0]
    torch.manual_seed(0)
    reference = torch.nn.Sequential(spectral_norm(torch.nn.Linear(fan_in, out, dtype=torch.float64),
                                                  n_power_iterations=n_power_iterations))
    torch.manual_seed(0)
    plain = torch.nn.Linear(fan_in, out, dtype=torch.float64)
    u0 = torch.empty(out, dtype=torch.float64).normal_(0, 1)
    v0 = torch.empty(fan_in, dtype=torch.float64).normal_(0, 1)
    draws = [plain.weight.detach(), plain.bias.detach(), u0, v0]
    rng = Replay([a.numpy().copy() for a in draws])
    net = Network([SpectralNormLinear(fan_in, out, n_power_iterations=n_power_iterations)], rng)
    assert rng.calls == [("uniform", (out, fan_in)), ("uniform", (out,)), ("normal", (out,)), ("normal", (fan_in,))]
    state = reference.state_dict()
    for name, value in net.state_dict().items():
        assert_close(value, state[torch_state_name(net, name)].numpy(), 1e-12, name)


def test_registration_from_a_generator_is_deterministic_and_converged():
    a = Network([SpectralNormLinear(6, 4)], np.random.default_rng(5))
    b = Network([SpectralNormLinear(6, 4)], np.random.default_rng(5))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(x, y, err_msg=name)
    u, v, W = a.layers[0].buffers["u"], a.layers[0].buffers["v"], a.get_parameter("0.weight")
    assert abs(np.linalg.norm(u) - 1) < 1e-15 and abs(np.linalg.norm(v) - 1) < 1e-15
    assert u @ W @ v == pytest.approx(np.linalg.svd(W, compute_uv=False)[0], rel=1e-6)


def test_power_iteration_guards_a_zero_weight_with_eps():
    u, v = np.array([1.0, 0.0]), np.array([0.0, 1.0, 0.0])
    power_iteration_(np.zeros((2, 3)), u, v, 2, 1e-12)
    np.testing.assert_array_equal(u, 0)
    np.testing.assert_array_equal(v, 0)
    assert INITIAL_POWER_ITERATIONS == 15


def test_parameter_order_names_and_flat_vector_are_torchs():
    net = Network([SpectralNormLinear(3, 4), ReLU(), SpectralNormLinear(4, 2, bias=False)], np.random.default_rng(6))
    module = torch_module(net)
    assert [torch_state_name(net, n) for n in net.parameter_names] == [n for n, _ in module.named_parameters()]
    assert [torch_state_name(net, n) for n in net.state_dict()] == list(module.state_dict())
    np.testing.assert_array_equal(net.flat, torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy())


def test_architecture_round_trip_and_arguments():
    spec = {"type": "SpectralNormLinear", "in_features": 3, "out_features": 2, "bias": False,
            "n_power_iterations": 4, "eps": 1e-8}
    net = Network.from_architecture([spec], np.random.default_rng(7))
    assert net.architecture() == [spec]
    assert net.layers[0].param_shapes == {"weight": (2, 3)}
    assert SpectralNormLinear(3, 2).config() == {"in_features": 3, "out_features": 2, "bias": True,
                                                 "n_power_iterations": 1, "eps": 1e-12}
    with pytest.raises(ValueError, match="SpectralNormLinear: n_power_iterations must be a positive int"):
        build_layer({**spec, "n_power_iterations": 0})
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        build_layer({**spec, "eps": 0.0})
    with pytest.raises(ValueError, match="last dimension 3"):
        net.forward(np.zeros((2, 4)))


# ---- networks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("act", [ReLU, Tanh])
@pytest.mark.parametrize("loss_name", ["mse", "cross_entropy"])
def test_network_hessian_hvp_per_example_against_torch(loss_name, act, training):
    rng = np.random.default_rng(8)
    net = Network([perturbed(SpectralNormLinear(5, 6)), act(), Linear(6, 3)], rng).train(training)
    x = rng.normal(size=(7, 5))
    t = rng.integers(0, 3, size=7) if loss_name == "cross_entropy" else rng.normal(size=(7, 3))
    loss = make_loss(loss_name)
    before = net.state_dict()

    module = torch_module(net)
    params = list(module.parameters())
    z = module(torch.from_numpy(x))
    L = {"mse": torch.nn.functional.mse_loss, "cross_entropy": torch.nn.functional.cross_entropy}[loss_name](
        z, torch.from_numpy(t))
    g = torch.cat([a.reshape(-1) for a in torch.autograd.grad(L, params, create_graph=True)])
    P = net.num_parameters
    H_torch = np.stack([torch.cat([a.reshape(-1) for a in torch.autograd.grad(g[i], params, retain_graph=True)])
                        .numpy() for i in range(P)])

    batch = CurvatureBatch(net, loss, x, t)
    assert_close(batch.value, L.item(), 1e-12, "loss")
    assert_close(batch.grad, g.detach().numpy(), 1e-10, "gradient")
    V = rng.normal(size=(3, P))
    assert_close(batch.hvp(V), V @ H_torch, 1e-9, "HVPs")
    H, asymmetry = hessian(net, loss, x, t, return_asymmetry=True)
    assert asymmetry < 1e-12
    assert_close(H, H_torch, 1e-9, "Hessian")

    n = len(x)
    losses = {"mse": lambda zi, ti: torch.nn.functional.mse_loss(zi, ti, reduction="sum") / (n * 3),
              "cross_entropy": lambda zi, ti: torch.nn.functional.cross_entropy(zi, ti, reduction="sum") / n}[loss_name]
    tt = torch.from_numpy(t)
    G_torch = np.stack([torch.cat([a.reshape(-1) for a in torch.autograd.grad(
        n * losses(z[i:i + 1], tt[i:i + 1]), params, retain_graph=True)]).detach().numpy() for i in range(n)])
    for mode in ("layers", "vjp"):
        assert_close(per_example_gradients(net, loss, x, t, mode=mode), G_torch, 1e-10, f"per-example ({mode})")
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} changed")


def test_training_steps_follow_torch():
    """Three SGD steps in train mode: parameters and u, v as torch's after each."""
    rng = np.random.default_rng(9)
    net = Network([perturbed(SpectralNormLinear(4, 5)), Tanh(), Linear(5, 2)], rng)
    module = torch_module(net)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    loss = make_loss("cross_entropy")
    for _ in range(3):
        x, t = rng.normal(size=(6, 4)), rng.integers(0, 2, size=6)
        _, grad = net.loss_and_grad(x, t, loss)
        net.flat -= 0.5 * grad
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(module(torch.from_numpy(x)), torch.from_numpy(t)).backward()
        optimizer.step()
        state = module.state_dict()
        for name, value in net.state_dict().items():
            assert_close(value, state[torch_state_name(net, name)].numpy(), 1e-12, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_float32_keeps_its_dtype(dtype):
    net = Network([SpectralNormLinear(4, 3), Tanh()], np.random.default_rng(10), dtype)
    x = np.random.default_rng(11).normal(size=(5, 4)).astype(dtype)
    assert net.forward(x).dtype == dtype
    assert all(b.dtype == dtype for _, b in net.named_buffers())
    assert TORCH_DTYPE[dtype] == torch_module(net)[0].parametrizations.weight.original.dtype


def test_checkpoint_round_trip_keeps_u_v(tmp_path):
    """u and v are state: a network loaded from a checkpoint continues the power iteration exactly."""
    from refplastic.checkpoint import load_network, save_checkpoint

    rng = np.random.default_rng(12)
    net = Network([perturbed(SpectralNormLinear(4, 3)), Tanh()], rng)
    x = rng.normal(size=(5, 4))
    net.forward(x)
    save_checkpoint(tmp_path / "net.h5", net)
    loaded = load_network(tmp_path / "net.h5", like=net)
    for (name, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))
    np.testing.assert_array_equal(loaded.layers[0].buffers["u"], net.layers[0].buffers["u"])
