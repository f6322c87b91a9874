"""Fused optimizer updates on flat vectors, each beside a naive NumPy twin (``*_naive``).

Every ``*_step`` function updates ``params`` and the state buffers in place, in one pass over the
vector, with the arithmetic of PyTorch 2.13's single-tensor implementation (``maximize=False``):
the same operations in the same order, in the dtype of ``params`` (scalars such as ``1 - beta1``
are formed in float64 and rounded to that dtype, as torch does). The ``*_naive`` twins take the
same arguments and perform the update one whole-vector operation at a time, as torch writes it.

Buffers an optimizer does not use in its configuration (the momentum buffer without momentum, ...)
are passed as empty arrays of the right dtype; the ones it uses must match ``params`` in shape and
dtype (checked: the kernels do not bounds-check).
"""

import math

import numpy as np
from numba import njit

# One serial pass over the vector. NumPy's error model lets division by zero give inf/nan as in
# torch instead of raising, which is also what lets LLVM vectorise the loop (AVX-512 on this host).
# Not parallel=True: Numba's OpenMP threading layer aborts fork()ed children (multiprocessing
# pools of seeds), and one thread per process is what parallel runs of seeds want anyway.
_fused_kernel = njit(cache=True, error_model="numpy")


def _check_like_params(params, **arrays):
    for name, a in arrays.items():
        if a.shape != params.shape or a.dtype != params.dtype:
            raise ValueError(f"{name} must be a {params.dtype} array of shape {params.shape}, got {a.dtype} {a.shape}")


def _lerp_from(weight, dt):
    """``(from_end, coefficient)`` of torch's vectorised ``lerp(start, end, weight)``:

        start + weight (end - start)          if weight < 0.5
        end + (weight - 1) (end - start)      otherwise (the nearer end, for accuracy)
    """
    weight = dt(weight)
    return (True, weight - dt(1)) if weight >= 0.5 else (False, weight)


@njit(cache=True, inline="always")
def _lerp(start, end, from_end, coefficient):
    return (end if from_end else start) + coefficient * (end - start)


def _lerp_naive(start, end, weight):
    """torch's scalar ``lerp``, equal to :func:`_lerp` in every rounding."""
    if weight < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


# ---- SGD ---------------------------------------------------------------------------------------
def sgd_step(params, grad, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov):
    """One SGD step; ``step`` counts steps including this one (the first momentum step is 1).

        g = grad + weight_decay * p
        b = g                                  on the first step
        b = momentum * b + (1 - dampening) g   afterwards          (only if momentum != 0)
        g = g + momentum * b  if nesterov else  b                  (only if momentum != 0)
        p = p - lr * g
    """
    _check_like_params(params, grad=grad, **({"momentum_buffer": momentum_buffer} if momentum != 0 else {}))
    dt = params.dtype.type
    _sgd_kernel(params, grad, momentum_buffer, step == 1, dt(lr), dt(momentum), dt(1 - dampening),
                dt(weight_decay), nesterov)


@_fused_kernel
def _sgd_kernel(params, grad, momentum_buffer, first, lr, momentum, one_minus_dampening, weight_decay, nesterov):
    for i in range(params.size):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * params[i]
        if momentum != 0:
            if first:
                b = g
            else:
                b = momentum_buffer[i] * momentum + one_minus_dampening * g
            momentum_buffer[i] = b
            g = g + momentum * b if nesterov else b
        params[i] = params[i] + (-lr) * g


def sgd_step_naive(params, grad, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov):
    """NumPy twin of :func:`sgd_step`."""
    dt = params.dtype.type
    g = grad
    if weight_decay != 0:
        g = g + dt(weight_decay) * params
    if momentum != 0:
        if step == 1:
            momentum_buffer[...] = g
        else:
            momentum_buffer *= dt(momentum)
            momentum_buffer += dt(1 - dampening) * g
        g = g + dt(momentum) * momentum_buffer if nesterov else momentum_buffer
    params += dt(-lr) * g


