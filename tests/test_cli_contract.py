"""The command-line contract, one table that every command joins.

Every command of ``refplastic``, present and future, has a row in :data:`CONTRACT`: a quick valid
invocation, the outputs it writes (option -> kind of file), the inputs it reads, its numeric
options, whether it resumes from a checkpoint, and a function its work passes through (where the
tests send it a signal). From the table, for every command:

- bad numbers: exit 2, one line ``Error: ...`` naming the option, no work done;
- bad output paths (a directory name ending in '/', a missing directory, a name too long for its
  temporary twin, a directory, an unwritable place): exit 2 before any work, nothing left behind;
- two outputs on one path, an output on an input: exit 2, the input untouched;
- an existing file of another kind: kept, exit 2 naming --force; replaced with --force;
- bad input files (missing, not the right format, a symbolic link loop): exit 1, one line naming the file;
- SIGTERM and SIGINT during the work: one line, exit 143 / 130, no temporary file left; a resumable
  command saves a last checkpoint, and the same command then finishes with the numbers of an
  uninterrupted run; a SIGKILL at a random moment loses only work, never the result.

A command added to cli.py without a row here fails :func:`test_every_command_is_in_the_table`.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest

import cli
from test_cli_bad_input import assert_one_line_error, no_leftovers, run

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Contract:
    """A command's row: ``args`` a quick valid invocation (placeholders in capitals are files of the
    ``files`` fixture; ``OUT:<name>`` a fresh output path); ``outputs`` ``{option: kind}`` ("image" for
    a picture; a kind of "checkpoint" marks a file the command resumes from); ``inputs`` ``{label:
    placeholder}`` as they appear in ``args``; ``integers`` and ``floats`` its numeric options;
    ``during`` ``(module, attribute)`` of a function its work calls, where signals are sent: by
    default h5py's ``Group.create_dataset``, so that the signal comes while an output is half written."""

    args: list
    outputs: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    integers: tuple = ()
    floats: tuple = ()
    during: tuple = ("h5py", "Group.create_dataset")
    resumable: bool = False
    directories: tuple = ()  # options naming an output directory (checked in the command's own tests)
    stop_line: tuple = ()  # (start, end) of the line of a command that stops neither way below (sweep)


CONTRACT = {
    "train": Contract(["--steps", "30", "--hidden", "4", "--eval-every", "10", "--checkpoint-every", "10",
                       "--checkpoint", "OUT:ck.h5", "--out", "OUT:net.h5"],
                      outputs={"--out": cli.CHECKPOINT, "--checkpoint": "checkpoint"},
                      integers=("--seed", "--batch-size", "--steps", "--eval-every", "--checkpoint-every"),
                      floats=("--lr",), resumable=True),
    "curvature": Contract(["NET", "--examples", "16", "--quantities", "hessian_lanczos", "--top-k", "2",
                           "--data", "DATA", "--out", "OUT:c.h5", "--plot", "OUT:c.png"],
                          outputs={"--out": cli.CURVATURE, "--plot": "image"}, inputs={"NETWORK": "NET", "--data": "DATA"},
                          integers=("--examples", "--top-k", "--seed")),
    "stats": Contract(["NET", "--examples", "16", "--names", "loss,parameter_distance", "--init", "INIT",
                       "--data", "DATA", "--out", "OUT:s.h5"],
                      outputs={"--out": cli.STATISTICS}, inputs={"NETWORK": "NET", "--data": "DATA", "--init": "INIT"},
                      integers=("--examples", "--seed")),
    "reference": Contract(["--out", "OUT:suite.h5"], outputs={"--out": cli.REFERENCE}),
    "compute": Contract(["CASE", "--out", "OUT:done.h5"], outputs={"--out": cli.REFERENCE}, inputs={"IN": "CASE"}),
    "compare": Contract(["RUN", "RUN2"], inputs={"RUN.h5": "RUN", "second RUN.h5": "RUN2"},
                        during=("refplastic.plasticity.results", "comparison")),
    "run": Contract(["--preset", "smoke", "--checkpoint", "OUT:ck.h5", "--out", "OUT:run.h5", "--progress", "OUT:p"],
                    outputs={"--out": cli.RUN, "--checkpoint": "checkpoint", "--progress": cli.PROGRESS},
                    integers=("--seed",), resumable=True),
    "dqn": Contract(["--preset", "smoke", "--checkpoint", "OUT:ck.h5", "--out", "OUT:dqn.h5", "--progress", "OUT:p"],
                    outputs={"--out": cli.DQN, "--checkpoint": "checkpoint", "--progress": cli.PROGRESS},
                    integers=("--seed", "--frames"), resumable=True),
    "sweep": Contract(["--grid", "GRID", "--jobs", "1", "--out", "OUT:grid"], inputs={"--grid": "GRID"},
                      integers=("--jobs",), during=("refplastic.sweep.runner", "run_grid"), directories=("--out",),
                      stop_line=("stopped by ", "; resume with the same command")),
    "dqn-report": Contract(["DQN", "DQN2"], inputs={"RUN.h5": "DQN", "second RUN.h5": "DQN2"},
                           during=("refplastic.rl.report", "summary_rows"), directories=("--out",)),
    "analyse": Contract(["RUNDIR", "--out", "OUT:report", "--bootstrap", "20"], inputs={"DIR": "RUNDIR"},
                        integers=("--bootstrap", "--seed"), during=("refplastic.analysis.report", "build"),
                        directories=("--out",)),
    "verify": Contract(["SUITE", "--reference", "SUITE2"], inputs={"THEIRS": "SUITE", "--reference": "SUITE2"},
                       floats=("--rtol",), during=("refplastic.reference.verify", "compare")),
}

