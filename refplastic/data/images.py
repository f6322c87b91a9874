"""An image data set: uint8 images in torch's NCHW layout, int64 labels, class names, a source.

Images stay uint8 (as stored by MNIST, CIFAR-10 and the Atari screen) until a network needs them;
:func:`to_float` is the one conversion.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageDataset:
    """Train and test images ``x_*`` (N, C, H, W) uint8 with labels ``y_*`` (N,) int64 in
    ``0 .. len(class_names) - 1``; ``source`` says in a few words where the images come from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: str

    def __post_init__(self):
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name}: x_{part} must be (N, C, H, W) uint8, got {x.shape} {x.dtype}")
            if y.dtype != np.int64 or y.shape != x.shape[:1]:
                raise ValueError(f"{self.name}: y_{part} must be ({len(x)},) int64, got {y.shape} {y.dtype}")
            if y.size and not 0 <= y.min() <= y.max() < len(self.class_names):
                raise ValueError(f"{self.name}: y_{part} must lie in 0..{len(self.class_names) - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.name}: train images {self.x_train.shape[1:]} and test images "
                             f"{self.x_test.shape[1:]} differ in shape")

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        """(C, H, W)."""
        return self.x_train.shape[1:]


def to_float(images, dtype=np.float64):
    """uint8 images as floats in [0, 1]: ``x = u / 255`` for each value ``u``, computed in ``dtype``
    (float64, the reference, or float32), so each value is ``u / 255`` correctly rounded to ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"images convert to float64 or float32, not {dtype}")
    if np.asarray(images).dtype != np.uint8:
        raise ValueError(f"to_float takes uint8 images, got {np.asarray(images).dtype}")
    return np.asarray(images, dtype=dtype) / dtype.type(255)
