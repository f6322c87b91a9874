"""Finite inputs, numbers that are not: how overflow is reported.

A network can overflow on a batch whose loss is still finite (weights or inputs of 1e150: the
curvature grows like the square of the outputs). The computations then run under
``np.errstate(all="ignore")`` and what they produce is checked instead: :func:`finite` raises
:class:`NotFinite` (a ValueError), which :func:`reported_as` turns into one line naming the
quantity, ``"hessian_lanczos: not finite on this batch (the network overflows)"``. The LAPACK
entry points (eigenvalues, singular values) check their matrix first, so LAPACK never sees a NaN.
"""

import contextlib

import numpy as np


class NotFinite(ValueError):
    """A number computed from finite inputs is NaN or infinite: the network overflows on the batch."""


def finite(value, what="a computed number"):
    """``value`` (an array, a number, or a dict of them, nested) if every float in it is finite;
    else :class:`NotFinite` saying that ``what`` is not."""
    values = value.values() if isinstance(value, dict) else [value]
    for v in values:
        if isinstance(v, dict):
            finite(v, what)
            continue
        array = np.asarray(v)
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            raise NotFinite(f"{what} is not finite (the numbers overflow)")
    return value


@contextlib.contextmanager
def reported_as(name):
    """Run the block with NumPy's floating-point warnings off; a :class:`NotFinite` raised in it
    becomes ``NotFinite("<name>: not finite on this batch (the network overflows)")``."""
    with np.errstate(all="ignore"):
        try:
            yield
        except NotFinite:
            raise NotFinite(f"{name}: not finite on this batch (the network overflows)") from None