BAD_INTEGERS = ("abc", "1.5", "-1")
BAD_FLOATS = ("abc", "nan", "inf", "-1", "0")


def test_every_command_is_in_the_table():
    assert set(CONTRACT) == set(cli.cli.commands)


def test_the_table_knows_every_numeric_option_and_output():
    """Each command's int and float options, and its path options, are in its row."""
    import click

    for name, command in cli.cli.commands.items():
        row = CONTRACT[name]
        options = {p.opts[0]: p for p in command.params if isinstance(p, click.Option)}
        numeric = {o for o, p in options.items() if p.type.name in ("integer", "integer range", "float")}
        assert numeric == set(row.integers) | set(row.floats), name
        paths = {o for o, p in options.items() if isinstance(p.type, click.Path)}
        assert paths == set(row.outputs) | set(row.directories) | {i for i in row.inputs if i.startswith("--")}, name
        if row.outputs:
            assert "--force" in options, f"{name} writes files and has no --force"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The input files the rows name: a trained network and its initialisation, a batch, the suite
    (twice), one case to compute, a run's results (twice, and once in a directory of runs) and a
    DQN run's (twice)."""
    d = tmp_path_factory.mktemp("contract")
    for name, steps in (("net.h5", "5"), ("init.h5", "1")):
        out = run("train", "--steps", steps, "--hidden", "8", "--out", d / name)
        assert out.returncode == 0, out.stderr
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", inputs=rng.normal(size=(16, 32)), targets=rng.integers(0, 10, 16))
    assert run("reference", "--out", d / "suite.h5").returncode == 0
    shutil.copy(d / "suite.h5", d / "suite2.h5")
    with h5py.File(d / "suite.h5", "r") as src, h5py.File(d / "case.h5", "w") as dst:
        case, group = src["cases/mlp_tanh_mse"], dst.create_group("cases/mine")
        group.attrs.update({k: case.attrs[k] for k in ("architecture", "loss", "dtype", "mode")})
        for key in ("inputs", "targets", "params"):
            src.copy(case[key], group, key)
    assert run("run", "--preset", "smoke", "--out", d / "run.h5").returncode == 0
    shutil.copy(d / "run.h5", d / "run2.h5")
    assert run("dqn", "--preset", "smoke", "--set", "probe_steps=1", "--out", d / "dqn.h5").returncode == 0
    shutil.copy(d / "dqn.h5", d / "dqn2.h5")
    (d / "grid.toml").write_text('preset = "smoke"\n[set]\nstatistics = false\n')
    (d / "runs").mkdir()
    shutil.copy(d / "run.h5", d / "runs" / "run.h5")
    return {"RUNDIR": d / "runs", "GRID": d / "grid.toml", "NET": d / "net.h5", "INIT": d / "init.h5", "DATA": d / "data.npz", "SUITE": d / "suite.h5",
            "SUITE2": d / "suite2.h5", "CASE": d / "case.h5", "RUN": d / "run.h5", "RUN2": d / "run2.h5",
            "DQN": d / "dqn.h5", "DQN2": d / "dqn2.h5"}


