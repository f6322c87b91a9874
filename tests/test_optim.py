"""Optimizers against torch.optim (single-tensor implementation), state saving/restoring, reset, errors."""

import itertools

import h5py
import numpy as np
import pytest
import torch
from oracle import RTOL, assert_close, torch_module

from refplastic.nn import Linear, MSELoss, Network, Tanh
from refplastic.nn.optim import SGD, Adam, AdamW, RMSprop, make_optimizer

DTYPES = [np.float64, np.float32]


def sgd_configs():
    for momentum, dampening, nesterov, weight_decay in itertools.product([0.0, 0.9], [0.0, 0.4], [False, True],
                                                                         [0.0, 0.05]):
        if not nesterov or (momentum > 0 and dampening == 0):
            yield dict(lr=0.1, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay)


def adam_configs():
    for betas, weight_decay, amsgrad in itertools.product([(0.9, 0.999), (0.3, 0.6)], [0.0, 0.1], [False, True]):
        yield dict(lr=0.01, betas=betas, eps=1e-8, weight_decay=weight_decay, amsgrad=amsgrad)


def rmsprop_configs():
    for alpha, momentum, centered, weight_decay in itertools.product([0.99, 0.3], [0.0, 0.9], [False, True],
                                                                     [0.0, 0.1]):
        yield dict(lr=0.01, alpha=alpha, eps=1e-8, momentum=momentum, centered=centered, weight_decay=weight_decay)


CASES = ([("sgd", SGD, torch.optim.SGD, c) for c in sgd_configs()]
         + [("adam", Adam, torch.optim.Adam, c) for c in adam_configs()]
         + [("adamw", AdamW, torch.optim.AdamW, c) for c in adam_configs()]
         + [("rmsprop", RMSprop, torch.optim.RMSprop, c) for c in rmsprop_configs()])


# The configurations with the most state, for the tests of saving, restoring and resetting.
STATEFUL = [
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.4)),
    ("adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("adamw", dict(lr=0.01, betas=(0.3, 0.6), amsgrad=True)),
    ("rmsprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    ("rmsprop", dict(lr=0.01)),
]
STATEFUL_IDS = [f"{name}{i}" for i, (name, _) in enumerate(STATEFUL)]


def small_net(dtype, seed=0):
    return Network([Linear(5, 7), Tanh(), Linear(7, 3)], np.random.default_rng(seed), dtype)


def torch_flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors]).numpy()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,ours,theirs,config", CASES,
                         ids=[f"{n}-" + "-".join(f"{k}={v}" for k, v in c.items()) for n, _, _, c in CASES])
def test_matches_torch(name, ours, theirs, config, dtype):
    """Five steps on real gradients (taken from torch at torch's parameters and fed to both):
    parameters and every state buffer agree after each step."""
    rng = np.random.default_rng(1)
    net = small_net(dtype)
    module = torch_module(net)
    params = list(module.parameters())
    opt = ours(net.flat, **config)
    topt = theirs(params, foreach=False, **config)
    for step in range(1, 6):
        x = torch.from_numpy(rng.normal(size=(8, 5)).astype(dtype))
        t = torch.from_numpy(rng.normal(size=(8, 3)).astype(dtype))
        topt.zero_grad()
        (rng.uniform(0.2, 5.0) * torch.nn.functional.mse_loss(module(x), t)).backward()
        grad = torch_flat(p.grad for p in params)
        topt.step()
        opt.step(grad)
        assert_close(net.flat, torch_flat(params), RTOL[dtype], f"{name} parameters after step {step}")
        assert opt.step_count == step
        for key, buffer in opt.buffers.items():
            expected = torch_flat(topt.state[p][key] for p in params)
            assert_close(buffer, expected, RTOL[dtype], f"{name} {key} after step {step}")
        if name != "sgd":
            assert all(int(topt.state[p]["step"]) == step for p in params)


def random_grads(n, size, dtype, seed=2):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=size) * rng.uniform(0.1, 3.0)).astype(dtype) for _ in range(n)]


