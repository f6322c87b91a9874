"""LayerNorm, BatchNorm1d and BatchNorm2d: every map against torch and finite differences, and
BatchNorm's running statistics against torch's."""

import numpy as np
import pytest
import torch
from oracle import TORCH_DTYPE, assert_close, check_layer

from refplastic.nn import Network
from refplastic.nn.batchnorm import BatchNorm1d, BatchNorm2d
from refplastic.nn.layernorm import LayerNorm

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-10, np.float32: 1e-5}


def warmup_input(rng, shape):
    """A batch whose channels (axis 1) have means and spreads far from 0 and 1."""
    spread = (1,) + (-1,) + (1,) * (len(shape) - 2)
    c = shape[1]
    return (rng.normal(size=shape) * np.linspace(0.5, 3, c).reshape(spread) + np.arange(c).reshape(spread) - 1)


def with_state(layer, warmup_shape=None, warmup_batches=3):
    """``layer``, starting from non-trivial parameters instead of ones and zeros, and from running
    statistics after ``warmup_batches`` train-mode forwards on ``warmup_shape`` inputs.

    ``check_layer`` builds a Network, which resets parameters and buffers; so this replaces the
    layer's own reset methods with ones that follow the defaults by a perturbation or a warm-up.
    """
    cls = type(layer)

    def reset_parameters(rng):
        cls.reset_parameters(layer, rng)
        for p in layer.params.values():
            p += rng.normal(scale=0.5, size=p.shape)

    def reset_buffers():
        cls.reset_buffers(layer)
        if warmup_shape is not None:
            training, layer.training = layer.training, True
            rng = np.random.default_rng(123)
            for _ in range(warmup_batches):
                layer.forward(warmup_input(rng, warmup_shape).astype(layer.buffers["running_mean"].dtype))
            layer.training = training

    layer.reset_parameters = reset_parameters
    layer.reset_buffers = reset_buffers
    return layer


# ---- LayerNorm ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("normalized_shape,x_shape", [(4, (3, 5, 4)), ([3, 4], (2, 3, 4)), ((2, 3), (4, 2, 3))])
@pytest.mark.parametrize("bias", [True, False])
def test_layernorm(normalized_shape, x_shape, bias, input_grad, dtype):
    layer = with_state(LayerNorm(normalized_shape, eps=1e-3, bias=bias))
    check_layer(layer, x_shape, np.random.default_rng(0), dtype, input_grad=input_grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalized_shape,x_shape", [((3, 4, 5), (6, 3, 4, 5)), (7, (5, 7)), ((3, 4, 5), (1, 3, 4, 5))])
@pytest.mark.parametrize("affine,bias,input_grad", [(True, True, True), (True, True, False), (True, False, True),
                                                    (False, False, True)])  # without parameters, an input to differentiate
def test_layernorm_of_batch_last_inputs(normalized_shape, x_shape, affine, bias, input_grad, dtype):
    """A convolution's output is an (N, C, H, W) view of (C, H, W, N) memory: LayerNorm's forward
    and backward maps then run as the kernels of refplastic.kernels.layernorm."""
    layer = with_state(LayerNorm(normalized_shape, eps=1e-3, elementwise_affine=affine, bias=bias))
    check_layer(layer, x_shape, np.random.default_rng(1), dtype, input_grad=input_grad, batch_last=True)


def test_layernorm_keeps_a_batch_last_layout_and_matches_the_numpy_maps():
    from refplastic.nn.normalization import Normalization

    rng = np.random.default_rng(4)
    net = Network([with_state(LayerNorm((3, 4, 5)))], rng, np.float32)
    layer = net.layers[0]
    x = rng.normal(size=(3, 4, 5, 8)).astype(np.float32).transpose(3, 0, 1, 2)
    y, cache = layer.forward(x)
    assert y.transpose(1, 2, 3, 0).flags.c_contiguous and cache.xhat.transpose(1, 2, 3, 0).flags.c_contiguous
    y_numpy, cache_numpy = Normalization.forward(layer, x)
    np.testing.assert_allclose(y, y_numpy, rtol=2e-6, atol=2e-6)
    gy = rng.normal(size=x.shape).astype(np.float32)  # C-contiguous: taken in the cache's layout
    grads = {k: np.empty_like(v) for k, v in layer.params.items()}
    grads_numpy = {k: np.empty_like(v) for k, v in layer.params.items()}
    gx = layer.backward(cache, gy, grads)
    np.testing.assert_allclose(gx, Normalization.backward(layer, cache_numpy, gy, grads_numpy), rtol=1e-4, atol=1e-5)
    assert gx.dtype == np.float32 and gx.transpose(1, 2, 3, 0).flags.c_contiguous
    for k in grads:
        np.testing.assert_allclose(grads[k], grads_numpy[k], rtol=1e-4, atol=1e-4)
    gy64 = gy.astype(np.float64)  # another dtype: NumPy's maps, which promote
    assert layer.backward(cache, gy64, None).dtype == np.float64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalized_shape,x_shape", [(5, (3, 5)), ((3, 4), (2, 2, 3, 4))])
def test_layernorm_without_affine(normalized_shape, x_shape, dtype):
    # no parameters: only the input maps exist (the oracle needs an input to differentiate)
    layer = LayerNorm(normalized_shape, elementwise_affine=False)
    assert layer.param_shapes == {}
    check_layer(layer, x_shape, np.random.default_rng(1), dtype)


def test_layernorm_config():
    assert LayerNorm(4).config() == {"normalized_shape": [4], "eps": 1e-5, "elementwise_affine": True,
                                     "bias": True}
    assert LayerNorm((2, 3), bias=False).param_shapes == {"weight": (2, 3)}


def test_layernorm_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"ending in shape \(3, 4\)"):
        LayerNorm([3, 4]).forward(np.zeros((2, 4, 3)))


