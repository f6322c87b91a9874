"""Pre-activation statistics: the outputs of Linear, SpectralNormLinear and Conv2d layers, per unit.

``z`` is (N, C) or (N, C, H, W), a unit being a feature or a channel (axis 1) with the
N x positions samples of :func:`refplastic.stats.units.unit_samples`. Per unit i:

    mean_i  = E z_i,   std_i = sqrt(E (z_i - mean_i)^2)    (population std, ddof = 0)
    one-sided: z_i > 0 on every sample, or z_i < 0 on every sample

The shift from initialisation (Lyle et al. 2024, who find that pre-activation distributions
drift during training and that normalisation keeps them in place) compares the same units on
the same batch under the current and the initial parameters:

    mean shift of unit i = |mean_i - mean0_i|,   std shift of unit i = |std_i - std0_i|

(a layer's statistic is the mean over its units, as for every per-unit statistic).

A ReLU whose pre-activation is one-sided is dead (always < 0) or linearised (always > 0).
"""

import numpy as np

from .units import unit_samples


def unit_moments(z):
    """``(mean, std)`` per unit, each of shape (C,), computed in float64."""
    samples = unit_samples(z).astype(np.float64)
    return samples.mean(axis=0), samples.std(axis=0)


def one_sided_units(z):
    """Boolean per unit: the pre-activation has one strict sign on every sample."""
    samples = unit_samples(z)
    return np.all(samples > 0, axis=0) | np.all(samples < 0, axis=0)


def moment_shift(z, z_init):
    """``(|mean - mean0|, |std - std0|)`` per unit, between ``z`` and the pre-activations at
    initialisation ``z_init`` of the same units on the same batch."""
    mean, std = unit_moments(z)
    mean0, std0 = unit_moments(z_init)
    return np.abs(mean - mean0), np.abs(std - std0)
