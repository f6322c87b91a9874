"""The classification MDPs, the replay buffer and the agent's pieces against hand computations."""

import numpy as np
import pytest

from refplastic.plasticity.agent import epsilon_greedy, td_targets
from refplastic.plasticity.mdp import ClassificationMDP, observation_labels, reward
from refplastic.plasticity.replay import Replay

LABELS = np.repeat(np.arange(10), 3)  # images 3s, 3s+1, 3s+2 are of class s


def walk(task, actions, seed=0):
    """``(states, observations, rewards)`` of the MDP under ``actions``."""
    env = ClassificationMDP(task, LABELS, np.random.default_rng(1), np.random.default_rng(seed))
    states, observations, rewards = [env.state], [env.observation], []
    for a in actions:
        r, obs = env.step(a)
        rewards.append(r)
        states.append(env.state)
        observations.append(obs)
    return env, states, observations, rewards


@pytest.mark.parametrize("task", ["easy", "hard", "sparse"])
def test_the_dynamics_are_the_papers_with_the_same_draws(task):
    """Section 3.2, replayed by hand from a twin generator: the first state uniform, its image uniform
    among those of its observation label; then per step the next state (uniform, or s + 1 mod 10 after
    a right action in the sparse task) and its image."""
    actions = np.random.default_rng(5).integers(0, 10, size=200)
    actions[::3] = -1  # some right actions: filled in below from the true state
    labels = observation_labels(task, LABELS, np.random.default_rng(1))
    twin = np.random.default_rng(0)
    state = int(twin.integers(10))
    env = ClassificationMDP(task, LABELS, np.random.default_rng(1), np.random.default_rng(0))
    images = [np.flatnonzero(labels == s) for s in range(10)]
    assert env.state == state and env.observation == images[state][twin.integers(len(images[state]))]
    for a in actions:
        a = state if a == -1 else int(a)
        r, obs = env.step(a)
        expected = float(a == state and (task != "sparse" or state == 9))
        state = (state + 1) % 10 if task == "sparse" and a == state else int(twin.integers(10))
        image = images[state][twin.integers(len(images[state]))]
        assert (r, env.state, obs) == (expected, state, image)
        assert labels[obs] == state


def test_observation_labels():
    assert np.array_equal(observation_labels("easy", LABELS, None), LABELS)
    hard = observation_labels("hard", LABELS, np.random.default_rng(3))
    assert np.array_equal(hard, np.random.default_rng(3).integers(0, 10, size=len(LABELS)))
    assert not np.array_equal(hard, LABELS)
    with pytest.raises(ValueError, match="unknown task 'medium'"):
        observation_labels("medium", LABELS, None)
    with pytest.raises(ValueError, match="class labels in 0..9"):
        observation_labels("easy", np.array([0, 10]), None)


def test_reward_table():
    states, actions = np.repeat(np.arange(10), 10), np.tile(np.arange(10), 10)
    assert np.array_equal(reward("easy", states, actions), (states == actions).astype(float))
    assert np.array_equal(reward("sparse", states, actions), ((states == actions) & (states == 9)).astype(float))


def test_a_label_without_images_is_refused():
    with pytest.raises(ValueError, match=r"none of label\(s\) \[9\]"):
        ClassificationMDP("easy", np.arange(9), None, np.random.default_rng(0))


def test_environment_state_round_trip_and_checks():
    env, *_ = walk("easy", [1, 2, 3])
    state = env.state_dict()
    other, *_ = walk("easy", [])
    other.load_state_dict(state)
    assert other.state_dict() == state
    with pytest.raises(ValueError, match="does not fit the task"):
        other.load_state_dict({"state": (state["state"] + 1) % 10, "observation": state["observation"]})


def test_replay_is_a_ring_and_samples_uniformly_from_what_it_holds():
    replay = Replay(4)
    for i in range(6):
        replay.add(i, i % 10, float(i), i + 1)
    assert len(replay) == 4 and sorted(replay.observations()) == [2, 3, 4, 5]
    batch = replay.sample(1000, np.random.default_rng(0))
    assert set(batch["observation"]) == {2, 3, 4, 5}
    assert np.array_equal(batch["next_observation"], batch["observation"] + 1)
    restored = Replay(4)
    restored.load_state_dict(replay.state_dict())
    assert all(np.array_equal(restored.arrays[k], replay.arrays[k]) for k in replay.arrays)
    assert restored.next == replay.next
    with pytest.raises(ValueError, match="capacity 4 in the checkpoint, 5 here"):
        Replay(5).load_state_dict(replay.state_dict())
    with pytest.raises(ValueError, match="empty"):
        Replay(3).sample(1, np.random.default_rng(0))


def test_epsilon_greedy_and_td_targets():
    values = np.array([0.1, 0.7, 0.7, -1.0])
    assert epsilon_greedy(values, 0.0, np.random.default_rng(0)) == 1  # the first on ties
    rng, twin = np.random.default_rng(4), np.random.default_rng(4)
    actions = [epsilon_greedy(values, 0.5, rng) for _ in range(100)]
    expected = [int(twin.integers(4)) if twin.random() < 0.5 else 1 for _ in range(100)]
    assert actions == expected
    rewards, q_target, q_online = np.array([1.0, 0.0]), np.array([[1.0, 3.0], [2.0, 0.5]]), np.array([[5, 0], [0, 5]])
    assert np.array_equal(td_targets(rewards, q_target, 0.5), [1 + 1.5, 0 + 1.0])
    assert np.array_equal(td_targets(rewards, q_target, 0.5, q_online), [1 + 0.5, 0 + 0.25])
