"""A curvature report for one network and batch: compute, write to HDF5, plot.

:func:`curvature_report` returns a nested dict whose layout is the HDF5 layout of
:func:`write_report_h5` (dicts are groups, arrays datasets, scalars attributes; documented in
docs/curvature.md). Quantities: any subset of :data:`QUANTITIES`, computed in that order; each
one's formula is in :data:`QUANTITY_FORMULAS`.

Quantity i draws from ``numpy.random.default_rng([seed, i])`` (i its index above), so adding
or removing a quantity does not change the others' numbers.
"""

import json
import os

import h5py
import numpy as np

from ..h5io import atomic_h5, check_format, open_h5, read_attrs, write_dict
from ..memory import check_memory, ggn_estimate, gradients_estimate, hessian_estimate, ntk_estimate, sizes
from ..outputs import atomic_path, check_writable
from ..overflow import finite, reported_as
from .ggn import ggn
from .hessian import hessian
from .hutchinson import hutchinson_trace
from .hvp import CurvatureBatch
from .jacobian import gram, jacobian
from .lanczos import lanczos_extremes
from .per_example import cosine_similarity, per_example_gradients
from .scalars import eigenvalues, spectrum_scalars
from .slq import quadrature_estimates, slq_density, slq_quadrature

SPECTRUM_QUANTITIES = ("hessian_eigenvalues", "ggn_eigenvalues", "hessian_lanczos", "ggn_lanczos", "hessian_density",
                       "ggn_density", "ntk")
FORMAT = "refplastic-curvature"
VERSION = 1
QUANTITY_FORMULAS = {
    "hessian_eigenvalues": "every eigenvalue of the exact Hessian H = d^2L/dtheta^2 (P <= 5000), and spectrum_scalars",
    "ggn_eigenvalues": "every eigenvalue of the exact Gauss-Newton matrix G = J^T H_z J (P <= 5000), and "
                       "spectrum_scalars",
    "hessian_lanczos": "the top_k largest and smallest Ritz values theta of H after min(P, 2 top_k + 40) Lanczos "
                       "steps, with residuals |H y - theta y|",
    "ggn_lanczos": "the top_k largest and smallest Ritz values theta of G after min(P, 2 top_k + 40) Lanczos steps, "
                   "with residuals |G y - theta y|",
    "hessian_trace": "tr H ~ (1/S) sum_s z_s^T H z_s over S = 100 Rademacher probes z_s (Hutchinson), with its "
                     "standard error",
    "ggn_trace": "tr G ~ (1/S) sum_s z_s^T G z_s over S = 100 Rademacher probes z_s (Hutchinson), with its standard "
                 "error",
    "hessian_density": "phi(t) = (1/S) sum_s sum_i w_si N(t; theta_si, s^2), stochastic Lanczos quadrature of H "
                       "(S = 10 probes, 90 steps)",
    "ggn_density": "phi(t) = (1/S) sum_s sum_i w_si N(t; theta_si, s^2), stochastic Lanczos quadrature of G "
                   "(S = 10 probes, 90 steps)",
    "gradients": "per-example gradients g_n = N dL_n/dtheta: norms |g_n|, cosines <g_n, g_m> / (|g_n| |g_m|), the "
                 "empirical Fisher (1/N) sum_n g_n g_n^T's nonzero eigenvalues and trace, the covariance's trace",
    "ntk": "the empirical NTK J J^T (M x M, M = N D) and its eigenvalues",
}
"""Each quantity's formula in one line, with :func:`curvature_report`'s defaults (docs/curvature.md
has the same table; ``refplastic curvature --list`` prints it)."""
QUANTITIES = tuple(QUANTITY_FORMULAS)


