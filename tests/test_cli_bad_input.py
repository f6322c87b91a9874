"""Bad arguments and bad files, command by command: one line ``Error: ...``, a non-zero exit (2 for
bad arguments, 1 for bad files), no traceback, and no output or temporary file left behind."""

import io
import json
import shutil
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import cli
from refplastic.checkpoint import load_checkpoint, save_checkpoint
from refplastic.h5io import write_dict
from refplastic.nn import SGD
from refplastic.training import TrainConfig, train


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so click draws its progress bars as it would on one."""

    def isatty(self):
        return True


def run(*args, terminal=False):
    """``refplastic ARGS`` in this process (a subprocess per case would load numba's caches sixty times):
    its exit code and what it printed, warnings included. An exception that escapes ``cli.main``
    (a traceback in a terminal) fails the test where it is raised. With ``terminal``, stderr is a
    terminal (progress bars drawn in place)."""
    out, err = io.StringIO(), Terminal() if terminal else io.StringIO()
    with warnings.catch_warnings(record=True) as caught, redirect_stdout(out), redirect_stderr(err):
        warnings.simplefilter("always")
        try:
            cli.main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    printed = err.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=printed)


def assert_one_line_error(out, code, message):
    """The last line of stderr is ``Error: ...`` containing ``message`` (a progress bar may precede it)."""
    assert out.returncode == code, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr and "Warning" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], out.stderr
    assert all(not line.startswith("Error") for line in lines[:-1]) and len(lines) <= 2, out.stderr


def no_leftovers(directory, expected):
    assert sorted(p.name for p in Path(directory).iterdir()) == sorted(expected)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A trained network, a resumable checkpoint and a few data files."""
    d = tmp_path_factory.mktemp("bad")
    out = run("train", "--steps", "10", "--hidden", "8", "--eval-every", "5", "--checkpoint", d / "ck.h5",
              "--checkpoint-every", "5", "--out", d / "net.h5")
    assert out.returncode == 0, out.stderr
    rng = np.random.default_rng(0)
    np.savez(d / "ok.npz", inputs=rng.normal(size=(16, 32)), targets=rng.integers(0, 10, 16))
    np.savez(d / "wrong_targets.npz", inputs=rng.normal(size=(16, 32)), targets=rng.normal(size=(16, 4)))
    with h5py.File(d / "group.h5", "w") as f:
        f.create_group("inputs")
        f["targets"] = np.zeros(4, np.int64)
    (d / "empty.npz").write_bytes(b"")
    return d


def damaged(work, tmp_path, edit, name="net.h5"):
    path = tmp_path / name
    shutil.copy(work / name, path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def test_empty_npz_is_an_error_not_aborted(work):
    assert_one_line_error(run("curvature", work / "net.h5", "--data", work / "empty.npz"), 1,
                          "neither a .npz archive nor an HDF5 file")


@pytest.mark.parametrize("inputs,targets,message", [
    (np.array(1.0), np.array([1]), "'inputs' must be an array with a batch axis, got a single number"),
    (np.zeros((4, 32)), np.array([True, False, True, True]),
     "'targets' must hold integers or floats, got bool (store booleans as 0 and 1)"),
    (np.zeros((4, 32), complex), np.arange(4), "'inputs' must hold integers or floats, got complex128"),
])
def test_data_of_the_wrong_kind_says_what_is_wrong(work, tmp_path, inputs, targets, message):
    np.savez(tmp_path / "d.npz", inputs=inputs, targets=targets)
    assert_one_line_error(run("stats", work / "net.h5", "--data", tmp_path / "d.npz"), 1, f"d.npz: {message}")


@pytest.mark.parametrize("link,message", [
    (h5py.SoftLink("/nowhere"), "/inputs is a soft link to '/nowhere'; refplastic reads plain groups and datasets"),
    (h5py.ExternalLink("absent.h5", "/x"), "/inputs is an external link to absent.h5:/x; refplastic reads plain"),
])
def test_links_in_a_data_file_or_a_checkpoint_are_refused_by_name(work, tmp_path, link, message):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["inputs"], f["targets"] = link, np.arange(4)
    assert_one_line_error(run("curvature", work / "net.h5", "--data", tmp_path / "d.h5"), 1, f"d.h5: {message}")
    net = damaged(work, tmp_path, lambda f: (f["state"].__delitem__("0.bias"), f["state"].__setitem__("0.bias", link)))
    assert_one_line_error(run("stats", net, "--names", "loss"), 1, "net.h5: /state/0.bias is a")


def test_data_member_that_is_a_group(work):
    assert_one_line_error(run("stats", work / "net.h5", "--data", work / "group.h5"), 1,
                          "/inputs must be a dataset, found a group")


def soft_targets(row, value):
    """One-hot float targets (16, 10) whose ``row`` is ``value`` (a row of 10)."""
    t = np.eye(10)[np.arange(16) % 10]
    t[row] = value
    return t


@pytest.mark.parametrize("targets,message", [
    (soft_targets(3, np.full(10, 0.07)), "targets row 3 sums to 0.7, not 1 (within 8.9e-15): cross_entropy float "
                                         "targets are class probabilities"),
    (soft_targets(5, np.linspace(-0.4, 0.6, 10) + 0.01), "targets row 5 has a negative entry -0.39 (column 0)"),
    (soft_targets(2, np.eye(10)[4] + 1e-13), "targets row 2 sums to 1.000000000001, not 1"),
    (np.array([0, 3, 12, -1] * 4), "cross_entropy labels must lie in [0, 10): targets row 2 is 12"),
])
@pytest.mark.parametrize("command", ["stats", "curvature"])
def test_cross_entropy_targets_name_the_first_bad_row(work, tmp_path, targets, message, command):
    np.savez(tmp_path / "t.npz", inputs=np.zeros((16, 32)), targets=targets)
    assert_one_line_error(run(command, work / "net.h5", "--data", tmp_path / "t.npz"), 1, f"t.npz: {message}")


def test_a_regression_run_with_cross_entropy_is_refused_naming_its_data(tmp_path):
    assert run("train", "--steps", "1", "--hidden", "4", "--dataset", "teacher-regression",
               "--out", tmp_path / "reg.h5").returncode == 0
    out = run("stats", tmp_path / "reg.h5", "--loss", "cross_entropy", "--names", "loss")
    assert_one_line_error(out, 1, "reg.h5: the run's training data: targets row 0 has a negative entry")
    assert "class probabilities" in out.stderr


@pytest.mark.parametrize("inputs,message", [
    (np.zeros(32), "'inputs' of shape (32,) has no batch axis: the network's first layer, Linear(in_features=32, "
                   "out_features=8, bias=True), takes inputs of shape (N, 32)"),
    (np.zeros((32, 31)), "'inputs' of shape (32, 31) do not fit the network: Linear expects inputs with last "
                         "dimension 32"),
])
def test_inputs_of_the_wrong_shape_are_named_not_blamed_on_the_loss(work, tmp_path, inputs, message):
    np.savez(tmp_path / "x.npz", inputs=inputs, targets=np.zeros(32, np.int64))
    for args in (["stats", "--names", "loss"], ["curvature"], ["stats", "--loss", "mse", "--names", "loss"]):
        assert_one_line_error(run(args[0], work / "net.h5", "--data", tmp_path / "x.npz", *args[1:]), 1,
                              f"x.npz: {message}")


def test_targets_that_do_not_fit_the_loss_name_the_file(work):
    assert_one_line_error(run("stats", work / "net.h5", "--data", work / "wrong_targets.npz"), 1,
                          "wrong_targets.npz: cross_entropy targets must be int labels")


@pytest.mark.parametrize("command", ["curvature", "stats"])
def test_out_equal_to_the_network_is_refused_and_the_network_kept(work, tmp_path, command):
    net = tmp_path / "net.h5"
    shutil.copy(work / "net.h5", net)
    before = net.read_bytes()
    extra = ["--quantities", "gradients"] if command == "curvature" else []
    assert_one_line_error(run(command, net, "--out", net, *extra), 2, "the output would overwrite the input")
    assert net.read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["reference", "--out", ""], "not a file name"),
    (["reference", "--out", "/proc/refplastic-test.h5"], "cannot write /proc/refplastic-test.h5"),
    (["train", "--steps", "1", "--checkpoint", ""], "not a file name"),
    (["train", "--steps", "1", "--checkpoint", "/proc/ck.h5"], "cannot write"),
    (["train", "--steps", "1", "--batch-size", "5000"], "more than the 2048 training examples"),
    (["stats", "NET", "--names", ","], "give at least one statistic name"),
    (["stats", "NET", "--names", ""], "give at least one statistic name"),
    (["stats", "NET", "--names", "parameter_distance"], "--init"),
    (["stats", "NET", "--names", "feature_srank/delta=1"], "feature_srank/delta=1: delta must lie in [0, 1), got 1"),
    (["stats", "NET", "--names", "feature_approximate_rank/threshold=1.5"], "threshold must lie in (0, 1], got 1.5"),
    (["stats", "NET", "--names", "feature_rank/eps=-1"], "feature_rank/eps=-1: eps must lie in [0, inf), got -1"),
    (["stats", "NET", "--names", "dormant_fraction/tau=-1"], "tau must lie in [0, inf), got -1"),
    (["stats", "NET", "--names", "dormant_fraction/tau=0.1/tau=0.2"], "dormant_fraction/tau=0.1/tau=0.2: tau is given "
                                                                      "twice"),
    (["stats", "NET", "--names", "dead_fraction/layer=1/layer=1"], "layer is given twice"),
    (["stats", "NET", "--names", "loss,dead_fractoin"],
     "unknown statistic 'dead_fractoin'; nearest: dead_fraction, dormant_fraction, linearised_fraction; "
     "refplastic stats --list"),
    (["curvature", "NET", "--quantities", "hesian_trace"], "unknown quantity hesian_trace; nearest: hessian_trace, "
                                                           "hessian_lanczos, ggn_trace; refplastic curvature --list"),
    (["curvature", "NET", "--quantities", "hessian_lanczos", "--top-k", "10000"], "top_k must lie in [1, 354]"),
    (["curvature", "NET", "--quantities", "gradients", "--plot", "PLOT.png"], "nothing to plot"),
    (["curvature", "NET", "--quantities", "hessian_eigenvalues", "--plot", "PLOT.xyz"], "image format"),
])
def test_bad_arguments_are_refused_before_any_work(work, tmp_path, args, message):
    args = [{"NET": work / "net.h5", "PLOT.png": tmp_path / "p.png", "PLOT.xyz": tmp_path / "p.xyz"}.get(a, a)
            for a in args]
    assert_one_line_error(run(*args), 2, message)
    no_leftovers(tmp_path, [])


