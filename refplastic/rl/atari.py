"""N sub-environments of one Atari game stepped together in ale-py's C++ threads, resumable exactly.

:class:`AtariEnvironments` wraps ``ale_py.vector_env.AtariVectorEnv`` (ale-py 0.12.1, whose wheel
ships the ROMs): each agent step repeats the action for ``frameskip`` emulator frames, takes the
pixel-wise maximum of the last two (``maxpool``), converts the 210x160 screen to gray and shrinks
it to 84x84 by area averaging (OpenCV's ``INTER_AREA`` compiled into ale-py; nothing imported
from Python), and stacks the last ``stack`` frames, oldest first: observations are (N, 4, 84, 84)
uint8. Facts of ale-py 0.12.1 this module builds on, read in its C++ (``src/ale/vector/``) and
checked by ``tests/test_rl_atari.py``:

* **After a reset the stack holds zeros for the missing frames**: ``[0, 0, 0, f0]``, then
  ``[0, 0, f0, f1]`` after one step, and so on (ale-py clears its stack at a reset); the replay
  buffer (:mod:`.frame_replay`) restacks observations the same way.
* **Resets are ours.** ale-py 0.12.1 has no ``autoreset_mode="Disabled"`` (only ``NextStep`` and
  ``SameStep``; "Disabled" is refused). With ``NextStep`` a sub-environment whose episode ended
  would reset itself, unseeded, at the next step; this class resets it first, right after the
  step that ended it (``reset(seed=..., options={"reset_mask": mask})``, a partial reset of just
  those sub-environments), with a seed drawn from the Generator it was given, so ale-py's own reset
  never happens. A step's ``observations`` are then the next episode's first where one ended, and
  its ``final_frames`` the ended episode's last.
* **A seed and the actions determine an episode, bit for bit.** A reset with seed ``s`` reloads the
  ROM with ale-py's ``random_seed = s`` and reseeds the no-op draw, so the same seed followed by the
  same actions gives identical observations, rewards and lives whatever the other sub-environments
  do, whatever ``num_threads`` is, and with sticky actions too (their draws come from the emulator's
  generator, seeded by ``s``). The price: reloading the ROM takes about 0.09 s per reset on this
  machine (2-core EPYC; up to 0.2 s beside other jobs; 0.006-0.011 s for an unseeded reset), once
  per episode: at 154 agent steps per second and 1,000-step episodes (random Pong), 0.154 resets a
  second, 1.4% of the time.
* **ale-py's ``reward_clipping`` clamps the reward in C++** and returns int32: the game's score
  would be lost. This class builds ale-py with ``reward_clipping=False`` and returns both the game
  reward (for returns) and, with ``reward_clip`` > 0, ``clip(r, -reward_clip, reward_clip)`` (for
  learning; DQN Zoo clips to 1).
* **The frame cap counts emulator frames after the reset's no-ops**: an episode is truncated when
  ``max_episode_frames`` frames have been played, after at most
  ``ceil(max_episode_frames / frameskip)`` agent steps (27,000 at 108,000 frames and frameskip 4).
  ``truncated`` is that cap; ``terminated`` is the game's end.
* **No-ops**: after a reset ale-py plays ``U{0..noop_max-1}`` no-op *frames* (one fewer after
  FIRE when ``fire_reset`` and the game has FIRE). DQN Zoo plays 1 to 30 no-op frames;
  ``noop_max=31`` gives 0 to 30.

Life loss does not end an episode (``episodic_life=False``: a game goes on across lives, as in DQN
Zoo); each step reports ``life_lost`` (``info["lives"]`` fell), so that the learner can end the
bootstrap there, while returns are those of whole games.

*Checkpoints without emulator state.* The vector interface cannot clone or restore an emulator, so
the object keeps, per sub-environment, the seed of its current episode and the actions taken since
that episode began (at most 27,000 at 108k frames): :meth:`AtariEnvironments.state_dict`. The
Generator that draws the seeds is the caller's, and so is saving its state.
:meth:`~AtariEnvironments.load_state_dict`, on a fresh object built with the same arguments,
rebuilds every sub-environment by replaying: it steps all of them together over the last ``L``
steps, ``L`` the longest current episode so far, resetting sub-environment ``i`` (seeded as
recorded) at the step its episode began and giving it a no-op before then. Its cost is replaying
at most one episode: ``L`` vector steps and up to N seeded resets (4 Pong sub-environments: 400-800
vector steps per second on this machine, busy to idle, so 27,000 steps take half a minute to a
minute).
"""

