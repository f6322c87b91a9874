"""One Double DQN run on an Atari game: act, replay, learn, evaluate and probe, on a schedule.

The loop of DQN Zoo's Double DQN (``dqn_zoo/double_q``; Lyle et al. 2023, A.3), with N
environments stepped together (one *vector step* = N agent steps = N x frameskip frames):

    reset the N environments
    until `frames` frames:
        act: epsilon-greedy on Q(theta, s) for each environment, epsilon = schedule(frame)
        step the environments; store each one's newest frame, action, reward and discount flag
        once learning_starts frames are gathered:
            every update_period frames: sample a minibatch, one learner step (refplastic.rl.learner)
            every target_update_period frames: theta' <- theta
        every log_every frames: a training-log row
        at frame 0, every eval_every frames and at the end: evaluation episodes, epsilon = eval_epsilon
        when learning starts, every probe_every frames after and at the end: a probe point
            (refplastic.plasticity.probes on replay inputs, and refplastic.stats' default
            statistics there); the plasticity loss is the last one's mean final probe loss minus
            the first one's

Randomness: a generator per stream, ``default_rng([seed, stream])``: the initialisation, the
environments (their reset seeds), acting, and replay sampling; evaluation k draws from
``[seed, 9, k]``, probe point k from ``[seed, 7, k]`` and its statistics from ``[seed, 8, k]``, so
that evaluating and probing never disturb training and a resumed run redoes an interrupted one
exactly. A checkpoint holds every stream's state (refplastic.rl.checkpoint).

A run whose loss or parameters stop being finite stops there, recorded as diverged at that frame.
"""

import json
import time

import numpy as np

from ..nn import Network, make_loss, make_optimizer
from ..nn.losses import ClippedGradientL2Loss
from ..plasticity.heads import ScalarHead
from ..plasticity.probes import probe_targets, run_probe
from ..plasticity.results import append
from ..stats import DEFAULT_STATISTICS, compute_statistics
from ..stopping import Stopped
from .atari import AtariEnvironments
from .frame_replay import FrameReplay
from .learner import learner_step, update_target
from .nature_cnn import nature_cnn, scaled_frames
from .results import final_evaluation, new_record
from .scores import human_normalised

STREAMS = {"init": 1, "environment": 2, "acting": 3, "replay": 4}
PROBE_STREAM, STATISTICS_STREAM, EVALUATION_STREAM = 7, 8, 9


def epsilon_greedy(values, epsilon, rng):
    """Actions (N,) for the values (N, A) of N states: for each, one uniform draw decides, and a
    random action is taken where it is below ``epsilon`` (else the first argmax)."""
    explore = rng.random(len(values)) < epsilon
    random_actions = rng.integers(0, values.shape[1], size=len(values))
    return np.where(explore, random_actions, np.argmax(values, axis=1))


def probe_frames(config):
    """The frames of the probe points: when learning starts (the first needs replay inputs), then
    every probe_every frames, and at the end."""
    points = list(range(min(config.learning_starts, config.frames), config.frames + 1, config.probe_every))
    return points if points[-1] == config.frames else points + [config.frames]


def evaluation_frames(config):
    """The frames of the evaluations: 0 (the untrained agent), every eval_every frames, and the end."""
    points = list(range(0, config.frames + 1, config.eval_every))
    return points if points[-1] == config.frames else points + [config.frames]


def make_environments(config, num_envs, rng):
    """The :class:`AtariEnvironments` of ``config``'s game and settings, seeded from ``rng``."""
    return AtariEnvironments(config.game, num_envs, rng, num_threads=config.env_threads,
                             frameskip=config.frameskip, sticky_actions=config.sticky_actions,
                             noop_max=config.noop_max, fire_reset=config.fire_reset,
                             max_episode_frames=config.max_episode_frames)