def save_npz(state, directory):
    path = directory / "state.npz"
    np.savez(path, **state)
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def save_hdf5(state, directory):
    path = directory / "state.h5"
    with h5py.File(path, "w") as f:
        for k, v in state.items():
            f.create_dataset(k, data=v)
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("save", [None, save_npz, save_hdf5], ids=["memory", "npz", "hdf5"])
@pytest.mark.parametrize("name,config", STATEFUL, ids=STATEFUL_IDS)
def test_state_dict_round_trip(name, config, save, dtype, tmp_path):
    """2 steps, save; 3 more steps; a fresh optimizer (default hyperparameters) on the saved parameters,
    loaded with the saved state, repeats those 3 steps bit for bit."""
    net = small_net(dtype)
    grads = random_grads(5, net.num_parameters, dtype)
    opt = make_optimizer(name, net.flat, **config)
    for g in grads[:2]:
        opt.step(g)
    saved_params, state = net.flat.copy(), opt.state_dict()
    assert all(isinstance(v, (str, bool, int, float, np.ndarray)) for v in state.values()), state
    assert state["optimizer"] == name and state["step"] == 2 and isinstance(state["step"], int)
    for g in grads[2:]:
        opt.step(g)

    if save is not None:
        state = save(state, tmp_path)
    params = saved_params.copy()
    fresh = make_optimizer(name, params, **({"lr": 0.5} if name == "sgd" else {}))
    fresh.load_state_dict(state)
    assert fresh.hyperparameters() == opt.hyperparameters()
    for g in grads[2:]:
        fresh.step(g)
    np.testing.assert_array_equal(params, net.flat)
    assert fresh.step_count == opt.step_count == 5
    assert fresh.buffers.keys() == opt.buffers.keys()
    for k in opt.buffers:
        np.testing.assert_array_equal(fresh.buffers[k], opt.buffers[k])


def test_state_dict_is_a_copy():
    net = small_net(np.float64)
    opt = Adam(net.flat)
    opt.step(np.ones(net.num_parameters))
    state = opt.state_dict()
    state["exp_avg"][:] = 7.0
    assert not np.any(opt.buffers["exp_avg"] == 7.0)
    assert list(state) == ["optimizer", "lr", "betas", "eps", "weight_decay", "amsgrad", "eps_root", "step",
                           "exp_avg", "exp_avg_sq"]


@pytest.mark.parametrize("name,config", STATEFUL, ids=STATEFUL_IDS)
def test_reset_is_a_fresh_optimizer(name, config):
    net = small_net(np.float32)
    grads = random_grads(6, net.num_parameters, np.float32)
    opt = make_optimizer(name, net.flat, **config)
    for g in grads[:3]:
        opt.step(g)
    opt.reset()
    assert opt.step_count == 0 and all(not b.any() for b in opt.buffers.values())
    params = net.flat.copy()
    fresh = make_optimizer(name, params, **config)
    for g in grads[3:]:
        opt.step(g)
        fresh.step(g)
    np.testing.assert_array_equal(params, net.flat)


def test_updates_the_network_in_place():
    net = small_net(np.float64)
    opt = SGD(net.flat, lr=0.5)
    x, t = np.random.default_rng(3).normal(size=(4, 5)), np.zeros((4, 3))
    before = net.get_parameter("2.bias").copy()
    net.loss_and_grad(x, t, MSELoss())
    expected = before - 0.5 * net.grad[-3:]
    opt.step(net.grad)
    np.testing.assert_array_equal(net.get_parameter("2.bias"), expected)


def test_changing_hyperparameters():
    """lr may follow a schedule between steps; momentum switched on needs reset() (its buffer)."""
    opt = SGD(np.zeros(3), lr=0.1)
    opt.step(np.ones(3))
    opt.lr = 0.5
    opt.step(np.ones(3))
    np.testing.assert_array_equal(opt.params, [-0.6, -0.6, -0.6])
    opt.momentum = 0.9
    with pytest.raises(ValueError, match="call reset"):
        opt.step(np.ones(3))
    opt.reset()
    opt.step(np.ones(3))
    assert opt.buffers.keys() == {"momentum_buffer"}


