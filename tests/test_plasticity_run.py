"""Whole runs at the smoke preset: determinism, probing that leaves training alone, divergence as
data, the results file, data from files, and the run command's one-line refusals."""

import json

import numpy as np
import pytest

from refplastic.plasticity.config import ConfigError, RunConfig, preset, with_overrides
from refplastic.plasticity.experiment import load_data, run_experiment, write
from refplastic.plasticity.results import plasticity_loss, read_results
from test_cli_bad_input import assert_one_line_error, no_leftovers, run
from test_data_mnist import write_mnist


def smoke(**fields):
    return preset("smoke", **fields)


def records_equal(a, b):
    assert a.keys() == b.keys()
    for group in a:
        assert a[group].keys() == b[group].keys(), group
        for key in a[group]:
            np.testing.assert_array_equal(np.stack(a[group][key]), np.stack(b[group][key]), err_msg=f"{group}/{key}")


def test_the_same_config_gives_the_same_numbers_and_another_seed_others():
    first, again, other = (run_experiment(smoke(seed=s)) for s in (0, 0, 1))
    records_equal(first.record, again.record)
    assert np.array_equal(first.net.flat, again.net.flat)
    assert not np.array_equal(first.net.flat, other.net.flat)
    assert first.status == "complete" and first.step == 60 and len(first.record["probes"]["step"]) == 3


def test_probing_does_not_change_the_training_trajectory():
    """Probe points draw from their own streams and work on copies: the trained network and the
    training log are those of a run probed at other steps (spectral norm's buffers included)."""
    often = run_experiment(smoke(intervention=("spectral_norm",), probe_every=10))
    rarely = run_experiment(smoke(intervention=("spectral_norm",), probe_every=60, statistics=False, hessian_top_k=0,
                                  hessian_density=False, gradient_cosine_examples=0))
    assert often.net.state_dict().keys() == rarely.net.state_dict().keys()
    for key, value in often.net.state_dict().items():
        np.testing.assert_array_equal(value, rarely.net.state_dict()[key], err_msg=key)
    records_equal({"train": often.record["train"]}, {"train": rarely.record["train"]})
    assert len(often.record["probes"]["step"]) == 7 and len(rarely.record["probes"]["step"]) == 2


def test_fewer_ritz_values_than_asked_are_recorded_as_nan_in_front(tmp_path, monkeypatch):
    """When Lanczos's Krylov space closes before k Ritz values (or k exceeds the parameters), the
    probe point records k values all the same, NaN in front, so that the record stays a table and
    the run writes its checkpoint and results (it used to stop with a ragged-array error)."""
    import refplastic.plasticity.run as run_module

    exact = run_module.lanczos_extremes
    calls = []

    def closing_early(*args, **kwargs):
        calls.append(1)
        found = exact(*args, **kwargs)
        return found._replace(top=found.top[1:], top_residuals=found.top_residuals[1:]) if len(calls) == 2 else found

    monkeypatch.setattr(run_module, "lanczos_extremes", closing_early)
    finished = run_experiment(smoke(hessian_top_k=3), checkpoint=tmp_path / "r.ck.h5")
    write(finished, tmp_path / "r.h5")
    top = read_results(tmp_path / "r.h5")[1]["curvature"]["hessian_top"]
    assert np.shape(top) == (3, 3) and np.isnan(top[1][0]) and np.all(np.isfinite(top[1][1:]))
    assert np.all(np.isfinite(np.asarray(top)[[0, 2]]))


def test_a_diverging_run_is_recorded_as_data(tmp_path):
    out = run("run", "--preset", "smoke", "--set", "lr=1e12", "--set", "optimizer=sgd", "--out", tmp_path / "r.h5")
    assert out.returncode == 0, out.stderr
    assert "diverged at step" in out.stdout
    attrs, record, _ = read_results(tmp_path / "r.h5")
    assert attrs["status"] == "diverged" and 1 <= attrs["diverged_at_step"] == attrs["steps"] < 60
    assert len(record["probes"]["step"]) == 1


def test_the_results_file_holds_the_record_and_the_plasticity_loss(tmp_path):
    finished = run_experiment(smoke(task="memorise"))
    write(finished, tmp_path / "r.h5")
    attrs, record, names = read_results(tmp_path / "r.h5")
    records_equal(record, finished.record)
    assert attrs["plasticity_loss"] == plasticity_loss(finished.record)
    assert json.loads(attrs["config"]) == finished.config.to_json()
    assert attrs["status"] == "complete" and attrs["steps"] == 60 and "builtin" not in names
    assert "accuracy" in record["train"] and len(names) == len(record["statistics"]["values"][0])
    assert record["curvature"]["gradient_cosine"][0].shape == (16, 16)
    assert record["probes"]["final_loss"][0].shape == (3,) and record["probes"]["curve"][0].shape == (3, 2)


def test_plasticity_loss_is_the_last_probe_minus_the_first():
    record = {"probes": {"final_loss": [np.array([1.0, 3.0]), np.array([5.0, 5.0]), np.array([4.0, 6.0])]}}
    assert plasticity_loss(record) == 3.0
    assert np.isnan(plasticity_loss({"probes": {"final_loss": [np.array([1.0])]}}))


def test_a_run_on_mnist_files_the_test_writes(tmp_path):
    write_mnist(tmp_path, n_train=100, n_test=10, seed=3)
    out = run("run", "--preset", "smoke", "--data", f"mnist:{tmp_path}", "--arch", "cnn", "--out", tmp_path / "r.h5")
    assert out.returncode == 0, out.stderr
    attrs, _, _ = read_results(tmp_path / "r.h5")
    assert attrs["data_source"].startswith("MNIST") or "mnist" in attrs["data_source"].lower()
    assert list(attrs["input_shape"]) == [1, 28, 28]


