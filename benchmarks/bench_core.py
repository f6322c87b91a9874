"""Core speed: refplastic and torch side by side, in one process, on the same work.

Workloads (issue "Core"): an MLP 784-256-256-10 Adam train step on a batch of 128 (cross-entropy);
the DQN "Nature" CNN (4x84x84 -> 32c8s4 -> 64c4s2 -> 64c3s1 -> 512 -> 18) Adam train step on a
batch of 32 (MSE on all 18 outputs) and its forward pass on a batch of 1; float32 and float64.
Both libraries use the same thread count. Each timing is the median over ``--repeats`` rounds
of the mean over a round's iterations (about 0.3 s of them); rounds alternate between the two libraries, with a pause
before each so that the other library's spinning worker threads are parked.

    python benchmarks/bench_core.py [--threads 2] [--repeats 7] [--markdown] [--only NAME] [--alone]

torch is needed here (the ``test`` extra) but never by refplastic itself.
"""

import argparse
import os
import sys

ARGS = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--repeats", type=int, default=7)
ARGS.add_argument("--markdown", action="store_true", help="print a Markdown table")
ARGS.add_argument("--only", default="", help="run workloads whose name contains this")
ARGS.add_argument("--alone", action="store_true",
                  help="time refplastic only: torch is built but never run, so it cannot disturb the process")
args = ARGS.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # numpy's BLAS, before numpy loads
os.environ["NUMBA_NUM_THREADS"] = str(args.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from refplastic.nn import Conv2d, Flatten, Linear, Network, ReLU, make_loss  # noqa: E402
from refplastic.nn.optim import Adam  # noqa: E402

torch.set_num_threads(args.threads)
TORCH = {np.float32: torch.float32, np.float64: torch.float64}


def mlp_layers():
    return [Linear(784, 256), ReLU(), Linear(256, 256), ReLU(), Linear(256, 10)]


def nature_cnn_layers():
    return [Conv2d(4, 32, 8, stride=4), ReLU(), Conv2d(32, 64, 4, stride=2), ReLU(), Conv2d(64, 64, 3, stride=1),
            ReLU(), Flatten(), Linear(3136, 512), ReLU(), Linear(512, 18)]


def torch_twin(net):
    layers = []
    for spec in net.architecture():
        spec = dict(spec)
        layers.append(getattr(torch.nn, spec.pop("type"))(**spec))
    module = torch.nn.Sequential(*layers).to(TORCH[net.dtype])
    module.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    return module


def train_step_pair(layers, x_shape, loss_name, dtype, rng):
    """Closures doing one Adam step in refplastic and in torch, from the same weights and batch."""
    net = Network(layers, rng, dtype)
    module = torch_twin(net)
    x = rng.normal(size=x_shape).astype(dtype)
    out = net(x[:1]).shape[1]
    if loss_name == "cross_entropy":
        t = rng.integers(0, out, size=x_shape[0])
        torch_loss = torch.nn.functional.cross_entropy
    else:
        t = rng.normal(size=(x_shape[0], out)).astype(dtype)
        torch_loss = torch.nn.functional.mse_loss
    loss, opt = make_loss(loss_name), Adam(net.flat, lr=1e-4)
    topt = torch.optim.Adam(module.parameters(), lr=1e-4)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)

    def ours():
        net.loss_and_grad(x, t, loss)
        opt.step(net.grad)

    def theirs():
        topt.zero_grad()
        torch_loss(module(xt), tt).backward()
        topt.step()

    return ours, theirs


def forward_pair(layers, x_shape, dtype, rng):
    net = Network(layers, rng, dtype)
    module = torch_twin(net)
    x = rng.normal(size=x_shape).astype(dtype)
    xt = torch.from_numpy(x)

    def theirs():
        with torch.no_grad():
            module(xt)

    return (lambda: net(x)), theirs


def seconds_per_call(f, budget=0.3):
    """Mean seconds per call over a round of about ``budget`` seconds, after one untimed call
    that wakes the worker threads parked by :func:`settle`."""
    f()
    start = time.perf_counter()
    f()
    once = max(time.perf_counter() - start, 1e-7)
    n = max(1, int(budget / once))
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n


def settle():
    """Let the other library's worker threads stop spinning before a round starts."""
    time.sleep(0.3)


def compare(ours, theirs, repeats):
    for f in (ours,) if args.alone else (ours, theirs):  # warm up: compile, allocate
        for _ in range(3):
            f()
    a, b = [], []
    for _ in range(repeats):
        settle()
        a.append(seconds_per_call(ours))
        if not args.alone:
            settle()
            b.append(seconds_per_call(theirs))
    return float(np.median(a)), (float(np.median(b)) if b else float("nan"))


def workloads():
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        yield (f"MLP 784-256-256-10 Adam step, batch 128", name,
               lambda d=dtype: train_step_pair(mlp_layers(), (128, 784), "cross_entropy", d, np.random.default_rng(0)))
        yield (f"Nature CNN Adam step, batch 32", name,
               lambda d=dtype: train_step_pair(nature_cnn_layers(), (32, 4, 84, 84), "mse", d, np.random.default_rng(0)))
        yield (f"Nature CNN forward, batch 1", name,
               lambda d=dtype: forward_pair(nature_cnn_layers(), (1, 4, 84, 84), d, np.random.default_rng(0)))


def main():
    rows = []
    for workload, dtype, make in workloads():
        if args.only and args.only not in workload:
            continue
        ours, theirs = compare(*make(), args.repeats)
        rows.append((workload, dtype, ours * 1e3, theirs * 1e3, ours / theirs))
        if not args.markdown:
            print(f"{workload:<40} {dtype:<8} refplastic {ours * 1e3:9.3f} ms  torch {theirs * 1e3:9.3f} ms  "
                  f"ratio {ours / theirs:5.2f}", flush=True)
    if args.markdown:
        print("| workload | dtype | refplastic (ms) | torch (ms) | ratio refplastic/torch |")
        print("|---|---|---:|---:|---:|")
        for workload, dtype, ours, theirs, ratio in rows:
            print(f"| {workload} | {dtype} | {ours:.3f} | {theirs:.3f} | {ratio:.2f} |")
    print(f"\nthreads={args.threads}, torch {torch.__version__}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
