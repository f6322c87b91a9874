"""HDF5 helpers shared by checkpoints, results and reference files.

Files are written under a temporary name in the same directory and renamed into place only when
complete, so a crash or an error never leaves a half-written file behind.
"""

import contextlib
import json
import os
import sys

import h5py
import numpy as np

from . import __version__


@contextlib.contextmanager
def atomic_h5(path):
    """Open ``path`` for writing as a temporary HDF5 file; rename it to ``path`` on success."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OSError(f"directory does not exist: {directory}")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["refplastic_version"] = __version__
            f.attrs["command"] = command_line()
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def open_h5(path):
    """Open an existing HDF5 file for reading, with a one-line error if it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise OSError(f"no such file: {path}")
    try:
        return h5py.File(path, "r")
    except OSError:
        raise OSError(f"not a readable HDF5 file: {path}") from None


def command_line():
    """The command line that is running, as one string (recorded in every file written)."""
    return " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else ""


def write_json_attr(obj, key, value):
    obj.attrs[key] = json.dumps(value, sort_keys=True)


def read_json_attr(obj, key, where):
    if key not in obj.attrs:
        raise ValueError(f"{where}: missing attribute {key!r}")
    try:
        return json.loads(obj.attrs[key])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: attribute {key!r} is not valid JSON") from None


def write_dict(group, values):
    """Arrays become datasets and scalars become attributes of ``group``."""
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
        else:
            group.attrs[key] = value


def read_dict(group, where):
    """Inverse of :func:`write_dict`: datasets as arrays, attributes as Python scalars."""
    return {**read_attrs(group), **read_datasets(group, where)}


def read_attrs(obj):
    """``{name: value}`` of the attributes of ``obj``, 0-d values as Python scalars."""
    values = {k: np.asarray(v) for k, v in obj.attrs.items()}
    return {k: (v.item() if v.ndim == 0 else v) for k, v in values.items()}


def read_datasets(group, where):
    """``{name: array}`` of the members of ``group``, each of which must be a dataset."""
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{where}: expected a group, found a dataset")
    arrays = {}
    for name, member in group.items():
        if not isinstance(member, h5py.Dataset):
            raise ValueError(f"{where}/{name}: expected a dataset, found a group")
        arrays[name] = member[()]
    return arrays
