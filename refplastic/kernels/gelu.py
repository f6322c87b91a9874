"""Exact GELU and its first two derivatives, elementwise (NumPy has no ``erf``).

    Phi(x) = (1 + erf(x / sqrt 2)) / 2,   p(x) = exp(-x^2 / 2) / sqrt(2 pi)
    gelu(x)    = x Phi(x)
    gelu'(x)   = Phi(x) + x p(x)
    gelu''(x)  = p(x) (2 - x^2)
"""

import math

import numpy as np
from numba import vectorize

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SIGNATURES = ["float64(float64)", "float32(float32)"]


@vectorize(_SIGNATURES, cache=True)
def gelu(x):
    return x * 0.5 * (1.0 + math.erf(x * _INV_SQRT2))


@vectorize(_SIGNATURES, cache=True)
def gelu_d1(x):
    return 0.5 * (1.0 + math.erf(x * _INV_SQRT2)) + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)


@vectorize(_SIGNATURES, cache=True)
def gelu_d2(x):
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x) * (2.0 - x * x)


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
