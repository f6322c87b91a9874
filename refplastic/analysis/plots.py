"""The figures of ``refplastic analyse``, drawn with matplotlib (the ``plot`` extra).

matplotlib is imported inside each function, and figures are made as ``matplotlib.figure.Figure``
objects saved by the Agg canvas (no pyplot, no display). Each function draws the complete runs it
is given and saves one PNG to ``path``; :func:`has_data` says which runs recorded what a figure
needs, so that the report can skip a figure no run has data for.

- :func:`figure3_scatter`: plasticity loss against a few key statistics at the last probe point
  (Lyle et al. 2023, figure 3), one point per run, coloured by the levels of the factor whose
  split correlations disagree most in sign.
- :func:`probe_loss_curves`: the mean final probe loss at each probe point, mean over seeds with
  a band of +- 1 standard error (sd ddof 1 / sqrt(n)), one line per intervention, a panel per
  architecture (and per value of any other varying config field).
- :func:`hessian_density`: the spectral density of the probe loss's Hessian from the recorded
  SLQ nodes and weights, Gaussian-broadened as in Ghorbani, Krishnan and Xiao (2019) and
  PyHessian (Yao et al. 2020, ``density_plot.py``) by :mod:`refplastic.curvature.slq`:
  ``phi(t) = (1/S) sum_s sum_i w_si N(t; theta_si, s^2)``, ``s^2 = 1e-5 max(1, width of the
  grid)``, the grid from the smallest node - 0.01 to the largest + 0.01 of the panel at a spacing
  of s/3 (clipped to 2,000 to 20,000 points, so that the kernels are resolved); averaged
  over a panel's runs, at up to four probe points from the first to the last; a panel per
  architecture and intervention (the paper's figure 14 compares with and without LayerNorm).
- :func:`gradient_cosine`: the per-example gradient cosine matrix of the probe loss, k-means
  ordered as recorded, at the first and last probe point of up to four runs (figure 2).
"""

import textwrap

import numpy as np

from ..curvature.slq import gaussian_density, kernel_variance
from .figure3 import FACTORS, KEY_STATISTICS, rho_text, run_statistics, signs, splits
from .figure6 import intervention_order, mean_and_se, shown, varying_fields

AXIS_LABELS = {
    "parameter_norm": "weight norm ||theta||_2 (all parameters)",
    "weight_srank/delta=0.01/layer=-2": "srank of the last hidden layer's weights (count)",
    "dead_fraction": "fraction of ReLU units dead on the probe inputs",
    "feature_rank/eps=0.01/layer=-1": "feature rank of the penultimate features (count)",
    "dormant_fraction/tau=0.025": "fraction of units dormant at tau = 0.025",
    "gradient_cosine_mean": "mean cosine of per-example gradients",
    "hessian_top_eigenvalue": "top eigenvalue of the probe loss's Hessian",
}
PLASTICITY_LOSS = "plasticity loss (probe MSE, last - first probe point)"
PROBE_POINTS = 4


def available():
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def has_data(run, figure):
    """Whether ``run`` recorded what ``figure`` ("hessian_density" or "gradient_cosine") needs."""
    column = {"hessian_density": "slq_nodes", "gradient_cosine": "gradient_cosine"}[figure]
    return len(run.record["curvature"].get(column, [])) > 0