def test_train_config_errors_name_the_option_not_the_library_field(tmp_path):
    out = run("train", "--steps", "1", "--batch-size", "5000", "--out", tmp_path / "r.h5")
    assert_one_line_error(out, 2, "Invalid value for '--batch-size': 5000 is more than the 2048 training examples")
    assert "batch_size" not in out.stderr
    no_leftovers(tmp_path, [])


def test_init_with_another_architecture_names_the_file(work, tmp_path):
    other = tmp_path / "other.h5"
    assert run("train", "--steps", "1", "--hidden", "4", "--out", other).returncode == 0
    assert_one_line_error(run("stats", work / "net.h5", "--init", other, "--names", "parameter_distance"), 1,
                          f"{other}: a different architecture")


def test_diverging_training_fails_and_writes_nothing(tmp_path):
    out = run("train", "--lr", "1e300", "--steps", "20", "--hidden", "4", "--out", tmp_path / "r.h5")
    assert_one_line_error(out, 1, "training diverged")
    no_leftovers(tmp_path, [])


@pytest.mark.parametrize("terminal", [False, True])
def test_an_error_under_the_progress_bar_is_one_line_of_its_own(tmp_path, monkeypatch, terminal):
    """Divergence, then a checkpoint that cannot be written, while the bar is drawn: the bar's line
    is ended first (on a terminal click re-shows the cursor and ends the line) and one Error line follows."""
    def disk_full(*args, **kwargs):
        raise OSError("cannot write ck.h5: No space left on device")

    for args, message in ((["--lr", "1e300"], "training diverged at step"),
                          (["--checkpoint", tmp_path / "ck.h5", "--checkpoint-every", "2"], "No space left")):
        if "--checkpoint" in args:
            monkeypatch.setattr("refplastic.training.save_checkpoint", disk_full)
        out = run("train", "--steps", "20", "--hidden", "4", *args, terminal=terminal)
        assert out.returncode == 1 and out.stderr.count("Error: ") == 1, out.stderr
        bar, error = out.stderr.split("Error: ")
        assert bar.startswith("\r" if terminal else "training\n") and bar.endswith("\n"), repr(out.stderr)
        assert message in error and error.endswith("\n") and error.count("\n") == 1, repr(out.stderr)
    no_leftovers(tmp_path, [])


