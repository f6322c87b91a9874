"""Curvature products and matrices against torch reverse-over-reverse and finite differences.

Every torch number here comes from reverse mode only (``torch.autograd.grad``, twice for second
order): torch.func's Hessians (jacfwd or jacrev over jacrev) are wrong through LayerNorm and
BatchNorm in torch 2.13 (see docs/curvature.md). Networks: MLPs and CNNs (Conv2d, MaxPool2d) with
each activation, LayerNorm, BatchNorm1d, BatchNorm2d and SpectralNormLinear in train and eval mode; float64 to a
relative error of 1e-9, float32 to 1e-5.
"""

import importlib

import numpy as np
import pytest
import torch
from oracle import assert_close, torch_module

from refplastic.curvature import (CurvatureBatch, cosine_similarity, empirical_fisher, ggn, ggn_vp,
                                  gradient_covariance, hessian, hvp, jacobian, ntk, per_example_gradients)
from refplastic.nn import (GELU, BatchNorm1d, BatchNorm2d, Flatten, Identity, LayerNorm, LeakyReLU, Linear, Network,
                           ReLU, Sigmoid, SpectralNormLinear, Tanh, make_loss)
from refplastic.nn.conv import Conv2d
from refplastic.nn.pool import MaxPool2d

RTOL = 1e-9
ACTIVATIONS = [Tanh, ReLU, GELU, Sigmoid, LeakyReLU, Identity]
TORCH_LOSS = {"mse": torch.nn.functional.mse_loss, "huber": torch.nn.functional.huber_loss,
              "cross_entropy": torch.nn.functional.cross_entropy}


def mlp(act):
    return [Linear(5, 6), act(), Linear(6, 6), act(), Linear(6, 3)], (7, 5)


def cnn(act):
    layers = [Conv2d(2, 3, 3, padding=1), act(), MaxPool2d(2), Conv2d(3, 4, 2), act(), Flatten(), Linear(16, 3)]
    return layers, (4, 2, 6, 6)


ARCHITECTURES = {
    **{f"mlp-{a.__name__}": (lambda a=a: mlp(a), True) for a in ACTIVATIONS},
    **{f"cnn-{a.__name__}": (lambda a=a: cnn(a), True) for a in (ReLU, Tanh, GELU)},
    "cnn-strided": (lambda: ([Conv2d(2, 4, 4, 2), ReLU(), Conv2d(4, 3, 2, 2, 1), Tanh(), Flatten(), Linear(27, 3)],
                             (4, 2, 10, 10)), True),  # kernels that are multiples of their stride
    "layernorm": (lambda: ([Linear(5, 6), LayerNorm(6), Tanh(), Linear(6, 3)], (7, 5)), True),
    # normalized_shape spans the batch axis too: examples interact, as with train-mode BatchNorm
    "layernorm-over-batch": (lambda: ([Linear(5, 6), LayerNorm((7, 6)), Tanh(), Linear(6, 3)], (7, 5)), True),
    "batchnorm1d-train": (lambda: ([Linear(5, 6), BatchNorm1d(6), Sigmoid(), Linear(6, 3)], (7, 5)), True),
    "batchnorm1d-eval": (lambda: ([Linear(5, 6), BatchNorm1d(6), GELU(), Linear(6, 3)], (7, 5)), False),
    "cnn-batchnorm2d-train": (lambda: ([Conv2d(2, 3, 3), BatchNorm2d(3), Tanh(), Flatten(), Linear(48, 3)],
                                       (4, 2, 6, 6)), True),
    "cnn-batchnorm2d-eval": (lambda: ([Conv2d(2, 3, 3), BatchNorm2d(3), ReLU(), Flatten(), Linear(48, 3)],
                                      (4, 2, 6, 6)), False),
    # train mode: the forward's power iteration, then u and v constants (as torch)
    "spectralnorm-ReLU": (lambda: ([SpectralNormLinear(5, 6), ReLU(), Linear(6, 3)], (7, 5)), True),
    "spectralnorm-Tanh": (lambda: ([SpectralNormLinear(5, 6), Tanh(), Linear(6, 3)], (7, 5)), True),
    "spectralnorm-hidden": (lambda: ([Linear(5, 6), Tanh(), SpectralNormLinear(6, 6, n_power_iterations=2), ReLU(),
                                      Linear(6, 3)], (7, 5)), True),  # an input tangent Rx into it
    "spectralnorm-eval": (lambda: ([Linear(5, 6), GELU(), SpectralNormLinear(6, 3, bias=False)], (7, 5)), False),
}


