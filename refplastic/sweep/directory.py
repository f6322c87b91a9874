"""The directory of a grid: what ``refplastic sweep --out DIR`` writes, and how it knows what is done.

::

    DIR/grid.json              the manifest: the grid asked for and the command line of every run
    DIR/NAME.h5                a finished run's results (written whole by the run, so it exists only
                               when the run is done: a finished run is skipped)
    DIR/NAME.ck.h5             an unfinished run's checkpoint (the run resumes from it; removed when
                               the run has finished)
    DIR/logs/NAME.log          everything the run printed, each attempt after a header line
    DIR/.progress/NAME         "refplastic-progress DONE TOTAL UNIT", rewritten by the running run about once a second
    DIR/.locks/NAME            held (flock) by the process running NAME, so that a retried run
                               waits for a lost one to stop
    DIR/.stop                  present: every run of the grid stops at its next safe point and
                               saves its checkpoint (how a stopped sweep reaches runs on other machines)

All paths are relative to DIR, which every worker of a cluster must see at the same path.
"""

import json
import os

from ..outputs import atomic_path

MANIFEST, FORMAT, VERSION = "grid.json", "refplastic-grid", 1


def results_path(directory, name):
    return os.path.join(directory, f"{name}.h5")


def checkpoint_path(directory, name):
    return os.path.join(directory, f"{name}.ck.h5")


def log_path(directory, name):
    return os.path.join(directory, "logs", f"{name}.log")


def progress_path(directory, name):
    return os.path.join(directory, ".progress", name)


def lock_path(directory, name):
    return os.path.join(directory, ".locks", name)


def stop_path(directory):
    return os.path.join(directory, ".stop")


def make_directories(directory):
    """DIR and its subdirectories (an OSError if one cannot be made)."""
    for sub in ("", "logs", ".progress", ".locks"):
        os.makedirs(os.path.join(directory, sub), exist_ok=True)


def manifest(grid, runs):
    """The manifest of ``grid`` (a :class:`Grid`) and its ``runs``, as a JSON-ready dict."""
    return {"format": FORMAT, "version": VERSION, "command": grid.command, "preset": grid.preset,
            "axes": {key: list(values) for key, values in grid.axes},
            "runs": [{"name": run.name, "arguments": run.arguments()} for run in runs]}


def read_manifest(directory):
    """The manifest in ``directory``, or None if it has none; a ValueError if it is not one."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a grid manifest: {e}") from None
    if not isinstance(found, dict) or found.get("format") != FORMAT or not isinstance(found.get("runs"), list):
        raise ValueError(f"{path} is not a grid manifest of refplastic sweep")
    return found


def claim(directory, grid, runs):
    """Write the manifest of ``grid`` in ``directory``, or check that the one there asks for the
    same runs: a ValueError says how the grids differ if not (one directory, one grid)."""
    wanted = manifest(grid, runs)
    found = read_manifest(directory)
    if found is None:
        with atomic_path(os.path.join(directory, MANIFEST)) as tmp, open(tmp, "w") as f:
            json.dump(wanted, f, indent=1)
        return
    if found["runs"] != wanted["runs"]:
        old = {run.get("name") for run in found["runs"] if isinstance(run, dict)}
        new = {run["name"] for run in wanted["runs"]}
        difference = (f"{len(new - old)} of its {len(new)} runs are not in it" if new != old
                      else "the same run names with other command lines")
        raise ValueError(f"{directory} holds another grid ({MANIFEST}: {len(found['runs'])} runs of refplastic "
                         f"{found.get('command')}; this grid: {difference}); give a new directory")


def read_progress(directory, name):
    """``(done, total, unit)`` of a running run, or None before its first report."""
    try:
        with open(progress_path(directory, name)) as f:
            kind, done, total, unit = f.read().split()
        if kind != "refplastic-progress":
            return None
        return int(done), int(total), unit
    except (OSError, ValueError):
        return None
