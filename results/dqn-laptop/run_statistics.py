"""Per run of a DQN grid: dead fraction and feature rank of each hidden layer, and the probe's final
loss over the targets' variance, at the last probe point (results files as arguments)."""
import json
import sys

import h5py

print("| run | frame | dead (conv1, conv2, conv3, linear) | feature rank (same) | probe loss / variance, first -> last |")
print("|---|---:|---|---|---|")
for path in sys.argv[1:]:
    with h5py.File(path, "r") as f:
        names, values = json.loads(f["statistics"].attrs["names"]), f["statistics"]["values"][:]
        frames = f["probes"]["frame"][:]
        probe = (f["probes"]["final_loss"][:] / f["probes"]["target_variance"][:]).mean(axis=1)
    dead = [n for n in names if n.startswith("dead_fraction/")]
    rank = [n for n in names if n.startswith("feature_rank/eps=0.01/")]
    last = values[-1]
    print(f"| {path.rsplit('/', 1)[-1].removesuffix('.h5')} | {frames[-1]} | "
          + ", ".join(f"{last[names.index(c)]:.2f}" for c in dead) + " | "
          + ", ".join(f"{last[names.index(c)]:.0f}" for c in rank) + f" | {probe[0]:.3f} -> {probe[-1]:.3f} |")
