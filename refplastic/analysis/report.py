"""What ``refplastic analyse DIR --out REPORT_DIR`` writes, built from a directory of runs.

REPORT_DIR receives (docs/protocol.md, "Analysis", says what each holds):

    report.md             what was found in DIR, the figure-6 table, the figure-3 correlations,
                          the figures drawn or skipped, the DQN section, every run
    figure6.csv           the figure-6 table (:mod:`.figure6`)
    correlations.csv      every correlation of figure 3 (:mod:`.figure3`)
    figure3_scatter.png, probe_loss.png, hessian_density.png, gradient_cosine.png   (:mod:`.plots`)
    scores.csv, learning_curves.png   with DQN results files: what ``refplastic dqn-report`` writes
                                      (:mod:`refplastic.rl.report`)

A figure no run has data for is skipped, and so is every figure without matplotlib (the report
says so). :func:`write` writes every file under a temporary name first and renames them all only
when all are complete.
"""

import contextlib
import os
from typing import NamedTuple

from ..outputs import atomic_path
from ..rl import report as dqn_report
from . import figure3, figure6, plots
from .runs import load_plasticity_runs

HEADER = "# refplastic analysis"
PLOT_EXTRA = "the plots need matplotlib: pip install 'refplastic[plot]'"

TEXT_KINDS = {"report.md": "refplastic-analysis-report", "figure6.csv": "refplastic-figure6",
              "correlations.csv": "refplastic-correlations"}
"""The text files of every report and their kinds (refplastic.outputs.TEXT_SIGNATURES)."""

FIGURES = {
    "figure3_scatter.png": "plasticity loss against key statistics at the last probe point, one point per run "
                           "(figure 3)",
    "probe_loss.png": "mean final probe loss over training per intervention, a panel per architecture",
    "hessian_density.png": "the SLQ spectral density of the probe loss's Hessian over training, per intervention",
    "gradient_cosine.png": "per-example gradient cosine matrices at the first and last probe point (figure 2)",
}
LEARNING_CURVES = "evaluation return of the DQN runs over frames, with and without LayerNorm, a panel per game"
DQN_FILES = {"scores.csv": "refplastic-dqn-scores", "learning_curves.png": "image"}


def output_paths(out_dir, with_dqn):
    """``{file name: (path, kind)}`` of every file a report in ``out_dir`` may write (the DQN
    files only ``with_dqn``), for checking before any work."""
    kinds = {**TEXT_KINDS, **{name: "image" for name in FIGURES}, **(DQN_FILES if with_dqn else {})}
    return {name: (os.path.join(out_dir, name), kind) for name, kind in kinds.items()}


class Report(NamedTuple):
    """``texts`` ``{file name: content}``, ``figures`` ``{file name: draw(path)}`` and the
    figure-6 table as Markdown (``figure6``, for printing)."""

    texts: dict
    figures: dict
    figure6: str


def build(found, directory, resamples, seed):
    """The :class:`Report` of the :class:`refplastic.analysis.runs.Found` files of ``directory``."""
    runs = load_plasticity_runs(found.plasticity)
    dqn_runs = dqn_report.load_runs(found.dqn)
    cells = figure6.figure6_cells(runs)
    rows = figure3.correlations(runs, resamples, seed)
    figures, skipped = _figures(runs, rows, dqn_runs)
    table6 = figure6.markdown(cells) if runs else "No plasticity runs (refplastic run) in DIR: no figure 6 or 3.\n"
    lines = [HEADER, "", *_found_lines(found, runs, directory), ""]
    if runs:
        lines += ["## Figure 6: plasticity loss per intervention and architecture", "",
                  "Plasticity loss: the mean final probe loss at the last probe point minus that at the first; "
                  "mean ± standard error over seeds (sd with ddof 1 / sqrt(n)), n complete runs, diverged runs "
                  "counted apart (Lyle et al. 2023, figure 6).", "", table6,
                  "## Figure 3: correlations of plasticity loss with the logged statistics", "",
                  figure3.markdown(rows, runs, resamples, seed)]
    else:
        lines += [table6]
    lines += ["## Figures", ""] + [f"- {name}: {FIGURES.get(name, LEARNING_CURVES)}" for name in figures]
    lines += [f"- {name}: not drawn: {reason}" for name, reason in skipped] + [""]
    texts = {"report.md": None, "figure6.csv": figure6.csv_text(cells), "correlations.csv": figure3.csv_text(rows)}
    if dqn_runs:
        score_rows = dqn_report.report_rows(dqn_runs)
        lines += ["## DQN runs (refplastic dqn-report)", "",
                  dqn_report.markdown(score_rows, level=3).removeprefix(dqn_report.HEADER).lstrip("\n")]
        texts["scores.csv"] = dqn_report.csv_text(score_rows)
    lines += _run_lines(runs)
    texts["report.md"] = "\n".join(lines).rstrip("\n") + "\n"
    return Report(texts, figures, table6)