def curvature_report(net, loss, x, t, quantities, seed, progress=None, *, top_k=20, lanczos_steps=None,
                     trace_probes=100, slq_probes=10, slq_steps=90, sigma_squared=1e-5, grid_points=1000,
                     max_exact_parameters=5000, block_size=64):
    """Compute ``quantities`` (names from :data:`QUANTITIES`) for ``net`` on the batch ``(x, t)``.

    ``progress(label, done, total)`` is called as long computations advance. The network's
    parameters and buffers are left unchanged. Before any work, a quantity whose memory estimate
    (:func:`memory_estimates`) is above the memory available raises
    :class:`~refplastic.memory.NotEnoughMemory` (a MemoryError) naming it and what to lower. A
    quantity that overflows on the batch (finite inputs, huge weights) raises a one-line
    :class:`~refplastic.overflow.NotFinite` (a ValueError) naming it; no NumPy floating-point
    warning escapes.
    """
    unknown = [q for q in quantities if q not in QUANTITIES]
    if unknown:
        raise ValueError(f"unknown quantities {unknown}; choose from {', '.join(QUANTITIES)}")
    check_top_k(top_k, net.num_parameters)
    P = net.num_parameters
    for name in quantities:
        if name.endswith("_eigenvalues") and P > max_exact_parameters:
            raise ValueError(f"{name} needs the full {P} x {P} matrix; that is more than "
                             f"max_exact_parameters={max_exact_parameters}: use the Lanczos quantities")
    check_memory(lambda s: memory_estimates(s, quantities, block_size), sizes(net, x), net.dtype)
    with reported_as("loss"):
        batch = CurvatureBatch(net, loss, x, t)
        finite(batch.value)
    report = {"attrs": {"seed": int(seed), "loss": loss.name, "num_parameters": P, "num_examples": int(len(x)),
                        "dtype": np.dtype(net.dtype).name, "training": net.training, "loss_value": batch.value,
                        "architecture": json.dumps(net.architecture()), "quantities": json.dumps(list(quantities))}}

    def step(label):
        return None if progress is None else (lambda done, total: progress(label, done, total))

    operators = {"hessian": batch.hvp, "ggn": batch.ggn_vp}
    for i, name in enumerate(QUANTITIES):
        if name not in quantities:
            continue
        rng = np.random.default_rng([seed, i])
        which, _, kind = name.partition("_")
        group = report.setdefault(which, {})
        with reported_as(name):
            if kind == "eigenvalues":
                if which == "hessian":
                    matrix = hessian(net, loss, x, t, block_size, progress=step(name), batch=batch)
                else:
                    matrix = ggn(net, loss, x, t, block_size, batch=batch)
                group["eigenvalues"] = eigenvalues(matrix)
                group["scalars"] = {"attrs": spectrum_scalars(group["eigenvalues"])}
            elif kind == "lanczos":
                steps = min(P, 2 * top_k + 40) if lanczos_steps is None else lanczos_steps
                counted = _counted(operators[which], step(name), steps)
                result = lanczos_extremes(counted, P, top_k, rng, steps, net.dtype)
                group["lanczos"] = {**result._asdict(),
                                    "attrs": {"num_steps": len(result.ritz_values), "k": len(result.top),
                                              "largest_eigenvalue": float(result.top[-1])}}
            elif kind == "trace":
                estimate, error = hutchinson_trace(_counted(operators[which], step(name), trace_probes), P,
                                                   trace_probes, rng, dtype=net.dtype)
                group["hutchinson"] = {"attrs": {"trace": estimate, "standard_error": error,
                                                 "num_probes": trace_probes}}
            elif kind == "density":
                quad = slq_quadrature(operators[which], P, slq_probes, slq_steps, rng, net.dtype, step(name))
                grid = np.linspace(quad.nodes.min() - 1e-2, quad.nodes.max() + 1e-2, grid_points)
                grid, density, variance = slq_density(quad, grid, sigma_squared)
                group["density"] = {"grid": grid, "density": density, "nodes": quad.nodes, "weights": quad.weights,
                                    "attrs": {"sigma_squared": sigma_squared, "variance": variance,
                                              "num_probes": slq_probes, "num_steps": quad.nodes.shape[1],
                                              **quadrature_estimates(quad, P)}}
            elif name == "gradients":
                report["gradients"] = _gradient_statistics(per_example_gradients(net, loss, x, t, batch=batch))
            elif name == "ntk":
                J = jacobian(net, x, block_size, batch=batch)
                kernel = gram(J)
                report["ntk"] = {"kernel": kernel, "eigenvalues": eigenvalues(kernel),
                                 "attrs": {"trace": float(np.trace(kernel))}}
            finite(_defined_values(report[which]))
    return report


def memory_estimates(s, quantities, block_size):
    """The :mod:`refplastic.memory` estimates of the dense ``quantities`` (exact spectra, gradients,
    NTK) for the sizes ``s``; the matrix-free ones (Lanczos, traces, densities) need O(P) vectors."""
    matrix_free = "ask for {0}_lanczos, {0}_trace or {0}_density instead (matrix-free)"
    estimates = []
    if "hessian_eigenvalues" in quantities:
        estimates.append(hessian_estimate(s, block_size, alternative=matrix_free.format("hessian")))
    if "ggn_eigenvalues" in quantities:
        estimates.append(ggn_estimate(s, block_size, alternative=matrix_free.format("ggn")))
    if "gradients" in quantities:
        estimates.append(gradients_estimate(s, block_size))
    if "ntk" in quantities:
        estimates.append(ntk_estimate(s, block_size))
    return estimates


