"""The Atari environments on ale-py 0.12.1: the game list, the facts the module docstring states
(stacks after a reset, no "Disabled" autoreset, ale-py's reward clipping, seeded resets that
determine an episode), life loss and episode returns, and resuming bit-identically by replay."""

import numpy as np
import pytest

from refplastic.rl.atari import GAMES, SEED_BOUND, AtariEnvironments, check_game
from refplastic.rl.scores import REFERENCE_SCORES


def test_the_57_games_are_roms_of_ale_py():
    import ale_py

    assert len(GAMES) == 57 and set(GAMES) == set(REFERENCE_SCORES)
    assert {"pong", "breakout", "space_invaders", "montezuma_revenge", "up_n_down"} <= set(GAMES)
    assert all(ale_py.roms.get_rom_path(rom).is_file() for rom in GAMES.values())


@pytest.mark.slow  # about 6 s: loading a ROM takes 0.1 s
def test_the_57_games_all_load_in_ale_py():
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    for game, rom in GAMES.items():
        ale.loadROM(ale_py.roms.get_rom_path(rom))  # checks the ROM's MD5, raises if it does not load
        assert len(ale.getMinimalActionSet()) >= 2, game


def test_check_game_names_the_field_and_close_matches():
    assert check_game("pong") == "pong"
    for name, message in (("pongg", "game 'pongg' is not one of the 57 Atari-57 games (did you mean pong?)"),
                          ("Space-Invaders", "(did you mean space_invaders?)"),
                          ("xyzzy", "(refplastic.rl.atari.GAMES lists them)"),
                          (3, "game 3 is not one")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")) as e:
            check_game(name)
        assert "\n" not in str(e.value) and e.value.field == "game"
    with pytest.raises(ValueError, match="game 'pongg'"):
        AtariEnvironments("pongg", 1, np.random.default_rng(0))


def test_ale_py_facts_the_module_builds_on():
    """No "Disabled" autoreset mode; reward_clipping clamps in C++ to int32 (the game score is lost)."""
    from ale_py.vector_env import AtariVectorEnv

    with pytest.raises(ValueError, match="Invalid autoreset_mode: Disabled"):
        AtariVectorEnv("pong", 1, autoreset_mode="Disabled")
    rewards = {}
    for clipping in (True, False):
        env = AtariVectorEnv("space_invaders", 2, num_threads=1, reward_clipping=clipping)
        env.reset(seed=np.array([1, 2]))
        actions = np.random.default_rng(0).integers(0, env.single_action_space.n, size=(300, 2))
        rewards[clipping] = np.array([env.step(a)[1] for a in actions])
        env.close()
    assert rewards[True].dtype == np.int32 and rewards[False].max() > 1
    np.testing.assert_array_equal(rewards[True], np.clip(rewards[False], -1, 1))


def test_spaces_and_the_stack_after_a_reset_holds_zeros():
    envs = AtariEnvironments("breakout", 2, np.random.default_rng(0))
    assert envs.single_observation_space.shape == (4, 84, 84) and envs.single_observation_space.dtype == np.uint8
    assert envs.num_actions == envs.single_action_space.n == 4 and envs.max_episode_steps == 27_000
    observation = envs.reset()
    assert observation.shape == (2, 4, 84, 84) and observation.dtype == np.uint8
    assert not observation[:, :3].any() and observation[:, 3].any() and envs.first.all()
    after = envs.step(np.array([0, 1])).observations
    np.testing.assert_array_equal(after[:, 2], observation[:, 3])  # [0, 0, f0, f1]
    assert not after[:, :2].any() and not envs.first.any()
    assert ((envs.seeds >= 0) & (envs.seeds < SEED_BOUND)).all()
    with pytest.raises(ValueError, match=r"actions must be 2 integers in \[0, 4\)"):
        envs.step(np.array([0, 4]))
    envs.close()


def _episode(envs, index, actions, rng):
    """Sub-environment ``index``'s observations, rewards and lives under ``actions`` (the others
    random) until its episode ends."""
    out = [envs.observations[index].copy()], [], []
    for a in actions:
        step_actions = rng.integers(0, envs.num_actions, envs.num_envs)
        step_actions[index] = a
        step = envs.step(step_actions)
        if step.ended[index]:
            break
        out[0].append(step.observations[index].copy())
        out[1].append(step.game_rewards[index])
        out[2].append(envs.lives[index])
    return [np.array(x) for x in out]


def test_a_seed_and_the_actions_determine_an_episode_whatever_else_runs():
    """Seed s then the same actions: the same observations, rewards and lives bit for bit, whether
    the sub-environment is one of 3 on 1 thread or of 2 on 2 threads, reset at the start or after
    another episode, beside other play, with sticky actions 0.25 (seeded by s too)."""
    actions = np.random.default_rng(7).integers(0, 6, 200)
    runs = []
    for num_envs, threads, index, before in ((3, 1, 1, 0), (2, 2, 0, 40)):
        envs = AtariEnvironments("space_invaders", num_envs, np.random.default_rng(num_envs), num_threads=threads,
                                 sticky_actions=0.25)
        envs.reset()
        other = np.random.default_rng(threads)
        for _ in range(before):
            envs.step(other.integers(0, 6, num_envs))
        envs.rng = np.random.default_rng(99)  # the same seed for the sub-environment reset here
        envs._begin(np.arange(num_envs) == index)
        runs.append(_episode(envs, index, actions, other))
        envs.close()
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert len(runs[0][1]) > 100 and runs[0][1].sum() > 0  # points scored


def test_life_loss_episode_returns_and_lengths():
    """Space Invaders, random play: life_lost exactly where the lives fell; an episode's return is the sum
    of its game rewards and its length its steps; rewards clipped for learning, not for returns."""
    envs = AtariEnvironments("space_invaders", 2, np.random.default_rng(1), reward_clip=1.0,
                             max_episode_frames=2000)
    envs.reset()
    rng = np.random.default_rng(2)
    lives, running, steps, ended, lost = envs.lives.copy(), np.zeros(2), np.zeros(2, int), 0, 0
    for _ in range(700):
        step = envs.step(rng.integers(0, envs.num_actions, 2))
        running += step.game_rewards
        steps += 1
        np.testing.assert_array_equal(step.rewards, np.clip(step.game_rewards, -1, 1))
        fell = np.where(step.ended, step.terminated, step.life_lost)  # lives after a reset are the new episode's
        lost += int(step.life_lost.sum())
        np.testing.assert_array_equal(step.life_lost[~step.ended], (envs.lives < lives)[~step.ended])
        assert fell[step.terminated].all()
        index, returns, lengths = step.ended_episodes()
        np.testing.assert_array_equal(returns, running[index])
        np.testing.assert_array_equal(lengths, steps[index])
        assert np.isnan(step.episode_returns[~step.ended]).all()
        ended += len(index)
        running[index], steps[index] = 0, 0
        lives = envs.lives.copy()
    assert ended >= 2 and lost >= 4 and (step.game_rewards.max() > 1 or running.max() > 1)
    envs.close()


def _trajectory(envs, actions):
    return [envs.step(a) for a in actions]


@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_resume_by_replay_is_bit_identical(game):
    """Stop an object mid-run (its episodes begun at different steps, after several episode ends),
    rebuild a fresh one from its state by replay: the observations then and every step after
    (rewards, ends, lives, returns) equal those of the uninterrupted object."""
    settings = dict(max_episode_frames=800 if game == "pong" else 600, sticky_actions=0.25, num_threads=2)
    rng = np.random.default_rng(5)
    envs = AtariEnvironments(game, 2, np.random.default_rng(6), **settings)
    envs.reset()
    actions = rng.integers(0, envs.num_actions, size=(600, 2))
    for _ in range(50):  # stagger the episodes (Pong's all end at the frame cap)
        envs.step(actions[0])
    envs._begin(np.array([False, True]))
    before = _trajectory(envs, actions[:350])
    assert sum(int(s.ended.sum()) for s in before) >= 3
    state = envs.state_dict()
    assert len(set(state["episode_steps"].tolist())) == 2  # episodes of different lengths so far
    saved_rng = np.random.default_rng()
    saved_rng.bit_generator.state = envs.rng.bit_generator.state
    resumed = AtariEnvironments(game, 2, None, **settings)
    resumed.load_state_dict({k: v.copy() for k, v in state.items()}, saved_rng)
    np.testing.assert_array_equal(resumed.observations, envs.observations)
    for name in ("seeds", "steps", "returns", "lives"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(envs, name))
    after, again = _trajectory(envs, actions[350:]), _trajectory(resumed, actions[350:])
    assert sum(int(s.ended.sum()) for s in after) >= 3
    for a, b in zip(after, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    envs.close()
    resumed.close()


def test_a_state_that_does_not_fit_is_refused_in_one_line():
    envs = AtariEnvironments("breakout", 2, np.random.default_rng(0), max_episode_frames=4000)
    envs.reset()
    rng = np.random.default_rng(1)
    while True:
        seeds, steps = envs.seeds.copy(), envs.steps.copy()
        step = envs.step(rng.integers(0, 4, 2))
        if step.terminated.any():
            break
    fresh = AtariEnvironments("breakout", 2, None, max_episode_frames=4000)
    state = envs.state_dict()
    for bad, message in (({"episode_seeds": state["episode_seeds"][:1]}, "environment episode_seeds must be 2 seeds"),
                         ({"episode_steps": np.array([5, 1000])},
                          r"environment episode_steps must be 2 step counts in \[0, 1000\)"),
                         ({"episode_actions": np.zeros((2, 3))}, "environment episode_actions must hold integers"),
                         ({"episode_actions": np.full_like(state["episode_actions"], 7)},
                          "environment episode_actions must be")):
        with pytest.raises(ValueError, match=message):
            fresh.load_state_dict({**state, **bad}, np.random.default_rng(0))
    # a game that ended, saved as if it were still running: the replay ends it, and says so
    i = int(np.argmax(step.terminated))
    steps[i] += 1
    actions = np.zeros((2, steps.max()), np.uint8)
    for j in range(2):
        actions[j, :steps[j]] = envs.actions[j, :steps[j]]  # the ended episode's actions are still there
    with pytest.raises(ValueError, match=f"environment replay diverged: the episode of sub-environment {i} ended "
                                         f"after {steps[i]} of its {steps[i]} saved steps"):
        fresh.load_state_dict({"episode_seeds": seeds, "episode_steps": steps, "episode_actions": actions},
                              np.random.default_rng(0))
    fresh.close()
    envs.close()
