"""Statistics of plasticity loss, each under one unambiguous name (see docs/statistics.md).

Plain functions of arrays, one concept per module: :mod:`.units` (dead, dormant, active,
saturated, linearised units), :mod:`.preactivations` (per-unit moments and their shift),
:mod:`.rank` (effective rank, srank, approximate rank, feature rank, stable rank, numerical
rank), :mod:`.weights` (norms, magnitudes, distance from initialisation), :mod:`.gradients`
(gradient norm, per-example gradient cosine similarities, k-means ordering). One entry point,
:func:`compute_statistics`, computes any list of named statistics of a network on a batch;
:func:`write_statistics_h5` and :func:`read_statistics_h5` store them.
"""

from .collect import (CURVATURE_STATISTICS, DEFAULT_STATISTICS, INIT_STATISTICS, STATISTICS, compute_statistics,
                      describe_statistics, needing_init, parse_name, unavailable)
from .report import format_statistics, read_statistics_h5, write_statistics_h5
