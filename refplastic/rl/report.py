"""Per-game scores of DQN runs, the improvement of LayerNorm over the baseline, learning curves.

A run has two **scores**, each reported in its own table:

- ``final_evaluation``: the mean return of its last evaluation (``eval_episodes`` whole episodes
  with epsilon = eval_epsilon at the end of training), the paper's measure;
- ``late_training``: the mean return of the training episodes that ended in the last fifth of
  the run's frames, ``mean{R_e : frame_e > 0.8 F}``. Short runs evaluate on few episodes (4 at
  the laptop preset), and one evaluation's mean is noisy; the late training episodes are many
  more, played at the final training epsilon (0.02 at the laptop preset, 0.01 when evaluating).

For each score, game and variant (baseline, i.e. without LayerNorm, and LayerNorm) the report
gives the mean and standard deviation of the scores over seeds and the mean's human-normalised
score ``(score - random) / (human - random)``; for each game with both variants, the improvement
of LayerNorm over the baseline as Lyle et al. (2023, figure 7) measure it, after Wang et al.
(2016, "Dueling network architectures for deep reinforcement learning", sec. 4.2)::

    improvement = (score_layernorm - score_baseline) / (max(human, score_baseline) - random)

with the human and random reference scores of :mod:`refplastic.rl.scores` (DQN Zoo's
``atari_data.py``), and the median improvement over the games.
"""

import csv
import io
import json
import os
import warnings

import numpy as np

from .results import final_evaluation, read_results
from .scores import human_normalised, improvement, reference_scores

VARIANTS = ("baseline", "layernorm")
HEADER = "# DQN report"
LATE_FRACTION = 0.2


def training_episodes(record):
    """``(frames, returns)`` of a record's training episodes, each at the frame it ended."""
    episodes = record["episodes"]
    return (np.asarray(episodes.get("frame", []), dtype=np.float64),
            np.asarray(episodes.get("return", []), dtype=np.float64))


def late_training_return(record):
    """The mean return of the training episodes that ended after frame ``(1 - LATE_FRACTION) F``,
    ``F`` the run's last logged frame (NaN if none did)."""
    frames, returns = training_episodes(record)
    last = record["train"].get("frame", [])
    if not len(frames) or not len(last):
        return float("nan")
    late = returns[frames > (1 - LATE_FRACTION) * float(last[-1])]
    return float(late.mean()) if len(late) else float("nan")


SCORES = {
    "final_evaluation": (final_evaluation, "the mean return of the last evaluation of each run"),
    "late_training": (late_training_return, "the mean return of the training episodes that ended in the "
                                            "last fifth of each run's frames"),
}


def load_runs(paths):
    """``[(path, config dict, record)]`` of DQN results files (one-line ValueErrors for others)."""
    runs = []
    for path in paths:
        attrs, record, _ = read_results(path)
        runs.append((path, json.loads(attrs["config"]), record))
    return runs


def run_frames(record):
    """The last frame a run's record logged (0 for a record without training)."""
    frames = record["train"].get("frame", [])
    return int(frames[-1]) if len(frames) else 0


def scores_by_game(runs, score):
    """``{game: {variant: [(seed, score(record), path, frames)]}}`` over ``runs`` (a run without the
    episodes a score needs has a NaN score; ``frames`` from :func:`run_frames`)."""
    table = {}
    for path, config, record in runs:
        variant = VARIANTS[bool(config["layernorm"])]
        table.setdefault(config["game"], {}).setdefault(variant, []).append(
            (config["seed"], score(record), path, run_frames(record)))
    return table


def report_rows(runs):
    """``{score name: summary rows}`` for each of :data:`SCORES`."""
    return {name: summary_rows(scores_by_game(runs, score)) for name, (score, _) in SCORES.items()}


