"""Cost of the default statistics: refplastic.stats.compute_statistics(net, x, t, loss, DEFAULT_STATISTICS)
on a 784-512-512-10 ReLU MLP with a batch of 512 (cross-entropy), float64 and float32.

Prints the median wall time over ``--repeats`` calls (after one warm-up call that compiles the
Numba kernels), and the time of each statistic computed alone (which includes its share of the
forward pass, SVDs and backward pass that the full set computes once). There is no torch
equivalent of the set; the issue asks for its cost only.

    python benchmarks/bench_stats.py [--threads 1] [--repeats 7] [--breakdown]
"""

import argparse
import os
import sys

ARGS = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ARGS.add_argument("--threads", type=int, default=1)
ARGS.add_argument("--repeats", type=int, default=7)
ARGS.add_argument("--breakdown", action="store_true", help="also time each statistic alone (float64)")
args = ARGS.parse_args()
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # numpy's BLAS, before numpy loads
os.environ["NUMBA_NUM_THREADS"] = str(args.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from refplastic.nn import Linear, Network, ReLU, make_loss  # noqa: E402
from refplastic.stats import DEFAULT_STATISTICS, compute_statistics  # noqa: E402


def median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 784))
    t = rng.integers(0, 10, size=512)
    loss = make_loss("cross_entropy")
    print(f"784-512-512-10 ReLU MLP, batch 512, cross-entropy, {len(DEFAULT_STATISTICS)} default statistics, "
          f"{args.threads} thread(s), median of {args.repeats}")
    for dtype in (np.float64, np.float32):
        net = Network([Linear(784, 512), ReLU(), Linear(512, 512), ReLU(), Linear(512, 10)], rng, dtype)
        keys = compute_statistics(net, x, t, loss)
        seconds = median_time(lambda: compute_statistics(net, x, t, loss), args.repeats)
        print(f"  {np.dtype(dtype).name}: {seconds * 1e3:7.1f} ms for {len(keys)} values")
        if args.breakdown and dtype is np.float64:
            for name in DEFAULT_STATISTICS:
                alone = median_time(lambda: compute_statistics(net, x, t, loss, [name]), args.repeats)
                print(f"    {name:<45} {alone * 1e3:7.1f} ms alone")


if __name__ == "__main__":
    main()
