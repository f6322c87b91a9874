"""Core speed: refplastic and torch side by side, in one process, on the same work.

Workloads (issue "Core"): an MLP 784-256-256-10 Adam train step on a batch of 128 (cross-entropy);
the DQN "Nature" CNN (4x84x84 -> 32c8s4 -> 64c4s2 -> 64c3s1 -> 512 -> 18) Adam train step on a
batch of 32 (MSE on all 18 outputs) and its forward pass on a batch of 1; float32 and float64.
Timing protocol: benchmarks/harness.py.

    python benchmarks/bench_core.py [--threads 2] [--repeats 7] [--markdown] [--only NAME] [--alone]

torch is needed here (the ``test`` extra) but never by refplastic itself.
"""

import harness

args = harness.parse_args(__doc__.split("\n")[0])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refplastic.nn import Adam, Network, make_loss  # noqa: E402

TORCH_LOSS = {"mse": torch.nn.functional.mse_loss, "cross_entropy": torch.nn.functional.cross_entropy}


def train_step_pair(layers, x_shape, loss_name, dtype, rng):
    """Closures doing one Adam step in refplastic and in torch, from the same weights and batch."""
    net = Network(layers, rng, dtype)
    module = harness.torch_twin(net)
    x = rng.normal(size=x_shape).astype(dtype)
    out = net(x[:1]).shape[1]
    t = rng.integers(0, out, size=x_shape[0]) if loss_name == "cross_entropy" else \
        rng.normal(size=(x_shape[0], out)).astype(dtype)
    loss, opt = make_loss(loss_name), Adam(net.flat, lr=1e-4)
    topt = torch.optim.Adam(module.parameters(), lr=1e-4)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def ours():
        net.loss_and_grad(x, t, loss)
        opt.step(net.grad)

    def theirs():
        topt.zero_grad()
        TORCH_LOSS[loss_name](module(xt), tt).backward()
        topt.step()

    return ours, theirs


def forward_pair(layers, x_shape, dtype, rng):
    net = Network(layers, rng, dtype)
    module = harness.torch_twin(net)
    x = rng.normal(size=x_shape).astype(dtype)
    xt = torch.from_numpy(x)

    def theirs():
        with torch.no_grad():
            module(xt)

    return (lambda: net(x)), theirs


def workloads():
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        yield ("MLP 784-256-256-10 Adam step, batch 128", name, lambda d=dtype: train_step_pair(
            harness.mlp_layers(), (128, 784), "cross_entropy", d, np.random.default_rng(0)), args.repeats, 3)
        yield ("Nature CNN Adam step, batch 32", name, lambda d=dtype: train_step_pair(
            harness.nature_cnn_layers(), (32, 4, 84, 84), "mse", d, np.random.default_rng(0)), args.repeats, 3)
        yield ("Nature CNN forward, batch 1", name, lambda d=dtype: forward_pair(
            harness.nature_cnn_layers(), (1, 4, 84, 84), d, np.random.default_rng(0)), args.repeats, 3)


if __name__ == "__main__":
    harness.run(workloads(), args)
