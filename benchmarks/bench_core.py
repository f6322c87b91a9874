"""Core speed: refplastic and torch side by side, in one process, on the same work.

Workloads (issue "Core"): an MLP 784-256-256-10 Adam train step on a batch of 128 (cross-entropy);
the DQN "Nature" CNN (4x84x84 -> 32c8s4 -> 64c4s2 -> 64c3s1 -> 512 -> 18) Adam train step on a
batch of 32 (MSE on all 18 outputs) and its forward pass on a batch of 1; float32 and float64.
Timing protocol: benchmarks/harness.py.

    python benchmarks/bench_core.py [--threads 2] [--repeats 7] [--markdown] [--only NAME] [--alone] [--probe]

torch is needed here (the ``test`` extra) but never by refplastic itself.
"""

import harness

args = harness.parse_args(__doc__.split("\n")[0])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refplastic.nn import Adam  # noqa: E402

def train_step_pair(layers, x_shape, loss_name, dtype):
    """Closures doing one Adam step in refplastic and in torch, from the same weights and batch."""
    net, loss, x, t, module, torch_loss = harness.problem(layers, x_shape, loss_name, dtype)
    opt = Adam(net.flat, lr=1e-4)
    topt = torch.optim.Adam(module.parameters(), lr=1e-4)

    def ours():
        net.loss_and_grad(x, t, loss)
        opt.step(net.grad)

    def theirs():
        topt.zero_grad()
        torch_loss().backward()
        topt.step()

    return ours, theirs


def forward_pair(layers, x_shape, dtype):
    net, _, x, _, module, _ = harness.problem(layers, x_shape, "mse", dtype)
    xt = torch.from_numpy(x)

    def theirs():
        with torch.no_grad():
            module(xt)

    return (lambda: net(x)), theirs


def workloads():
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        yield ("MLP 784-256-256-10 Adam step, batch 128", name, lambda d=dtype: train_step_pair(
            harness.mlp_layers(), (128, 784), "cross_entropy", d), args.repeats, 3)
        yield ("Nature CNN Adam step, batch 32", name, lambda d=dtype: train_step_pair(
            harness.nature_cnn_layers(), (32, 4, 84, 84), "mse", d), args.repeats, 3)
        yield ("Nature CNN forward, batch 1", name, lambda d=dtype: forward_pair(
            harness.nature_cnn_layers(), (1, 4, 84, 84), d), args.repeats, 3)


if __name__ == "__main__":
    harness.run(workloads(), args)
