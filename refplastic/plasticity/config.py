"""One dataclass holds every setting of a plasticity run, each beside where its value comes from.

A run is Lyle et al. (2023)'s protocol (sections 3.1, 3.2, 5.1, 6.2; appendix A): a DQN agent on
a classification MDP (or a supervised memorisation task), probed every ``probe_every`` optimiser
steps for how well copies of its network fit new random targets. Where the paper states a value,
the comment cites it; where it is silent, the comment says "choice" and why (docs/protocol.md
collects them). Three presets: ``paper`` (the paper's values), ``laptop`` (one run in at most
five minutes on one core of a 2-core machine, sized so the probe loss still rises without an
intervention: results/plasticity-laptop.md says how that was checked) and ``smoke`` (a complete
run through every part in seconds, for tests).

``--set FIELD=VALUE`` (:func:`with_overrides`) changes any field after the preset; every value is
checked in :meth:`RunConfig.__post_init__`, a bad one raising :class:`ConfigError` naming the field.
"""

from dataclasses import dataclass

from ..config_fields import ConfigError, ConfigFields, at_least, check_types, finite, overridden, schedule_points
from ..data.source import SPECS, data_kind

TASKS = ("easy", "hard", "sparse", "memorise")
ARCHITECTURES = ("mlp", "cnn")
TD_LOSSES = ("mse", "huber")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
DTYPES = ("float64", "float32")

INTERVENTIONS = {
    "layernorm": "LayerNorm after every hidden convolution and linear layer (sec. 6.2)",
    "reset_last_layer": "re-initialise the last layer at every target update (sec. 6.2; Nikishin et al. 2022)",
    "shrink_and_perturb": "theta <- shrink theta + perturb theta_fresh at every target update (Ash & Adams 2020)",
    "twohot": "a categorical value head over a fixed support, trained by cross-entropy to two-hot targets (sec. 6.2)",
    "spectral_norm": "spectral normalisation of the first linear layer (sec. 6.2; Gogianu et al. 2021)",
    "weight_decay": "an l2 penalty weight_decay * theta added to the gradient (sec. 6.2)",
    "reset_optimizer": "reset the optimiser's state at every target update (sec. 4.1)",
    "redo": "re-initialise tau-dormant units every redo_period steps (Sokar et al. 2023)",
    "continual_backprop": "replace low-utility units continually (Dohare et al. 2024)",
    "brownian": "step in a Gaussian direction of the optimiser step's norm (sec. 4.2's random walk)",
}
"""Every intervention a run can apply (several at once), with what it does; the functions are in
:mod:`refplastic.plasticity.interventions` and the run loop applies them."""