class DQNRun:
    """The state of one run of ``config`` (a :class:`refplastic.rl.config.DQNConfig`)."""

    def __init__(self, config):
        self.config = c = config
        self.dtype = np.dtype(c.dtype).type
        self.rngs = {name: np.random.default_rng([c.seed, stream]) for name, stream in STREAMS.items()}
        self.envs = make_environments(c, c.num_envs, self.rngs["environment"])
        self.num_actions = self.envs.num_actions
        self.head = ScalarHead(self.num_actions)
        self.architecture = nature_cnn(self.num_actions, layernorm=c.layernorm)
        self.net = Network.from_architecture(self.architecture, self.rngs["init"], self.dtype)
        self.target = self.net.copy()
        self.optimizer = self.make_optimizer(self.net.flat)
        self.loss = (ClippedGradientL2Loss(bound=c.grad_error_bound) if c.td_loss == "clipped_gradient_l2"
                     else make_loss(c.td_loss))
        self.replay = FrameReplay(c.replay_capacity, c.num_envs)
        self.observation = self.envs.reset()
        self.frame = 0
        self.updates = 0
        self.learning_resumes_at = 0  # a resumed run whose checkpoint had no replay buffer refills it first
        self.evaluations_done = self.probes_done = 0
        self.status, self.diverged_at = "running", -1
        self.seconds = {"train": 0.0, "evaluation": 0.0, "probes": 0.0}
        self.record = new_record()
        self.statistic_names = ()
        self.window = _LogWindow()

    @property
    def vector_step_frames(self):
        return self.config.num_envs * self.config.frameskip

    @property
    def finished(self):
        return self.status != "running"

    def make_optimizer(self, flat):
        """The run's optimiser over ``flat`` (the probes build theirs here too)."""
        c = self.config
        if c.optimizer == "adam":
            return make_optimizer("adam", flat, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)
        return make_optimizer("rmsprop", flat, lr=c.lr, alpha=c.rmsprop_decay, eps=c.eps, centered=c.centered,
                              eps_in_sqrt=c.eps_in_sqrt)

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, on_frames=None, on_row=None, checkpoint=None, should_stop=None):
        """Run to ``frames`` frames (or divergence). ``on_frames(n, row)`` after each vector step
        with the frames done and the last training-log row; ``on_row(kind, row)`` for each
        evaluation and probe summary; ``checkpoint(run)`` saves the run every checkpoint_every
        frames, after each evaluation and probe point, and when stopped; ``should_stop()``
        returns a signal number to stop at once (a :class:`Stopped` after the checkpoint)."""
        c = self.config

        def stop_if_asked(*_):
            signum = should_stop() if should_stop is not None else None
            if signum:  # an unfinished evaluation or probe point is redone on resume
                _save(checkpoint, self)
                raise Stopped(signum, self.frame, saved=checkpoint is not None, unit="frame")

        probes, evaluations = probe_frames(c), evaluation_frames(c)
        while not self.finished:
            if self.probes_done < len(probes) and probes[self.probes_done] == self.frame:
                self._timed("probes", self.probe_point, self.probes_done, stop_if_asked)
                self.probes_done += 1
                _notify(on_row, "probe", self.record["probes"])
                _save(checkpoint, self)
            if self.evaluations_done < len(evaluations) and evaluations[self.evaluations_done] == self.frame:
                if c.eval_episodes:
                    self._timed("evaluation", self.evaluate, self.evaluations_done, stop_if_asked)
                self.evaluations_done += 1
                if c.eval_episodes:
                    _notify(on_row, "evaluation", self.record["evaluation"])
                _save(checkpoint, self)
            if self.frame >= c.frames:
                self.status = "complete"
                break
            self._timed("train", self.vector_step)
            if self.frame % c.log_every == 0 or self.frame == c.frames or self.finished:
                append(self.record, "train", **self.window.flush(self.frame, c.epsilon(self.frame),
                                                                 self.seconds["train"]))
            if on_frames is not None:
                on_frames(self.vector_step_frames, self.last_row())
            if not self.finished and self.frame % c.checkpoint_every == 0:
                _save(checkpoint, self)
            stop_if_asked()
        _save(checkpoint, self)

    def _timed(self, kind, method, *args):
        started = time.perf_counter()
        with np.errstate(all="ignore"):  # a diverging run is recorded as data, not warned about
            method(*args)
        self.seconds[kind] += time.perf_counter() - started

    def vector_step(self):
        """One action in each environment, the transitions stored, the updates and target copies
        due at the new frame count, and the training log."""
        c = self.config
        actions = epsilon_greedy(self.q_values(self.observation), c.epsilon(self.frame), self.rngs["acting"])
        first = self.envs.first.copy()
        step = self.envs.step(actions)
        rewards = np.clip(step.rewards, -c.reward_clip, c.reward_clip) if c.reward_clip > 0 else step.rewards
        no_bootstrap = step.terminated | (step.life_lost & c.life_loss_ends_bootstrap)
        self.replay.add(self.observation[:, -1], actions, rewards, np.where(no_bootstrap, 0.0, 1.0), first)
        self.replay.add_terminal(step.ended, step.final_frames)
        self.observation = step.observations
        before, self.frame = self.frame, self.frame + self.vector_step_frames
        for _, ret, length in zip(*step.ended_episodes()):
            append(self.record, "episodes", frame=self.frame, **{"return": float(ret)}, length=int(length))
            self.window.episode(ret)
        starts = max(c.learning_starts, self.learning_resumes_at)
        if self.frame >= starts:
            updates = self.frame // c.update_period - max(before, starts - 1) // c.update_period
            for _ in range(updates):
                loss, q_mean = self.learn(self.replay.sample(c.batch_size, self.rngs["replay"]))
                self.updates += 1
                self.window.update(loss, q_mean)
                if not (np.isfinite(loss) and np.all(np.isfinite(self.net.flat))):
                    self.status, self.diverged_at = "diverged", self.frame
                    return
            if self.frame // c.target_update_period > before // c.target_update_period:
                self.copy_target()

    # The three places where the loop meets the network (benchmarks/bench_dqn.py gives them torch's).
    def q_values(self, observation):
        """The online network's Q-values of uint8 ``observation`` stacks, (N, actions)."""
        return self.net.forward(scaled_frames(observation, self.dtype))

    def learn(self, batch):
        """One Double DQN learner step on a replayed ``batch``: ``(mean TD loss, mean Q)``."""
        c = self.config
        return learner_step(self.net, self.target, self.optimizer, self.loss, batch, c.discount, c.double_q)

    def copy_target(self):
        update_target(self.net, self.target)

    def last_row(self):
        """The training log's last row (or an empty dict)."""
        train = self.record["train"]
        return {k: v[-1] for k, v in train.items()} if train else {}

    # ---- evaluation and probes -------------------------------------------------------------------
    def evaluate(self, k, stop_if_asked=None):
        """Evaluation ``k``: ``eval_episodes`` whole episodes, one in each of as many fresh
        environments, acting epsilon-greedily with eval_epsilon; their returns and lengths."""
        c = self.config
        rng = np.random.default_rng([c.seed, EVALUATION_STREAM, k])
        envs = make_environments(c, c.eval_episodes, rng)
        observation = envs.reset()
        returns, lengths = np.full(c.eval_episodes, np.nan), np.zeros(c.eval_episodes, np.int64)
        while np.isnan(returns).any():
            values = self.net.forward(scaled_frames(observation, self.dtype))
            step = envs.step(epsilon_greedy(values, c.eval_epsilon, rng))
            observation = step.observations
            if stop_if_asked is not None:
                stop_if_asked()
            for env, ret, length in zip(*step.ended_episodes()):
                if np.isnan(returns[env]):
                    returns[env], lengths[env] = ret, length
        envs.close()
        append(self.record, "evaluation", frame=self.frame, return_mean=float(returns.mean()), returns=returns,
               lengths=lengths)

    def probe_point(self, k, stop_if_asked=None):
        """Probe point ``k``: copies of the network fit ``probe_targets`` random targets on replay
        observations (refplastic.plasticity.probes), and the default statistics there."""
        c = self.config
        rng = np.random.default_rng([c.seed, PROBE_STREAM, k])
        x = scaled_frames(self.replay.sample(c.probe_examples, rng)["observation"], self.dtype)
        offset = float(np.mean(self.net.forward(x).astype(np.float64)))
        targets = probe_targets(self.architecture, self.head, x, offset, c.probe_targets, rng)
        result = run_probe(self.net, self.head, x, targets, self.make_optimizer, c.probe_steps, c.probe_batch_size,
                           c.probe_log_every, rng, on_step=stop_if_asked)
        append(self.record, "probes", frame=self.frame, final_loss=result.final_loss,
               target_variance=result.target_variance, offset=offset, curve=result.curve)
        if c.statistics:
            rng = np.random.default_rng([c.seed, STATISTICS_STREAM, k])
            z = self.net.forward(x)
            t = z + rng.standard_normal(z.shape).astype(z.dtype)  # the probe loss (f(X) - stopgrad f(X) + eps)^2
            values = compute_statistics(self.net, x, t, make_loss("mse"), DEFAULT_STATISTICS,
                                        seed=int(rng.integers(2**31)))
            if not self.record["statistics"]:
                self.statistic_names = tuple(values)
            append(self.record, "statistics", values=np.array([values[n] for n in self.statistic_names]))

    # ---- the results ---------------------------------------------------------------------------
    def summary(self):
        """The root attributes of the results file besides the config."""
        score = final_evaluation(self.record)
        return {"status": self.status, "frames": self.frame, "updates": self.updates,
                "diverged_at_frame": self.diverged_at, "game": self.config.game, "num_actions": self.num_actions,
                "architecture": json.dumps(self.architecture), "num_parameters": self.net.num_parameters,
                "seconds": json.dumps(self.seconds), "final_evaluation_return": score,
                "final_human_normalised": human_normalised(score, self.config.game)}


