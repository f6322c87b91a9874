"""Memory estimates: each bounds the measured peak of a small case within a factor, and a quantity
too large for the memory available is refused before any work, naming what to lower."""

import tracemalloc

import numpy as np
import pytest

from refplastic import memory
from refplastic.curvature.report import curvature_report, memory_estimates
from refplastic.nn import Network, make_loss
from refplastic.reference.compute import MAX_EXACT_PARAMETERS, compute_case
from refplastic.reference.format import Case
from refplastic.stats import compute_statistics
from refplastic.stats.collect import memory_estimates as statistics_estimates
from refplastic.stats.collect import parse_name

FACTOR = 2.5  # tracemalloc sees NumPy's arrays, not LAPACK's working copies, which the estimates count


def _mlp(dtype=np.float64, norm=False):
    middle = [{"type": "BatchNorm1d", "num_features": 24}] if norm else []
    return [{"type": "Linear", "in_features": 16, "out_features": 24}, *middle, {"type": "Tanh"},
            {"type": "Linear", "in_features": 24, "out_features": 10}], (16,), dtype


CNN = ([{"type": "Conv2d", "in_channels": 2, "out_channels": 4, "kernel_size": 4, "stride": 2, "padding": 1},
        {"type": "ReLU"}, {"type": "Conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 3, "padding": 1},
        {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Flatten"},
        {"type": "Linear", "in_features": 16, "out_features": 10}], (2, 8, 8), np.float64)
NETWORKS = {"mlp": _mlp(), "mlp_float32": _mlp(np.float32), "mlp_batchnorm": _mlp(norm=True), "cnn": CNN}


def _case(name, n):
    architecture, input_shape, dtype = NETWORKS[name]
    net = Network.from_architecture(architecture, np.random.default_rng(0), dtype)
    rng = np.random.default_rng(1)
    return net, rng.normal(size=(n, *input_shape)).astype(dtype), rng.integers(0, 10, n)


def _peak(compute):
    """Bytes allocated at the peak of ``compute()`` above what was allocated before it."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        compute()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _within_factor(estimate, compute, x, t):
    compute(x[:3], t[:3])  # untraced: the first call loads Numba's compiled kernels
    measured = _peak(lambda: compute(x, t))
    assert measured <= estimate <= FACTOR * measured, (estimate / 2 ** 20, measured / 2 ** 20)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("quantity", ["hessian_eigenvalues", "ggn_eigenvalues", "gradients", "ntk"])
def test_curvature_estimates_bound_the_measured_peak(network, quantity):
    net, x, t = _case(network, 48)
    loss = make_loss("cross_entropy")
    (estimate,) = memory_estimates(memory.sizes(net, x), (quantity,), 64)
    _within_factor(estimate.nbytes, lambda x, t: curvature_report(net, loss, x, t, (quantity,), 0), x, t)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("name,n", [("gradient_cosine_mean", 400), ("ggn_effective_rank", 48)])
def test_statistics_estimates_bound_the_measured_peak(network, name, n):
    net, x, t = _case(network, n)
    (estimate,) = statistics_estimates(memory.sizes(net, x), [parse_name(name)])
    _within_factor(estimate.nbytes, lambda x, t: compute_statistics(net, x, t, "cross_entropy", (name,)), x, t)


@pytest.mark.parametrize("network", ["mlp", "mlp_batchnorm", "cnn"])
def test_the_reference_estimate_bounds_the_measured_peak(network):
    net, x, t = _case(network, 48)
    def case(x, t):
        return Case("mine", net.architecture(), "cross_entropy", "float64", "train", x, t,
                    {k: v.copy() for k, v in net.named_parameters()}, {k: v.copy() for k, v in net.named_buffers()})

    estimate = memory.reference_estimate(memory.sizes(case(x, t).network(), x), MAX_EXACT_PARAMETERS, "case 'mine'")
    _within_factor(estimate.nbytes, lambda x, t: compute_case(case(x, t)), x, t)


def test_the_sizes_and_largest_matrices():
    """P = 658 parameters (408 in the largest layer), N = 48 examples, D = 10 outputs."""
    net, x, _ = _case("mlp", 48)
    s = memory.sizes(net, x)
    assert (s.P, s.N, s.D, s.M, s.b, s.m) == (658, 48, 10, 480, 8, 408)
    shapes = {e.quantity: (e.shape, e.matrix_bytes) for e in memory_estimates(s, ("hessian_eigenvalues", "ntk",
                                                                                    "gradients"), 64)}
    assert shapes == {"hessian_eigenvalues": ((658, 658), 658 * 658 * 8), "ntk": ((480, 480), 480 * 480 * 8),
                      "gradients": ((48, 658), 48 * 658 * 8)}


def test_the_refusal_names_the_quantity_its_matrix_and_the_examples_that_fit():
    net, x, _ = _case("mlp", 2000)
    s = memory.sizes(net, x)

    def estimates(sizes):
        return memory_estimates(sizes, ("ntk",), 64)

    available = estimates(s.with_examples(700))[0].nbytes + 1
    with pytest.raises(memory.NotEnoughMemory) as info:
        memory.check_memory(estimates, s, np.float64, available)
    message = info.value.describe("--examples")
    assert message.startswith("ntk needs about ") and "(the 20000 x 20000 float64 kernel, 2.98 GiB)" in message
    assert message.endswith("; lower --examples to 700 or less"), message
    assert str(info.value).endswith("; use at most 700 examples")
    memory.check_memory(estimates, s.with_examples(700), np.float64, available)  # 700 fit


def test_a_matrix_of_the_parameters_suggests_the_matrix_free_quantities():
    net, x, _ = _case("mlp", 48)
    s = memory.sizes(net, x)
    with pytest.raises(memory.NotEnoughMemory) as info:
        memory.check_memory(lambda sizes: memory_estimates(sizes, ("ggn_eigenvalues",), 64), s, np.float32, 2 ** 20)
    assert str(info.value).endswith("more than the 1 MiB available; ask for ggn_lanczos, ggn_trace or ggn_density "
                                    "instead (matrix-free)"), str(info.value)
    assert "the 658 x 658 float32 Gauss-Newton matrix" in str(info.value)


def test_available_memory_is_memavailable_within_the_cgroups_room(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       8000000 kB\nMemFree:         100 kB\nMemAvailable:    2048 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", str(meminfo))
    monkeypatch.setattr(memory, "_cgroup_room", lambda: None)
    assert memory.available_memory() == 2048 * 1024
    monkeypatch.setattr(memory, "_cgroup_room", lambda: 1000)
    assert memory.available_memory() == 1000
    monkeypatch.setattr(memory, "MEMINFO", str(tmp_path / "absent"))  # not Linux: os.sysconf's pages, or the room
    assert memory.available_memory() <= 1000


def test_nothing_is_refused_when_the_memory_available_is_unknown(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: None)
    net, x, _ = _case("mlp", 48)
    memory.check_memory(lambda s: memory_estimates(s, ("ntk",), 64), memory.sizes(net, x), np.float64)


@pytest.mark.parametrize("n,text", [(0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (3 * 2 ** 30 + 2 ** 28, "3.25 GiB")])
def test_format_bytes(n, text):
    assert memory.format_bytes(n) == text