@pytest.mark.parametrize("edit,message", [
    (lambda f: f.attrs.__setitem__("version", np.array([1, 2])), "unsupported version [1, 2]"),
    (lambda f: f.attrs.__setitem__("version", "x"), "unsupported version 'x'"),
    (lambda f: f.attrs.__delitem__("version"), "missing attribute 'version'"),
    (lambda f: f["run"].attrs.__setitem__("config", "[1]"), "attribute 'config' must be a JSON object"),
    (lambda f: f["run"].attrs.__setitem__("config", json.dumps({**json.loads(f["run"].attrs["config"]),
                                                                "dataset": "mnist"})), "unknown dataset 'mnist'"),
    (lambda f: f["run"].attrs.__setitem__("step", -5), "attribute 'step' must be an integer >= 0"),
    (lambda f: f["run"].attrs.__setitem__("step", 2.5), "attribute 'step' must be an integer >= 0"),
    (lambda f: (f["run/history"].__delitem__("test_loss"), f["run/history"].__setitem__("test_loss", np.zeros(1))),
     "arrays of different lengths"),
    (lambda f: f["run/history"].__setitem__("extra", np.zeros((3, 2))), "expected a 1-D array of numbers"),
    (lambda f: f["run"].attrs.__setitem__("rng_state", "[1]"), "attribute 'rng_state' must be a JSON object"),
    (lambda f: (f["state"].__delitem__("0.weight"), f["state"].__setitem__("0.weight", np.zeros((8, 32), complex))),
     "0.weight: expected real numbers, got complex128"),
    (lambda f: (f["state"].__delitem__("0.bias"), f["state"].__setitem__("0.bias", np.zeros(8, bool))),
     "0.bias: expected real numbers, got bool"),
    (lambda f: f.attrs.__setitem__("training", "maybe"), "attribute 'training' must be true or false"),
    (lambda f: f.attrs.__setitem__("architecture", '{"type": "Linear"}'), "must be a non-empty JSON list"),
    (lambda f: f.attrs.__setitem__("architecture", '[{"type": "Swish"}]'), "cannot build the network: unknown layer"),
    # the optimizer state: every hyperparameter attribute, the step, every buffer
    (lambda f: f["optimizer/exp_avg"].__setitem__(3, np.nan), "ck.h5: /optimizer/exp_avg contains NaN or infinity"),
    (lambda f: f["optimizer/exp_avg_sq"].__setitem__(0, np.inf), "/optimizer/exp_avg_sq contains NaN or infinity"),
    (lambda f: (f["optimizer"].__delitem__("exp_avg"), f["optimizer"].__setitem__("exp_avg", np.zeros(353))),
     "/optimizer/exp_avg must be a float64 array of shape (354,), got float64 (353,)"),
    (lambda f: f["optimizer"].attrs.__setitem__("lr", "x"), "ck.h5: /optimizer attribute 'lr' must be a finite number, "
                                                            "got 'x'"),
    (lambda f: f["optimizer"].attrs.__setitem__("eps", -1.0), "/optimizer attribute 'eps' must be >= 0, got -1.0"),
    (lambda f: f["optimizer"].attrs.__setitem__("weight_decay", np.nan), "attribute 'weight_decay' must be a finite"),
    (lambda f: f["optimizer"].attrs.__setitem__("amsgrad", "maybe"), "attribute 'amsgrad' must be true or false"),
    (lambda f: f["optimizer/betas"].__setitem__(1, 2.0), "/optimizer/betas[1] must lie in [0, 1), got 2.0"),
    (lambda f: f["optimizer"].attrs.__setitem__("step", -1), "attribute 'step' must be a non-negative integer"),
    (lambda f: f["optimizer"].attrs.__setitem__("name", "adagrad"), "/optimizer attribute 'name' must be one of"),
])
def test_corrupted_checkpoint_is_one_line_for_every_command(work, tmp_path, edit, message):
    path = damaged(work, tmp_path, edit, "ck.h5")
    for args in (["stats", path, "--names", "loss"],
                 ["train", "--steps", "20", "--hidden", "8", "--eval-every", "5", "--checkpoint", path]):
        assert_one_line_error(run(*args), 1, message)