# HVPs only (the matrices are checked on the CNNs above): the other activations in a CNN
HVP_ARCHITECTURES = {**ARCHITECTURES, **{f"cnn-{a.__name__}": (lambda a=a: cnn(a), True)
                                         for a in (Sigmoid, LeakyReLU, Identity)}}


def problem(arch, loss_name, seed=0, dtype=np.float64):
    """``(net, loss, x, t)``: the architecture with perturbed parameters and running statistics."""
    rng = np.random.default_rng(seed)
    build, training = HVP_ARCHITECTURES[arch]
    layers, x_shape = build()
    net = Network(layers, rng, dtype).train(training)
    net.flat[...] += rng.normal(scale=0.3, size=net.num_parameters)
    for name, buf in net.named_buffers():
        if name.endswith("running_mean"):
            buf[...] = rng.normal(size=buf.shape)
        elif name.endswith("running_var"):
            buf[...] = rng.uniform(0.5, 2, size=buf.shape)
    x = rng.normal(size=x_shape).astype(dtype)
    n = x_shape[0]
    t = rng.integers(0, 3, size=n) if loss_name == "cross_entropy" else (rng.normal(size=(n, 3)) * 0.5).astype(dtype)
    return net, make_loss(loss_name), x, t


class TorchTwin:
    """torch's loss, gradient and reverse-over-reverse second derivatives for the same problem."""

    def __init__(self, net, loss_name, x, t):
        self.net, self.loss_name = net, loss_name
        self.module = torch_module(net)
        self.params = list(self.module.parameters())
        self.t = torch.tensor(t)
        self.z = self.module(torch.tensor(x))
        self.L = TORCH_LOSS[loss_name](self.z, self.t)
        grads = torch.autograd.grad(self.L, self.params, create_graph=True)
        self.grad = torch.cat([g.reshape(-1) for g in grads])

    def _flat(self, tensors):
        return torch.cat([g.reshape(-1) for g in tensors]).detach().numpy()

    def hvp(self, v):
        return self._flat(torch.autograd.grad(self.grad, self.params, grad_outputs=torch.tensor(v),
                                              retain_graph=True))

    def hessian_rows(self, rows):
        return np.stack([self._flat(torch.autograd.grad(self.grad[i], self.params, retain_graph=True))
                         for i in rows])

    def jacobian(self):
        z = self.z.reshape(-1)
        return np.stack([self._flat(torch.autograd.grad(z[m], self.params, retain_graph=True))
                         for m in range(z.numel())])

    def output_hessian(self):
        z = self.z.detach().requires_grad_(True)
        gz = torch.autograd.grad(TORCH_LOSS[self.loss_name](z, self.t), z, create_graph=True)[0].reshape(-1)
        return np.stack([torch.autograd.grad(gz[m], z, retain_graph=True)[0].reshape(-1).numpy()
                         for m in range(gz.numel())])

    def per_example(self):
        """Row n: gradient of N times the part of the loss due to example n's outputs."""
        n, d = self.z.shape
        rows = []
        for i in range(n):
            zi, ti = self.z[i:i + 1], self.t[i:i + 1]
            if self.loss_name == "cross_entropy":
                part = torch.nn.functional.cross_entropy(zi, ti, reduction="sum") / n
            else:
                part = TORCH_LOSS[self.loss_name](zi, ti, reduction="sum") / (n * d)
            rows.append(self._flat(torch.autograd.grad(n * part, self.params, retain_graph=True)))
        return np.stack(rows)


def buffers(net):
    return [b.copy() for _, b in net.named_buffers()]


def assert_buffers_unchanged(net, before):
    for (name, b), a in zip(net.named_buffers(), before):
        np.testing.assert_array_equal(b, a, err_msg=name)


LOSSES = ["mse", "cross_entropy", "huber"]


