"""Supervised training of a small MLP on built-in data: the learning-curve job.

One dataclass holds every hyperparameter; one loop trains. Randomness comes from three
generators made from the seed (data, initialisation, minibatches), and a checkpoint stores the
minibatch generator's state, so a resumed run gives the same numbers as an uninterrupted one.
"""

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from .checkpoint import load_checkpoint, restore_rng, save_checkpoint
from .data import GENERATORS
from .nn import Linear, Network, make_loss
from .nn.build import build_layer
from .nn.optim import make_optimizer

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
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.dataset not in GENERATORS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose from {', '.join(GENERATORS)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}")
        for name in ("n_train", "n_test", "batch_size", "steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be at least 1, got {self.hidden}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def to_json(self):
        return {**dataclasses.asdict(self), "hidden": list(self.hidden)}


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


def train(config, checkpoint=None, checkpoint_every=500, progress=None):
    """Train per ``config``; return ``(net, optimizer, run)``.

    ``run`` is what a checkpoint stores: ``config``, ``rng`` (the minibatch generator), ``step``
    and ``history`` (``history[k]`` a list with one value per evaluation).

    With ``checkpoint`` a path: resume from it if it exists (its config must match, except
    ``steps``), and save to it every ``checkpoint_every`` steps and at the end. ``progress(n)``
    is called with the number of steps just done.
    """
    data = GENERATORS[config.dataset](np.random.default_rng([config.seed, 0]),
                                      n_train=config.n_train, n_test=config.n_test)
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

    if checkpoint is not None and os.path.exists(checkpoint):
        saved = load_checkpoint(checkpoint)
        run = saved["run"]
        if run is None:
            raise ValueError(f"{checkpoint}: checkpoint holds no run to resume")
        mine = {k: v for k, v in config.to_json().items() if k != "steps"}
        theirs = {k: v for k, v in run["config"].items() if k != "steps"}
        if mine != theirs:
            raise ValueError(f"{checkpoint}: checkpoint was written with a different configuration")
        net.load_state_dict(saved["network"].state_dict())
        optimizer.load_state_dict(saved["optimizer_state"])
        batches = restore_rng(run["rng_state"])
        step = run["step"]
        history = _resumable_history(run["history"], step, config)

    def log():
        train_eval = evaluate(net, loss, x_train, data.y_train, data.num_classes)
        test_eval = evaluate(net, loss, x_test, data.y_test, data.num_classes)
        history["step"].append(step)
        for key, value in train_eval.items():
            history[f"train_{key}"].append(value)
        for key, value in test_eval.items():
            history[f"test_{key}"].append(value)

    def run():
        return {"config": config.to_json(), "rng": batches, "step": step, "history": history}

    if step == 0:
        log()
    while step < config.steps:
        idx = batches.integers(0, len(x_train), size=config.batch_size)
        net.loss_and_grad(x_train[idx], data.y_train[idx], loss)
        optimizer.step(net.grad)
        step += 1
        if step % config.eval_every == 0 or step == config.steps:
            log()
        if checkpoint is not None and (step % checkpoint_every == 0 or step == config.steps):
            save_checkpoint(checkpoint, net, optimizer, run())
        if progress is not None:
            progress(1)
    return net, optimizer, run()
