"""One DQN or Double DQN learning step on a replayed minibatch, and the target network's copy.

For a batch of B transitions ``(s, a, r, d, s')`` (uint8 frame stacks s, s' scaled to [0, 1] by
:func:`refplastic.rl.nature_cnn.scaled_frames`), one step is

    y = r + gamma d max_a' Q(theta', s', a')                         (DQN)
    y = r + gamma d Q(theta', s', argmax_a' Q(theta, s', a'))        (Double DQN; refplastic.rl.targets)
    L = loss(Q(theta, s, a), y)      on the action taken only: dL/dQ(theta, s, b) = 0 for b != a
    theta <- optimizer step with dL/dtheta

with y held fixed (no gradient flows into the target, nor through the online network's choice
of a'). The loss is any :class:`refplastic.nn.losses.Loss` on the B chosen values: ``mse`` (the
squared error of Lyle et al. eq. 1 and CleanRL), ``huber``, or ``clipped_gradient_l2`` (DQN
Zoo's). The online network is evaluated on s with its caches for the backward pass and on s'
without (Double DQN only); the target network on s' without.

One forward pass of the online network on the 2B stacks (s, s') at once was measured and not
taken: the backward pass then runs over 2B examples (zero cotangents for s'), and that costs
more than the separate forward pass on s' saves (docs/dqn-learner.md).
"""

import numpy as np

from ..plasticity.heads import SelectedAction
from .nature_cnn import scaled_frames
from .targets import q_learning_targets


def learner_step(online, target, optimizer, loss, batch, gamma, double_q=True):
    """One optimiser step of ``online`` on ``batch``; returns ``(loss value, mean_n Q(theta, s_n, a_n))``,
    both from before the step (float).

    ``batch`` maps "observation" and "next_observation" to uint8 stacks (B, 4, 84, 84), "action"
    to ints (B,), "reward" (B,) and "discount" (B,) to the flags d (0 where s' is terminal).
    ``optimizer`` updates ``online.flat`` from ``online.grad``; ``target`` is left unchanged.
    """
    actions = np.asarray(batch["action"])
    next_x = scaled_frames(batch["next_observation"], online.dtype)
    next_target = target.forward(next_x)
    next_online = online.forward(next_x) if double_q else None
    targets = q_learning_targets(batch["reward"], batch["discount"], gamma, next_target, next_online)
    z, caches = online.forward_cached(scaled_frames(batch["observation"], online.dtype))
    chosen = SelectedAction(loss, actions, 1)
    value, cache = chosen.forward(z, targets)
    online.backward(caches, chosen.backward(cache))
    optimizer.step(online.grad)
    return value, float(np.mean(z[np.arange(len(z)), actions], dtype=np.float64))


def update_target(online, target):
    """theta' <- theta: copy the online network's parameters (and buffers, if any) into ``target``."""
    np.copyto(target.flat, online.flat)
    for (_, mine), (_, theirs) in zip(target.named_buffers(), online.named_buffers()):
        np.copyto(mine, theirs)
