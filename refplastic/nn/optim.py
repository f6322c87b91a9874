"""SGD, Adam, AdamW and RMSprop with PyTorch 2.13 semantics, on one flat parameter vector.

An optimizer holds the flat parameter vector (``net.flat``) and updates it in place; ``step(grad)``
takes the flat gradient (``net.grad``). Its state is a step count and flat buffers of the same
dtype, updated together with the parameters by one fused kernel (:mod:`refplastic.kernels.optim`)::

    opt = Adam(net.flat, lr=1e-3)
    for x, t in batches:
        net.loss_and_grad(x, t, loss)
        opt.step(net.grad)

``state_dict()`` is a flat dict of numbers, strings and arrays (hyperparameters, ``"step"`` and the
buffers, named as in torch), so it can be written to HDF5 or npz without pickle and loaded back
with ``load_state_dict``; ``reset()`` forgets the state, as if the optimizer had just been built.
"""

import math

import numpy as np

from ..kernels.optim import adam_step, rmsprop_step, rmsprop_step_eps_in_sqrt, sgd_step


class StateError(ValueError):
    """A bad hyperparameter or state entry: ``field`` names it and ``problem`` says what it must be
    (the message is ``"<field> <problem>"``), so that a reader of a file can name its own field."""

    def __init__(self, field, problem):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def _unwrapped(value):
    """A 0-d array or NumPy scalar (as read back from HDF5 or npz) as a Python scalar."""
    return value.item() if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0 else value


