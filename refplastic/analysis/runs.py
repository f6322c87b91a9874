"""The results files of a directory of runs, found by their content and loaded.

A directory of a grid holds the results files of ``refplastic run`` (root attribute ``format`` =
"refplastic-run", docs/results-format.md) and ``refplastic dqn`` ("refplastic-dqn", docs/dqn.md),
and may hold their checkpoints, a grid manifest, logs and anything else. :func:`find_results`
takes every ``*.h5`` directly in the directory whose format is one of the two and lists the other
``.h5`` files as skipped; a file that claims the ``.h5`` name but cannot be read as HDF5 is an
error naming it (a damaged result must not silently leave the tables). Other names are ignored.
"""

import json
import os
from typing import NamedTuple

from ..h5io import check_readable, exists, open_h5
from ..outputs import file_kind
from ..plasticity.results import FORMAT as RUN_FORMAT, read_results
from ..rl.results import FORMAT as DQN_FORMAT


class Found(NamedTuple):
    """The ``.h5`` files of a directory: ``plasticity`` and ``dqn`` results paths, and
    ``skipped`` ``(path, kind)`` pairs (checkpoints, other refplastic files, others' HDF5)."""

    plasticity: list
    dqn: list
    skipped: list


def check_directory(directory):
    """``directory`` as a string if it is a directory that can be listed, else a one-line OSError
    naming it as DIR."""
    directory = os.fspath(directory)
    try:
        present = exists(directory)
    except OSError as e:
        raise OSError(f"DIR: {e}") from None
    if not present:
        raise OSError(f"DIR: no such file or directory: {directory}")
    if not os.path.isdir(directory):
        raise OSError(f"DIR: {directory} is not a directory")
    if not os.access(directory, os.R_OK | os.X_OK):
        raise OSError(f"DIR: cannot read {directory}: Permission denied")
    return directory


def find_results(directory):
    """The :class:`Found` ``.h5`` files directly in ``directory`` (sorted by name); a one-line
    OSError naming an ``.h5`` file that cannot be read as HDF5, and, when there is no results
    file at all, ``DIR: no results files of refplastic run or refplastic dqn in it``."""
    directory = check_directory(directory)
    found = Found([], [], [])
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not name.endswith(".h5") or os.path.isdir(path):
            continue
        kind = file_kind(check_readable(path))
        if kind in (None, "empty"):
            raise OSError(f"{path}: not a readable HDF5 file{' (it is empty)' if kind == 'empty' else ''}")
        if kind == "HDF5":
            open_h5(path, links=True).close()  # an HDF5 file without a format attribute, or a damaged one
        if kind == RUN_FORMAT:
            found.plasticity.append(path)
        elif kind == DQN_FORMAT:
            found.dqn.append(path)
        else:
            found.skipped.append((path, kind))
    if not (found.plasticity or found.dqn):
        raise OSError(f"{directory}: no results files of refplastic run or refplastic dqn in it")
    return found


class PlasticityRun(NamedTuple):
    """A loaded ``refplastic run`` results file: its ``config`` (dict), root ``attrs``, ``record``
    and the ``statistic_names`` of ``record["statistics"]["values"]``."""

    path: str
    config: dict
    attrs: dict
    record: dict
    statistic_names: list

    @property
    def name(self):
        """The file name without ``.h5``."""
        return os.path.basename(self.path)[:-3]

    @property
    def intervention(self):
        """The interventions joined with "+" ("none" for none)."""
        return "+".join(self.config["intervention"]) or "none"

    @property
    def diverged(self):
        return self.attrs.get("status") == "diverged"


def load_plasticity_runs(paths):
    """The :class:`PlasticityRun` of each path (one-line ValueErrors naming a bad file)."""
    runs = []
    for path in paths:
        attrs, record, names = read_results(path)
        try:
            config = json.loads(attrs["config"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: attribute 'config' is not the JSON of a run's config") from None
        runs.append(PlasticityRun(path, config, attrs, record, list(names)))
    return runs