import difflib
import math
from typing import NamedTuple

import numpy as np

from ..config_fields import ConfigError
from .scores import REFERENCE_SCORES

GAMES = {name: name for name in REFERENCE_SCORES}
"""The 57 games of the Atari-57 benchmark, by their snake_case names, each mapped to the ROM id
``AtariVectorEnv`` takes. In ale-py 0.12.1 every one is the same string (tests/test_rl_atari.py
loads each ROM); a later renaming changes the values here."""
FRAME_SHAPE = (84, 84)
STACK = 4
SEED_BOUND = 2 ** 31 - 1  # reset seeds in [0, 2^31 - 1): a C++ int, and a negative one means "unseeded" to ale-py
NOOP = 0  # the action of a sub-environment whose episode has not begun yet in a replay


def check_game(name):
    """``name`` if it is one of :data:`GAMES`, else a one-line :class:`ConfigError` (a ValueError)
    naming the field ``game`` and the closest names."""
    if isinstance(name, str) and name in GAMES:
        return name
    close = difflib.get_close_matches(str(name).lower().replace("-", "_").replace(" ", "_"), list(GAMES), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else " (refplastic.rl.atari.GAMES lists them)"
    raise ConfigError("game", f"{name!r} is not one of the 57 Atari-57 games{hint}")


class EnvStep(NamedTuple):
    """What one step of the N sub-environments gives; ended episodes are reset already."""

    observations: np.ndarray     # (N, stack, H, W) uint8: what the agent acts on next (a new episode's first where one ended)
    final_frames: np.ndarray     # (N, H, W) uint8: the newest frame the actions led to, before any reset (an ended episode's last)
    rewards: np.ndarray          # (N,) float64: clip(r, -reward_clip, reward_clip), or r if reward_clip is 0
    game_rewards: np.ndarray     # (N,) float64: r, the change of the game's score
    terminated: np.ndarray       # (N,) bool: the game ended
    truncated: np.ndarray        # (N,) bool: the frame cap ended the episode (not a termination)
    life_lost: np.ndarray        # (N,) bool: the number of lives fell at this step
    episode_returns: np.ndarray  # (N,) float64: an ended episode's game score (sum of r), NaN elsewhere
    episode_lengths: np.ndarray  # (N,) int64: an ended episode's agent steps, 0 elsewhere

    @property
    def ended(self):
        """(N,) bool: the episode ended (terminated or truncated) and the sub-environment was reset."""
        return self.terminated | self.truncated

    def ended_episodes(self):
        """``(sub-environments, returns, lengths)`` of the episodes that ended at this step."""
        index = np.flatnonzero(self.ended)
        return index, self.episode_returns[index], self.episode_lengths[index]


class AtariEnvironments:
    """``num_envs`` sub-environments of ``game``, reset with seeds drawn from ``rng`` (a
    ``numpy.random.Generator``). The defaults are DQN Zoo's (no sticky actions, no FIRE at reset,
    108,000 frames per episode), except ``noop_max`` (module docstring) and ``reward_clip`` (0: the
    caller clips).
    """

    def __init__(self, game, num_envs, rng, *, num_threads=1, frameskip=4, image_size=FRAME_SHAPE[0], stack=STACK,
                 maxpool=True, noop_max=30, sticky_actions=0.0, full_action_space=False, max_episode_frames=108_000,
                 reward_clip=0.0, fire_reset=False):
        from ale_py.vector_env import AtariVectorEnv  # here: importing ale-py and gymnasium takes a quarter of a second

        self.game = check_game(game)
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        self.num_envs, self.rng, self.reward_clip = int(num_envs), rng, float(reward_clip)
        self._env = AtariVectorEnv(
            GAMES[game], self.num_envs, num_threads=num_threads, autoreset_mode="NextStep",
            max_num_frames_per_episode=max_episode_frames, repeat_action_probability=sticky_actions,
            full_action_space=full_action_space, img_height=image_size, img_width=image_size, grayscale=True,
            stack_num=stack, frameskip=frameskip, maxpool=maxpool, noop_max=noop_max, episodic_life=False,
            reward_clipping=False, use_fire_reset=fire_reset)
        self.single_observation_space = self._env.single_observation_space
        self.single_action_space = self._env.single_action_space
        self.num_actions = int(self.single_action_space.n)
        self.max_episode_steps = math.ceil(max_episode_frames / frameskip)
        n = self.num_envs
        self.seeds = np.zeros(n, np.int64)       # each sub-environment's current episode: its seed,
        self.steps = np.zeros(n, np.int64)       # its agent steps so far,
        self.actions = np.zeros((n, self.max_episode_steps), np.uint8)  # its actions (the first `steps`),
        self.returns = np.zeros(n, np.float64)   # its game score so far,
        self.lives = np.zeros(n, np.int64)       # and the lives after the last step
        self.observations = None                 # (N, stack, H, W): what the agent acts on next

    @property
    def first(self):
        """(N,) bool: :attr:`observations` are an episode's first (no action taken since its reset)."""
        return self.steps == 0

    def reset(self):
        """Begin a new episode in every sub-environment; the first observations, (N, stack, H, W) uint8."""
        return self._begin(np.ones(self.num_envs, bool))

    def step(self, actions):
        """Act with ``actions`` (N integers below :attr:`num_actions`) in every sub-environment; an
        :class:`EnvStep`."""
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu" or (
                actions.min() < 0 or actions.max() >= self.num_actions):
            raise ValueError(f"actions must be {self.num_envs} integers in [0, {self.num_actions}), "
                             f"got {actions.dtype} of shape {actions.shape}")
        if self.observations is None:
            raise ValueError("step() before reset(): the sub-environments have no episode yet")
        self.actions[np.arange(self.num_envs), self.steps] = actions
        observations, game_rewards, terminated, truncated, info = self._env.step(actions.astype(np.int64))
        self.steps += 1
        game_rewards = game_rewards.astype(np.float64)
        self.returns += game_rewards
        lives = info["lives"].astype(np.int64)
        life_lost = lives < self.lives
        self.lives = lives
        ended = terminated | truncated
        episode_returns = np.where(ended, self.returns, np.nan)
        episode_lengths = np.where(ended, self.steps, 0)
        self.observations = observations
        if ended.any():
            self._begin(ended)
        rewards = np.clip(game_rewards, -self.reward_clip, self.reward_clip) if self.reward_clip > 0 else game_rewards
        return EnvStep(self.observations, observations[:, -1], rewards, game_rewards, terminated, truncated, life_lost,
                       episode_returns, episode_lengths)

    def _begin(self, mask):
        """Reset the sub-environments of ``mask`` with fresh seeds from the Generator; the observations of all."""
        seeds = self.rng.integers(0, SEED_BOUND, size=int(mask.sum()))
        observations, info = self._env.reset(seed=seeds, options={"reset_mask": mask})
        self.seeds[mask] = seeds
        self.steps[mask] = 0
        self.returns[mask] = 0.0
        self.lives[mask] = info["lives"][mask]
        self.observations = observations
        return observations

    def state_dict(self):
        """``episode_seeds`` (N,), ``episode_steps`` (N,) and ``episode_actions`` (N, L) uint8, L the
        longest current episode: row i's first ``episode_steps[i]`` entries are sub-environment i's
        actions since its episode began, the rest 0. The Generator's state is the caller's to save."""
        if self.observations is None:
            raise ValueError("state_dict() before reset(): nothing to save")
        longest = int(self.steps.max())
        return {"episode_seeds": self.seeds.copy(), "episode_steps": self.steps.copy(),
                "episode_actions": self.actions[:, :longest].copy()}

    def load_state_dict(self, state, rng):
        """Rebuild the state :meth:`state_dict` saved, on an object built with the same arguments,
        by replaying the current episodes (module docstring); ``rng``, in the state the saved
        object's Generator was in, draws the reset seeds from here on. A field that does not fit,
        or a replay that does not follow the saved episodes, raises a one-line ValueError naming it."""
        seeds, steps, actions = _checked(state, self.num_envs, self.max_episode_steps, self.num_actions)
        longest = actions.shape[1]
        start = longest - steps  # the replay step at which each sub-environment's episode begins
        everything = np.ones(self.num_envs, bool)
        observations, info = self._env.reset(seed=seeds, options={"reset_mask": everything})
        returns = np.zeros(self.num_envs)
        envs = np.arange(self.num_envs)
        for t in range(longest + 1):
            beginning = start == t
            if t > 0 and beginning.any():
                observations, info = self._env.reset(seed=seeds[beginning], options={"reset_mask": beginning})
            if t == longest:
                break
            playing = t >= start
            step_actions = np.where(playing, actions[envs, np.maximum(t - start, 0)], NOOP)
            observations, game_rewards, terminated, truncated, info = self._env.step(step_actions)
            returns += np.where(playing, game_rewards, 0)
            ended = playing & (terminated | truncated)
            if ended.any():
                i = int(np.argmax(ended))
                raise ValueError(f"environment replay diverged: the episode of sub-environment {i} ended after "
                                 f"{t + 1 - start[i]} of its {steps[i]} saved steps (another game, ale-py version "
                                 f"or environment setting?)")
        self.seeds[:], self.steps[:], self.returns[:] = seeds, steps, returns
        self.actions[:] = 0
        self.actions[:, :longest] = actions
        self.lives[:] = info["lives"]
        self.observations = observations
        self.rng = rng

    def close(self):
        self._env.close()


