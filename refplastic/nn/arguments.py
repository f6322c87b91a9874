"""Checks of layer constructor arguments: a bad value (from a user, or from a file's stored
architecture) is a one-line ValueError naming the argument, not a NumPy error three calls later."""

import math

import numpy as np


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_int(value, name):
    """``value`` as an int >= 1; else a ValueError."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def integer(value, name):
    """``value`` as an int (negative allowed, as for axes); else a ValueError."""
    if not _is_int(value):
        raise ValueError(f"{name} must be an int, got {value!r}")
    return int(value)


def finite_float(value, name, minimum=-math.inf, maximum=math.inf, strictly_above=False):
    """``value`` as a finite float in [minimum, maximum] (``(minimum, maximum]`` with
    ``strictly_above``); else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    above = number > minimum if strictly_above else number >= minimum
    if not (math.isfinite(number) and above and number <= maximum):
        bounds = []
        if minimum != -math.inf:
            bounds.append(f"{'>' if strictly_above else '>='} {minimum}")
        if maximum != math.inf:
            bounds.append(f"<= {maximum}")
        raise ValueError(f"{name} must be a finite number {' and '.join(bounds)}".rstrip() + f", got {value!r}")
    return number


def as_pair(value, name, minimum):
    """``(a, b)`` from an int or a pair of ints, each at least ``minimum``; else a ValueError."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(_is_int(v) for v in pair) or min(pair) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)
