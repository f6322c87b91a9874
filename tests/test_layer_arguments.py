"""Bad layer arguments (from a user or from a stored architecture) are one-line ValueErrors that
name the argument."""

import pytest

from refplastic.nn import (BatchNorm1d, BatchNorm2d, Flatten, LayerNorm, LeakyReLU, Linear, SpectralNormLinear,
                           build_layer)


@pytest.mark.parametrize("make,match", [
    (lambda: Linear(-3, 2), "in_features must be a positive int"),
    (lambda: Linear(3, 0), "out_features must be a positive int"),
    (lambda: Linear(3.5, 2), "in_features"),
    (lambda: Linear(True, 2), "in_features"),
    (lambda: LayerNorm(0), "normalized_shape"),
    (lambda: LayerNorm([]), "must not be empty"),
    (lambda: LayerNorm(4, eps=0.0), "eps must be a finite number > 0"),
    (lambda: LayerNorm(4, eps=float("nan")), "eps"),
    (lambda: BatchNorm1d(-1), "num_features"),
    (lambda: BatchNorm2d(3, momentum=1.5), "momentum must be a finite number >= 0 and <= 1"),
    (lambda: BatchNorm2d(3, momentum="0.1"), "momentum must be a number"),
    (lambda: BatchNorm1d(3, eps=-1e-5), "eps"),
    (lambda: Flatten(1.5), "start_dim must be an int"),
    (lambda: LeakyReLU(float("inf")), "negative_slope must be a finite number"),
    (lambda: SpectralNormLinear(0, 2), "in_features must be a positive int"),
    (lambda: SpectralNormLinear(3, 2, n_power_iterations=0), "n_power_iterations must be a positive int"),
    (lambda: SpectralNormLinear(3, 2, n_power_iterations=1.0), "n_power_iterations"),
    (lambda: SpectralNormLinear(3, 2, eps=-1.0), "eps must be a finite number > 0"),
])
def test_bad_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_stored_architectures_with_bad_arguments_name_the_layer():
    with pytest.raises(ValueError, match="Linear: in_features must be a positive int, got -3"):
        build_layer({"type": "Linear", "in_features": -3, "out_features": 2})
    assert isinstance(build_layer({"type": "BatchNorm1d", "num_features": 2, "momentum": None}), BatchNorm1d)
    assert build_layer({"type": "LayerNorm", "normalized_shape": [2, 3]}).normalized_shape == (2, 3)


def test_constructor_defaults_are_torchs():
    import inspect

    import torch

    from refplastic.nn import LAYER_TYPES

    # torch builds SpectralNormLinear as spectral_norm(nn.Linear(...), n_power_iterations, eps)
    constructors = {"SpectralNormLinear": (torch.nn.Linear.__init__, torch.nn.utils.parametrizations.spectral_norm)}
    for name, cls in LAYER_TYPES.items():
        reference = {}
        for constructor in constructors[name] if name in constructors else (getattr(torch.nn, name).__init__,):
            reference.update(inspect.signature(constructor).parameters)
        for argument, parameter in inspect.signature(cls.__init__).parameters.items():
            if argument != "self":
                assert argument in reference, (name, argument)
                assert parameter.default == reference[argument].default, (name, argument)
