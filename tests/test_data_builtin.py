"""The built-in image data set (frames of Atari games rendered by ale-py): shapes, dtypes, class
balance, separable classes, and the same arrays for the same seed, in this process and a fresh one."""

import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from refplastic.data import atari_frames, load_images, parse_data_spec, to_float
from refplastic.data import atari
from refplastic.data.atari import GAMES, GRAY_GAMES

SMALL = dict(seed=3, n_train=8, n_test=4, games=("pong", "boxing"))  # cheap: two emulators


@pytest.fixture(scope="module")
def builtin():
    """The built-in set as ``--data builtin`` makes it, at a small size: 5 train and 2 test frames a game."""
    return load_images("builtin", builtin_sizes=(50, 20))


def digest(data):
    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test):
        h.update(a.tobytes())
    return h.hexdigest()


def test_builtin_shapes_and_balance(builtin):
    assert builtin.name == "builtin" and builtin.class_names == GAMES and builtin.num_classes == 10
    assert builtin.x_train.shape == (50, 3, 32, 32) and builtin.x_test.shape == (20, 3, 32, 32)
    assert builtin.x_train.dtype == np.uint8 and builtin.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(builtin.y_train, minlength=10), np.full(10, 5))
    np.testing.assert_array_equal(np.bincount(builtin.y_test, minlength=10), np.full(10, 2))
    assert np.any(np.diff(builtin.y_train) < 0)  # shuffled, not sorted by game
    frames = np.concatenate([builtin.x_train, builtin.x_test])
    assert len({f.tobytes() for f in frames}) == len(frames)  # no frame twice
    assert "ale-py" in builtin.source and "seed 0" in builtin.source


def test_builtin_games_told_apart_by_nearest_centroid(builtin):
    """Each test frame is nearest (in Euclidean distance) to the mean train frame of its own game."""
    x, t = to_float(builtin.x_train).reshape(50, -1), to_float(builtin.x_test).reshape(20, -1)
    centroids = np.stack([x[builtin.y_train == c].mean(axis=0) for c in range(10)])
    nearest = np.argmin(((t[:, None, :] - centroids[None]) ** 2).sum(axis=-1), axis=1)
    np.testing.assert_array_equal(nearest, builtin.y_test)


def test_builtin_gray_is_ten_other_games_in_gray_scale():
    data = load_images("builtin-gray", builtin_sizes=(20, 10))
    assert data.name == "builtin-gray" and data.class_names == GRAY_GAMES and not set(GRAY_GAMES) & set(GAMES)
    assert data.x_train.shape == (20, 1, 32, 32) and data.x_test.shape == (10, 1, 32, 32)
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), np.full(10, 2))
    assert "gray" in data.source
    with pytest.raises(ValueError, match="takes no directory"):
        parse_data_spec("builtin-gray:/tmp")


@pytest.fixture(scope="module")
def small():
    return atari_frames(**SMALL)


def test_builtin_deterministic_in_process(small):
    assert digest(atari_frames(**SMALL)) == digest(small)
    assert not np.array_equal(atari_frames(**{**SMALL, "seed": 4}).x_train, small.x_train)


def test_builtin_deterministic_in_a_fresh_process(small):
    code = ("import hashlib; from refplastic.data import atari_frames; "
            f"d = atari_frames(**{SMALL!r}); h = hashlib.sha256(); "
            "[h.update(a.tobytes()) for a in (d.x_train, d.y_train, d.x_test, d.y_test)]; "
            "print(h.hexdigest())")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == digest(small)


def test_builtin_grayscale():
    data = atari_frames(n_train=2, n_test=1, grayscale=True, games=("pong",))
    assert data.x_train.shape == (2, 1, 32, 32) and data.x_test.shape == (1, 1, 32, 32)
    assert "gray" in data.source


def area_weights(n_in, n_out):
    """(n_out, n_in): row i averages the inputs [i s, (i + 1) s), s = n_in / n_out, each weighted by
    the length of its overlap with that interval, over s."""
    s = n_in / n_out
    lo, hi = np.arange(n_out)[:, None] * s, (np.arange(n_out)[:, None] + 1) * s
    r = np.arange(n_in)[None, :]
    return np.clip(np.minimum(hi, r + 1) - np.maximum(lo, r), 0, None) / s


def test_builtin_frames_are_area_averages_of_the_screen():
    """What docs/data.md says of the 32x32 frames: each pixel is the mean of the 210x160 screen over
    its 6.5625 x 5 area (fractional pixels weighted), rounded to the nearest integer."""
    from ale_py.vector_env import AtariVectorEnv

    def env(size):
        e = AtariVectorEnv("ms_pacman", num_envs=1, img_height=size[0], img_width=size[1], grayscale=False,
                           stack_num=1, frameskip=4, num_threads=1)
        e.reset(seed=np.array([7]))
        return e

    screen, small = env((210, 160)), env((32, 32))
    rng = np.random.default_rng(0)
    full, shrunk = [], []
    for _ in range(40):
        action = rng.integers(0, screen.single_action_space.n, size=1)
        full.append(screen.step(action)[0][0, 0])
        shrunk.append(small.step(action)[0][0, 0])
    screen.close()
    small.close()
    full = np.stack(full).astype(np.float64)  # (40, 210, 160, 3)
    mean = np.einsum("ir,nrsc,js->nijc", area_weights(210, 32), full, area_weights(160, 32), optimize=True)
    np.testing.assert_array_equal(np.rint(mean), np.stack(shrunk))


def test_builtin_refuses_a_game_without_new_frames(monkeypatch):
    monkeypatch.setattr(atari, "MAX_STEPS_PER_FRAME", 0)
    with pytest.raises(ValueError, match="pong gave only 0 distinct frames in 1 steps"):
        atari_frames(n_train=1, n_test=1, games=("pong",))


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_train=5), "multiples of the number of games (2)"),
    (dict(n_test=0), "positive multiples"),
    (dict(games=("pong", "no_such_game")), "no_such_game"),
    (dict(games=("pong", "pong")), "a name repeats"),
])
def test_builtin_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        atari_frames(**{**SMALL, **kwargs})
