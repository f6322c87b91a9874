"""One dataclass holds every setting of a Double DQN run on an Atari game, each beside its source.

Lyle et al. (2023, sec. 6.3 and appendix A.3) take DQN Zoo's Double DQN (Quan & Ostrovski 2020,
``dqn_zoo/double_q/run_atari.py``), add a LayerNorm after every hidden layer, and train for 200M
frames with a replay buffer of 100,000 and epsilon-greedy exploration with epsilon = 0.1. Every
period below is in **environment frames**, as DQN Zoo states them (an agent step is
``frameskip`` = 4 frames); the run converts them to agent steps.

Presets (:data:`PRESETS`):

- ``paper``: DQN Zoo's Double DQN with the paper's two stated changes (replay 100k, epsilon 0.1;
  DQN Zoo has 1M and 0.01) and its LayerNorm switch (``--layernorm``).
- ``cleanrl``: CleanRL's ``dqn_atari.py`` (Huang et al. 2022): DQN (not double), Adam 1e-4, MSE,
  replay 1M, target every 1000 agent steps, fire on reset, 10M agent steps.
- ``laptop``: for Pong on a 2-core machine: Lapan (2018, "Deep Reinforcement Learning
  Hands-On", ch. 6)'s Pong settings (Adam 1e-4, target every 1000 agent steps, epsilon 1 ->
  0.02 over 100k agent steps), with a replay of 100k, DQN Zoo's update ratio (one learner step
  every 4 agent steps) for speed, and a few small probe points.
- ``smoke``: every part of a run (acting, learning, target updates, evaluation, probes,
  statistics, checkpoints) in seconds, for tests.

``--set FIELD=VALUE`` changes any field after the preset; every value is checked in
:meth:`DQNConfig.__post_init__`, a bad one raising :class:`ConfigError` naming the field.
"""

from dataclasses import dataclass

from ..config_fields import ConfigError, ConfigFields, at_least, check_types, finite, overridden, schedule_points

OPTIMIZERS = ("rmsprop", "adam")
TD_LOSSES = ("clipped_gradient_l2", "huber", "mse")
DTYPES = ("float32", "float64")


