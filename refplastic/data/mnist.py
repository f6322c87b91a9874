"""MNIST from a directory of its four IDX files, each plain or gzipped (as distributed).

IDX layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic ``00 00 T D`` (T the
dtype code, D the number of dimensions), D big-endian uint32 sizes, then the values, big-endian,
in C order. MNIST's images are ``00 00 08 03`` (unsigned bytes, N x 28 x 28), its labels
``00 00 08 01`` (unsigned bytes, N).
"""

import gzip
import math
import os
import zlib

import numpy as np

from ..h5io import exists
from .images import ImageDataset

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASS_NAMES = tuple(str(d) for d in range(10))


def read_idx(path):
    """The array stored in the IDX file ``path`` (gzipped or not, told by its first bytes), in
    native byte order; a one-line ValueError naming the file and the field for anything wrong."""
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX header: {len(data)} bytes, the magic alone is 4")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: wrong magic {data[:4].hex(' ')}: an IDX file starts with 00 00")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x} (known: "
                         f"{', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    if ndim == 0:
        raise ValueError(f"{path}: dims: the header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dims need {header} bytes, "
                         f"the file has {len(data)}")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "trailing bytes"
        raise ValueError(f"{path}: {what}: dims {'x'.join(map(str, dims))} need {expected} bytes of "
                         f"data after the header, the file has {found}")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def load_mnist(directory):
    """MNIST as an :class:`ImageDataset` (60,000 + 10,000 images (N, 1, 28, 28) in the real
    files) from ``directory`` or its ``MNIST/raw`` (where torchvision keeps them)."""
    directory = os.fspath(directory)
    paths = _find_files(directory)
    parts = {}
    for part, (images_name, labels_name) in FILES.items():
        images_path, labels_path = paths[images_name], paths[labels_name]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(f"{images_path}: dtype code and dims: expected unsigned-byte images "
                             f"N x H x W (magic 00 00 08 03), got {images.dtype} with {images.ndim} dims")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(f"{labels_path}: dtype code and dims: expected unsigned-byte labels N "
                             f"(magic 00 00 08 01), got {labels.dtype} with {labels.ndim} dims")
        if len(labels) != len(images):
            raise ValueError(f"{labels_path}: count: {len(labels)} labels for the {len(images)} images "
                             f"of {images_path}")
        if labels.size and labels.max() > 9:
            i = int(np.argmax(labels > 9))
            raise ValueError(f"{labels_path}: labels: label {labels[i]} at index {i} is outside 0..9")
        parts[part] = images[:, None], labels.astype(np.int64)
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    if x_train.shape[1:] != x_test.shape[1:]:
        (h, w), (th, tw) = x_train.shape[2:], x_test.shape[2:]
        raise ValueError(f"{paths[FILES['test'][0]]}: dims: test images are {th}x{tw}, train images {h}x{w}")
    return ImageDataset("mnist", x_train, y_train, x_test, y_test, CLASS_NAMES,
                        f"MNIST IDX files in {os.path.dirname(paths[FILES['train'][0]])}")


def _find_files(directory):
    """``{name: path}`` for the four files, each ``name`` or else ``name.gz``, all from the first of
    ``directory`` and ``directory/MNIST/raw`` (torchvision's layout) that holds any of them."""
    names = [n for pair in FILES.values() for n in pair]
    folders = [directory, os.path.join(directory, "MNIST", "raw")]
    for folder in folders:
        found = {n: p for n in names if (p := _plain_or_gz(folder, n))}
        if found:
            missing = [n for n in names if n not in found]
            if missing:
                raise ValueError(f"{folder}: missing MNIST file {missing[0]} (or {missing[0]}.gz); "
                                 f"MNIST needs {', '.join(names)}")
            return found
    raise ValueError(f"{directory}: no MNIST files: looked for {', '.join(names)} (each plain or .gz) "
                     f"in {' and '.join(folders)}")


def _plain_or_gz(folder, name):
    for path in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
        if exists(path) and os.path.isfile(path):  # a symbolic link loop is an error, not an absent file
            return path
    return None


def _read_bytes(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: not a readable gzip file ({e})") from None