def _defined_values(part):
    """``part`` without what is NaN by definition: a spectrum's ``condition_number`` when no
    eigenvalue is above the rank threshold (docs/curvature.md)."""
    if not isinstance(part, dict):
        return part
    return {key: _defined_values(value) for key, value in part.items() if key != "condition_number"}


def describe_quantities():
    """One line per quantity: its name and its formula (what ``refplastic curvature --list`` prints)."""
    width = max(len(name) for name in QUANTITY_FORMULAS)
    return "\n".join(f"{name:<{width}}  {formula}" for name, formula in QUANTITY_FORMULAS.items())


def check_top_k(top_k, num_parameters):
    """A one-line ValueError unless 1 <= ``top_k`` <= the number of parameters (the matrix size)."""
    if not 1 <= top_k <= num_parameters:
        raise ValueError(f"top_k must lie in [1, {num_parameters}] (the network's number of parameters), "
                         f"got {top_k}")


def _counted(matvec, report_progress, total):
    """``matvec`` that reports how many vectors it has been applied to."""
    done = [0]

    def counted(V):
        out = matvec(V)
        done[0] += len(V)
        if report_progress is not None:
            report_progress(min(done[0], total), total)
        return out

    return counted


def _gradient_statistics(G):
    """Per-example gradient norms and cosine similarities; the empirical Fisher ``G^T G / N``'s
    nonzero eigenvalues (those of the Gram matrix ``G G^T / N``) and trace; the covariance's trace."""
    n = len(G)
    mean = G.mean(axis=0)
    norms = np.linalg.norm(G, axis=1)
    return {"norms": norms, "mean": mean, "cosine_similarity": cosine_similarity(G),
            "fisher_gram_eigenvalues": eigenvalues(G @ G.T / n),
            "attrs": {"fisher_trace": float(np.sum(norms ** 2) / n),
                      "covariance_trace": float(np.sum(norms ** 2) / n - mean @ mean),
                      "mean_gradient_norm": float(np.linalg.norm(mean)),
                      "mean_cosine_similarity": float((cosine_similarity(G).sum() - n) / max(n * (n - 1), 1))}}


def write_report_h5(path, report):
    """Write ``report`` to ``path`` atomically (temporary name, then rename)."""
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        _write_group(f, report)


def _write_group(group, values):
    for key, value in values.items():
        if key == "attrs":
            for k, v in value.items():
                group.attrs[k] = v
        elif isinstance(value, dict):
            _write_group(group.create_group(key), value)
        else:
            write_dict(group, {key: np.asarray(value)})


def read_report_h5(path):
    """The report dict back from a file written by :func:`write_report_h5`."""
    with open_h5(path) as f:
        check_format(f, path, FORMAT, VERSION, "a refplastic curvature report", required=False)
        return _read_group(f)


def _read_group(group):
    out = {key: (member[()] if isinstance(member, h5py.Dataset) else _read_group(member))
           for key, member in group.items()}
    out["attrs"] = read_attrs(group)
    return out


def check_plot(path, quantities):
    """Raise a one-line error now if :func:`plot_spectrum` could not draw ``quantities`` to ``path``:
    no spectrum among them (ValueError), an image format matplotlib does not write (ValueError),
    or no matplotlib (RuntimeError)."""
    if not any(q in SPECTRUM_QUANTITIES for q in quantities):
        raise ValueError(f"nothing to plot: --plot needs one of {', '.join(SPECTRUM_QUANTITIES)}")
    _image_format(path)


