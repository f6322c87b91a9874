"""GELU and its first two derivatives, elementwise (NumPy has no ``erf``): the exact form and
torch's tanh approximation (``approximate="tanh"``).

Exact:

    Phi(x) = (1 + erf(x / sqrt 2)) / 2,   p(x) = exp(-x^2 / 2) / sqrt(2 pi)
    gelu(x)    = x Phi(x)
    gelu'(x)   = Phi(x) + x p(x)
    gelu''(x)  = p(x) (2 - x^2)

tanh approximation, with ``u = c (x + a x^3)``, ``c = sqrt(2 / pi)``, ``a = 0.044715``,
``T = tanh(u)``, ``u' = c (1 + 3 a x^2)``, ``u'' = 6 a c x``:

    gelu_tanh(x)   = x (1 + T) / 2
    gelu_tanh'(x)  = (1 + T) / 2 + x (1 - T^2) u' / 2
    gelu_tanh''(x) = (1 - T^2) (u' + x (u'' - 2 T u'^2) / 2)
"""

import math

import numpy as np
from numba import vectorize

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SIGNATURES = ["float32(float32)", "float64(float64)"]  # float32 first: NumPy takes the first loop the input casts to safely


@vectorize(_SIGNATURES, cache=True)
def gelu(x):
    return x * 0.5 * (1.0 + math.erf(x * _INV_SQRT2))


@vectorize(_SIGNATURES, cache=True)
def gelu_d1(x):
    return 0.5 * (1.0 + math.erf(x * _INV_SQRT2)) + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)


@vectorize(_SIGNATURES, cache=True)
def gelu_d2(x):
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x) * (2.0 - x * x)


_C = math.sqrt(2.0 / math.pi)
_A = 0.044715


@vectorize(_SIGNATURES, cache=True)
def gelu_tanh(x):
    return 0.5 * x * (1.0 + math.tanh(_C * (x + _A * x * x * x)))


@vectorize(_SIGNATURES, cache=True)
def gelu_tanh_d1(x):
    t = math.tanh(_C * (x + _A * x * x * x))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _C * (1.0 + 3.0 * _A * x * x)


@vectorize(_SIGNATURES, cache=True)
def gelu_tanh_d2(x):
    t = math.tanh(_C * (x + _A * x * x * x))
    du = _C * (1.0 + 3.0 * _A * x * x)
    return (1.0 - t * t) * (du + 0.5 * x * (6.0 * _A * _C * x - 2.0 * t * du * du))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu_naive(x):
    """NumPy twin of :func:`gelu` (float64)."""
    return x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_d1_naive(x):
    """NumPy twin of :func:`gelu_d1` (float64)."""
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def gelu_d2_naive(x):
    """NumPy twin of :func:`gelu_d2` (float64)."""
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) * (2.0 - x * x)


def gelu_tanh_naive(x):
    """NumPy twin of :func:`gelu_tanh` (float64)."""
    return 0.5 * x * (1.0 + np.tanh(_C * (x + _A * x**3)))


def gelu_tanh_d1_naive(x):
    """NumPy twin of :func:`gelu_tanh_d1` (float64)."""
    t = np.tanh(_C * (x + _A * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * _C * (1.0 + 3.0 * _A * x**2)


def gelu_tanh_d2_naive(x):
    """NumPy twin of :func:`gelu_tanh_d2` (float64)."""
    t = np.tanh(_C * (x + _A * x**3))
    du = _C * (1.0 + 3.0 * _A * x**2)
    return (1.0 - t**2) * (du + 0.5 * x * (6.0 * _A * _C * x - 2.0 * t * du**2))
