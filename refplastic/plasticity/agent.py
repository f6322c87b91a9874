"""The DQN agent of the classification MDPs: epsilon-greedy acting and TD targets.

Lyle et al. (2023, sec. 2.1, eq. 1; A.2): the network ``f(theta, s, a)`` is trained on replayed
transitions ``(s, a, r, s')`` to minimise the squared TD error against a stop-gradient target
from the target parameters theta', an older copy of theta:

    DQN          y = r + gamma max_a' Q(theta', s', a')
    Double DQN   y = r + gamma Q(theta', s', argmax_a' Q(theta, s', a'))   (van Hasselt et al. 2016)

(the MDPs are continuing: no transition ends an episode). Acting is epsilon-greedy: with
probability epsilon a uniformly random action, else ``argmax_a Q(theta, s, a)`` (the first on ties).
"""

import numpy as np


def epsilon_greedy(values, epsilon, rng):
    """An action for one state's ``values`` (A,): one uniform draw decides, a second picks a random
    action when it is below ``epsilon``."""
    if rng.random() < epsilon:
        return int(rng.integers(len(values)))
    return int(np.argmax(values))


def td_targets(rewards, next_target_values, discount, next_online_values=None):
    """``y`` (N,) float64 from the rewards (N,) and the next states' values (N, A) under theta'
    (and, for Double DQN, under theta to choose the action): ``y = r + discount * bootstrap``.
    ``discount`` is gamma (a number) or one discount per transition (N,), such as the
    ``gamma d`` of an episodic MDP (:mod:`refplastic.rl.targets`)."""
    next_target_values = np.asarray(next_target_values, dtype=np.float64)
    if next_online_values is None:
        bootstrap = next_target_values.max(axis=1)
    else:
        chosen = np.argmax(next_online_values, axis=1)
        bootstrap = next_target_values[np.arange(len(chosen)), chosen]
    return np.asarray(rewards, dtype=np.float64) + np.asarray(discount, dtype=np.float64) * bootstrap
