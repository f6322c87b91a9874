"""The frame replay buffer: restacking at episode borders against a hand-built trajectory, ring
wrap-around, the discount flags, equality with the environment's own stacks on a real ROM, the
state round trip, and the gather kernel against its NumPy twin."""

import numpy as np
import pytest

from refplastic.kernels.frame_stacks import frame_stacks, frame_stacks_naive
from refplastic.rl.frame_replay import FrameReplay, _stored_slots, check_replay_memory, replay_bytes

SHAPE = (2, 3)  # small frames: frame k is filled with the value k


def frames_of(*ks):
    return np.stack([np.full(SHAPE, k, np.uint8) for k in ks])


def ids(stacks):
    """The frame numbers of stacks (B, S, 2, 3) of frames made by :func:`frames_of`."""
    return [tuple(row) for row in stacks[:, :, 0, 0].tolist()]


def all_transitions(replay):
    """Every sampleable transition of ``replay``: ``{(env, obs ids, next ids): (action, reward, discount)}``."""
    stored = np.minimum(replay.count, replay.ring)
    envs, age = _stored_slots(stored)
    keep = replay._sampleable(envs, age, stored[envs])
    envs, slots = envs[keep], ((replay.count[envs] - 1 - age) % replay.ring)[keep]
    obs, nxt = frame_stacks(replay.frames, replay.slots["first"], envs, slots, replay.stack)
    return {(int(e), o, n): (int(replay.slots["actions"][e, j]), float(replay.slots["rewards"][e, j]),
                             float(replay.slots["discounts"][e, j]))
            for e, j, o, n in zip(envs, slots, ids(obs), ids(nxt))}


def drawn(batch):
    """The transitions of a minibatch as the keys and values of :func:`all_transitions` (one ring)."""
    return {(0, o, n): (int(a), float(r), float(d)) for o, n, a, r, d in
            zip(ids(batch["observation"]), ids(batch["next_observation"]), batch["action"], batch["reward"],
                batch["discount"])}


def play(replay, episodes):
    """Feed one ring with ``episodes``: each a list of ``(frame, action, reward, discount)`` steps
    and the episode's last frame, or ``None`` if it has not ended."""
    for steps, last in episodes:
        for t, (k, a, r, d) in enumerate(steps):
            replay.add(frames_of(k), [a], [r], [d], [t == 0])
        if last is not None:
            replay.add_terminal(np.array([True]), frames_of(last))


def test_stacks_at_episode_borders_against_a_hand_built_trajectory():
    """Episode A: frames 1-4 acted on, terminated at 5; B: 6 acted on, truncated at 7 (it
    bootstraps from its own last frame); C: 8, 9, 10 acted on, 11 not yet. A stack holds zeros
    before its episode's first frame, as ale-py's do."""
    replay = FrameReplay(64, 1, SHAPE)
    play(replay, [([(1, 0, 0.0, 1.0), (2, 1, 1.0, 1.0), (3, 2, -1.0, 1.0), (4, 3, 1.0, 0.0)], 5),
                  ([(6, 4, 0.5, 1.0)], 7),
                  ([(8, 5, 0.0, 1.0), (9, 0, 0.0, 1.0), (10, 1, 0.0, 1.0)], None)])
    expected = {
        (0, (0, 0, 0, 1), (0, 0, 1, 2)): (0, 0.0, 1.0),
        (0, (0, 0, 1, 2), (0, 1, 2, 3)): (1, 1.0, 1.0),
        (0, (0, 1, 2, 3), (1, 2, 3, 4)): (2, -1.0, 1.0),
        (0, (1, 2, 3, 4), (2, 3, 4, 5)): (3, 1.0, 0.0),   # the termination: discount 0
        (0, (0, 0, 0, 6), (0, 0, 6, 7)): (4, 0.5, 1.0),   # the truncation: s' is the episode's own last
        (0, (0, 0, 0, 8), (0, 0, 8, 9)): (5, 0.0, 1.0),
        (0, (0, 0, 8, 9), (0, 8, 9, 10)): (0, 0.0, 1.0),
    }
    assert all_transitions(replay) == expected
    assert len(replay) == 7  # the newest slot (10) has no successor yet
    batch = replay.sample(500, np.random.default_rng(0))
    assert drawn(batch) == expected  # every transition drawn, nothing else
    assert batch["observation"].shape == batch["next_observation"].shape == (500, 4, *SHAPE)
    assert batch["observation"].dtype == np.uint8 and batch["action"].dtype == np.int64
    assert batch["reward"].dtype == batch["discount"].dtype == np.float64


