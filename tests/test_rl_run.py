"""The DQN run: its config, its determinism, stopping and resuming, divergence, and the commands."""

import json

import h5py
import numpy as np
import pytest

from refplastic.config_fields import ConfigError
from refplastic.rl.checkpoint import load_dqn, save_dqn
from refplastic.rl.config import PRESETS, DQNConfig, preset, with_overrides
from refplastic.rl.results import read_results
from refplastic.rl.run import DQNRun, epsilon_greedy, evaluation_frames, probe_frames
from refplastic.stopping import Stopped
from test_cli_bad_input import assert_one_line_error, run

SMOKE = {"statistics": False}  # the statistics are tested with the plasticity run; here they cost time
MEASURED = ("frames_per_second",)


def records_equal(a, b):
    """The records of two runs, column by column, NaNs equal, the wall-time column left out."""
    assert a.keys() == b.keys()
    for group in a:
        assert a[group].keys() == b[group].keys(), group
        for key in a[group]:
            if key in MEASURED:
                continue
            np.testing.assert_array_equal(np.array(a[group][key]), np.array(b[group][key]), err_msg=f"{group}/{key}")


@pytest.fixture(scope="module")
def whole():
    """An uninterrupted smoke run."""
    finished = DQNRun(preset("smoke", **SMOKE))
    finished.run()
    return finished


# ---- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config(name):
    config = preset(name)
    assert DQNConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_the_paper_preset_is_dqn_zoo_with_the_papers_replay_and_epsilon():
    c = preset("paper")
    assert (c.optimizer, c.lr, c.rmsprop_decay, c.eps, c.centered, c.eps_in_sqrt) == ("rmsprop", 2.5e-4, 0.95,
                                                                                      0.01 / 32**2, True, True)
    assert (c.td_loss, c.grad_error_bound, c.double_q, c.discount, c.batch_size) == ("clipped_gradient_l2", 1 / 32,
                                                                                     True, 0.99, 32)
    assert (c.update_period, c.target_update_period, c.frames, c.sticky_actions) == (16, 120_000, 200_000_000, 0.0)
    assert (c.replay_capacity, c.epsilon_end) == (100_000, 0.1)  # A.3 (DQN Zoo: 1M and 0.01)
    assert c.learning_starts == 0.05 * c.replay_capacity * c.frameskip


def test_epsilon_is_dqn_zoos_linear_schedule():
    c = preset("paper")  # 1.0 until 20k frames, then down to 0.1 over 4M frames
    assert c.epsilon(0) == c.epsilon(20_000) == 1.0
    assert c.epsilon(20_000 + 2_000_000) == pytest.approx(0.55)
    assert c.epsilon(20_000 + 4_000_000) == pytest.approx(0.1)
    assert c.epsilon(10**9) == pytest.approx(0.1)


@pytest.mark.parametrize("field,value,message", [
    ("game", "pongg", "did you mean pong"),
    ("frames", 100, "not a whole number of vector steps"),
    ("frames", 8 * 10**16, "points; at most 1,000,000"),
    ("frames", 8, "one vector step, which stores no whole transition"),
    ("update_period", 12, "one must divide the other"),
    ("lr", 0.0, "must be a finite number in (0"),
    ("optimizer", "sgd", "must be one of rmsprop, adam"),
    ("epsilon_end", 1.5, "must be a finite number in [0, 1]"),
    ("probe_batch_size", 9999, "more than the"),
    ("learning_starts", 16, "fewer than a batch"),
])
def test_bad_values_name_their_field(field, value, message):
    with pytest.raises(ConfigError) as e:
        preset("smoke", **{field: value})
    assert e.value.field == field and message in str(e.value)


def test_set_reads_each_field_as_its_type():
    config = with_overrides(preset("smoke"), ["layernorm=true", "lr=3e-4", "num_envs=4", "game=breakout"])
    assert (config.layernorm, config.lr, config.num_envs, config.game) == (True, 3e-4, 4, "breakout")
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        with_overrides(preset("smoke"), ["nope=1"])


def test_schedules_of_evaluations_and_probes():
    c = preset("smoke", frames=2080)  # learning starts at 640, probes every 640, evaluations every 960
    assert evaluation_frames(c) == [0, 960, 1920, 2080]
    assert probe_frames(c) == [640, 1280, 1920, 2080]


def test_epsilon_greedy_explores_with_probability_epsilon():
    values = np.array([[0.0, 2.0, 1.0]] * 20000)
    assert (epsilon_greedy(values, 0.0, np.random.default_rng(0)) == 1).all()
    actions = epsilon_greedy(values, 0.3, np.random.default_rng(0))
    # greedy with probability 0.7, plus a third of the random draws: 0.8 for action 1
    assert np.mean(actions == 1) == pytest.approx(0.8, abs=0.01)
    assert np.mean(actions == 0) == pytest.approx(0.1, abs=0.01)


