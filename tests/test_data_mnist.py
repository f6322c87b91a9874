"""MNIST from IDX files the tests write, plain and gzipped, and each broken file's one-line error."""

import gzip
import struct

import numpy as np
import pytest

from refplastic.data import load_mnist, read_idx
from refplastic.data.mnist import FILES

CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
         np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array, code=None):
    """``array`` in the IDX layout: 00 00, dtype code, number of dims, big-endian sizes and values."""
    array = np.asarray(array)
    code = CODES[array.dtype] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(directory, gz=False, n_train=6, n_test=4, size=28, seed=0):
    """The four MNIST files in ``directory`` with random contents; the arrays written, by file name."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for (images, labels), n in zip(FILES.values(), (n_train, n_test)):
        arrays[images] = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        arrays[labels] = rng.integers(0, 10, n, dtype=np.uint8)
    for name, a in arrays.items():
        write(directory / (name + (".gz" if gz else "")), idx_bytes(a), gz)
    return arrays


def assert_one_line(excinfo, path, *parts):
    """The error is one line ``PATH: ...`` holding each of ``parts`` after the path."""
    message = str(excinfo.value)
    prefix = f"{path}: "
    assert "\n" not in message and message.startswith(prefix), message
    assert all(p in message[len(prefix):] for p in parts), message


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz)
    data = load_mnist(tmp_path)
    (train_images, train_labels), (test_images, test_labels) = FILES.values()
    assert data.x_train.shape == (6, 1, 28, 28) and data.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.x_train[:, 0], arrays[train_images])
    np.testing.assert_array_equal(data.x_test[:, 0], arrays[test_images])
    assert data.y_train.dtype == np.int64
    np.testing.assert_array_equal(data.y_train, arrays[train_labels])
    np.testing.assert_array_equal(data.y_test, arrays[test_labels])
    assert data.class_names == tuple("0123456789") and data.name == "mnist"
    assert str(tmp_path) in data.source


def test_mnist_mixed_files_and_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = write_mnist(raw)
    name = FILES["test"][0]
    (raw / name).unlink()
    write(raw / (name + ".gz"), idx_bytes(arrays[name]), gz=True)
    np.testing.assert_array_equal(load_mnist(tmp_path).x_test[:, 0], arrays[name])


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_every_dtype(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = read_idx(write(tmp_path / "a", idx_bytes(a)))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("data, parts", [
    (b"\x00\x00", ["truncated IDX header"]),
    (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", ["wrong magic 01 00 08 01"]),
    (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", ["unknown IDX dtype code 0x07"]),
    (b"\x00\x00\x08\x00", ["dims", "0 dimensions"]),
    (b"\x00\x00\x08\x03" + struct.pack(">I", 5), ["truncated IDX header", "3 dims need 16 bytes"]),
    (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], ["truncated", "dims 2x3 need 6 bytes", "has 5"]),
    (idx_bytes(np.zeros((2, 3), np.int32))[:-1], ["truncated", "need 24 bytes", "has 23"]),
    (idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00", ["trailing bytes", "has 7"]),
])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_broken(tmp_path, data, parts, gz):
    path = write(tmp_path / "broken", data, gz)
    with pytest.raises(ValueError) as e:
        read_idx(path)
    assert_one_line(e, str(path), *parts)


def test_read_idx_bad_gzip(tmp_path):
    path = write(tmp_path / "x.gz", gzip.compress(idx_bytes(np.zeros(9, np.uint8)))[:-6])
    with pytest.raises(ValueError) as e:
        read_idx(path)
    assert_one_line(e, str(path), "not a readable gzip file")


def replace(directory, name, array):
    (directory / name).write_bytes(idx_bytes(array))
    return directory / name


@pytest.mark.parametrize("name, array, parts", [
    ("train-images-idx3-ubyte", np.zeros((6, 28, 28), np.int32), ["dtype code and dims", "images"]),
    ("train-images-idx3-ubyte", np.zeros((6, 784), np.uint8), ["dtype code and dims", "2 dims"]),
    ("t10k-labels-idx1-ubyte", np.zeros((4, 1), np.uint8), ["dtype code and dims", "labels"]),
    ("t10k-labels-idx1-ubyte", np.zeros(3, np.uint8), ["count: 3 labels for the 4 images",
                                                       "t10k-images-idx3-ubyte"]),
    ("train-labels-idx1-ubyte", np.array([1, 2, 3, 10, 4, 5], np.uint8), ["labels: label 10 at index 3",
                                                                          "outside 0..9"]),
    ("t10k-images-idx3-ubyte", np.zeros((4, 20, 20), np.uint8), ["dims: test images are 20x20",
                                                                 "train images 28x28"]),
])
def test_mnist_inconsistent_files(tmp_path, name, array, parts):
    write_mnist(tmp_path)
    path = replace(tmp_path, name, array)
    with pytest.raises(ValueError) as e:
        load_mnist(tmp_path)
    assert_one_line(e, str(path), *parts)


def test_mnist_missing_files(tmp_path):
    with pytest.raises(ValueError) as e:
        load_mnist(tmp_path)
    assert_one_line(e, tmp_path, "no MNIST files: looked for train-images-idx3-ubyte",
                    "t10k-labels-idx1-ubyte", "plain or .gz", str(tmp_path / "MNIST" / "raw"))
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(ValueError) as e:
        load_mnist(tmp_path)
    assert_one_line(e, tmp_path, "missing MNIST file t10k-labels-idx1-ubyte",
                    "(or t10k-labels-idx1-ubyte.gz)")


def test_a_file_that_is_a_symbolic_link_loop_is_named_not_missing(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").symlink_to(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(OSError, match="t10k-labels-idx1-ubyte: Too many levels of symbolic links"):
        load_mnist(tmp_path)
