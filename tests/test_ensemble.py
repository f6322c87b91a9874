"""Ensemble: E networks with a leading ensemble axis on parameters and data.

Each member must give exactly what a lone network gives (bit for bit), one optimizer over the
stacked parameters must be E optimizers, and the whole must match torch's own ensembling
(``torch.func.stack_module_state`` + ``vmap`` over ``functional_call``) in float64 and float32.
"""

import numpy as np
import pytest
import torch
from oracle import RTOL, TORCH_DTYPE, assert_close, torch_module, torch_state_name

from refplastic.nn import Ensemble, Network, make_loss, make_optimizer

MLP = [{"type": "Linear", "in_features": 6, "out_features": 8}, {"type": "LayerNorm", "normalized_shape": 8},
       {"type": "Tanh"}, {"type": "Linear", "in_features": 8, "out_features": 3}]
CNN = [{"type": "Conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1},
       {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"},
       {"type": "Linear", "in_features": 12, "out_features": 4}]
BATCHNORM = [{"type": "Linear", "in_features": 6, "out_features": 5}, {"type": "BatchNorm1d", "num_features": 5},
             {"type": "ReLU"}, {"type": "Linear", "in_features": 5, "out_features": 3}]
SPECTRALNORM = [{"type": "SpectralNormLinear", "in_features": 6, "out_features": 5}, {"type": "ReLU"},
                {"type": "Linear", "in_features": 5, "out_features": 3}]
ARCHITECTURES = {"mlp": (MLP, (6,)), "cnn": (CNN, (2, 7, 9)), "batchnorm": (BATCHNORM, (6,)),
                 "spectralnorm": (SPECTRALNORM, (6,))}
CLASSES = {"mlp": 3, "cnn": 4, "batchnorm": 3, "spectralnorm": 3}
E, N = 3, 5


def batch(rng, input_shape, classes, dtype=np.float64):
    """Inputs (E, N, ...) and class labels (E, N): a different batch for every member."""
    return rng.normal(size=(E, N, *input_shape)).astype(dtype), rng.integers(0, classes, size=(E, N))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_members_are_initialised_as_lone_networks_drawn_in_turn(name):
    arch, _ = ARCHITECTURES[name]
    ens = Ensemble.from_architecture(arch, E, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    for e in range(E):
        np.testing.assert_array_equal(ens.flat[e], Network.from_architecture(arch, rng).flat)
    assert not np.array_equal(ens.flat[0], ens.flat[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_rows_are_the_gradients_of_lone_networks(name, dtype):
    arch, input_shape = ARCHITECTURES[name]
    ens = Ensemble.from_architecture(arch, E, np.random.default_rng(0), dtype)
    lone = [member.copy() for member in ens.members]
    x, t = batch(np.random.default_rng(1), input_shape, CLASSES[name], dtype)
    loss = make_loss("cross_entropy")
    losses, grad = ens.loss_and_grad(x, t, loss)
    assert losses.shape == (E,) and grad is ens.grad and grad.shape == (E, ens.num_parameters)
    outputs = ens.forward(x)  # in training mode, a second update of BatchNorm's running statistics (or of u, v)
    for e, net in enumerate(lone):
        value, g = net.loss_and_grad(x[e], t[e], loss)
        assert losses[e] == value
        np.testing.assert_array_equal(grad[e], g)
        np.testing.assert_array_equal(outputs[e], net.forward(x[e]))
        for key, buffer in net.state_dict().items():  # running statistics stay each member's own
            np.testing.assert_array_equal(ens.state_dict()[key][e], buffer)


@pytest.mark.parametrize("optimizer,hyper", [("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
                                             ("adam", {"lr": 0.01, "weight_decay": 0.1}),
                                             ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.5})])
def test_one_optimizer_over_the_stack_is_one_optimizer_per_member(optimizer, hyper):
    arch, input_shape = ARCHITECTURES["mlp"]
    ens = Ensemble.from_architecture(arch, E, np.random.default_rng(2))
    lone = [member.copy() for member in ens.members]
    opt = make_optimizer(optimizer, ens.flat.reshape(-1), **hyper)
    lone_opts = [make_optimizer(optimizer, net.flat, **hyper) for net in lone]
    rng, loss = np.random.default_rng(3), make_loss("cross_entropy")
    for _ in range(4):
        x, t = batch(rng, input_shape, 3)
        opt.step(ens.loss_and_grad(x, t, loss)[1].reshape(-1))
        for e, (net, lone_opt) in enumerate(zip(lone, lone_opts)):
            net.loss_and_grad(x[e], t[e], loss)
            lone_opt.step(net.grad)
    for e, net in enumerate(lone):
        np.testing.assert_array_equal(ens.flat[e], net.flat)
        np.testing.assert_array_equal(ens.members[e].flat, net.flat)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_against_torch_vmap_over_stacked_modules(name, dtype):
    arch, input_shape = ARCHITECTURES[name]
    ens = Ensemble.from_architecture(arch, E, np.random.default_rng(5), dtype)
    if name == "batchnorm":  # torch's vmap cannot update running statistics in place: eval mode
        ens.eval()
        for member in ens.members:
            member.layers[1].buffers["running_var"][...] = np.random.default_rng(10).uniform(0.5, 2.0, 5)
    if name == "spectralnorm":  # nor u and v (no batching rule for normalize's out=): eval mode
        ens.eval()
    x, t = batch(np.random.default_rng(6), input_shape, CLASSES[name], dtype)
    losses, grad = ens.loss_and_grad(x, t, make_loss("cross_entropy"))

    modules = [torch_module(member) for member in ens.members]
    params, buffers = torch.func.stack_module_state(modules)
    torch_name = {key: torch_state_name(ens.members[0], key) for key in ens.state_dict()}
    assert sorted(params | buffers) == sorted(torch_name.values())
    for key, value in ens.state_dict().items():
        np.testing.assert_array_equal(value, (params | buffers)[torch_name[key]].detach().numpy())

    def member_loss(p, b, xe, te):
        z = torch.func.functional_call(modules[0], (p, b), (xe,))
        return torch.nn.functional.cross_entropy(z, te)

    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    torch_losses = torch.vmap(member_loss)(params, buffers, xt, tt)
    torch_grads = torch.vmap(torch.func.grad(member_loss))(params, buffers, xt, tt)
    assert_close(losses, torch_losses.detach().numpy(), RTOL[dtype], "losses")
    views = ens.members[0].unflatten(grad)  # (E, *shape) views of the stacked gradient, layer by layer
    named = {torch_name[f"{i}.{k}"]: v for i, layer in enumerate(views) for k, v in layer.items()}
    assert list(named) == list(torch_grads)
    for key, value in named.items():
        assert_close(value, torch_grads[key].detach().numpy(), RTOL[dtype], key)
    z = torch.vmap(lambda p, b, xe: torch.func.functional_call(modules[0], (p, b), (xe,)))(params, buffers, xt)
    assert z.dtype == TORCH_DTYPE[dtype]
    assert_close(ens.forward(x), z.detach().numpy(), RTOL[dtype], "outputs")


def test_copies_train_apart_and_state_round_trips():
    arch, input_shape = ARCHITECTURES["batchnorm"]
    net = Network.from_architecture(arch, np.random.default_rng(7))
    ens = Ensemble.copies(net, E)
    assert all(np.array_equal(row, net.flat) for row in ens.flat)
    net.flat[0] += 1.0  # the copies are the ensemble's own
    assert ens.flat[0, 0] != net.flat[0]
    x, t = batch(np.random.default_rng(8), input_shape, 3)
    _, grad = ens.loss_and_grad(x, t, make_loss("cross_entropy"))
    ens.flat -= 0.1 * grad
    assert not np.array_equal(ens.flat[0], ens.flat[1])
    other = Ensemble.copies(Network.from_architecture(arch, np.random.default_rng(9)), E)
    other.load_state_dict(ens.state_dict())
    np.testing.assert_array_equal(other.flat, ens.flat)
    other.eval(), ens.eval()
    np.testing.assert_array_equal(other.forward(x), ens.forward(x))
    copied = ens.copy()
    copied.flat += 1.0
    assert not np.array_equal(copied.flat, ens.flat)


def test_bad_ensembles_and_batches_are_clear_errors():
    arch, input_shape = ARCHITECTURES["mlp"]
    ens = Ensemble.from_architecture(arch, E, np.random.default_rng(0))
    x, t = batch(np.random.default_rng(1), input_shape, 3)
    with pytest.raises(ValueError, match="leading ensemble axis of size 3"):
        ens.forward(x[:2])
    with pytest.raises(ValueError, match="targets must have a leading ensemble axis"):
        ens.loss_and_grad(x, t[0], make_loss("cross_entropy"))
    with pytest.raises(ValueError, match="differs from member 0"):
        Ensemble([ens.members[0], Network.from_architecture(ARCHITECTURES["batchnorm"][0], np.random.default_rng(0))])
    with pytest.raises(ValueError, match="differs from member 0"):
        Ensemble([ens.members[0], Network.from_architecture(arch, np.random.default_rng(0), np.float32)])
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="ensemble size"):
            Ensemble.from_architecture(arch, size, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one network"):
        Ensemble([])
    with pytest.raises(ValueError, match="flat must be a writeable float64 array"):
        Network.from_architecture(arch, np.random.default_rng(0)).bind_storage(np.zeros(3), np.zeros(3))
