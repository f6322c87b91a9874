"""Linear, Flatten and the activations: every map against torch and finite differences."""

import numpy as np
import pytest
from oracle import check_layer

from refplastic.nn import GELU, Flatten, Identity, LeakyReLU, Linear, MSELoss, Network, ReLU, Sigmoid, Tanh

DTYPES = [np.float64, np.float32]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,bias", [((5, 3, 4), True), ((1, 7, 2), False), ((4, 2, 6, 3), True)])
def test_linear(shape, bias, dtype):
    *lead, fin, fout = shape
    check_layer(Linear(fin, fout, bias=bias), (*lead, fin), np.random.default_rng(0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(), LeakyReLU(0.2), Tanh(), Sigmoid(), GELU(), GELU("tanh"), Identity()],
                         ids=repr)
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4, 4)])
def test_activation(layer, shape, dtype):
    check_layer(layer, shape, np.random.default_rng(1), dtype)


@pytest.mark.parametrize("start,end", [(1, -1), (0, -1), (2, 3), (1, 2)])
def test_flatten(start, end):
    check_layer(Flatten(start, end), (2, 3, 4, 5), np.random.default_rng(2))


def test_sigmoid_is_stable_far_from_zero():
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, _ = Sigmoid().forward(x)
    assert y[0] == 0.0 and y[-1] == 1.0
    assert abs(y[1] / np.exp(-40.0) - 1) < 1e-14


def test_linear_rejects_wrong_width():
    net_layer = Linear(3, 2)
    with pytest.raises(ValueError, match="last dimension 3"):
        net_layer.forward(np.zeros((4, 5)))


@pytest.mark.parametrize("layer", [ReLU(), LeakyReLU(), Tanh(), Sigmoid(), GELU(), GELU("tanh"), Identity()], ids=repr)
def test_activation_keeps_float32(layer):
    net = Network([Linear(4, 3), layer], np.random.default_rng(0), np.float32)
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    outs = net.layer_outputs(x)
    assert all(o.dtype == np.float32 for o in outs)
    net.loss_and_grad(x, np.zeros((5, 3), np.float32), MSELoss())
    assert net.grad.dtype == np.float32
