"""Fused optimizer kernels against their naive NumPy twins: the same roundings, so equal bit for bit."""

import numpy as np
import pytest

from refplastic.kernels.optim import (adam_step, adam_step_naive, rmsprop_step, rmsprop_step_eps_in_sqrt,
                                      rmsprop_step_eps_in_sqrt_naive, rmsprop_step_naive, sgd_step, sgd_step_naive)

DTYPES = [np.float64, np.float32]
SIZES = [1, 37, 4099]


SQUARES = ("exp_avg_sq", "max_exp_avg_sq", "square_avg")


def initial_buffer(name, size, dtype, rng):
    """A non-trivial starting state (squares positive); an empty array for an unused buffer (None)."""
    if name is None:
        return np.zeros(0, dtype)
    x = rng.normal(size=size)
    return (np.abs(x) + 0.5 if name in SQUARES else 0.1 * x).astype(dtype)


def run_both(fused, naive, buffer_names, make_args, dtype, size, steps=4):
    """Run ``fused`` and ``naive`` on copies of the same parameters, buffers and gradients."""
    rng = np.random.default_rng(size)
    params = rng.normal(size=size).astype(dtype)
    buffers = [initial_buffer(name, size, dtype, rng) for name in buffer_names]
    states = [(params.copy(), [b.copy() for b in buffers]) for _ in range(2)]
    for step in range(1, steps + 1):
        grad = (rng.normal(size=size) * rng.uniform(0.1, 3.0)).astype(dtype)
        for update, (p, bufs) in zip((fused, naive), states):
            update(p, grad, *bufs, *make_args(step))
        (p1, b1), (p2, b2) = states
        assert p1.dtype == dtype and np.all(np.isfinite(p1))
        np.testing.assert_array_equal(p1, p2, err_msg=f"params after step {step}")
        for name, x1, x2 in zip(buffer_names, b1, b2):
            np.testing.assert_array_equal(x1, x2, err_msg=f"{name} after step {step}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("momentum,dampening,nesterov", [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.3, False),
                                                         (0.9, 0.0, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_sgd_kernel(momentum, dampening, nesterov, weight_decay, size, dtype):
    buffers = ["momentum_buffer" if momentum else None]
    run_both(sgd_step, sgd_step_naive, buffers,
             lambda step: (step, 0.1, momentum, dampening, weight_decay, nesterov), dtype, size)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.3, 0.6)])
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (0.1, False), (0.1, True)])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("eps_root", [0.0, 1e-3])
def test_adam_kernel(betas, weight_decay, decoupled, amsgrad, eps_root, size, dtype):
    buffers = ["exp_avg", "exp_avg_sq", "max_exp_avg_sq" if amsgrad else None]
    run_both(adam_step, adam_step_naive, buffers,
             lambda step: (step, 0.01, *betas, 1e-8, weight_decay, decoupled, amsgrad, eps_root), dtype, size)


# torch's RMSprop (eps outside the root) and optax's (DQN Zoo's: eps inside), each with its lr and eps
RMSPROP_FORMS = {"torch": (rmsprop_step, rmsprop_step_naive, 0.01, 1e-8),
                 "eps_in_sqrt": (rmsprop_step_eps_in_sqrt, rmsprop_step_eps_in_sqrt_naive, 2.5e-4, 0.01 / 32**2)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("alpha", [0.99, 0.95, 0.3])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("form", RMSPROP_FORMS)
def test_rmsprop_kernels(form, alpha, momentum, centered, weight_decay, size, dtype):
    fused, naive, lr, eps = RMSPROP_FORMS[form]
    buffers = ["square_avg", "grad_avg" if centered else None, "momentum_buffer" if momentum else None]
    run_both(fused, naive, buffers, lambda step: (lr, alpha, eps, weight_decay, momentum, centered), dtype, size)


def test_kernels_check_the_buffers_they_use():
    p = np.zeros(5)
    with pytest.raises(ValueError, match=r"momentum_buffer must be a float64 array of shape \(5,\)"):
        sgd_step(p, np.ones(5), np.zeros(0), 1, 0.1, 0.9, 0.0, 0.0, False)
    with pytest.raises(ValueError, match="max_exp_avg_sq must be a float64 array"):
        adam_step(p, np.ones(5), np.zeros(5), np.zeros(5), np.zeros(0), 1, 0.1, 0.9, 0.99, 1e-8, 0.0, False, True)
    with pytest.raises(ValueError, match="grad must be a float64 array"):
        rmsprop_step(p, np.ones(5, np.float32), np.zeros(5), np.zeros(0), np.zeros(0), 0.1, 0.9, 1e-8, 0.0, 0.0,
                     False)
