"""Value heads: how a network's outputs become action values, and the losses that fit them.

A network's output z has, per example, ``per_action`` outputs for each of A actions:

    scalar head    per_action = 1:  Q(s, a) = z[a]
    two-hot head   per_action = B:  Q(s, a) = sum_b softmax(z[a, :])_b c_b   over the support c_1 < ... < c_B
                   (Lyle et al. 2023 sec. 6.2; the encoding is :mod:`refplastic.plasticity.twohot`)

Each head has two losses, both :class:`refplastic.nn.losses.Loss` objects (forward and backward):

- the TD loss on the action each transition took, against the TD targets y (N,): squared error
  (Lyle et al. eq. 1) or Huber for the scalar head; cross-entropy to ``two_hot(y)`` for the two-hot head;
- the regression loss of every action's value against targets (N, A), the probe task of sec. 3.1:
  mean squared error for the scalar head; cross-entropy to the two-hot encoding of every target for
  the two-hot head.

Only forward and backward are defined: these losses train; the curvature of the probe objective
(:mod:`refplastic.plasticity.probes`) is that of a mean squared error on the outputs.
"""

import numpy as np

from ..nn.losses import CrossEntropyLoss, Loss, make_loss
from .twohot import expectation, two_hot


class SelectedAction(Loss):
    """``inner`` on the outputs of the action each example took: z viewed (N, A, per_action),
    row n's block ``a_n`` against target row ``y_n``; the gradient is zero on the other blocks."""

    def __init__(self, inner, actions, per_action):
        super().__init__()
        self.inner, self.actions, self.per_action = inner, np.asarray(actions), per_action
        self.name = f"{inner.name} on the selected action"

    def forward(self, z, y):
        blocks = z.reshape(len(z), -1, self.per_action)
        chosen = blocks[np.arange(len(z)), self.actions]
        value, cache = self.inner.forward(chosen, np.asarray(y).reshape(len(z), -1))
        return value, (cache, blocks.shape)

    def backward(self, cache):
        inner_cache, shape = cache
        chosen = self.inner.backward(inner_cache)
        g = np.zeros(shape, dtype=chosen.dtype)
        g[np.arange(shape[0]), self.actions] = chosen
        return g.reshape(shape[0], -1)


class TwoHotCrossEntropy(Loss):
    """Cross-entropy of logits z (N, K B), viewed as N K rows of B, to the two-hot encodings of
    values (N, K) over ``support`` (B,): ``L = -(1/(N K)) sum_{n,k} sum_b two_hot(v_nk)_b log softmax(z_nk)_b``."""

    name = "two-hot cross-entropy"

    def __init__(self, support):
        super().__init__()
        self.support = np.asarray(support, dtype=np.float64)
        self.cross_entropy = CrossEntropyLoss()

    def forward(self, z, values):
        bins = len(self.support)
        logits = z.reshape(-1, bins)
        targets = two_hot(np.asarray(values, dtype=np.float64).reshape(-1), self.support).astype(z.dtype)
        value, cache = self.cross_entropy.forward(logits, targets)
        return value, (cache, z.shape)

    def backward(self, cache):
        inner, shape = cache
        return self.cross_entropy.backward(inner).reshape(shape)


class ScalarHead:
    """One output per action: ``Q(s, a) = z[a]``."""

    per_action = 1

    def __init__(self, num_actions):
        self.num_actions = num_actions

    @property
    def outputs(self):
        return self.num_actions

    def values(self, z):
        return z

    def td_loss(self, kind, actions):
        """``kind`` ("mse" or "huber") of Q(s_n, a_n) against the TD targets."""
        return SelectedAction(make_loss(kind), actions, 1)

    def regression_loss(self):
        return make_loss("mse")


class TwoHotHead:
    """B logits per action over ``support``: ``Q(s, a) = E_{softmax(z[a])}[c]``."""

    def __init__(self, num_actions, support):
        self.num_actions = num_actions
        self.support = np.asarray(support, dtype=np.float64)
        self.per_action = len(self.support)

    @property
    def outputs(self):
        return self.num_actions * self.per_action

    def values(self, z):
        logits = z.reshape(len(z), self.num_actions, self.per_action)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return expectation(shifted / shifted.sum(axis=-1, keepdims=True), self.support).astype(z.dtype)

    def td_loss(self, kind, actions):
        """Cross-entropy to ``two_hot(y)`` on the taken action's logits (``kind`` does not apply)."""
        return SelectedAction(TwoHotCrossEntropy(self.support), actions, self.per_action)

    def regression_loss(self):
        return TwoHotCrossEntropy(self.support)
