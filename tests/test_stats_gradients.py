"""Gradient statistics: identical gradients give C = 1; the Gram matrix of per-example
gradients against torch (one autograd.grad per example) for dense, convolutional and
normalised networks, train-mode BatchNorm and spectral normalisation included; float64 and float32;
the k-means order."""

import numpy as np
import pytest
import torch
from oracle import torch_module

from refplastic.nn import (BatchNorm1d, BatchNorm2d, Flatten, LayerNorm, Linear, Network, ReLU, SpectralNormLinear,
                           Tanh, make_loss)
from refplastic.nn.conv import Conv2d
from refplastic.nn.pool import MaxPool2d
from refplastic.stats import compute_statistics, gradients

ARCHITECTURES = {
    "mlp": (lambda: [Linear(5, 7), ReLU(), Linear(7, 6), Tanh(), Linear(6, 3)], (6, 5)),
    "cnn": (lambda: [Conv2d(2, 3, 3, padding=1), ReLU(), MaxPool2d(2), Flatten(), Linear(3 * 3 * 3, 3)], (6, 2, 6, 6)),
    "layernorm": (lambda: [Linear(5, 6), LayerNorm(6), Tanh(), Linear(6, 3)], (6, 5)),
    "layernorm-over-batch": (lambda: [Linear(5, 6), LayerNorm((6, 6)), Tanh(), Linear(6, 3)], (6, 5)),
    "batchnorm1d": (lambda: [Linear(5, 6), BatchNorm1d(6), ReLU(), Linear(6, 3)], (6, 5)),
    "batchnorm2d": (lambda: [Conv2d(2, 3, 3), BatchNorm2d(3), Tanh(), Flatten(), Linear(3 * 4 * 4, 3)], (6, 2, 6, 6)),
    "spectralnorm": (lambda: [SpectralNormLinear(5, 6), ReLU(), Linear(6, 3)], (6, 5)),
}
TORCH_LOSS = {"cross_entropy": torch.nn.functional.cross_entropy, "mse": torch.nn.functional.mse_loss}


def make_case(arch, dtype, training, loss_name, seed=0):
    layers, shape = ARCHITECTURES[arch]
    rng = np.random.default_rng(seed)
    net = Network(layers(), rng, dtype)
    net.flat[...] += rng.normal(scale=0.3, size=net.num_parameters).astype(dtype)
    for name, buffer in net.named_buffers():  # running statistics away from their initial values
        if name.endswith(("running_mean", "running_var")):
            buffer[...] = rng.uniform(0.5, 1.5, buffer.shape) if "var" in name else rng.normal(size=buffer.shape)
    net.train(training)
    x = rng.normal(size=shape).astype(dtype)
    if loss_name == "cross_entropy":
        t = rng.integers(0, 3, size=shape[0])
    else:
        t = rng.normal(size=(shape[0], 3)).astype(dtype)
    return net, x, t


def torch_per_example_gradients(net, x, t, loss_name):
    """Row n: ``N dL_n/dtheta``, L_n the part of the batch loss due to example n's outputs, through
    the whole batch's graph (so train-mode BatchNorm couples examples as it should)."""
    module = torch_module(net)
    params = list(module.parameters())
    z = module(torch.from_numpy(x))
    tt = torch.from_numpy(t)
    n = z.shape[0]
    rows = []
    for i in range(n):
        if loss_name == "cross_entropy":
            part = torch.nn.functional.cross_entropy(z[i:i + 1], tt[i:i + 1], reduction="sum") / n
        else:
            part = ((z[i] - tt[i]) ** 2).sum() / z.numel()
        grads = torch.autograd.grad(part, params, retain_graph=True)
        rows.append(n * torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows).double(), module, z, tt


