"""Exact second-order quantities of a network's loss on a batch (see docs/curvature.md).

Products (rows of V or U are directions): :func:`hvp` (H V), :func:`ggn_vp` (G V),
:class:`CurvatureBatch` (one forward/backward pass kept for many products: hvp, ggn_vp, jvp, vjp).
Matrices: :func:`hessian`, :func:`ggn`, :func:`jacobian`, :func:`ntk`, :func:`per_example_gradients`
and the statistics built from them. Spectra: :func:`eigenvalues`, :func:`lanczos_extremes`,
:func:`hutchinson_trace`, :func:`slq_quadrature` / :func:`slq_density`, :func:`spectrum_scalars`.
Reports: :func:`curvature_report`, :func:`write_report_h5`, :func:`plot_spectrum`.
"""

from .ggn import ggn, ggn_vp
from .hessian import hessian
from .hutchinson import hutchinson_trace
from .hvp import CurvatureBatch, hvp, preserved_buffers
from .jacobian import jacobian, ntk
from .lanczos import lanczos, lanczos_extremes
from .per_example import cosine_similarity, empirical_fisher, gradient_covariance, per_example_gradients
from .report import QUANTITIES, curvature_report, plot_spectrum, read_report_h5, write_report_h5
from .scalars import eigenvalues, spectrum_scalars
from .slq import exact_density, quadrature_estimates, slq_density, slq_quadrature
