"""E independent networks of one architecture, side by side: a leading ensemble axis.

The plasticity protocol of Lyle et al. (2023) trains several copies of a network at once (ten
probe copies, each on its own task). An :class:`Ensemble` holds E member networks whose
parameters are the rows of one array and whose data carry a leading axis E:

    flat   (E, P)        row e is member e's flat parameter vector (PyTorch order, see Network)
    grad   (E, P)        row e is member e's gradient
    x      (E, N, ...)   member e sees x[e]; targets likewise (E, N, ...)

The members do not interact. The ensemble's loss is ``L = sum_e L_e(theta_e; x_e, t_e)``, so
``dL/dtheta_e = dL_e/dtheta_e``: row e of ``grad`` is exactly the gradient member e would have on
its own. Every optimizer of :mod:`refplastic.nn.optim` updates element by element with one step
count, so one optimizer over ``flat.reshape(-1)`` (a view) is exactly E optimizers, one per
member, in one kernel::

    ens = Ensemble.from_architecture(arch, 10, rng)
    opt = Adam(ens.flat.reshape(-1), lr=1e-3)
    losses, grad = ens.loss_and_grad(x, t, loss)      # x: (10, N, ...), losses: (10,)
    opt.step(grad.reshape(-1))

The forward and backward passes run layer by layer over the whole ensemble at once: the ensemble
keeps a *stacked* copy of each layer, whose parameters are (E, *shape) views of ``flat`` and
whose buffers (BatchNorm's running statistics) are (E, *shape) arrays, and calls its
``ensemble_forward`` and ``ensemble_backward`` maps (:mod:`refplastic.nn.layer`): batched matrix
products over E for Linear and Conv2d, the lone maps on the whole (E, N, ...) arrays for the
parameter-free layers, statistics per member for the normalisations. Each member is still an
ordinary :class:`~refplastic.nn.Network` whose parameters and buffers are views of row e, so it
can be read, evaluated or saved on its own; its numbers are the ensemble's (tests/test_ensemble.py
holds them equal to a lone network's). :meth:`Ensemble.state_dict` stacks parameters and buffers
key by key, as ``torch.func.stack_module_state`` does.

Only the loss runs member by member (E calls of a cheap map on (N, out) outputs), so that each
member's loss value is the lone network's to the last bit.
"""

import copy

import numpy as np

from .network import Network