def test_repr():
    assert repr(AdamW(np.zeros(3, np.float32))) == ("AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01, "
                                                   "amsgrad=False, eps_root=0.0; 3 float32 parameters, step 0)")


def test_make_optimizer():
    flat = np.zeros(4)
    assert type(make_optimizer("sgd", flat, lr=0.1, momentum=0.9)) is SGD
    assert make_optimizer("adamw", flat).weight_decay == 1e-2
    assert make_optimizer("rmsprop", flat, centered=True).buffers.keys() == {"square_avg", "grad_avg"}
    assert make_optimizer("adam", flat, amsgrad=True).buffers.keys() == {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        make_optimizer("adagrad", flat)


@pytest.mark.parametrize("build,message", [
    (lambda p: SGD(p, lr=-0.1), "lr must be >= 0, got -0.1"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.5), "momentum must be >= 0"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), "weight_decay must be >= 0"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov requires a momentum > 0"),
    (lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "and zero dampening"),
    (lambda p: Adam(p, lr=-1e-3), "lr must be >= 0"),
    (lambda p: Adam(p, eps=-1e-8), "eps must be >= 0"),
    (lambda p: Adam(p, betas=(1.0, 0.999)), r"betas\[0\] must lie in \[0, 1\), got 1.0"),
    (lambda p: AdamW(p, betas=(0.9, -0.1)), r"betas\[1\] must lie in"),
    (lambda p: Adam(p, betas=(0.9, 0.99, 0.9)), "betas must be a pair"),
    (lambda p: AdamW(p, weight_decay=-0.01), "weight_decay must be >= 0"),
    (lambda p: RMSprop(p, alpha=-0.5), "alpha must be >= 0"),
    (lambda p: RMSprop(p, eps=-1.0), "eps must be >= 0"),
    (lambda p: RMSprop(p, momentum=-0.9), "momentum must be >= 0"),
    (lambda p: RMSprop(p, lr=-1.0), "lr must be >= 0"),
    (lambda p: SGD(p, lr="x"), "lr must be a finite number, got 'x'"),
    (lambda p: Adam(p, lr=float("inf")), "lr must be a finite number, got inf"),
    (lambda p: RMSprop(p, alpha=float("nan")), "alpha must be a finite number, got nan"),
    (lambda p: SGD(p, momentum=True), "momentum must be a finite number, got True"),
    (lambda p: SGD(p, nesterov="no"), "nesterov must be true or false, got 'no'"),
    (lambda p: Adam(p, amsgrad=2), "amsgrad must be true or false, got 2"),
    (lambda p: RMSprop(p, centered=np.array("yes")), "centered must be true or false, got 'yes'"),
    (lambda p: Adam(p, betas=(0.9, "x")), r"betas\[1\] must be a finite number, got 'x'"),
    (lambda p: Adam(p, betas="x"), r"betas must be a pair \(beta1, beta2\), got \['x'\]"),
    (lambda p: Adam(p.reshape(2, 3)), "1-D float32 or float64"),
    (lambda p: Adam(p.astype(np.int64)), "1-D float32 or float64"),
    (lambda p: Adam(list(p)), "1-D float32 or float64"),
])
def test_invalid_hyperparameters(build, message):
    with pytest.raises(ValueError, match=message):
        build(np.zeros(6))


def test_invalid_gradient():
    opt = Adam(np.zeros(6))
    for bad in (np.zeros(5), np.zeros(6, np.float32), np.zeros((1, 6)), list(range(6))):
        with pytest.raises(ValueError, match="grad must be a float64 array of shape"):
            opt.step(bad)
    assert opt.step_count == 0