def test_sampling_is_uniform_over_the_transitions_of_rings_of_different_lengths():
    """Ring 0 plays one long episode, ring 1 episodes of two steps, each end costing it a slot
    without a transition: each of the K transitions is drawn with probability 1/K."""
    replay = FrameReplay(60, 2, SHAPE)
    for t in range(12):
        replay.add(frames_of(1 + t, 100 + t), [0, 0], [0.0, 0.0], [1.0, 1.0], [t == 0, t % 2 == 0])
        replay.add_terminal(np.array([False, t % 2 == 1]), frames_of(0, 200 + t))
    transitions = all_transitions(replay)
    assert len(transitions) == len(replay) == 11 + 12
    n = 23_000
    observations = ids(replay.sample(n, np.random.default_rng(1))["observation"])
    counts = np.array([observations.count(obs) for (_, obs, _) in transitions])
    assert counts.sum() == n
    expected = n / len(transitions)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_a_wrapped_ring_overwrites_its_oldest_frames_and_samples_complete_stacks_only():
    """A ring of 8 slots after 20 frames of one episode keeps frames 13..20: the transitions from
    13 to 19 are stored, but 13..15 have lost older frames of their stacks and are not sampled;
    an episode that begins among the kept frames is complete."""
    replay = FrameReplay(8, 1, SHAPE)
    for t in range(20):
        replay.add(frames_of(t + 1), [t % 3], [float(t)], [1.0], [t == 0])
    assert len(replay) == 7
    assert all_transitions(replay) == {(0, tuple(range(k - 3, k + 1)), tuple(range(k - 2, k + 2))): ((k - 1) % 3, k - 1, 1.0)
                                       for k in range(16, 20)}
    replay.add_terminal(np.array([True]), frames_of(21))
    for t, k in enumerate((22, 23, 24)):
        replay.add(frames_of(k), [0], [0.0], [1.0], [t == 0])
    # kept: 17..24, 21 the terminal, 22 an episode's first; stored transitions 17, 18, 19, 20, 22, 23
    assert len(replay) == 6
    assert set(all_transitions(replay)) == {(0, (17, 18, 19, 20), (18, 19, 20, 21)), (0, (0, 0, 0, 22), (0, 0, 22, 23)),
                                            (0, (0, 0, 22, 23), (0, 22, 23, 24))}


def test_the_contract_of_add_and_add_terminal():
    replay = FrameReplay(16, 2, SHAPE)
    with pytest.raises(ValueError, match="cannot sample"):
        replay.sample(1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="add_terminal: an episode can only end after"):
        replay.add_terminal(np.array([True, False]), frames_of(1, 2))
    replay.add(frames_of(1, 2), [0, 0], [0.0, 0.0], [1.0, 1.0], [True, False])  # ring 1 resumed mid-episode
    replay.add_terminal(np.array([True, False]), frames_of(3, 0))
    with pytest.raises(ValueError, match="sub-environment 0's observation is not an episode's first, but its last ended"):
        replay.add(frames_of(4, 5), [0, 0], [0.0, 0.0], [1.0, 1.0], [False, False])
    with pytest.raises(ValueError, match="sub-environment 1's observation is an episode's first, but its last did not end"):
        replay.add(frames_of(4, 5), [0, 0], [0.0, 0.0], [1.0, 1.0], [True, True])
    with pytest.raises(ValueError, match="capacity must be an integer of at least 6 slots for each of the 2"):
        FrameReplay(11, 2, SHAPE)
    replay.add(frames_of(4, 5), [0, 0], [0.0, 0.0], [1.0, 1.0], [True, False])
    # ring 1 began mid-episode: its transition's stack lacks older frames, so only ring 0's is sampled
    assert len(replay) == 2 and set(all_transitions(replay)) == {(0, (0, 0, 0, 1), (0, 0, 1, 3))}


def test_discount_flags_on_a_real_rom_and_stacks_equal_to_the_environments():
    """Breakout, 2 sub-environments, random play over several episodes (game over and the frame
    cap), life loss ending the bootstrap: every sampleable transition of the buffer is one the
    agent made, bit for bit (its observation and next observation as ale-py stacked them), with
    discount 0 exactly at terminations and life losses and 1 at truncations; and all but the
    oldest ones of each ring are there."""
    from refplastic.rl.atari import AtariEnvironments

    n = 2
    envs = AtariEnvironments("breakout", n, np.random.default_rng(3), max_episode_frames=600)
    replay = FrameReplay(400, n, (84, 84))  # 200 slots a ring: it wraps
    rng = np.random.default_rng(4)
    observation, made, ends = envs.reset(), {}, {"terminated": 0, "truncated": 0, "life_lost": 0}
    for _ in range(600):
        first = envs.first
        actions = rng.integers(0, envs.num_actions, n)
        step = envs.step(actions)
        discounts = np.where(step.terminated | step.life_lost, 0.0, 1.0)
        replay.add(observation[:, -1], actions, step.rewards, discounts, first)
        replay.add_terminal(step.ended, step.final_frames)
        next_observation = np.where(step.ended[:, None, None, None],
                                    np.concatenate([observation[:, 1:], step.final_frames[:, None]], axis=1),
                                    step.observations)
        for i in range(n):
            made[(i, observation[i].tobytes(), next_observation[i].tobytes())] = (int(actions[i]), float(step.rewards[i]),
                                                                                  float(discounts[i]))
        for name in ends:
            ends[name] += int(getattr(step, name).sum())
        observation = step.observations
    envs.close()
    assert all(count >= 2 for count in ends.values()), ends
    stored = np.minimum(replay.count, replay.ring)
    envs_, age = _stored_slots(stored)
    keep = replay._sampleable(envs_, age, stored[envs_])
    e, slots = envs_[keep], ((replay.count[envs_] - 1 - age) % replay.ring)[keep]
    obs, nxt = frame_stacks(replay.frames, replay.slots["first"], e, slots, 4)
    for i, j, o, x in zip(e, slots, obs, nxt):
        key = (int(i), o.tobytes(), x.tobytes())
        assert key in made
        assert made[key] == (int(replay.slots["actions"][i, j]), float(replay.slots["rewards"][i, j]),
                             float(replay.slots["discounts"][i, j]))
    assert len(replay) - keep.sum() <= n * 3
    assert {d for d in replay.slots["discounts"][e, slots]} == {0.0, 1.0}