@pytest.mark.parametrize("edit,message", [
    (lambda f: f.__delitem__("optimizer"), "holds no run to resume"),
    (lambda f: (f.__delitem__("optimizer"), write_dict(f.create_group("optimizer"), {"name": "sgd", **SGD(
        np.zeros(354)).state_dict()})), "holds the state of 'sgd', not 'adam'"),
    (lambda f: f["run"].attrs.__setitem__("rng_state", '{"bit_generator": "PCG64", "state": 3}'),
     "invalid PCG64 state"),
    (lambda f: f["run"].attrs.__setitem__("step", 1000), "checkpoint is at step 1000, past the 20 steps"),
])
def test_resume_from_a_damaged_checkpoint_is_refused(work, tmp_path, edit, message):
    path = damaged(work, tmp_path, edit, "ck.h5")
    before = path.read_bytes()
    out = run("train", "--steps", "20", "--hidden", "8", "--eval-every", "5", "--checkpoint", path)
    assert_one_line_error(out, 1, message)
    assert path.read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["--hidden", "16"], "hidden [16] here, [8] in the file"),
    (["--hidden", "8", "--dtype", "float32"], 'dtype "float32" here, "float64" in the file'),
    (["--hidden", "8", "--optimizer", "sgd"], 'optimizer "sgd" here, "adam" in the file'),
    (["--hidden", "8", "--steps", "5"], "checkpoint is at step 10, past the 5 steps asked for"),
])
def test_resume_with_another_configuration_says_what_differs(work, tmp_path, args, message):
    path = tmp_path / "ck.h5"
    shutil.copy(work / "ck.h5", path)
    out = run("train", "--eval-every", "5", "--checkpoint", path, *(["--steps", "20"] if "--steps" not in args else []),
              *args)
    assert_one_line_error(out, 1, message)


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    net, optimizer, run_ = train(TrainConfig(n_train=64, n_test=16, hidden=(4,), batch_size=8, steps=2))
    path = tmp_path / "ck.h5"
    save_checkpoint(path, net, optimizer, run_)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, net, optimizer, run_)
    no_leftovers(tmp_path, ["ck.h5"])
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert load_checkpoint(path)["run"]["step"] == 2


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "suite.h5"
    assert run("reference", "--out", path).returncode == 0
    return path