def _checked_size(size):
    """``size`` if it is an integer >= 1 (a number of members), else a ValueError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"ensemble size must be an integer >= 1, got {size!r}")
    return size


def _modes(net):
    """Each layer's training flag: the ensemble's layers run in one mode for all members."""
    return [layer.training for layer in net.layers]


class Ensemble:
    """Independent copies of ``networks`` (same architecture, dtype and mode), bound to stacked storage."""

    def __init__(self, networks):
        networks = list(networks)
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        for i, net in enumerate(networks):
            if not isinstance(net, Network):
                raise TypeError(f"member {i} is not a refplastic Network: {net!r}")
            if (net.architecture() != networks[0].architecture() or net.dtype != networks[0].dtype
                    or _modes(net) != _modes(networks[0])):
                raise ValueError(f"member {i} differs from member 0 in architecture, dtype or mode; "
                                 "an ensemble's members share all three")
        first = networks[0]
        self.dtype = first.dtype
        self.num_parameters = first.num_parameters
        self.parameter_names = list(first.parameter_names)
        self.flat = np.zeros((len(networks), first.num_parameters), self.dtype)
        self.grad = np.zeros_like(self.flat)
        self.members = [net.copy() for net in networks]
        for member, flat, grad in zip(self.members, self.flat, self.grad):
            member.bind_storage(flat, grad)
        self.layers = [copy.copy(layer) for layer in self.members[0].layers]
        self._grads = self.members[0].unflatten(self.grad)  # per layer, {name: (E, *shape) view}
        for i, (layer, params) in enumerate(zip(self.layers, self.members[0].unflatten(self.flat))):
            layer.params = params
            layer.buffers = {name: np.stack([member.layers[i].buffers[name] for member in self.members])
                             for name in layer.buffers}
            for e, member in enumerate(self.members):  # member e's buffers: views of row e
                member.layers[i].buffers = {name: stacked[e, ...] for name, stacked in layer.buffers.items()}

    @classmethod
    def from_architecture(cls, architecture, size, rng, dtype=np.float64):
        """``size`` members built from ``architecture``, initialised one after another from ``rng``
        (member 0 first), as ``size`` calls of ``Network.from_architecture`` would be."""
        return cls([Network.from_architecture(architecture, rng, dtype) for _ in range(_checked_size(size))])

    @classmethod
    def copies(cls, net, size):
        """``size`` identical copies of ``net`` (parameters, buffers, mode): the probe copies of a
        network, to be trained apart from here on."""
        return cls([net] * _checked_size(size))

    @property
    def size(self):
        """E, the number of members."""
        return len(self.members)

    def architecture(self):
        return self.members[0].architecture()

    # ---- modes -------------------------------------------------------------------------------
    def train(self, mode=True):
        """Training mode for the ensemble and every member (BatchNorm uses batch statistics)."""
        for layer in self.layers:
            layer.training = bool(mode)
        for member in self.members:
            member.train(mode)
        return self

    def eval(self):
        """Evaluation mode for the ensemble and every member (BatchNorm uses running statistics)."""
        return self.train(False)

    @property
    def training(self):
        return all(layer.training for layer in self.layers)

    # ---- forward and backward ------------------------------------------------------------------
    def _per_member(self, array, what):
        """``array`` with its leading ensemble axis checked against E."""
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[0] != self.size:
            raise ValueError(f"{what} must have a leading ensemble axis of size {self.size}, got shape {array.shape}")
        return array

    def forward_cached(self, x):
        """``(outputs, caches)``: the outputs (E, N, ...), member e's network applied to ``x[e]``,
        and every stacked layer's cache."""
        y = self.members[0].as_input(self._per_member(x, "inputs"))
        caches = []
        for layer in self.layers:
            y, cache = layer.ensemble_forward(y)
            caches.append(cache)
        return y, caches

    def forward(self, x):
        """Outputs (E, N, ...): member e's network applied to ``x[e]``."""
        return self.forward_cached(x)[0]

    def __call__(self, x):
        return self.forward(x)

    def loss_and_grad(self, x, t, loss):
        """``(losses, grad)``: member e's loss on ``(x[e], t[e])`` (a float64 array of shape (E,)) and
        ``self.grad``, whose row e is its gradient; ``grad`` is overwritten by the next call."""
        t = self._per_member(t, "targets")
        z, caches = self.forward_cached(x)
        losses = np.empty(self.size, np.float64)
        gz = np.empty_like(z)
        for e in range(self.size):
            losses[e], cache = loss.forward(z[e], t[e])
            gz[e] = loss.backward(cache)
        g = gz
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].ensemble_backward(caches[i], g, self._grads[i], need_input_grad=i > 0)
        return losses, self.grad

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self):
        """``{name: array (E, *shape)}``: copies of every parameter and buffer, stacked over the
        members, keyed and ordered as torch's ``state_dict()`` (torch.func.stack_module_state's layout)."""
        return {f"{i}.{name}": array.copy() for i, layer in enumerate(self.layers)
                for name, array in (*layer.params.items(), *layer.buffers.items())}

    def load_state_dict(self, state):
        """Copy a stacked state dict (as :meth:`state_dict` returns) into the members."""
        for key, value in state.items():
            self._per_member(value, f"state dict entry {key}")
        for e, member in enumerate(self.members):
            member.load_state_dict({key: np.asarray(value)[e] for key, value in state.items()})

    def copy(self):
        """An independent copy (parameters, buffers, modes)."""
        return Ensemble(self.members)

    def __repr__(self):
        return f"Ensemble(size={self.size}, member={self.members[0]!r})"
