"""Supervised training of a small MLP on built-in data: the learning-curve job.

One dataclass holds every hyperparameter; one loop trains. Randomness comes from three
generators made from the seed (data, initialisation, minibatches), and a checkpoint stores the
minibatch generator's state, so a resumed run gives the same numbers as an uninterrupted one.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .checkpoint import load_checkpoint, restore_rng, save_checkpoint
from .config_fields import ConfigError, checked_fields, config_differences
from .data import GENERATORS
from .h5io import attr_text, exists
from .nn import Linear, Network, make_loss
from .nn.build import build_layer
from .nn.network import DTYPES
from .nn.optim import OPTIMIZERS, make_optimizer
from .stopping import Stopped

ACTIVATIONS = ("ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU", "Identity")


@dataclass
class TrainConfig:
    seed: int = 0
    dataset: str = "teacher-classification"
    n_train: int = 2048
    n_test: int = 512
    hidden: tuple = (64, 64)
    activation: str = "ReLU"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 64
    steps: int = 2000
    eval_every: int = 100
    dtype: str = "float64"

    def __post_init__(self):
        for name in ("seed", "n_train", "n_test", "batch_size", "steps", "eval_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(name, f"must be an integer, got {value!r}")
        if not isinstance(self.hidden, (list, tuple)) or not all(
                isinstance(h, (int, np.integer)) and not isinstance(h, bool) for h in self.hidden):
            raise ConfigError("hidden", f"must be a list of integer widths, got {self.hidden!r}")
        self.hidden = tuple(int(h) for h in self.hidden)
        for name, allowed in (("dataset", GENERATORS), ("activation", ACTIVATIONS), ("optimizer", OPTIMIZERS),
                              ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose from {', '.join(allowed)}")
        if self.seed < 0:
            raise ConfigError("seed", f"must be at least 0, got {self.seed}")
        for name in ("n_train", "n_test", "batch_size", "steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.batch_size > self.n_train:
            raise ConfigError("batch_size", f"{self.batch_size} is more than the {self.n_train} training examples")
        if any(h < 1 for h in self.hidden):
            raise ConfigError("hidden", f"widths must be at least 1, got {self.hidden}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (0 < self.lr < math.inf):
            raise ConfigError("lr", f"must be a finite number > 0, got {self.lr!r}")

    @classmethod
    def from_json(cls, values):
        """The config :meth:`to_json` wrote; a ValueError names a missing, unknown or bad field."""
        return cls(**checked_fields(cls, values))

    def to_json(self):
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}


def make_data(config):
    """The built-in data set of a run: the same arrays for the same ``config`` (seed, sizes)."""
    return GENERATORS[config.dataset](np.random.default_rng([config.seed, 0]),
                                      n_train=config.n_train, n_test=config.n_test)


def make_mlp(input_dim, hidden, output_dim, activation, rng, dtype):
    """``Linear -> act -> ... -> Linear`` with PyTorch's default initialisation."""
    layers, width = [], input_dim
    for h in hidden:
        layers += [Linear(width, h), build_layer({"type": activation})]
        width = h
    layers.append(Linear(width, output_dim))
    return Network(layers, rng, dtype)


def evaluate(net, loss, x, y, num_classes):
    """``{"loss": L, "accuracy": a}`` (accuracy for classification only) on the whole set."""
    z = net(x)
    out = {"loss": loss(z, y)}
    if num_classes:
        out["accuracy"] = float(np.mean(np.argmax(z, axis=1) == y))
    return out


def _resumable_history(history, step, config):
    """The saved ``history`` as lists, without the end-of-run evaluation at ``step`` when the run goes
    on past it and ``step`` is off the ``eval_every`` grid: an uninterrupted run logs there only at
    its own end, so keeping it would add an entry that the uninterrupted run does not have."""
    history = {k: list(v) for k, v in history.items()}
    ends_off_grid = history["step"] and history["step"][-1] == step and step % config.eval_every != 0
    if ends_off_grid and step < config.steps:
        history = {k: v[:-1] for k, v in history.items()}
    return history


