"""Losses: value, gradient and output-space Hessian-vector product against torch and FD."""

import numpy as np
import pytest
import torch
from oracle import RTOL, assert_close

from refplastic.nn import CrossEntropyLoss, HuberLoss, MSELoss, make_loss
from refplastic.nn.losses import check_probabilities

TORCH_LOSS = {
    "mse": torch.nn.functional.mse_loss,
    "huber": lambda z, t: torch.nn.functional.huber_loss(z, t, delta=1.0),
    "cross_entropy": torch.nn.functional.cross_entropy,
}


def _targets(name, z, rng, probabilities=False):
    if name != "cross_entropy":
        return (z + rng.normal(scale=1.5, size=z.shape)).astype(z.dtype)
    if probabilities:
        t = rng.uniform(size=z.shape)
        return (t / t.sum(axis=1, keepdims=True)).astype(z.dtype)
    return rng.integers(0, z.shape[1], size=z.shape[0])


CASES = [("mse", (7, 3), False), ("mse", (2, 3, 4), False), ("huber", (9, 4), False), ("huber", (5,), False),
         ("cross_entropy", (8, 5), False), ("cross_entropy", (6, 3), True)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,shape,probabilities", CASES)
def test_loss_against_torch(name, shape, probabilities, dtype):
    rng = np.random.default_rng(3)
    z = rng.normal(scale=2.0, size=shape).astype(dtype)
    t = _targets(name, z, rng, probabilities)
    rz = rng.normal(size=shape).astype(dtype)
    loss = make_loss(name)
    value, cache = loss.forward(z, t)
    gz = loss.backward(cache)
    hz = loss.backward_r(cache, rz)

    zt = torch.tensor(z, requires_grad=True)
    lt = TORCH_LOSS[name](zt, torch.tensor(t))
    (gt,) = torch.autograd.grad(lt, zt, create_graph=True)
    (ht,) = torch.autograd.grad(gt, zt, grad_outputs=torch.tensor(rz))
    rtol = RTOL[dtype]
    assert_close(value, lt.item(), rtol, f"{name} value")
    assert_close(gz, gt.detach().numpy(), rtol, f"{name} gradient")
    assert_close(hz, ht.numpy(), rtol, f"{name} Hessian-vector product")
    batched = loss.backward_r(cache, np.stack([rz, -2 * rz]))  # a leading tangent axis K = 2
    assert_close(batched, np.stack([hz, -2 * hz]), rtol, f"{name} Hessian-vector product, K tangents")

    if dtype == np.float64:
        h = 1e-6
        directional = (loss(z + h * rz, t) - loss(z - h * rz, t)) / (2 * h)
        assert abs(directional - np.vdot(gz, rz)) <= 1e-7 * max(1.0, abs(directional))
        g_plus = loss.backward(loss.forward(z + h * rz, t)[1])
        g_minus = loss.backward(loss.forward(z - h * rz, t)[1])
        assert_close(hz, (g_plus - g_minus) / (2 * h), 1e-6, f"{name} Hessian-vector product vs FD")


TORCH_MODULE = {"mse": torch.nn.MSELoss, "huber": torch.nn.HuberLoss, "cross_entropy": torch.nn.CrossEntropyLoss}
LOSS_CLASS = {"mse": MSELoss, "huber": HuberLoss, "cross_entropy": CrossEntropyLoss}


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("name,shape,probabilities,kwargs", [
    ("mse", (7, 3), False, {}), ("huber", (9, 4), False, {}), ("huber", (5, 2), False, {"delta": 0.3}),
    ("huber", (4, 3), False, {"delta": 2.5}), ("cross_entropy", (8, 5), False, {}), ("cross_entropy", (6, 3), True, {}),
    ("cross_entropy", (8, 5), False, {"label_smoothing": 0.1}), ("cross_entropy", (6, 3), True, {"label_smoothing": 0.3}),
    ("cross_entropy", (5, 4), False, {"label_smoothing": 1.0})])
def test_reductions_and_huber_delta_against_torch(name, shape, probabilities, kwargs, reduction):
    rng = np.random.default_rng(4)
    z = rng.normal(scale=2.0, size=shape)
    t = _targets(name, z, rng, probabilities)
    rz = rng.normal(size=shape)
    loss = LOSS_CLASS[name](reduction=reduction, **kwargs)
    value, cache = loss.forward(z, t)
    zt = torch.tensor(z, requires_grad=True)
    lt = TORCH_MODULE[name](reduction=reduction, **kwargs)(zt, torch.tensor(t))
    (gt,) = torch.autograd.grad(lt, zt, create_graph=True)
    (ht,) = torch.autograd.grad(gt, zt, grad_outputs=torch.tensor(rz))
    assert_close(value, lt.item(), 1e-12, f"{name} {reduction} value")
    assert_close(loss.backward(cache), gt.detach().numpy(), 1e-12, f"{name} {reduction} gradient")
    assert_close(loss.backward_r(cache, rz), ht.numpy(), 1e-12, f"{name} {reduction} Hessian-vector product")


def test_bad_reductions_and_deltas_are_clear_errors():
    for cls in (MSELoss, HuberLoss, CrossEntropyLoss):
        with pytest.raises(ValueError, match="'mean' or 'sum'"):
            cls(reduction="none")
    for delta in (0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="delta"):
            HuberLoss(delta=delta)
    assert repr(MSELoss(reduction="sum")) == "MSELoss(reduction='sum')" and repr(MSELoss()) == "MSELoss()"
    for smoothing in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="label_smoothing"):
            CrossEntropyLoss(label_smoothing=smoothing)
    with pytest.raises(ValueError, match="weight=None only"):
        CrossEntropyLoss(weight=np.ones(3))
    with pytest.raises(ValueError, match="negative ignore_index only"):
        CrossEntropyLoss(ignore_index=0)
    CrossEntropyLoss(weight=None, ignore_index=-100)  # torch's defaults
    assert repr(CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(label_smoothing=0.1)"


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [-5000.0, 5000.0, 0.0]])
    loss, cache = CrossEntropyLoss().forward(z, np.array([0, 0]))
    assert np.isfinite(loss) and abs(loss - 5000.0) < 1e-9
    assert np.all(np.isfinite(CrossEntropyLoss().backward(cache)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("probabilities", [False, True])
def test_cross_entropy_keeps_relative_precision_for_large_confident_logits(probabilities, dtype):
    """Per-example losses of 1e-12 next to logits of 1e3: the value must not come from the
    difference of the large sums ``sum lse(z_n)`` and ``sum z_n[y_n]``."""
    rng = np.random.default_rng(5)
    z = rng.normal(scale=5.0, size=(8, 4))
    labels = z.argmax(axis=1)
    z[np.arange(8), labels] += 25.0
    z = (z + 1000.0).astype(dtype)
    t = np.eye(4, dtype=dtype)[labels] if probabilities else labels
    value = CrossEntropyLoss().forward(z, t)[0]
    expected = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(t)).item()
    assert abs(value - expected) <= RTOL[dtype] * abs(expected)


@pytest.mark.parametrize("probabilities", [False, True])
def test_cross_entropy_hessian_is_exact_for_confident_logits(probabilities):
    """``p_m (1 - p_m)`` with ``1 - p_m`` about 2e-8 at the most likely class m: the output
    Hessian-vector product against the formula in long double, where that cancellation costs
    1e-11 (in float64 it cost 1e-8)."""
    rng = np.random.default_rng(6)
    z = np.array([[0.0, -18.0, -19.0, -25.0], [3.0, 21.0, 2.5, -4.0]])
    t = rng.dirichlet(np.ones(4), size=2) if probabilities else np.array([1, 0])
    rz = rng.normal(size=(3, *z.shape))
    loss = CrossEntropyLoss(reduction="sum")
    hz = loss.backward_r(loss.forward(z, t)[1], rz)
    zl, rzl = z.astype(np.longdouble), rz.astype(np.longdouble)
    e = np.exp(zl - zl.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    s = t.sum(axis=1, keepdims=True) if probabilities else 1
    expected = s * p * (rzl - (p * rzl).sum(axis=-1, keepdims=True))
    assert_close(hz, expected, 1e-10, "cross_entropy Hessian-vector product, confident logits")


def test_huber_is_quadratic_inside_and_linear_outside():
    loss = HuberLoss()
    assert loss(np.array([0.5]), np.array([0.0])) == pytest.approx(0.125)
    assert loss(np.array([3.0]), np.array([0.0])) == pytest.approx(2.5)


def test_bad_targets_are_clear_errors():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\): targets row 1 is 3"):
        CrossEntropyLoss().forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="targets must be int labels"):
        CrossEntropyLoss().forward(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="outputs' shape"):
        MSELoss().forward(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_probability_rows_rounded_to_the_dtype_pass(dtype):
    """Exact probabilities rounded to the dtype, and rows normalised in it, for C up to 1000: within 4 C eps."""
    rng = np.random.default_rng(7)
    for c in (2, 10, 1000):
        check_probabilities(rng.dirichlet(np.full(c, 0.3), size=50).astype(dtype))
        t = rng.uniform(size=(50, c)).astype(dtype)
        check_probabilities(t / t.sum(axis=1, keepdims=True))
        check_probabilities(np.eye(c, dtype=dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("edit,message", [
    (lambda t, eps: t.__setitem__((3, 1), t[3, 1] - 0.3), "targets row 3 sums to 0.7"),
    (lambda t, eps: t.__setitem__((2, 0), -0.25), "targets row 2 has a negative entry -0.25 (column 0)"),
    (lambda t, eps: t.__setitem__((4, 2), np.nan), "targets row 4 contains NaN or infinity"),
    (lambda t, eps: t.__setitem__((1, 0), t[1, 0] + 5 * 10 * eps), "targets row 1 sums to 1.0"),  # 5 C eps off
])
def test_bad_probability_rows_are_named(dtype, edit, message):
    t = np.zeros((6, 10), dtype)
    t[:, 1] = 1.0
    edit(t, np.finfo(dtype).eps)
    with pytest.raises(ValueError) as info:
        check_probabilities(t)
    assert str(info.value).startswith(message) and "class probabilities" in str(info.value), str(info.value)
    check_probabilities(t[5:])  # the rows after it are fine


def test_the_loss_itself_takes_any_float_targets_as_torch_does():
    """Unnormalised and negative rows give torch's numbers: the check is the front ends' (check_probabilities)."""
    rng = np.random.default_rng(8)
    z, t = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    expected = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(t)).item()
    assert_close(CrossEntropyLoss()(z, t), expected, 1e-12, "cross_entropy, arbitrary float targets")
