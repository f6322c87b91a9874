"""refplastic sweep: grids from options and TOML files, the directory's manifest, and real grids of
smoke-preset runs on the local executor, stopped, killed and resumed; the Dask executor is in
test_sweep_dask.py."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from refplastic.sweep import directory as layout
from refplastic.sweep.grid import GridError, GridFileError, grid_from_options, grid_from_toml, grid_runs
from test_cli_bad_input import assert_one_line_error, run
from test_cli_contract import assert_same_numbers

ROOT = Path(__file__).resolve().parents[1]
RUN_OPTIONS = dict.fromkeys(("task", "data", "arch", "intervention", "seed"))


def options(**given):
    return {**RUN_OPTIONS, **given}


# ---- grids ---------------------------------------------------------------------------------------
def test_runs_are_every_combination_seeds_outermost_named_by_what_varies():
    grid = grid_from_options("run", "laptop", options(seed="0,1", arch="mlp,cnn", task="hard"), ["lr=1e-3,1e-4"])
    runs = grid_runs(grid)
    assert [r.name for r in runs] == [
        f"arch-{a}_lr-{lr}_seed-{s}" for s in (0, 1) for a in ("mlp", "cnn") for lr in ("1e-3", "1e-4")]
    assert runs[0].arguments() == ["run", "--preset", "laptop", "--task", "hard", "--arch", "mlp", "--seed", "0",
                                   "--set", "lr=1e-3"]


def test_one_runs_interventions_are_joined_by_plus_and_a_grid_of_one_is_named_run():
    runs = grid_runs(grid_from_options("run", "smoke", options(intervention="none,layernorm+twohot"), []))
    assert [r.name for r in runs] == ["intervention-none", "intervention-layernorm+twohot"]
    assert runs[1].arguments()[-2:] == ["--intervention", "layernorm,twohot"]
    assert [r.name for r in grid_runs(grid_from_options("run", "smoke", options(seed="3"), []))] == ["run"]


def test_a_dqn_grid_has_its_own_options():
    grid = grid_from_options("dqn", "smoke", {"game": "pong,breakout", "layernorm": "false,true", "frames": None,
                                              "seed": "0"}, [])
    runs = grid_runs(grid)
    assert runs[1].arguments() == ["dqn", "--preset", "smoke", "--game", "pong", "--layernorm", "--seed", "0"]
    assert runs[0].arguments()[5] == "--no-layernorm"
    with pytest.raises(GridError, match="true or false"):
        grid_from_options("dqn", "smoke", {"game": None, "layernorm": "yes", "frames": None, "seed": None}, [])


def test_a_toml_grid_is_the_grid_of_the_same_options(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text('preset = "smoke"\nseed = [0, 1]\narch = ["mlp", "cnn"]\nintervention = "layernorm+twohot"\n'
                    '[set]\nlr = [0.001, 0.0001]\nstatistics = false\n')
    from_file = grid_runs(grid_from_toml(path))
    from_options = grid_runs(grid_from_options("run", "smoke", options(seed="0,1", arch="mlp,cnn",
                                                                       intervention="layernorm+twohot"),
                                               ["lr=0.001,0.0001", "statistics=false"]))
    assert from_file == from_options


@pytest.mark.parametrize("text,message", [
    ("seed = [0,", "is not a TOML grid file"),
    ("colour = ['red']", "unknown key 'colour'"),
    ("seed = []", "seed is an empty list"),
    ("seed = [{a = 1}]", "must be a string, number or boolean"),
    ("set = 3", "set must be a table"),
    ("command = 'train'", "command: must be one of run, dqn"),
])
def test_a_bad_grid_file_says_what_is_wrong(tmp_path, text, message):
    path = tmp_path / "grid.toml"
    path.write_text(text + "\n")
    with pytest.raises(GridFileError, match=message):
        grid_from_toml(path)


@pytest.mark.parametrize("given,assignments,field,message", [
    ({"seed": "0,0"}, [], "seed", "value '0' given twice"),
    ({"seed": "0,,1"}, [], "seed", "expected a comma list"),
    ({}, ["lr"], "set", "expected FIELD=VALUE"),
    ({"data": "mnist:a/b,mnist:a-b"}, [], "grid", "two runs would share the name"),
])
def test_a_bad_grid_names_its_option(given, assignments, field, message):
    with pytest.raises(GridError, match=message) as caught:
        grid_runs(grid_from_options("run", "smoke", options(**given), assignments))
    assert caught.value.field == field


def test_a_directory_holds_one_grid(tmp_path):
    grid = grid_from_options("run", "smoke", options(seed="0,1"), [])
    layout.make_directories(tmp_path)
    layout.claim(tmp_path, grid, grid_runs(grid))
    layout.claim(tmp_path, grid, grid_runs(grid))  # the same grid again: fine
    other = grid_from_options("run", "smoke", options(seed="0,1,2"), [])
    with pytest.raises(ValueError, match="holds another grid .*1 of its 3 runs are not in it"):
        layout.claim(tmp_path, other, grid_runs(other))
    assert len(json.loads((tmp_path / "grid.json").read_text())["runs"]) == 2


# ---- the command ---------------------------------------------------------------------------------
GRID = ["--preset", "smoke", "--intervention", "none,layernorm", "--set", "train_steps=1200",
        "--set", "probe_every=600", "--set", "hessian_density=false", "--set", "checkpoint_every=100"]
NAMES = ("intervention-none", "intervention-layernorm")


def sweep(directory, *extra, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "sweep", *GRID, "--out", str(directory), *extra],
                          capture_output=True, text=True, timeout=600, **kwargs)


def start_sweep(directory):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "sweep", *GRID, "--out", str(directory),
                             "--jobs", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(paths, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not any(p.exists() for p in paths):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The grid run once, start to end, on the local executor."""
    directory = tmp_path_factory.mktemp("whole") / "grid"
    done = sweep(directory, "--jobs", "2")
    assert done.returncode == 0, done.stderr
    return directory, done


