"""Where each hidden unit's parameters lie: dense, convolutional and flattened units, per-unit and
shared normalisation, pooling, the architectures refused, and activities read from the caches."""

import numpy as np
import pytest

from refplastic.nn import MSELoss, Network
from refplastic.nn.layer import Layer
from refplastic.plasticity.hidden_units import (HiddenLayer, activations_from_caches, hidden_layers,
                                                reinitialise_incoming, unit_rows, zero_outgoing)

LIN = {"type": "Linear"}
RELU = {"type": "ReLU"}


def linear(i, o):
    return {**LIN, "in_features": i, "out_features": o}


def conv(i, o, k=3):
    return {"type": "Conv2d", "in_channels": i, "out_channels": o, "kernel_size": k}


def build(arch, seed=0):
    return Network.from_architecture(arch, np.random.default_rng(seed))


def test_an_mlp_has_one_hidden_layer_per_weight_layer_but_the_last():
    net = build([linear(3, 6), RELU, linear(6, 5), {"type": "Tanh"}, linear(5, 2)])
    assert hidden_layers(net) == [HiddenLayer(0, 2, 1, 6, (), 1, ()), HiddenLayer(2, 4, 3, 5, (), 1, ())]
    assert hidden_layers(build([linear(3, 2)])) == []
    assert hidden_layers(build([linear(3, 4), linear(4, 2)])) == [HiddenLayer(0, 1, 0, 4, (), 1, ())]


