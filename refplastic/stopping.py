"""Stopping on SIGTERM and SIGINT: a long job stops at a safe point, saves, and says where.

Schedulers (Slurm, Dask, ``timeout``) send SIGTERM and, a while later, SIGKILL; a person at a
terminal presses Ctrl-C (SIGINT). Inside :func:`stop_signals` either signal raises
:class:`Stopped` at once, so that every ``finally`` runs (a half-written output is removed, see
:mod:`refplastic.outputs`) and the command exits with one line and the shell's code for the
signal, 128 + its number: 143 for SIGTERM, 130 for SIGINT.

A job with a checkpoint instead polls. Inside :func:`polling`, the first signal is only recorded;
the job asks :func:`stop_requested` at its safe points (after a whole step), writes a last
checkpoint and raises :class:`Stopped` with the step, so the same command resumes where it
stopped. A second signal while a job polls raises at once (the last complete checkpoint on disk
is kept, since checkpoints are written atomically).
"""

import contextlib
import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """A job ended by a stop signal: ``signum``, and the ``step`` it stopped at with whether a
    checkpoint of that step was ``saved`` (``step`` None for a job without steps); ``unit`` names
    what the job counts ("step", or "frame" for a DQN run)."""

    def __init__(self, signum, step=None, saved=False, unit="step"):
        self.signum, self.step, self.saved, self.unit = signum, step, saved, unit
        super().__init__(self.message())

    @property
    def exit_code(self):
        return 128 + self.signum

    def message(self):
        name = signal.Signals(self.signum).name
        if self.step is None:
            return f"stopped by {name}; nothing was written"
        if self.saved:
            return f"stopped at {self.unit} {self.step}; resume with the same command"
        return f"stopped at {self.unit} {self.step} by {name}; nothing was saved (give --checkpoint FILE to resume)"


class _State:
    """What the handler knows: the first signal received while polling, and whether a job polls."""

    requested = None
    polling = False


def _handle(signum, frame):
    if _State.polling and _State.requested is None:
        _State.requested = signum
        return
    raise Stopped(signum)


@contextlib.contextmanager
def stop_signals():
    """Handle SIGTERM and SIGINT in the block as this module describes; restore the previous
    handlers after. Only the main thread can install handlers; elsewhere this does nothing."""
    try:
        previous = {s: signal.signal(s, _handle) for s in SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _State.requested, _State.polling = None, False


@contextlib.contextmanager
def polling():
    """In the block, record the first stop signal instead of raising; see :func:`stop_requested`."""
    _State.polling, _State.requested = True, None
    try:
        yield
    finally:
        _State.polling = False


def stop_requested():
    """The number of the stop signal received while polling, or None: the job stops at once."""
    return _State.requested