def one_case_input(suite, path, edit=None, name="mlp_tanh_mse"):
    """An input file for ``compute``: the defining fields of the suite's case ``name``, edited."""
    with h5py.File(suite, "r") as src, h5py.File(path, "w") as dst:
        case, group = src[f"cases/{name}"], dst.create_group("cases/mine")
        group.attrs.update({k: case.attrs[k] for k in ("architecture", "loss", "dtype", "mode")})
        for key in ("inputs", "targets", "params"):
            src.copy(case[key], group, key)
        if edit is not None:
            edit(dst, group)
    return path


@pytest.mark.parametrize("edit,message", [
    (lambda f, g: (g.__delitem__("inputs"), g.__setitem__("inputs", np.full((8, 5), 1e308))),
     "case 'mine': hvp/products contains NaN or infinity"),
    (lambda f, g: f.attrs.__setitem__("version", np.array([1, 2])), "unsupported version [1, 2]"),
    (lambda f, g: f.attrs.__setitem__("version", "1"), "unsupported version '1'"),
])
def test_compute_bad_input_is_one_line_and_writes_nothing(suite, tmp_path, edit, message):
    bad = one_case_input(suite, tmp_path / "in.h5", edit)
    assert_one_line_error(run("compute", bad, "--out", tmp_path / "out.h5"), 1, message)
    no_leftovers(tmp_path, ["in.h5"])


def test_compute_names_the_case_of_statistics_that_overflow(suite, tmp_path):
    """Without a Hessian (P > 5000) the statistics are the first to overflow on inputs of 1e160."""
    def huge_inputs(f, group):
        group["inputs"][...] = group["inputs"][()] * 1e160

    bad = one_case_input(suite, tmp_path / "in.h5", huge_inputs, name="mlp_large_no_hessian")
    assert_one_line_error(run("compute", bad, "--out", tmp_path / "out.h5"), 1,
                          "case 'mine': stats/values: preactivation_std: not finite on this batch")
    no_leftovers(tmp_path, ["in.h5"])


@pytest.mark.parametrize("edit,message", [
    (lambda values: values[:3], "must be 1-D of one length, got (70,) and (3,)"),
    (lambda values: values[:, None], "must be 1-D of one length"),
])
def test_verify_refuses_statistics_that_cannot_be_paired(suite, tmp_path, edit, message):
    theirs = tmp_path / "theirs.h5"
    shutil.copy(suite, theirs)
    with h5py.File(theirs, "a") as f:
        values = f["cases/mlp_tanh_mse/stats/values"][()]
        del f["cases/mlp_tanh_mse/stats/values"]
        f["cases/mlp_tanh_mse/stats/values"] = edit(values)
    out = run("verify", theirs, "--reference", suite)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert f"MISMATCH mlp_tanh_mse: stats/names: stats/names and stats/values {message}" in out.stdout


@pytest.mark.parametrize("where,make,detail", [
    ("hessian", lambda f: f.create_group("hessian"), "hessian: hessian is a group, not a dataset"),
    ("hessian", lambda f: f.__setitem__("hessian", h5py.SoftLink("/cases/mlp_tanh_mse/ggn")),
     "hessian: hessian is a soft link to '/cases/mlp_tanh_mse/ggn', not a dataset (links are not followed)"),
    ("hessian", lambda f: f.__setitem__("hessian", h5py.SoftLink("/nowhere")),
     "hessian: hessian is a soft link to '/nowhere', not a dataset"),
    ("hessian", lambda f: f.__setitem__("hessian", h5py.ExternalLink("absent.h5", "/x")),
     "hessian: hessian is an external link to absent.h5:/x, not a dataset"),
    ("params", lambda f: f.__setitem__("params", h5py.SoftLink("/cases/mlp_relu_cross_entropy/params")),
     "params/0.bias: params is a soft link to '/cases/mlp_relu_cross_entropy/params', not a group"),
    ("stats/names", lambda f: f.create_group("stats/names"), "stats/names: stats/names is a group, not a dataset"),
])
def test_verify_fails_a_group_or_link_where_the_reference_has_a_dataset(suite, tmp_path, where, make, detail):
    theirs = tmp_path / "theirs.h5"
    shutil.copy(suite, theirs)
    with h5py.File(theirs, "a") as f:
        case = f["cases/mlp_tanh_mse"]
        del case[where]
        make(case)
    out = run("verify", theirs, "--reference", suite)
    assert out.returncode == 1 and out.stderr == "", out.stderr
    assert f"MISMATCH mlp_tanh_mse: {detail}" in out.stdout, out.stdout