def test_state_round_trip_and_one_line_errors():
    replay = FrameReplay(24, 2, SHAPE)
    for t in range(9):
        replay.add(frames_of(t + 1, 50 + t), [t, 2 * t], [0.5 * t, -1.0], [1.0, 0.0], [t == 0, t == 0])
    state = replay.state_dict()
    assert state["frames"].shape == (2, 9, *SHAPE)  # only the slots written so far
    copy = FrameReplay(24, 2, SHAPE)
    copy.load_state_dict(state)
    assert len(copy) == len(replay) == 16
    for a, b in ((replay.sample(64, np.random.default_rng(5)), copy.sample(64, np.random.default_rng(5))),):
        assert all(np.array_equal(a[k], b[k]) for k in a)
    for t in range(9, 14):  # wrapped rings: the whole ring is saved
        for r in (replay, copy):
            r.add(frames_of(t + 1, 50 + t), [t, 2 * t], [0.5 * t, -1.0], [1.0, 0.0], [False, False])
    wrapped = FrameReplay(24, 2, SHAPE)
    wrapped.load_state_dict(copy.state_dict())
    assert wrapped.state_dict()["frames"].shape == (2, 12, *SHAPE)
    a, b = replay.sample(64, np.random.default_rng(6)), wrapped.sample(64, np.random.default_rng(6))
    assert all(np.array_equal(a[k], b[k]) for k in a) and len(wrapped) == len(replay)
    for field, value, message in (
            ("frames", state["frames"][:, :3], r"replay frames: uint8\(2, 3, 2, 3\) in the checkpoint"),
            ("first", state["first"].astype(np.int64), "replay first: int64"),
            ("rewards", np.full((2, 9), np.nan), "replay rewards contains NaN"),
            ("count", np.array([9]), "replay count must be 2 non-negative integers"),
            ("terminal", np.ones((2, 9), bool), "replay first and terminal do not fit")):
        with pytest.raises(ValueError, match=message):
            FrameReplay(24, 2, SHAPE).load_state_dict({**state, field: value})
    with pytest.raises(ValueError, match="replay discounts is missing"):
        FrameReplay(24, 2, SHAPE).load_state_dict({k: v for k, v in state.items() if k != "discounts"})


def test_bytes_and_the_memory_check():
    replay = FrameReplay(1000, 3, SHAPE)
    assert replay.nbytes == replay_bytes(1000, 3, SHAPE) == 999 * (6 + 26)
    assert replay_bytes(1_000_000, 4) == 1_000_000 * (84 * 84 + 26)  # 7.08 GB
    assert replay_bytes(100_000, 4) < 0.75e9
    check_replay_memory(100_000, 4, available=10**9)
    with pytest.raises(ValueError, match=r"^replay_capacity 1000000 takes 6.6 GiB, more than the 954 MiB available; "
                                         r"lower replay_capacity$"):
        check_replay_memory(1_000_000, 4, available=10**9)


def test_the_gather_kernel_matches_its_numpy_twin():
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, size=(3, 11, 5, 4), dtype=np.uint8)
    first = rng.random((3, 11)) < 0.3
    envs, slots = rng.integers(0, 3, 200), rng.integers(0, 11, 200)  # slot 10: its successor wraps to slot 0
    for stack in (1, 2, 4):
        fast, naive = frame_stacks(frames, first, envs, slots, stack), frame_stacks_naive(frames, first, envs, slots, stack)
        for a, b in zip(fast, naive):
            assert a.dtype == np.uint8 and a.shape == (200, stack, 5, 4)
            np.testing.assert_array_equal(a, b)
    # by hand: ring 0 = frames 0..10 (value = slot), first at slot 2
    frames = np.broadcast_to(np.arange(11, dtype=np.uint8)[None, :, None, None], (1, 11, 1, 1)).copy()
    first = np.zeros((1, 11), bool)
    first[0, 2] = True
    obs, nxt = frame_stacks(frames, first, np.array([0, 0, 0]), np.array([3, 1, 10]), 4)
    assert ids(obs) == [(0, 0, 2, 3), (9, 10, 0, 1), (7, 8, 9, 10)]
    assert ids(nxt) == [(0, 2, 3, 4), (0, 0, 0, 2), (8, 9, 10, 0)]