@pytest.mark.parametrize("edit,message", [
    (lambda s: s.update(optimizer="sgd"), "state of optimizer 'sgd' cannot be loaded into 'adam'"),
    (lambda s: s.pop("eps"), "missing hyperparameters"),
    (lambda s: s.pop("exp_avg_sq"), r"missing \['exp_avg_sq'\]"),
    (lambda s: s.update(momentum_buffer=np.zeros(6)), r"unexpected \['momentum_buffer'\]"),
    (lambda s: s.update(amsgrad=True), r"missing \['max_exp_avg_sq'\]"),
    (lambda s: s.update(exp_avg=np.zeros(5)), "exp_avg must be a float64 array of shape"),
    (lambda s: s.update(exp_avg=np.zeros(6, np.float32)), "exp_avg must be a float64 array of shape"),
    (lambda s: s.update(step=-1), "step must be a non-negative integer"),
    (lambda s: s.update(step=1.5), "step must be a non-negative integer"),
    (lambda s: s.update(betas=np.array([0.9, 1.5])), r"betas\[1\] must lie in \[0, 1\), got 1.5"),
    (lambda s: s.update(lr=np.array("x")), "lr must be a finite number, got 'x'"),
    (lambda s: s.update(step="x"), "step must be a non-negative integer, got 'x'"),
    (lambda s: s.update(step=np.array([1, 2])), "step must be a non-negative integer"),
    (lambda s: s["exp_avg"].__setitem__(2, np.nan), "exp_avg contains NaN or infinity"),
    (lambda s: s["exp_avg_sq"].__setitem__(0, np.inf), "exp_avg_sq contains NaN or infinity"),
])
def test_invalid_state_dict_leaves_optimizer_unchanged(edit, message):
    opt = Adam(np.zeros(6), lr=0.1)
    opt.step(np.ones(6))
    before = opt.state_dict()
    state = opt.state_dict()
    state["lr"] = 0.2
    edit(state)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    after = opt.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


def test_defaults_are_torchs():
    import inspect

    import torch

    from refplastic.nn.optim import SGD, Adam, AdamW, RMSprop

    for ours, theirs in ((SGD, torch.optim.SGD), (Adam, torch.optim.Adam), (AdamW, torch.optim.AdamW),
                         (RMSprop, torch.optim.RMSprop)):
        mine = inspect.signature(ours.__init__).parameters
        reference = inspect.signature(theirs.__init__).parameters
        for name, parameter in mine.items():
            if name not in ("self", "params", "eps_root", "eps_in_sqrt"):  # optax's options: torch has neither
                assert parameter.default == reference[name].default, (ours.__name__, name)
        if "eps_root" in mine:
            assert mine["eps_root"].default == 0
        if "eps_in_sqrt" in mine:
            assert mine["eps_in_sqrt"].default is False


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_adam_eps_root_is_the_papers_equation_6(dtype):
    """u = lr m_hat / (sqrt(v_hat + eps_root) + eps), m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
    (Lyle et al. 2023, eq. 6; optax's adam(eps_root=...)), computed here in float64 from its definition."""
    rng = np.random.default_rng(3)
    p0, grads = rng.normal(size=20), rng.normal(size=(4, 20)) * 1e-3
    lr, beta1, beta2, eps, eps_root = 1e-3, 0.9, 0.9, 1e-9, 1e-3
    opt = Adam(p0.astype(dtype), lr=lr, betas=(beta1, beta2), eps=eps, eps_root=eps_root)
    p, m, v = p0.copy(), np.zeros(20), np.zeros(20)
    for t, g in enumerate(grads, start=1):
        opt.step(g.astype(dtype))
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        p = p - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t) + eps_root) + eps)
    np.testing.assert_allclose(opt.params, p, rtol=1e-12 if dtype == np.float64 else 1e-5, atol=0)


def test_an_adam_state_saved_before_eps_root_loads_as_torchs():
    opt = Adam(np.zeros(3))
    state = opt.state_dict()
    del state["eps_root"]
    fresh = Adam(np.zeros(3), eps_root=0.5)
    fresh.load_state_dict(state)
    assert fresh.eps_root == 0.0
