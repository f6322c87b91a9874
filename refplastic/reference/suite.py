"""The built-in reference suite: small cases covering every layer type, loss, mode and dtype.

Not yet SpectralNormLinear, whose torch state names differ (docs/conventions.md); its maps are
checked against torch in tests/test_spectral_norm.py.

Each case draws everything from ``numpy.random.default_rng(seed)`` with its own fixed seed:
torch's default initialisation (refplastic.nn.init), then LayerNorm/BatchNorm weights from
U(0.5, 1.5) and biases from N(0, 0.2^2) (away from the trivial 1 and 0), BatchNorm running means
from N(0, 0.2^2), running variances from U(0.5, 1.5) and num_batches_tracked = 3; then inputs
from N(0, 1); then targets: N(0, 1) for mse, N(0, 2^2) for huber (so that some |z - t| > 1),
uniform class labels or Dirichlet(1) class probabilities for cross_entropy.
"""

import numpy as np

from ..curvature import preserved_buffers
from ..nn import Network
from .compute import compute_case, write_reference
from .format import Case, check_case

NORMALIZATION = ("LayerNorm", "BatchNorm1d", "BatchNorm2d")


def _lin(i, o, **kw):
    return {"type": "Linear", "in_features": i, "out_features": o, **kw}


def _conv(i, o, k, **kw):
    return {"type": "Conv2d", "in_channels": i, "out_channels": o, "kernel_size": k, **kw}


def _act(name, **kw):
    return {"type": name, **kw}


BN_MLP = [_lin(5, 8), {"type": "BatchNorm1d", "num_features": 8}, _act("Tanh"), _lin(8, 3)]

# name, seed, description, architecture, loss, targets ("labels" / "probabilities" for cross_entropy),
# input shape per example, N, dtype, mode
SUITE = [
    ("mlp_tanh_mse", 1, "MLP with Tanh, MSE",
     [_lin(5, 10), _act("Tanh"), _lin(10, 10), _act("Tanh"), _lin(10, 3)], "mse", None, (5,), 8, "float64", "train"),
    ("mlp_relu_cross_entropy", 2, "MLP with ReLU, cross-entropy on class labels",
     [_lin(6, 10), _act("ReLU"), _lin(10, 4)], "cross_entropy", "labels", (6,), 10, "float64", "train"),
    ("mlp_gelu_huber", 3, "MLP with GELU (exact erf form), Huber loss (delta 1)",
     [_lin(4, 10), _act("GELU"), _lin(10, 3)], "huber", None, (4,), 8, "float64", "train"),
    ("mlp_sigmoid_soft_targets", 4, "MLP with Sigmoid, cross-entropy on class probabilities",
     [_lin(4, 8), _act("Sigmoid"), _lin(8, 3)], "cross_entropy", "probabilities", (4,), 6, "float64", "train"),
    ("mlp_layernorm", 5, "MLP with LayerNorm and ReLU, cross-entropy",
     [_lin(5, 8), {"type": "LayerNorm", "normalized_shape": [8]}, _act("ReLU"), _lin(8, 3)],
     "cross_entropy", "labels", (5,), 8, "float64", "train"),
    ("mlp_batchnorm_train", 6, "MLP with BatchNorm1d in train mode (batch statistics), MSE",
     BN_MLP, "mse", None, (5,), 8, "float64", "train"),
    ("mlp_batchnorm_eval", 7, "MLP with BatchNorm1d in eval mode (running statistics), MSE",
     BN_MLP, "mse", None, (5,), 8, "float64", "eval"),
    ("cnn_stride_padding", 8, "CNN: Conv2d stride 2 padding 1, Conv2d padding 1, MaxPool2d, Flatten, Linear; "
     "cross-entropy", [_conv(2, 4, 3, stride=2, padding=1), _act("ReLU"), _conv(4, 4, 3, padding=1), _act("ReLU"),
                       {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"}, _lin(16, 3)],
     "cross_entropy", "labels", (2, 8, 8), 6, "float64", "train"),
    ("cnn_batchnorm2d_train", 9, "CNN with BatchNorm2d in train mode, MaxPool2d, MSE",
     [_conv(1, 3, 3, padding=1, bias=False), {"type": "BatchNorm2d", "num_features": 3}, _act("ReLU"),
      {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"}, _lin(27, 2)], "mse", None, (1, 6, 6), 4,
     "float64", "train"),
    ("mlp_leakyrelu_float32", 10, "float32 MLP with LeakyReLU(0.1) and Identity, MSE",
     [_lin(4, 8), _act("LeakyReLU", negative_slope=0.1), _lin(8, 2), _act("Identity")], "mse", None, (4,), 8,
     "float32", "train"),
    ("mlp_large_no_hessian", 11, "MLP with P = 5634 > 5000 parameters: no full Hessian or GGN",
     [_lin(20, 64), _act("ReLU"), _lin(64, 64), _act("ReLU"), _lin(64, 2)], "cross_entropy", "labels", (20,), 8,
     "float64", "train"),
]


def suite_cases():
    """The built-in cases as :class:`Case` objects (deterministic)."""
    return [_make_case(*spec) for spec in SUITE]


def write_suite(path, progress=None):
    """``refplastic reference --out FILE``: compute the built-in suite and write it atomically."""
    write_reference(path, suite_cases(), progress)


def suite_datasets():
    """``{case name: {path: array}}`` of the built-in suite, computed in memory (what :func:`write_suite` writes)."""
    return {case.name: compute_case(case)[0] for case in suite_cases()}


def _make_case(name, seed, description, architecture, loss, target_kind, input_shape, n, dtype, mode):
    rng = np.random.default_rng(seed)
    net = Network.from_architecture(architecture, rng, dtype)
    for layer in net.layers:
        if type(layer).__name__ in NORMALIZATION:
            _perturb_normalization(layer, rng)
    net.train(mode == "train")
    x = rng.standard_normal((n, *input_shape)).astype(dtype)
    with preserved_buffers(net):
        z = net.forward(x)
    if target_kind == "labels":
        t = rng.integers(0, z.shape[1], size=n, dtype=np.int64)
    elif target_kind == "probabilities":
        t = rng.dirichlet(np.ones(z.shape[1]), size=n).astype(dtype)
    else:
        t = (rng.standard_normal(z.shape) * (2.0 if loss == "huber" else 1.0)).astype(dtype)
    state = net.state_dict()
    buffers = dict(net.named_buffers())
    case = Case(name=name, architecture=net.architecture(), loss=loss, dtype=dtype, mode=mode, inputs=x, targets=t,
                params={k: v for k, v in state.items() if k not in buffers},
                buffers={k: v for k, v in state.items() if k in buffers}, description=description)
    check_case(case, f"built-in case {name!r}")
    return case


def _perturb_normalization(layer, rng):
    """Affine parameters away from (1, 0); BatchNorm running statistics away from their initial values."""
    for key, array in layer.params.items():
        array[...] = rng.uniform(0.5, 1.5, array.shape) if key == "weight" else rng.normal(0, 0.2, array.shape)
    if layer.buffers:
        layer.buffers["running_mean"][...] = rng.normal(0, 0.2, layer.buffers["running_mean"].shape)
        layer.buffers["running_var"][...] = rng.uniform(0.5, 1.5, layer.buffers["running_var"].shape)
        layer.buffers["num_batches_tracked"][...] = 3