# ---- the run ------------------------------------------------------------------------------------------
def test_a_run_goes_through_every_part(whole):
    c = whole.config
    assert whole.status == "complete" and whole.frame == c.frames
    record = whole.record
    assert list(record["evaluation"]["frame"]) == evaluation_frames(c)
    assert list(record["probes"]["frame"]) == probe_frames(c)
    assert record["probes"]["final_loss"][0].shape == (c.probe_targets,)
    assert len(record["episodes"]["return"]) > 0  # the smoke preset's episodes are 100 agent steps
    assert all(length == c.max_episode_frames // c.frameskip for length in record["episodes"]["length"])
    frames = np.array(record["train"]["frame"])
    assert frames[-1] == c.frames and (np.diff(frames) > 0).all()
    learning = (c.frames - c.learning_starts) // c.update_period + 1
    assert whole.updates == learning


def test_the_same_seed_gives_the_same_numbers(whole):
    again = DQNRun(preset("smoke", **SMOKE))
    again.run()
    np.testing.assert_array_equal(again.net.flat, whole.net.flat)
    records_equal(again.record, whole.record)
    other = DQNRun(preset("smoke", seed=1, **SMOKE))
    other.run()
    assert not np.array_equal(other.net.flat, whole.net.flat)


@pytest.mark.parametrize("calls", [7, 120, 250, 390])  # of 399 in a smoke run
def test_a_run_stopped_anywhere_resumes_bit_identically(whole, tmp_path, calls):
    """Stopped at a random point (during an evaluation, a probe or training), saved, loaded into a
    fresh run: the rest gives the numbers of the uninterrupted run."""
    count = [0]

    def should_stop():
        count[0] += 1
        return 15 if count[0] == calls else None

    checkpoint = tmp_path / "ck.h5"
    with pytest.raises(Stopped) as stopped:
        DQNRun(preset("smoke", **SMOKE)).run(checkpoint=lambda r: save_dqn(checkpoint, r), should_stop=should_stop)
    assert stopped.value.saved and stopped.value.unit == "frame"
    resumed = load_dqn(checkpoint, preset("smoke", **SMOKE))
    assert resumed.frame == stopped.value.step
    resumed.run()
    np.testing.assert_array_equal(resumed.net.flat, whole.net.flat)
    np.testing.assert_array_equal(resumed.target.flat, whole.target.flat)
    records_equal(resumed.record, whole.record)


def test_a_checkpoint_without_the_replay_buffer_refills_it_before_learning(tmp_path):
    config = preset("smoke", checkpoint_replay=False, **SMOKE)
    checkpoint = tmp_path / "ck.h5"
    part = DQNRun(config)
    count = [0]

    def should_stop():
        count[0] += 1
        return 15 if count[0] == 200 else None  # in training, after learning started

    with pytest.raises(Stopped):
        part.run(checkpoint=lambda r: save_dqn(checkpoint, r), should_stop=should_stop)
    with h5py.File(checkpoint) as f:
        assert "replay" not in f
    resumed = load_dqn(checkpoint, config)
    assert resumed.learning_resumes_at == resumed.frame + config.learning_starts
    updates = resumed.updates
    resumed.run()
    assert resumed.status == "complete"
    assert resumed.updates - updates == max(0, (config.frames - resumed.learning_resumes_at) // config.update_period + 1)


def test_a_run_without_evaluation_episodes_records_none():
    rows = []
    finished = DQNRun(preset("smoke", eval_episodes=0, **SMOKE))
    finished.run(on_row=lambda kind, row: rows.append(kind))
    assert finished.status == "complete" and finished.record["evaluation"] == {}
    assert rows == ["probe"] * len(probe_frames(finished.config))
    assert np.isnan(finished.summary()["final_evaluation_return"])


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    checkpoint = tmp_path / "ck.h5"
    finished = DQNRun(preset("smoke", frames=1280, **SMOKE))
    finished.run(checkpoint=lambda r: save_dqn(checkpoint, r))
    with pytest.raises(ValueError, match=r"different configuration: lr 0.001 here, 0.0001 in the file"):
        load_dqn(checkpoint, preset("smoke", frames=1280, **{**SMOKE, "lr": 1e-3}))
    with pytest.raises(ValueError, match=r"at frame 1280, beyond frames = 640; give at least 1280"):
        load_dqn(checkpoint, preset("smoke", frames=640, **SMOKE))


def test_a_finished_run_extended_is_the_longer_run_plus_its_old_end(whole, tmp_path):
    """A 1280-frame run resumed with frames = 1920 trains exactly as the 1920-frame run; its record
    also has the evaluation at 1280, the old end (the 1920 run evaluates at 0, 960 and 1920)."""
    checkpoint = tmp_path / "ck.h5"
    DQNRun(preset("smoke", frames=1280, **SMOKE)).run(checkpoint=lambda r: save_dqn(checkpoint, r))
    extended = load_dqn(checkpoint, preset("smoke", **SMOKE))
    assert extended.status == "running"
    extended.run()
    assert extended.status == "complete" and extended.frame == whole.frame
    np.testing.assert_array_equal(extended.net.flat, whole.net.flat)
    for group in ("train", "episodes", "probes"):
        records_equal({group: extended.record[group]}, {group: whole.record[group]})
    assert list(extended.record["evaluation"]["frame"]) == [0, 960, 1280, 1920]
    keep = [0, 1, 3]
    for key, values in whole.record["evaluation"].items():
        np.testing.assert_array_equal(np.asarray(extended.record["evaluation"][key])[keep], values, err_msg=key)


def test_divergence_is_recorded_as_data(tmp_path):
    finished = DQNRun(preset("smoke", lr=1e30, **SMOKE))
    finished.run()
    assert finished.status == "diverged"
    assert finished.config.learning_starts < finished.diverged_at <= finished.config.frames
    assert finished.summary()["diverged_at_frame"] == finished.diverged_at


# ---- the commands ----------------------------------------------------------------------------------------
def test_dqn_show_config_prints_every_field():
    out = run("dqn", "--preset", "paper", "--layernorm", "--show-config")
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" = ") for line in out.stdout.strip().splitlines())
    assert {k.strip() for k in lines} == set(DQNConfig.__dataclass_fields__)
    assert lines["layernorm".ljust(len(next(iter(lines))))].strip() == "true"


