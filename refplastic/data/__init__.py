"""Data sets: generated ones built in, loaders for files a user has."""

from .atari import GAMES, GRAY_GAMES, atari_frames
from .cifar10 import load_cifar10
from .images import ImageDataset, to_float
from .mnist import load_mnist, read_idx
from .source import BUILTIN_SETS, load_images, parse_data_spec
from .synthetic import Dataset, gaussian_clusters, teacher_classification, teacher_regression

GENERATORS = {
    "teacher-classification": teacher_classification,
    "teacher-regression": teacher_regression,
    "gaussian-clusters": gaussian_clusters,
}
