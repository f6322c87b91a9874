"""Figure 3: the Spearman correlation of plasticity loss with each logged statistic, overall and by split.

Lyle et al. (2023), sec. 5.2 and figure 3: a quantity that explains plasticity loss should
correlate with it consistently across experimental conditions (after Buhlmann 2020); over 128
DQN agents trained on several tasks, observation spaces (data sets), optimisers and seeds, every
statistic they try (weight norm, weight rank, dead units, feature rank) correlates positively
with plasticity loss under one condition and negatively under another, while the curvature of
the loss landscape (sec. 5.3, figure 14) does not. Each point of their figure 3 is one training
run: its plasticity loss against the statistic. The paper logs the statistics "over the course
of training" but does not say which logging iteration a run's point shows (appendix A.2 gives
only the agents and the probe schedule); here it is the **last probe point**, where the
plasticity loss (last probe point minus first) is measured: the network whose plasticity was lost.

Per complete run (diverged runs are left out): y = its plasticity loss (root attribute), x = each
statistic of ``statistics/values`` at the last probe point, named by the group's ``names``:

- network-wide statistics (no ``/layer=``) as they are;
- statistics logged only per layer (the feature and weight ranks, the largest singular value)
  under their position from the output, ``family/layer=-1`` being the layer nearest the output
  (for features: the last activation layer, the penultimate features; for weights: the output
  layer), since layer indices differ between the MLP and the CNN and with LayerNorm; the
  per-layer values of a statistic that also has a network-wide value are left out (their layers
  would not line up across architectures);
- ``hessian_top_eigenvalue``: the largest of ``curvature/hessian_top`` at the last probe point
  (the top Ritz value of the probe loss's Hessian), when the run recorded it.

For each statistic, Spearman's rho with its percentile bootstrap interval
(:mod:`.rank_correlation`) over all runs ("all") and within each level of each factor among
``data``, ``arch`` and ``task`` that has at least two levels ("arch=mlp", ...). A correlation over
fewer than :data:`MIN_RUNS` runs, or with a constant side, is NaN. The bootstrap generator of each
(split, statistic) is ``default_rng([seed, crc32("split|statistic")])``, so an interval does not
depend on which other statistics or splits are present.

**Sign flips**: a statistic's sign is *consistent* when every finite split correlation (the
levels, not "all") has the same sign, and *flips* when both signs occur; it *flips beyond the
intervals* when one split's interval lies wholly above 0 and another's wholly below.
"""

import csv
import io
import zlib
from typing import NamedTuple

import numpy as np

from .rank_correlation import bootstrap_interval, spearman

FACTORS = ("data", "arch", "task")
"""The config fields the runs are split by, as in the paper's figure 3 panels."""

MIN_RUNS = 4
"""A correlation over fewer runs than this is NaN."""

HESSIAN = "hessian_top_eigenvalue"

KEY_STATISTICS = {
    "parameter_norm": "weight norm (figure 3)",
    "weight_srank/delta=0.01/layer=-2": "weight rank, last hidden layer (figure 3; Kumar et al.'s srank)",
    "dead_fraction": "dead units (figure 3)",
    "feature_rank/eps=0.01/layer=-1": "feature rank of the penultimate features (figure 3; Lyle et al. 2022)",
    "dormant_fraction/tau=0.025": "dormant units (Sokar et al. 2023)",
    "gradient_cosine_mean": "mean gradient cosine (figure 2's interference)",
    HESSIAN: "top Hessian eigenvalue (sharpness, figure 14)",
}
"""The statistics of the key table and the scatter plots, with what they stand for."""


def layer_of(name):
    """``(family, layer)`` of a per-layer statistic name ``family/layer=K``; ``(name, None)`` otherwise."""
    family, _, tail = name.rpartition("/")
    if family and tail.startswith("layer=") and tail[6:].lstrip("-").isdigit():
        return family, int(tail[6:])
    return name, None


def run_statistics(run):
    """``{name: value}`` of a run at its last probe point, named as the module docstring says."""
    values = run.record["statistics"].get("values", [])
    found = {}
    if len(values):
        last = np.asarray(values[-1], dtype=np.float64)
        network_wide = {name for name in run.statistic_names if layer_of(name)[1] is None}
        by_family = {}
        for name, value in zip(run.statistic_names, last):
            family, layer = layer_of(name)
            if layer is None:
                found[name] = float(value)
            elif family not in network_wide:
                by_family.setdefault(family, []).append((layer, float(value)))
        for family, layers in by_family.items():
            for position, (_, value) in enumerate(sorted(layers, reverse=True), start=1):
                found[f"{family}/layer=-{position}"] = value
    top = run.record["curvature"].get("hessian_top", [])
    if len(top):
        found[HESSIAN] = float(np.nanmax(top[-1]))
    return found


def splits(runs):
    """``[(label, indices)]``: "all", then ``factor=level`` for each factor of :data:`FACTORS`
    with at least two levels among ``runs`` (levels sorted)."""
    result = [("all", list(range(len(runs))))]
    for factor in FACTORS:
        levels = sorted({str(run.config.get(factor)) for run in runs})
        if len(levels) > 1:
            result += [(f"{factor}={level}", [i for i, run in enumerate(runs) if str(run.config.get(factor)) == level])
                       for level in levels]
    return result


class Correlation(NamedTuple):
    """Spearman's ``rho`` of ``statistic`` with plasticity loss over the ``n`` runs of ``split``
    with both values (``dropped`` runs had a NaN), its interval ``low``..``high`` and the number
    of bootstrap resamples ``kept`` (with a defined rho)."""

    statistic: str
    split: str
    n: int
    dropped: int
    rho: float
    low: float
    high: float
    kept: int


