"""DQN and Double DQN targets for episodic transitions, with a discount flag per transition.

For a transition ``(s, a, r, d, s')`` whose flag d is 0 when the episode (or, with life loss as
a terminal signal, the life) ended at s' and 1 otherwise:

    DQN          y = r + gamma d max_a' Q(theta', s', a')                      (Mnih et al. 2015)
    Double DQN   y = r + gamma d Q(theta', s', argmax_a' Q(theta, s', a'))     (van Hasselt et al. 2016)

theta' the target network's parameters and theta the online network's; argmax takes the first
action on ties (``np.argmax``). DQN Zoo's ``rlax.q_learning`` and ``rlax.double_q_learning``
compute the same target, with ``discount_t = gamma d``. Both are
:func:`refplastic.plasticity.agent.td_targets` with the per-transition discount ``gamma d``,
computed in float64.
"""

import numpy as np

from ..plasticity.agent import td_targets


def _per_transition(name, values, n):
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), one per transition, got {values.shape}")
    return values


def q_learning_targets(rewards, discounts, gamma, next_target_values, next_online_values=None):
    """``y`` (N,) float64: the DQN target from the target network's values at s' (N, A), or the
    Double DQN target when the online network's values at s' (N, A) are given to choose a'.

    ``rewards`` (N,), ``discounts`` (N,) the flags d (0 at a terminal transition), ``gamma`` the
    discount factor."""
    n = len(next_target_values)
    rewards, discounts = _per_transition("rewards", rewards, n), _per_transition("discounts", discounts, n)
    shape = np.shape(next_target_values)
    if next_online_values is not None and np.shape(next_online_values) != shape:
        raise ValueError(f"next_online_values must have the shape of next_target_values {shape}, "
                         f"got {np.shape(next_online_values)}")
    return td_targets(rewards, next_target_values, gamma * discounts, next_online_values)
