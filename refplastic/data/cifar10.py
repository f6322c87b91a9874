"""CIFAR-10 from a directory of its binary or its python batches (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html).

Binary version (``cifar-10-batches-bin``): ``data_batch_1.bin`` .. ``data_batch_5.bin`` (train) and
``test_batch.bin``, each a run of 3073-byte records: one label byte (0..9), then the 32x32 image's
1024 red, 1024 green and 1024 blue bytes, each plane row by row; that is (3, 32, 32), NCHW as is.

Python version (``cifar-10-batches-py``): ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``,
each a pickled dict with ``b"data"``, a (N, 3072) uint8 array of the same rows, and ``b"labels"``,
a list of N ints. Read only through :mod:`restricted_pickle`, which calls nothing the file names.
When a directory holds both versions the binary one is read (it needs no unpickling).
"""

import os

import numpy as np

from ..h5io import exists
from .images import ImageDataset
from .restricted_pickle import PickledArray, load_restricted

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_BYTES = 3 * 32 * 32
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
VERSIONS = {"binary": tuple(f"{b}.bin" for b in TRAIN_BATCHES) + ("test_batch.bin",),
            "python": TRAIN_BATCHES + ("test_batch",)}
SUBDIRS = ("cifar-10-batches-bin", "cifar-10-batches-py")  # where the archives unpack


def load_cifar10(directory):
    """CIFAR-10 as an :class:`ImageDataset` (50,000 + 10,000 images (N, 3, 32, 32) in the real
    files) from ``directory`` or its ``cifar-10-batches-bin`` or ``cifar-10-batches-py``."""
    directory = os.fspath(directory)
    folder, version = _find_batches(directory)
    read = _read_binary_batch if version == "binary" else _read_python_batch
    batches = [read(os.path.join(folder, name)) for name in VERSIONS[version]]
    x_train = np.concatenate([x for x, _ in batches[:-1]])
    y_train = np.concatenate([y for _, y in batches[:-1]])
    x_test, y_test = batches[-1]
    return ImageDataset("cifar10", x_train, y_train, x_test, y_test, CLASS_NAMES,
                        f"CIFAR-10 {version} batches in {folder}")


def _read_binary_batch(path):
    size = os.path.getsize(path)
    if size == 0 or size % (1 + IMAGE_BYTES):
        raise ValueError(f"{path}: size: {size} bytes is not a whole, non-zero number of "
                         f"{1 + IMAGE_BYTES}-byte records (a label byte and {IMAGE_BYTES} image bytes)")
    records = np.fromfile(path, np.uint8).reshape(-1, 1 + IMAGE_BYTES)
    return _checked(path, records[:, 1:], records[:, 0])


def _read_python_batch(path):
    batch = load_restricted(path)
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: holds a {type(batch).__name__}, not a CIFAR-10 batch dict")
    data, labels = (batch.get(key, batch.get(key.decode())) for key in (b"data", b"labels"))
    if not isinstance(data, PickledArray):
        raise ValueError(f"{path}: field 'data': expected a uint8 array, found {type(data).__name__}")
    data = data.to_numpy()
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES or len(data) == 0:
        raise ValueError(f"{path}: field 'data': expected (N, {IMAGE_BYTES}) rows with N > 0, "
                         f"found {data.shape}")
    if not (isinstance(labels, list) and all(type(v) is int for v in labels)):
        raise ValueError(f"{path}: field 'labels': expected a list of ints, found {type(labels).__name__}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: field 'labels': {len(labels)} labels for {len(data)} images")
    try:
        labels = np.array(labels, np.int64)
    except OverflowError:
        raise ValueError(f"{path}: field 'labels': a label is outside 0..9") from None
    return _checked(path, data, labels)


def _checked(path, rows, labels):
    """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` from rows of 3072 bytes, the labels
    checked to lie in 0..9."""
    labels = labels.astype(np.int64)
    outside = (labels < 0) | (labels > 9)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"{path}: labels: label {labels[i]} of image {i} is outside 0..9")
    return np.ascontiguousarray(rows).reshape(-1, 3, 32, 32), labels


def _find_batches(directory):
    """``(folder, version)``: the first of ``directory`` and its two archive folders holding any
    batch, and the first version (binary, then python) with a batch there; all six must be there."""
    folders = [directory] + [os.path.join(directory, s) for s in SUBDIRS]
    for folder in folders:
        for version, names in VERSIONS.items():
            paths = [os.path.join(folder, n) for n in names]
            present = [exists(p) and os.path.isfile(p) for p in paths]  # a symbolic link loop is an error
            if any(present):
                if not all(present):
                    missing = names[present.index(False)]
                    raise ValueError(f"{folder}: missing CIFAR-10 batch {missing}; the {version} version "
                                     f"needs {', '.join(names)}")
                return folder, version
    raise ValueError(f"{directory}: no CIFAR-10 batches: looked for {', '.join(VERSIONS['binary'])} "
                     f"(binary version) or {', '.join(VERSIONS['python'])} (python version) in "
                     f"{', '.join(folders)}")
