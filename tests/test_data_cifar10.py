"""CIFAR-10 from binary and python batches the tests write, each broken file's one-line error, and
hostile pickles refused without running anything."""

import builtins
import os
import pickle
import struct

import numpy as np
import pytest

from refplastic.data import load_cifar10
from refplastic.data.cifar10 import CLASS_NAMES, VERSIONS
from refplastic.data.restricted_pickle import load_restricted

SIZES = (3, 2, 4, 1, 2, 3)  # images in data_batch_1..5 and test_batch


def batches(seed=0):
    """``[(rows (n, 3072) uint8, labels (n,))]`` for the six batches."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n)) for n in SIZES]


def binary_batch(rows, labels):
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], rows], axis=1).tobytes()


def py2_string(s):
    """A Python 2 ``str`` as Python 2's pickle writes it: SHORT_BINSTRING, or BINSTRING when long."""
    s = s.encode("latin-1") if isinstance(s, str) else s
    return (b"U" + bytes([len(s)]) if len(s) < 256 else b"T" + struct.pack("<i", len(s))) + s


def py2_int(n):
    return b"K" + bytes([n]) if 0 <= n < 256 else b"M" + struct.pack("<H", n) if 0 <= n < 65536 \
        else b"J" + struct.pack("<i", n)


def python_batch(rows, labels, label="training batch 1 of 5"):
    """A CIFAR-10 python batch laid out as the real files are: a protocol-2 pickle written by Python 2
    and NumPy 1 (strings as BINSTRING opcodes; the array through numpy.core.multiarray._reconstruct,
    its dtype numpy.dtype('u1', 0, 1) with state (3, '|', None, None, None, -1, -1, 0))."""
    n = len(rows)
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + py2_int(0) + b"\x85"
             + py2_string("b") + b"\x87R(" + py2_int(1) + py2_int(n) + py2_int(3072) + b"\x86"
             + b"cnumpy\ndtype\n" + py2_string("u1") + py2_int(0) + py2_int(1) + b"\x87R("
             + py2_int(3) + py2_string("|") + b"NNN" + py2_int(-1) + py2_int(-1) + py2_int(0) + b"tb"
             + b"\x89" + py2_string(rows.tobytes()) + b"tb")
    int_list = b"](" + b"".join(py2_int(int(v)) for v in labels) + b"e"
    names = b"](" + b"".join(py2_string(f"image_{i}.png") for i in range(n)) + b"e"
    return (b"\x80\x02}(" + py2_string("batch_label") + py2_string(label) + py2_string("labels") + int_list
            + py2_string("data") + array + py2_string("filenames") + names + b"u.")


def write_cifar(directory, version, contents=None):
    contents = batches() if contents is None else contents
    directory.mkdir(parents=True, exist_ok=True)
    write = binary_batch if version == "binary" else python_batch
    for name, (rows, labels) in zip(VERSIONS[version], contents):
        (directory / name).write_bytes(write(rows, labels))
    return contents


def expected(contents):
    x = [rows.reshape(-1, 3, 32, 32) for rows, _ in contents]
    y = [np.asarray(labels, np.int64) for _, labels in contents]
    return np.concatenate(x[:5]), np.concatenate(y[:5]), x[5], y[5]


