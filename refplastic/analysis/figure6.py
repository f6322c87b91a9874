"""The figure-6 table: plasticity loss per intervention and architecture, mean and standard error over seeds.

Lyle et al. (2023), figure 6 ("Effect of interventions on plasticity loss"; figures 8 and 9 of
appendix B.1 for each data set): the change in the average final probe loss after training, per
intervention (rows) and architecture (columns). A run's **plasticity loss** L is the root
attribute ``plasticity_loss`` of its results file: the mean final probe loss at the last probe
point minus that at the first (:func:`refplastic.plasticity.results.plasticity_loss`). A run's
intervention is its config's ``intervention`` list joined with "+" ("none" for an empty list).

Runs are grouped by intervention, architecture and the value of every other config field that
differs between the runs (the task, the data set, a width, ...), the seed excepted. Over the n
complete runs of a cell whose L is finite::

    mean = (1/n) sum_i L_i,    SE = s / sqrt(n),    s^2 = sum_i (L_i - mean)^2 / (n - 1)

(SE is NaN for n = 1). The paper writes "mean +- x" without saying what x is; here x is the
standard error, and n is shown. Diverged runs (status "diverged": their loss or parameters stopped
being finite) are counted in their cell's ``diverged`` column, not averaged in.
"""

import csv
import io
import json
from typing import NamedTuple

import numpy as np

TABLE_AXES = ("intervention", "arch")
"""The config fields that are the table's rows and columns."""


class Cell(NamedTuple):
    """One cell: its ``group`` (``((field, value), ...)`` of the other varying fields), ``n``
    complete runs with a finite plasticity loss, their ``mean`` and ``se``, and ``diverged`` runs."""

    intervention: str
    arch: str
    group: tuple
    n: int
    mean: float
    se: float
    diverged: int


def shown(value):
    """A config value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def varying_fields(runs, exclude=("seed",) + TABLE_AXES):
    """The config fields whose values differ between ``runs``, but those of ``exclude``, sorted."""
    fields = sorted({field for run in runs for field in run.config} - set(exclude))
    return [f for f in fields if len({shown(run.config.get(f)) for run in runs}) > 1]


def intervention_order(name):
    """Sort key: "none" first, then by name."""
    return (name != "none", name)


def mean_and_se(values):
    """``(mean, SE)`` of ``values`` (SE = sample sd with ddof 1 over sqrt(n); NaN for n < 2)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return float("nan"), float("nan")
    se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def figure6_cells(runs):
    """The :class:`Cell` of every intervention x architecture x group the runs (a list of
    :class:`refplastic.analysis.runs.PlasticityRun`) fill, groups and rows in order."""
    fields = varying_fields(runs)
    members = {}
    for run in runs:
        group = tuple((f, shown(run.config.get(f))) for f in fields)
        members.setdefault((group, run.intervention, run.config["arch"]), []).append(run)
    cells = []
    for group, intervention, arch in sorted(members, key=lambda k: (k[0], intervention_order(k[1]), k[2])):
        cell_runs = members[(group, intervention, arch)]
        losses = [float(r.attrs["plasticity_loss"]) for r in cell_runs if not r.diverged]
        losses = [value for value in losses if np.isfinite(value)]
        mean, se = mean_and_se(losses)
        cells.append(Cell(intervention, arch, group, len(losses), mean, se, sum(r.diverged for r in cell_runs)))
    return cells


def number(value, digits=3):
    """A float for a table: ``digits`` significant digits, "nan" for NaN."""
    return "nan" if not np.isfinite(value) else f"{value:.{digits}g}"


def cell_text(cell):
    text = f"{number(cell.mean)} ± {number(cell.se, 2)} (n={cell.n})"
    return text + (f", {cell.diverged} diverged" if cell.diverged else "")


def markdown(cells):
    """The table as Markdown: one table per group (a heading naming it when fields vary), rows the
    interventions, columns the architectures, cells ``mean ± SE (n=...)`` and the diverged runs."""
    lines = []
    for group in dict.fromkeys(c.group for c in cells):
        in_group = [c for c in cells if c.group == group]
        archs = sorted({c.arch for c in in_group})
        if group:
            lines += [f"### {', '.join(f'{field}={value}' for field, value in group)}", ""]
        lines += ["| intervention | " + " | ".join(archs) + " |", "|---" * (len(archs) + 1) + "|"]
        by_key = {(c.intervention, c.arch): c for c in in_group}
        for intervention in sorted({c.intervention for c in in_group}, key=intervention_order):
            row = [cell_text(by_key[(intervention, a)]) if (intervention, a) in by_key else "-" for a in archs]
            lines.append(f"| {intervention} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def csv_text(cells):
    """The table as CSV, one row per cell: intervention, arch, the varying fields, n, mean, se, diverged."""
    fields = [field for field, _ in cells[0].group] if cells else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*TABLE_AXES, *fields, "n", "mean", "se", "diverged"])
    for c in cells:
        writer.writerow([c.intervention, c.arch, *(value for _, value in c.group), c.n, c.mean, c.se, c.diverged])
    return out.getvalue()
