"""One run of a grid, on whichever machine runs it: the ``refplastic run`` (or ``dqn``) command in
its own process, resumed from its checkpoint, with one BLAS thread.

The same function serves both executors: a thread of the local executor calls it, and so does a
Dask worker (the function and its :class:`GridRun` are what the scheduler ships). A run is a
child process rather than a call because the command already keeps the command-line contract
(a last checkpoint on SIGTERM, NaN divergence recorded, one-line errors), because one process per
run gets one BLAS thread whatever the worker's other runs do, and because a stuck or crashing run
cannot take the worker down.

What makes a lost worker harmless: the child is told to get SIGTERM when the thread that started
it dies (Linux's ``PR_SET_PDEATHSIG``), so it saves its checkpoint and stops; it holds the run's
lock (an ``flock`` inherited from this function) until it has, and the retried run on another
worker waits for that lock before it resumes from the checkpoint. Two copies of one run therefore
never write the same checkpoint at once.
"""

import ctypes
import dataclasses
import fcntl
import functools
import os
import signal
import socket
import subprocess
import sys
import time

from . import directory as layout

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
SUMMARY_STARTS = ("plasticity loss", "final evaluation return", "diverged at")
"""The lines of a run's output that say how it ended (refplastic run's and refplastic dqn's)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one run of a grid ended: ``status`` is "finished" (this time), "done" (finished before),
    "stopped" (saved its checkpoint: the next sweep resumes it) or "failed"; ``message`` is the
    run's summary line or its one-line error; ``seconds`` of wall time this time."""

    name: str
    status: str
    message: str = ""
    seconds: float = 0.0


def run_one(directory, run, threads=1):
    """Run ``run`` (a :class:`GridRun`) of the grid in ``directory`` to its end: its results file,
    or its checkpoint if it was stopped; the :class:`Outcome`."""
    started = time.perf_counter()
    lock = os.open(layout.lock_path(directory, run.name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while a lost attempt's process saves and stops
        if os.path.exists(layout.results_path(directory, run.name)):
            return Outcome(run.name, "done", "finished before")
        if os.path.exists(layout.stop_path(directory)):
            return Outcome(run.name, "stopped", "not started: the sweep was stopped")
        code, lines = _run_command(directory, run, threads, lock)
    finally:
        os.close(lock)
    seconds = time.perf_counter() - started
    if code == 0 and os.path.exists(layout.results_path(directory, run.name)):
        for path in (layout.checkpoint_path(directory, run.name), layout.progress_path(directory, run.name)):
            if os.path.exists(path):
                os.remove(path)
        summary = [line for line in lines if line.startswith(SUMMARY_STARTS)]
        return Outcome(run.name, "finished", summary[-1] if summary else "", seconds)
    if code in (128 + signal.SIGTERM, 128 + signal.SIGINT):
        return Outcome(run.name, "stopped", "saved its checkpoint", seconds)
    errors = [line for line in lines if line.startswith("Error:")]
    reason = errors[-1] if errors else (f"killed by {signal.Signals(-code).name}" if code < 0 else
                                        f"exit code {code}: {lines[-1] if lines else 'no output'}")
    return Outcome(run.name, "failed", reason, seconds)


def command_line(run):
    """The run's command, to be run in the grid's directory (so that its files, which record it,
    are the same wherever the grid is): ``python -m refplastic.cli <arguments> --checkpoint
    NAME.ck.h5 --out NAME.h5 --progress .progress/NAME``."""
    here = ""
    return [sys.executable, "-m", "refplastic.cli", *run.arguments(),
            "--checkpoint", layout.checkpoint_path(here, run.name), "--out", layout.results_path(here, run.name),
            "--progress", layout.progress_path(here, run.name)]


def _run_command(directory, run, threads, lock):
    """Run the command with its output appended to the run's log; ``(exit code, this attempt's
    lines)``. A stop file in ``directory`` sends the child SIGTERM (it checkpoints and exits)."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    command = command_line(run)
    with open(layout.log_path(directory, run.name), "a+") as log:
        log.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}: "
                  f"{' '.join(command[1:])}\n")
        log.flush()
        start = log.tell()
        child = subprocess.Popen(command, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                 pass_fds=(lock,), preexec_fn=functools.partial(_stop_with_parent, os.getpid()))
        signalled = False
        while True:
            try:
                code = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if not signalled and os.path.exists(layout.stop_path(directory)):
                    child.send_signal(signal.SIGTERM)
                    signalled = True
        log.seek(start)
        text = log.read()
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return code, lines


def _stop_with_parent(parent):
    """In the child before it runs: SIGTERM when the thread that started it dies (Linux only), at
    once if the parent ``parent`` is already gone."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
