"""The Nature CNN, the DQN / Double DQN learner step and the optimisers of the DQN presets, against
the same step written in torch (float64)."""

import numpy as np
import pytest
import torch
from oracle import assert_close, torch_module
from test_rl_targets import ClipGradient

from refplastic.nn import Adam, ClippedGradientL2Loss, HuberLoss, MSELoss, Network, RMSprop, make_loss
from refplastic.rl.learner import learner_step, update_target
from refplastic.rl.nature_cnn import nature_cnn, scaled_frames
from refplastic.rl.targets import q_learning_targets

DQN_ZOO_RMSPROP = dict(lr=2.5e-4, alpha=0.95, eps=0.01 / 32**2, centered=True)


def test_nature_cnn_layers_and_layernorm_placement():
    plain = nature_cnn(6)
    assert [s["type"] for s in plain] == ["Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU", "Flatten", "Linear",
                                          "ReLU", "Linear"]
    ln = nature_cnn(6, layernorm=True)
    # a LayerNorm over all of a hidden layer's output features, after the layer and before its ReLU
    assert [s["type"] for s in ln] == ["Conv2d", "LayerNorm", "ReLU", "Conv2d", "LayerNorm", "ReLU", "Conv2d",
                                       "LayerNorm", "ReLU", "Flatten", "Linear", "LayerNorm", "ReLU", "Linear"]
    assert [s["normalized_shape"] for s in ln if s["type"] == "LayerNorm"] == [[32, 20, 20], [64, 9, 9], [64, 7, 7],
                                                                                [512]]
    assert [(s["kernel_size"], s["stride"]) for s in plain if s["type"] == "Conv2d"] == [(8, 4), (4, 2), (3, 1)]
    net = Network.from_architecture(plain, np.random.default_rng(0), np.float32)
    assert net.num_parameters == 8224 + 32832 + 36928 + 1606144 + 512 * 6 + 6
    assert net(np.zeros((2, 4, 84, 84))).shape == (2, 6)


@pytest.mark.parametrize("layernorm", [False, True])
def test_nature_cnn_equals_torchs_on_scaled_frames(layernorm):
    rng = np.random.default_rng(1)
    net = Network.from_architecture(nature_cnn(4, layernorm), rng)
    frames = rng.integers(0, 256, size=(3, 4, 84, 84), dtype=np.uint8)
    with torch.no_grad():
        expected = torch_module(net)(torch.from_numpy(frames).double() / 255).numpy()
    assert_close(net(scaled_frames(frames, np.float64)), expected, 1e-12, "Q-values")


def test_scaled_frames():
    frames = np.array([0, 1, 128, 255], dtype=np.uint8).reshape(1, 4, 1, 1)
    for dtype in (np.float32, np.float64):
        x = scaled_frames(frames, dtype)
        assert x.dtype == dtype and np.array_equal(x.ravel(), np.array([0, 1, 128, 255], dtype) / dtype(255))
    with pytest.raises(ValueError, match="frames must be uint8"):
        scaled_frames(frames.astype(np.float32), np.float32)


# ---- the learner step against torch ------------------------------------------------------------------
# the clipped loss's bound: DQN Zoo's 1/32 clips every transition of the batches below with LayerNorm,
# 0.1 leaves some on each side (test_the_clipped_loss_clips_some_and_not_all_of_the_first_batch)
CLIP_BOUND = 0.1
LOSSES = {"mse": MSELoss(), "huber": HuberLoss(), "clipped_gradient_l2": ClippedGradientL2Loss(bound=CLIP_BOUND)}
TORCH_LOSSES = {
    "mse": torch.nn.functional.mse_loss,
    "huber": torch.nn.functional.huber_loss,
    "clipped_gradient_l2": lambda q, y: (0.5 * ClipGradient.apply(y - q, -CLIP_BOUND, CLIP_BOUND) ** 2).mean(),
}
# (loss, optimiser) pairs: CleanRL's Adam and MSE, DQN Zoo's RMSprop (eps inside the square root) and
# clipped loss, and torch's centered RMSprop with Huber
OPTIMISER = {"mse": "adam", "huber": "rmsprop", "clipped_gradient_l2": "rmsprop_eps_in_sqrt"}


