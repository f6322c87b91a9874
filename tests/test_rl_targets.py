"""DQN and Double DQN targets with per-transition discounts, and DQN Zoo's clipped-gradient L2 loss,
against hand computations, torch and JAX (float64)."""

import numpy as np
import pytest
import torch

from refplastic.nn import ClippedGradientL2Loss, HuberLoss, make_loss
from refplastic.rl.targets import q_learning_targets

REWARDS = np.array([1.0, 0.0, -1.0])
DISCOUNTS = np.array([1.0, 0.0, 1.0])
NEXT_TARGET = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, -6.0]])
NEXT_ONLINE = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # chooses a' = 0, 1, 1


def test_dqn_and_double_dqn_targets_by_hand():
    # DQN: max over the target network's values; the terminal transition (d = 0) keeps its reward only
    assert np.array_equal(q_learning_targets(REWARDS, DISCOUNTS, 0.5, NEXT_TARGET), [1 + 0.5 * 2, 0, -1 + 0.5 * 5])
    # Double DQN: the online network chooses a' (0, 1, 1), the target network values it (1, 4, -6)
    assert np.array_equal(q_learning_targets(REWARDS, DISCOUNTS, 0.5, NEXT_TARGET, NEXT_ONLINE),
                          [1 + 0.5 * 1, 0, -1 + 0.5 * -6])
    y = q_learning_targets(REWARDS, DISCOUNTS, 0.5, NEXT_TARGET.astype(np.float32), NEXT_ONLINE)
    assert y.dtype == np.float64


def test_terminal_transitions_ignore_the_next_state():
    big = NEXT_TARGET.copy()
    big[1] = 1e300
    assert q_learning_targets(REWARDS, DISCOUNTS, 0.99, big)[1] == 0.0
    assert q_learning_targets(REWARDS, DISCOUNTS, 0.99, big, NEXT_ONLINE)[1] == 0.0


def test_target_shapes_are_checked():
    with pytest.raises(ValueError, match=r"discounts must have shape \(3,\)"):
        q_learning_targets(REWARDS, DISCOUNTS[:2], 0.99, NEXT_TARGET)
    with pytest.raises(ValueError, match=r"rewards must have shape \(3,\)"):
        q_learning_targets(REWARDS[:, None], DISCOUNTS, 0.99, NEXT_TARGET)
    with pytest.raises(ValueError, match="next_online_values must have the shape"):
        q_learning_targets(REWARDS, DISCOUNTS, 0.99, NEXT_TARGET, NEXT_ONLINE[:, :1])


# ---- DQN Zoo's loss: td = y - q, rlax.clip_gradient(td, -b, b), rlax.l2_loss, jnp.mean ----------------
Q = np.array([0.5, -0.2, 3.0, 0.01])  # targets 0: d = q, d / M = (0.125, -0.05, 0.75, 0.0025) with M = 4


def test_clipped_gradient_l2_by_hand():
    loss = make_loss("clipped_gradient_l2")
    assert isinstance(loss, ClippedGradientL2Loss) and loss.bound == 1 / 32
    value, cache = loss.forward(Q, np.zeros(4))
    assert value == pytest.approx(0.5 * (0.25 + 0.04 + 9 + 0.0001) / 4, rel=1e-15)
    # the clip acts on each element's share d / M of the mean's gradient, not on d
    np.testing.assert_array_equal(loss.backward(cache), [1 / 32, -1 / 32, 1 / 32, 0.0025])
    np.testing.assert_array_equal(loss.backward_r(cache, np.ones(4)), [0, 0, 0, 0.25])
    summed = ClippedGradientL2Loss(reduction="sum", bound=0.1)
    value, cache = summed.forward(Q, np.zeros(4))
    assert value == pytest.approx(0.5 * (0.25 + 0.04 + 9 + 0.0001), rel=1e-15)
    np.testing.assert_array_equal(summed.backward(cache), [0.1, -0.1, 0.1, 0.01])