def _checked(state, num_envs, max_steps, num_actions):
    """``(seeds, steps, actions)`` of an environment state dict, as int64 arrays, each checked."""
    arrays = {}
    for name in ("episode_seeds", "episode_steps", "episode_actions"):
        if name not in state:
            raise ValueError(f"environment {name} is missing")
        array = np.asarray(state[name])
        if array.dtype.kind not in "iu":
            raise ValueError(f"environment {name} must hold integers, got {array.dtype}")
        arrays[name] = array.astype(np.int64)
    seeds, steps, actions = arrays["episode_seeds"], arrays["episode_steps"], arrays["episode_actions"]
    if seeds.shape != (num_envs,) or seeds.min() < 0 or seeds.max() >= SEED_BOUND:
        raise ValueError(f"environment episode_seeds must be {num_envs} seeds in [0, {SEED_BOUND}), "
                         f"got shape {seeds.shape}")
    if steps.shape != (num_envs,) or steps.min() < 0 or steps.max() >= max_steps:
        raise ValueError(f"environment episode_steps must be {num_envs} step counts in [0, {max_steps}), "
                         f"got shape {steps.shape}")
    if actions.shape != (num_envs, steps.max()) or (actions.size and (actions.min() < 0 or actions.max() >= num_actions)):
        raise ValueError(f"environment episode_actions must be ({num_envs}, {steps.max()}) actions in "
                         f"[0, {num_actions}), got shape {actions.shape}")
    return seeds, steps, actions
