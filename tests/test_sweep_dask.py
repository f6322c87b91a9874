"""refplastic sweep --scheduler: the same grid through a real Dask scheduler and two workers started
here on 127.0.0.1 (the ``dask scheduler`` and ``dask worker`` commands) gives the numbers of the
local executor, survives a worker killed in the middle of a run, and an unreachable scheduler is
one line. Skipped without the ``cluster`` extra (.ci/run installs it)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the 'cluster' extra (Dask's distributed) is not installed")

from test_cli_bad_input import assert_one_line_error, run  # noqa: E402
from test_cli_contract import assert_same_numbers  # noqa: E402
from test_sweep import GRID, NAMES, sweep, uninterrupted  # noqa: E402, F401 (the fixture, shared)

DASK = str(Path(sys.executable).parent / "dask")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_worker(address, name):
    return subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                             "--name", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def cluster():
    """A scheduler and two one-thread workers on 127.0.0.1; yields (address, workers)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        with distributed.Client(address, timeout=60) as client:
            workers = [start_worker(address, f"w{i}") for i in range(2)]
            client.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*workers, scheduler]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_grid_on_a_dask_cluster_gives_the_numbers_of_the_local_executor(uninterrupted, cluster, tmp_path):
    whole, _ = uninterrupted
    address, _ = cluster
    done = sweep(tmp_path / "grid", "--scheduler", address)
    assert done.returncode == 0, done.stderr
    assert f"on the Dask scheduler at {address}" in done.stdout
    for name in NAMES:
        assert_same_numbers(whole / f"{name}.h5", tmp_path / "grid" / f"{name}.h5")


def test_a_worker_killed_mid_run_is_survived(uninterrupted, cluster, tmp_path):
    whole, _ = uninterrupted
    address, workers = cluster
    directory = tmp_path / "grid"
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "sweep", *GRID,
                                "--out", str(directory), "--scheduler", address],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = [directory / f"{name}.ck.h5" for name in NAMES]
    deadline = time.monotonic() + 120
    while not any(p.exists() for p in checkpoints):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(workers[0].pid, signal.SIGKILL)  # its run gets SIGTERM, saves, and is given to the other worker
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "2 of 2 runs finished" in out
    for name in NAMES:
        assert_same_numbers(whole / f"{name}.h5", directory / f"{name}.h5")


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    out = run("sweep", "--preset", "smoke", "--scheduler", f"tcp://127.0.0.1:{free_port()}", "--out", tmp_path / "g")
    assert_one_line_error(out, 1, "--scheduler: cannot reach the Dask scheduler at tcp://127.0.0.1:")
