"""Parameter statistics: size, distance travelled, and the rank of each weight matrix.

For a list of parameter arrays theta (one layer's, or the whole network's):

    l2_norm       sqrt(sum theta^2)
    distance      sqrt(sum (theta - theta0)^2), theta0 the parameters at initialisation
                  (the drift that L2-Init and Shrink & Perturb act on)
    abs_sum       sum |theta|: with the weight matrix of one layer, Dohare et al. 2024's
                  "weight magnitude" (their permuted MNIST code, ``weight.abs().sum()``)
    abs_mean      sum |theta| / #theta: Dohare et al. 2024's "average weight magnitude" in
                  incremental CIFAR (all parameters, biases and normalisation included)

Sums run in float64. The rank family (:mod:`refplastic.stats.rank`) applies to
:func:`weight_matrix`: a Linear weight (out, in) as it is, a Conv2d weight (O, C, kh, kw) as
(O, C kh kw), one row per output unit.
"""

import numpy as np


def weight_matrix(weight):
    """The weight of a Linear (out, in) or Conv2d (O, C, kh, kw) layer as a matrix, one row per unit."""
    weight = np.asarray(weight)
    return weight.reshape(weight.shape[0], -1)


def l2_norm(arrays):
    """``sqrt(sum_a sum a^2)`` over a list of arrays."""
    return float(np.sqrt(sum(np.sum(np.square(a, dtype=np.float64)) for a in arrays)))


def distance(arrays, initial_arrays):
    """``sqrt(sum (a - a0)^2)`` over matching lists of arrays."""
    return l2_norm([np.asarray(a, np.float64) - np.asarray(a0, np.float64) for a, a0 in zip(arrays, initial_arrays)])


def abs_sum(arrays):
    """``sum_a sum |a|`` over a list of arrays."""
    return float(sum(np.sum(np.abs(a), dtype=np.float64) for a in arrays))


def abs_mean(arrays):
    """``sum |a| / number of entries`` over a list of arrays (0 for no entries)."""
    count = sum(np.size(a) for a in arrays)
    return abs_sum(arrays) / count if count else 0.0
