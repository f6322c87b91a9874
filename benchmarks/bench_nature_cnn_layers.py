"""The Nature CNN's forward pass at the learner's batch of 32, layer by layer: refplastic and torch.

Where the Double DQN learner step (benchmarks/bench_dqn_update.py) spends its forward time: each
layer of refplastic.rl.nature_cnn's network (float32, 6 actions, no LayerNorm) on the output of
the layer before it, the whole forward pass, and refplastic's first convolution in its three
parts (refplastic.kernels.space_to_depth): the space-to-depth lowering, the product
``Z = Wall @ S`` (128 x 64 by 64 x 14112) and the shift-add. The parts have no torch twin: torch
runs the first convolution as one oneDNN call. Its multiply-adds: torch's direct convolution
32 x 256 x 12800 = 104.9M; refplastic's product 115.6M (Z holds every one of the 21 x 21 block
positions for each of the 2 x 2 kernel blocks, of which the shift-add uses 20 x 20).

Timing protocol: benchmarks/harness.py (ratio = refplastic's time over torch's).

    python benchmarks/bench_nature_cnn_layers.py [--threads 2] [--repeats 7] [--markdown] [--only NAME]
"""

import harness

args = harness.parse_args(__doc__.split("\n")[0])

import numpy as np  # noqa: E402
import torch  # noqa: E402

from refplastic.nn import Network  # noqa: E402
from refplastic.rl.nature_cnn import nature_cnn, scaled_frames  # noqa: E402

BATCH, ACTIONS = 32, 6


def build():
    """The network, its torch twin, and every layer's input (the first is the scaled frames)."""
    rng = np.random.default_rng(0)
    net = Network.from_architecture(nature_cnn(ACTIONS), rng, np.float32)
    inputs = [scaled_frames(rng.integers(0, 256, size=(BATCH, 4, 84, 84), dtype=np.uint8), np.float32)]
    for layer in net.layers:
        inputs.append(layer.forward(inputs[-1])[0])
    return net, harness.torch_twin(net), inputs


NET, MODULE, INPUTS = build()


def layer_pair(i):
    layer, module, x = NET.layers[i], MODULE[i], INPUTS[i]
    tx = torch.from_numpy(x)

    def theirs():
        with torch.no_grad():
            module(tx)

    return (lambda: layer.forward(x)), theirs


def network_pair():
    x, tx = INPUTS[0], torch.from_numpy(INPUTS[0])

    def theirs():
        with torch.no_grad():
            MODULE(tx)

    return (lambda: NET.forward(x)), theirs


def first_convolution_parts():
    """Seconds per call of the first convolution's lowering, product and shift-add, alone."""
    conv, x = NET.layers[0], INPUTS[0][None]
    lowering = conv.lowering
    matrix, bias = lowering.matrix(conv.params["weight"][None]), conv.params["bias"][None]
    lowered = lowering.lower(x)
    z = matrix @ lowered
    out_hw = conv.output_hw(INPUTS[0].shape)
    parts = {"space-to-depth (serial Numba kernel)": lambda: lowering.lower(x),
             f"product {matrix.shape[1]}x{matrix.shape[2]} by {lowered.shape[1]}x{lowered.shape[2]} (OpenBLAS)":
                 lambda: matrix @ lowered,
             "shift-add and bias (serial Numba kernel)": lambda: lowering.expand(z, out_hw, bias)}
    return [(name, harness.compare(f, None, args.repeats, alone=True)[0] * 1e3) for name, f in parts.items()]


workloads = [(f"layer {i} {type(layer).__name__}", "float32", lambda i=i: layer_pair(i), args.repeats, 3)
             for i, layer in enumerate(NET.layers)]
workloads.append(("whole forward pass", "float32", network_pair, args.repeats, 3))
harness.run(workloads, args)
if not args.only or "conv" in args.only:
    print("\nrefplastic's first convolution, its parts alone (median ms per call):")
    for name, ms in first_convolution_parts():
        print(f"  {name:<60} {ms:8.3f}")
