"""The figure-3 correlations and the figure-6 grouping on synthetic results files whose statistics
are set so that every correlation is known: +1 or -1 within a split by construction, scipy's
spearmanr (an oracle) over all runs."""

import csv
import io

import numpy as np
import pytest

from refplastic.analysis import figure3, figure6
from refplastic.analysis.runs import find_results, load_plasticity_runs
from refplastic.plasticity.config import preset
from refplastic.plasticity.results import write_results

stats = pytest.importorskip("scipy.stats")

FEATURE_LAYERS = {"mlp": (3, 6), "cnn": (2, 5, 9, 12)}  # the ReLU layers of each architecture


def write_synthetic(path, *, loss, arch, task, data, seed, values, hessian=None, intervention=(),
                    status="complete"):
    """A results file (docs/results-format.md) with two probe points whose plasticity loss is
    ``loss`` and whose statistics at the last probe point are ``values`` ({name: value}); at the
    first probe point every statistic is 0 (to show that the last one is used)."""
    config = preset("smoke", arch=arch, task=task, data=data, seed=seed, intervention=intervention)
    names = list(values)
    curvature = {} if hessian is None else {"hessian_top": [np.array([0.5, 1.0]), np.array([hessian / 2, hessian])],
                                            "hessian_top_residuals": [np.zeros(2), np.zeros(2)]}
    record = {"train": {},
              "probes": {"step": [0, 60], "final_loss": [np.full(3, 0.25), np.full(3, 0.25 + loss)],
                         "target_variance": [np.ones(3)] * 2, "offset": [0.0, 0.0], "curve": [np.zeros((3, 2))] * 2},
              "statistics": {"values": [np.zeros(len(names)), np.array([values[n] for n in names])]},
              "curvature": curvature}
    write_results(path, config, record, names, {"status": status, "steps": 60, "diverged_at_step":
                                                30 if status == "diverged" else -1,
                                                "train_seconds": 0.0, "probe_seconds": 0.0})


def grid():
    """24 runs: data (builtin / mnist) x arch x task (easy / hard) x 3 seeds, two runs of task
    sparse (a split of 2 runs) and a diverged run; plasticity losses distinct and shuffled."""
    rng = np.random.default_rng(3)
    cells = [(data, arch, task, seed) for data in ("builtin", "mnist:/data/mnist") for arch in ("mlp", "cnn")
             for task in ("easy", "hard") for seed in range(3)] + [("builtin", "mlp", "sparse", 0),
                                                                     ("builtin", "cnn", "sparse", 0)]
    losses = rng.permutation(len(cells)) * 0.01 + 0.005
    return [dict(zip(("data", "arch", "task", "seed"), cell), loss=loss) for cell, loss in zip(cells, losses)]


def statistics_of(run, index):
    """By construction: parameter_norm follows the loss in the MLPs and opposes it in the CNNs;
    the penultimate feature rank (a different layer index in each architecture) follows it
    everywhere; gradient_norm is constant; dead_fraction is missing (NaN) in two runs and its
    per-layer values must not appear; the top Hessian eigenvalue follows the loss everywhere."""
    loss, arch = run["loss"], run["arch"]
    values = {"parameter_norm": 10 + (loss if arch == "mlp" else -loss), "gradient_norm": 1.0,
              "dead_fraction": np.nan if index in (0, 5) else loss ** 2, "dead_fraction/layer=3": -loss}
    layers = FEATURE_LAYERS[arch]
    for position, layer in enumerate(reversed(layers)):
        values[f"feature_rank/eps=0.01/layer={layer}"] = loss * 100 if position == 0 else 7.0 - position * loss
    return values


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("synthetic")
    for i, run in enumerate(grid()):
        write_synthetic(d / f"run{i:02d}.h5", values=statistics_of(run, i), hessian=5 + 40 * run["loss"],
                        **{k: run[k] for k in ("loss", "arch", "task", "data", "seed")})
    write_synthetic(d / "diverged.h5", loss=-5.0, arch="mlp", task="easy", data="builtin", seed=9,
                    values=statistics_of({"loss": 3.0, "arch": "mlp"}, 99), status="diverged")
    return load_plasticity_runs(find_results(d).plasticity)


def by_key(rows):
    return {(r.statistic, r.split): r for r in rows}


@pytest.fixture(scope="module")
def rows(runs):
    return figure3.correlations(runs, resamples=400, seed=0)


def test_statistics_are_taken_at_the_last_probe_point_and_aligned_from_the_output(runs):
    mlp = next(r for r in runs if r.config["arch"] == "mlp" and not r.diverged)
    cnn = next(r for r in runs if r.config["arch"] == "cnn")
    for run in (mlp, cnn):
        found = figure3.run_statistics(run)
        loss = float(run.attrs["plasticity_loss"])
        assert found["feature_rank/eps=0.01/layer=-1"] == pytest.approx(loss * 100, rel=1e-12)
        assert found["hessian_top_eigenvalue"] == pytest.approx(5 + 40 * loss, rel=1e-12)
        assert not any(name.startswith("dead_fraction/") for name in found)
    assert {n for n in figure3.run_statistics(cnn) if n.startswith("feature_rank")} == \
        {f"feature_rank/eps=0.01/layer=-{k}" for k in (1, 2, 3, 4)}


def test_the_splits_are_the_factors_that_vary(rows):
    splits = list(dict.fromkeys(r.split for r in rows))
    assert splits == ["all", "data=builtin", "data=mnist:/data/mnist", "arch=cnn", "arch=mlp",
                      "task=easy", "task=hard", "task=sparse"]


