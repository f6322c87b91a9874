"""Ensemble speed: E networks trained at once, refplastic's Ensemble against torch's own way.

torch is timed two ways: ``torch.func.stack_module_state`` + ``torch.vmap`` over
``torch.func.grad`` of a ``functional_call`` loss, with one ``torch.optim.Adam`` over the stacked
parameters ("vmap"); and a Python loop over the E modules, each with its own backward, then one
``torch.optim.Adam`` over all their parameters ("loop"). Adam is elementwise, so either is E
optimizers, as refplastic's one Adam over ``ens.flat.reshape(-1)`` is. Workloads:
E = 10 copies of the MLP 784-256-256-10 (batch 128 each, cross-entropy) and of a small CIFAR-size
CNN (3x32x32 -> 16c3p1 -> pool -> 32c3p1 -> pool -> 10, batch 64 each); and the plasticity
protocol's probe (issue 14: ten copies of the network, each regressing on its own random target
with MSE), batch 64 each, for the MLP 1024-128-128-10 and the CNN 1x32x32 -> 16c5s2p2 -> 16c3s2p1
-> 64 -> 64 -> 10; float32 and float64.
Timing protocol: benchmarks/harness.py.

    python benchmarks/bench_ensemble.py [--threads 2] [--repeats 7] [--markdown] [--only NAME] [--probe]
"""

import harness

args = harness.parse_args(__doc__.split("\n")[0])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refplastic.nn import Adam, Conv2d, Ensemble, Flatten, Linear, MaxPool2d, Network, ReLU, make_loss  # noqa: E402

E = 10


def small_cnn_layers():
    return [Conv2d(3, 16, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(16, 32, 3, padding=1), ReLU(), MaxPool2d(2),
            Flatten(), Linear(32 * 8 * 8, 10)]


def probe_mlp_layers():
    """The probe's MLP: 32x32 grayscale inputs, 1024-128-128-10."""
    return [Linear(1024, 128), ReLU(), Linear(128, 128), ReLU(), Linear(128, 10)]


def probe_cnn_layers():
    """The probe's CNN: 1x32x32 -> 16c5s2p2 -> 16c3s2p1 -> 64 -> 64 -> 10."""
    return [Conv2d(1, 16, 5, stride=2, padding=2), ReLU(), Conv2d(16, 16, 3, stride=2, padding=1), ReLU(), Flatten(),
            Linear(1024, 64), ReLU(), Linear(64, 64), ReLU(), Linear(64, 10)]


TORCH_LOSSES = {"cross_entropy": torch.nn.functional.cross_entropy, "mse": torch.nn.functional.mse_loss}


def torch_vmap_step(modules, xt, tt, loss_name):
    """One Adam step of ``modules`` in torch, with vmap over their stacked parameters."""
    params, buffers = torch.func.stack_module_state(modules)
    opt = torch.optim.Adam(params.values(), lr=1e-4)
    torch_loss = TORCH_LOSSES[loss_name]

    def member_loss(p, b, xe, te):
        return torch_loss(torch.func.functional_call(modules[0], (p, b), (xe,)), te)

    ensemble_grad = torch.vmap(torch.func.grad(member_loss))

    def step():
        grads = ensemble_grad(params, buffers, xt, tt)
        for name, p in params.items():
            p.grad = grads[name]
        opt.step()

    return step


def torch_loop_step(modules, xt, tt, loss_name):
    """One Adam step of ``modules`` in torch, a backward per module."""
    opt = torch.optim.Adam([p for module in modules for p in module.parameters()], lr=1e-4)
    torch_loss = TORCH_LOSSES[loss_name]

    def step():
        opt.zero_grad()
        for module, xe, te in zip(modules, xt, tt):
            torch_loss(module(xe), te).backward()
        opt.step()

    return step


TORCH_WAYS = {"vmap": torch_vmap_step, "loop": torch_loop_step}


def ensemble_step_pair(make_layers, x_shape, dtype, torch_way, loss_name="cross_entropy"):
    """Closures doing one Adam step of the whole ensemble in refplastic and in torch (``torch_way``
    "vmap" or "loop"); ten classes for cross-entropy, ten Gaussian regression targets for MSE."""
    rng = np.random.default_rng(0)
    ens = Ensemble([Network(make_layers(), rng, dtype) for _ in range(E)])
    loss = make_loss(loss_name)
    x = rng.normal(size=(E, *x_shape)).astype(dtype)
    t = rng.integers(0, 10, size=(E, x_shape[0])) if loss_name == "cross_entropy" else \
        rng.normal(size=(E, x_shape[0], 10)).astype(dtype)
    opt = Adam(ens.flat.reshape(-1), lr=1e-4)

    def ours():
        ens.loss_and_grad(x, t, loss)
        opt.step(ens.grad.reshape(-1))

    modules = [harness.torch_twin(member) for member in ens.members]
    return ours, TORCH_WAYS[torch_way](modules, torch.from_numpy(x), torch.from_numpy(t), loss_name)


def workloads():
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        for way in TORCH_WAYS:
            yield (f"{E} x MLP 784-256-256-10 Adam step, batch 128, torch {way}", name,
                   lambda d=dtype, w=way: ensemble_step_pair(harness.mlp_layers, (128, 784), d, w), args.repeats, 3)
            yield (f"{E} x CNN 3x32x32 Adam step, batch 64, torch {way}", name,
                   lambda d=dtype, w=way: ensemble_step_pair(small_cnn_layers, (64, 3, 32, 32), d, w), args.repeats, 3)
            yield (f"{E} x probe MLP 1024-128-128-10 MSE Adam step, batch 64, torch {way}", name,
                   lambda d=dtype, w=way: ensemble_step_pair(probe_mlp_layers, (64, 1024), d, w, "mse"),
                   args.repeats, 3)
            yield (f"{E} x probe CNN 1x32x32 MSE Adam step, batch 64, torch {way}", name,
                   lambda d=dtype, w=way: ensemble_step_pair(probe_cnn_layers, (64, 1, 32, 32), d, w, "mse"),
                   args.repeats, 3)


if __name__ == "__main__":
    harness.run(workloads(), args)
