"""The image data set type, its float conversion, and the data spec a user gives."""

import numpy as np
import pytest

from refplastic.data import ImageDataset, load_images, parse_data_spec, to_float
from test_data_cifar10 import write_cifar
from test_data_mnist import write_mnist


def dataset(**changes):
    parts = dict(name="toy", x_train=np.zeros((4, 1, 2, 2), np.uint8), y_train=np.array([0, 1, 2, 1]),
                 x_test=np.zeros((2, 1, 2, 2), np.uint8), y_test=np.array([2, 0]),
                 class_names=("a", "b", "c"), source="made by hand")
    return ImageDataset(**{**parts, **changes})


def test_image_dataset_properties():
    data = dataset()
    assert data.num_classes == 3 and data.image_shape == (1, 2, 2)


@pytest.mark.parametrize("changes, message", [
    (dict(x_train=np.zeros((4, 1, 2, 2), np.float64)), "x_train must be (N, C, H, W) uint8"),
    (dict(x_test=np.zeros((2, 4), np.uint8)), "x_test must be (N, C, H, W) uint8"),
    (dict(y_train=np.array([0, 1, 2], np.int64)), "y_train must be (4,) int64"),
    (dict(y_test=np.array([2, 0], np.int32)), "y_test must be (2,) int64"),
    (dict(y_train=np.array([0, 1, 3, 1])), "y_train must lie in 0..2"),
    (dict(y_test=np.array([-1, 0])), "y_test must lie in 0..2"),
    (dict(x_test=np.zeros((2, 3, 2, 2), np.uint8)), "differ in shape"),
])
def test_image_dataset_refuses_malformed_parts(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dataset(**changes)


def test_to_float():
    u = np.arange(256, dtype=np.uint8).reshape(4, 1, 8, 8)
    x64 = to_float(u)
    assert x64.dtype == np.float64 and x64.shape == u.shape
    np.testing.assert_array_equal(x64, np.arange(256).reshape(u.shape) / 255.0)
    assert x64.min() == 0.0 and x64.max() == 1.0
    x32 = to_float(u, np.float32)
    assert x32.dtype == np.float32
    np.testing.assert_array_equal(x32, x64.astype(np.float32))  # u / 255 correctly rounded to float32


@pytest.mark.parametrize("images, dtype, message", [
    (np.zeros(3, np.uint8), np.float16, "float64 or float32, not float16"),
    (np.zeros(3, np.int16), np.float64, "takes uint8 images, got int16"),
    (np.zeros(3), np.float64, "takes uint8 images, got float64"),
])
def test_to_float_refuses(images, dtype, message):
    with pytest.raises(ValueError, match=message):
        to_float(images, dtype)


def test_parse_data_spec(tmp_path):
    assert parse_data_spec("builtin") == ("builtin", None)
    assert parse_data_spec(f"mnist:{tmp_path}") == ("mnist", str(tmp_path))
    assert parse_data_spec(f"cifar10:{tmp_path}") == ("cifar10", str(tmp_path))


@pytest.mark.parametrize("spec, message", [
    ("", "unknown data set '': expected builtin, builtin-gray, mnist:DIR or cifar10:DIR"),
    ("imagenet:/data", "unknown data set 'imagenet:/data': expected builtin, builtin-gray, mnist:DIR or cifar10:DIR"),
    ("MNIST:/data", "unknown data set 'MNIST:/data': expected builtin, builtin-gray, mnist:DIR or cifar10:DIR"),
    ("mnist", "'mnist': give the directory of the mnist files, as mnist:DIR"),
    ("cifar10:", "'cifar10:': give the directory of the cifar10 files, as cifar10:DIR"),
    ("builtin:/data", "'builtin:/data': the built-in data set takes no directory; expected builtin, "
                      "builtin-gray, mnist:DIR or cifar10:DIR"),
    ("mnist:{tmp}/absent", "mnist:{tmp}/absent: no such directory: {tmp}/absent"),
    ("cifar10:{tmp}/file", "cifar10:{tmp}/file: is not a directory: {tmp}/file"),
    ("mnist:{tmp}/loop", "mnist:{tmp}/loop: Too many levels of symbolic links: {tmp}/loop"),
])
def test_parse_data_spec_refuses(tmp_path, spec, message):
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ValueError) as e:
        parse_data_spec(spec.format(tmp=tmp_path))
    assert str(e.value) == message.format(tmp=tmp_path)


def test_load_images_from_files(tmp_path):
    (tmp_path / "m").mkdir()
    write_mnist(tmp_path / "m")
    write_cifar(tmp_path / "c", "binary")
    assert load_images(f"mnist:{tmp_path / 'm'}").name == "mnist"
    assert load_images(f"cifar10:{tmp_path / 'c'}").name == "cifar10"
    with pytest.raises(ValueError, match="no CIFAR-10 batches"):
        load_images(f"cifar10:{tmp_path / 'm'}")