def make_optimisers(kind, net, module):
    if kind == "adam":
        return Adam(net.flat, lr=1e-4), torch.optim.Adam(module.parameters(), lr=1e-4, foreach=False)  # CleanRL's
    if kind == "rmsprop":
        return RMSprop(net.flat, **DQN_ZOO_RMSPROP), torch.optim.RMSprop(module.parameters(), foreach=False,
                                                                          **DQN_ZOO_RMSPROP)
    return RMSprop(net.flat, eps_in_sqrt=True, **DQN_ZOO_RMSPROP), OptaxCenteredRMSprop(module.parameters())


class OptaxCenteredRMSprop:
    """optax.rmsprop(lr, decay, eps, centered=True) as of DQN Zoo's optax 0.1.2, written in torch:
    nu = decay nu + (1 - decay) g^2, mu = decay mu + (1 - decay) g, p -= lr g / sqrt(nu - mu^2 + eps)."""

    def __init__(self, params):
        self.params = list(params)
        self.nu = [torch.zeros_like(p) for p in self.params]
        self.mu = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        h = DQN_ZOO_RMSPROP
        for p, nu, mu in zip(self.params, self.nu, self.mu):
            g = p.grad
            nu.mul_(h["alpha"]).add_((1 - h["alpha"]) * g * g)
            mu.mul_(h["alpha"]).add_((1 - h["alpha"]) * g)
            p.sub_(h["lr"] * g / torch.sqrt(nu - mu * mu + h["eps"]))


def torch_learner_step(module, target_module, optimiser, loss_name, batch, gamma, double_q):
    """The same step, as a torch user writes it (CleanRL's shape, with DQN Zoo's discounts)."""
    x = torch.from_numpy(batch["observation"]).double() / 255
    next_x = torch.from_numpy(batch["next_observation"]).double() / 255
    actions = torch.from_numpy(batch["action"])
    with torch.no_grad():
        next_target = target_module(next_x)
        chosen = module(next_x).argmax(dim=1) if double_q else next_target.argmax(dim=1)
        bootstrap = next_target.gather(1, chosen[:, None])[:, 0]
        y = torch.from_numpy(batch["reward"]) + gamma * torch.from_numpy(batch["discount"]) * bootstrap
    q = module(x).gather(1, actions[:, None])[:, 0]
    loss = TORCH_LOSSES[loss_name](q, y)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item(), q.mean().item()


def torch_flat(module):
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()]).numpy()


def random_batch(rng, n=5, actions=4):
    return {"observation": rng.integers(0, 256, size=(n, 4, 84, 84), dtype=np.uint8),
            "next_observation": rng.integers(0, 256, size=(n, 4, 84, 84), dtype=np.uint8),
            "action": rng.integers(0, actions, size=n), "reward": np.array([2.0, 0.0, -2.0, 0.0, 1.0])[:n],
            "discount": np.array([1.0, 1.0, 0.0, 1.0, 1.0])[:n]}


# every combination (about 2 s each); the default run takes three that cover each choice
FAST = {(False, False, "mse"), (False, True, "huber"), (True, True, "clipped_gradient_l2")}
STEP_CASES = [pytest.param(double_q, layernorm, loss_name, marks=() if (double_q, layernorm, loss_name) in FAST
                           else pytest.mark.slow,
                           id=f"{'double' if double_q else 'dqn'}-{'layernorm' if layernorm else 'plain'}-{loss_name}")
              for double_q in (False, True) for layernorm in (False, True)
              for loss_name in ("mse", "huber", "clipped_gradient_l2")]


@pytest.mark.parametrize("double_q,layernorm,loss_name", STEP_CASES)
def test_learner_step_equals_torchs(double_q, layernorm, loss_name):
    """Two steps with a target update between them (the second target differs from the first):
    the loss, the mean Q(s, a) and every parameter after each step equal torch's, float64."""
    rng = np.random.default_rng(7)
    net = Network.from_architecture(nature_cnn(4, layernorm), rng)
    target = Network.from_architecture(nature_cnn(4, layernorm), rng)
    module, target_module = torch_module(net), torch_module(target)
    optimiser, torch_optimiser = make_optimisers(OPTIMISER[loss_name], net, module)
    for step in range(2):
        batch = random_batch(rng)
        value, mean_q = learner_step(net, target, optimiser, LOSSES[loss_name], batch, 0.99, double_q)
        expected_value, expected_q = torch_learner_step(module, target_module, torch_optimiser, loss_name, batch,
                                                        0.99, double_q)
        assert value == pytest.approx(expected_value, rel=1e-12) and mean_q == pytest.approx(expected_q, rel=1e-12)
        assert_close(net.flat, torch_flat(module), 1e-12, f"parameters after step {step + 1}")
        assert not np.array_equal(net.flat, target.flat)
        update_target(net, target)
        target_module.load_state_dict(module.state_dict())
        assert np.array_equal(target.flat, net.flat)


