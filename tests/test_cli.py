"""The command line as a user meets it: help, version, train, and one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import refplastic

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_help_and_version():
    out = run("--help")
    assert out.returncode == 0 and "train" in out.stdout
    out = run("--version")
    assert out.returncode == 0 and refplastic.__version__ in out.stdout


def test_train_prints_a_learning_curve_and_writes_a_checkpoint(tmp_path):
    out = run("train", "--steps", "40", "--eval-every", "20", "--hidden", "16", "--out", str(tmp_path / "r.h5"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["step", "train_loss", "test_loss", "train_accuracy", "test_accuracy"]
    assert [line.split()[0] for line in lines[1:4]] == ["0", "20", "40"]
    assert (tmp_path / "r.h5").exists()
    again = run("train", "--steps", "40", "--eval-every", "20", "--hidden", "16")
    assert again.stdout.splitlines()[:4] == lines[:4]


@pytest.mark.parametrize("args,message", [
    (["train", "--steps", "0"], "--steps"),
    (["train", "--hidden", "a,b"], "comma-separated integers"),
    (["train", "--hidden", "64,,64"], "comma-separated integers"),
    (["train", "--activation", "Swish"], "--activation"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--lr", "nan"], "finite number > 0"),
    (["train", "--seed", "-1"], "--seed"),
    (["curvature", "net.h5", "--seed", "-2"], "--seed"),
    (["stats", "net.h5", "--seed", "-3"], "--seed"),
    (["train", "--lr", "inf"], "finite number > 0"),
    (["verify", "theirs.h5", "--rtol", "nan"], "--rtol"),
    (["verify", "theirs.h5", "--rtol", "1e-8x"], "is not a number"),
    (["train", "--out", "/no/such/dir/r.h5", "--steps", "1"], "directory does not exist"),
    (["frobnicate"], "No such command"),
])
def test_bad_arguments_give_one_line_and_nonzero_exit(args, message):
    out = run(*args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], out.stderr


def test_a_network_too_large_for_memory_is_one_line():
    out = run("train", "--hidden", "10000000,10000000", "--steps", "1")  # 10^14 parameters: 728 TiB, past any address space
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("Error: Unable to allocate")


def test_resume_from_a_foreign_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("hello")
    out = run("train", "--steps", "5", "--checkpoint", str(bad))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"Error: Invalid value for '--checkpoint': {bad} exists and is a file refplastic did not write, "
        f"not a refplastic checkpoint file to resume from; give another path"]
    assert bad.read_text() == "hello"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "net.h5"
    out = run("train", "--steps", "20", "--hidden", "8", "--eval-every", "10", "--out", str(path))
    assert out.returncode == 0, out.stderr
    return path


def test_curvature_on_the_training_data(trained, tmp_path):
    from refplastic.curvature.report import read_report_h5

    out = run("curvature", str(trained), "--examples", "32", "--quantities", "hessian_eigenvalues,hessian_lanczos",
              "--top-k", "3", "--out", str(tmp_path / "c.h5"))
    assert out.returncode == 0, out.stderr
    report = read_report_h5(tmp_path / "c.h5")
    exact = report["hessian"]["eigenvalues"]
    assert abs(report["hessian"]["lanczos"]["top"][-1] - exact[-1]) <= 1e-8 * abs(exact[-1])
    assert "hessian/largest_eigenvalue" in out.stdout


def test_curvature_on_a_data_file(trained, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "batch.npz", inputs=rng.normal(size=(16, 32)), targets=rng.integers(0, 10, size=16))
    out = run("curvature", str(trained), "--data", str(tmp_path / "batch.npz"), "--quantities", "ggn_trace")
    assert out.returncode == 0, out.stderr
    assert "16 examples" in out.stdout and "ggn/trace (Hutchinson)" in out.stdout


@pytest.mark.parametrize("extra,message", [
    (["--quantities", "curvy"], "unknown quantity curvy"),
    (["--data", "/no/such.npz"], "no such file"),
    (["--data", "BAD"], "missing array 'targets'"),
    (["--data", "WIDE"], "last dimension 32"),
])
def test_curvature_bad_input_is_one_line(trained, tmp_path, extra, message):
    import numpy as np

    np.savez(tmp_path / "bad.npz", inputs=np.zeros((4, 32)))
    np.savez(tmp_path / "wide.npz", inputs=np.zeros((4, 7)), targets=np.zeros(4, dtype=np.int64))
    extra = [{"BAD": str(tmp_path / "bad.npz"), "WIDE": str(tmp_path / "wide.npz")}.get(e, e) for e in extra]
    out = run("curvature", str(trained), *extra)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert message in out.stderr.strip().splitlines()[-1], out.stderr


def test_stats_prints_and_writes_named_values(trained, tmp_path):
    from refplastic.stats import read_statistics_h5

    out = run("stats", str(trained), "--examples", "64", "--names", "dead_fraction,feature_effective_rank,parameter_distance",
              "--init", str(trained), "--out", str(tmp_path / "s.h5"))
    assert out.returncode == 0, out.stderr
    values, attrs = read_statistics_h5(tmp_path / "s.h5")
    assert values["parameter_distance"] == 0.0
    assert "feature_effective_rank/layer=1" in values and attrs["num_examples"] == 64
    assert "dead_fraction/layer=1" in out.stdout


def test_stats_bad_name_is_one_line(trained):
    out = run("stats", str(trained), "--names", "dormant_fraction/tau=abc")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_reference_compute_verify_round_trip(tmp_path):
    import h5py
    import numpy as np

    suite = tmp_path / "suite.h5"
    out = run("reference", "--out", str(suite))
    assert out.returncode == 0, out.stderr
    stripped = tmp_path / "in.h5"
    with h5py.File(suite, "r") as src, h5py.File(stripped, "w") as dst:
        case = src["cases/mlp_tanh_mse"]
        group = dst.create_group("cases/mine")
        for key in ("architecture", "loss", "dtype", "mode"):
            group.attrs[key] = case.attrs[key]
        for key in ("inputs", "targets", "params"):
            src.copy(case[key], group, key)
    out = run("compute", str(stripped), "--out", str(tmp_path / "done.h5"))
    assert out.returncode == 0, out.stderr
    with h5py.File(tmp_path / "done.h5", "r") as done, h5py.File(suite, "r") as src:
        np.testing.assert_array_equal(done["cases/mine/flat_grad"][()], src["cases/mlp_tanh_mse/flat_grad"][()])

    copy = tmp_path / "copy.h5"
    copy.write_bytes(suite.read_bytes())
    assert run("verify", str(copy), "--reference", str(suite)).returncode == 0
    with h5py.File(suite, "a") as f:
        f["cases/mlp_tanh_mse/flat_grad"][0] += 1.0
    out = run("verify", str(suite), "--reference", str(tmp_path / "done.h5"))
    assert out.returncode == 1


@pytest.mark.parametrize("command", ["compute", "verify"])
def test_reference_commands_reject_bad_files_in_one_line(tmp_path, command):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    args = [command, str(bad)] + (["--out", str(tmp_path / "o.h5")] if command == "compute" else [])
    out = run(*args)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [f"Error: not a readable HDF5 file: {bad}"]
    assert not (tmp_path / "o.h5").exists()


def test_the_cli_lists_are_the_librarys():
    import cli
    from refplastic.curvature.report import QUANTITIES
    from refplastic.data import GENERATORS
    from refplastic.nn.losses import LOSSES
    from refplastic.nn.optim import OPTIMIZERS
    from refplastic.training import ACTIVATIONS

    assert set(cli.DATASETS) == set(GENERATORS)
    assert set(cli.ACTIVATIONS) == set(ACTIVATIONS)
    assert set(cli.OPTIMIZERS) == set(OPTIMIZERS)
    assert set(cli.LOSSES) == set(LOSSES)
    assert cli.CURVATURE_QUANTITIES == QUANTITIES
    from refplastic.plasticity import config

    assert cli.RUN_PRESETS == tuple(config.PRESETS) and cli.RUN_TASKS == config.TASKS
    assert cli.RUN_ARCHITECTURES == config.ARCHITECTURES
    from refplastic.rl import config as dqn_config

    assert cli.DQN_PRESETS == tuple(dqn_config.PRESETS)


def test_train_prints_each_evaluation_as_it_is_computed(tmp_path, monkeypatch):
    """Rows printed before the run ends survive a stop: here SIGTERM at the first checkpoint (step 20)."""
    import signal

    from test_cli_bad_input import run as run_here
    from test_cli_contract import send_during

    send_during(monkeypatch, "train", signal.SIGTERM)
    out = run_here("train", "--steps", "100", "--eval-every", "10", "--hidden", "4", "--checkpoint-every", "20",
                   "--checkpoint", tmp_path / "ck.h5")
    assert out.returncode == 143
    assert [line.split()[0] for line in out.stdout.splitlines()] == ["step", "0", "10", "20"]


def test_learning_curve_numbers_stay_short_however_large(capsys):
    import click

    import cli

    with open(os.devnull, "w") as devnull, click.progressbar(length=1, file=devnull) as bar:
        cli._LearningCurve(bar).row({"step": 5, "train_loss": 1e299, "test_loss": -3.5e-300})
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["step", "train_loss", "test_loss"]
    assert row.split() == ["5", "1e+299", "-3.5e-300"] and len(row) == len(header)


def test_curvature_prints_every_quantity_it_computed_and_plots_the_defaults(trained, tmp_path):
    out = run("curvature", str(trained), "--examples", "8", "--quantities", "hessian_lanczos,gradients,ntk",
              "--top-k", "2")
    assert out.returncode == 0, out.stderr
    for key in ("hessian/largest_eigenvalue (Lanczos)", "gradients/mean_cosine_similarity", "ntk/trace",
                "ntk/largest_eigenvalue"):
        assert key in out.stdout
    lanczos = [line for line in out.stdout.splitlines() if "(Lanczos)" in line]
    assert len(lanczos) == 2 and all(" +- " in line for line in lanczos)
    out = run("curvature", str(trained), "--examples", "8", "--plot", str(tmp_path / "spectrum.png"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "spectrum.png").read_bytes().startswith(b"\x89PNG")


def test_stats_default_set_on_a_relu_network_says_nothing_of_what_does_not_apply(trained):
    out = run("stats", str(trained), "--examples", "16")
    assert out.returncode == 0 and "no value for" not in out.stderr, out.stderr
    out = run("stats", str(trained), "--examples", "16", "--names", "loss,saturated_fraction")
    assert out.returncode == 0 and "no value for saturated_fraction" in out.stderr, out.stderr