# ---- Adam and AdamW ------------------------------------------------------------------------------
def adam_step(params, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
              decoupled_weight_decay, amsgrad, eps_root=0.0):
    """One Adam step (AdamW with ``decoupled_weight_decay``); ``step`` counts steps including this one.

        p = p (1 - lr weight_decay)            if decoupled_weight_decay
        g = grad + weight_decay p              otherwise
        m = lerp(m, g, 1 - beta1)              = beta1 m + (1 - beta1) g
        v = beta2 v + (1 - beta2) g^2
        v_max = max(v_max, v)                  only if amsgrad; then v_max replaces v below
        p = p - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)                if eps_root = 0
        p = p - lr / (1 - beta1^step) * m / (sqrt(v / (1 - beta2^step) + eps_root) + eps)       otherwise

    ``eps_root`` is the epsilon inside the square root of Lyle et al. (2023, eq. 6, their eps-bar)
    and optax's ``adam(eps_root=...)``; torch has none, and with 0 the arithmetic is torch's.
    """
    _check_like_params(params, grad=grad, exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                       **({"max_exp_avg_sq": max_exp_avg_sq} if amsgrad else {}))
    dt = params.dtype.type
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    _adam_kernel(params, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, dt(1 - lr * weight_decay), dt(weight_decay),
                 decoupled_weight_decay, *_lerp_from(1 - beta1, dt), dt(beta2), dt(1 - beta2),
                 dt(bias_correction2 ** 0.5), dt(bias_correction2), dt(eps), dt(eps_root), dt(-lr / bias_correction1),
                 amsgrad)


@_fused_kernel
def _adam_kernel(params, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, decay_factor, weight_decay, decoupled,
                 m_from_end, m_coefficient, beta2, one_minus_beta2, bias_correction2_sqrt, bias_correction2, eps,
                 eps_root, neg_step_size, amsgrad):
    for i in range(params.size):
        p = params[i]
        g = grad[i]
        if weight_decay != 0:
            if decoupled:
                p = p * decay_factor
            else:
                g = g + weight_decay * p
        m = _lerp(exp_avg[i], g, m_from_end, m_coefficient)
        v = exp_avg_sq[i] * beta2 + one_minus_beta2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        if amsgrad:
            v = max(max_exp_avg_sq[i], v)
            max_exp_avg_sq[i] = v
        if eps_root == 0:
            denominator = math.sqrt(v) / bias_correction2_sqrt + eps
        else:
            denominator = math.sqrt(v / bias_correction2 + eps_root) + eps
        params[i] = p + neg_step_size * m / denominator


def adam_step_naive(params, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1, beta2, eps, weight_decay,
                    decoupled_weight_decay, amsgrad, eps_root=0.0):
    """NumPy twin of :func:`adam_step`."""
    dt = params.dtype.type
    g = grad
    if weight_decay != 0:
        if decoupled_weight_decay:
            params *= dt(1 - lr * weight_decay)
        else:
            g = g + dt(weight_decay) * params
    exp_avg[...] = _lerp_naive(exp_avg, g, dt(1 - beta1))
    exp_avg_sq *= dt(beta2)
    exp_avg_sq += dt(1 - beta2) * g * g
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    if amsgrad:
        np.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
    v = max_exp_avg_sq if amsgrad else exp_avg_sq
    if eps_root == 0:
        denom = np.sqrt(v) / dt(bias_correction2 ** 0.5) + dt(eps)
    else:
        denom = np.sqrt(v / dt(bias_correction2) + dt(eps_root)) + dt(eps)
    params += dt(-lr / bias_correction1) * exp_avg / denom


# ---- RMSprop -----------------------------------------------------------------------------------
def rmsprop_step(params, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum,
                 centered):
    """One RMSprop step.

        g = grad + weight_decay p
        s = alpha s + (1 - alpha) g^2
        a = lerp(a, g, 1 - alpha),  d = sqrt(s - a^2) + eps      if centered
                                    d = sqrt(s) + eps            otherwise
        b = momentum b + g / d,     p = p - lr b                 if momentum > 0
                                    p = p - lr g / d             otherwise
    """
    _check_like_params(params, grad=grad, square_avg=square_avg, **({"grad_avg": grad_avg} if centered else {}),
                       **({"momentum_buffer": momentum_buffer} if momentum > 0 else {}))
    dt = params.dtype.type
    _rmsprop_kernel(params, grad, square_avg, grad_avg, momentum_buffer, dt(lr), dt(alpha), dt(1 - alpha),
                    *_lerp_from(1 - alpha, dt), dt(eps), dt(weight_decay), dt(momentum), centered)