def test_verify_refuses_the_reference_as_theirs(suite, tmp_path):
    (tmp_path / "alias.h5").symlink_to(suite)
    assert_one_line_error(run("verify", tmp_path / "alias.h5", "--reference", suite), 2,
                          "is THEIRS itself: comparing a file with itself checks nothing")


def test_verify_refuses_repeated_statistic_names(suite, tmp_path):
    theirs = tmp_path / "theirs.h5"
    shutil.copy(suite, theirs)
    with h5py.File(theirs, "a") as f:
        names = f["cases/mlp_tanh_mse/stats/names"]
        names[1] = names[0]
    out = run("verify", theirs, "--reference", suite)
    assert out.returncode == 1 and "stats/names has repeated names" in out.stdout


def scaled(path, factor, out):
    """A copy of the checkpoint ``path`` with every parameter multiplied by ``factor``."""
    shutil.copy(path, out)
    with h5py.File(out, "a") as f:
        for dataset in f["state"].values():
            dataset[...] = dataset[()] * factor
    return out


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """Networks whose loss is finite on their training data but whose curvature overflows."""
    d = tmp_path_factory.mktemp("overflow")
    for name, args in (("deep.h5", ["--hidden", "8,8"]), ("deep32.h5", ["--hidden", "8", "--dtype", "float32"])):
        assert run("train", "--steps", "1", *args, "--out", d / name).returncode == 0
    return {"float64": scaled(d / "deep.h5", 1e80, d / "big.h5"), "float32": scaled(d / "deep32.h5", 1e18, d / "big32.h5")}


@pytest.mark.parametrize("dtype,args,message", [
    ("float64", ["curvature", "--quantities", "hessian_eigenvalues"], "hessian_eigenvalues: not finite on this batch"),
    ("float64", ["curvature", "--quantities", "ntk"], "ntk: not finite on this batch"),
    ("float64", ["stats"], "preactivation_std: not finite on this batch (the network overflows)"),
    ("float64", ["stats", "--names", "hessian_effective_rank"], "hessian_effective_rank: not finite on this batch"),
    ("float64", ["stats", "--names", "gradient_norm/layer=2"], "gradient_norm/layer=2: not finite on this batch"),
    ("float32", ["curvature", "--quantities", "ntk"], "ntk: not finite on this batch"),
])
def test_curvature_that_overflows_on_a_finite_loss_is_one_line(overflowing, tmp_path, dtype, args, message):
    command, *options = args
    out = run(command, overflowing[dtype], "--examples", "16", *options, "--out", tmp_path / "out.h5")
    assert_one_line_error(out, 1, message)
    no_leftovers(tmp_path, [])


@pytest.mark.parametrize("command, name", [("stats", "statistic"), ("curvature", "quantity")])
def test_an_unknown_name_gives_the_nearest_names_not_the_whole_list(work, command, name):
    out = run(command, work / "net.h5", "--names" if command == "stats" else "--quantities", "zzzz")
    assert_one_line_error(out, 2, f"unknown {name} ")
    line = out.stderr.strip()
    assert "nearest" not in line and "ntk" not in line and len(line) < 150, line


@pytest.mark.parametrize("command", ["stats", "curvature"])
def test_list_prints_every_name_with_its_formula_without_a_network(command):
    from refplastic.curvature.report import QUANTITY_FORMULAS
    from refplastic.stats import STATISTICS, describe_statistics

    out = run(command, "--list")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = out.stdout.splitlines()
    if command == "stats":
        assert out.stdout == describe_statistics() + "\n"
        table = {base: statistic.formula for base, statistic in STATISTICS.items()}
    else:
        table = QUANTITY_FORMULAS
    assert len(lines) == len(table)
    for line, (name, formula) in zip(lines, table.items()):
        assert line.split()[0].split("/")[0] == name and formula in line
    assert run(command, "--list", "--examples", "0").returncode == 0  # like --help: nothing else is looked at


@pytest.mark.parametrize("command", ["stats", "curvature"])
def test_without_network_or_list_is_the_usual_usage_error(command):
    assert_one_line_error(run(command), 2, "Missing argument 'NETWORK'")