@pytest.mark.parametrize("arch", list(HVP_ARCHITECTURES))
@pytest.mark.parametrize("loss_name", LOSSES)
def test_hvp_against_torch_double_backward(arch, loss_name):
    net, loss, x, t = problem(arch, loss_name)
    twin = TorchTwin(net, loss_name, x, t)
    V = np.random.default_rng(1).normal(size=(3, net.num_parameters))
    before = buffers(net)
    HV = hvp(net, loss, x, t, V)
    assert_buffers_unchanged(net, before)
    for k in range(3):
        assert_close(HV[k], twin.hvp(V[k]), RTOL, f"HVP[{k}]")
    assert_close(hvp(net, loss, x, t, V[0]), HV[0], 1e-15, "single direction")


@pytest.mark.parametrize("arch", ["mlp-Tanh", "layernorm", "batchnorm1d-train", "cnn-batchnorm2d-train",
                                  "spectralnorm-hidden"])
def test_float32_hvp_and_hessian_against_torch(arch):
    net, loss, x, t = problem(arch, "cross_entropy", dtype=np.float32)
    twin = TorchTwin(net, "cross_entropy", x, t)
    V = np.random.default_rng(1).normal(size=(2, net.num_parameters)).astype(np.float32)
    HV = hvp(net, loss, x, t, V)
    assert HV.dtype == np.float32
    for k in range(2):
        assert_close(HV[k], twin.hvp(V[k]), 1e-5, f"float32 HVP[{k}]")
    rows = np.linspace(0, net.num_parameters - 1, 8).astype(int)
    assert_close(hessian(net, loss, x, t)[rows], twin.hessian_rows(rows), 1e-5, "float32 Hessian rows")


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_hessian_ggn_jacobian_per_example_against_torch(arch):
    loss_name = "cross_entropy" if "Tanh" in arch or "eval" in arch else "mse"
    net, loss, x, t = problem(arch, loss_name)
    twin = TorchTwin(net, loss_name, x, t)
    before = buffers(net)

    H, asymmetry = hessian(net, loss, x, t, block_size=40, return_asymmetry=True)
    assert asymmetry < 1e-13
    np.testing.assert_array_equal(H, H.T)
    P = net.num_parameters
    rows = np.arange(P) if P <= 120 else np.linspace(0, P - 1, 12).astype(int)  # torch's conv is slow here
    assert_close(H[rows], twin.hessian_rows(rows), RTOL, "Hessian rows")

    J = twin.jacobian()
    for mode in ("forward", "reverse"):
        assert_close(jacobian(net, x, block_size=16, mode=mode), J, RTOL, f"Jacobian ({mode})")
    assert_close(ntk(net, x), J @ J.T, RTOL, "NTK")

    G = J.T @ twin.output_hessian() @ J
    assert_close(ggn(net, loss, x, t), G, RTOL, "GGN")
    V = np.random.default_rng(2).normal(size=(2, net.num_parameters))
    assert_close(ggn_vp(net, loss, x, t, V), V @ G, RTOL, "GGN-vector product")

    expected = twin.per_example()
    assert_close(per_example_gradients(net, loss, x, t, mode="vjp", block_size=3), expected, RTOL,
                 "per-example gradients (VJP)")
    assert_close(per_example_gradients(net, loss, x, t), expected, RTOL, "per-example gradients (auto)")
    if "train" not in arch and "over-batch" not in arch:
        assert_close(per_example_gradients(net, loss, x, t, mode="layers"), expected, RTOL,
                     "per-example gradients (per layer)")
    assert_buffers_unchanged(net, before)


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("arch", ["mlp-Sigmoid", "mlp-ReLU", "layernorm", "cnn-GELU"])
def test_hessian_routes_agree(arch, loss_name, monkeypatch):
    """Linear layers under an MLP top take the factored route; the unit-direction route must agree."""
    hessian_module = importlib.import_module("refplastic.curvature.hessian")
    net, loss, x, t = problem(arch, loss_name)
    factored = hessian(net, loss, x, t, block_size=5, symmetrize=False)
    monkeypatch.setattr(hessian_module, "_factors", lambda batch, start: False)
    unit = hessian(net, loss, x, t, block_size=17, symmetrize=False)
    assert_close(factored, unit, 1e-13, "factored vs unit-direction Hessian")
    if arch.startswith("mlp"):
        assert not np.array_equal(factored, unit)  # the two routes really differ in the arithmetic