@pytest.mark.parametrize("layernorm", [False, True], ids=["plain", "layernorm"])
@pytest.mark.parametrize("double_q", [False, True], ids=["dqn", "double"])
def test_the_clipped_loss_clips_some_and_not_all_of_the_first_batch(double_q, layernorm):
    """The first batch of test_learner_step_equals_torchs exercises both sides of the clipped loss's bound."""
    rng = np.random.default_rng(7)
    net = Network.from_architecture(nature_cnn(4, layernorm), rng)
    target = Network.from_architecture(nature_cnn(4, layernorm), rng)
    batch = random_batch(rng)
    next_x = scaled_frames(batch["next_observation"], np.float64)
    y = q_learning_targets(batch["reward"], batch["discount"], 0.99, target(next_x), net(next_x) if double_q else None)
    q = net(scaled_frames(batch["observation"], np.float64))[np.arange(5), batch["action"]]
    shares = np.abs(q - y) / 5
    assert (shares > CLIP_BOUND).any() and (shares < CLIP_BOUND).any()


def test_learner_step_updates_only_through_the_taken_actions():
    """Zero cotangent for the actions not taken: the output layer's rows of those actions keep their
    values (Adam's update of a zero gradient is zero)."""
    rng = np.random.default_rng(3)
    net = Network.from_architecture(nature_cnn(4), rng)
    target = net.copy()
    batch = random_batch(rng, n=3)
    batch["action"] = np.array([1, 1, 3])
    before = net.get_parameter("9.weight").copy()
    learner_step(net, target, Adam(net.flat, lr=1e-3), make_loss("mse"), batch, 0.99)
    after = net.get_parameter("9.weight")
    assert np.array_equal(after[[0, 2]], before[[0, 2]]) and not np.array_equal(after[[1, 3]], before[[1, 3]])


def test_rmsprop_eps_in_sqrt_state_round_trip_and_older_states():
    rng = np.random.default_rng(4)
    flat = rng.normal(size=10)
    opt = RMSprop(flat, eps_in_sqrt=True, **DQN_ZOO_RMSPROP)
    opt.step(rng.normal(size=10))
    state = opt.state_dict()
    assert state["eps_in_sqrt"] is True
    restored = RMSprop(flat.copy())
    restored.load_state_dict(state)
    assert restored.eps_in_sqrt is True
    older = {k: v for k, v in RMSprop(flat.copy()).state_dict().items() if k != "eps_in_sqrt"}
    restored.load_state_dict(older)  # a state saved before the option existed: torch's form
    assert restored.eps_in_sqrt is False


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_eps_in_sqrt_by_formula(centered, momentum):
    rng = np.random.default_rng(5)
    p0, grads = rng.normal(size=20), rng.normal(size=(3, 20)) * 1e-3
    lr, alpha, eps, wd = 1e-2, 0.9, 1e-5, 0.1
    opt = RMSprop(p0.copy(), lr=lr, alpha=alpha, eps=eps, weight_decay=wd, momentum=momentum, centered=centered,
                  eps_in_sqrt=True)
    p, s, a, b = p0.copy(), np.zeros(20), np.zeros(20), np.zeros(20)
    for g in grads:
        opt.step(g)
        g = g + wd * p
        s, a = alpha * s + (1 - alpha) * g**2, alpha * a + (1 - alpha) * g
        update = g / np.sqrt(s - (a**2 if centered else 0) + eps)
        b = momentum * b + update
        p = p - lr * (b if momentum else update)
    np.testing.assert_allclose(opt.params, p, rtol=1e-13, atol=0)
