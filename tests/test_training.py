"""The training job: determinism, resume equals an uninterrupted run, checkpoints, bad files."""

import h5py
import numpy as np
import pytest

from refplastic.checkpoint import load_checkpoint, load_network, save_checkpoint
from refplastic.data import gaussian_clusters, teacher_classification, teacher_regression
from refplastic.training import ConfigError, TrainConfig, make_mlp, train

SMALL = dict(n_train=256, n_test=64, hidden=(16,), batch_size=32, steps=60, eval_every=20)


def test_same_seed_same_numbers_and_learning():
    _, _, a = train(TrainConfig(seed=3, **SMALL))
    _, _, b = train(TrainConfig(seed=3, **SMALL))
    assert a["history"] == b["history"]
    _, _, c = train(TrainConfig(seed=4, **SMALL))
    assert a["history"]["train_loss"] != c["history"]["train_loss"]
    assert a["history"]["train_loss"][-1] < a["history"]["train_loss"][0]
    assert a["history"]["step"] == [0, 20, 40, 60]


@pytest.mark.parametrize("dtype,dataset", [("float64", "teacher-classification"), ("float32", "teacher-regression")])
def test_resumed_run_equals_uninterrupted_run(tmp_path, dtype, dataset):
    config = TrainConfig(dtype=dtype, dataset=dataset, **SMALL)
    net_full, _, full = train(config)
    ckpt = tmp_path / "run.h5"
    half = TrainConfig(**{**config.to_json(), "steps": 40})
    train(half, checkpoint=ckpt, checkpoint_every=40)
    net_resumed, _, resumed = train(config, checkpoint=ckpt, checkpoint_every=40)
    np.testing.assert_array_equal(net_resumed.flat, net_full.flat)
    assert resumed["history"] == {k: list(v) for k, v in full["history"].items()}
    assert resumed["step"] == 60 and load_checkpoint(ckpt)["run"]["step"] == 60


def test_resume_from_a_run_that_ended_off_the_evaluation_grid(tmp_path):
    """A first run of 50 steps logs its end (step 50, not a multiple of eval_every = 20); resumed to
    60 steps, the history must be that of an uninterrupted 60-step run: 0, 20, 40, 60."""
    config = TrainConfig(**SMALL)
    net_full, _, full = train(config)
    ckpt = tmp_path / "run.h5"
    train(TrainConfig(**{**config.to_json(), "steps": 50}), checkpoint=ckpt, checkpoint_every=25)
    net_resumed, _, resumed = train(config, checkpoint=ckpt, checkpoint_every=25)
    np.testing.assert_array_equal(net_resumed.flat, net_full.flat)
    assert resumed["history"]["step"] == [0, 20, 40, 60]
    assert resumed["history"] == {k: list(v) for k, v in full["history"].items()}


def test_resume_rejects_another_configuration(tmp_path):
    ckpt = tmp_path / "run.h5"
    train(TrainConfig(**{**SMALL, "steps": 20}), checkpoint=ckpt)
    with pytest.raises(ValueError, match="different configuration"):
        train(TrainConfig(**{**SMALL, "lr": 0.01}), checkpoint=ckpt)


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    net = make_mlp(5, (7,), 3, "Tanh", np.random.default_rng(0), np.float32)
    path = tmp_path / "net.h5"
    save_checkpoint(path, net)
    loaded = load_network(path)
    assert loaded.dtype == np.float32 and loaded.architecture() == net.architecture()
    np.testing.assert_array_equal(loaded.flat, net.flat)
    assert not list(tmp_path.glob("*.tmp-*"))

    with pytest.raises(OSError, match="no such file"):
        load_network(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(OSError, match="not a readable HDF5 file"):
        load_network(tmp_path / "text.h5")
    with h5py.File(path, "a") as f:
        f["state/0.weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        load_network(path)
    with h5py.File(path, "a") as f:
        del f["state/0.bias"]
    with pytest.raises(ValueError, match="missing"):
        load_network(path)
    with h5py.File(path, "a") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(ValueError, match="not a refplastic checkpoint"):
        load_network(path)


@pytest.mark.parametrize("damage,match", [
    (lambda f: (f["state"].__delitem__("0.weight"), f["state"].create_group("0.weight")), "expected a dataset"),
    (lambda f: f.attrs.__delitem__("dtype"), "missing attribute 'dtype'"),
    (lambda f: f.attrs.__setitem__("architecture", '[{"type": "Linear", "in_features": -3, "out_features": 7}]'),
     "in_features must be a positive int"),
    (lambda f: f["run"].attrs.__delitem__("step"), "attribute 'step'"),
    (lambda f: (f["run/history"].__delitem__("step"), f["run/history"].create_group("step")), "expected a dataset"),
    (lambda f: f["optimizer"].attrs.__delitem__("name"), "missing attribute 'name'"),
])
def test_damaged_checkpoints_are_clear_errors(tmp_path, damage, match):
    path = tmp_path / "run.h5"
    train(TrainConfig(**{**SMALL, "steps": 20}), checkpoint=path)
    with h5py.File(path, "a") as f:
        damage(f)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_no_half_written_file_on_error(tmp_path):
    net = make_mlp(5, (7,), 3, "ReLU", np.random.default_rng(0), np.float64)
    path = tmp_path / "net.h5"

    class Broken:
        name = "broken"

        def state_dict(self):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        save_checkpoint(path, net, optimizer=Broken())
    assert list(tmp_path.iterdir()) == []


def test_generators_are_seeded():
    for make in (teacher_classification, teacher_regression, gaussian_clusters):
        a, b = make(np.random.default_rng(1), n_train=20, n_test=5), make(np.random.default_rng(1), n_train=20, n_test=5)
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.y_test, b.y_test)
        assert a.x_train.shape == (20, 32) and a.x_test.shape == (5, 32)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown dataset"):
        TrainConfig(dataset="mnist")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="eval_every must be at least 1, got 0") as e:
        TrainConfig(eval_every=0)
    assert (e.value.field, e.value.problem) == ("eval_every", "must be at least 1, got 0")