def summary_rows(table):
    """One row per game: each variant's seeds, mean and standard deviation of the scores, the
    mean's human-normalised score and its runs' lengths in frames (sorted, distinct), and the
    improvement when both variants are there."""
    rows = []
    for game in sorted(table):
        row = {"game": game}
        for variant in VARIANTS:
            runs = table[game].get(variant, [])
            scores = np.array([s for _, s, _, _ in runs], dtype=np.float64)
            mean = float(scores.mean()) if len(scores) else float("nan")
            row[variant] = {"seeds": len(scores), "mean": mean, "frames": sorted({f for *_, f in runs}),
                            "sd": float(scores.std(ddof=1)) if len(scores) > 1 else float("nan"),
                            "human_normalised": human_normalised(mean, game)}
        row["improvement"] = improvement(row["layernorm"]["mean"], row["baseline"]["mean"], game)
        rows.append(row)
    return rows


def median_improvement(rows):
    """The median improvement over the games that have one (NaN if none)."""
    values = [r["improvement"] for r in rows if np.isfinite(r["improvement"])]
    return float(np.median(values)) if values else float("nan")


def markdown(rows_by_score, level=2):
    """The report as Markdown: for each score a section (heading ``level``) with its table and
    median improvement, then the reference scores' source."""
    lines = [HEADER, "",
             "Mean +- standard deviation over seeds (n); HNS: the mean's human-normalised score; improvement: "
             "Wang et al. (2016)'s (LN - base) / (max(human, base) - random).", ""]
    for name, rows in rows_by_score.items():
        lines += [f"{'#' * level} Score: {SCORES[name][1]} ({name})", "",
                  "| game | baseline (n) | HNS | LayerNorm (n) | HNS | improvement | random | human |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            random_score, human_score = reference_scores(r["game"])
            cells = [r["game"]]
            for variant in VARIANTS:
                v = r[variant]
                spread = f" +- {_number(v['sd'])}" if v["seeds"] > 1 else ""
                cells += [f"{_number(v['mean'])}{spread} ({v['seeds']})", _number(v["human_normalised"], 3)]
            cells += [_number(r["improvement"], 3), _number(random_score), _number(human_score)]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Median improvement over {sum(np.isfinite(r['improvement']) for r in rows)} games: "
                      f"{_number(median_improvement(rows), 3)} (the paper: about +0.22 over 57 games at 200M "
                      "frames, final scores).", ""]
    lines += frames_lines(next(iter(rows_by_score.values()), []))
    lines += ["Reference scores: DQN Zoo, dqn_zoo/atari_data.py (refplastic.rl.scores)."]
    return "\n".join(lines) + "\n"


def frames_lines(rows):
    """Markdown lines: each game's run lengths in frames per variant, after a warning when a game's
    runs differ in length (their scores are then compared at different points of training)."""
    def lengths(frames):
        return "-" if not frames else "/".join(f"{f:,}" for f in frames)

    unequal = [r["game"] for r in rows if len({f for v in VARIANTS for f in r[v]["frames"]}) > 1]
    lines = []
    if unequal:
        lines += [f"**Runs of unequal length** in {', '.join(unequal)}: their scores are compared at different "
                  "points of training.", ""]
    lines += ["Frames per run: " + "; ".join(f"{r['game']} baseline {lengths(r['baseline']['frames'])}, "
                                              f"LayerNorm {lengths(r['layernorm']['frames'])}" for r in rows) + ".", ""]
    return lines


