"""The interventions of Lyle et al. (2023), section 6.2, and two from the wider literature.

Each acts in place on a :class:`refplastic.nn.Network` (parameters are views into ``net.flat``)
and on the flat state buffers of a :mod:`refplastic.nn.optim` optimizer, which are aligned with
``net.flat``; randomness comes only from the ``numpy.random.Generator`` passed in. They compose:
a run may apply weight decay every step, shrink-and-perturb at each target update and keep
LayerNorm in the architecture. When each is applied in the protocol, with its coefficients and
their sources, is in ``docs/interventions.md``. Continual backprop, which keeps state between
steps, is :class:`refplastic.plasticity.continual_backprop.ContinualBackprop`.

Shrink-and-perturb coefficients (Lyle et al. do not state theirs):

    SHRINK = 0.4, PERTURB = 0.1   Ash & Adams (2020)'s code, github.com/JordanAsh/warm_start,
                                  run.py: the defaults of --shrink and --perturb, and the
                                  command of its README; applied there once per round of new
                                  data, the event that a target update is here.

Other code bases apply it at every optimiser step, so with coefficients near (1, 0) that do not
carry over to once per target update: Plasticine (RLE-Foundation/Plasticine,
``plasticine_shrink_and_perturb``) uses shrink 0.999999 and perturb 1 - shrink towards the
*initial* parameters; loss-of-plasticity (shibhansh/loss-of-plasticity, ``lop/algos/bp.py``)
uses weight decay and Gaussian noise of standard deviation 1e-4 to 1e-6.

Weight decay (Lyle et al., section 6.2: "weight decay, setting the l2 penalty coefficient to
1e-5"): :func:`l2_penalty` with ``WEIGHT_DECAY = 1e-5``.
"""

import numpy as np

from ..nn.linear import Linear
from ..nn.network import Network
from ..stats.units import dormant_units
from .continual_backprop import ContinualBackprop
from .hidden_units import hidden_layers, reinitialise_incoming, zero_moments, zero_outgoing

__all__ = ["SHRINK", "PERTURB", "WEIGHT_DECAY", "reset_last_layer", "shrink_and_perturb", "l2_penalty",
           "reset_optimizer_state", "redo", "ContinualBackprop", "brownian_step"]

SHRINK = 0.4  # Ash & Adams (2020), github.com/JordanAsh/warm_start run.py, default of --shrink
PERTURB = 0.1  # Ash & Adams (2020), github.com/JordanAsh/warm_start run.py, default of --perturb
WEIGHT_DECAY = 1e-5  # Lyle et al. (2023), section 6.2: "l2 penalty coefficient to 1e-5"


def reset_last_layer(net, optimizer, rng):
    """Re-initialise the last Linear layer and zero the optimiser state of its entries.

        W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))    (PyTorch's default, as at initialisation)
        m, v, ... = 0 on the entries of W and b      (every buffer in ``optimizer.buffers``)

    The step count is kept, so Adam's bias correction is not restarted for these entries.

    Source: Lyle et al. (2023), section 6.2, "resetting the last layer of the network at each
    target network update, a simplified variant of the scheme proposed by Nikishin et al.
    (2022)". Nikishin et al.'s code (evgenii-nikishin/rl_with_resets, ``train_dense.py``) builds a
    whole new agent, optimiser included; the ReDo authors' ``LayerReset`` (google/dopamine,
    ``dopamine/labs/redo/weight_recyclers.py``), which "implements the primacy bias paper",
    re-draws the reset weights from the initialiser and zeroes their Adam moments ``mu`` and
    ``nu``, keeping the step count, as here. ``optimizer=None`` resets the parameters only.
    """
    index = [i for i, layer in enumerate(net.layers) if isinstance(layer, Linear)]
    if not index:
        raise ValueError("the network has no Linear layer to reset")
    i = index[-1]
    net.layers[i].reset_parameters(rng)
    zero_moments(net, optimizer, [(i, name, ...) for name in net.layers[i].params])


def shrink_and_perturb(net, rng, shrink=SHRINK, perturb=PERTURB):
    """``theta <- shrink theta + perturb theta_fresh``, in place.

    ``theta_fresh`` is a fresh initialisation of the same architecture,
    ``Network.from_architecture(net.architecture(), rng, net.dtype)``, drawn from ``rng``; the
    products and the sum are formed in the network's dtype. Every parameter is shrunk and
    perturbed (normalisation weights too, towards their initial 1); buffers (BatchNorm running
    statistics) and the optimiser state are not touched: Ash & Adams build a new optimiser each
    round, which :func:`reset_optimizer_state` does if wanted.

    Source: Ash & Adams (2020), "On warm-starting neural network training", and their code
    (github.com/JordanAsh/warm_start, ``run.py``, ``shrink_perturb``: ``shrink * p2.data +
    perturb * p1.data`` with ``p1`` a newly built model, "using a randomly-initialized model as
    a noise source respects how different kinds of parameters are often initialized
    differently"). Lyle et al. (2023), section 6.2, apply it "each time the target network is
    updated"; the default coefficients are the module's ``SHRINK`` and ``PERTURB``.
    """
    fresh = Network.from_architecture(net.architecture(), rng, net.dtype)
    dt = net.dtype
    np.multiply(net.flat, dt(shrink), out=net.flat)
    net.flat += dt(perturb) * fresh.flat