def train(config, checkpoint=None, checkpoint_every=500, progress=None, on_evaluation=None, should_stop=None):
    """Train per ``config``; return ``(net, optimizer, run)``.

    ``run`` is what a checkpoint stores: ``config``, ``rng`` (the minibatch generator), ``step``
    and ``history`` (``history[k]`` a list with one value per evaluation).

    With ``checkpoint`` a path: resume from it if it exists (its config must match, except
    ``steps``), and save to it every ``checkpoint_every`` steps and at the end. ``progress(n)``
    is called with the number of steps just done (all those of the checkpoint at once on resume),
    ``on_evaluation(row)`` with each evaluation as it is logged (``{key: value}``, the keys of
    ``history``; on resume, the saved ones first). ``should_stop()`` is asked after every step
    but the last; when it returns a signal number, the run saves its checkpoint (if it has one)
    and raises :class:`~refplastic.stopping.Stopped` at that step.
    """
    data = make_data(config)
    loss = make_loss("cross_entropy" if data.num_classes else "mse")
    dtype = np.dtype(config.dtype).type
    x_train, x_test = data.x_train.astype(dtype), data.x_test.astype(dtype)
    net = make_mlp(data.input_shape[0], config.hidden, data.output_dim, config.activation,
                   np.random.default_rng([config.seed, 1]), dtype)
    optimizer = make_optimizer(config.optimizer, net.flat, lr=config.lr)
    batches = np.random.default_rng([config.seed, 2])
    history = {"step": [], "train_loss": [], "test_loss": []}
    if data.num_classes:
        history.update(train_accuracy=[], test_accuracy=[])
    step = 0

    if checkpoint is not None and exists(checkpoint):
        batches, history, step = _resume(checkpoint, config, net, optimizer, history)
        if on_evaluation is not None:
            for i in range(len(history["step"])):
                on_evaluation({key: values[i] for key, values in history.items()})
        if progress is not None and step:
            progress(step)

    def log():
        train_eval = evaluate(net, loss, x_train, data.y_train, data.num_classes)
        test_eval = evaluate(net, loss, x_test, data.y_test, data.num_classes)
        history["step"].append(step)
        for key, value in train_eval.items():
            history[f"train_{key}"].append(value)
        for key, value in test_eval.items():
            history[f"test_{key}"].append(value)
        if on_evaluation is not None:
            on_evaluation({key: values[-1] for key, values in history.items()})

    def run():
        return {"config": config.to_json(), "rng": batches, "step": step, "history": history}

    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported below, once
        if step == 0:
            log()
        while step < config.steps:
            idx = batches.integers(0, len(x_train), size=config.batch_size)
            value, _ = net.loss_and_grad(x_train[idx], data.y_train[idx], loss)
            optimizer.step(net.grad)
            step += 1
            _check_finite(value, net, step)
            if step % config.eval_every == 0 or step == config.steps:
                log()
            saved = checkpoint is not None and (step % checkpoint_every == 0 or step == config.steps)
            if saved:
                save_checkpoint(checkpoint, net, optimizer, run())
            if progress is not None:
                progress(1)
            signum = should_stop() if should_stop is not None and step < config.steps else None
            if signum:
                if checkpoint is not None and not saved:
                    save_checkpoint(checkpoint, net, optimizer, run())
                raise Stopped(signum, step, saved=checkpoint is not None)
    return net, optimizer, run()


def _check_finite(loss_value, net, step):
    """A one-line ValueError once the loss or the parameters stop being finite (the run diverged)."""
    if not (np.isfinite(loss_value) and np.all(np.isfinite(net.flat))):
        raise ValueError(f"training diverged at step {step}: the loss or the parameters are not finite "
                         f"(loss {float(loss_value):.3g}); try a smaller lr")


def _resume(path, config, net, optimizer, history):
    """Load a checkpoint of the same run into ``net`` and ``optimizer``; ``(batches, history, step)``.

    Refused with a one-line ValueError naming ``path``: a file that holds no run or no optimizer
    state, another configuration (anything but ``steps``; the message names what differs), a run
    already past ``config.steps``, or state that does not fit.
    """
    saved = load_checkpoint(path)
    run = saved["run"]
    if run is None or saved["optimizer_state"] is None:
        raise ValueError(f"{path}: checkpoint holds no run to resume (it needs /run and /optimizer)")
    try:
        TrainConfig.from_json(run["config"])
    except ValueError as e:
        raise ValueError(f"{path}: /run: attribute 'config': {e}") from None
    differences = config_differences(config.to_json(), run["config"], ignore=("steps",))  # a run may be extended
    if differences:
        raise ValueError(f"{path}: checkpoint was written with a different configuration: {differences}")
    if attr_text(saved["optimizer_name"]) != config.optimizer:
        raise ValueError(f"{path}: /optimizer holds the state of {saved['optimizer_name']!r}, not {config.optimizer!r}")
    if run["step"] > config.steps:
        raise ValueError(f"{path}: checkpoint is at step {run['step']}, past the {config.steps} steps asked for")
    if saved["network"].architecture() != net.architecture() or saved["network"].dtype != net.dtype:
        raise ValueError(f"{path}: the network in the checkpoint does not match its configuration")
    if set(run["history"]) != set(history):
        raise ValueError(f"{path}: /run/history has {sorted(run['history'])}, expected {sorted(history)}")
    try:
        optimizer.load_state_dict(saved["optimizer_state"])
        batches = restore_rng(run["rng_state"])
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from None
    net.load_state_dict(saved["network"].state_dict())
    return batches, _resumable_history(run["history"], run["step"], config), run["step"]