def assert_loads(directory, contents):
    data = load_cifar10(directory)
    for got, want in zip((data.x_train, data.y_train, data.x_test, data.y_test), expected(contents)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert data.class_names == CLASS_NAMES and data.image_shape == (3, 32, 32)
    return data


def assert_one_line(excinfo, path, *parts):
    """The error is one line ``PATH: ...`` holding each of ``parts`` after the path."""
    message = str(excinfo.value)
    prefix = f"{path}: "
    assert "\n" not in message and message.startswith(prefix), message
    assert all(p in message[len(prefix):] for p in parts), message


def test_python_batch_helper_is_the_real_layout():
    """The helper's bytes are what NumPy's own unpickling reads as the real files' dict (a check on
    the test's own bytes: the loader never unpickles this way)."""
    rows, labels = batches()[0]
    d = pickle.loads(python_batch(rows, labels), encoding="bytes")
    assert sorted(d) == [b"batch_label", b"data", b"filenames", b"labels"]
    assert d[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(d[b"data"], rows)
    assert d[b"labels"] == [int(v) for v in labels]


@pytest.mark.parametrize("version", ["binary", "python"])
def test_cifar10_round_trip(tmp_path, version):
    contents = write_cifar(tmp_path, version)
    data = assert_loads(tmp_path, contents)
    assert f"{version} batches in {tmp_path}" in data.source


def test_cifar10_archive_folders_and_binary_first(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py", "python", batches(1))
    assert_loads(tmp_path, batches(1))
    contents = write_cifar(tmp_path / "cifar-10-batches-bin", "binary", batches(2))
    assert "binary" in assert_loads(tmp_path, contents).source


def test_python_batch_written_by_numpy_2(tmp_path):
    """A batch re-saved by Python 3 and NumPy 2 (str keys, numpy._core.multiarray, protocol 4)."""
    contents = batches()
    write_cifar(tmp_path, "python", contents)
    for name, (rows, labels) in zip(VERSIONS["python"], contents):
        batch = {"data": rows, "labels": [int(v) for v in labels]}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=4))
    assert_loads(tmp_path, contents)


def corrupt_binary(directory, data):
    (directory / "data_batch_2.bin").write_bytes(data)
    return directory / "data_batch_2.bin"


@pytest.mark.parametrize("make, parts", [
    (lambda: b"", ["size: 0 bytes", "3073-byte records"]),
    (lambda: binary_batch(*batches()[1])[:-1], ["size: 6145 bytes", "not a whole"]),
    (lambda: binary_batch(np.zeros((2, 3072), np.uint8), [3, 10]), ["labels: label 10 of image 1", "0..9"]),
])
def test_binary_batch_broken(tmp_path, make, parts):
    write_cifar(tmp_path, "binary")
    path = corrupt_binary(tmp_path, make())
    with pytest.raises(ValueError) as e:
        load_cifar10(tmp_path)
    assert_one_line(e, str(path), *parts)


def rows_of(n):
    return np.zeros((n, 3072), np.uint8)


@pytest.mark.parametrize("make, parts", [
    (lambda: python_batch(rows_of(3), [1, 2])[:-40], ["not unpickled"]),
    (lambda: b"not a pickle at all", ["not unpickled"]),
    (lambda: pickle.dumps([1, 2, 3]), ["holds a list, not a CIFAR-10 batch dict"]),
    (lambda: pickle.dumps({b"labels": [1]}), ["field 'data': expected a uint8 array, found NoneType"]),
    (lambda: pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [1, 2]}, protocol=4),
     ["field 'data': expected (N, 3072) rows", "(2, 100)"]),
    (lambda: pickle.dumps({"data": rows_of(0), "labels": []}, protocol=4), ["N > 0"]),
    (lambda: python_batch(rows_of(3), [1, 2]), ["field 'labels': 2 labels for 3 images"]),
    (lambda: pickle.dumps({"data": rows_of(2), "labels": [1.0, 2.0]}, protocol=4),
     ["field 'labels': expected a list of ints"]),
    (lambda: python_batch(rows_of(2), [1, 300]), ["labels: label 300 of image 1 is outside 0..9"]),
    (lambda: pickle.dumps({"data": rows_of(1), "labels": [2**70]}, protocol=4), ["outside 0..9"]),
    (lambda: pickle.dumps({"data": rows_of(2).astype(np.int32), "labels": [1, 2]}, protocol=4),
     ["not uint8, refused"]),
    (lambda: pickle.dumps({"data": np.asfortranarray(rows_of(2)), "labels": [1, 2]}, protocol=4),
     ["C-order uint8 array, refused"]),
    (lambda: pickle.dumps({"data": rows_of(2), "labels": [1, 2]}, protocol=5),
     ["numpy._core.numeric._frombuffer, refused"]),
    (lambda: pickle.dumps({"data": rows_of(2), "labels": [1, 2]}, protocol=2), ["_codecs.encode, refused"]),
])
def test_python_batch_broken(tmp_path, make, parts):
    write_cifar(tmp_path, "python")
    path = tmp_path / "data_batch_2"
    path.write_bytes(make())
    with pytest.raises(ValueError) as e:
        load_cifar10(tmp_path)
    assert_one_line(e, str(path), *parts)


