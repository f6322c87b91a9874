"""Continual backprop: replace the least useful mature units a little at every step.

Dohare, Hernandez-Garcia, Lan, Rahman, Mahmood and Sutton (2024), "Loss of plasticity in deep
continual learning", Nature 632, Methods ("Continual backpropagation", equation (1) and
algorithm 1); their code is shibhansh/loss-of-plasticity, ``lop/algos/gnt.py`` (``GnT``, dense
networks), ``convGnT.py`` and ``cbp_linear.py`` / ``cbp_conv.py``. For each hidden layer
(:mod:`refplastic.plasticity.hidden_units`), after each optimiser step, with ``h`` the units'
activity on the batch that step used:

    a_i    <- a_i + 1                                            age
    f_i    <- eta f_i + (1 - eta) mean(h_i)                      running mean activity
    y_i     = |h_i|                       ("contribution", the default: equation (1))
            = |h_i - f_i / (1 - eta^a_i)| ("mean_corrected": gnt.py's "zero_contribution")
    u_i    <- eta u_i + (1 - eta) mean(y_i) sum_k |w_out[k, i]|  utility
    U_i     = u_i / (1 - eta^a_i)                                bias-corrected utility
    c      <- c + rho #{i : a_i > m}                             units owed (a fraction)
    replace the floor(c) mature units (a_i > m) of smallest U_i, and c <- c - floor(c)

``mean`` runs over the batch (and a channel's positions); ``sum_k`` over every weight that reads
unit i (for a channel after a Flatten, its H W columns). A replaced unit gets incoming weights
drawn as at initialisation (PyTorch's default, gnt.py's ``init='default'``), bias 0 and its
normalisation entries back to weight 1, bias 0 (``cbp_linear.py``); its outgoing weights become
0, so the network's function does not change; ``u_i = f_i = a_i = 0``; every optimiser buffer
is zeroed on every entry changed, the step count kept. With "mean_corrected", the removed unit's
mean contribution moves into the next layer's bias first, ``b_out[k] += sum_{cols of i}
w_out[k, col] f_i / (1 - eta^a_i)``, so the output is unchanged in expectation.

What was checked in their code, and where this follows it or not:

- gnt.py updates the utility with ``mean_k |w_out|`` where equation (1) has ``sum_k``: a factor
  of the layer's fan-out, the same for every unit of a layer, so the ranking is the same; the
  sum of the paper is used here.
- gnt.py bias-corrects the utility and the mean activity as Adam does (``1 - eta^age`` with the
  age after its increment) and ranks by the corrected utility; so does this class. Equation (1)
  and algorithm 1 of the paper rank by ``u`` itself.
- The count: ``rho`` times the number of mature units, accumulated (``cbp_linear.py``, and gnt.py
  with ``accumulate=True``; algorithm 1 replaces one unit when ``c > 1``); gnt.py's default
  instead replaces one unit with probability ``rho #mature`` when that is below 1.
- Ties in U are broken towards the lower index (a stable sort; torch's ``topk`` leaves them
  unspecified).
- gnt.py's transfer to the next bias reads ``mean_feature_act`` after ``test_features`` has set
  it to 0 for the replaced units, so there it adds nothing; here the transfer uses the mean
  before the reset, and only with "mean_corrected", the utility of the 2021 version of the
  method (Dohare, Sutton and Mahmood, "Continual backprop: stochastic gradient descent with
  persistent randomness", arXiv:2108.06325) with which it was proposed.
- AdamGnT keeps a step count per entry and restarts it for replaced units; refplastic's Adam
  keeps one count (as torch and optax do), so only the moments are zeroed.

Coefficients, as module constants: eta = 0.99 ("set to 0.99 in all experiments", Methods), and
rho = 1e-4 with m = 10,000 from their reinforcement-learning configuration
(``lop/rl/cfg/ant/cbp.yml``: ``rr: 1e-4``, ``mt: 10000``, contribution utility, Adam), the
setting closest to a DQN agent; their supervised settings use m = 100 (permuted MNIST, ImageNet)
with rho from 1e-6 to 3e-4.
"""

