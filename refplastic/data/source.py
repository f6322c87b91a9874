"""The image data set a user names: ``builtin`` (the default), ``builtin-gray``, ``mnist:DIR`` or
``cifar10:DIR``."""

import os

from .atari import GRAY_GAMES, atari_frames
from .cifar10 import load_cifar10
from .mnist import load_mnist

FILE_LOADERS = {"mnist": load_mnist, "cifar10": load_cifar10}
BUILTIN_SETS = {"builtin": {}, "builtin-gray": {"grayscale": True, "games": GRAY_GAMES}}  # atari_frames' arguments
SPECS = "builtin, builtin-gray, mnist:DIR or cifar10:DIR"


def data_kind(spec):
    """The kind of data set ``spec`` names (its part before a colon); a one-line ValueError if it
    is none of :data:`SPECS`."""
    kind = str(spec).partition(":")[0]
    if kind not in BUILTIN_SETS and kind not in FILE_LOADERS:
        raise ValueError(f"unknown data set {spec!r}: expected {SPECS}")
    return kind


def parse_data_spec(spec):
    """``(kind, directory)`` named by ``spec`` (``directory`` None for a built-in set), checked before
    any work: a one-line ValueError for an unknown kind or a directory that is not there."""
    kind = data_kind(spec)
    _, colon, directory = str(spec).partition(":")
    if kind in BUILTIN_SETS:
        if colon:
            raise ValueError(f"{spec!r}: the built-in data set takes no directory; expected {SPECS}")
        return kind, None
    if not directory:
        raise ValueError(f"{spec!r}: give the directory of the {kind} files, as {kind}:DIR")
    if not os.path.isdir(directory):
        try:
            os.stat(directory)
            what = "is not a directory"
        except FileNotFoundError:
            what = "no such directory"
        except OSError as e:  # the system's reason: a symbolic link loop, a path through a file
            what = e.strerror
        raise ValueError(f"{spec}: {what}: {directory}")
    return kind, directory


def load_images(spec="builtin", *, builtin_sizes=None):
    """The :class:`ImageDataset` named by ``spec``. A built-in set is :func:`atari_frames` at seed 0
    (one fixed data set, as CIFAR-10 is, whatever a run's seed) with the arguments of
    :data:`BUILTIN_SETS`, ``builtin_sizes = (n_train, n_test)`` sizing it (its defaults when None);
    a file data set is always read whole."""
    kind, directory = parse_data_spec(spec)
    if kind in BUILTIN_SETS:
        return atari_frames(0, *(builtin_sizes or ()), name=kind, **BUILTIN_SETS[kind])
    return FILE_LOADERS[kind](directory)