class ClipGradient(torch.autograd.Function):
    """rlax.clip_gradient in torch: the identity, its VJP clips the cotangent element by element."""

    @staticmethod
    def forward(ctx, x, low, high):
        ctx.low, ctx.high = low, high
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g.clamp(ctx.low, ctx.high), None, None


@pytest.mark.parametrize("bound", [1 / 32, 0.2])
def test_clipped_gradient_l2_against_torch(bound):
    rng = np.random.default_rng(0)
    z, t, rz = rng.normal(size=12), rng.normal(size=12), rng.normal(size=(2, 12))
    loss = ClippedGradientL2Loss(bound=bound)
    value, cache = loss.forward(z, t)
    gz = loss.backward(cache)
    inside = np.abs(z - t) / 12 < bound
    assert inside.any() and not inside.all()

    zt = torch.tensor(z, requires_grad=True)
    lt = (0.5 * ClipGradient.apply(torch.tensor(t) - zt, -bound, bound) ** 2).mean()
    (gt,) = torch.autograd.grad(lt, zt)
    assert value == pytest.approx(lt.item(), rel=1e-14)
    np.testing.assert_allclose(gz, gt.numpy(), rtol=1e-14, atol=0)
    # the same gradient is that of the mean Huber loss with delta = bound M; backward_r is its Hessian
    zt = torch.tensor(z, requires_grad=True)
    (gh,) = torch.autograd.grad(torch.nn.functional.huber_loss(zt, torch.tensor(t), delta=bound * 12), zt,
                                create_graph=True)
    np.testing.assert_allclose(gz, gh.detach().numpy(), rtol=1e-14, atol=0)
    for r in rz:
        (hh,) = torch.autograd.grad(gh, zt, grad_outputs=torch.tensor(r), retain_graph=True)
        np.testing.assert_allclose(loss.backward_r(cache, r), hh.numpy(), rtol=1e-14, atol=0)
    np.testing.assert_array_equal(loss.backward_r(cache, rz), np.stack([loss.backward_r(cache, r) for r in rz]))


def test_clipped_gradient_l2_against_jax():
    """The loss as DQN Zoo writes it, in JAX with float64 (jax.custom_gradient as rlax.clip_gradient)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(1)
    q, y = rng.normal(size=32) * 3, rng.normal(size=32)
    with jax.enable_x64(True):
        @jax.custom_gradient
        def clip_gradient(x):
            return x, lambda g: jnp.clip(g, -1 / 32, 1 / 32)

        def dqn_zoo_loss(q, y):
            return jnp.mean(0.5 * clip_gradient(y - q) ** 2)

        value, grad = jax.value_and_grad(dqn_zoo_loss)(jnp.asarray(q), jnp.asarray(y))
        value, grad = float(value), np.asarray(grad)
    ours, cache = make_loss("clipped_gradient_l2").forward(q, y)
    assert ours == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(make_loss("clipped_gradient_l2").backward(cache), grad, rtol=1e-14, atol=0)


def test_clipped_gradient_l2_at_batch_32_is_the_huber_gradient():
    """DQN Zoo's bound 1/32 at its batch of 32: clip(d / 32, -1/32, 1/32) = clip(d, -1, 1) / 32."""
    rng = np.random.default_rng(2)
    z, t = rng.normal(size=32) * 2, rng.normal(size=32)
    clipped, huber = ClippedGradientL2Loss(), HuberLoss()
    np.testing.assert_allclose(clipped.backward(clipped.forward(z, t)[1]), huber.backward(huber.forward(z, t)[1]),
                               rtol=1e-15, atol=0)
    assert clipped(z, t) != huber(z, t)  # the values differ: squared error against Huber


def test_clipped_gradient_l2_bound_must_be_positive():
    with pytest.raises(ValueError, match="bound"):
        ClippedGradientL2Loss(bound=0)
    with pytest.raises(ValueError, match="bound"):
        ClippedGradientL2Loss(bound=float("nan"))