def argv(name, files, out_dir, replace=None):
    """The row's arguments with files and fresh outputs in ``out_dir``; ``replace`` maps an option or
    input label to another value."""
    row, replace = CONTRACT[name], replace or {}
    args, previous = [name], None
    for a in row.args:
        label = next((k for k, v in row.inputs.items() if v == a), None)
        if previous in replace:
            a = replace[previous]
        elif label in replace:
            a = replace[label]
        elif a.startswith("OUT:"):
            a = out_dir / a[4:]
        else:
            a = files.get(a, a)
        args.append(a)
        previous = a if isinstance(a, str) and a.startswith("--") else None
    return args


def option_value(name, files, out_dir, option):
    args = argv(name, files, out_dir)
    return args[args.index(option) + 1]


def during(name):
    """``(owner, attribute name)`` of the row's ``during`` function."""
    import importlib

    module, attribute = CONTRACT[name].during
    *path, attribute = attribute.split(".")
    owner = importlib.import_module(module)
    for part in path:
        owner = getattr(owner, part)
    return owner, attribute


def refuse_work(monkeypatch, name):
    """Fail the test if the command's work starts: the checks come before any work."""
    def started(*args, **kwargs):
        raise AssertionError(f"{name} started its work before refusing")

    monkeypatch.setattr(*during(name), started)


ROWS = sorted(CONTRACT)
NUMBERS = [(n, o, v) for n in ROWS for o in CONTRACT[n].integers for v in BAD_INTEGERS] + \
          [(n, o, v) for n in ROWS for o in CONTRACT[n].floats for v in BAD_FLOATS]
OUTPUTS = [(n, o) for n in ROWS for o in CONTRACT[n].outputs]
INPUTS = [(n, i) for n in ROWS for i in CONTRACT[n].inputs]


@pytest.mark.parametrize("name,option,value", NUMBERS)
def test_a_bad_number_is_one_line_naming_the_option(files, tmp_path, monkeypatch, name, option, value):
    refuse_work(monkeypatch, name)
    args = argv(name, files, tmp_path)
    args = args + [option, value] if option not in args else [*args[:args.index(option) + 1], value,
                                                             *args[args.index(option) + 2:]]
    assert_one_line_error(run(*args), 2, option)
    no_leftovers(tmp_path, [])


def long_name(tmp_path):
    """A file name that fits the 255-byte limit while its temporary twin does not."""
    return tmp_path / ("b" * 250 + ".h5")


