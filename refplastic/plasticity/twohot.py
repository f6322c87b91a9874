"""The two-hot categorical encoding of scalar targets, and its decoding.

On a support ``z_0 < z_1 < ... < z_{B-1}``, a value ``x`` (first clipped to ``[z_0, z_{B-1}]``)
with ``z_k <= x <= z_{k+1}`` is the distribution

    p_k = (z_{k+1} - x) / (z_{k+1} - z_k),    p_{k+1} = 1 - p_k,    p_j = 0 otherwise,

whose expectation ``sum_j p_j z_j`` is ``x`` (to rounding), and a support point is exactly a
one-hot vector. A network with B outputs per action is trained with the cross-entropy between
``softmax(logits)`` and the two-hot target, and read out as the expectation.

Source: Lyle et al. (2023), section 6.2 ("a two-hot encoding ... distributes mass across two
adjacent bins of the support"), after Schrittwieser et al. (2020), MuZero, appendix F: 601
bins, one per integer from -300 to 300, applied to targets first compressed by the invertible
``h(x) = sign(x) (sqrt(|x| + 1) - 1) + 0.001 x`` ("3.7 would be represented as a weight of 0.3
on the support for 3 and a weight of 0.7 on the support for 4"). DreamerV3 (Hafner et al. 2023)
uses 255 bins on symlog-compressed targets; Farebrother et al. (2024), "Stop regressing",
compare two-hot with HL-Gauss (a Gaussian of width 0.75 bins integrated over each bin), which is
not implemented here. DQN Zoo has no two-hot head; its C51 agent (``dqn_zoo/c51/run_atari.py``)
projects onto 51 atoms spaced evenly on ``[-10, 10]``, with rewards clipped to [-1, 1].

The support for the classification MDPs (:func:`value_support`): their rewards are 0 or 1, so
every return lies in ``[0, 1 / (1 - discount)]``; ``BINS = 51`` points spaced evenly there (C51's
atom count in DQN Zoo) cover it with no transform, since the values are bounded and their range
known (MuZero's ``h`` exists to squash Atari's unbounded returns), and every value in it keeps
an exact expectation.
"""

import numpy as np

BINS = 51  # DQN Zoo, dqn_zoo/c51/run_atari.py: num_atoms = 51


def support(low, high, bins):
    """``bins`` points spaced evenly from ``low`` to ``high`` inclusive (float64)."""
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"the support needs finite low < high, got low={low}, high={high}")
    if int(bins) != bins or bins < 2:
        raise ValueError(f"the support needs an integer number of bins >= 2, got {bins}")
    return np.linspace(float(low), float(high), int(bins))


def value_support(discount, bins=BINS):
    """The support for returns of rewards in {0, 1}: ``support(0, 1 / (1 - discount), bins)``."""
    if not 0 <= discount < 1:
        raise ValueError(f"discount must be in [0, 1), got {discount}")
    return support(0.0, 1.0 / (1.0 - discount), bins)


def _checked(support):
    support = np.asarray(support, dtype=np.float64)
    if support.ndim != 1 or support.size < 2 or not np.all(np.diff(support) > 0) or not np.all(np.isfinite(support)):
        raise ValueError(f"the support must be a 1-D increasing array of at least 2 finite points, got {support}")
    return support


def two_hot(values, support):
    """Probabilities of shape ``values.shape + (B,)`` (float64): the two-hot encoding of each value.

    Values outside the support are clipped to its ends; a NaN value gives NaN in its two bins
    (the last two), so that a diverging target shows in the loss rather than vanishing.
    """
    support = _checked(support)
    values = np.clip(np.asarray(values, dtype=np.float64), support[0], support[-1])
    k = np.clip(np.searchsorted(support, values, side="right") - 1, 0, support.size - 2)
    low, high = support[k], support[k + 1]
    upper = (values - low) / (high - low)
    probabilities = np.zeros(values.shape + (support.size,))
    np.put_along_axis(probabilities, k[..., None], (1 - upper)[..., None], axis=-1)
    np.put_along_axis(probabilities, k[..., None] + 1, upper[..., None], axis=-1)
    return probabilities


def expectation(probabilities, support):
    """``sum_j p_j z_j`` over the last axis (float64): the value a categorical output stands for."""
    support = _checked(support)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[-1:] != support.shape:
        raise ValueError(f"probabilities must end in an axis of {support.size} bins, got shape {probabilities.shape}")
    return probabilities @ support