def test_a_cnn_with_pooling_and_flatten():
    net = build([conv(1, 3), RELU, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"}, linear(12, 2)])
    assert hidden_layers(net) == [HiddenLayer(0, 4, 1, 3, (), 4, (2, 3))]
    net.set_parameter("4.weight", np.arange(24.0).reshape(2, 12) + 1)
    zero_outgoing(net, hidden_layers(net)[0], [2])
    expected = np.arange(24.0).reshape(2, 12) + 1
    expected[:, 8:12] = 0  # channel 2 of 3: columns 8..11 of the flattened 3 x 2 x 2 maps
    np.testing.assert_array_equal(net.get_parameter("4.weight"), expected)


@pytest.mark.parametrize("norm, expected", [
    ({"type": "LayerNorm", "normalized_shape": [3, 4, 4]}, ((2, 1),)),  # per channel: weight[u] is (4, 4)
    ({"type": "LayerNorm", "normalized_shape": [4, 4]}, ()),  # shared by the channels: no unit owns it
    ({"type": "LayerNorm", "normalized_shape": [3, 4, 4], "elementwise_affine": False}, ()),
    ({"type": "BatchNorm2d", "num_features": 3}, ((2, 1),)),
])
def test_normalisation_after_a_convolution(norm, expected):
    net = build([conv(1, 3), RELU, norm, {"type": "Flatten"}, linear(48, 2)])
    layer, = hidden_layers(net)
    assert layer.norms == expected and layer.outgoing_block == 16


def test_normalisation_after_a_flatten_owns_blocks_of_entries():
    net = build([conv(1, 2), RELU, {"type": "Flatten"}, {"type": "LayerNorm", "normalized_shape": 32},
                 {"type": "BatchNorm1d", "num_features": 32}, linear(32, 2)])
    layer, = hidden_layers(net)
    assert layer.norms == ((3, 16), (4, 16)) and layer.outgoing_block == 16
    for name in ("3.weight", "3.bias", "4.weight", "4.bias"):
        net.set_parameter(name, np.full(32, 5.0))
    net.layers[4].buffers["running_mean"][...] = 5.0
    net.layers[4].buffers["running_var"][...] = 5.0
    entries = reinitialise_incoming(net, layer, [1], np.random.default_rng(0), fresh_bias=True)
    block = np.arange(32) >= 16
    for name, value in (("3.weight", 1), ("3.bias", 0), ("4.weight", 1), ("4.bias", 0)):
        np.testing.assert_array_equal(net.get_parameter(name), np.where(block, value, 5.0), err_msg=name)
    np.testing.assert_array_equal(net.layers[4].buffers["running_mean"], np.where(block, 0.0, 5.0))
    np.testing.assert_array_equal(net.layers[4].buffers["running_var"], np.where(block, 1.0, 5.0))
    assert [(i, name) for i, name, _ in entries] == [(0, "weight"), (0, "bias"), (3, "weight"), (3, "bias"),
                                                     (4, "weight"), (4, "bias")]


def test_a_layernorm_over_channels_is_reset_per_channel():
    net = build([conv(1, 3), {"type": "LayerNorm", "normalized_shape": [3, 4, 4]}, RELU, conv(3, 2)])
    layer, = hidden_layers(net)
    net.set_parameter("1.weight", np.full((3, 4, 4), 7.0))
    reinitialise_incoming(net, layer, [0, 2], np.random.default_rng(0), fresh_bias=False)
    np.testing.assert_array_equal(net.get_parameter("1.weight")[[0, 2]], 1.0)
    np.testing.assert_array_equal(net.get_parameter("1.weight")[1], 7.0)
    np.testing.assert_array_equal(net.get_parameter("0.bias")[[0, 2]], 0.0)


class Dropoutish(Layer):
    """A layer kind the unit map does not know."""

    def forward(self, x):
        return x, None


@pytest.mark.parametrize("layers, message", [
    ([conv(1, 3), RELU, linear(4, 2)], "without a Flatten"),
    ([conv(1, 3), RELU, conv(4, 2)], "does not read the 3 channels"),
    ([linear(3, 4), RELU, linear(6, 2)], "not a multiple of the 4 units"),
    ([conv(1, 3), RELU, {"type": "Flatten"}, linear(50, 2)], "not a multiple"),
    ([linear(3, 4), {"type": "LayerNorm", "normalized_shape": 8}, linear(4, 2)], "does not normalise 4 units"),
    ([linear(3, 4), {"type": "BatchNorm1d", "num_features": 8}, linear(4, 2)], "does not normalise the 4 units"),
    ([linear(3, 4), {"type": "BatchNorm2d", "num_features": 4}, linear(4, 2)], "does not normalise the 4 units"),
    ([linear(3, 4), {"type": "MaxPool2d", "kernel_size": 2}, linear(4, 2)], "MaxPool2d needs images"),
    ([conv(1, 3), {"type": "Flatten", "start_dim": 2}, linear(4, 2)], "only Flatten"),
    ([conv(1, 2), {"type": "Flatten"}, {"type": "LayerNorm", "normalized_shape": 32}, linear(48, 2)],
     "24 entries per unit where an earlier layer had 16"),
])
def test_architectures_that_do_not_fit_are_refused(layers, message):
    with pytest.raises(ValueError, match=message):
        hidden_layers(build(layers))


def test_an_unknown_layer_between_weight_layers_is_refused():
    net = build([linear(3, 4), linear(4, 2)])
    net.layers.insert(1, Dropoutish())
    with pytest.raises(ValueError, match="Dropoutish between weight layers 0 and 2"):
        hidden_layers(net)


def test_activities_from_the_training_steps_caches_are_the_layer_outputs():
    net = build([conv(1, 3), RELU, {"type": "Flatten"}, linear(48, 5), {"type": "LayerNorm", "normalized_shape": 5},
                 {"type": "GELU"}, linear(5, 2)])
    x = np.random.default_rng(1).standard_normal((4, 1, 6, 6))
    _, caches = net.forward_cached(x)
    outputs = net.layer_outputs(x)
    got = activations_from_caches(net, caches)
    assert len(got) == 2
    np.testing.assert_array_equal(got[0], outputs[1])
    np.testing.assert_array_equal(got[1], outputs[5])
    net.loss_and_grad(x, np.zeros((4, 2)), MSELoss())  # the same caches a training step builds
    without = build([linear(3, 4), linear(4, 2)])
    with pytest.raises(ValueError, match="no elementwise activation"):
        activations_from_caches(without, without.forward_cached(np.ones((2, 3)))[1])


def test_unit_rows():
    np.testing.assert_array_equal(unit_rows([2, 0], 3, 3), [2, 0])
    np.testing.assert_array_equal(unit_rows([2, 0], 3, 12), [8, 9, 10, 11, 0, 1, 2, 3])
