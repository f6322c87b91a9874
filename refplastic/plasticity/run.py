"""One plasticity run: train an agent, probe its plasticity on a schedule, record everything.

The loop of Lyle et al. (2023, sec. 5.1 and 6.2; A.2), one optimiser step per environment step:

    gather learning_starts transitions with the initial network (epsilon-greedy)
    probe point 0
    repeat train_steps times:
        act epsilon-greedily, store (s, a, r, s') in the replay buffer
        sample a minibatch; TD targets from the target network; one optimiser step on the TD loss
        per-step interventions (l2 penalty, Brownian twin, continual backprop, ReDo every redo_period)
        every target_update_period steps: copy theta to theta', then the target-update
        interventions (reset the last layer, shrink and perturb, reset the optimiser)
        every probe_every steps and at the end: a probe point
    (the memorise task instead fits random labels of a fixed image set, re-drawn every
    memorise_period steps, which is then its "target update")

A probe point (:mod:`refplastic.plasticity.probes`) fits copies of the network to random targets
on replay inputs, computes the statistics of :mod:`refplastic.stats` there and, on request, the
curvature of the paper's probe loss ``(f(X) - stopgrad f(X) + eps)^2``, eps ~ N(0, 1) (sec. 4.2):
an MSE with targets ``f(X) + eps``, whose Hessian is that of the loss. Probing never changes
the run: it works on copies, and the buffers of the network (spectral norm's u and v) are kept.

Randomness: a generator per stream, ``default_rng([seed, stream])``, for the initialisation,
the labels, the environment, acting, replay sampling and the interventions; probe point k draws
from ``default_rng([seed, 7, k])`` (inputs, targets, minibatches) and ``[seed, 8, k]`` (the
statistics' eps, Lanczos, k-means), so that probing does not disturb the training streams and a
resumed run redoes an interrupted probe exactly. A checkpoint holds every stream's state.

A run whose loss or parameters stop being finite stops there, recorded as diverged at that step.
"""

import json
import time

import numpy as np

from ..curvature import CurvatureBatch, lanczos_extremes, preserved_buffers, slq_quadrature
from ..data.images import to_float
from ..nn import Network, make_loss, make_optimizer
from ..stats import DEFAULT_STATISTICS, compute_statistics
from ..stats.gradients import cosine_from_gram, kmeans_order, per_example_gradient_gram
from ..stopping import Stopped
from . import interventions
from .agent import epsilon_greedy, td_targets
from .architectures import architecture
from .config import probe_points
from .continual_backprop import ContinualBackprop
from .heads import ScalarHead, TwoHotHead
from .hidden_units import activations_from_caches
from .mdp import NUM_ACTIONS, ClassificationMDP
from .probes import probe_targets, run_probe
from .replay import Replay
from .results import append, empty_record, probe_row
from .twohot import value_support

STREAMS = {"init": 1, "labels": 2, "environment": 3, "acting": 4, "replay": 5, "interventions": 6}
PROBE_STREAM, STATISTICS_STREAM = 7, 8
MEMORISE_ACCURACY_EXAMPLES = 4096  # A.1: "we log the accuracy on a sample of 4096 states"
KMEANS_CLUSTERS = 10  # A.1: k = 10, the number of latent states


