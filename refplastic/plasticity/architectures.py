"""The networks of the protocol (Lyle et al. 2023, appendix A.2), as refplastic architecture lists.

    MLP   Flatten -> Linear(D, w) -> ReLU -> Linear(w, w) -> ReLU -> Linear(w, outputs)
          (w = 512; the width sweep 16 x {1, 2, 4, 8, 12, 16})
    CNN   Conv2d(C, c, 5, stride 2, padding 2) -> ReLU -> Conv2d(c, c, 3, stride 2, padding 1) -> ReLU
          -> Flatten -> Linear(., h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, outputs)
          (c = 64, h = 256)

The paper gives the CNN's kernels, channels and widths but not its strides, padding or pooling;
stride 2 with "same" padding is this implementation's choice (docs/protocol.md): it halves the
image twice, as the strided convolutions of DQN's network do, keeping the first linear layer at
c (H/4)(W/4) inputs (64 x 8 x 8 for 32 x 32 images) instead of the 43,264 of stride 1.

Interventions that change the architecture (sec. 6.2):

- ``layernorm``: a LayerNorm after every hidden convolution and linear layer, before its ReLU,
  over all of that layer's output features (torch's ``LayerNorm([C, H, W])`` after a convolution;
  Haiku's default would normalise over channels only);
- ``spectral_norm``: the first linear (fully connected) layer spectrally normalised
  (``SpectralNormLinear``, torch's ``spectral_norm`` semantics; Gogianu et al. 2021).

The output layer has ``outputs`` units: one per action for a scalar value head, actions x bins for
the two-hot head, one per class for the memorisation task.
"""

from ..kernels.im2col import conv_output_size


def _hidden_linear(in_features, out_features, layernorm, spectral_norm=False):
    linear = {"type": "SpectralNormLinear" if spectral_norm else "Linear", "in_features": in_features,
              "out_features": out_features}
    return [linear] + ([{"type": "LayerNorm", "normalized_shape": [out_features]}] if layernorm else []) \
        + [{"type": "ReLU"}]


def mlp(input_shape, width, outputs, layernorm=False, spectral_norm=False):
    """Two hidden layers of ``width`` on flattened inputs of ``input_shape`` (C, H, W)."""
    size = 1
    for n in input_shape:
        size *= int(n)
    return ([{"type": "Flatten"}] + _hidden_linear(size, width, layernorm, spectral_norm)
            + _hidden_linear(width, width, layernorm) + [{"type": "Linear", "in_features": width,
                                                          "out_features": outputs}])


def cnn(input_shape, channels, hidden, outputs, layernorm=False, spectral_norm=False):
    """Two strided convolutions of ``channels`` then two linear layers of ``hidden`` (see above)."""
    c, h, w = (int(n) for n in input_shape)
    layers = []
    for in_channels, kernel, padding in ((c, 5, 2), (channels, 3, 1)):
        layers.append({"type": "Conv2d", "in_channels": in_channels, "out_channels": channels,
                       "kernel_size": kernel, "stride": 2, "padding": padding})
        h, w = conv_output_size(h, kernel, 2, padding), conv_output_size(w, kernel, 2, padding)
        if layernorm:
            layers.append({"type": "LayerNorm", "normalized_shape": [channels, h, w]})
        layers.append({"type": "ReLU"})
    return (layers + [{"type": "Flatten"}] + _hidden_linear(channels * h * w, hidden, layernorm, spectral_norm)
            + _hidden_linear(hidden, hidden, layernorm) + [{"type": "Linear", "in_features": hidden,
                                                            "out_features": outputs}])


def architecture(config, input_shape, outputs):
    """The architecture list of ``config`` (its arch, widths and interventions) for the data's
    ``input_shape`` (C, H, W) and ``outputs`` output units."""
    layernorm, spectral_norm = "layernorm" in config.intervention, "spectral_norm" in config.intervention
    if config.arch == "mlp":
        return mlp(input_shape, config.width, outputs, layernorm, spectral_norm)
    return cnn(input_shape, config.cnn_channels, config.cnn_hidden, outputs, layernorm, spectral_norm)
