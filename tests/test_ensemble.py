"""Ensemble: E networks with a leading ensemble axis on parameters and data.

Each member must give exactly what a lone network gives (bit for bit), one optimizer over the
stacked parameters must be E optimizers, and the whole must match torch's own ensembling
(``torch.func.stack_module_state`` + ``vmap`` over ``functional_call``) in float64 and float32.
"""

import numpy as np
import pytest
import torch
from oracle import RTOL, TORCH_DTYPE, assert_close, torch_module, torch_state_name

from refplastic.nn import LAYER_TYPES, Ensemble, Network, make_loss, make_optimizer

MLP = [{"type": "Linear", "in_features": 6, "out_features": 8}, {"type": "ReLU"},
       {"type": "Linear", "in_features": 8, "out_features": 8}, {"type": "ReLU"},
       {"type": "Linear", "in_features": 8, "out_features": 3}]
LAYERNORM = [{"type": "Linear", "in_features": 6, "out_features": 8}, {"type": "LayerNorm", "normalized_shape": 8},
             {"type": "Tanh"}, {"type": "Linear", "in_features": 8, "out_features": 3}]
CNN = [{"type": "Conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1},
       {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"},
       {"type": "Linear", "in_features": 12, "out_features": 4}]
STRIDED = [{"type": "Conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 5, "stride": 2, "padding": 2},
           {"type": "ReLU"},  # im2col, then space-to-depth (a 4x4 kernel, stride 2)
           {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 4, "stride": 2, "padding": 1},
           {"type": "GELU"}, {"type": "Flatten"}, {"type": "Linear", "in_features": 24, "out_features": 4}]
CNN_LAYERNORM = [{"type": "Conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1},
                 {"type": "LayerNorm", "normalized_shape": [3, 4, 5]},  # on batch-last memory: the column kernels
                 {"type": "ReLU"}, {"type": "Flatten"}, {"type": "Linear", "in_features": 60, "out_features": 4}]
BATCHNORM = [{"type": "Linear", "in_features": 6, "out_features": 5}, {"type": "BatchNorm1d", "num_features": 5},
             {"type": "ReLU"}, {"type": "Linear", "in_features": 5, "out_features": 3}]
SPECTRALNORM = [{"type": "SpectralNormLinear", "in_features": 6, "out_features": 5}, {"type": "ReLU"},
                {"type": "Linear", "in_features": 5, "out_features": 3}]
ARCHITECTURES = {"mlp": (MLP, (6,)), "layernorm": (LAYERNORM, (6,)), "cnn": (CNN, (2, 7, 9)),
                 "strided": (STRIDED, (2, 12, 10)), "cnn-layernorm": (CNN_LAYERNORM, (2, 7, 9)), "batchnorm": (BATCHNORM, (6,)), "spectralnorm": (SPECTRALNORM, (6,))}
CLASSES = {"mlp": 3, "layernorm": 3, "cnn": 4, "strided": 4, "cnn-layernorm": 4, "batchnorm": 3, "spectralnorm": 3}
E, N = 3, 5


def batch(rng, input_shape, classes, dtype=np.float64, size=E):
    """Inputs (E, N, ...) and class labels (E, N): a different batch for every member."""
    return rng.normal(size=(size, N, *input_shape)).astype(dtype), rng.integers(0, classes, size=(size, N))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_members_are_initialised_as_lone_networks_drawn_in_turn(name):
    arch, _ = ARCHITECTURES[name]
    ens = Ensemble.from_architecture(arch, E, np.random.default_rng(4))
    rng = np.random.default_rng(4)
    for e in range(E):
        np.testing.assert_array_equal(ens.flat[e], Network.from_architecture(arch, rng).flat)
    assert not np.array_equal(ens.flat[0], ens.flat[1])


@pytest.mark.parametrize("size", [1, 10])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_rows_are_the_gradients_of_lone_networks(name, dtype, size):
    """Bit for bit: the batched maps make the same BLAS calls and the same reductions per member."""
    arch, input_shape = ARCHITECTURES[name]
    ens = Ensemble.from_architecture(arch, size, np.random.default_rng(0), dtype)
    lone = [member.copy() for member in ens.members]
    x, t = batch(np.random.default_rng(1), input_shape, CLASSES[name], dtype, size)
    loss = make_loss("cross_entropy")
    losses, grad = ens.loss_and_grad(x, t, loss)
    assert losses.shape == (size,) and grad is ens.grad and grad.shape == (size, ens.num_parameters)
    outputs = ens.forward(x)  # in training mode, a second update of BatchNorm's running statistics (or of u, v)
    for e, net in enumerate(lone):
        value, g = net.loss_and_grad(x[e], t[e], loss)
        assert losses[e] == value
        np.testing.assert_array_equal(grad[e], g)
        np.testing.assert_array_equal(outputs[e], net.forward(x[e]))
        for key, buffer in net.state_dict().items():  # running statistics stay each member's own
            np.testing.assert_array_equal(ens.state_dict()[key][e], buffer)


# Every layer type, alone: (description, a member's input shape). Inputs of more than two axes for
# Linear and the activations, BatchNorm1d on (N, C, L) with a cumulative average (momentum None).
LAYER_CASES = {
    "Linear": ({"in_features": 4, "out_features": 3}, (5, 2, 4)),
    "Conv2d": ({"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1}, (4, 2, 5, 6)),
    "MaxPool2d": ({"kernel_size": 3, "stride": 2, "padding": 1}, (4, 2, 7, 6)),
    "Flatten": ({"start_dim": 2}, (4, 2, 3, 5)),
    "ReLU": ({}, (5, 2, 3)),
    "LeakyReLU": ({"negative_slope": 0.2}, (5, 4)),
    "Tanh": ({}, (5, 4)),
    "Sigmoid": ({}, (5, 4)),
    "GELU": ({"approximate": "tanh"}, (5, 4)),
    "Identity": ({}, (5, 4)),
    "LayerNorm": ({"normalized_shape": [3, 4]}, (5, 3, 4)),
    "BatchNorm1d": ({"num_features": 3, "momentum": None}, (5, 3, 4)),
    "BatchNorm2d": ({"num_features": 2}, (4, 2, 3, 3)),
    "SpectralNormLinear": ({"in_features": 4, "out_features": 3}, (5, 4)),
}


def test_every_layer_type_has_a_case():
    assert sorted(LAYER_CASES) == sorted(LAYER_TYPES)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", LAYER_CASES)
def test_each_layers_ensemble_maps_are_its_maps_member_by_member(kind, dtype, training):
    """``ensemble_forward`` and ``ensemble_backward`` of a stacked layer against the lone layer's
    ``forward`` and ``backward`` for each member: outputs, input and parameter gradients, and
    buffers, bit for bit. Members have seen different numbers of batches before (own running
    statistics and counts)."""
    spec, input_shape = LAYER_CASES[kind]
    rng = np.random.default_rng(11)
    nets = [Network.from_architecture([{"type": kind, **spec}], rng, dtype) for _ in range(E)]
    for e, net in enumerate(nets):
        for _ in range(e):
            net.forward(rng.normal(size=input_shape))
        net.flat[...] = rng.normal(size=net.flat.shape)  # gamma and beta away from 1 and 0 too
    ens = Ensemble(nets).train(training)
    lone = [member.copy() for member in ens.members]
    x = rng.normal(size=(E, *input_shape)).astype(dtype)
    layer = ens.layers[0]
    y, cache = layer.ensemble_forward(x)
    gy = rng.normal(size=y.shape).astype(dtype)
    grads = {name: np.zeros_like(p) for name, p in layer.params.items()}
    gx = layer.ensemble_backward(cache, gy, grads)
    assert y.shape[0] == gx.shape[0] == E and gx.shape == x.shape
    for e, net in enumerate(lone):
        lone_layer = net.layers[0]
        ye, cache_e = lone_layer.forward(x[e])
        grads_e = {name: np.zeros_like(p) for name, p in lone_layer.params.items()}
        np.testing.assert_array_equal(y[e], ye)
        np.testing.assert_array_equal(gx[e], lone_layer.backward(cache_e, gy[e], grads_e))
        for name, g in grads_e.items():
            np.testing.assert_array_equal(grads[name][e], g)
        for key, value in net.state_dict().items():
            np.testing.assert_array_equal(ens.state_dict()[key][e], value)
            np.testing.assert_array_equal(ens.members[e].state_dict()[key], value)


def test_members_must_share_the_mode():
    arch, _ = ARCHITECTURES["batchnorm"]
    nets = [Network.from_architecture(arch, np.random.default_rng(0)) for _ in range(2)]
    nets[1].eval()
    with pytest.raises(ValueError, match="differs from member 0 in architecture, dtype or mode"):
        Ensemble(nets)
    ens = Ensemble([nets[1], nets[1]])
    assert not ens.training and not ens.members[1].training
    ens.train()
    assert ens.training and all(member.training for member in ens.members)


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
    with pytest.raises(ValueError, match="expects ensemble input of shape"):
        Ensemble.from_architecture(CNN, E, np.random.default_rng(0)).layers[2].ensemble_forward(np.zeros((E, 3, 2, 2)))
    with pytest.raises(ValueError, match="differs from member 0"):
        Ensemble([ens.members[0], Network.from_architecture(arch, np.random.default_rng(0), np.float32)])
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="ensemble size"):
            Ensemble.from_architecture(arch, size, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one network"):
        Ensemble([])
    with pytest.raises(ValueError, match="flat must be a writeable float64 array"):
        Network.from_architecture(arch, np.random.default_rng(0)).bind_storage(np.zeros(3), np.zeros(3))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["mlp", "cnn", "strided", "layernorm"])
def test_one_batch_shared_by_every_member_is_computed_once_and_right(name, dtype):
    """Inputs broadcast over the members (as the probe copies read one minibatch): the first layer
    computes all members in one product (and Conv2d lowers the images once); outputs and gradients
    equal the lone networks' to 1e-12 (float64) or 1e-5 (float32)."""
    arch, input_shape = ARCHITECTURES[name]
    ens = Ensemble.from_architecture(arch, 4, np.random.default_rng(0), dtype)
    lone = [member.copy() for member in ens.members]
    x1, t = batch(np.random.default_rng(1), input_shape, CLASSES[name], dtype, size=4)
    x = np.broadcast_to(x1[0], (4, *x1.shape[1:]))
    losses, grad = ens.loss_and_grad(x, t, make_loss("cross_entropy"))
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for e, net in enumerate(lone):
        value, g = net.loss_and_grad(x1[0], t[e], make_loss("cross_entropy"))
        np.testing.assert_allclose(losses[e], value, rtol=tolerance)
        np.testing.assert_allclose(grad[e], g, rtol=tolerance, atol=tolerance * np.abs(g).max())