MODES = [(arch, False) for arch in ARCHITECTURES] + [(a, True) for a in ("batchnorm1d", "batchnorm2d", "spectralnorm")]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("arch, training", MODES)
def test_gram_and_cosine_against_torch(arch, training, dtype):
    loss_name = "cross_entropy" if not arch.startswith("layernorm") else "mse"
    net, x, t = make_case(arch, dtype, training, loss_name)
    buffers = [b.copy() for _, b in net.named_buffers()]
    G, module, z, tt = torch_per_example_gradients(net, x, t, loss_name)
    gram = gradients.per_example_gradient_gram(net, make_loss(loss_name), x, t)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    expected = (G @ G.T).numpy()
    np.testing.assert_allclose(gram, expected, rtol=0, atol=rtol * np.abs(expected).max())
    C = (G @ G.T) / (G.norm(dim=1)[:, None] * G.norm(dim=1)[None, :])
    off = C[~torch.eye(len(C), dtype=torch.bool)]
    out = compute_statistics(net, x, t, loss_name, ["loss", "gradient_norm", "gradient_cosine_mean",
                                                    "gradient_cosine_negative_fraction"])
    assert out["gradient_cosine_mean"] == pytest.approx(float(off.mean()), abs=rtol)
    assert out["gradient_cosine_negative_fraction"] == float((off < 0).double().mean())
    loss = TORCH_LOSS[loss_name](z, tt)
    grads = torch.autograd.grad(loss, list(module.parameters()))
    assert out["loss"] == pytest.approx(float(loss.detach()), rel=rtol)
    assert out["gradient_norm"] == pytest.approx(float(torch.cat([g.reshape(-1) for g in grads]).norm()), rel=rtol)
    by_layer = {}
    for (name, _), g in zip(module.named_parameters(), grads):
        by_layer.setdefault(int(name.split(".")[0]), []).append(g.reshape(-1))
    for i, gs in by_layer.items():
        assert out[f"gradient_norm/layer={i}"] == pytest.approx(float(torch.cat(gs).norm()), rel=rtol)
    for before, (_, after) in zip(buffers, net.named_buffers()):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_identical_gradients_give_cosine_one(arch):
    layers, shape = ARCHITECTURES[arch]
    rng = np.random.default_rng(4)
    net = Network(layers(), rng)
    x = np.repeat(rng.normal(size=(1, *shape[1:])), 5, axis=0)
    t = np.full(5, 2)
    C = gradients.cosine_from_gram(gradients.per_example_gradient_gram(net, make_loss("cross_entropy"), x, t))
    np.testing.assert_allclose(C, np.ones((5, 5)), rtol=0, atol=1e-14)
    out = compute_statistics(net, x, t, "cross_entropy", ["gradient_cosine_mean", "gradient_cosine_negative_fraction"])
    assert out["gradient_cosine_mean"] == pytest.approx(1.0, abs=1e-14)
    assert out["gradient_cosine_negative_fraction"] == 0.0


def test_cosine_conventions():
    gram = np.array([[4.0, -2.0, 0.0], [-2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # g_0 = -2 g_1, g_2 = 0
    C = gradients.cosine_from_gram(gram)
    np.testing.assert_allclose(C, [[1, -1, 0], [-1, 1, 0], [0, 0, 0]])
    assert gradients.cosine_mean(C) == pytest.approx(-1 / 3)
    assert gradients.negative_fraction(C) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="two examples"):
        gradients.cosine_mean(np.ones((1, 1)))
    rng = np.random.default_rng(0)
    net = Network([Linear(3, 2)], rng)
    out = compute_statistics(net, rng.normal(size=(1, 3)), np.array([1]), "cross_entropy",
                             ["gradient_cosine_mean", "gradient_norm"])
    assert "gradient_cosine_mean" not in out and "gradient_norm" in out


def block_cosine(rng, sizes):
    """A cosine-like matrix of clusters with the given sizes, rows shuffled; returns it and the true labels."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    directions = rng.normal(size=(len(sizes), 20))
    G = directions[labels] + 0.1 * rng.normal(size=(len(labels), 20))
    perm = rng.permutation(len(labels))
    G, labels = G[perm], labels[perm]
    norms = np.linalg.norm(G, axis=1)
    return G @ G.T / np.outer(norms, norms), labels


def test_kmeans_order_groups_clusters_and_is_deterministic():
    rng = np.random.default_rng(5)
    C, truth = block_cosine(rng, [12, 7, 4])
    order, labels = gradients.kmeans_order(C, 3, np.random.default_rng(0))
    assert sorted(order) == list(range(len(C)))
    # each found cluster is one true cluster, numbered by size, and the order lists them in turn
    for j, size in enumerate([12, 7, 4]):
        members = np.flatnonzero(labels == j)
        assert len(members) == size and len(set(truth[members])) == 1
    np.testing.assert_array_equal(labels[order], np.sort(labels))
    assert all(np.all(np.diff(order[labels[order] == j]) > 0) for j in range(3))
    again = gradients.kmeans_order(C, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(again[0], order)
    np.testing.assert_array_equal(again[1], labels)
    one, _ = gradients.kmeans_order(C[:2, :2], 5, np.random.default_rng(1))  # k is capped at N
    assert sorted(one) == [0, 1]