@pytest.mark.parametrize("args,option,message", [
    (["--game", "pongg"], "--game", "did you mean pong"),
    (["--frames", "100"], "--frames", "not a whole number of vector steps"),
    (["--frames", "-8"], "--frames", "at least 1"),
    (["--set", "lr=abc"], "--set", "lr must be a number"),
    (["--set", "replay_capacity=1000000000000"], "--set replay_capacity", "lower replay_capacity"),
])
def test_dqn_bad_arguments_are_one_line(tmp_path, args, option, message):
    out = run("dqn", "--preset", "smoke", *args, "--out", tmp_path / "r.h5")
    assert_one_line_error(out, 2, message)
    assert option in out.stderr
    assert not list(tmp_path.iterdir())


def test_dqn_report_gives_scores_improvement_and_curves(tmp_path):
    for layernorm in ("--no-layernorm", "--layernorm"):
        out = run("dqn", "--preset", "smoke", layernorm, "--set", "statistics=false", "--set", "probe_steps=1",
                  "--out", tmp_path / f"{layernorm[2:]}.h5")
        assert out.returncode == 0, out.stderr
        assert "final evaluation return" in out.stdout
    runs = [tmp_path / "no-layernorm.h5", tmp_path / "layernorm.h5"]
    out = run("dqn-report", *runs, "--out", tmp_path / "report")
    assert out.returncode == 0, out.stderr
    scores = {}
    for path in runs:
        attrs, record, _ = read_results(path)
        scores[json.loads(attrs["config"])["layernorm"]] = record["evaluation"]["return_mean"][-1]
    random_score, human_score = -20.7, 14.6  # Pong, DQN Zoo's atari_data.py
    expected = (scores[True] - scores[False]) / (max(human_score, scores[False]) - random_score)
    row = next(line for line in out.stdout.splitlines() if line.startswith("| pong"))
    assert f"{expected:.3g}" in row.split("|")[6]
    for name in ("report.md", "scores.csv", "learning_curves.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    again = run("dqn-report", *runs, "--out", tmp_path / "report")  # its own files are replaced
    assert again.returncode == 0, again.stderr
    (tmp_path / "report" / "scores.csv").write_text("someone's notes\n")
    refused = run("dqn-report", *runs, "--out", tmp_path / "report")
    assert_one_line_error(refused, 2, "--force to overwrite it")
    assert (tmp_path / "report" / "scores.csv").read_text() == "someone's notes\n"


def test_dqn_report_refuses_other_files(tmp_path):
    out = run("train", "--steps", "5", "--hidden", "4", "--out", tmp_path / "net.h5")
    assert out.returncode == 0
    out = run("dqn-report", tmp_path / "net.h5")
    assert_one_line_error(out, 1, "not a refplastic dqn run")
