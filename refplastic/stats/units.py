"""Unit statistics: which hidden units are dead, dormant, saturated or stuck in their linear part.

``h`` is the output of one activation layer on a batch: (N, C) for a dense layer or
(N, C, H, W) for a convolutional one. A *unit* is a feature (dense) or a channel (conv): the
channel axis is axis 1, as in torch's NCHW, and every other axis but the batch axis is a
position. Each function returns one value per unit, over the N x positions *samples* of that
unit; a layer's statistic is the mean over its units (:mod:`refplastic.stats.collect`).

    dead              h = 0 on every sample: every input and every position (Dohare et al. 2024
                      count units whose activation is 0 on every input of a batch)
    dormant(tau)      s_i <= tau, s_i = E|h_i| / ((1/C) sum_k E|h_k|), E over samples, so a
                      channel's |h| is averaged over space too (Sokar et al. 2023, ReDo)
    low_activity      mean(h_i != 0) < threshold, threshold = 0.01 (Dohare et al. 2024's
                      "dormant" units in incremental CIFAR; not Sokar's definition)
    active_fraction   mean(h_i != 0); the layer mean is 1 - mean(h == 0)
    linearised        h > 0 on every sample: a ReLU that never leaves its linear piece
                      (Lyle et al. 2024)
    saturated(th)     fraction of samples with |h| > th (tanh) or h < 1 - th or h > th
                      (sigmoid), th = 0.99
"""

import numpy as np


def unit_samples(h):
    """``h`` as a (samples, units) matrix: units on axis 1 of h, samples = batch x positions."""
    h = np.asarray(h)
    if h.ndim < 2:
        raise ValueError(f"expected (N, C) or (N, C, ...) activations, got shape {h.shape}")
    return np.moveaxis(h, 1, -1).reshape(-1, h.shape[1])


def dead_units(h):
    """Boolean per unit: ``h_i = 0`` on every input and every position."""
    return ~np.any(unit_samples(h) != 0, axis=0)


def dormant_scores(h):
    """``s_i = E|h_i| / ((1/C) sum_k E|h_k|)`` per unit (Sokar et al. 2023).

    A layer whose every output is 0 has every score 0: ReDo's code divides by
    ``mean + 1e-9``, which gives exactly that; otherwise the division here is exact.
    """
    mean_abs = np.mean(np.abs(unit_samples(h)), axis=0, dtype=np.float64)
    layer_mean = mean_abs.mean()
    return mean_abs / layer_mean if layer_mean > 0 else np.zeros_like(mean_abs)


def dormant_units(h, tau=0.025):
    """Boolean per unit: ``s_i <= tau`` (Sokar et al. 2023; tau = 0 and 0.025 are common)."""
    return dormant_scores(h) <= tau


def active_fraction(h):
    """Per unit: the fraction of samples with ``h_i != 0``."""
    return np.mean(unit_samples(h) != 0, axis=0)


def low_activity_units(h, threshold=0.01):
    """Boolean per unit: active (``h_i != 0``) on fewer than ``threshold`` of the samples
    (Dohare et al. 2024, incremental CIFAR, where these are called dormant)."""
    return active_fraction(h) < threshold


def linearised_units(h):
    """Boolean per unit: ``h_i > 0`` on every sample (Lyle et al. 2024)."""
    return np.all(unit_samples(h) > 0, axis=0)


SATURATING = ("Tanh", "Sigmoid")


def saturated_fraction(h, activation, threshold=0.99):
    """Per unit: the fraction of samples in the flat tails of ``activation``.

    Tanh: ``|h| > threshold``; Sigmoid: ``h < 1 - threshold`` or ``h > threshold``. The
    comparisons run in float64 (float32 samples are widened, exactly), so that a float32 network
    meets the threshold itself and not its float32 rounding (0.99 would become 0.99000001, and
    0.99999999 would become 1, which no output exceeds); for 0.5 <= threshold <= 1 the float64
    ``1 - threshold`` is exact too.
    """
    samples = unit_samples(h).astype(np.float64)
    if activation == "Tanh":
        saturated = np.abs(samples) > threshold
    elif activation == "Sigmoid":
        saturated = (samples < 1 - threshold) | (samples > threshold)
    else:
        raise ValueError(f"activation must be one of {SATURATING}, got {activation!r}")
    return np.mean(saturated, axis=0)