def test_correlations_known_by_construction(runs, rows):
    found = by_key(rows)
    assert found[("parameter_norm", "arch=mlp")].rho == pytest.approx(1.0)
    assert found[("parameter_norm", "arch=cnn")].rho == pytest.approx(-1.0)
    for split in ("all", "arch=mlp", "arch=cnn", "data=builtin", "task=easy", "task=hard"):
        for name in ("feature_rank/eps=0.01/layer=-1", "hessian_top_eigenvalue"):
            assert found[(name, split)].rho == pytest.approx(1.0), (name, split)
    # a perfectly monotone relation: every resample's rho is 1, so is the interval
    assert (found[("hessian_top_eigenvalue", "all")].low, found[("hessian_top_eigenvalue", "all")].high) == (1.0, 1.0)
    assert found[("hessian_top_eigenvalue", "all")].n == 26  # the diverged run is left out


def test_the_overall_correlation_is_scipys(runs, rows):
    complete = [r for r in runs if not r.diverged]
    loss = [float(r.attrs["plasticity_loss"]) for r in complete]
    norm = [figure3.run_statistics(r)["parameter_norm"] for r in complete]
    row = by_key(rows)[("parameter_norm", "all")]
    assert row.rho == pytest.approx(stats.spearmanr(norm, loss).statistic, abs=1e-14)
    assert row.low <= row.rho <= row.high and row.kept == 400


def test_nan_pairs_small_splits_and_constant_sides(rows):
    found = by_key(rows)
    assert (found[("dead_fraction", "all")].n, found[("dead_fraction", "all")].dropped) == (24, 2)
    small = found[("parameter_norm", "task=sparse")]
    assert small.n == 2 and np.isnan(small.rho) and np.isnan(small.low)
    constant = found[("gradient_norm", "all")]
    assert constant.n == 26 and np.isnan(constant.rho) and constant.kept == 0


def test_sign_flips_are_found(rows):
    grouped = figure3.by_statistic(rows)
    assert figure3.signs(grouped["parameter_norm"]) == figure3.Signs("flips", True)
    assert figure3.signs(grouped["hessian_top_eigenvalue"]) == figure3.Signs("+", False)
    assert figure3.signs(grouped["gradient_norm"]) == figure3.Signs("n/a", False)


def test_the_tables_show_the_flips(runs, rows):
    text = figure3.markdown(rows, runs, 400, 0)
    assert "Across the splits, 1 of 7 statistics change sign (1 with intervals on both sides of 0)" in text
    assert "The top Hessian eigenvalue: +." in text
    line = next(line for line in text.splitlines() if line.startswith("| parameter_norm: weight norm"))
    assert line.endswith("| flips | yes |") and "| -1.00 [-1.00, -1.00] | +1.00 [+1.00, +1.00] |" in line
    assert "| arch=cnn (n=13) | arch=mlp (n=13) |" in text and "| task=sparse (n=2) |" in text
    assert "nan (constant, n=26)" in text and "nan (n=2)" in text
    table = list(csv.DictReader(io.StringIO(figure3.csv_text(rows))))
    assert len(table) == len(rows) and table[0].keys() == {"statistic", "split", "n", "dropped", "rho", "ci_low",
                                                            "ci_high", "resamples_kept"}


def only(run, name):
    """``run`` with its logged statistics cut down to ``name``."""
    j = run.statistic_names.index(name)
    values = [np.asarray(v)[j:j + 1] for v in run.record["statistics"]["values"]]
    return run._replace(record={**run.record, "statistics": {"values": values}}, statistic_names=[name])


def test_the_bootstrap_seed_is_per_split_and_statistic(runs, rows):
    again = figure3.correlations(runs, resamples=400, seed=0)
    assert again == rows
    alone = figure3.correlations([only(run, "parameter_norm") for run in runs], resamples=400, seed=0)
    assert {row.statistic for row in alone} == {"parameter_norm", "hessian_top_eigenvalue"}
    assert alone == [row for row in rows if row.statistic in ("parameter_norm", "hessian_top_eigenvalue")]
    other = by_key(figure3.correlations(runs, resamples=400, seed=1))
    changed = [key for key, row in by_key(rows).items() if np.isfinite(row.low) and row.low != other[key].low]
    assert changed


def test_the_figure6_table_is_keyed_by_what_varies(runs):
    cells = figure6.figure6_cells(runs)
    assert {cell.group for cell in cells} >= {(("data", "builtin"), ("task", "easy")),
                                              (("data", "mnist:/data/mnist"), ("task", "hard"))}
    cell = next(c for c in cells if c.arch == "mlp" and c.group == (("data", "builtin"), ("task", "easy")))
    losses = [float(r.attrs["plasticity_loss"]) for r in runs if not r.diverged and r.config["arch"] == "mlp"
              and r.config["data"] == "builtin" and r.config["task"] == "easy"]
    assert (cell.n, cell.diverged) == (3, 1)
    assert cell.mean == pytest.approx(np.mean(losses), rel=1e-12)
    assert cell.se == pytest.approx(np.std(losses, ddof=1) / np.sqrt(3), rel=1e-12)
    text = figure6.markdown(cells)
    assert "### data=builtin, task=easy" in text and "| intervention | cnn | mlp |" in text
    assert figure6.csv_text(cells).startswith("intervention,arch,data,task,n,mean,se,diverged\n")
    single = next(c for c in cells if c.group == (("data", "builtin"), ("task", "sparse")) and c.arch == "mlp")
    assert single.n == 1 and np.isnan(single.se)
