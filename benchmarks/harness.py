"""What the benchmark scripts share: arguments and thread counts, the torch twin of a network,
the timing protocol and the table.

Timing protocol: each workload is a pair of closures doing the same work in refplastic and in
torch. After warm-up calls, rounds alternate between the two; each round starts with a pause
that lets the other library's spinning worker threads park, then one untimed call, then calls
for about ``budget`` seconds (a call longer than that is its own round). A cell is the median
over rounds of a round's mean time per call; the table also gives the range of the paired ratios
(each refplastic round over the torch round right after it). With ``--probe`` every round is
printed with the machine's phase probe (:func:`probe_phase`) timed before it, and each workload
with the median paired ratio of its rounds in fast and in slow phases.

Import this module before numpy: :func:`parse_args` sets the BLAS and Numba thread counts,
which numpy and Numba read when they load.
"""

import argparse
import os
import sys
import time
from statistics import median

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parse_args(description, extra=()):
    """Parse the common options (and ``extra``: ``(flags, kwargs)`` pairs); set thread counts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--only", default="", help="run workloads whose name contains this")
    parser.add_argument("--probe", action="store_true",
                        help="print every round, with the machine's phase probe (see probe_phase) timed before it")
    parser.add_argument("--alone", action="store_true",
                        help="time refplastic only: torch is built but never run, so it cannot disturb the process")
    parser.add_argument("--keep-memory", action="store_true",
                        help="keep freed memory in the process (refplastic.malloc.keep_freed_memory), for both libraries")
    for flags, kwargs in extra:
        parser.add_argument(*flags, **kwargs)
    args = parser.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # numpy's BLAS, before numpy loads
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.keep_memory:
        from refplastic.malloc import keep_freed_memory

        keep_freed_memory()
    return args


def mlp_layers():
    """MLP 784-256-256-10 with ReLU."""
    from refplastic.nn import Linear, ReLU

    return [Linear(784, 256), ReLU(), Linear(256, 256), ReLU(), Linear(256, 10)]


def nature_cnn_layers():
    """The DQN "Nature" CNN: 4x84x84 -> 32c8s4 -> 64c4s2 -> 64c3s1 -> 512 -> 18."""
    from refplastic.nn import Conv2d, Flatten, Linear, ReLU

    return [Conv2d(4, 32, 8, stride=4), ReLU(), Conv2d(32, 64, 4, stride=2), ReLU(), Conv2d(64, 64, 3, stride=1),
            ReLU(), Flatten(), Linear(3136, 512), ReLU(), Linear(512, 18)]


def torch_twin(net):
    """The torch.nn.Sequential with ``net``'s architecture, dtype and weights."""
    import torch

    layers = []
    for spec in net.architecture():
        spec = dict(spec)
        layers.append(getattr(torch.nn, spec.pop("type"))(**spec))
    module = torch.nn.Sequential(*layers).to(getattr(torch, net.dtype.__name__))
    module.load_state_dict({k: torch.from_numpy(v) for k, v in net.state_dict().items()})
    return module


def problem(layers, x_shape, loss_name, dtype, seed=0):
    """``(net, loss, x, t, module, torch_loss_of_module)``: a network and its torch twin with the
    same weights, and one random batch (class labels for cross-entropy, Gaussian targets else)."""
    import numpy as np
    import torch

    from refplastic.nn import Network, make_loss

    rng = np.random.default_rng(seed)
    net = Network(layers, rng, dtype)
    module = torch_twin(net)
    x = rng.normal(size=x_shape).astype(dtype)
    out = net(x[:1]).shape[1]
    t = rng.integers(0, out, size=x_shape[0]) if loss_name == "cross_entropy" else \
        rng.normal(size=(x_shape[0], out)).astype(dtype)
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    torch_loss = {"mse": torch.nn.functional.mse_loss, "cross_entropy": torch.nn.functional.cross_entropy}[loss_name]
    return net, make_loss(loss_name), x, t, module, lambda: torch_loss(module(xt), tt)


def settle():
    """Let the other library's worker threads stop spinning before a round starts."""
    time.sleep(0.3)