def csv_text(rows_by_score):
    """The tables as CSV, one row per game and score."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["game", "baseline_seeds", "baseline_mean", "baseline_sd", "baseline_hns", "layernorm_seeds",
                     "layernorm_mean", "layernorm_sd", "layernorm_hns", "improvement", "score"])
    for name, rows in rows_by_score.items():
        for r in rows:
            writer.writerow([r["game"]] + [r[v][k] for v in VARIANTS for k in ("seeds", "mean", "sd", "human_normalised")]
                            + [r["improvement"], name])
    return out.getvalue()


def _number(value, digits=4):
    return "nan" if not np.isfinite(value) else f"{value:.{digits}g}"


def binned_training_return(record, edges):
    """The mean return of the training episodes ending in each frame bin ``(edges[i], edges[i+1]]``
    (NaN for a bin without one)."""
    frames, returns = training_episodes(record)
    index = np.searchsorted(edges, frames, side="left") - 1
    inside = (index >= 0) & (index < len(edges) - 1)
    sums = np.bincount(index[inside], weights=returns[inside], minlength=len(edges) - 1)
    counts = np.bincount(index[inside], minlength=len(edges) - 1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


TRAINING_BINS = 20


def _finite(x, y):
    """The points of a curve where ``y`` is finite (a line drawn over a bin without episodes)."""
    keep = np.isfinite(y)
    return x[keep], y[keep]


def plot_learning_curves(runs, path):
    """Two panels per game: above, the evaluation return over frames (millions); below, the mean
    return of the training episodes in each of TRAINING_BINS equal frame bins (bins without an
    episode skipped). Each run thin, the mean over seeds of each variant thick; saved to ``path``
    (PNG). Needs matplotlib."""
    from matplotlib.figure import Figure

    games = sorted({config["game"] for _, config, _ in runs})
    columns = min(3, len(games))
    game_rows = -(-len(games) // columns)
    fig = Figure(figsize=(4.5 * columns, 6.2 * game_rows), layout="constrained")
    axes = fig.subplots(2 * game_rows, columns, squeeze=False)
    colours = {"baseline": "tab:blue", "layernorm": "tab:orange"}
    for i, game in enumerate(games):
        top, bottom = axes[2 * (i // columns), i % columns], axes[2 * (i // columns) + 1, i % columns]
        of_game = [(config, r) for _, config, r in runs if config["game"] == game]
        last = max(run_frames(r) for _, r in of_game)
        edges = np.linspace(0, last, TRAINING_BINS + 1)
        for variant in VARIANTS:
            name = "LayerNorm" if variant == "layernorm" else "baseline"
            records = [r for config, r in of_game if VARIANTS[bool(config["layernorm"])] == variant]
            evaluations = [(np.asarray(r["evaluation"]["frame"]) / 1e6, np.asarray(r["evaluation"]["return_mean"]))
                           for r in records if len(r["evaluation"].get("frame", []))]
            training = [binned_training_return(r, edges) for r in records] if last > 0 else []
            for ax, curves in ((top, evaluations), (bottom, [((edges[:-1] + edges[1:]) / 2e6, y) for y in training])):
                for x, y in curves:
                    ax.plot(*_finite(x, y), color=colours[variant], alpha=0.35, linewidth=1)
                if curves:
                    length = min(len(x) for x, _ in curves)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # a bin no run has an episode in
                        mean = np.nanmean([y[:length] for _, y in curves], axis=0)
                    ax.plot(*_finite(curves[0][0][:length], mean), color=colours[variant], linewidth=2.2,
                            label=f"{name} (mean of {len(curves)})")
        random_score, _ = reference_scores(game)
        for ax, what in ((top, "evaluation return"), (bottom, "training episode return")):
            ax.axhline(random_score, color="grey", linestyle=":", linewidth=1, label="random")
            ax.set_title(f"{game}: {what}")
            ax.set_xlabel("environment frames (millions)")
            ax.set_ylabel("return (game score)")
            ax.legend(fontsize=8)
    for i in range(len(games), game_rows * columns):
        axes[2 * (i // columns), i % columns].set_visible(False)
        axes[2 * (i // columns) + 1, i % columns].set_visible(False)
    fig.suptitle("Double DQN with and without LayerNorm")
    fig.savefig(path, format="png", dpi=110)


def output_paths(directory):
    """The files ``dqn-report --out DIRECTORY`` writes."""
    return {name: os.path.join(directory, name) for name in ("report.md", "scores.csv", "learning_curves.png")}
