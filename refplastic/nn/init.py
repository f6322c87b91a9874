"""PyTorch's default initialisation, drawn from an explicit ``numpy.random.Generator``.

``torch.nn.Linear`` and ``torch.nn.Conv2d`` call ``kaiming_uniform_(weight, a=sqrt(5))``, whose
bound is ``gain * sqrt(3 / fan_in)`` with ``gain = sqrt(2 / (1 + a^2)) = sqrt(1/3)``, that is

    weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),    bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),

with ``fan_in = in_features`` (Linear) or ``in_channels * kh * kw`` (Conv2d). The draws are the
same distribution as torch's, not the same numbers: torch's generator is not reproduced. The
weight is drawn before the bias, layer by layer, in parameter order.
"""

import math


def fan_in(shape):
    """Fan-in of a weight of PyTorch layout ``(out, in, *kernel)``: ``in * prod(kernel)``."""
    return math.prod(shape[1:])


def uniform_(array, bound, rng):
    """Fill ``array`` in place with ``U(-bound, bound)`` drawn in float64, then cast."""
    array[...] = rng.uniform(-bound, bound, size=array.shape)


def torch_default_init_(weight, bias, rng):
    """PyTorch's default for Linear and Conv2d: both ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    fi = fan_in(weight.shape)
    bound = 1.0 / math.sqrt(fi) if fi > 0 else 0.0
    uniform_(weight, bound, rng)
    if bias is not None:
        uniform_(bias, bound, rng)
