"""A batch of inputs and targets from a file a user hands in: ``.npz`` or HDF5.

The file holds two arrays, ``inputs`` (N, ...) and ``targets`` (N, ...) (int labels (N,) or float
class probabilities (N, C) for cross-entropy, floats of the outputs' shape otherwise);
:func:`check_batch` checks them against a network and a loss. ``.npz`` files are read with
``allow_pickle=False``; nothing is ever unpickled.
"""

import zipfile

import h5py
import numpy as np

from ..curvature.hvp import preserved_buffers
from ..h5io import check_readable, open_h5
from ..nn import Conv2d, CrossEntropyLoss, Linear
from ..nn.losses import check_probabilities

FIELDS = ("inputs", "targets")


def load_batch(path):
    """``(inputs, targets)`` from ``path``, validated; one-line errors name the file and field.

    The kind of file is told by its first bytes (a zip archive is read as ``.npz``, anything else
    as HDF5), not by its name.
    """
    path = check_readable(path)
    if _is_zip(path):
        arrays = _read_npz(path)
    elif h5py.is_hdf5(path):
        arrays = _read_h5(path)
    else:
        raise ValueError(f"{path}: neither a .npz archive nor an HDF5 file")
    for field in FIELDS:
        if field not in arrays:
            raise ValueError(f"{path}: missing array {field!r}")
    inputs, targets = (np.asarray(arrays[k]) for k in FIELDS)
    for field, a in zip(FIELDS, (inputs, targets)):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            hint = " (store booleans as 0 and 1)" if a.dtype == bool else ""
            raise ValueError(f"{path}: {field!r} must hold integers or floats, got {a.dtype}{hint}")
        if a.ndim == 0:
            raise ValueError(f"{path}: {field!r} must be an array with a batch axis, got a single number")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{path}: {field!r} contains NaN or infinity")
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"{path}: 'inputs' and 'targets' must have the same non-zero length, "
                         f"got {len(inputs)} and {len(targets)}")
    return inputs, targets


def check_batch(net, loss, x, t, where):
    """A one-line ValueError naming ``where`` unless ``net`` takes the inputs ``x``, ``loss`` takes
    the targets ``t``, and the loss is finite; the network's buffers are left unchanged.

    The inputs need a batch axis before the axes the first layer takes; float targets of
    cross-entropy must be class probabilities (:func:`refplastic.nn.losses.check_probabilities`).
    """
    if np.ndim(x) < 2:
        raise ValueError(f"{where}: 'inputs' of shape {np.shape(x)} has no batch axis: the network's first "
                         f"layer, {net.layers[0]!r}, takes inputs of shape {_input_shape(net.layers[0])}")
    try:
        with preserved_buffers(net), np.errstate(all="ignore"):
            z = net.forward(x)
    except ValueError as e:
        raise ValueError(f"{where}: 'inputs' of shape {np.shape(x)} do not fit the network: {e}") from None
    try:
        with np.errstate(all="ignore"):
            value = loss(z, t)
        if isinstance(loss, CrossEntropyLoss) and np.issubdtype(np.asarray(t).dtype, np.floating):
            check_probabilities(t)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if not np.isfinite(value):
        raise ValueError(f"{where}: the loss is not finite on this batch (the inputs overflow the network)")


def _input_shape(layer):
    """The input shape a first layer takes, for a message: ``(N, 32)`` for Linear(32, ...)."""
    if isinstance(layer, Linear):
        return f"(N, {layer.in_features})"
    if isinstance(layer, Conv2d):
        return f"(N, {layer.in_channels}, H, W)"
    return "(N, ...)"


def _is_zip(path):
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in FIELDS if k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        raise ValueError(f"{path}: not a readable .npz file of plain arrays") from None


def _read_h5(path):
    with open_h5(path) as f:
        for field in FIELDS:
            if field in f and not isinstance(f[field], h5py.Dataset):
                raise ValueError(f"{path}: /{field} must be a dataset, found a group")
        return {k: f[k][()] for k in FIELDS if k in f}
