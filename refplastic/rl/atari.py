"""N Atari games stepped together, on ale-py's native vector environment, with resets we control.

``ale_py.vector_env.AtariVectorEnv`` (ale-py 0.12, ROMs inside the wheel) runs N emulators in
C++ threads and preprocesses natively, without OpenCV: ``frameskip`` = 4 emulator frames per
action with the maximum over the last two (``maxpool``), 84 x 84 grayscale, stacks of the last 4
preprocessed frames, 1-``noop_max`` random no-ops after each reset, sticky actions with
``sticky_actions`` probability (DQN Zoo: none; gymnasium's ``ALE/...-v5`` registration: 0.25),
and episodes cut after ``max_episode_frames`` emulator frames (truncation). This class adds:

- **Resets with recorded seeds.** When an episode ends (terminated or truncated) the class
  resets that environment at once, with a seed drawn from the :class:`numpy.random.Generator`
  it was given (``reset(seed=..., options={"reset_mask": ...})``). The vector environment's
  own autoreset (``NextStep``) therefore never fires. A reset with seed s followed by the same
  actions gives the same observations, rewards and lives, whatever the other environments do
  and however many threads step them (tests/test_rl_atari.py); the no-ops and sticky actions
  are drawn from that seed.
- **Whole games and life loss.** ``episodic_life`` is off: an episode is a whole game, its
  return the unclipped game score. A life lost (``info["lives"]`` going down) is reported per
  step so that the learner can end bootstrapping there, as DQN Zoo does
  (``zero_discount_on_life_loss``); rewards are clipped by the learner, not here.
- **Checkpoints without emulator snapshots.** The vector interface cannot save an emulator's
  state, so :meth:`state_dict` keeps, for each environment, the seed of its current episode and
  the actions taken since; :meth:`load_state_dict` rebuilds every emulator by replaying them,
  each environment reset at the step its episode began (dummy actions before). That costs the
  time of stepping through the longest current episode once: at most 27,000 agent steps
  (108,000 frames), seconds in practice.

Right after a reset the stacked observation holds the first preprocessed frame last and zeros
before it, ``[0, 0, 0, f0]``; then ``[0, 0, f0, f1]``, and so on (measured on ale-py 0.12.1; the
replay buffer restacks frames the same way, refplastic.rl.frame_replay).
"""

import difflib
from typing import NamedTuple

import numpy as np

from .scores import SCORES

GAMES = tuple(sorted(SCORES))
"""The 57 games of the Atari-57 benchmark, by their ale-py ROM names (all in ale-py 0.12's wheel)."""

FRAME_SHAPE = (84, 84)
STACK = 4
SEED_RANGE = 2**31  # reset seeds are drawn in [0, 2^31)


