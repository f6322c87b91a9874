"""The built-in image data sets at their default size: build time, nearest-centroid accuracy, digest.

For ``builtin`` in RGB and gray-scale and for ``builtin-gray`` (ten other games, gray-scale), builds
the set (seed 0, 5,000 + 1,000 frames) and prints
the wall time, the CPU time of the process (all of ale-py's emulator threads), the test accuracy of
a nearest-centroid classifier (each test frame, as floats in [0, 1], labelled with the game whose
mean train frame is nearest in Euclidean distance), and the SHA-256 of x_train, y_train, x_test,
y_test's bytes (docs/data.md records them).

    python benchmarks/bench_builtin_data.py [--repeats 1]
"""

import argparse
import hashlib
import time

import numpy as np

from refplastic.data import BUILTIN_SETS, atari_frames, to_float


def nearest_centroid_accuracy(data):
    x = to_float(data.x_train).reshape(len(data.x_train), -1)
    t = to_float(data.x_test).reshape(len(data.x_test), -1)
    centroids = np.stack([x[data.y_train == c].mean(axis=0) for c in range(data.num_classes)])
    distances = (t**2).sum(1)[:, None] - 2 * t @ centroids.T + (centroids**2).sum(1)[None, :]
    return float(np.mean(np.argmin(distances, axis=1) == data.y_test))


def digest(data):
    h = hashlib.sha256()
    for a in (data.x_train, data.y_train, data.x_test, data.y_test):
        h.update(a.tobytes())
    return h.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    sets = {"builtin RGB": {}, "builtin gray": {"grayscale": True}, "builtin-gray": BUILTIN_SETS["builtin-gray"]}
    for name, arguments in sets.items():
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            data = atari_frames(**arguments)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name:12s}  {data.x_train.shape[1:]}  wall {wall:5.1f} s  "
                  f"cpu {cpu:5.1f} s  nearest-centroid test accuracy {nearest_centroid_accuracy(data):.3f}  "
                  f"sha256 {digest(data)}")


if __name__ == "__main__":
    main()