# ---- BatchNorm: the four maps -------------------------------------------------------------------

BATCHNORMS = [(BatchNorm1d, (6, 3)), (BatchNorm1d, (4, 3, 5)), (BatchNorm2d, (3, 2, 3, 4))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_grad", [True, False])
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,x_shape", BATCHNORMS, ids=lambda a: getattr(a, "__name__", str(a)))
def test_batchnorm(cls, x_shape, training, momentum, input_grad, dtype):
    layer = with_state(cls(x_shape[1], momentum=momentum), warmup_shape=x_shape)
    layer.training = training
    check_layer(layer, x_shape, np.random.default_rng(2), dtype, input_grad=input_grad)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,x_shape", BATCHNORMS, ids=lambda a: getattr(a, "__name__", str(a)))
def test_batchnorm_without_running_stats(cls, x_shape, training, dtype):
    layer = with_state(cls(x_shape[1], eps=1e-3, track_running_stats=False))
    layer.training = training
    check_layer(layer, x_shape, np.random.default_rng(3), dtype)
    assert layer.buffers == {}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls,x_shape", BATCHNORMS, ids=lambda a: getattr(a, "__name__", str(a)))
def test_batchnorm_without_affine(cls, x_shape, training):
    layer = with_state(cls(x_shape[1], affine=False), warmup_shape=x_shape)
    layer.training = training
    assert layer.param_shapes == {}
    check_layer(layer, x_shape, np.random.default_rng(4))


# ---- BatchNorm: running statistics --------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("cls,x_shape", BATCHNORMS, ids=lambda a: getattr(a, "__name__", str(a)))
def test_running_stats_follow_torch(cls, x_shape, momentum, dtype):
    rng = np.random.default_rng(5)
    net = Network([cls(x_shape[1], momentum=momentum)], rng, dtype)
    module = getattr(torch.nn, cls.__name__)(x_shape[1], momentum=momentum).to(TORCH_DTYPE[dtype])
    for _ in range(5):
        x = warmup_input(rng, x_shape).astype(dtype)
        assert_close(net.forward(x), module(torch.from_numpy(x)).detach().numpy(), RTOL[dtype], "train forward")
    state = module.state_dict()
    for name, buf in net.named_buffers():
        name = name.split(".", 1)[1]
        assert buf.dtype == state[name].numpy().dtype, name
        assert_close(buf, state[name].numpy(), RTOL[dtype], name)
    assert int(net.layers[0].buffers["num_batches_tracked"]) == 5

    net.eval(), module.eval()
    before = net.state_dict()
    x = warmup_input(rng, x_shape).astype(dtype)
    assert_close(net.forward(x), module(torch.from_numpy(x)).detach().numpy(), RTOL[dtype], "eval forward")
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=f"{name} changed in eval mode")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_only_forward_touches_buffers(training):
    rng = np.random.default_rng(6)
    net = Network([BatchNorm2d(3)], rng).train(training)
    layer = net.layers[0]
    x = rng.normal(size=(2, 3, 2, 2))
    _, caches = net.forward_cached(x)
    before = {k: b.copy() for k, b in layer.buffers.items()}
    gy = rng.normal(size=x.shape)
    layer.backward(caches[0], gy, net.unflatten(net.grad)[0])
    ry, rcache = layer.forward_r(caches[0], rng.normal(size=(2, *x.shape)), net.unflatten(rng.normal(size=(2, 6)))[0])
    layer.backward_r(caches[0], rcache, gy, ry, net.unflatten(np.empty((2, 6)))[0])
    for k, b in layer.buffers.items():
        np.testing.assert_array_equal(b, before[k], err_msg=k)


