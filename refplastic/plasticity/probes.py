"""The probe task: how well copies of a network fit new random targets (Lyle et al. 2023, sec. 3.1).

At a probe point the network has parameters theta_t. On M inputs X from the replay buffer:

    a       = mean over X and outputs of the network's values f(X; theta_t)          (sec. 3.1)
    g_k(x)  = a + sin(10^5 f(x; w_k)),  k = 1..K,  w_k a fresh initialisation of the same
              architecture (K = 10, sec. 5.1)
    theta_k = theta_t trained for S steps (S = 2000) on minibatches of X to fit g_k, by the run's
              optimiser ("identical to that used by the network on its primary objective", sec. 3.1)
    loss_k  = (1 / (M A)) sum_{x in X} ||f(x; theta_k) - g_k(x)||^2    (the final probe loss)

and the plasticity of eq. 5 is ``b - mean_k loss_k`` with the baseline b the targets' variance
(sec. 2.2); the *plasticity loss* between two probe points is the difference of their mean final
probe losses (figure 6: the last probe point minus the first). The probe's network is thrown
away afterwards: training resumes from theta_t.

The K copies train together as one :class:`refplastic.nn.Ensemble`, each copy on its own target
and all on the same minibatch indices; one optimiser over the ensemble's flat parameters is K
optimisers (elementwise updates). The targets are computed in float64 (the sine of 10^5 f needs
f's digits) and rounded to the network's dtype. Choices the paper leaves open (docs/protocol.md):
the probe examples M, the minibatch size, a fresh optimiser state (or a copy of the run's), the
final loss measured on all of X after the last step, and ``f`` meaning the head's values (the
expectation of a two-hot head, whose copies train by cross-entropy to the two-hot targets).
"""

from typing import NamedTuple

import numpy as np

from ..nn import Ensemble, Network

FREQUENCY = 1e5  # sec. 3.1: g(x) = a + sin(10^5 f(x; w_0))


class ProbeResult(NamedTuple):
    """``final_loss`` (K,) float64 on all of X; ``target_variance`` (K,) the baseline b of each
    target; ``curve`` (K, L) each copy's mean training loss (its own loss: MSE, or cross-entropy
    for a two-hot head) over windows of ``log_every`` steps."""

    final_loss: np.ndarray
    target_variance: np.ndarray
    curve: np.ndarray


def probe_targets(architecture, head, x, offset, count, rng):
    """(count, M, A) float64: ``g_k(x) = offset + sin(10^5 values(f(x; w_k)))``, each w_k a fresh
    float64 initialisation of ``architecture`` drawn from ``rng`` in turn, evaluated in eval mode."""
    x = np.asarray(x, dtype=np.float64)
    targets = []
    for _ in range(count):
        fresh = Network.from_architecture(architecture, rng, np.float64).eval()
        targets.append(offset + np.sin(FREQUENCY * head.values(fresh.forward(x))))
    return np.stack(targets)


def run_probe(net, head, x, targets, make_optimizer, steps, batch_size, log_every, rng, gradient_step=None,
              optimizer_state=None, on_step=None):
    """Train ``len(targets)`` copies of ``net`` on ``(x, targets[k])``; the :class:`ProbeResult`.

    ``make_optimizer(flat)`` builds the run's optimiser over a flat vector; ``optimizer_state``
    (the run's ``state_dict()``), if given, is copied into each copy's optimiser. ``rng`` draws the
    minibatch indices, shared by all copies. ``gradient_step(grad, params)`` may change the
    gradient before each step (the run's l2 penalty), in place. ``on_step(done)`` is called after
    each step. ``net`` itself is left unchanged.
    """
    count, m = len(targets), len(x)
    ensemble = Ensemble.copies(net, count)
    flat = ensemble.flat.reshape(-1)
    optimizer = make_optimizer(flat)
    if optimizer_state is not None:
        optimizer.load_state_dict({k: np.tile(v, count) if isinstance(v, np.ndarray) and v.shape == net.flat.shape
                                   else v for k, v in optimizer_state.items()})
    loss = head.regression_loss()
    targets_in_dtype = targets.astype(net.dtype)
    windows = np.zeros((count, -(-steps // log_every)))
    for step in range(steps):
        index = rng.integers(0, m, size=batch_size)
        inputs = np.broadcast_to(x[index], (count, batch_size, *x.shape[1:]))
        losses, grad = ensemble.loss_and_grad(inputs, targets_in_dtype[:, index], loss)
        if gradient_step is not None:
            gradient_step(grad.reshape(-1), flat)
        optimizer.step(grad.reshape(-1))
        windows[:, step // log_every] += losses
        if on_step is not None:
            on_step(step + 1)
    sizes = np.diff(np.minimum(np.arange(windows.shape[1] + 1) * log_every, steps))
    values = np.stack([head.values(z) for z in ensemble.forward(np.broadcast_to(x, (count, *x.shape)))])
    final = np.mean((values.astype(np.float64) - targets) ** 2, axis=(1, 2))
    return ProbeResult(final, targets.var(axis=(1, 2)), windows / sizes)