@dataclass
class RunConfig(ConfigFields):
    # ---- the experiment: task, data, network, interventions ------------------------------------
    seed: int = 0
    task: str = "hard"                 # easy (true-label), hard (random-label), sparse: sec. 3.2; memorise: sec. 4.1
    data: str = "builtin"              # builtin | builtin-gray | mnist:DIR | cifar10:DIR (docs/data.md); the paper: MNIST, CIFAR-10
    data_examples: int = 0             # use the first this many training images (0: all); choice, for speed
    builtin_images: int = 5000         # frames a built-in data set renders (docs/data.md), a multiple of 10
    arch: str = "mlp"                  # mlp | cnn: appendix A.2
    width: int = 512                   # MLP: two hidden layers of this width (A.2; width sweep 16 x {1,2,4,8,12,16})
    cnn_channels: int = 64             # CNN: conv 5x5 and conv 3x3, 64 channels each (A.2)
    cnn_hidden: int = 256              # CNN: two fully connected layers of 256 (A.2)
    intervention: tuple = ()           # names from INTERVENTIONS, composable ("layernorm", "weight_decay", ...): sec. 6.2
    dtype: str = "float64"             # the reference dtype; float32 where asked
    # ---- the agent (appendix A.2: the same agent structure as the Atari one of A.3) ------------
    optimizer: str = "adam"            # choice: the paper's only stated Adam setting (A.1) for its MDP agents too
    lr: float = 1e-3                   # A.1
    beta1: float = 0.9                 # A.1 (and SGD's momentum with optimizer = sgd)
    beta2: float = 0.999               # A.1; figure 1's tuned run: 0.9 (and RMSprop's alpha with optimizer = rmsprop)
    eps: float = 1e-9                  # A.1
    eps_root: float = 0.0              # A.1's eps-bar inside the square root (figure 1's tuned run: 1e-3)
    batch_size: int = 512              # sec. 4.2 and A.1: "k = 512 equal to the batch size used for training"
    replay_capacity: int = 100_000     # A.3 (Atari, "the same agent structure", A.2)
    learning_starts: int = 1000        # choice: transitions gathered before the first step (DQN Zoo: 50k frames)
    epsilon: float = 0.1               # A.3: epsilon-greedy with epsilon = 0.1
    discount: float = 0.99             # choice: DQN Zoo's and Mnih et al. (2015)'s gamma; the paper does not say
    target_update_period: int = 1000   # sec. 5.1 and 6.2 (A.2 says 10,000; figure 5 sweeps 1, 100, 1000)
    td_loss: str = "mse"               # eq. 1: the squared TD error; huber as DQN Zoo's alternative
    double_q: bool = False             # sec. 5.1: DQN; Double DQN (van Hasselt et al. 2016) on request
    train_steps: int = 100_000         # sec. 6.2: 100 iterations of 1000 steps
    memorise_examples: int = 5000      # A.1: 5000 MNIST images with random labels
    memorise_period: int = 5000        # choice: optimiser steps between re-drawn labels (A.1 does not say)
    # ---- probes (sec. 3.1, 5.1, A.2) --------------------------------------------------------
    probe_every: int = 5000            # sec. 5.1 and A.2
    probe_targets: int = 10            # sec. 5.1: "sampling 10 different random functions"
    probe_steps: int = 2000            # sec. 3.1 and 5.1
    probe_examples: int = 512          # choice: replay inputs per probe, the k = 512 of sec. 4.2
    probe_batch_size: int = 512        # choice: the training batch size ("the optimizer O will be identical")
    probe_copies_optimizer_state: bool = False  # choice: the probe's optimiser starts fresh (the paper does not say)
    probe_log_every: int = 100         # learning-curve resolution of each probe (figure 4)
    # ---- statistics and curvature at probe points (sec. 4.2, 5.2) ---------------------------
    statistics: bool = True            # refplastic.stats' default set on the probe inputs
    hessian_top_k: int = 0             # >0: the top k Hessian eigenvalues by Lanczos (sec. 2.1, 4.2)
    hessian_density: bool = False      # the SLQ density of the Hessian (Ghorbani et al. 2019; A.1)
    slq_probes: int = 10               # SLQ: random probes (refplastic curvature's hessian_density defaults)
    slq_steps: int = 90                # SLQ: Lanczos steps per probe
    gradient_cosine_examples: int = 0  # >0: the per-example gradient cosine matrix, k-means ordered (sec. 2.1, A.1)
    # ---- intervention coefficients -----------------------------------------------------------
    weight_decay: float = 1e-5         # sec. 6.2: "l2 penalty coefficient 10^-5" (coupled L2, as torch Adam's)
    shrink: float = 0.4                # Ash & Adams (2020), their code's default --shrink (docs/interventions.md)
    perturb: float = 0.1               # Ash & Adams (2020), their code's default --perturb
    redo_tau: float = 0.1              # ReDo for DQN (Sokar et al. 2023; timoklein/redo): tau = 0.1
    redo_period: int = 1000            # ... applied every 1000 optimiser steps (timoklein/redo)
    cbp_replacement_rate: float = 1e-4  # continual backprop (Dohare et al. 2024): their RL setting (lop cbp.yml rr)
    cbp_maturity: int = 10_000         # ... maturity threshold (lop cbp.yml mt)
    cbp_decay: float = 0.99            # ... utility decay eta, "0.99 in all experiments"
    twohot_bins: int = 51              # two-hot head: 51 bins (DQN Zoo's C51) evenly on [0, 1 / (1 - discount)]
    # ---- bookkeeping ---------------------------------------------------------------------------
    log_every: int = 100               # optimiser steps per row of the training log
    checkpoint_every: int = 5000       # optimiser steps between checkpoints (and at every probe point)

    def __post_init__(self):
        check_types(self)
        self.intervention = _interventions(self.intervention)
        for name, allowed in (("task", TASKS), ("arch", ARCHITECTURES), ("td_loss", TD_LOSSES),
                              ("optimizer", OPTIMIZERS), ("dtype", DTYPES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("width", "cnn_channels", "cnn_hidden", "batch_size", "replay_capacity", "target_update_period",
                     "train_steps", "memorise_examples", "memorise_period", "probe_every", "probe_targets",
                     "probe_steps", "probe_examples", "probe_batch_size", "probe_log_every", "redo_period",
                     "checkpoint_every", "slq_probes", "slq_steps", "log_every"):
            at_least(self, name, 1)
        for name in ("seed", "data_examples", "learning_starts", "hessian_top_k", "gradient_cosine_examples",
                     "cbp_maturity"):
            at_least(self, name, 0)
        at_least(self, "twohot_bins", 2)
        try:
            data_kind(self.data)
        except ValueError:
            raise ConfigError("data", f"must be a data set spec ({SPECS}), got {self.data!r}") from None
        if self.builtin_images < 10 or self.builtin_images % 10:
            raise ConfigError("builtin_images", f"must be a positive multiple of 10 (ten games), got {self.builtin_images}")
        for name in ("eps", "eps_root", "weight_decay", "perturb", "redo_tau"):
            finite(self, name, low=0)
        finite(self, "lr", low=0, strict=True)
        for name in ("beta1", "beta2", "discount"):
            finite(self, name, low=0, high=1, high_open=True)
        for name in ("epsilon", "shrink", "cbp_replacement_rate", "cbp_decay"):
            finite(self, name, low=0, high=1)
        schedule_points(self, "train_steps", ("probe_every", "log_every"))
        if self.probe_batch_size > self.probe_examples:
            raise ConfigError("probe_batch_size", f"{self.probe_batch_size} is more than the {self.probe_examples} "
                                                  f"probe examples")
        if self.gradient_cosine_examples > self.probe_examples:
            raise ConfigError("gradient_cosine_examples", f"{self.gradient_cosine_examples} is more than the "
                                                          f"{self.probe_examples} probe examples")
        if self.task != "memorise" and self.learning_starts < self.probe_examples:
            raise ConfigError("learning_starts", f"{self.learning_starts} transitions cannot give the "
                                                 f"{self.probe_examples} probe examples the first probe needs")
        if self.task == "memorise" and "twohot" in self.intervention:
            raise ConfigError("intervention", "twohot is a value head: it does not apply to the memorise task")


def _interventions(names):
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip() and n.strip() != "none"))
    unknown = [n for n in names if n not in INTERVENTIONS]
    if unknown:
        raise ConfigError("intervention", f"unknown {', '.join(map(repr, unknown))}; "
                                          f"choose from none, {', '.join(INTERVENTIONS)}")
    return names


