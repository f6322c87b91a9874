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

The forward and backward maps run member by member (each member is an ordinary
:class:`~refplastic.nn.Network` whose parameters are views into its row), so every number equals
the one a lone network gives, bit for bit. Buffers (BatchNorm running statistics) stay each
member's own; :meth:`Ensemble.state_dict` stacks them with the parameters, key by key, as
``torch.func.stack_module_state`` does.
"""

import numpy as np

from .network import Network


def _checked_size(size):
    """``size`` if it is an integer >= 1 (a number of members), else a ValueError."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"ensemble size must be an integer >= 1, got {size!r}")
    return size


class Ensemble:
    """Independent copies of ``networks`` (same architecture and dtype), bound to stacked storage."""

    def __init__(self, networks):
        networks = list(networks)
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        for i, net in enumerate(networks):
            if not isinstance(net, Network):
                raise TypeError(f"member {i} is not a refplastic Network: {net!r}")
            if net.architecture() != networks[0].architecture() or net.dtype != networks[0].dtype:
                raise ValueError(f"member {i} differs from member 0 in architecture or dtype; "
                                 "an ensemble's members share both")
        first = networks[0]
        self.dtype = first.dtype
        self.num_parameters = first.num_parameters
        self.parameter_names = list(first.parameter_names)
        self.flat = np.zeros((len(networks), first.num_parameters), self.dtype)
        self.grad = np.zeros_like(self.flat)
        self.members = [net.copy() for net in networks]
        for member, flat, grad in zip(self.members, self.flat, self.grad):
            member.bind_storage(flat, grad)

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
        """Training mode for every member (BatchNorm uses batch statistics)."""
        for member in self.members:
            member.train(mode)
        return self

    def eval(self):
        """Evaluation mode for every member (BatchNorm uses running statistics)."""
        return self.train(False)

    # ---- forward and backward ------------------------------------------------------------------
    def _per_member(self, array, what):
        """``array`` with its leading ensemble axis checked against E."""
        array = np.asarray(array)
        if array.ndim == 0 or array.shape[0] != self.size:
            raise ValueError(f"{what} must have a leading ensemble axis of size {self.size}, got shape {array.shape}")
        return array

    def forward(self, x):
        """Outputs (E, N, ...): member e's network applied to ``x[e]``."""
        x = self._per_member(x, "inputs")
        return np.stack([member.forward(xe) for member, xe in zip(self.members, x)])

    def __call__(self, x):
        return self.forward(x)

    def loss_and_grad(self, x, t, loss):
        """``(losses, grad)``: member e's loss on ``(x[e], t[e])`` (a float64 array of shape (E,)) and
        ``self.grad``, whose row e is its gradient; ``grad`` is overwritten by the next call."""
        x, t = self._per_member(x, "inputs"), self._per_member(t, "targets")
        losses = [member.loss_and_grad(xe, te, loss)[0] for member, xe, te in zip(self.members, x, t)]
        return np.array(losses, dtype=np.float64), self.grad

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self):
        """``{name: array (E, *shape)}``: every parameter and buffer, stacked over the members, keyed
        and ordered as torch's ``state_dict()`` (torch.func.stack_module_state's layout)."""
        states = [member.state_dict() for member in self.members]
        return {key: np.stack([state[key] for state in states]) for key in states[0]}

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