def _figure(panels, columns, width=4.6, height=3.6):
    from matplotlib.figure import Figure

    columns = min(columns, panels)
    rows = -(-panels // columns)
    fig = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes


def _wrap(text, inches, fontsize=12):
    """``text`` broken into lines that fit ``inches`` at ``fontsize`` points (a character about 0.55 em)."""
    return "\n".join(textwrap.fill(part, max(20, int(inches * 72 / (0.55 * fontsize)))) for part in text.split("\n"))


def _title(fig, text):
    fig.suptitle(_wrap(text, fig.get_figwidth()))


def _colour(i):
    from matplotlib import colormaps

    return colormaps["tab10"](i % 10)


def _line_style(i):
    """Solid for the first ten lines, then dashed, dotted, dash-dotted: with :func:`_colour`, eleven
    or more lines stay told apart."""
    return ("-", "--", ":", "-.")[i // 10 % 4]


def _colour_factor(rows):
    """The factor whose levels' correlations disagree most: one flipping beyond the intervals,
    else one flipping, else the first that varies; None when none varies."""
    varying = [f for f in FACTORS if any(r.split.startswith(f + "=") for r in rows)]
    for test in (lambda s: s.sign == "flips" and s.beyond_intervals, lambda s: s.sign == "flips"):
        for factor in varying:
            if test(signs([r for r in rows if r.split.startswith(factor + "=")])):
                return factor
    return varying[0] if varying else None


def figure3_scatter(runs, correlation_rows, path):
    """Plasticity loss against each key statistic the complete ``runs`` logged, a panel each."""
    runs = [run for run in runs if not run.diverged]
    values = [run_statistics(run) for run in runs]
    loss = np.array([float(run.attrs["plasticity_loss"]) for run in runs])
    names = [n for n in KEY_STATISTICS if any(np.isfinite(v.get(n, np.nan)) for v in values)]
    fig, axes = _figure(len(names), 4)
    for ax, name in zip(axes, names):
        x = np.array([v.get(name, np.nan) for v in values])
        rows = [r for r in correlation_rows if r.statistic == name]
        factor = _colour_factor(rows)
        groups = [(label, members) for label, members in splits(runs)
                  if (factor is None and label == "all") or label.startswith(f"{factor}=")]
        for i, (label, members) in enumerate(groups):
            row = next(r for r in rows if r.split == label)
            level = "all runs" if label == "all" else label.partition("=")[2]
            ax.scatter(x[members], loss[members], s=18, color=_colour(i), alpha=0.8,
                       label=f"{level}: rho = {rho_text(row.rho)} (n = {row.n})")
        title = f"{name}\n{KEY_STATISTICS[name]}" + (f", by {factor}" if factor else "")
        ax.set_title(_wrap(title, 4.6, 9), fontsize=9)
        finite = x[np.isfinite(x)]
        if finite.size and finite.min() > 0 and finite.max() > 100 * finite.min():  # heavy-tailed: log axis
            ax.set_xscale("log")
            ax.set_xlabel(AXIS_LABELS[name] + " (log scale)")
        else:
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 4))
            ax.set_xlabel(AXIS_LABELS[name])
        if ax.get_subplotspec().is_first_col():
            ax.set_ylabel(PLASTICITY_LOSS)
        ax.legend(fontsize=7)
    _title(fig, "Plasticity loss against statistics at the last probe point, one point per run "
                 "(Lyle et al. 2023, figure 3)")
    fig.savefig(path, format="png", dpi=110)


def _panels(runs):
    """``{(arch, (field=value, ...)): [runs]}``: a panel per architecture and per value of every
    other config field that varies (the intervention and seed excepted), in order."""
    fields = varying_fields(runs, exclude=("seed", "intervention", "arch"))
    panels = {}
    for run in sorted(runs, key=lambda r: (r.config["arch"], [shown(r.config.get(f)) for f in fields])):
        key = (run.config["arch"], tuple(f"{f}={shown(run.config.get(f))}" for f in fields))
        panels.setdefault(key, []).append(run)
    return panels


def _panel_title(key):
    arch, fields = key
    return ", ".join((arch,) + fields)


def _common_steps(runs):
    """The probe steps every run of ``runs`` has, ascending."""
    steps = set.intersection(*({int(s) for s in run.record["probes"]["step"]} for run in runs))
    return sorted(steps)


def probe_loss_curves(runs, path):
    """Mean final probe loss over training, per intervention, a panel per architecture."""
    runs = [run for run in runs if not run.diverged and len(run.record["probes"].get("step", []))]
    interventions = sorted({run.intervention for run in runs}, key=intervention_order)
    panels = _panels(runs)
    fig, axes = _figure(len(panels), 3, width=5.2, height=3.8)
    for ax, (key, members) in zip(axes, panels.items()):
        for i, intervention in enumerate(interventions):
            group = [run for run in members if run.intervention == intervention]
            if not group:
                continue
            steps = _common_steps(group)
            curves = np.array([[np.mean(final) for step, final in zip(run.record["probes"]["step"],
                                                                       run.record["probes"]["final_loss"])
                                if int(step) in steps] for run in group])
            stats = [mean_and_se(curves[:, j]) for j in range(len(steps))]
            mean, se = np.array([m for m, _ in stats]), np.array([e for _, e in stats])
            ax.plot(steps, mean, marker="o", markersize=3, color=_colour(i), linestyle=_line_style(i),
                    label=f"{intervention} (n = {len(group)})")
            if len(group) > 1:
                ax.fill_between(steps, mean - se, mean + se, color=_colour(i), alpha=0.2, linewidth=0)
        ax.set_title(_panel_title(key))
        ax.set_xlabel("training step (optimiser steps)")
        ax.set_ylabel("mean final probe loss (MSE)")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _title(fig, "Probe loss over training per intervention: mean over seeds, band +- 1 standard error")
    fig.savefig(path, format="png", dpi=110)


