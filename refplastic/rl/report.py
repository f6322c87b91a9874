"""Per-game scores of DQN runs, the improvement of LayerNorm over the baseline, learning curves.

A run's **score** is the mean return of its last evaluation (``eval_episodes`` whole episodes
with epsilon = eval_epsilon at the end of training). For each game and variant (baseline, i.e.
without LayerNorm, and LayerNorm) the report gives the mean and standard deviation of the scores
over seeds and the mean's human-normalised score ``(score - random) / (human - random)``; for
each game with both variants, the improvement of LayerNorm over the baseline as Lyle et al.
(2023, figure 7) measure it, after Wang et al. (2016, "Dueling network architectures for deep
reinforcement learning", sec. 4.2)::

    improvement = (score_layernorm - score_baseline) / (max(human, score_baseline) - random)

with the human and random reference scores of :mod:`refplastic.rl.scores` (DQN Zoo's
``atari_data.py``), and the median improvement over the games.
"""

import csv
import io
import json
import os

import numpy as np

from .results import final_evaluation, read_results
from .scores import human_normalised, improvement, reference_scores

VARIANTS = ("baseline", "layernorm")
HEADER = "# DQN report"


def load_runs(paths):
    """``[(path, config dict, record)]`` of DQN results files (one-line ValueErrors for others)."""
    runs = []
    for path in paths:
        attrs, record, _ = read_results(path)
        runs.append((path, json.loads(attrs["config"]), record))
    return runs


def scores_by_game(runs):
    """``{game: {variant: [(seed, score, path)]}}`` over ``runs`` (a run without evaluation has a
    NaN score)."""
    table = {}
    for path, config, record in runs:
        variant = VARIANTS[bool(config["layernorm"])]
        table.setdefault(config["game"], {}).setdefault(variant, []).append(
            (config["seed"], final_evaluation(record), path))
    return table


def summary_rows(table):
    """One row per game: each variant's seeds, mean and standard deviation of the scores and the
    mean's human-normalised score, and the improvement when both variants are there."""
    rows = []
    for game in sorted(table):
        row = {"game": game}
        for variant in VARIANTS:
            scores = np.array([s for _, s, _ in table[game].get(variant, [])], dtype=np.float64)
            mean = float(scores.mean()) if len(scores) else float("nan")
            row[variant] = {"seeds": len(scores), "mean": mean,
                            "sd": float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"),
                            "human_normalised": human_normalised(mean, game)}
        row["improvement"] = improvement(row["layernorm"]["mean"], row["baseline"]["mean"], game)
        rows.append(row)
    return rows


def median_improvement(rows):
    """The median improvement over the games that have one (NaN if none)."""
    values = [r["improvement"] for r in rows if np.isfinite(r["improvement"])]
    return float(np.median(values)) if values else float("nan")


def markdown(rows):
    """The report as Markdown: the table, the median improvement and the reference scores' source."""
    lines = [HEADER, "",
             "Score: the mean return of the last evaluation of each run; mean +- standard deviation over "
             "seeds (n); HNS: the mean's human-normalised score; improvement: Wang et al. (2016)'s "
             "(LN - base) / (max(human, base) - random).", "",
             "| game | baseline (n) | HNS | LayerNorm (n) | HNS | improvement | random | human |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        random_score, human_score = reference_scores(r["game"])
        cells = [r["game"]]
        for variant in VARIANTS:
            v = r[variant]
            cells += [f"{_number(v['mean'])} +- {_number(v['sd'])} ({v['seeds']})", _number(v["human_normalised"], 3)]
        cells += [_number(r["improvement"], 3), _number(random_score), _number(human_score)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Median improvement over {sum(np.isfinite(r['improvement']) for r in rows)} games: "
                  f"{_number(median_improvement(rows), 3)} (the paper: about +0.22 over 57 games at 200M frames).",
              "", "Reference scores: DQN Zoo, dqn_zoo/atari_data.py (refplastic.rl.scores)."]
    return "\n".join(lines) + "\n"


def csv_text(rows):
    """The table as CSV, one row per game."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["game", "baseline_seeds", "baseline_mean", "baseline_sd", "baseline_hns", "layernorm_seeds",
                     "layernorm_mean", "layernorm_sd", "layernorm_hns", "improvement"])
    for r in rows:
        writer.writerow([r["game"]] + [r[v][k] for v in VARIANTS for k in ("seeds", "mean", "sd", "human_normalised")]
                        + [r["improvement"]])
    return out.getvalue()


def _number(value, digits=4):
    return "nan" if not np.isfinite(value) else f"{value:.{digits}g}"


def plot_learning_curves(runs, path):
    """One panel per game: the evaluation return over frames (millions) of each run, thin, and
    the mean over seeds of each variant, thick; saved to ``path`` (PNG). Needs matplotlib."""
    from matplotlib.figure import Figure

    games = sorted({config["game"] for _, config, _ in runs})
    columns = min(3, len(games))
    rows = -(-len(games) // columns)
    fig = Figure(figsize=(4.5 * columns, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    colours = {"baseline": "tab:blue", "layernorm": "tab:orange"}
    for ax, game in zip(axes, games):
        for variant in VARIANTS:
            curves = [(np.asarray(r["evaluation"]["frame"]) / 1e6, np.asarray(r["evaluation"]["return_mean"]))
                      for _, config, r in runs if config["game"] == game and VARIANTS[bool(config["layernorm"])]
                      == variant and len(r["evaluation"].get("frame", []))]
            for x, y in curves:
                ax.plot(x, y, color=colours[variant], alpha=0.35, linewidth=1)
            if curves:
                length = min(len(x) for x, _ in curves)
                mean = np.mean([y[:length] for _, y in curves], axis=0)
                label = f"{'LayerNorm' if variant == 'layernorm' else 'baseline'} (mean of {len(curves)})"
                ax.plot(curves[0][0][:length], mean, color=colours[variant], linewidth=2.2, label=label)
        random_score, human_score = reference_scores(game)
        ax.axhline(random_score, color="grey", linestyle=":", linewidth=1, label="random")
        ax.set_title(game)
        ax.set_xlabel("environment frames (millions)")
        ax.set_ylabel("evaluation return (game score)")
        ax.legend(fontsize=8)
    for ax in axes[len(games):]:
        ax.set_visible(False)
    fig.suptitle("Double DQN with and without LayerNorm: mean evaluation return over training")
    fig.savefig(path, format="png", dpi=110)


def output_paths(directory):
    """The files ``dqn-report --out DIRECTORY`` writes."""
    return {name: os.path.join(directory, name) for name in ("report.md", "scores.csv", "learning_curves.png")}
