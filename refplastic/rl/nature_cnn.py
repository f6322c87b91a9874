"""The Nature DQN network (Mnih et al. 2015) as a refplastic architecture list, and its input scaling.

    Conv2d(4, 32, 8, stride 4) -> ReLU -> Conv2d(32, 64, 4, stride 2) -> ReLU
    -> Conv2d(64, 64, 3, stride 1) -> ReLU -> Flatten -> Linear(3136, 512) -> ReLU -> Linear(512, A)

on stacks of four 84 x 84 frames (the convolutions give 20 x 20, 9 x 9 and 7 x 7 maps; 64 x 7 x 7 =
3136), no padding, one output per action.

``layernorm=True`` is the intervention of Lyle et al. (2023, A.3, "a LayerNorm after every hidden
layer"): a LayerNorm after each of the three convolutions and after the hidden Linear layer,
before its ReLU, and none after the output layer. After a convolution it normalises over all of
that layer's output features, torch's ``LayerNorm([C, H, W])`` (C H W scales and offsets), as the
protocol CNN of :mod:`refplastic.plasticity.architectures` does; after the Linear layer over its
512 features. The paper does not give the axes. DQN Zoo, the paper's base, has no LayerNorm, and
Haiku's ``hk.LayerNorm`` has no default axis (``axis`` is a required argument; dm-haiku
``haiku/_src/layer_norm.py``): on Haiku's NHWC images ``axis=-1`` would normalise each pixel
over its C channels, and ``axis=(-3, -2, -1)`` over all features as here, in either case with
scales and offsets per channel only (``param_axis=-1`` by default). All features is the
literal reading of "layer normalisation" of a layer's output (Ba et al. 2016) and the one
refplastic's protocol experiments already use, so the two experiments share one intervention.

Input: uint8 frames (B, 4, 84, 84) scaled to [0, 1] as DQN Zoo's torso does,
``x = frames.astype(dtype) / 255`` (:func:`scaled_frames`), in the network's dtype (float32 for
the agent, float64 in the tests).

Initialisation: PyTorch's defaults, which refplastic's layers draw (and CleanRL's torch network
gets): weights ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (kaiming_uniform with a = sqrt(5)) and
biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, fan_in = C kh kw for a convolution. DQN Zoo's
networks (``dqn_zoo/networks.py``, ``_dqn_default_initializer``) do *not* use Haiku's default
(a truncated normal with variance scaling) but "DQN's legacy" scheme, uniform on
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` for weights and biases: the same distribution as
PyTorch's. What differs from DQN Zoo's Double DQN is its output layer, which has one bias
shared by all actions (``linear_with_shared_bias``); here, as in torch's ``nn.Linear`` and
CleanRL, each action has its own.
"""

import numpy as np

FRAMES, HEIGHT, WIDTH = 4, 84, 84
HIDDEN = 512


def nature_cnn(num_actions, layernorm=False, frames=FRAMES):
    """The architecture list (``Network.from_architecture``) of the Nature CNN with ``num_actions``
    outputs, a LayerNorm before each hidden ReLU if ``layernorm``."""
    layers, size = [], HEIGHT
    for in_channels, out_channels, kernel, stride in ((frames, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)):
        layers.append({"type": "Conv2d", "in_channels": in_channels, "out_channels": out_channels,
                       "kernel_size": kernel, "stride": stride})
        size = (size - kernel) // stride + 1
        if layernorm:
            layers.append({"type": "LayerNorm", "normalized_shape": [out_channels, size, size]})
        layers.append({"type": "ReLU"})
    layers += [{"type": "Flatten"}, {"type": "Linear", "in_features": 64 * size * size, "out_features": HIDDEN}]
    if layernorm:
        layers.append({"type": "LayerNorm", "normalized_shape": [HIDDEN]})
    return layers + [{"type": "ReLU"}, {"type": "Linear", "in_features": HIDDEN, "out_features": num_actions}]


def scaled_frames(frames, dtype):
    """``frames.astype(dtype) / 255``: uint8 frame stacks (B, 4, 84, 84) as network inputs in [0, 1]."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    out = frames.astype(dtype)
    out /= dtype(255)
    return out