def _is_real(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _number(value, name):
    """``value`` as a finite float; a :class:`StateError` for anything else (a string, a bool, NaN)."""
    value = _unwrapped(value)
    if not (_is_real(value) and math.isfinite(value)):
        raise StateError(name, f"must be a finite number, got {value!r}")
    return float(value)


def _flag(value, name):
    """``value`` as a bool: True, False, or the integers 1 and 0."""
    value = _unwrapped(value)
    if not (isinstance(value, (bool, np.bool_)) or (_is_real(value) and value in (0, 1))):
        raise StateError(name, f"must be true or false, got {value!r}")
    return bool(value)


def _as_betas(betas, name="betas"):
    """``(beta1, beta2)``: a pair of finite numbers (a tuple, list or array of two)."""
    values = np.asarray(betas, dtype=object).reshape(-1).tolist()
    if len(values) != 2:
        raise StateError(name, f"must be a pair (beta1, beta2), got {values!r}")
    return tuple(_number(b, f"{name}[{i}]") for i, b in enumerate(values))


def _check(condition, field, problem):
    if not condition:
        raise StateError(field, problem)


def _nonnegative(h, *names):
    """torch's range checks: each of the hyperparameters ``names`` is >= 0."""
    for name in names:
        _check(h[name] >= 0, name, f"must be >= 0, got {h[name]}")


class Optimizer:
    """Base class: parameters, hyperparameters, step count, buffers and their (re)storing.

    A subclass sets ``name`` and ``hyperparameter_types`` (name -> converter ``convert(value, name)``),
    and implements ``check(h)`` (raise :class:`StateError` on invalid hyperparameters ``h``),
    ``buffer_names(h)`` (the buffers that configuration uses) and ``update(grad)`` (one step;
    ``self.step_count`` counts it).
    Hyperparameters are attributes; ``lr`` may be changed between steps (a schedule), but changing
    one that decides which buffers exist (momentum, amsgrad, centered) needs ``reset()``.
    """

    name = None
    hyperparameter_types = {}
    defaults_of_older_states = {}  # hyperparameters added later: their value when a saved state lacks them

    def __init__(self, params, **hyperparameters):
        if not isinstance(params, np.ndarray) or params.ndim != 1 or params.dtype not in (np.float32, np.float64):
            raise ValueError("params must be a 1-D float32 or float64 numpy array (the flat parameter vector), "
                             f"got {type(params).__name__} {getattr(params, 'dtype', '')}"
                             f"{getattr(params, 'shape', '')}")
        if not params.flags.writeable:
            raise ValueError("params must be writeable: the optimizer updates them in place")
        self.params = params
        self.__dict__.update(self._validated(hyperparameters))
        self.reset()

    def _validated(self, hyperparameters):
        """The hyperparameters converted to their types and checked (:class:`StateError` naming the bad one)."""
        values = {k: convert(hyperparameters[k], k) for k, convert in self.hyperparameter_types.items()}
        self.check(values)
        return values

    def hyperparameters(self):
        """``{name: value}`` of the current hyperparameters."""
        return {k: getattr(self, k) for k in self.hyperparameter_types}

    def reset(self):
        """Forget the step count and all buffers, as if freshly constructed."""
        self.step_count = 0
        self.buffers = {name: np.zeros_like(self.params) for name in self.buffer_names(self.hyperparameters())}

    def _buffer(self, name):
        """The buffer ``name``, or an empty array when the configuration does not use it."""
        return self.buffers.get(name, self.params[:0])

    def step(self, grad):
        """Update the parameters in place from the flat gradient ``grad`` (same shape and dtype)."""
        if not isinstance(grad, np.ndarray) or grad.shape != self.params.shape or grad.dtype != self.params.dtype:
            raise ValueError(f"grad must be a {self.params.dtype} array of shape {self.params.shape}, got "
                             f"{getattr(grad, 'dtype', type(grad).__name__)} {getattr(grad, 'shape', '')}")
        if self.buffers.keys() != set(self.buffer_names(self.hyperparameters())):
            raise ValueError(f"the hyperparameters {self.hyperparameters()} need other state buffers than "
                             f"{sorted(self.buffers)}: call reset() after changing them")
        self.step_count += 1
        self.update(grad)

    def state_dict(self):
        """``{"optimizer": name, **hyperparameters, "step": int, **buffers}``; buffers are copies."""
        hyperparameters = {k: (np.array(v) if isinstance(v, tuple) else v) for k, v in self.hyperparameters().items()}
        buffers = {k: b.copy() for k, b in self.buffers.items()}
        return {"optimizer": self.name, **hyperparameters, "step": self.step_count, **buffers}

    def load_state_dict(self, state):
        """Restore hyperparameters, step count and buffers from :meth:`state_dict` output.

        Values may be numpy scalars or 0-d arrays (as read back from npz or HDF5). Everything is
        validated before anything changes: a bad hyperparameter, step or buffer (wrong shape or dtype,
        NaN or infinity) raises a :class:`StateError` naming it, a missing or unexpected one a ValueError.
        """
        state = {**self.defaults_of_older_states, **state}
        name = np.asarray(state.get("optimizer", "")).item()
        name = name.decode() if isinstance(name, bytes) else str(name)  # h5py reads strings as bytes
        if name != self.name:
            raise ValueError(f"state of optimizer {name!r} cannot be loaded into {self.name!r}")
        missing = [k for k in self.hyperparameter_types if k not in state]
        if missing:
            raise ValueError(f"{self.name} state dict is missing hyperparameters {missing}")
        hyperparameters = self._validated(state)
        buffer_names = self.buffer_names(hyperparameters)
        expected = {"optimizer", "step", *self.hyperparameter_types, *buffer_names}
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"{self.name} state dict mismatch: missing {missing}, unexpected {unexpected}")
        step = _unwrapped(np.asarray(state["step"]))
        _check(_is_real(step) and math.isfinite(step) and step == int(step) and step >= 0,
               "step", f"must be a non-negative integer, got {step!r}")
        buffers = {k: np.asarray(state[k]) for k in buffer_names}
        for k, b in buffers.items():
            _check(b.shape == self.params.shape and b.dtype == self.params.dtype,
                   k, f"must be a {self.params.dtype} array of shape {self.params.shape}, got {b.dtype} {b.shape}")
            _check(np.all(np.isfinite(b)), k, "contains NaN or infinity")
        self.__dict__.update(hyperparameters)
        self.step_count = int(step)
        self.buffers = {k: b.copy() for k, b in buffers.items()}

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return (f"{type(self).__name__}({args}; {self.params.size} {self.params.dtype} parameters, "
                f"step {self.step_count})")


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay.

        g = grad + weight_decay p
        if momentum != 0:
            b = g                                  on the first step
            b = momentum b + (1 - dampening) g     afterwards
            g = g + momentum b   if nesterov else  b
        p = p - lr g

    State: ``momentum_buffer`` (only if momentum != 0). ``step`` is kept too (torch keeps none) to
    tell the first momentum step from the others.
    """

    name = "sgd"
    hyperparameter_types = {"lr": _number, "momentum": _number, "dampening": _number, "weight_decay": _number,
                            "nesterov": _flag}

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov)

    def check(self, h):
        _nonnegative(h, "lr", "momentum", "weight_decay")
        _check(not h["nesterov"] or (h["momentum"] > 0 and h["dampening"] == 0),
               "nesterov", "requires a momentum > 0 and zero dampening")

    def buffer_names(self, h):
        return ["momentum_buffer"] if h["momentum"] != 0 else []

    def update(self, grad):
        sgd_step(self.params, grad, self._buffer("momentum_buffer"), self.step_count, self.lr, self.momentum,
                 self.dampening, self.weight_decay, self.nesterov)


class Adam(Optimizer):
    """Adam with L2 weight decay added to the gradient, and optionally AMSGrad.

        t = t + 1
        g = grad + weight_decay p
        m = beta1 m + (1 - beta1) g                (as torch: m.lerp_(g, 1 - beta1))
        v = beta2 v + (1 - beta2) g^2
        v_max = max(v_max, v)                      if amsgrad, and v_max replaces v below
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)               (eps_root = 0)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t) + eps_root) + eps)      (otherwise)

    ``eps_root`` (default 0: torch's Adam, which has no such term) is the epsilon inside the square
    root, eps-bar in Lyle et al. (2023, eq. 6) and ``eps_root`` in optax.
    State: ``step`` (t), ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq`` (only if amsgrad).
    """

    name = "adam"
    hyperparameter_types = {"lr": _number, "betas": _as_betas, "eps": _number, "weight_decay": _number,
                            "amsgrad": _flag, "eps_root": _number}
    defaults_of_older_states = {"eps_root": 0.0}
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, eps_root=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         eps_root=eps_root)

    def check(self, h):
        _nonnegative(h, "lr", "eps", "eps_root", "weight_decay")
        for i, beta in enumerate(h["betas"]):
            _check(0 <= beta < 1, f"betas[{i}]", f"must lie in [0, 1), got {beta}")

    def buffer_names(self, h):
        return ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if h["amsgrad"] else [])

    def update(self, grad):
        beta1, beta2 = self.betas
        adam_step(self.params, grad, self.buffers["exp_avg"], self.buffers["exp_avg_sq"],
                  self._buffer("max_exp_avg_sq"), self.step_count, self.lr, beta1, beta2, self.eps,
                  self.weight_decay, self.decoupled_weight_decay, self.amsgrad, self.eps_root)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), and optionally AMSGrad.

        t = t + 1
        p = p (1 - lr weight_decay)
        m = beta1 m + (1 - beta1) grad             (as torch: m.lerp_(grad, 1 - beta1))
        v = beta2 v + (1 - beta2) grad^2
        v_max = max(v_max, v)                      if amsgrad, and v_max replaces v below
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    State: ``step`` (t), ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq`` (only if amsgrad).
    """

    name = "adamw"
    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, eps_root=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         eps_root=eps_root)