def _density(nodes, weights, grid, variance):
    """The broadened density of one probe point's (S, m) nodes and weights, a probe at a time
    (memory: one (len(grid), m) array)."""
    return np.mean([gaussian_density(nodes[s:s + 1], weights[s:s + 1], grid, variance)
                    for s in range(len(nodes))], axis=0)


def hessian_density(runs, path):
    """The SLQ spectral density of the probe loss's Hessian at up to four probe points, a panel
    per architecture (and other varying field) and intervention, averaged over the panel's runs."""
    runs = [run for run in runs if not run.diverged and has_data(run, "hessian_density")]
    panels = {}
    for key, members in _panels(runs).items():
        for intervention in sorted({run.intervention for run in members}, key=intervention_order):
            panels[key + (intervention,)] = [run for run in members if run.intervention == intervention]
    columns = len({key[2] for key in panels})
    fig, axes = _figure(len(panels), columns, width=4.8)
    from matplotlib import colormaps

    for ax, ((arch, fields, intervention), members) in zip(axes, panels.items()):
        steps = _common_steps(members)
        chosen = [steps[i] for i in sorted(set(np.linspace(0, len(steps) - 1, min(PROBE_POINTS, len(steps)))
                                               .round().astype(int)))]
        at = [[list(map(int, run.record["probes"]["step"])).index(step) for run in members] for step in chosen]
        nodes = np.concatenate([np.ravel(run.record["curvature"]["slq_nodes"][k])
                                for index in at for run, k in zip(members, index)])
        low, high = nodes.min() - 0.01, nodes.max() + 0.01
        variance = kernel_variance(np.array([low, high]))
        grid = np.linspace(low, high, int(np.clip(3 * (high - low) / np.sqrt(variance), 2000, 20000)))
        densities = [np.mean([_density(np.asarray(run.record["curvature"]["slq_nodes"][k]),
                                       np.asarray(run.record["curvature"]["slq_weights"][k]), grid, variance)
                              for run, k in zip(members, index)], axis=0) for index in at]
        floor = max(density.max() for density in densities) * 1e-8  # a log axis shows 8 decades
        for j, (step, density) in enumerate(zip(chosen, densities)):
            ax.semilogy(grid, np.maximum(density, floor), color=colormaps["viridis"](j / max(1, len(chosen) - 1)),
                        linewidth=1, label=f"step {step}")
        ax.set_title(_wrap(f"{intervention}: " + ", ".join((arch,) + fields) + f" ({len(members)} runs)", 4.8, 9),
                     fontsize=9)
        ax.set_xlabel("eigenvalue of the probe loss's Hessian")
        ax.set_ylabel("spectral density (log scale)")
        ax.legend(fontsize=7, title="probe point")
    _title(fig, "Hessian spectral density over training (SLQ, Gaussian-broadened as Ghorbani et al. 2019); "
                 "compare with and without LayerNorm (figure 14)")
    fig.savefig(path, format="png", dpi=110)


def gradient_cosine(runs, path):
    """The per-example gradient cosine matrix at the first and last probe point of up to four
    runs: the lowest seed of each intervention x architecture, "none" and "layernorm" first."""
    runs = [run for run in runs if not run.diverged and has_data(run, "gradient_cosine")]
    chosen = {}
    for run in sorted(runs, key=lambda r: (intervention_order(r.intervention), r.config["arch"], r.config["seed"])):
        chosen.setdefault((run.intervention, run.config["arch"]), run)
    chosen = list(chosen.values())[:4]
    fig, axes = _figure(2 * len(chosen), 2, width=4.2, height=3.8)
    image = None
    for row, run in enumerate(chosen):
        matrices, steps = run.record["curvature"]["gradient_cosine"], run.record["probes"]["step"]
        for column, k in enumerate((0, len(matrices) - 1)):
            ax = axes[2 * row + column]
            image = ax.imshow(np.asarray(matrices[k]), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_title(_wrap(f"{run.name}\n{run.intervention}, {run.config['arch']}, seed {run.config['seed']}: "
                               f"{'first' if column == 0 else 'last'} probe point, step {int(steps[k])}", 3.4, 9),
                         fontsize=9)
            ax.set_xlabel("example (k-means order)")
            ax.set_ylabel("example (k-means order)")
    fig.colorbar(image, ax=axes[:2 * len(chosen)].tolist(), label="cosine similarity of per-example gradients")
    _title(fig, "Per-example gradient cosine matrix of the probe loss, k-means ordered (figure 2)")
    fig.savefig(path, format="png", dpi=110)