def _found_lines(found, runs, directory):
    diverged = sum(run.diverged for run in runs)
    lines = [f"DIR {directory}: {len(runs)} plasticity runs (refplastic run; {len(runs) - diverged} complete, "
             f"{diverged} diverged) and {len(found.dqn)} DQN runs (refplastic dqn)."]
    if found.skipped:
        lines.append(f"Skipped {len(found.skipped)} other .h5 files: " + ", ".join(
            f"{os.path.basename(path)} ({kind or 'unknown'})" for path, kind in found.skipped) + ".")
    return lines


def _figures(runs, rows, dqn_runs):
    """``({file name: draw(path)}, [(file name, why not drawn)])``."""
    if not plots.available():
        names = list(FIGURES) + (["learning_curves.png"] if dqn_runs else [])
        return {}, [(name, PLOT_EXTRA) for name in names]
    complete = [run for run in runs if not run.diverged]
    figures, skipped = {}, []
    needs = {
        "figure3_scatter.png": (any(figure3.KEY_STATISTICS.keys() & figure3.run_statistics(r).keys() for r in complete),
                                lambda path: plots.figure3_scatter(runs, rows, path), "no complete plasticity run"),
        "probe_loss.png": (bool(complete), lambda path: plots.probe_loss_curves(runs, path),
                           "no complete plasticity run"),
        "hessian_density.png": (any(plots.has_data(r, "hessian_density") for r in complete),
                                lambda path: plots.hessian_density(runs, path),
                                "no complete run recorded the SLQ density (set hessian_density=true)"),
        "gradient_cosine.png": (any(plots.has_data(r, "gradient_cosine") for r in complete),
                                lambda path: plots.gradient_cosine(runs, path),
                                "no complete run recorded gradient cosines (set gradient_cosine_examples=N)"),
    }
    for name, (has, draw, reason) in needs.items():
        if has:
            figures[name] = draw
        else:
            skipped.append((name, reason))
    if dqn_runs:
        figures["learning_curves.png"] = lambda path: dqn_report.plot_learning_curves(dqn_runs, path)
    return figures, skipped


def _run_lines(runs):
    if not runs:
        return []
    lines = ["## Plasticity runs", "", "| file | intervention | task | data | arch | seed | status | plasticity loss |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        c = run.config
        status = f"diverged at step {run.attrs.get('diverged_at_step')}" if run.diverged else run.attrs.get("status")
        lines.append(f"| {run.name} | {run.intervention} | {c['task']} | {c['data']} | {c['arch']} | {c['seed']} | "
                     f"{status} | {figure6.number(float(run.attrs['plasticity_loss']), 4)} |")
    return lines + [""]


def write(report, out_dir):
    """Write ``report`` into ``out_dir`` (created if missing, removed again if the writing fails
    and it is empty): every file under its temporary name, then all renamed. Returns the paths."""
    created = not os.path.isdir(out_dir)
    if created:
        os.mkdir(out_dir)
    paths = []
    try:
        with contextlib.ExitStack() as stack:
            for name, content in report.texts.items():
                paths.append(os.path.join(out_dir, name))
                with open(stack.enter_context(atomic_path(paths[-1])), "w") as f:
                    f.write(content)
            for name, draw in report.figures.items():
                paths.append(os.path.join(out_dir, name))
                draw(stack.enter_context(atomic_path(paths[-1])))
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)
        raise
    return paths