@dataclass
class DQNConfig(ConfigFields):
    # ---- the experiment ----------------------------------------------------------------------
    seed: int = 0
    game: str = "pong"                   # a name of refplastic.rl.atari.GAMES (the 57 games of Atari-57)
    layernorm: bool = False              # A.3: "layer normalization after each hidden layer of the network"
    frames: int = 200_000_000            # A.3: 200 million frames
    dtype: str = "float32"               # choice: float32 for speed (the reference dtype is float64)
    # ---- the environments (ale-py's AtariVectorEnv; docs/dqn.md) -------------------------------
    num_envs: int = 4                    # choice: sub-environments stepped together in C++ threads
    env_threads: int = 1                 # choice: ALE's threads (one process per core in grids)
    frameskip: int = 4                   # DQN Zoo num_action_repeats = 4, max over the last 2 frames
    sticky_actions: float = 0.0          # DQN Zoo: none (gymnasium's ALE/...-v5 would pass 0.25)
    noop_max: int = 30                   # DQN Zoo: 1-30 no-ops after a reset (Mnih et al. 2015)
    fire_reset: bool = False             # DQN Zoo: no; CleanRL's FireResetEnv: yes
    max_episode_frames: int = 108_000    # DQN Zoo max_frames_per_episode (30 minutes)
    life_loss_ends_bootstrap: bool = True  # DQN Zoo zero_discount_on_life_loss; episodes are whole games
    reward_clip: float = 1.0             # DQN Zoo max_abs_reward (0: rewards unclipped)
    # ---- the agent ---------------------------------------------------------------------------
    double_q: bool = True                # Double DQN (van Hasselt et al. 2016), the paper's base agent
    optimizer: str = "rmsprop"           # DQN Zoo: optax.rmsprop(centered=True)
    lr: float = 2.5e-4                   # DQN Zoo learning_rate
    rmsprop_decay: float = 0.95          # DQN Zoo decay
    centered: bool = True                # DQN Zoo centered RMSprop
    eps_in_sqrt: bool = True             # DQN Zoo (optax): sqrt(s - a^2 + eps); torch's RMSprop: sqrt(s - a^2) + eps
    beta1: float = 0.9                   # Adam (cleanrl, laptop): torch's defaults
    beta2: float = 0.999
    eps: float = 0.01 / 32**2            # DQN Zoo optimizer_epsilon; Adam presets: torch's 1e-8
    td_loss: str = "clipped_gradient_l2"  # DQN Zoo: TD error gradient clipped to +-grad_error_bound, then L2
    grad_error_bound: float = 1 / 32     # DQN Zoo grad_error_bound
    discount: float = 0.99               # DQN Zoo additional_discount
    batch_size: int = 32                 # DQN Zoo batch_size
    replay_capacity: int = 100_000       # A.3: 100,000 transitions (DQN Zoo: 1M)
    learning_starts: int = 20_000        # DQN Zoo: min_replay_capacity_fraction 0.05 of the capacity, in frames
    update_period: int = 16              # DQN Zoo learn_period: one update every 16 frames (4 agent steps)
    target_update_period: int = 120_000  # DQN Zoo target_network_update_period
    epsilon_start: float = 1.0           # DQN Zoo exploration_epsilon_begin_value
    epsilon_end: float = 0.1             # A.3: epsilon = 0.1 (DQN Zoo: 0.01)
    epsilon_decay_start: int = 20_000    # DQN Zoo: the decay begins when learning starts
    epsilon_decay_frames: int = 4_000_000  # DQN Zoo: 0.02 of 200M frames
    # ---- evaluation (DQN Zoo: 500k frames after each 1M; here whole episodes) -----------------
    eval_every: int = 1_000_000          # DQN Zoo num_train_frames per iteration
    eval_episodes: int = 8               # choice: whole episodes per evaluation (DQN Zoo: 500k frames)
    eval_epsilon: float = 0.01           # DQN Zoo eval_exploration_epsilon
    # ---- plasticity on a schedule (the probes of refplastic.plasticity on replay inputs) -------
    probe_every: int = 10_000_000        # choice: 21 probe points over 200M frames
    probe_targets: int = 10              # sec. 5.1: 10 random target functions
    probe_steps: int = 2000              # sec. 3.1 and 5.1
    probe_examples: int = 512            # choice, as the protocol's: k = 512 replay observations
    probe_batch_size: int = 32           # choice: the training batch size
    probe_log_every: int = 100           # learning-curve resolution of each probe
    statistics: bool = True              # refplastic.stats' default set on the probe inputs
    # ---- bookkeeping ---------------------------------------------------------------------------
    log_every: int = 10_000              # frames per row of the training log
    checkpoint_every: int = 1_000_000    # frames between checkpoints (and after each evaluation and probe)
    checkpoint_replay: bool = True       # store the replay buffer in checkpoints (needed for bit-identity)

    def __post_init__(self):
        check_types(self)
        from .atari import check_game  # the game list needs ale-py; a config without it is still readable
        try:
            self.game = check_game(self.game)
        except ValueError as e:
            raise ConfigError("game", str(e).removeprefix("game ")) from None
        for name, allowed in (("optimizer", OPTIMIZERS), ("td_loss", TD_LOSSES), ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("frames", "num_envs", "env_threads", "frameskip", "max_episode_frames", "batch_size",
                     "replay_capacity", "update_period", "target_update_period", "epsilon_decay_frames",
                     "eval_every", "probe_every", "probe_targets", "probe_steps", "probe_examples",
                     "probe_batch_size", "probe_log_every", "log_every", "checkpoint_every"):
            at_least(self, name, 1)
        for name in ("seed", "noop_max", "learning_starts", "epsilon_decay_start", "eval_episodes"):
            at_least(self, name, 0)
        for name in ("eps", "reward_clip"):
            finite(self, name, low=0)
        for name in ("lr", "grad_error_bound"):
            finite(self, name, low=0, strict=True)
        for name in ("beta1", "beta2", "rmsprop_decay", "discount"):
            finite(self, name, low=0, high=1, high_open=True)
        for name in ("sticky_actions", "epsilon_start", "epsilon_end", "eval_epsilon"):
            finite(self, name, low=0, high=1)
        vector_step = self.num_envs * self.frameskip  # frames of one step of every environment
        if self.update_period % vector_step and vector_step % self.update_period:
            raise ConfigError("update_period", f"{self.update_period} frames and one vector step of num_envs x "
                                               f"frameskip = {vector_step} frames: one must divide the other")
        for name in ("frames", "target_update_period", "eval_every", "probe_every", "log_every", "checkpoint_every",
                     "learning_starts"):
            if getattr(self, name) % vector_step:
                raise ConfigError(name, f"{getattr(self, name)} frames is not a whole number of vector steps of "
                                        f"num_envs x frameskip = {vector_step} frames")
        schedule_points(self, "frames", ("eval_every", "probe_every", "log_every"))
        if self.frames < 2 * vector_step:  # the first probe point needs one whole transition in the replay
            raise ConfigError("frames", f"{self.frames} frames are one vector step, which stores no whole transition "
                                        f"for the probe; at least {2 * vector_step}")
        if self.max_episode_frames % self.frameskip:
            raise ConfigError("max_episode_frames", f"{self.max_episode_frames} is not a multiple of "
                                                    f"frameskip = {self.frameskip}")
        if self.replay_capacity < self.num_envs * 8:
            raise ConfigError("replay_capacity", f"{self.replay_capacity} leaves fewer than 8 frames for "
                                                 f"each of the {self.num_envs} environments")
        if self.probe_batch_size > self.probe_examples:
            raise ConfigError("probe_batch_size", f"{self.probe_batch_size} is more than the "
                                                  f"{self.probe_examples} probe examples")
        if self.learning_starts // self.frameskip < max(self.batch_size, self.probe_examples):
            raise ConfigError("learning_starts", f"{self.learning_starts} frames give "
                                                 f"{self.learning_starts // self.frameskip} transitions, fewer "
                                                 f"than a batch ({self.batch_size}) or the probe inputs "
                                                 f"({self.probe_examples})")

    def epsilon(self, frame):
        """DQN Zoo's ``LinearSchedule``: epsilon_start until epsilon_decay_start frames, then linearly
        to epsilon_end over epsilon_decay_frames frames, then epsilon_end."""
        fraction = min(max(frame - self.epsilon_decay_start, 0), self.epsilon_decay_frames) / self.epsilon_decay_frames
        return (1 - fraction) * self.epsilon_start + fraction * self.epsilon_end


_ADAM = {"optimizer": "adam", "eps": 1e-8}
PRESETS = {
    "paper": {},
    "cleanrl": {**_ADAM, "double_q": False, "lr": 1e-4, "td_loss": "mse", "frames": 40_000_000, "num_envs": 1,
                "fire_reset": True, "replay_capacity": 1_000_000, "learning_starts": 320_000, "update_period": 16,
                "target_update_period": 4000, "epsilon_end": 0.01, "epsilon_decay_start": 0,
                "epsilon_decay_frames": 4_000_000},
    "laptop": {**_ADAM, "lr": 1e-4, "td_loss": "huber", "frames": 2_000_000, "num_envs": 4, "env_threads": 2,
               "replay_capacity": 100_000, "learning_starts": 40_000, "update_period": 16,
               "target_update_period": 4000, "epsilon_end": 0.02, "epsilon_decay_start": 0,
               "epsilon_decay_frames": 400_000, "eval_every": 200_000, "eval_episodes": 4,
               "probe_every": 500_000, "probe_targets": 5, "probe_steps": 200, "probe_examples": 256,
               "probe_log_every": 20, "log_every": 8000, "checkpoint_every": 100_000},
    "smoke": {**_ADAM, "lr": 1e-4, "td_loss": "huber", "frames": 1_920, "num_envs": 2, "max_episode_frames": 200,
              "replay_capacity": 400, "learning_starts": 640, "update_period": 16, "target_update_period": 320,
              "epsilon_decay_start": 0, "epsilon_decay_frames": 1_280, "eval_every": 960, "eval_episodes": 2,
              "probe_every": 640, "probe_targets": 2, "probe_steps": 3, "probe_examples": 16,
              "probe_batch_size": 8, "probe_log_every": 1, "batch_size": 8, "log_every": 320,
              "checkpoint_every": 640},
}
"""Each preset's changes to ``paper`` (see the module docstring for where each comes from)."""


def preset(name, **fields):
    """The :class:`DQNConfig` of preset ``name`` with ``fields`` set on top."""
    if name not in PRESETS:
        raise ConfigError("preset", f"must be one of {', '.join(PRESETS)}, got {name!r}")
    return DQNConfig(**{**PRESETS[name], **fields})


def with_overrides(config, assignments):
    """``config`` with each ``"FIELD=VALUE"`` of ``assignments`` applied (``--set``)."""
    return overridden(config, assignments, "refplastic dqn --show-config")

