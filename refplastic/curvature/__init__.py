"""Exact second-order quantities of a network's loss on a batch (see docs/curvature.md).

Products (rows of V or U are directions): :func:`hvp` (H V), :func:`ggn_vp` (G V),
:class:`CurvatureBatch` (one forward/backward pass kept for many products). Matrices:
:func:`hessian`, :func:`ggn`, :func:`jacobian`, :func:`ntk`, :func:`per_example_gradients` and
the statistics built from them.
"""

from .ggn import ggn, ggn_vp
from .hessian import hessian
from .hvp import CurvatureBatch, hvp, preserved_buffers
from .jacobian import jacobian, ntk
from .per_example import cosine_similarity, empirical_fisher, gradient_covariance, per_example_gradients