def l2_penalty(grad, params, coefficient=WEIGHT_DECAY):
    """``grad += coefficient * params``, in place; returns ``grad``.

    The gradient of the penalty ``(coefficient / 2) ||theta||^2`` added to the loss: *coupled*
    L2, which the optimiser then rescales like the rest of the gradient. Applied before
    ``Adam.step`` it is exactly torch's ``Adam(weight_decay=coefficient)`` (and
    ``refplastic.nn.optim.Adam``'s), not AdamW's decoupled decay ``theta <- theta (1 - lr
    coefficient)``.

    Source: Lyle et al. (2023), section 6.2: "weight decay, setting the l2 penalty coefficient
    to 1e-5". An "l2 penalty" is a term of the loss, so coupled; it is also how the JAX code of
    the same group adds weight decay to DQN (google/dopamine, ``dopamine/labs/redo/
    recycled_dqn_agents.py``: ``optax.chain(optax.add_decayed_weights(weight_decay),
    optimizer)``, the decayed weights added to the gradient before Adam). The paper's
    "coefficient" is read as torch's ``weight_decay``, the gradient's factor; the penalty
    ``coefficient ||theta||^2`` would double it.
    """
    grad += grad.dtype.type(coefficient) * params
    return grad


def reset_optimizer_state(optimizer):
    """Forget the optimiser's state (step count and every buffer), as if newly built; the
    parameters are not touched.

    Source: Lyle et al. (2023), section 4.1 and figure 1: with Adam, a change of task leaves the
    moment estimates ``m`` and ``v`` stale, so that the first updates after it are a large number
    divided by a small one; resetting only the optimiser state at each change (each target
    update, or each re-drawing of labels) separates that cause of lost plasticity from the
    parameters' own state.
    """
    optimizer.reset()


def redo(net, optimizer, x, tau, rng):
    """ReDo: recycle the tau-dormant units of every hidden layer; returns the count per layer.

    On the batch ``x``, unit i of a hidden layer (:mod:`refplastic.plasticity.hidden_units`) is
    dormant when

        s_i = E|h_i| / ((1/C) sum_k E|h_k|) <= tau

    (:func:`refplastic.stats.units.dormant_units`; a channel's |h| is averaged over positions
    too). All scores come from one forward pass before anything changes. Then, for each layer in
    turn, the dormant units get fresh incoming weights and biases (drawn as at initialisation,
    weights before biases) and their per-unit normalisation entries go back to weight 1, bias 0;
    after all layers, their outgoing weights are set to 0 (so a weight both incoming to a
    recycled unit and outgoing from one ends at 0, as in ReDo's code). Every optimiser buffer is
    zeroed on every entry changed; the step count is kept.

    Source: Sokar, Agarwal, Castro and Evci (2023), "The dormant neuron phenomenon in deep
    reinforcement learning", section 4 and algorithm 1. Checked against their code (google/
    dopamine, ``dopamine/labs/redo/weight_recyclers.py``, ``NeuronRecycler``): scores divided by
    ``mean + 1e-9`` (here exactly, and 0 for a layer that is all zero), incoming weights from the
    network's initialiser, outgoing weights 0, Adam's ``mu`` and ``nu`` zeroed where a weight was
    recycled, the count kept. There the bias is set to 0, flax's initial bias; here it is drawn
    as PyTorch initialises it, as Plasticine's ``plasticine_redo`` does (timoklein/redo, built on
    CleanRL, sets it to 0): either way the unit restarts from its initial distribution. Their
    code zeroes the moments of weights only; here the bias and normalisation entries' moments
    are zeroed too, since they changed. Conv -> Flatten -> Linear: a channel's outgoing weights
    are its H W contiguous columns (Plasticine's ``repeat_interleave``, for NCHW as here).
    LayerNorm: ReDo's networks (``dopamine/labs/redo/networks.py``) have none; as
    loss-of-plasticity's ``CBPLinear`` does, a recycled unit's LayerNorm (and BatchNorm) entries
    are reset and the unit is scored on the activation's output, after the normalisation.
    Without normalisation the network's outputs on ``x`` are unchanged when tau = 0; with a
    LayerNorm over the units, re-drawing one unit's weights moves the layer's mean and variance,
    so the others' outputs move a little.
    """
    layers = hidden_layers(net)
    outputs = net.layer_outputs(x)
    dormant = [np.flatnonzero(dormant_units(outputs[layer.activation], tau)) for layer in layers]
    for layer, units in zip(layers, dormant):
        if units.size:
            zero_moments(net, optimizer, reinitialise_incoming(net, layer, units, rng, fresh_bias=True))
    for layer, units in zip(layers, dormant):
        if units.size:
            zero_moments(net, optimizer, zero_outgoing(net, layer, units))
    return [int(units.size) for units in dormant]


def brownian_step(params, update_norm, rng):
    """``params += update_norm * z / ||z||``, ``z ~ N(0, I)``: a random step of a given length.

    The twin trajectory of Lyle et al. (2023), section 4.2 and appendix A.1: both trajectories
    start from the same parameters; one follows the gradient-based optimiser, the other, after
    each of its steps, "add[s] a Gaussian perturbation to the parameters with norm equal to the
    size of the gradient-based optimizer update", ``update_norm = ||theta_{t+1} - theta_t||`` of
    the first (computed by the caller in float64). The direction is drawn and normalised in
    float64 and the step cast to the dtype of ``params``.
    """
    z = rng.standard_normal(params.shape)
    params += (float(update_norm) / np.linalg.norm(z) * z).astype(params.dtype, copy=False)
