"""Run a grid: every unfinished run through an executor, until all have ended or the sweep stops.

Finished runs (their results file exists) are skipped, unfinished ones resume from their
checkpoints, so running the same sweep again after a crash, a lost worker or a reboot loses no
more than each run's last checkpoint interval. Stopping (:func:`run_grid`'s ``should_stop``)
creates the grid's stop file: queued runs do not start, running ones save their checkpoints.
"""

import os
import signal

from ..stopping import Stopped
from . import directory as layout
from .task import Outcome


class GridStopped(Stopped):
    """A sweep stopped by signal ``signum`` with ``finished`` of its ``total`` runs done; the
    others saved their checkpoints (or had not started)."""

    def __init__(self, signum, finished, total):
        self.finished, self.total = finished, total
        super().__init__(signum)

    def message(self):
        return (f"stopped by {signal.Signals(self.signum).name}: {self.finished} of {self.total} runs finished, "
                f"the others saved at their checkpoints; resume with the same command")


def run_grid(directory, runs, executor, on_progress=None, on_outcome=None, should_stop=None, poll_seconds=0.5):
    """Run each of ``runs`` (:class:`GridRun`\\ s) not yet finished in ``directory`` through
    ``executor``; their :class:`Outcome`\\ s in grid order. ``on_outcome(outcome)`` as each run
    ends, ``on_progress(running)`` every ``poll_seconds`` with ``{name: (done, total, unit)}`` of
    the runs that have reported progress, ``should_stop()`` true to stop the grid."""
    stop = layout.stop_path(directory)
    if os.path.exists(stop):
        os.remove(stop)
    outcomes, pending = {}, {}
    if should_stop is not None and should_stop():
        open(stop, "w").close()
    for run in runs:
        if os.path.exists(layout.results_path(directory, run.name)):
            outcomes[run.name] = Outcome(run.name, "done", "finished before")
        else:
            pending[executor.submit(directory, run)] = run
    try:
        while pending:
            for future in executor.wait(list(pending), poll_seconds):
                run = pending.pop(future)
                outcomes[run.name] = _outcome(future, run)
                if on_outcome is not None:
                    on_outcome(outcomes[run.name])
            if on_progress is not None:
                running = {run.name: layout.read_progress(directory, run.name) for run in pending.values()}
                on_progress({name: progress for name, progress in running.items() if progress is not None})
            if should_stop is not None and should_stop() and not os.path.exists(stop):
                open(stop, "w").close()
    except BaseException:  # a second signal, an error: the runs still going save and stop
        open(stop, "w").close()
        raise
    finally:
        executor.close()
    return [outcomes[run.name] for run in runs]


def _outcome(future, run):
    """The future's Outcome, or a failed one saying what the executor raised (a run whose workers
    kept dying, a cancelled task)."""
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 (whatever the executor raised is this run's failure)
        first = str(e).splitlines()[0] if str(e) else ""
        return Outcome(run.name, "failed", f"{type(e).__name__}: {first}" if first else type(e).__name__)
