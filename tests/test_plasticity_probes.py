"""The probe task and the value heads: the target formula, the batched probe against separate
probes, and the heads' losses against finite differences."""

import numpy as np
import pytest

from refplastic.nn import Network
from refplastic.nn.optim import Adam
from refplastic.plasticity.architectures import cnn, mlp
from refplastic.plasticity.heads import ScalarHead, SelectedAction, TwoHotCrossEntropy, TwoHotHead
from refplastic.plasticity.probes import probe_targets, run_probe
from refplastic.plasticity.twohot import expectation, value_support
from refplastic.nn.losses import make_loss

SHAPE = (1, 6, 6)


def small(arch, outputs=3, layernorm=False, dtype=np.float64, seed=0):
    architecture = (mlp(SHAPE, 8, outputs, layernorm) if arch == "mlp"
                    else cnn(SHAPE, 2, 8, outputs, layernorm))
    return architecture, Network.from_architecture(architecture, np.random.default_rng(seed), dtype)


def test_probe_targets_are_a_plus_sine_of_a_fresh_network():
    """g_k(x) = a + sin(10^5 f(x; w_k)), w_k drawn in turn from the generator (sec. 3.1)."""
    architecture, _ = small("mlp")
    x = np.random.default_rng(1).random((5, *SHAPE))
    targets = probe_targets(architecture, ScalarHead(3), x, 2.5, 3, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    for k in range(3):
        fresh = Network.from_architecture(architecture, rng)
        np.testing.assert_array_equal(targets[k], 2.5 + np.sin(1e5 * fresh.forward(x)))
    assert targets.shape == (3, 5, 3) and np.all(np.abs(targets - 2.5) <= 1)


@pytest.mark.parametrize("arch,layernorm", [("mlp", False), ("mlp", True), ("cnn", False)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_batched_probe_is_ten_separate_probes(arch, layernorm, dtype):
    """Ten copies trained as one ensemble equal ten lone copies, each with its own Adam, trained on
    the same minibatch indices (bit for bit, or 1e-12 in float64 and 1e-5 in float32)."""
    architecture, net = small(arch, layernorm=layernorm, dtype=dtype)
    x = np.random.default_rng(1).random((32, *SHAPE)).astype(dtype)
    head = ScalarHead(3)
    targets = probe_targets(architecture, head, x, 0.3, 10, np.random.default_rng(2))
    result = run_probe(net, head, x, targets, lambda flat: Adam(flat, lr=1e-2), steps=12, batch_size=8, log_every=5,
                       rng=np.random.default_rng(3))
    index_rng = np.random.default_rng(3)
    indices = [index_rng.integers(0, 32, size=8) for _ in range(12)]
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for k in range(10):
        copy = net.copy()
        optimizer = Adam(copy.flat, lr=1e-2)
        losses = []
        for index in indices:
            value, grad = copy.loss_and_grad(x[index], targets[k][index].astype(dtype), make_loss("mse"))
            optimizer.step(grad)
            losses.append(value)
        final = np.mean((copy.forward(x).astype(np.float64) - targets[k]) ** 2)
        np.testing.assert_allclose(result.final_loss[k], final, rtol=tolerance)
        np.testing.assert_allclose(result.curve[k], [np.mean(losses[:5]), np.mean(losses[5:10]), np.mean(losses[10:])],
                                   rtol=tolerance)
    np.testing.assert_array_equal(result.target_variance, targets.var(axis=(1, 2)))


def test_the_probe_leaves_the_network_and_can_copy_the_optimizer_state():
    architecture, net = small("mlp")
    before = net.flat.copy()
    x = np.random.default_rng(1).random((16, *SHAPE))
    targets = probe_targets(architecture, ScalarHead(3), x, 0.0, 2, np.random.default_rng(2))
    main = Adam(net.flat.copy(), lr=1e-2)
    main.step(np.ones(net.num_parameters))
    fresh = run_probe(net, ScalarHead(3), x, targets, lambda f: Adam(f, lr=1e-2), 3, 4, 3, np.random.default_rng(0))
    copied = run_probe(net, ScalarHead(3), x, targets, lambda f: Adam(f, lr=1e-2), 3, 4, 3, np.random.default_rng(0),
                       optimizer_state=main.state_dict())
    assert np.array_equal(net.flat, before)
    assert not np.array_equal(fresh.final_loss, copied.final_loss)


def finite_difference_gradient(loss, z, t, h=1e-6):
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += h
        zm[i] -= h
        g[i] = (loss(zp, t) - loss(zm, t)) / (2 * h)
    return g


@pytest.mark.parametrize("which", ["mse", "huber", "twohot"])
def test_the_td_losses_differentiate_the_chosen_action_only(which):
    rng = np.random.default_rng(0)
    actions, y = rng.integers(0, 4, size=6), rng.normal(size=6) * 2 + 5
    if which == "twohot":
        support = np.linspace(0, 10, 11)
        loss, z = SelectedAction(TwoHotCrossEntropy(support), actions, 11), rng.normal(size=(6, 44))
    else:
        loss, z = SelectedAction(make_loss(which), actions, 1), rng.normal(size=(6, 4)) * 3 + 5
    value, cache = loss.forward(z, y)
    grad = loss.backward(cache)
    np.testing.assert_allclose(grad, finite_difference_gradient(loss, z, y), atol=1e-8)
    blocks = grad.reshape(6, 4, -1)
    others = np.ones((6, 4), bool)
    others[np.arange(6), actions] = False
    assert np.all(blocks[others] == 0)
    if which == "mse":
        assert value == pytest.approx(np.mean((z[np.arange(6), actions] - y) ** 2))


def test_the_two_hot_head_values_and_probe_loss():
    support = value_support(0.9, 21)
    head = TwoHotHead(3, support)
    z = np.random.default_rng(0).normal(size=(5, 3 * 21))
    logits = z.reshape(5, 3, 21)
    p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(head.values(z), expectation(p, support), rtol=1e-13)
    targets = np.random.default_rng(1).uniform(0, 10, size=(5, 3))
    loss = head.regression_loss()
    value, cache = loss.forward(z, targets)
    np.testing.assert_allclose(loss.backward(cache), finite_difference_gradient(loss, z, targets), atol=1e-8)
    assert head.outputs == 63 and ScalarHead(3).outputs == 3