def seconds_per_call(f, budget=0.3):
    """Mean seconds per call over a round of about ``budget`` seconds (see the module docstring)."""
    f()
    start = time.perf_counter()
    f()
    once = max(time.perf_counter() - start, 1e-7)
    if once >= budget:
        return once
    n = int(budget / once)
    start = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - start) / n


SLOW_PROBE_US = 80  # probe_phase above this: a slow phase


def probe_phase():
    """Median microseconds of a float32 product of conv1's batch-1 shape (128x64 by 64x441) on
    NumPy's BLAS threads. On the project's 2-core VM it takes 51-60 us in the machine's fast
    phases and 100-130 us in its slow ones, when the two vCPUs compute as if they shared one core
    (docs/performance.md, "The machine's two speeds")."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((128, 64), dtype=np.float32), rng.random((64, 441), dtype=np.float32)
    for _ in range(20):
        a @ b
    times = []
    for _ in range(200):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return median(times) * 1e6


def compare(ours, theirs, repeats, alone=False, warmup=3, report=None):
    """``(refplastic seconds, torch seconds, paired ratios)``: medians over rounds of the seconds per
    call, and each round's refplastic time over the torch round that follows it (adjacent rounds
    see the same machine, so their ratio is steadier than the times). torch's is NaN with ``alone``.
    With ``report`` (a name), every round is printed with the phase probe timed before it."""
    for f in (ours,) if alone else (ours, theirs):  # warm up: compile, allocate
        for _ in range(warmup):
            f()
    a, b, probes = [], [], []
    for _ in range(repeats):
        probe = probe_phase() if report else None
        probes.append(probe)
        settle()
        a.append(seconds_per_call(ours))
        if not alone:
            settle()
            b.append(seconds_per_call(theirs))
        if report:
            theirs_ms = b[-1] * 1e3 if b else float("nan")
            print(f"  round  {report:<60} probe {probe:6.1f} us  refplastic {a[-1] * 1e3:9.3f} ms  "
                  f"torch {theirs_ms:9.3f} ms  ratio {a[-1] * 1e3 / theirs_ms:5.2f}", flush=True)
    ratios = [x / y for x, y in zip(a, b)]
    if report and ratios:
        phases = []
        for name, fast in (("fast", True), ("slow", False)):
            chosen = [r for r, p in zip(ratios, probes) if (p < SLOW_PROBE_US) == fast]
            phases.append(f"{name} {len(chosen)} rounds" + (f", median ratio {median(chosen):.2f}" if chosen else ""))
        print(f"  phases {report:<59} " + "; ".join(phases), flush=True)
    return median(a), (median(b) if b else float("nan")), ratios


def run(workloads, args):
    """Time ``workloads`` (``(name, dtype, make_pair, repeats, warmup)``) and print the table.

    The ratio is refplastic's median time over torch's; the range is that of the paired ratios
    of adjacent rounds (see :func:`compare`)."""
    import numpy as np
    import torch

    rows = []
    for workload, dtype, make, repeats, warmup in workloads:
        if args.only and args.only not in workload:
            continue
        ours, theirs, ratios = compare(*make(), repeats, args.alone, warmup,
                                       f"{workload} {dtype}" if args.probe else None)
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
        rows.append((workload, dtype, ours * 1e3, theirs * 1e3, ours / theirs, spread))
        if not args.markdown:
            print(f"{workload:<52} {dtype:<8} refplastic {ours * 1e3:10.3f} ms  torch {theirs * 1e3:10.3f} ms  "
                  f"ratio {ours / theirs:5.2f}  rounds {spread}", flush=True)
    if args.markdown:
        print("| workload | dtype | refplastic (ms) | torch (ms) | ratio refplastic/torch | paired ratios of the rounds |")
        print("|---|---|---:|---:|---:|---:|")
        for workload, dtype, ours, theirs, ratio, spread in rows:
            print(f"| {workload} | {dtype} | {ours:.3f} | {theirs:.3f} | {ratio:.2f} | {spread} |")
    print(f"\nthreads={args.threads}, torch {torch.__version__}, numpy {np.__version__}")
