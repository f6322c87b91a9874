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

import numpy as np

from ..kernels.optim import adam_step, rmsprop_step, sgd_step


def _as_betas(betas):
    betas = tuple(float(b) for b in np.asarray(betas, dtype=np.float64).reshape(-1))
    if len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas}")
    return betas


def _check(condition, message):
    if not condition:
        raise ValueError(message)


class Optimizer:
    """Base class: parameters, hyperparameters, step count, buffers and their (re)storing.

    A subclass sets ``name`` and ``hyperparameter_types`` (name -> converter), and implements
    ``check(h)`` (raise ValueError on invalid hyperparameters ``h``), ``buffer_names(h)`` (the
    buffers that configuration uses) and ``update(grad)`` (one step; ``self.step_count`` counts it).
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
        """The hyperparameters converted to their types and checked (ValueError if invalid)."""
        values = {k: convert(hyperparameters[k]) for k, convert in self.hyperparameter_types.items()}
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
        validated before anything changes; mismatches raise ValueError.
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
        _check(not missing and not unexpected,
               f"{self.name} state dict mismatch: missing {missing}, unexpected {unexpected}")
        step = np.asarray(state["step"])
        _check(step.shape == () and step == int(step) and step >= 0,
               f"step must be a non-negative integer, got {state['step']!r}")
        buffers = {k: np.asarray(state[k]) for k in buffer_names}
        for k, b in buffers.items():
            _check(b.shape == self.params.shape and b.dtype == self.params.dtype,
                   f"{k}: expected a {self.params.dtype} array of shape {self.params.shape}, got {b.dtype} {b.shape}")
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
    hyperparameter_types = {"lr": float, "momentum": float, "dampening": float, "weight_decay": float,
                            "nesterov": bool}

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov)

    def check(self, h):
        _check(h["lr"] >= 0, f"Invalid learning rate: {h['lr']}")
        _check(h["momentum"] >= 0, f"Invalid momentum value: {h['momentum']}")
        _check(h["weight_decay"] >= 0, f"Invalid weight_decay value: {h['weight_decay']}")
        _check(not h["nesterov"] or (h["momentum"] > 0 and h["dampening"] == 0),
               "Nesterov momentum requires a momentum and zero dampening")

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
    hyperparameter_types = {"lr": float, "betas": _as_betas, "eps": float, "weight_decay": float, "amsgrad": bool,
                            "eps_root": float}
    defaults_of_older_states = {"eps_root": 0.0}
    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, eps_root=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         eps_root=eps_root)

    def check(self, h):
        _check(h["lr"] >= 0, f"Invalid learning rate: {h['lr']}")
        _check(h["eps"] >= 0, f"Invalid epsilon value: {h['eps']}")
        _check(h["eps_root"] >= 0, f"Invalid eps_root value: {h['eps_root']}")
        for i, beta in enumerate(h["betas"]):
            _check(0 <= beta < 1, f"Invalid beta parameter at index {i}: {beta}")
        _check(h["weight_decay"] >= 0, f"Invalid weight_decay value: {h['weight_decay']}")

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

    State: ``step``, ``square_avg`` (s), ``momentum_buffer`` (b, only if momentum > 0),
    ``grad_avg`` (a, only if centered).
    """

    name = "rmsprop"
    hyperparameter_types = {"lr": float, "alpha": float, "eps": float, "weight_decay": float, "momentum": float,
                            "centered": bool}

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                         centered=centered)

    def check(self, h):
        _check(h["lr"] >= 0, f"Invalid learning rate: {h['lr']}")
        _check(h["eps"] >= 0, f"Invalid epsilon value: {h['eps']}")
        _check(h["momentum"] >= 0, f"Invalid momentum value: {h['momentum']}")
        _check(h["weight_decay"] >= 0, f"Invalid weight_decay value: {h['weight_decay']}")
        _check(h["alpha"] >= 0, f"Invalid alpha value: {h['alpha']}")

    def buffer_names(self, h):
        return (["square_avg"] + (["momentum_buffer"] if h["momentum"] > 0 else [])
                + (["grad_avg"] if h["centered"] else []))

    def update(self, grad):
        rmsprop_step(self.params, grad, self.buffers["square_avg"], self._buffer("grad_avg"),
                     self._buffer("momentum_buffer"), self.lr, self.alpha, self.eps, self.weight_decay,
                     self.momentum, self.centered)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop)}


def make_optimizer(name, params, **hyperparameters):
    """``make_optimizer("adam", net.flat, lr=1e-3)``: the optimizer called ``name`` (sgd, adam, adamw, rmsprop)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, **hyperparameters)