PRESETS = {
    "paper": {},
    "laptop": {"width": 128, "cnn_channels": 16, "cnn_hidden": 64, "dtype": "float32", "batch_size": 64,
               "replay_capacity": 10_000, "learning_starts": 512, "train_steps": 20_000, "target_update_period": 500,
               "probe_every": 4000, "probe_targets": 5, "probe_steps": 400, "probe_examples": 512, "probe_batch_size": 64,
               "probe_log_every": 20, "checkpoint_every": 2000, "redo_period": 500, "cbp_maturity": 1000},
    "demo": {"builtin_images": 2000, "width": 128, "cnn_channels": 16, "cnn_hidden": 64, "dtype": "float32",
             "batch_size": 64, "replay_capacity": 10_000, "learning_starts": 512, "train_steps": 6000,
             "target_update_period": 500, "probe_every": 1500, "probe_steps": 300, "probe_examples": 512,
             "probe_batch_size": 64, "probe_log_every": 20, "checkpoint_every": 1500, "redo_period": 500,
             "cbp_maturity": 1000},
    "smoke": {"builtin_images": 200, "width": 16, "cnn_channels": 4, "cnn_hidden": 16, "batch_size": 16,
              "replay_capacity": 500, "learning_starts": 64, "train_steps": 60, "target_update_period": 20,
              "memorise_examples": 100, "memorise_period": 20, "probe_every": 30, "probe_targets": 3, "probe_steps": 10,
              "probe_examples": 64, "probe_batch_size": 16, "probe_log_every": 5, "hessian_top_k": 2,
              "hessian_density": True, "slq_probes": 2, "slq_steps": 10, "gradient_cosine_examples": 16,
              "redo_period": 10, "cbp_maturity": 5, "checkpoint_every": 25, "log_every": 10},
}
"""Each preset's changes to the paper's values (``paper``: none). ``laptop``: one run in at most
five minutes on one core of this 2-core machine, six probe points of five targets each, so that
the figure-6 grid (MLP and CNN, eleven interventions, three seeds: 66 runs) takes under two hours
on its two cores (docs/protocol.md, "Presets"; results/plasticity-laptop.md ran the earlier
eleven probe points of ten targets, the settings its commands give);
``demo``: the README's first command, two runs and their comparison in a few minutes; ``smoke``: every part of a run (probes, statistics, curvature, interventions, checkpoints) in a
few seconds, for tests and quick checks."""


def preset(name, **fields):
    """The :class:`RunConfig` of preset ``name`` with ``fields`` set on top."""
    if name not in PRESETS:
        raise ConfigError("preset", f"must be one of {', '.join(PRESETS)}, got {name!r}")
    return RunConfig(**{**PRESETS[name], **fields})


def with_overrides(config, assignments):
    """``config`` with each ``"FIELD=VALUE"`` of ``assignments`` applied in turn (``--set``): the
    value is read as the field's type (numbers, true/false, comma lists for ``intervention``)."""
    return overridden(config, assignments, "refplastic run --show-config")


def probe_points(config):
    """The optimiser steps at which a run of ``config`` is probed: 0, probe_every, ... and the last."""
    points = list(range(0, config.train_steps + 1, config.probe_every))
    return points if points[-1] == config.train_steps else points + [config.train_steps]
