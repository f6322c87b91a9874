"""``refplastic analyse DIR --out REPORT_DIR`` on the results files of real smoke runs: the figure-6
table against a hand computation from the files, the files it writes, and what it refuses."""

import csv
import io
import json
import shutil
import signal
import statistics
import sys

import h5py
import numpy as np
import pytest

from refplastic.analysis import report
from refplastic.analysis.figure6 import figure6_cells
from refplastic.analysis.runs import find_results, load_plasticity_runs
from refplastic.outputs import file_kind
from refplastic.plasticity import experiment
from refplastic.plasticity.config import preset
from refplastic.rl.config import preset as dqn_preset
from refplastic.rl.results import write_results as write_dqn_results
from test_cli_bad_input import assert_one_line_error, run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Four smoke runs (interventions none and layernorm x seeds 0 and 1), one with its checkpoint."""
    d = tmp_path_factory.mktemp("runs")
    for intervention in ((), ("layernorm",)):
        for seed in (0, 1):
            name = f"{'+'.join(intervention) or 'none'}-{seed}"
            checkpoint = d / f"{name}.ck.h5" if seed == 0 and not intervention else None
            finished = experiment.run_experiment(preset("smoke", intervention=intervention, seed=seed), checkpoint)
            experiment.write(finished, d / f"{name}.h5")
    return d


def hand_figure6(directory):
    """{intervention: (n, mean, SE)} computed from the files with h5py alone."""
    losses = {}
    for path in sorted(directory.glob("*.h5")):
        with h5py.File(path, "r") as f:
            if f.attrs["format"] != "refplastic-run" or f.attrs["status"] != "complete":
                continue
            final = f["probes/final_loss"][()]
            intervention = "+".join(json.loads(f.attrs["config"])["intervention"]) or "none"
        losses.setdefault(intervention, []).append(float(np.mean(final[-1]) - np.mean(final[0])))
    return {k: (len(v), statistics.fmean(v), statistics.stdev(v) / len(v) ** 0.5) for k, v in losses.items()}


def test_the_figure6_table_is_the_hand_computation(runs_dir):
    expected = hand_figure6(runs_dir)
    cells = figure6_cells(load_plasticity_runs(find_results(runs_dir).plasticity))
    assert [(c.intervention, c.arch, c.group, c.diverged) for c in cells] == [("none", "mlp", (), 0),
                                                                              ("layernorm", "mlp", (), 0)]
    for cell in cells:
        n, mean, se = expected[cell.intervention]
        assert cell.n == n == 2
        assert cell.mean == pytest.approx(mean, rel=1e-12, abs=1e-15)
        assert cell.se == pytest.approx(se, rel=1e-12)


def write_dqn(path, game, layernorm, seed, returns):
    """A DQN results file (docs/dqn.md) with evaluations of mean returns ``returns``."""
    config = dqn_preset("smoke", game=game, layernorm=layernorm, seed=seed)
    record = {"train": {}, "episodes": {}, "probes": {}, "statistics": {},
              "evaluation": {"frame": [0, 960], "return_mean": list(returns),
                             "returns": [np.array([r]) for r in returns], "lengths": [np.array([100])] * 2}}
    write_dqn_results(path, config, record, [], {"status": "complete", "frames": 960, "game": game})


@pytest.fixture
def grid_dir(runs_dir, tmp_path):
    """The smoke runs with what a grid directory also holds: a manifest, logs, a checkpoint, a
    diverged run (a copy marked so), two DQN runs and a file of another program."""
    d = tmp_path / "grid"
    shutil.copytree(runs_dir, d)
    (d / "grid.json").write_text('{"runs": 4}\n')
    (d / "logs").mkdir()
    (d / "logs" / "none-0.log").write_text("step 60\n")
    with h5py.File(d / "theirs.h5", "w") as f:
        f["x"] = np.zeros(3)
    shutil.copy(d / "none-1.h5", d / "none-2.h5")
    with h5py.File(d / "none-2.h5", "a") as f:
        f.attrs["status"], f.attrs["diverged_at_step"] = "diverged", 30
    write_dqn(d / "pong-base.h5", "pong", False, 0, [-21.0, -20.0])
    write_dqn(d / "pong-ln.h5", "pong", True, 0, [-21.0, -15.0])
    return d


def test_analyse_writes_the_report(grid_dir, runs_dir, tmp_path):
    out = run("analyse", grid_dir, "--out", tmp_path / "report", "--bootstrap", "200", "--seed", "3")
    assert out.returncode == 0, out.stderr
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert written == {"report.md", "figure6.csv", "correlations.csv", "scores.csv", "figure3_scatter.png",
                       "probe_loss.png", "hessian_density.png", "gradient_cosine.png", "learning_curves.png"}
    for name in written:
        path = tmp_path / "report" / name
        if name.endswith(".png"):
            assert path.read_bytes().startswith(PNG) and file_kind(path) == "image/png"
        else:
            assert file_kind(path) == {**report.TEXT_KINDS, **report.DQN_FILES}[name]
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.startswith("# refplastic analysis\n")
    assert "5 plasticity runs (refplastic run; 4 complete, 1 diverged) and 2 DQN runs" in text
    assert "theirs.h5 (HDF5)" in text and "none-0.ck.h5 (refplastic-run-checkpoint)" in text
    assert "200 resamples, seed 3" in text and "## DQN runs (refplastic dqn-report)" in text
    assert "| pong | -20 (1) |" in text and "### Score: the mean return of the last evaluation" in text
    assert "| none | " in out.stdout and "wrote " in out.stdout
    table = list(csv.DictReader(io.StringIO((tmp_path / "report" / "figure6.csv").read_text())))
    expected = hand_figure6(runs_dir)
    for row in table:
        n, mean, se = expected[row["intervention"]]
        assert (int(row["n"]), float(row["mean"]), float(row["se"])) == (n, pytest.approx(mean, rel=1e-12),
                                                                          pytest.approx(se, rel=1e-12))
        assert int(row["diverged"]) == (row["intervention"] == "none")
    assert "game,baseline_seeds," in (tmp_path / "report" / "scores.csv").read_text()
    again = run("analyse", grid_dir, "--out", tmp_path / "report", "--bootstrap", "200", "--seed", "3")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "report" / "report.md").read_text() == text
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(written)


def test_without_matplotlib_the_tables_are_written(runs_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = run("analyse", runs_dir, "--out", tmp_path / "report", "--bootstrap", "20")
    assert out.returncode == 0, out.stderr
    assert "no figures drawn: the plots need matplotlib: pip install 'refplastic[plot]'" in out.stdout
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["correlations.csv", "figure6.csv", "report.md"]
    assert "- probe_loss.png: not drawn: the plots need matplotlib" in (tmp_path / "report" / "report.md").read_text()


def test_a_figure_without_data_is_skipped_and_said(runs_dir, tmp_path):
    d = tmp_path / "runs"
    d.mkdir()
    shutil.copy(runs_dir / "none-0.h5", d)
    with h5py.File(d / "none-0.h5", "a") as f:
        del f["curvature/slq_nodes"], f["curvature/slq_weights"]
    out = run("analyse", d, "--out", tmp_path / "report", "--bootstrap", "20")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "report" / "hessian_density.png").exists()
    assert "- hessian_density.png: not drawn: no complete run recorded the SLQ density" in \
        (tmp_path / "report" / "report.md").read_text()


def test_the_report_directory_may_not_be_dir(runs_dir, tmp_path):
    for out_dir in (runs_dir, runs_dir / "."):
        assert_one_line_error(run("analyse", runs_dir, "--out", out_dir), 2, "is DIR itself")
    assert not list(runs_dir.glob("report.md"))


def test_a_directory_without_results_is_one_line(runs_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = run("analyse", empty, "--out", tmp_path / "report")
    assert_one_line_error(out, 1, f"{empty}: no results files of refplastic run or refplastic dqn in it")
    shutil.copy(runs_dir / "none-0.ck.h5", empty)
    (empty / "grid.json").write_text("{}\n")
    assert_one_line_error(run("analyse", empty, "--out", tmp_path / "report"), 1, "no results files")
    assert not (tmp_path / "report").exists()


@pytest.mark.parametrize("content", [b"not an HDF5 file\n", b""])
def test_a_damaged_results_file_is_named(runs_dir, tmp_path, content):
    d = tmp_path / "runs"
    shutil.copytree(runs_dir, d)
    (d / "broken.h5").write_bytes(content)
    out = run("analyse", d, "--out", tmp_path / "report")
    assert_one_line_error(out, 1, f"{d / 'broken.h5'}: not a readable HDF5 file")
    assert not (tmp_path / "report").exists()


def test_an_output_of_another_kind_is_kept_unless_forced(runs_dir, tmp_path):
    (tmp_path / "report").mkdir()
    notes = tmp_path / "report" / "report.md"
    notes.write_text("# my notes\n")
    out = run("analyse", runs_dir, "--out", tmp_path / "report")
    assert_one_line_error(out, 2, "--force to overwrite it")
    assert "'--out (report.md)'" in out.stderr and notes.read_text() == "# my notes\n"
    assert [p.name for p in (tmp_path / "report").iterdir()] == ["report.md"]
    out = run("analyse", runs_dir, "--out", tmp_path / "report", "--bootstrap", "20", "--force")
    assert out.returncode == 0, out.stderr
    assert notes.read_text().startswith("# refplastic analysis\n")


@pytest.mark.parametrize("case,message", [("file", "is a file"),
                                          ("missing", "directory does not exist")])
def test_a_bad_report_directory_is_refused(runs_dir, tmp_path, case, message):
    out_dir = tmp_path / "file" if case == "file" else tmp_path / "missing" / "report"
    if case == "file":
        out_dir.write_text("x\n")
    out = run("analyse", runs_dir, "--out", out_dir)
    assert_one_line_error(out, 2, message)
    assert "'--out'" in out.stderr


def test_a_signal_while_writing_leaves_nothing_behind(runs_dir, tmp_path, monkeypatch):
    """Every file is complete under its temporary name before any is renamed: SIGTERM while the
    last figure is drawn leaves no file, no temporary and no report directory."""
    from refplastic.analysis import plots

    def interrupted(*args):
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(plots, "gradient_cosine", interrupted)
    out = run("analyse", runs_dir, "--out", tmp_path / "report", "--bootstrap", "20")
    assert out.returncode == 143, out.stderr
    assert out.stderr.strip() == "stopped by SIGTERM; nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_dqn_runs_alone_give_the_dqn_report(tmp_path):
    d = tmp_path / "dqn"
    d.mkdir()
    write_dqn(d / "pong-base.h5", "pong", False, 0, [-21.0, -20.0])
    write_dqn(d / "pong-ln.h5", "pong", True, 0, [-21.0, -15.0])
    out = run("analyse", d, "--out", tmp_path / "report")
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert "No plasticity runs (refplastic run) in DIR: no figure 6 or 3." in text and "## Figure 6" not in text
    assert "| pong | -20 (1) | 0.0198 | -15 (1) |" in text
    assert (tmp_path / "report" / "learning_curves.png").read_bytes().startswith(PNG)
    assert (tmp_path / "report" / "scores.csv").read_text().startswith("game,baseline_seeds,")