def _notify(on_row, kind, group):
    """``on_row(kind, the group's last row)``."""
    if on_row is not None:
        on_row(kind, {k: v[-1] for k, v in group.items()})


def _save(checkpoint, run):
    if checkpoint is not None:
        checkpoint(run)


class _LogWindow:
    """Sums over the frames since the last training-log row."""

    def __init__(self):
        self.reset()
        self.frame, self.seconds = 0, 0.0  # at the last row

    def reset(self):
        self.updates, self.loss, self.q = 0, 0.0, 0.0
        self.episodes, self.returns = 0, 0.0

    def update(self, loss, q_mean):
        self.updates += 1
        self.loss += float(loss)
        self.q += float(q_mean)

    def episode(self, ret):
        self.episodes += 1
        self.returns += float(ret)

    def state_dict(self):
        """The sums (numbers of the run; the last row's wall time is kept with the run's seconds)."""
        return {"updates": self.updates, "loss": self.loss, "q": self.q, "episodes": self.episodes,
                "returns": self.returns, "frame": self.frame}

    def load_state_dict(self, state):
        self.updates, self.episodes = int(state["updates"]), int(state["episodes"])
        self.loss, self.q, self.returns = float(state["loss"]), float(state["q"]), float(state["returns"])
        self.frame = int(state["frame"])

    def flush(self, frame, epsilon, seconds):
        """The row at ``frame`` (means over the window; NaN where it has no update or episode);
        ``seconds`` of training so far give the window's frames per second (a measurement: the
        one column a resumed run does not reproduce)."""
        n, e = self.updates, self.episodes
        elapsed = seconds - self.seconds
        row = {"frame": frame, "td_loss": self.loss / n if n else float("nan"),
               "q_mean": self.q / n if n else float("nan"), "epsilon": epsilon, "episodes": e,
               "return_mean": self.returns / e if e else float("nan"),
               "frames_per_second": (frame - self.frame) / elapsed if elapsed > 0 else float("nan")}
        self.reset()
        self.frame, self.seconds = frame, seconds
        return row
