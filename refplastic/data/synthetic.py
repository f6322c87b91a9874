"""Generated data sets: nothing to download, the same numbers for the same seed.

Each generator returns a :class:`Dataset` with train and test splits drawn from one
``numpy.random.Generator``.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    """Inputs and targets, split into train and test. The targets ``y_train``, ``y_test`` are int64
    labels for classification (``num_classes`` > 0) and float arrays for regression."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = 0

    @property
    def input_shape(self):
        return self.x_train.shape[1:]

    @property
    def output_dim(self):
        return self.num_classes if self.num_classes else self.y_train.shape[1]


def _teacher_outputs(x, hidden, out, rng):
    """Outputs of a random one-hidden-layer tanh teacher ``W2 tanh(W1 x / sqrt(d)) / sqrt(h)``."""
    w1 = rng.normal(size=(hidden, x.shape[1]))
    w2 = rng.normal(size=(out, hidden))
    return np.tanh(x @ w1.T / np.sqrt(x.shape[1])) @ w2.T / np.sqrt(hidden)


def _split(name, x, y, n_train, num_classes=0):
    return Dataset(name, x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes)


def teacher_classification(rng, n_train=2048, n_test=512, dim=32, num_classes=10, hidden=64):
    """Labels ``argmax`` of a random tanh teacher network's outputs on ``x ~ N(0, I_dim)``."""
    x = rng.normal(size=(n_train + n_test, dim))
    y = np.argmax(_teacher_outputs(x, hidden, num_classes, rng), axis=1).astype(np.int64)
    return _split("teacher-classification", x, y, n_train, num_classes)


def teacher_regression(rng, n_train=2048, n_test=512, dim=32, out_dim=4, hidden=64, noise=0.0):
    """Targets of a random tanh teacher network on ``x ~ N(0, I_dim)``, plus ``N(0, noise^2)``."""
    x = rng.normal(size=(n_train + n_test, dim))
    y = _teacher_outputs(x, hidden, out_dim, rng)
    y = y + noise * rng.normal(size=y.shape)
    return _split("teacher-regression", x, y, n_train)


def gaussian_clusters(rng, n_train=2048, n_test=512, dim=32, num_classes=10, separation=3.0):
    """Class ``c`` drawn from ``N(mu_c, I)``, centres ``mu_c ~ N(0, (separation^2 / dim) I)``."""
    centres = rng.normal(scale=separation / np.sqrt(dim), size=(num_classes, dim))
    y = rng.integers(0, num_classes, size=n_train + n_test).astype(np.int64)
    x = centres[y] + rng.normal(size=(n_train + n_test, dim))
    return _split("gaussian-clusters", x, y, n_train, num_classes)