@_fused_kernel
def _rmsprop_kernel(params, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, one_minus_alpha, a_from_end,
                    a_coefficient, eps, weight_decay, momentum, centered):
    for i in range(params.size):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * params[i]
        s = square_avg[i] * alpha + one_minus_alpha * g * g
        square_avg[i] = s
        if centered:
            a = _lerp(grad_avg[i], g, a_from_end, a_coefficient)
            grad_avg[i] = a
            d = math.sqrt(s - a * a) + eps
        else:
            d = math.sqrt(s) + eps
        if momentum > 0:
            b = momentum_buffer[i] * momentum + g / d
            momentum_buffer[i] = b
            params[i] = params[i] + (-lr) * b
        else:
            params[i] = params[i] + (-lr) * g / d


def rmsprop_step_naive(params, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay, momentum,
                       centered):
    """NumPy twin of :func:`rmsprop_step`."""
    dt = params.dtype.type
    g = grad
    if weight_decay != 0:
        g = g + dt(weight_decay) * params
    square_avg *= dt(alpha)
    square_avg += dt(1 - alpha) * g * g
    if centered:
        grad_avg[...] = _lerp_naive(grad_avg, g, dt(1 - alpha))
        avg = np.sqrt(square_avg - grad_avg * grad_avg) + dt(eps)
    else:
        avg = np.sqrt(square_avg) + dt(eps)
    if momentum > 0:
        momentum_buffer *= dt(momentum)
        momentum_buffer += g / avg
        params += dt(-lr) * momentum_buffer
    else:
        params += dt(-lr) * g / avg


def rmsprop_step_eps_in_sqrt(params, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
                             momentum, centered):
    """One RMSprop step with eps inside the square root and an exponential average of the
    gradient (optax's ``rmsprop``; refplastic.nn.optim.RMSprop says when to use it):

        g = grad + weight_decay p,   s = alpha s + (1 - alpha) g^2,   a = alpha a + (1 - alpha) g
        d = sqrt(s - a^2 + eps) if centered else sqrt(s + eps)
        b = momentum b + g / d,  p = p - lr b    if momentum > 0,   else   p = p - lr g / d

    each in the order of operations of its NumPy twin, so that the two agree bit for bit.
    """
    _check_like_params(params, grad=grad, square_avg=square_avg, **({"grad_avg": grad_avg} if centered else {}),
                       **({"momentum_buffer": momentum_buffer} if momentum > 0 else {}))
    dt = params.dtype.type
    _rmsprop_eps_in_sqrt_kernel(params, grad, square_avg, grad_avg, momentum_buffer, dt(lr), dt(alpha), dt(1 - alpha),
                                dt(eps), dt(weight_decay), dt(momentum), centered)


@_fused_kernel
def _rmsprop_eps_in_sqrt_kernel(params, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, one_minus_alpha, eps,
                                weight_decay, momentum, centered):
    for i in range(params.size):
        g = grad[i]
        if weight_decay != 0:
            g = g + weight_decay * params[i]
        s = square_avg[i] * alpha + one_minus_alpha * (g * g)
        square_avg[i] = s
        if centered:
            a = grad_avg[i] * alpha + one_minus_alpha * g
            grad_avg[i] = a
            d = (s - a * a) + eps
        else:
            d = s + eps
        d = g / math.sqrt(d)
        if momentum > 0:
            d = momentum_buffer[i] * momentum + d
            momentum_buffer[i] = d
        params[i] = params[i] - lr * d


def rmsprop_step_eps_in_sqrt_naive(params, grad, square_avg, grad_avg, momentum_buffer, lr, alpha, eps, weight_decay,
                                   momentum, centered):
    """NumPy twin of :func:`rmsprop_step_eps_in_sqrt`."""
    dt = params.dtype.type
    g = grad + dt(weight_decay) * params if weight_decay != 0 else grad
    square_avg *= dt(alpha)
    square_avg += dt(1 - alpha) * np.square(g)
    if centered:
        grad_avg *= dt(alpha)
        grad_avg += dt(1 - alpha) * g
        d = square_avg - np.square(grad_avg)
        d += dt(eps)
    else:
        d = square_avg + dt(eps)
    np.sqrt(d, out=d)
    np.divide(g, d, out=d)
    if momentum > 0:
        momentum_buffer *= dt(momentum)
        momentum_buffer += d
        d = momentum_buffer
    params -= dt(lr) * d