def test_config_values_are_checked_with_the_field_named():
    with pytest.raises(ConfigError, match="probe_batch_size 99 is more than the 64 probe examples"):
        smoke(probe_batch_size=99)
    with pytest.raises(ConfigError, match="intervention unknown 'layer_norm'"):
        smoke(intervention=("layer_norm",))
    with pytest.raises(ConfigError, match=r"discount must be a finite number in \[0, 1\)"):
        with_overrides(smoke(), ["discount=1"])
    with pytest.raises(ConfigError, match="width must be an integer, got '1.5'"):
        with_overrides(smoke(), ["width=1.5"])
    with pytest.raises(ConfigError, match="unknown field 'widht'"):
        with_overrides(smoke(), ["widht=3"])
    with pytest.raises(ConfigError, match="train_steps 10000000000 with probe_every 30 gives 333333333 points"):
        smoke(train_steps=10**10, log_every=1)
    assert with_overrides(smoke(), ["intervention=none"]).intervention == ()
    assert RunConfig.from_json(smoke().to_json()) == smoke()


@pytest.mark.parametrize("args,message", [
    (["--set", "lr=-1"], "Invalid value for '--set': lr must be a finite number in (0, inf), got -1.0"),
    (["--set", "nonsense"], "expected FIELD=VALUE"),
    (["--intervention", "layernorm,magic"], "Invalid value for '--intervention': unknown 'magic'"),
    (["--data", "imagenet:/x"], "Invalid value for '--data': unknown data set 'imagenet:/x'"),
    (["--data", "mnist:/no/such/dir"], "no such directory"),
    (["--set", "data=imagenet:/x"], "Invalid value for '--set': data must be a data set spec (builtin, builtin-gray, "
                                    "mnist:DIR or cifar10:DIR), got 'imagenet:/x'"),
    (["--task", "memorise", "--intervention", "twohot"], "twohot is a value head"),
])
def test_bad_run_options_are_one_line_before_any_work(tmp_path, args, message):
    assert_one_line_error(run("run", "--preset", "smoke", *args, "--out", tmp_path / "r.h5"), 2, message)
    no_leftovers(tmp_path, [])


def test_show_config_prints_every_field_and_does_nothing_else(tmp_path):
    out = run("run", "--preset", "smoke", "--intervention", "layernorm", "--set", "lr=3e-4", "--show-config",
              "--out", tmp_path / "r.h5")
    assert out.returncode == 0
    lines = dict((k.strip(), v) for k, v in (line.split(" = ") for line in out.stdout.splitlines()))
    assert lines["intervention"] == "layernorm" and lines["lr"].strip() == "0.0003" and len(lines) == len(
        smoke().to_json())
    no_leftovers(tmp_path, [])


def test_resume_with_another_configuration_names_the_difference(tmp_path):
    assert run("run", "--preset", "smoke", "--checkpoint", tmp_path / "ck.h5").returncode == 0
    out = run("run", "--preset", "smoke", "--intervention", "layernorm", "--checkpoint", tmp_path / "ck.h5")
    assert_one_line_error(out, 1, 'intervention ["layernorm"] here, [] in the file')


def test_the_built_in_data_is_rendered_once_per_size():
    assert load_data(smoke()) is load_data(smoke(seed=5))


def test_compare_prints_the_probe_losses_side_by_side(tmp_path):
    for name, args in (("none", []), ("layernorm", ["--intervention", "layernorm"])):
        assert run("run", "--preset", "smoke", *args, "--out", tmp_path / f"{name}.h5").returncode == 0
    out = run("compare", tmp_path / "none.h5", tmp_path / "layernorm.h5")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "none: none (hard, mlp, seed 0)" and lines[1] == "layernorm: layernorm (hard, mlp, seed 0)"
    assert lines[3].split() == ["step", "none", "layernorm"]
    assert [line.split()[0] for line in lines[4:]] == ["0", "30", "60", "plasticity", "seconds"]
    _, none, _ = read_results(tmp_path / "none.h5")
    assert float(lines[4].split()[1]) == pytest.approx(np.mean(none["probes"]["final_loss"][0]), rel=1e-4)
    assert float(lines[-2].split()[1]) == pytest.approx(plasticity_loss(none), rel=1e-3)


@pytest.mark.parametrize("stop_after", [1, 5, 23, 61])
def test_a_run_stopped_anywhere_resumes_to_the_same_numbers(tmp_path, stop_after):
    """A stop request after the n-th poll (inside probe point 0 for n = 1 and 5, in training or a
    later probe otherwise): a checkpoint, a Stopped, and the resumed run equals an uninterrupted one."""
    import signal

    from refplastic.stopping import Stopped

    config = smoke(intervention=("continual_backprop", "redo"))
    whole = run_experiment(config)
    polls = [0]

    def should_stop():
        polls[0] += 1
        return signal.SIGTERM if polls[0] == stop_after else None

    with pytest.raises(Stopped) as stopped:
        run_experiment(config, checkpoint=tmp_path / "ck.h5", should_stop=should_stop)
    assert stopped.value.saved
    resumed = run_experiment(config, checkpoint=tmp_path / "ck.h5")
    records_equal(resumed.record, whole.record)
    assert np.array_equal(resumed.net.flat, whole.net.flat)