def correlations(runs, resamples, seed, level=0.95):
    """Every :class:`Correlation` of the complete ``runs`` (PlasticityRun), statistics in the
    order they were logged, each over every split."""
    runs = [run for run in runs if not run.diverged]
    values = [run_statistics(run) for run in runs]
    loss = np.array([float(run.attrs["plasticity_loss"]) for run in runs])
    names = list(dict.fromkeys(name for found in values for name in found))
    rows = []
    for name in names:
        x = np.array([found.get(name, np.nan) for found in values])
        for label, members in splits(runs):
            result = spearman(x[members], loss[members])
            if result.n < MIN_RUNS or np.isnan(result.rho):
                rows.append(Correlation(name, label, result.n, result.dropped, np.nan, np.nan, np.nan, 0))
                continue
            rng = np.random.default_rng([seed, zlib.crc32(f"{label}|{name}".encode())])
            interval = bootstrap_interval(x[members], loss[members], resamples, rng, level)
            rows.append(Correlation(name, label, result.n, result.dropped, result.rho, *interval))
    return rows


class Signs(NamedTuple):
    """A statistic's signs across the split levels: ``sign`` is "+" or "-" (consistent), "flips",
    or "n/a" (fewer than two finite split correlations); ``beyond_intervals`` whether one split's
    interval lies above 0 and another's below."""

    sign: str
    beyond_intervals: bool


def signs(rows):
    """The :class:`Signs` of one statistic's rows (the "all" row is not a split)."""
    levels = [r for r in rows if r.split != "all" and np.isfinite(r.rho)]
    if len(levels) < 2:
        return Signs("n/a", False)
    found = {float(np.sign(r.rho)) for r in levels}
    sign = "flips" if {1.0, -1.0} <= found else "+" if 1.0 in found else "-" if -1.0 in found else "0"
    beyond = any(r.low > 0 for r in levels) and any(r.high < 0 for r in levels)
    return Signs(sign, beyond)


def by_statistic(rows):
    """``{statistic: [rows]}`` in the rows' order."""
    grouped = {}
    for row in rows:
        grouped.setdefault(row.statistic, []).append(row)
    return grouped


def rho_text(value):
    """A correlation or a bound with its sign and two decimals ("nan" for NaN)."""
    return f"{value:+.2f}" if np.isfinite(value) else "nan"


def _cell(row, runs_in_split):
    if not np.isfinite(row.rho):
        return f"nan (constant, n={row.n})" if row.n >= MIN_RUNS else f"nan (n={row.n})"
    text = f"{rho_text(row.rho)} [{rho_text(row.low)}, {rho_text(row.high)}]"
    return text + (f" (n={row.n})" if row.n != runs_in_split else "")


def _table(grouped, labels, counts, described=None):
    lines = ["| statistic | " + " | ".join(f"{label} (n={counts[label]})" for label in labels)
             + " | sign across splits | flips beyond intervals |",
             "|---" * (len(labels) + 3) + "|"]
    for statistic, rows in grouped.items():
        cells = {r.split: _cell(r, counts[r.split]) for r in rows}
        name = f"{statistic}: {described[statistic]}" if described else statistic
        s = signs(rows)
        lines.append(f"| {name} | " + " | ".join(cells[label] for label in labels)
                     + f" | {s.sign} | {'yes' if s.beyond_intervals else 'no'} |")
    return lines


def markdown(rows, runs, resamples, seed, level=0.95):
    """The correlation tables as Markdown: a summary of the sign flips, the key statistics
    (:data:`KEY_STATISTICS`) and every statistic; cells ``rho [low, high]`` and n where it
    differs from the split's."""
    complete = [run for run in runs if not run.diverged]
    labels_and_members = splits(complete)
    labels = [label for label, _ in labels_and_members]
    counts = {label: len(members) for label, members in labels_and_members}
    grouped = by_statistic(rows)
    summary = {name: signs(r) for name, r in grouped.items()}
    judged = [name for name, s in summary.items() if s.sign != "n/a"]
    flipping = [name for name in judged if summary[name].sign == "flips"]
    beyond = [name for name in flipping if summary[name].beyond_intervals]
    lines = [f"Spearman's rho of plasticity loss with each statistic at the last probe point, over "
             f"{len(complete)} complete runs; [{level:.0%} percentile bootstrap interval, {resamples} resamples, "
             f"seed {seed}]; NaN: fewer than {MIN_RUNS} runs or a constant side. Splits: "
             + (", ".join(labels[1:]) if len(labels) > 1 else "none (data, arch and task are the same for every run)")
             + ".", ""]
    if judged:
        lines += [f"Across the splits, {len(flipping)} of {len(judged)} statistics change sign "
                  f"({len(beyond)} with intervals on both sides of 0); consistent sign: "
                  + (", ".join(f"{name} ({summary[name].sign})" for name in judged if name not in flipping) or "none")
                  + "."]
        if HESSIAN in summary:
            lines[-1] += f" The top Hessian eigenvalue: {summary[HESSIAN].sign}."
        lines.append("")
    key = {name: KEY_STATISTICS[name] for name in KEY_STATISTICS if name in grouped}
    if key:
        lines += ["### Key statistics", ""] + _table({n: grouped[n] for n in key}, labels, counts, key) + [""]
    lines += ["### Every statistic", ""] + _table(grouped, labels, counts) + [""]
    return "\n".join(lines)


def csv_text(rows):
    """Every correlation as CSV: statistic, split, n, dropped, rho, low, high, resamples kept."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["statistic", "split", "n", "dropped", "rho", "ci_low", "ci_high", "resamples_kept"])
    for r in rows:
        writer.writerow(list(r))
    return out.getvalue()