def test_cifar10_missing_files(tmp_path):
    with pytest.raises(ValueError) as e:
        load_cifar10(tmp_path)
    assert_one_line(e, tmp_path, "no CIFAR-10 batches: looked for data_batch_1.bin",
                    "test_batch.bin (binary version)", "data_batch_5, test_batch (python version)",
                    str(tmp_path / "cifar-10-batches-py"))
    write_cifar(tmp_path, "binary")
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(ValueError) as e:
        load_cifar10(tmp_path)
    assert_one_line(e, str(tmp_path), "missing CIFAR-10 batch data_batch_3.bin", "binary version needs")


# Hostile pickles. Each would act when unpickled by pickle.load: run a shell command or create a
# file named ``marker``; the loader must refuse it and leave no marker behind.

class Call:
    """Pickles as a call ``function(*args)``, which unpickling performs."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


HOSTILE = {  # name: (the pickle's bytes given the marker's path, what the one-line error says)
    "os.system": (lambda marker: pickle.dumps(Call(os.system, f"touch {marker}")),
                  "it names posix.system, refused"),
    "builtins.open": (lambda marker: pickle.dumps(Call(builtins.open, str(marker), "w")),
                      "it names io.open, refused"),
    "builtins.exec": (lambda marker: pickle.dumps(Call(exec, f"open({str(marker)!r}, 'w').close()")),
                      "it names builtins.exec, refused"),
    "hidden in a valid batch": (lambda marker: pickle.dumps(
        {"data": rows_of(1), "labels": [1], "batch_label": Call(builtins.open, str(marker), "w")},
        protocol=4),
        "it names io.open, refused"),
    "inside the array's arguments": (lambda marker: python_batch(rows_of(1), [1]).replace(
        b"cnumpy\nndarray\n", b"cbuiltins\nopen\n" + py2_string(str(marker)) + py2_string("w") + b"\x86R", 1),
        "it names builtins.open, refused"),
    "protocol 0 INST": (lambda marker: f"(S'touch {marker}'\nios\nsystem\n.".encode(),
                        "it names os.system, refused"),
    "BUILD on an accepted global": (lambda marker: b"\x80\x02cnumpy\ndtype\n}U\x08__call__Nsb.",
                                    "BUILD on Dtype (stand-in), refused"),
    "NEWOBJ of an accepted global": (lambda marker: b"\x80\x02cnumpy\nndarray\n)\x81.",
                                     "NEWOBJ class argument must be a type"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_pickle_refused_without_running(tmp_path, kind):
    make, reason = HOSTILE[kind]
    marker = tmp_path / "marker"
    write_cifar(tmp_path, "python")
    path = tmp_path / "test_batch"
    path.write_bytes(make(marker))
    with pytest.raises(ValueError) as e:
        load_cifar10(tmp_path)
    assert_one_line(e, path, "not unpickled: " + reason)
    assert not marker.exists()


def test_hostile_pickle_would_act(tmp_path):
    """The payloads are live: plain ``pickle.loads`` (run here on the test's own bytes) creates the
    marker, so the test above can fail."""
    marker = tmp_path / "marker"
    pickle.loads(HOSTILE["builtins.open"][0](marker)).close()
    assert marker.exists()


def test_refusal_message_is_short(tmp_path):
    """A refused argument is quoted in the error, but not a megabyte of it."""
    path = tmp_path / "batch"
    path.write_bytes(python_batch(rows_of(1), [1]).replace(py2_string("b"), py2_string("b" * 10**6), 1))
    with pytest.raises(ValueError) as e:
        load_restricted(path)
    assert len(str(e.value)) < 300 + len(str(path)) and str(e.value).endswith("...")


def test_a_batch_that_is_a_symbolic_link_loop_is_named_not_missing(tmp_path):
    write_cifar(tmp_path, "binary")
    (tmp_path / "data_batch_3.bin").unlink()
    (tmp_path / "data_batch_3.bin").symlink_to(tmp_path / "data_batch_3.bin")
    with pytest.raises(OSError, match="data_batch_3.bin: Too many levels of symbolic links"):
        load_cifar10(tmp_path)