# spectral norm in eval mode: differences with u and v held fixed, as the derivatives hold them
@pytest.mark.parametrize("arch", ["mlp-Tanh", "mlp-GELU", "layernorm", "batchnorm1d-train", "cnn-Tanh",
                                  "cnn-batchnorm2d-train", "spectralnorm-eval"])
def test_hvp_against_finite_differences(arch):
    net, loss, x, t = problem(arch, "cross_entropy")
    v = np.random.default_rng(3).normal(size=net.num_parameters)
    theta, h = net.get_flat(), 1e-5
    batch = CurvatureBatch(net, loss, x, t)

    def grad_at(eps):
        net.set_flat(theta + eps * v)
        return CurvatureBatch(net, loss, x, t).grad

    fd = (grad_at(h) - grad_at(-h)) / (2 * h)
    net.set_flat(theta)
    assert_close(batch.hvp(v), fd, 1e-6, "HVP vs central differences")


def test_batch_products_are_consistent():
    net, loss, x, t = problem("batchnorm1d-train", "cross_entropy")
    batch = CurvatureBatch(net, loss, x, t)
    rng = np.random.default_rng(4)
    V = rng.normal(size=(4, net.num_parameters))
    U = rng.normal(size=(4, *batch.z.shape))
    np.testing.assert_allclose(np.einsum("kp,kp->k", batch.vjp(U), V),
                               np.einsum("kij,kij->k", U, batch.jvp(V)), rtol=1e-12)
    np.testing.assert_array_equal(batch.hvp(V), batch.hvp(V))
    value, grad = net.copy().loss_and_grad(x, t, loss)
    assert batch.value == value
    np.testing.assert_allclose(batch.grad, grad, rtol=1e-14)
    # G and H differ by the second-order terms of the layers
    assert rel(batch.ggn_vp(V), batch.hvp(V)) > 1e-3


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_gradient_statistics():
    net, loss, x, t = problem("mlp-Tanh", "cross_entropy")
    G = per_example_gradients(net, loss, x, t)
    mean = G.mean(axis=0)
    np.testing.assert_allclose(mean, CurvatureBatch(net, loss, x, t).grad, rtol=1e-12, atol=1e-16)
    F = empirical_fisher(G)
    np.testing.assert_allclose(F, sum(np.outer(g, g) for g in G) / len(G), rtol=1e-12)
    np.testing.assert_allclose(gradient_covariance(G), F - np.outer(mean, mean), atol=1e-14)
    S = cosine_similarity(np.vstack([G, np.zeros(net.num_parameters)]))
    np.testing.assert_allclose(np.diag(S)[:-1], 1)
    assert np.all(S[-1] == 0) and np.all(np.abs(S) <= 1 + 1e-12)
    np.testing.assert_allclose(S[0, 1], G[0] @ G[1] / np.linalg.norm(G[0]) / np.linalg.norm(G[1]))


def test_bad_shapes_and_modes_are_errors():
    net, loss, x, t = problem("mlp-Tanh", "mse")
    batch = CurvatureBatch(net, loss, x, t)
    with pytest.raises(ValueError, match="directions must have shape"):
        batch.hvp(np.zeros(3))
    with pytest.raises(ValueError, match="cotangents must have shape"):
        batch.vjp(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="mode"):
        jacobian(net, x, mode="sideways")
    train_bn, loss, x, t = problem("batchnorm1d-train", "mse")
    with pytest.raises(ValueError, match="independent examples"):
        per_example_gradients(train_bn, loss, x, t, mode="layers")
    over_batch, loss, x, t = problem("layernorm-over-batch", "mse")
    with pytest.raises(ValueError, match="independent examples"):
        per_example_gradients(over_batch, loss, x, t, mode="layers")


def test_gram_in_row_blocks_is_the_whole_product():
    from refplastic.curvature.jacobian import gram

    J = np.random.default_rng(0).normal(size=(37, 11))
    np.testing.assert_allclose(gram(J, rows=8), J @ J.T, rtol=1e-14, atol=1e-14)
    assert gram(J.astype(np.float32), rows=5).dtype == np.float32