import numpy as np

from ..nn.flatten import Flatten
from .hidden_units import hidden_layers, reinitialise_incoming, unit_rows, zero_moments, zero_outgoing

DECAY_RATE = 0.99  # eta: Dohare et al. (2024), Methods, "set to 0.99 in all experiments"
REPLACEMENT_RATE = 1e-4  # rho: loss-of-plasticity lop/rl/cfg/ant/cbp.yml, rr
MATURITY_THRESHOLD = 10_000  # m: loss-of-plasticity lop/rl/cfg/ant/cbp.yml, mt
UTILITIES = ("contribution", "mean_corrected")


class ContinualBackprop:
    """Continual backprop's state for the hidden layers of ``net`` (see the module docstring).

    ``step(net, optimizer, hidden_outputs, rng)`` after each optimiser step; ``state_dict()`` /
    ``load_state_dict()`` for checkpoints: plain arrays, one set per hidden layer ``i`` (the
    index of its Linear or Conv2d layer): ``"i.utility"``, ``"i.mean_activity"`` (float64,
    one per unit), ``"i.age"`` (int64) and ``"i.units_owed"`` (float64 scalar, the fraction c).
    """

    def __init__(self, net, replacement_rate=REPLACEMENT_RATE, maturity_threshold=MATURITY_THRESHOLD,
                 decay_rate=DECAY_RATE, utility="contribution"):
        if utility not in UTILITIES:
            raise ValueError(f"utility must be one of {UTILITIES}, got {utility!r}")
        if not 0 <= replacement_rate <= 1:
            raise ValueError(f"replacement_rate must be in [0, 1], got {replacement_rate}")
        if not 0 <= decay_rate < 1:
            raise ValueError(f"decay_rate must be in [0, 1), got {decay_rate}")
        if maturity_threshold < 0 or maturity_threshold != int(maturity_threshold):
            raise ValueError(f"maturity_threshold must be a non-negative integer, got {maturity_threshold}")
        self.replacement_rate = float(replacement_rate)
        self.maturity_threshold = int(maturity_threshold)
        self.decay_rate = float(decay_rate)
        self.utility_kind = utility
        self.layers = hidden_layers(net)
        if utility == "mean_corrected":
            for layer in self.layers:
                if not all(isinstance(net.layers[t], Flatten) for t in layer.after_activation):
                    raise ValueError(f"the mean-corrected utility moves a unit's mean into layer {layer.outgoing}'s "
                                     f"bias, which needs that layer to read layer {layer.activation}'s output "
                                     "directly (through a Flatten at most)")
        self.state = {}
        for layer in self.layers:
            self.state[layer.incoming] = {"utility": np.zeros(layer.width), "mean_activity": np.zeros(layer.width),
                                          "age": np.zeros(layer.width, np.int64), "units_owed": np.zeros(())}

    def step(self, net, optimizer, hidden_outputs, rng):
        """Update ages and utilities with ``hidden_outputs`` and replace the units owed.

        ``hidden_outputs[k]`` is the activity of the k-th hidden layer on the batch of the step
        just taken, (N, C) or (N, C, H, W): from that step's forward pass,
        :func:`refplastic.plasticity.hidden_units.activations_from_caches` (free), or
        ``net.layer_outputs(x)`` (one more forward pass). Returns the number replaced per layer.
        """
        if len(hidden_outputs) != len(self.layers):
            raise ValueError(f"expected the outputs of {len(self.layers)} hidden layers, got {len(hidden_outputs)}")
        replaced = []
        for layer, h in zip(self.layers, hidden_outputs):
            units = self._units_to_replace(net, layer, np.asarray(h))
            if units.size:
                self._replace(net, optimizer, layer, units, rng)
            replaced.append(int(units.size))
        return replaced

    def _units_to_replace(self, net, layer, h):
        if h.ndim < 2 or h.shape[1] != layer.width:
            raise ValueError(f"the outputs of layer {layer.incoming} must have {layer.width} units on axis 1, "
                             f"got shape {h.shape}")
        s, eta = self.state[layer.incoming], self.decay_rate
        samples = np.moveaxis(h, 1, -1).reshape(-1, layer.width).astype(np.float64)
        s["age"] += 1
        correction = 1 - eta ** s["age"]
        s["mean_activity"] *= eta
        s["mean_activity"] += (1 - eta) * samples.mean(axis=0)
        if self.utility_kind == "mean_corrected":
            samples = samples - s["mean_activity"] / correction
        s["utility"] *= eta
        s["utility"] += (1 - eta) * np.abs(samples).mean(axis=0) * self._outgoing_magnitude(net, layer)
        mature = np.flatnonzero(s["age"] > self.maturity_threshold)
        if mature.size == 0:
            return mature
        s["units_owed"] += self.replacement_rate * mature.size
        count = int(s["units_owed"])
        s["units_owed"] -= count
        corrected = s["utility"][mature] / correction[mature]
        return mature[np.argsort(corrected, kind="stable")[:count]]

    @staticmethod
    def _outgoing_magnitude(net, layer):
        """``sum_k |w_out[k, i]|`` per unit i, over every weight that reads unit i (float64)."""
        weight = net.layers[layer.outgoing].params["weight"]
        per_column = np.abs(weight).sum(axis=tuple(a for a in range(weight.ndim) if a != 1), dtype=np.float64)
        return per_column.reshape(layer.width, -1).sum(axis=1)

    def _replace(self, net, optimizer, layer, units, rng):
        s = self.state[layer.incoming]
        if self.utility_kind == "mean_corrected":
            self._transfer_mean(net, layer, units, s["mean_activity"][units] / (1 - self.decay_rate ** s["age"][units]))
        changed = reinitialise_incoming(net, layer, units, rng, fresh_bias=False)
        changed += zero_outgoing(net, layer, units)
        zero_moments(net, optimizer, changed)
        for name in ("utility", "mean_activity", "age"):
            s[name][units] = 0

    @staticmethod
    def _transfer_mean(net, layer, units, means):
        """``b_out += sum over the units' outgoing weights of w_out f``: the next layer's bias takes
        the mean contribution of the units about to be replaced."""
        target = net.layers[layer.outgoing]
        if "bias" not in target.params:
            return
        columns = unit_rows(units, layer.width, layer.width * layer.outgoing_block)
        per_column = np.repeat(means, layer.outgoing_block)
        target.params["bias"] += np.einsum("oc...,c->o", target.params["weight"][:, columns], per_column
                                           ).astype(net.dtype)

    def state_dict(self):
        """Copies of the state: ``{"i.utility": ..., "i.mean_activity": ..., "i.age": ..., "i.units_owed": ...}``."""
        return {f"{i}.{name}": array.copy() for i, arrays in self.state.items() for name, array in arrays.items()}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` output (arrays as read back from HDF5); keys, shapes and
        kinds must match, and nothing changes unless all do."""
        mine = self.state_dict()
        missing, unexpected = sorted(set(mine) - set(state)), sorted(set(state) - set(mine))
        if missing or unexpected:
            raise ValueError(f"continual backprop state mismatch: missing {missing}, unexpected {unexpected}")
        values = {}
        for key, current in mine.items():
            value = np.asarray(state[key])
            kind_ok = np.issubdtype(value.dtype, np.integer) if current.dtype.kind == "i" else \
                np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
            if value.shape != current.shape or not kind_ok:
                raise ValueError(f"{key}: expected {current.dtype} of shape {current.shape}, got {value.dtype} "
                                 f"{value.shape}")
            values[key] = value.astype(current.dtype)
        for key, value in values.items():
            i, name = key.split(".", 1)
            self.state[int(i)][name] = value