def test_a_grid_writes_one_results_file_a_run_and_says_so(uninterrupted):
    directory, done = uninterrupted
    assert sorted(p.name for p in directory.glob("*.h5")) == sorted(f"{n}.h5" for n in NAMES)
    assert not list(directory.glob("*.ck.h5")) and not list(directory.glob("**/*.tmp-*"))
    for name in NAMES:
        assert f"{name}: finished" in done.stdout and "plasticity loss" in done.stdout
        assert (directory / "logs" / f"{name}.log").read_text().startswith("== ")
    assert "2 of 2 runs finished" in done.stdout
    again = sweep(directory)
    assert again.returncode == 0 and "(2 finished before)" in again.stdout, again.stderr


def test_a_stopped_then_killed_grid_resumes_to_the_files_of_an_uninterrupted_one(uninterrupted, tmp_path):
    whole, _ = uninterrupted
    parts = tmp_path / "grid"
    checkpoints = [layout.checkpoint_path(parts, n) for n in NAMES]
    process = start_sweep(parts)
    wait_for([Path(p) for p in checkpoints], process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM: "), err
    assert err.strip().endswith("; resume with the same command"), err
    # the stop kept the work done: a checkpoint, or (a busy host can finish a short run in the
    # second the stop takes to reach it) a finished run's results file
    assert any(Path(p).exists() for p in checkpoints) or any(Path(layout.results_path(parts, n)).exists() for n in NAMES)

    process = start_sweep(parts)
    time.sleep(2.5)
    process.kill()  # the run it started gets SIGTERM (it outlived its parent), saves and stops
    process.communicate(timeout=60)

    finished = sweep(parts)  # waits for the orphaned run's lock, then resumes it
    assert finished.returncode == 0, finished.stderr
    for name in NAMES:
        assert_same_numbers(whole / f"{name}.h5", parts / f"{name}.h5")
    assert not list(parts.glob("*.ck.h5")) and not list(parts.glob("**/*.tmp-*"))


def test_failed_runs_are_listed_with_their_error_and_the_exit_code_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sweep", "--preset", "smoke", "--data",
                          f"builtin,mnist:{empty}", "--set", "statistics=false", "--out", str(tmp_path / "grid")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "1 of 2 runs finished" in out.stdout and "1 failed:" in out.stdout
    failure = out.stdout.strip().splitlines()[-1]
    assert failure.startswith("  data-mnist-") and "Error: " in failure and "no MNIST files" in failure
    assert (tmp_path / "grid" / "data-builtin.h5").exists()


@pytest.mark.parametrize("args,code,message", [
    (["--seed", "0,x"], 2, "'--seed': expected an integer, got 'x'"),
    (["--task", "hard,bogus"], 2, "'--task': must be one of"),
    (["--set", "lr=0.1,0"], 2, "'--set': lr must be a finite number"),
    (["--game", "pong"], 2, "--game is not an option of refplastic run; add --command dqn"),
    (["--command", "dqn", "--game", "pongg"], 2, "is not one of the 57"),
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:9"], 2, "--jobs is for runs on this machine"),
    (["--scheduler", "nothost"], 2, "'--scheduler': expected tcp://HOST:PORT (a port from 1 to 65535), got 'nothost'"),
    (["--scheduler", "tcp://host:0"], 2, "'--scheduler': expected tcp://HOST:PORT"),
    (["--preset", "cleanrl"], 2, "'--preset': must be one of paper, laptop, demo, smoke for refplastic run"),
])
def test_bad_options_are_one_line_before_any_work(tmp_path, args, code, message):
    out = run("sweep", *args, "--out", tmp_path / "grid")
    assert_one_line_error(out, code, message)
    assert not (tmp_path / "grid").exists()


def test_a_directory_of_another_grid_or_a_file_is_refused(tmp_path, uninterrupted):
    whole, _ = uninterrupted
    assert_one_line_error(run("sweep", "--preset", "smoke", "--seed", "7", "--out", whole), 2, "holds another grid")
    (tmp_path / "file").write_text("x\n")
    assert_one_line_error(run("sweep", "--preset", "smoke", "--out", tmp_path / "file"), 2, "'--out'")


@pytest.mark.parametrize("text,message", [
    ("arch = ['mlp', 'rnn']\n", "grid.toml: arch: must be one of"),
    ("seed = [0, 1\n", "is not a TOML grid file"),
])
def test_a_bad_grid_file_is_a_data_error_naming_it(tmp_path, text, message):
    (tmp_path / "grid.toml").write_text(text)
    out = run("sweep", "--grid", tmp_path / "grid.toml", "--out", tmp_path / "grid")
    assert_one_line_error(out, 1, message)


def test_list_prints_each_runs_command_without_touching_anything(tmp_path):
    out = run("sweep", "--preset", "smoke", "--seed", "0,1", "--list")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["seed-0: refplastic run --preset smoke --seed 0",
                                       "seed-1: refplastic run --preset smoke --seed 1"]


def test_a_grid_of_dqn_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sweep", "--command", "dqn", "--preset", "smoke",
                          "--layernorm", "false,true", "--set", "statistics=false", "--set", "probe_steps=1",
                          "--out", str(tmp_path / "grid")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "final evaluation return" in out.stdout and "2 of 2 runs finished" in out.stdout
    from refplastic.outputs import file_kind

    assert [file_kind(tmp_path / "grid" / f"layernorm-{v}.h5") for v in ("false", "true")] == ["refplastic-dqn"] * 2


@pytest.mark.parametrize("text,address", [("tcp://10.0.0.1:8786", "tcp://10.0.0.1:8786"), ("node7:8786", "tcp://node7:8786"),
                                          ("tcp://[::1]:8786", "tcp://[::1]:8786")])
def test_a_scheduler_address_is_tcp_host_port(text, address):
    from refplastic.sweep.executors import scheduler_address

    assert scheduler_address(text) == address
    for bad in ("node7", "tcp://node7", "node7:", ":8786", "node7:65536", "tls://node7:8786", "node7:x"):
        with pytest.raises(ValueError, match="expected tcp://HOST:PORT"):
            scheduler_address(bad)