def test_reset_buffers():
    rng = np.random.default_rng(7)
    layer = Network([BatchNorm1d(3)], rng).layers[0]
    layer.forward(warmup_input(rng, (5, 3)))
    layer.reset_buffers()
    np.testing.assert_array_equal(layer.buffers["running_mean"], 0)
    np.testing.assert_array_equal(layer.buffers["running_var"], 1)
    assert layer.buffers["num_batches_tracked"] == 0 and layer.buffers["num_batches_tracked"].dtype == np.int64


# ---- BatchNorm: errors --------------------------------------------------------------------------

@pytest.mark.parametrize("layer,shape,match", [
    (BatchNorm1d(3), (2, 3, 4, 5), "2 or 3-dimensional"),
    (BatchNorm1d(3), (3,), "2 or 3-dimensional"),
    (BatchNorm2d(3), (2, 3, 4), "4-dimensional"),
    (BatchNorm1d(3), (4, 2), "expects 3 channels"),
    (BatchNorm2d(3), (2, 4, 2, 2), "expects 3 channels"),
    (BatchNorm1d(3), (1, 3), "more than 1 value per channel"),
    (BatchNorm2d(3), (1, 3, 1, 1), "more than 1 value per channel"),
], ids=str)
def test_batchnorm_rejects_bad_inputs(layer, shape, match):
    Network([layer], np.random.default_rng(8))
    with pytest.raises(ValueError, match=match):
        layer.forward(np.zeros(shape))


def test_single_value_per_channel():
    # fine in eval mode with running statistics; an error whenever batch statistics are needed
    x = np.ones((1, 3))
    tracked = Network([BatchNorm1d(3)], np.random.default_rng(9)).eval()
    np.testing.assert_allclose(tracked.forward(x), 1 / np.sqrt(1 + 1e-5))
    untracked = Network([BatchNorm1d(3, track_running_stats=False)], np.random.default_rng(9)).eval()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        untracked.forward(x)


def test_layernorm_of_an_empty_batch_in_either_layout():
    net = Network([LayerNorm((3, 4, 5))], np.random.default_rng(0), np.float32)
    layer = net.layers[0]
    for x in (np.zeros((0, 3, 4, 5), np.float32), np.zeros((3, 4, 5, 0), np.float32).transpose(3, 0, 1, 2)):
        y, cache = layer.forward(x)
        grads = {k: np.full_like(v, np.nan) for k, v in layer.params.items()}
        gx = layer.backward(cache, y, grads)
        assert y.shape == gx.shape == (0, 3, 4, 5)
        assert all(np.array_equal(g, np.zeros_like(g)) for g in grads.values())
