"""A batch of inputs and targets from a file a user hands in: ``.npz`` or HDF5.

The file holds two arrays, ``inputs`` (N, ...) and ``targets`` (N, ...) (int labels for
cross-entropy, floats otherwise). ``.npz`` files are read with ``allow_pickle=False``; nothing is
ever unpickled.
"""

import os
import zipfile

import numpy as np

from ..h5io import open_h5

FIELDS = ("inputs", "targets")


def load_batch(path):
    """``(inputs, targets)`` from ``path``, validated; one-line errors name the file and field."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise OSError(f"no such file: {path}")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in FIELDS if k in f.files}
        except (ValueError, OSError, zipfile.BadZipFile):
            raise ValueError(f"{path}: not a readable .npz file of plain arrays") from None
    else:
        with open_h5(path) as f:
            arrays = {k: f[k][()] for k in FIELDS if k in f}
    for field in FIELDS:
        if field not in arrays:
            raise ValueError(f"{path}: missing array {field!r}")
    inputs, targets = (np.asarray(arrays[k]) for k in FIELDS)
    for field, a in zip(FIELDS, (inputs, targets)):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)) or a.ndim == 0:
            raise ValueError(f"{path}: {field!r} must be a numeric array with a batch axis, got {a.dtype} {a.shape}")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{path}: {field!r} contains NaN or infinity")
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"{path}: 'inputs' and 'targets' must have the same non-zero length, "
                         f"got {len(inputs)} and {len(targets)}")
    return inputs, targets