def summary(report):
    """``[(name, value as text)]``: the report's headline numbers, one line each, for a terminal.

    Exact spectra give their scalars, Lanczos its extreme Ritz values with their residual bounds
    (``|lambda - theta| <= residual`` for some eigenvalue lambda), Hutchinson and SLQ their trace
    estimates, ``gradients`` its attributes and ``ntk`` its trace and extreme eigenvalues.
    """
    attrs = report["attrs"]
    lines = [("loss " + attrs["loss"], _number(attrs["loss_value"]))]
    for which in ("hessian", "ggn"):
        part = report.get(which, {})
        if "scalars" in part:
            lines += [(f"{which}/{key}", _number(value)) for key, value in part["scalars"]["attrs"].items()]
        if "lanczos" in part:
            lanczos = part["lanczos"]
            for end, index in (("largest", -1), ("smallest", 0)):
                side = "top" if end == "largest" else "bottom"
                lines.append((f"{which}/{end}_eigenvalue (Lanczos)",
                              f"{_number(lanczos[side][index])} +- {lanczos[side + '_residuals'][index]:.2g}"))
        if "hutchinson" in part:
            h = part["hutchinson"]["attrs"]
            lines.append((f"{which}/trace (Hutchinson)", f"{_number(h['trace'])} +- {h['standard_error']:.2g}"))
        if "density" in part:
            d = part["density"]["attrs"]
            lines += [(f"{which}/trace (SLQ)", _number(d["trace_estimate"])),
                      (f"{which}/negative_mass (SLQ)", _number(d["negative_mass_estimate"]))]
    if "gradients" in report:
        lines += [(f"gradients/{key}", _number(value)) for key, value in report["gradients"]["attrs"].items()]
    if "ntk" in report:
        ntk_eigenvalues = report["ntk"]["eigenvalues"]
        lines += [("ntk/trace", _number(report["ntk"]["attrs"]["trace"])),
                  ("ntk/largest_eigenvalue", _number(ntk_eigenvalues[-1])),
                  ("ntk/smallest_eigenvalue", _number(ntk_eigenvalues[0]))]
    return lines


def _number(value):
    """A number in at most about a dozen characters, whatever its size."""
    return f"{float(value):.6g}"


def plot_spectrum(report, path):
    """Plot the spectra in ``report`` to ``path``, written atomically (temporary name, then rename):
    exact eigenvalue histograms, Lanczos extremes with their residual bounds, SLQ densities and
    the NTK's eigenvalues, a panel each. Needs matplotlib, imported here only."""
    image_format = _image_format(path)
    panels = [(w, k) for w in ("hessian", "ggn") for k in ("eigenvalues", "lanczos", "density")
              if k in report.get(w, {})] + ([("ntk", "eigenvalues")] if "ntk" in report else [])
    if not panels:
        raise ValueError(f"the report has no spectrum to plot (compute one of {', '.join(SPECTRUM_QUANTITIES)})")
    fig = _figure_class()(figsize=(5 * len(panels), 3.8), layout="constrained")
    names = {"hessian": "Hessian", "ggn": "Gauss-Newton", "ntk": "NTK"}
    for ax, (which, kind) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        part, name = report[which], names[which]
        if kind == "eigenvalues":
            ax.hist(part["eigenvalues"], bins=100, log=True)
            ax.set_title(f"{name}: exact eigenvalues ({len(part['eigenvalues'])})")
            ax.set_xlabel("eigenvalue")
            ax.set_ylabel("count")
        elif kind == "lanczos":
            values = np.concatenate([part["lanczos"]["bottom"], part["lanczos"]["top"]])
            errors = np.concatenate([part["lanczos"]["bottom_residuals"], part["lanczos"]["top_residuals"]])
            k = len(part["lanczos"]["top"])
            ax.errorbar(np.arange(len(values)), values, yerr=errors, fmt="o", markersize=3, capsize=2)
            ax.axhline(0, color="0.7", linewidth=0.8)
            ax.set_title(f"{name}: Lanczos extremes (k = {k})")
            ax.set_xlabel("Ritz value, ascending")
            ax.set_ylabel("eigenvalue (bars: residual bound)")
        else:
            d = part["density"]
            ax.semilogy(d["grid"], np.maximum(d["density"], 1e-12))
            ax.set_title(f"{name}: SLQ density")
            ax.set_xlabel("eigenvalue")
            ax.set_ylabel("density")
    with atomic_path(check_writable(path)) as tmp:
        fig.savefig(tmp, format=image_format)


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RuntimeError("plotting the spectrum needs matplotlib: pip install matplotlib") from None
    return Figure


def _image_format(path):
    """The image format named by ``path``'s extension, if matplotlib writes it."""
    supported = _figure_class()().canvas.get_supported_filetypes()
    extension = os.path.splitext(os.fspath(path))[1][1:].lower()
    if extension not in supported:
        raise ValueError(f"{path}: the file name must end in an image format matplotlib writes: "
                         f"{', '.join('.' + e for e in sorted(supported))}")
    return extension