def check_game(name):
    """``name`` if it is one of :data:`GAMES`; else a ValueError ("game ...") with close matches."""
    if name in GAMES:
        return name
    close = difflib.get_close_matches(str(name).lower().replace("-", "_").replace(" ", "_"), GAMES, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "refplastic.rl.atari.GAMES lists the 57"
    raise ValueError(f"game {name!r} is not one of the Atari-57 games; {hint}")


class EnvStep(NamedTuple):
    """What one step of the N environments gives (arrays of N).

    ``observations`` (N, 4, 84, 84) uint8: what the next actions are chosen on (a new episode's
    first observation where one ended); ``final_frames`` (N, 84, 84): the newest frame each
    environment reached *before* any reset (an ended episode's last frame); ``rewards`` the
    unclipped rewards; ``terminated``, ``truncated`` (by the frame cap), ``life_lost`` bools;
    ``episode_returns``, ``episode_lengths`` (agent steps) of the episodes that ended here (NaN
    and 0 elsewhere).
    """

    observations: np.ndarray
    final_frames: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    life_lost: np.ndarray
    episode_returns: np.ndarray
    episode_lengths: np.ndarray

    @property
    def ended(self):
        return self.terminated | self.truncated

    def ended_episodes(self):
        """``(environments, returns, lengths)`` of the episodes that ended at this step."""
        index = np.flatnonzero(self.ended)
        return index, self.episode_returns[index], self.episode_lengths[index]


class AtariEnvironments:
    """``num_envs`` environments of ``game``; reset seeds drawn from ``rng``."""

    def __init__(self, game, num_envs, rng, *, num_threads=1, frameskip=4, sticky_actions=0.0, noop_max=30,
                 fire_reset=False, max_episode_frames=108_000):
        from ale_py.vector_env import AtariVectorEnv

        self.game, self.num_envs, self.rng = check_game(game), int(num_envs), rng
        self.env = AtariVectorEnv(self.game, self.num_envs, num_threads=num_threads, frameskip=frameskip,
                                  repeat_action_probability=sticky_actions, noop_max=noop_max,
                                  use_fire_reset=fire_reset, max_num_frames_per_episode=max_episode_frames,
                                  img_height=FRAME_SHAPE[0], img_width=FRAME_SHAPE[1], grayscale=True,
                                  stack_num=STACK, maxpool=True, episodic_life=False, reward_clipping=False,
                                  autoreset_mode="NextStep")
        self.num_actions = int(self.env.single_action_space.n)
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space
        self.seeds = np.zeros(self.num_envs, np.int64)      # each current episode's reset seed
        self.histories = [[] for _ in range(self.num_envs)]  # each current episode's actions
        self.returns = np.zeros(self.num_envs)              # each current episode's score so far
        self.lives = np.zeros(self.num_envs, np.int64)
        self.first = np.ones(self.num_envs, bool)           # observations are an episode's first
        self.observations = None

    def reset(self):
        """Reset every environment with a fresh seed; the observations (N, 4, 84, 84)."""
        seeds = self.rng.integers(0, SEED_RANGE, size=self.num_envs)
        return self._reset(np.ones(self.num_envs, bool), seeds)

    def _reset(self, mask, seeds):
        observations, info = self.env.reset(seed=seeds, options={"reset_mask": mask})
        for i in np.flatnonzero(mask):
            self.histories[i] = []
        self.seeds[mask] = seeds
        self.returns[mask] = 0.0
        self.lives[mask] = info["lives"][mask]
        self.first = mask.copy() if self.observations is not None else np.ones(self.num_envs, bool)
        self.observations = observations if self.observations is None else np.where(
            mask[:, None, None, None], observations, self.observations)
        return self.observations

    def step(self, actions):
        """Take ``actions`` (N,) ints; the :class:`EnvStep` (ended episodes are reset already)."""
        actions = np.asarray(actions, dtype=np.int64)
        observations, rewards, terminated, truncated, info = self.env.step(actions)
        for history, action in zip(self.histories, actions.tolist()):
            history.append(action)
        rewards = np.asarray(rewards, dtype=np.float64)
        self.returns += rewards
        lives = np.asarray(info["lives"], dtype=np.int64)
        life_lost = lives < self.lives
        self.lives = lives
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool) & ~np.asarray(terminated)
        ended = terminated | truncated
        episode_returns = np.where(ended, self.returns, np.nan)
        episode_lengths = np.where(ended, [len(h) for h in self.histories], 0)
        final_frames = observations[:, -1].copy()
        self.observations = observations
        self.first = np.zeros(self.num_envs, bool)
        if ended.any():
            self._reset(ended, self.rng.integers(0, SEED_RANGE, size=int(ended.sum())))
        return EnvStep(self.observations, final_frames, rewards, terminated, truncated, life_lost,
                       episode_returns, episode_lengths)

    def close(self):
        self.env.close()

    # ---- checkpoints ------------------------------------------------------------------------------
    def state_dict(self):
        """Each environment's current episode: its reset ``seeds`` (N,), the ``actions`` since, all
        in one array, and their ``lengths`` (N,)."""
        lengths = np.array([len(h) for h in self.histories], np.int64)
        actions = np.array([a for h in self.histories for a in h], np.int64)
        return {"seeds": self.seeds.copy(), "actions": actions, "lengths": lengths}

    def load_state_dict(self, state, rng):
        """Rebuild the emulators of :meth:`state_dict` by replaying each current episode (see the
        module docstring); ``rng`` is the generator that draws the reset seeds from here on."""
        seeds, lengths = np.asarray(state["seeds"], np.int64), np.asarray(state["lengths"], np.int64)
        actions = np.asarray(state["actions"], np.int64)
        if seeds.shape != (self.num_envs,) or lengths.shape != (self.num_envs,) or lengths.min() < 0 \
                or actions.shape != (int(lengths.sum()),) or ((actions < 0) | (actions >= self.num_actions)).any():
            raise ValueError(f"environments: seeds, lengths and actions do not fit {self.num_envs} environments "
                             f"of {self.num_actions} actions")
        histories = np.split(actions, np.cumsum(lengths)[:-1])
        longest = int(lengths.max())
        starts = longest - lengths  # the replay step at which each environment's episode begins
        self.observations = None
        self._reset(np.ones(self.num_envs, bool), seeds)
        for t in range(longest):
            starting = (starts == t) & (t > 0)
            if starting.any():
                self._reset(starting, seeds[starting])
            step_actions = np.array([h[t - s] if t >= s else 0 for h, s in zip(histories, starts)])
            observations, rewards, _, _, info = self.env.step(step_actions)
            self.returns += np.where(t >= starts, rewards, 0.0)
            self.lives = np.asarray(info["lives"], np.int64)
            self.observations = observations
        just_reset = (starts == longest) & (longest > 0)
        if just_reset.any():
            self._reset(just_reset, seeds[just_reset])
        self.histories = [list(h.tolist()) for h in histories]
        self.first = lengths == 0
        self.rng = rng
