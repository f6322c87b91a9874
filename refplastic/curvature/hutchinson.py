"""Hutchinson's estimate of the trace of a symmetric operator A (H, G, ...), with Rademacher probes.

For z with independent entries +-1 (E[z z^T] = I),

    tr A = E[z^T A z] ~ (1/S) sum_s z_s^T A z_s,

with variance ``2 (|A|_F^2 - sum_i A_ii^2) / S`` for S probes. The reported standard error is
the sample standard deviation of the S terms over sqrt(S).
"""

import numpy as np


def hutchinson_trace(matvec, dim, num_probes, rng, block_size=32, dtype=np.float64):
    """``(estimate, standard_error)`` of tr A from ``num_probes`` Rademacher probes drawn from ``rng``.

    ``matvec`` maps a block of probes (K, dim) to A applied to each; ``block_size`` probes at a time.
    """
    terms = []
    for a in range(0, num_probes, block_size):
        Z = rng.choice(np.array([-1.0, 1.0], dtype), size=(min(block_size, num_probes - a), dim))
        terms.append(np.einsum("kp,kp->k", Z, np.asarray(matvec(Z)).reshape(Z.shape)))
    terms = np.concatenate(terms)
    error = float(terms.std(ddof=1) / np.sqrt(len(terms))) if len(terms) > 1 else float("nan")
    return float(terms.mean()), error