class Run:
    """The state of one run, built from ``config`` and the :class:`ImageDataset` ``images``."""

    def __init__(self, config, images):
        self.config = config
        self.dtype = np.dtype(config.dtype).type
        count = len(images.x_train) if config.data_examples == 0 else min(config.data_examples, len(images.x_train))
        self.images, self.labels = images.x_train[:count], images.y_train[:count]
        self.source = images.source
        self.rngs = {name: np.random.default_rng([config.seed, stream]) for name, stream in STREAMS.items()}
        memorise = config.task == "memorise"
        if "twohot" in config.intervention:
            self.head = TwoHotHead(NUM_ACTIONS, value_support(config.discount, config.twohot_bins))
        else:
            self.head = ScalarHead(images.num_classes if memorise else NUM_ACTIONS)
        self.architecture = architecture(config, self.images.shape[1:], self.head.outputs)
        self.net = Network.from_architecture(self.architecture, self.rngs["init"], self.dtype)
        self.target = self.net.copy()
        self.optimizer = self.make_optimizer(self.net.flat)
        self.cbp = (ContinualBackprop(self.net, config.cbp_replacement_rate, config.cbp_maturity, config.cbp_decay)
                    if "continual_backprop" in config.intervention else None)
        if memorise:
            self.memorised = np.arange(min(config.memorise_examples, count))
            self.memorise_labels = self._random_labels()
        else:
            self.env = ClassificationMDP(config.task, self.labels, self.rngs["labels"], self.rngs["environment"])
            self.replay = Replay(config.replay_capacity)
        self.step = 0
        self.probes_done = 0
        self.status, self.diverged_at = "running", -1
        self.seconds = {"train": 0.0, "probes": 0.0}
        self.record = empty_record()
        self.statistic_names = ()
        self.log_window = _LogWindow()

    # ---- pieces --------------------------------------------------------------------------------
    def make_optimizer(self, flat):
        """The run's optimiser over ``flat`` (the probes build theirs here too: "identical", sec. 3.1)."""
        c = self.config
        if c.optimizer == "adam":
            return make_optimizer("adam", flat, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps, eps_root=c.eps_root)
        if c.optimizer == "rmsprop":
            return make_optimizer("rmsprop", flat, lr=c.lr, alpha=c.beta2, eps=c.eps)
        return make_optimizer("sgd", flat, lr=c.lr, momentum=c.beta1)

    def inputs(self, index):
        """The images of ``index`` as floats in [0, 1] of the run's dtype."""
        return to_float(self.images[index], self.dtype)

    def _random_labels(self):
        return self.rngs["labels"].integers(0, self.head.num_actions, size=len(self.memorised))

    def gradient_step(self, grad, params):
        """The gradient changes of the interventions: ``grad += weight_decay theta`` (sec. 6.2)."""
        if "weight_decay" in self.config.intervention:
            interventions.l2_penalty(grad, params, self.config.weight_decay)

    @property
    def finished(self):
        return self.status != "running"

    # ---- the loop ------------------------------------------------------------------------------
    def run(self, on_step=None, on_probe=None, checkpoint=None, should_stop=None):
        """Train and probe until ``train_steps`` (or divergence). ``on_step(n)`` is called as steps
        are done (probe steps included, counted apart: ``on_step(n, probe=True)``), ``on_probe(row)``
        after each probe point with its summary; ``checkpoint(run)`` saves the run (every
        checkpoint_every steps, after each probe point and when stopped); ``should_stop()``
        returns a signal number to stop at once (a :class:`Stopped` after the checkpoint)."""
        points = probe_points(self.config)
        if self.config.task != "memorise" and len(self.replay) == 0:
            self._gather()

        def stop_if_asked():
            signum = should_stop() if should_stop is not None else None
            if signum:
                if checkpoint is not None:
                    checkpoint(self)
                raise Stopped(signum, self.step, saved=checkpoint is not None)

        def probe_step(done):
            stop_if_asked()
            if on_step is not None:
                on_step(1, probe=True)

        while not self.finished:
            if self.probes_done < len(points) and points[self.probes_done] == self.step:
                started = time.perf_counter()
                self.probe_point(self.probes_done, probe_step)
                self.seconds["probes"] += time.perf_counter() - started
                self.probes_done += 1
                if on_probe is not None:
                    on_probe(probe_row(self.record, self.probes_done - 1))
                if checkpoint is not None:
                    checkpoint(self)
            if self.step == self.config.train_steps:
                self.status = "complete"
                break
            started = time.perf_counter()
            self.train_step()
            self.seconds["train"] += time.perf_counter() - started
            if on_step is not None:
                on_step(1)
            if self.finished:
                break
            if checkpoint is not None and self.step % self.config.checkpoint_every == 0:
                checkpoint(self)
            stop_if_asked()
        if checkpoint is not None:
            checkpoint(self)

    def _gather(self):
        """The learning_starts transitions before the first step, acting with the initial network."""
        for _ in range(self.config.learning_starts):
            self._act()

    def _act(self):
        env, obs = self.env, self.env.observation
        with preserved_buffers(self.net):  # acting is not training: spectral norm's u, v stay
            values = self.head.values(self.net.forward(self.inputs([obs])))[0]
        action = epsilon_greedy(values, self.config.epsilon, self.rngs["acting"])
        reward, next_obs = env.step(action)
        self.replay.add(obs, action, reward, next_obs)
        return reward

    def train_step(self):
        """One environment step and one optimiser step, then the interventions; logs and
        divergence."""
        c, memorise = self.config, self.config.task == "memorise"
        if memorise:  # "actions" are the labels: the reward column holds the batch accuracy
            index = self.rngs["replay"].integers(0, len(self.memorised), size=c.batch_size)
            x, loss = self.inputs(self.memorised[index]), make_loss("cross_entropy")
            targets = actions = self.memorise_labels[index]
        else:
            reward = self._act()
            batch = self.replay.sample(c.batch_size, self.rngs["replay"])
            x, x_next, actions = self.inputs(batch["observation"]), self.inputs(batch["next_observation"]), batch["action"]
            next_target = self.head.values(self.target.forward(x_next))
            next_online = self.head.values(self.net.forward(x_next)) if c.double_q else None
            targets = td_targets(batch["reward"], next_target, c.discount, next_online)
            loss = self.head.td_loss(c.td_loss, actions)
        with np.errstate(all="ignore"):  # a diverging run is recorded below, not warned about
            z, caches = self.net.forward_cached(x)
            value, loss_cache = loss.forward(z, targets)
            self.net.backward(caches, loss.backward(loss_cache))
            self.gradient_step(self.net.grad, self.net.flat)
            self._optimizer_step()
            replaced = self._per_step_interventions(x, caches)
        self.step += 1
        if not (np.isfinite(value) and np.all(np.isfinite(self.net.flat))):
            self.status, self.diverged_at = "diverged", self.step
            return
        if self.step % (c.memorise_period if memorise else c.target_update_period) == 0:
            self._target_update()
        values = self.head.values(z)
        if memorise:
            reward = float(np.mean(np.argmax(z, axis=1) == targets))
        self.log_window.add(value, reward, float(np.mean(values[np.arange(len(z)), actions])), replaced)
        if self.step % c.log_every == 0 or self.step == c.train_steps:
            columns = self.log_window.flush(self.step)
            if memorise:
                columns["accuracy"] = self._accuracy()
            append(self.record, "train", **columns)

    def _optimizer_step(self):
        if "brownian" not in self.config.intervention:
            self.optimizer.step(self.net.grad)
            return
        before = self.net.flat.copy()
        self.optimizer.step(self.net.grad)
        norm = float(np.linalg.norm((self.net.flat - before).astype(np.float64)))
        self.net.flat[...] = before
        interventions.brownian_step(self.net.flat, norm, self.rngs["interventions"])

    def _per_step_interventions(self, x, caches):
        """Continual backprop every step, ReDo every redo_period steps; the number of units replaced."""
        c, replaced = self.config, 0
        if self.cbp is not None:
            replaced += sum(self.cbp.step(self.net, self.optimizer, activations_from_caches(self.net, caches),
                                          self.rngs["interventions"]))
        if "redo" in c.intervention and (self.step + 1) % c.redo_period == 0:
            replaced += sum(interventions.redo(self.net, self.optimizer, x, c.redo_tau, self.rngs["interventions"]))
        return replaced

    def _target_update(self):
        """theta' <- theta (or new labels for the memorise task), then the target-update interventions."""
        c, rng = self.config, self.rngs["interventions"]
        if c.task == "memorise":
            self.memorise_labels = self._random_labels()
        else:
            self.target.load_state_dict(self.net.state_dict())
        if "reset_last_layer" in c.intervention:
            interventions.reset_last_layer(self.net, self.optimizer, rng)
        if "shrink_and_perturb" in c.intervention:
            interventions.shrink_and_perturb(self.net, rng, c.shrink, c.perturb)
        if "reset_optimizer" in c.intervention:
            interventions.reset_optimizer_state(self.optimizer)

    def _accuracy(self):
        """Accuracy on the current labels of (up to) 4096 memorised images, the first ones (A.1)."""
        index = np.arange(min(MEMORISE_ACCURACY_EXAMPLES, len(self.memorised)))
        with preserved_buffers(self.net):
            z = self.net.forward(self.inputs(self.memorised[index]))
        return float(np.mean(np.argmax(z, axis=1) == self.memorise_labels[index]))

    # ---- probe points --------------------------------------------------------------------------
    def probe_inputs(self, rng):
        """``probe_examples`` distinct observations of the replay buffer (memorise: of the image set)."""
        pool = self.memorised if self.config.task == "memorise" else np.unique(self.replay.observations())
        index = rng.choice(pool, size=min(self.config.probe_examples, len(pool)), replace=False)
        return self.inputs(np.sort(index))

    def probe_point(self, k, on_step=None):
        """Probe point ``k`` at the current step: the probe, the statistics and the curvature, appended
        to the record. ``on_step(n)`` is called after each probe step."""
        c = self.config
        rng = np.random.default_rng([c.seed, PROBE_STREAM, k])
        x = self.probe_inputs(rng)
        with preserved_buffers(self.net):
            offset = float(np.mean(self.head.values(self.net.forward(x)).astype(np.float64)))
            targets = probe_targets(self.architecture, self.head, x, offset, c.probe_targets, rng)
        state = self.optimizer.state_dict() if c.probe_copies_optimizer_state else None
        result = run_probe(self.net, self.head, x, targets, self.make_optimizer, c.probe_steps, c.probe_batch_size,
                           c.probe_log_every, rng, self.gradient_step, state, on_step)
        append(self.record, "probes", step=self.step, final_loss=result.final_loss,
               target_variance=result.target_variance, offset=offset, curve=result.curve)
        self._probe_statistics(k, x)

    def _probe_statistics(self, k, x):
        """The statistics and curvature of the probe loss on the probe inputs ``x``."""
        c = self.config
        rng = np.random.default_rng([c.seed, STATISTICS_STREAM, k])
        with preserved_buffers(self.net):
            z = self.net.forward(x)
        t = z + rng.standard_normal(z.shape).astype(z.dtype)  # (f(X) - stopgrad f(X) + eps)^2 = (f(X) - t)^2
        mse = make_loss("mse")
        if c.statistics:
            values = compute_statistics(self.net, x, t, mse, DEFAULT_STATISTICS, seed=int(rng.integers(2**31)))
            if not self.record["statistics"]:
                self.statistic_names = tuple(values)
            append(self.record, "statistics", values=np.array([values[n] for n in self.statistic_names]))
        curvature = {}
        if c.hessian_top_k or c.hessian_density:
            with preserved_buffers(self.net):
                batch = CurvatureBatch(self.net, mse, x, t)
                if c.hessian_top_k:
                    top = lanczos_extremes(batch.hvp, self.net.num_parameters, c.hessian_top_k, rng,
                                           dtype=self.net.dtype)
                    curvature.update(hessian_top=_padded(top.top, c.hessian_top_k),
                                     hessian_top_residuals=_padded(top.top_residuals, c.hessian_top_k))
                if c.hessian_density:
                    quadrature = slq_quadrature(batch.hvp, self.net.num_parameters, c.slq_probes, c.slq_steps, rng,
                                                self.net.dtype)
                    curvature.update(slq_nodes=quadrature.nodes, slq_weights=quadrature.weights)
        if c.gradient_cosine_examples:
            n = c.gradient_cosine_examples
            with preserved_buffers(self.net):
                cosine = cosine_from_gram(per_example_gradient_gram(self.net, mse, x[:n], t[:n]))
            order, _ = kmeans_order(cosine, KMEANS_CLUSTERS, rng)
            curvature.update(gradient_cosine=cosine[np.ix_(order, order)], gradient_order=order)
        if curvature:
            append(self.record, "curvature", **curvature)

    # ---- the results ---------------------------------------------------------------------------
    def summary(self):
        """The root attributes of the results file besides the config and the plasticity loss."""
        return {"status": self.status, "steps": self.step, "diverged_at_step": self.diverged_at,
                "train_seconds": self.seconds["train"], "probe_seconds": self.seconds["probes"],
                "architecture": json.dumps(self.architecture), "num_parameters": self.net.num_parameters,
                "data_source": self.source, "input_shape": np.array(self.images.shape[1:])}


class _LogWindow:
    """Sums over the steps since the last training-log row."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.count, self.loss, self.reward, self.value, self.replaced = 0, 0.0, 0.0, 0.0, 0

    def add(self, loss, reward, value, replaced):
        self.count += 1
        self.loss += float(loss)
        self.reward += float(reward)
        self.value += value
        self.replaced += replaced

    def state_dict(self):
        return {"count": self.count, "loss": self.loss, "reward": self.reward, "value": self.value,
                "replaced": self.replaced}

    def load_state_dict(self, state):
        self.count, self.replaced = int(state["count"]), int(state["replaced"])
        self.loss, self.reward, self.value = float(state["loss"]), float(state["reward"]), float(state["value"])

    def flush(self, step):
        n = max(self.count, 1)
        row = {"step": step, "td_loss": self.loss / n, "reward": self.reward / n, "value_mean": self.value / n,
               "units_replaced": self.replaced}
        self.reset()
        return row


def _padded(ascending, k):
    """``ascending`` (at most k values, the largest last) as k values, NaN in front of the ones
    Lanczos did not reach (its Krylov space closed first, or the network has fewer than k
    parameters), so that every probe point records as many."""
    return np.concatenate([np.full(k - len(ascending), np.nan, ascending.dtype), ascending])