@pytest.fixture(scope="module")
def tanh_net(work):
    path = work / "tanh.h5"
    assert run("train", "--steps", "1", "--hidden", "4", "--activation", "Tanh", "--out", path).returncode == 0
    return path


@pytest.mark.parametrize("network, names, why", [
    ("net.h5", "saturated_fraction", "saturated_fraction (it reads Tanh or Sigmoid layers; the network has none)"),
    ("tanh.h5", "dead_fraction,linearised_fraction", "dead_fraction (it reads ReLU layers; the network has none), "
                                                     "linearised_fraction (it reads ReLU or LeakyReLU layers; the "
                                                     "network has none)"),
])
def test_names_that_apply_to_no_layer_fail_in_one_line_and_write_nothing(work, tanh_net, tmp_path, network, names,
                                                                         why):
    assert_one_line_error(run("stats", work / network, "--names", names, "--out", tmp_path / "s.h5"), 1,
                          f"Error: nothing to compute: {why}")
    no_leftovers(tmp_path, [])


def test_a_name_that_applies_to_no_layer_is_one_line_beside_the_others(work, tmp_path):
    from refplastic.stats import read_statistics_h5

    out = run("stats", work / "net.h5", "--names", "saturated_fraction,loss", "--out", tmp_path / "s.h5")
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [
        "no value for saturated_fraction (it reads Tanh or Sigmoid layers; the network has none)"]
    assert list(read_statistics_h5(tmp_path / "s.h5")[0]) == ["loss"]


@pytest.mark.parametrize("name, message", [
    ("dead_fraction/layer=9", "dead_fraction/layer=9: the network has no layer 9 (its layers are 0 to 2)"),
    ("dead_fraction/layer=0", "dead_fraction/layer=0: layer 0 is a Linear; dead_fraction reads ReLU layers (layer 1)"),
    ("loss/layer=0", "loss/layer=0: loss is a value of the whole network, not of a layer"),
])
def test_a_layer_without_the_value_is_one_line(work, tmp_path, name, message):
    assert_one_line_error(run("stats", work / "net.h5", "--names", name, "--out", tmp_path / "s.h5"), 1, message)
    no_leftovers(tmp_path, [])


@pytest.mark.parametrize("columns", ["50", "80", "200"])
def test_the_top_level_help_gives_each_command_whole(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)
    out = run("--help")
    commands = out.stdout.split("Commands:")[1].splitlines()
    assert len([line for line in commands if line.strip()]) >= 6
    assert not [line for line in commands if line.rstrip().endswith("...")], out.stdout


@pytest.mark.parametrize("command", ["train", "curvature", "stats", "reference", "compute", "verify"])
def test_help_points_to_what_an_install_has_not_to_docs(command):
    out = run(command, "--help")
    assert out.returncode == 0 and "docs/" not in out.stdout, out.stdout


@pytest.mark.parametrize("args", [
    ["stats", "BAD"], ["curvature", "BAD"], ["stats", "NET", "--data", "BAD"],
    ["stats", "NET", "--init", "BAD", "--names", "parameter_distance"], ["compute", "BAD", "--out", "OUT"],
    ["verify", "BAD"], ["verify", "NET", "--reference", "BAD"],
    ["train", "--steps", "1", "--hidden", "4", "--checkpoint", "BAD"],
])
def test_a_path_that_cannot_be_read_says_why_in_the_systems_words(work, tmp_path, args):
    """A symbolic link loop is not "no such file"; nor is a path through a file. A checkpoint path
    that is a loop is refused, not replaced by a new checkpoint."""
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "dangling.h5").symlink_to("missing.h5")
    for bad, message in ((tmp_path / "loop1", "cannot read {}: Too many levels of symbolic links"),
                         (work / "net.h5" / "x", "cannot read {}: Not a directory"),
                         (tmp_path / "dangling.h5", "no such file: {} (a symbolic link to 'missing.h5', which")):
        if args[0] == "train" and bad.name != "loop1":
            continue  # a new checkpoint may be written through a link to nothing; --checkpoint x/y is a bad output
        given = [{"BAD": bad, "NET": work / "net.h5", "OUT": tmp_path / "out.h5"}.get(a, a) for a in args]
        assert_one_line_error(run(*given), 1, message.format(bad))
    assert (tmp_path / "loop1").is_symlink() and (tmp_path / "loop2").is_symlink()
    no_leftovers(tmp_path, ["loop1", "loop2", "dangling.h5"])


def no_work(*args, **kwargs):
    raise AssertionError("a dense quantity was computed before the memory check")