class RMSprop(Optimizer):
    """RMSprop, optionally centered and with momentum.

        g = grad + weight_decay p
        s = alpha s + (1 - alpha) g^2
        if centered:  a = alpha a + (1 - alpha) g  (as torch: a.lerp_(g, 1 - alpha)),  d = sqrt(s - a^2) + eps
        else:         d = sqrt(s) + eps
        if momentum > 0:  b = momentum b + g / d,  p = p - lr b
        else:             p = p - lr g / d

    ``eps_in_sqrt=True`` puts eps inside the square root, ``d = sqrt(s - a^2 + eps)`` (centered) or
    ``d = sqrt(s + eps)``: optax's ``rmsprop`` (its only form before optax 0.2.4, its default
    ``eps_in_sqrt=True`` since), which DQN Zoo's Double DQN uses with lr 2.5e-4, alpha (optax's
    ``decay``) 0.95, eps 0.01 / 32^2 and centered (``dqn_zoo/double_q/run_atari.py``, optax
    0.1.2). The default False is torch's ``RMSprop``. The two differ most where the gradients
    are small: there eps inside bounds the step by lr g / sqrt(eps) (sqrt(eps) = 3.1e-3 for DQN
    Zoo's eps), while outside it allows up to lr g / eps. Each form is one fused kernel
    (refplastic.kernels.optim).

    State: ``step``, ``square_avg`` (s), ``momentum_buffer`` (b, only if momentum > 0),
    ``grad_avg`` (a, only if centered).
    """

    name = "rmsprop"
    hyperparameter_types = {"lr": _number, "alpha": _number, "eps": _number, "weight_decay": _number,
                            "momentum": _number, "centered": _flag, "eps_in_sqrt": _flag}
    defaults_of_older_states = {"eps_in_sqrt": False}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 eps_in_sqrt=False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                         centered=centered, eps_in_sqrt=eps_in_sqrt)

    def check(self, h):
        _nonnegative(h, "lr", "eps", "momentum", "weight_decay", "alpha")

    def buffer_names(self, h):
        return (["square_avg"] + (["momentum_buffer"] if h["momentum"] > 0 else [])
                + (["grad_avg"] if h["centered"] else []))

    def update(self, grad):
        step = rmsprop_step_eps_in_sqrt if self.eps_in_sqrt else rmsprop_step
        step(self.params, grad, self.buffers["square_avg"], self._buffer("grad_avg"), self._buffer("momentum_buffer"),
             self.lr, self.alpha, self.eps, self.weight_decay, self.momentum, self.centered)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def make_optimizer(name, params, **hyperparameters):
    """``make_optimizer("adam", net.flat, lr=1e-3)``: the optimizer called ``name`` (sgd, adam, adamw, rmsprop)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, **hyperparameters)