@pytest.mark.parametrize("name,option", OUTPUTS)
@pytest.mark.parametrize("path,message", [
    ("nodir/", "is a directory name (it ends in '/')"),
    ("missing/dir/x.h5", "directory does not exist"),
    ("LONG", "File name too long (choose a shorter file name)"),
    ("DIR", "is a directory"),
    ("FIFO", "is not a regular file (a device, pipe or socket)"),
    ("/proc/refplastic-contract.h5", "cannot write /proc/refplastic-contract.h5"),
])
def test_a_bad_output_path_is_refused_before_any_work(files, tmp_path, monkeypatch, name, option, path, message):
    refuse_work(monkeypatch, name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    pipe = tmp_path / "work" / "pipe"
    if path == "FIFO":  # a named pipe stands for every file that is not a regular one (/dev/null too)
        os.mkfifo(pipe)
    out = run(*argv(name, files, tmp_path / "work",
                    {option: {"LONG": long_name(tmp_path / "work"), "DIR": tmp_path / "work", "FIFO": pipe}.get(path, path)}))
    assert_one_line_error(out, 2, message)
    assert f"'{option}'" in out.stderr
    no_leftovers(tmp_path, ["work"])
    no_leftovers(tmp_path / "work", ["pipe"] if path == "FIFO" else [])


@pytest.mark.parametrize("name", [n for n in ROWS if len(CONTRACT[n].outputs) > 1])
def test_two_outputs_on_one_path_are_refused(files, tmp_path, monkeypatch, name):
    refuse_work(monkeypatch, name)
    first, second = list(CONTRACT[name].outputs)[:2]
    out = run(*argv(name, files, tmp_path, {second: option_value(name, files, tmp_path, first)}))
    assert_one_line_error(out, 2, "are one file")
    no_leftovers(tmp_path, [])


@pytest.mark.parametrize("name,option,label", [(n, o, i) for n in ROWS for o in CONTRACT[n].outputs
                                               for i in CONTRACT[n].inputs])
def test_an_output_on_an_input_is_refused_and_the_input_kept(files, tmp_path, monkeypatch, name, option, label):
    refuse_work(monkeypatch, name)
    source = files[CONTRACT[name].inputs[label]]
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    before = copy.read_bytes()
    out = run(*argv(name, files, tmp_path, {label: copy, option: copy}))
    assert_one_line_error(out, 2, "the output would overwrite the input")
    assert copy.read_bytes() == before
    no_leftovers(tmp_path, [copy.name])


@pytest.mark.parametrize("name,option", OUTPUTS)
def test_a_file_of_another_kind_is_kept_unless_forced(files, tmp_path, name, option):
    kind = CONTRACT[name].outputs[option]
    precious = tmp_path / ("precious.png" if kind == "image" else "precious.h5")
    precious.write_text("a researcher's notes\n")
    out = run(*argv(name, files, tmp_path, {option: precious}))
    resumes = kind == "checkpoint"
    assert_one_line_error(out, 2, "to resume from; give another path" if resumes else "--force to overwrite it")
    assert precious.read_text() == "a researcher's notes\n"
    no_leftovers(tmp_path, [precious.name])
    if not resumes:
        out = run(*argv(name, files, tmp_path, {option: precious}), "--force")
        assert out.returncode == 0, out.stderr
        assert precious.read_bytes() != b"a researcher's notes\n"


@pytest.mark.parametrize("name", [n for n in ROWS if CONTRACT[n].outputs])
def test_outputs_of_the_same_kind_are_replaced(files, tmp_path, name):
    for _ in range(2):
        out = run(*argv(name, files, tmp_path))
        assert out.returncode == 0, out.stderr
    expected = {Path(str(option_value(name, files, tmp_path, o))).name for o in CONTRACT[name].outputs}
    no_leftovers(tmp_path, expected)


@pytest.mark.parametrize("name,label", INPUTS)
@pytest.mark.parametrize("kind,message", [
    ("missing", "no such file"),
    ("text", ""),
    ("loop", "Too many levels of symbolic links"),
])
def test_a_bad_input_file_is_one_line_naming_it(files, tmp_path, name, label, kind, message):
    bad = tmp_path / "bad.h5"
    if kind == "text":
        bad.write_text("not what it should be\n")
    elif kind == "loop":
        bad.symlink_to(tmp_path / "bad.h5")
    (tmp_path / "out").mkdir()
    out = run(*argv(name, files, tmp_path / "out", {label: bad}))
    assert_one_line_error(out, 1, message)
    assert str(bad) in out.stderr
    no_leftovers(tmp_path / "out", [])


def send_during(monkeypatch, name, signum, calls=1):
    """Send ``signum`` to this process on the ``calls``-th call of the row's ``during`` function."""
    owner, attribute = during(name)
    original, count = getattr(owner, attribute), [0]

    def signalled(*args, **kwargs):
        count[0] += 1
        if count[0] == calls:
            signal.raise_signal(signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, signalled)


@pytest.mark.parametrize("name", ROWS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_work_is_one_line_and_leaves_nothing_behind(files, tmp_path, monkeypatch, name, signum):
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    send_during(monkeypatch, name, signum)
    out = run(*argv(name, files, tmp_path))
    assert out.returncode == 128 + signum, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert "Traceback" not in out.stderr and "Error" not in out.stderr, out.stderr
    if CONTRACT[name].stop_line:
        start, end = CONTRACT[name].stop_line
        assert line.startswith(start) and line.endswith(end), out.stderr
        assert not list(tmp_path.glob("**/*.tmp-*"))
    elif CONTRACT[name].resumable:
        assert line.startswith(("stopped at step ", "stopped at frame ")), out.stderr
        assert line.endswith("; resume with the same command"), out.stderr
        assert not list(tmp_path.glob("*.tmp-*"))
    else:
        assert line == f"stopped by {signal.Signals(signum).name}; nothing was written", out.stderr
        no_leftovers(tmp_path, [])
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers


WALL_TIMES = ("seconds", "train_seconds", "probe_seconds", "frames_per_second")


def saved_numbers(path):
    """Every dataset and every attribute of the root, /run and /optimizer but the wall times, for
    comparing runs bit for bit."""
    values = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda key, obj: values.__setitem__(key, obj[()])
                     if isinstance(obj, h5py.Dataset) and key.rsplit("/", 1)[-1] not in WALL_TIMES else None)
        values.update({f"@{k}": v for k, v in f.attrs.items() if k not in WALL_TIMES})
        if "run" in f:
            values.update({f"run@{k}": v for k, v in f["run"].attrs.items()})
        if "optimizer" in f:
            values.update({f"optimizer@{k}": v for k, v in f["optimizer"].attrs.items()})
    return values


def assert_same_numbers(a, b):
    left, right = saved_numbers(a), saved_numbers(b)
    assert left.keys() == right.keys()
    for key in left:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


@pytest.mark.parametrize("name", [n for n in ROWS if CONTRACT[n].resumable])
def test_a_stopped_run_resumed_by_the_same_command_is_an_uninterrupted_one(files, tmp_path, monkeypatch, name):
    (tmp_path / "whole").mkdir()
    (tmp_path / "parts").mkdir()
    assert run(*argv(name, files, tmp_path / "whole")).returncode == 0
    with monkeypatch.context() as patch:
        send_during(patch, name, signal.SIGTERM, calls=2)
        stopped = run(*argv(name, files, tmp_path / "parts"))
    assert stopped.returncode == 143, stopped.stderr
    resumed = run(*argv(name, files, tmp_path / "parts"))
    assert resumed.returncode == 0, resumed.stderr
    for option, kind in CONTRACT[name].outputs.items():
        filename = Path(str(option_value(name, files, tmp_path, option))).name
        if kind == cli.PROGRESS:  # text: the progress at the end
            assert (tmp_path / "whole" / filename).read_text() == (tmp_path / "parts" / filename).read_text()
        else:
            assert_same_numbers(tmp_path / "whole" / filename, tmp_path / "parts" / filename)


LONG_RUNS = {
    "train": ["--steps", "4000", "--hidden", "32", "--eval-every", "1000", "--checkpoint-every", "250",
              "--checkpoint", "ck.h5", "--out", "net.h5"],
    "run": ["--preset", "smoke", "--set", "train_steps=3000", "--set", "probe_every=1000", "--set",
            "hessian_density=false", "--checkpoint", "ck.h5", "--out", "net.h5"],
    "dqn": ["--preset", "smoke", "--frames", "3200", "--set", "checkpoint_every=160", "--set", "statistics=false",
            "--checkpoint", "ck.h5", "--out", "net.h5"],
}
"""A run of each resumable command long enough (a few seconds) to be signalled from outside."""


def test_every_resumable_command_has_a_long_run():
    assert set(LONG_RUNS) == {n for n in ROWS if CONTRACT[n].resumable}


def start(name, cwd):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), name, *LONG_RUNS[name]], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, process, timeout=60):
    """Wait until ``path`` exists (the first checkpoint), while ``process`` runs."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("name", sorted(LONG_RUNS))
def test_signals_from_outside_stop_and_the_same_command_resumes(tmp_path, name):
    """SIGTERM from another process (as Slurm, Dask or `timeout` send it): a last checkpoint and one line;
    then SIGKILL at a random moment after the first checkpoint: the same command finishes the run, with
    the numbers of an uninterrupted one and no temporary file left."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir()
    parts.mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), name, *LONG_RUNS[name]], cwd=whole,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    process = start(name, parts)
    wait_for(parts / "ck.h5", process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1].endswith("; resume with the same command"), err
    assert not list(parts.glob("*.tmp-*"))

    process = start(name, parts)
    time.sleep(np.random.default_rng(0).uniform(0.5, 2.0))
    process.kill()
    process.communicate(timeout=60)

    finished = subprocess.run([sys.executable, str(ROOT / "cli.py"), name, *LONG_RUNS[name]], cwd=parts,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout == done.stdout
    assert not list(parts.glob("*.tmp-*"))
    for filename in ("ck.h5", "net.h5"):
        assert_same_numbers(whole / filename, parts / filename)


def test_stale_temporaries_of_dead_processes_are_removed_and_others_kept(files, tmp_path):
    from refplastic.outputs import HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "s.h5"
    stale = tmp_path / f"s.h5.tmp-{HOST}-{dead.stdout.strip()}"
    alive = tmp_path / f"s.h5.tmp-{HOST}-{os.getppid()}"
    elsewhere = tmp_path / f"s.h5.tmp-otherhost-{dead.stdout.strip()}"
    for path in (stale, alive, elsewhere):
        path.write_bytes(b"half a file")
    assert run("stats", files["NET"], "--names", "loss", "--out", out).returncode == 0
    no_leftovers(tmp_path, ["s.h5", alive.name, elsewhere.name])