@pytest.fixture
def little_memory(tmp_path, monkeypatch):
    """``little_memory(kB)``: MemAvailable of that much, and every dense computation replaced by a
    failure, so that a refusal must come first."""
    for name in ("jacobian", "hessian", "ggn", "per_example_gradients", "CurvatureBatch"):
        monkeypatch.setattr(f"refplastic.curvature.report.{name}", no_work)
    monkeypatch.setattr("refplastic.stats.collect.Context", no_work)
    monkeypatch.setattr("refplastic.reference.compute.compute_case", no_work)

    def set_available(kilobytes):
        meminfo = tmp_path / "meminfo"
        meminfo.write_text(f"MemTotal:        8000000 kB\nMemAvailable:    {kilobytes} kB\n")
        monkeypatch.setattr("refplastic.memory.MEMINFO", str(meminfo))
    return set_available


@pytest.mark.parametrize("args,kilobytes,message", [
    (["curvature", "NET", "--quantities", "ntk"], 512,
     "ntk needs about 107 MiB of memory at its peak (the 2560 x 2560 float64 kernel, 50 MiB), more than the 512 KiB "
     "available; lower --examples to 4 or less"),
    (["curvature", "NET", "--quantities", "hessian_lanczos,gradients", "--examples", "2048"], 4096,
     "gradients needs about 199 MiB of memory at its peak (the 2048 x 354 float64 per-example gradients, 5.53 MiB), "
     "more than the 4 MiB available; lower --examples to 262 or less"),
    (["curvature", "NET", "--quantities", "ggn_eigenvalues"], 512,
     "(the 354 x 354 float64 Gauss-Newton matrix, 979 KiB), more than the 512 KiB available; ask for ggn_lanczos, "
     "ggn_trace or ggn_density instead (matrix-free)"),
    (["curvature", "NET", "--quantities", "hessian_eigenvalues"], 8192,
     "hessian_eigenvalues needs about 15.1 MiB of memory at its peak (the 354 x 354 float64 Hessian, 979 KiB), more "
     "than the 8 MiB available; lower --examples to"),
    (["stats", "NET", "--names", "loss,gradient_cosine_mean"], 512,
     "gradient_cosine_mean needs about 2.79 MiB of memory at its peak (the 256 x 256 float64 Gram matrix of the "
     "per-example gradients, 512 KiB), more than the 512 KiB available; lower --examples to 100 or less"),
    (["stats", "NET", "--names", "ntk_effective_rank", "--examples", "100"], 512,
     "ntk_effective_rank needs about 18 MiB of memory at its peak (the 1000 x 1000 float64 kernel, 7.63 MiB)"),
    (["stats", "NET", "--names", "hessian_effective_rank"], 512,
     "hessian_effective_rank needs about 15.1 MiB of memory at its peak (the 354 x 354 float64 Hessian, 979 KiB), "
     "more than the 512 KiB available; use a smaller network"),
])
def test_a_quantity_too_large_for_the_memory_is_refused_before_any_work(work, tmp_path, little_memory, args,
                                                                         kilobytes, message):
    """The one line names the quantity, its largest matrix (shape, dtype, size), the peak, and what to lower."""
    little_memory(kilobytes)
    out = run(*[{"NET": work / "net.h5"}.get(a, a) for a in args], "--out", tmp_path / "out.h5")
    assert_one_line_error(out, 1, message)
    no_leftovers(tmp_path, ["meminfo"])


def test_compute_refuses_a_case_too_large_for_the_memory_before_any_work(suite, tmp_path, little_memory):
    little_memory(1024)
    bad = one_case_input(suite, tmp_path / "in.h5")
    assert_one_line_error(run("compute", bad, "--out", tmp_path / "out.h5"), 1,
                          "case 'mine' needs about 1.91 MiB of memory at its peak (the 203 x 203 float64 Hessian, "
                          "322 KiB), more than the 1 MiB available; use a smaller network")
    no_leftovers(tmp_path, ["in.h5", "meminfo"])


@pytest.mark.parametrize("edit,message", [
    (lambda f: f["optimizer"].attrs.__setitem__("lr", "x"), "ck.h5: /optimizer attribute 'lr' must be a finite number, "
                                                            "got 'x'"),
    (lambda f: f["optimizer/exp_avg"].__setitem__(0, np.nan), "ck.h5: /optimizer/exp_avg contains NaN or infinity"),
])
def test_a_plasticity_runs_checkpoint_names_a_bad_optimizer_field(tmp_path, edit, message):
    args = ["run", "--preset", "smoke", "--checkpoint", tmp_path / "ck.h5"]
    assert run(*args).returncode == 0
    with h5py.File(tmp_path / "ck.h5", "a") as f:
        edit(f)
    assert_one_line_error(run(*args), 1, message)
