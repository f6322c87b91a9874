"""Memory of the dense quantities, estimated before they are computed and checked against what is free.

A dense quantity (the NTK, the Jacobian, per-example gradients, the full Hessian or Gauss-Newton
matrix and their eigenvalues, the gradient cosine matrices, an exact effective rank, a reference
case) can need more memory than the machine has; computing it anyway fails minutes later, when
the largest array is allocated. :func:`check_memory` refuses first, in one line naming the
quantity, its largest matrix (shape, dtype, GiB), the estimated peak, and what to lower.

Each estimate is an upper-ish bound of the peak: the bytes of the arrays alive at once at the
worst moment, counted from the code that computes the quantity; each function's docstring gives
its formula, the maximum over the phases of the computation, plus ``batch``. The notation: P
parameters, m those of the largest layer, N examples, D outputs per example, M = N D, b bytes per
number of the network's dtype (8 for float64, 4 for float32), K the block size of the batched
passes; F and T the bytes per example of the arrays a forward and backward pass keeps (every
layer's cache and output cotangent) and of those an R-pass makes a tangent of (the same without
the first layer's cache: its input does not move), both measured on two examples (:func:`sizes`).
Three terms recur:

    E(n)     = n^2 (8 + 8 [b = 4])    LAPACK's float64 working copy of a matrix whose eigenvalues
                                      numpy computes, and the float64 conversion of a float32 one
    pass(K)  = 2 K N T + 2 K P b      a block of K R-passes: K tangents of every layer's arrays
                                      (forward and backward), K directions, K results; K N T less
                                      for a Jacobian built forward (3 M >= P: no R-backward); K is
                                      at most the number of directions (P, M, or N examples)
    batch    = N F                    the batch's forward and backward pass, kept throughout

``tests/test_memory.py`` measures the real peak of small cases (``tracemalloc``, which sees NumPy's
arrays but not LAPACK's working copies) and checks that each estimate lies within a factor of it.
The memory free is Linux's ``MemAvailable`` (``/proc/meminfo``), lowered to what the process's
cgroup still allows (a Slurm job's or a container's limit); elsewhere the free physical pages, or
the physical memory (``os.sysconf``); if none is known, nothing is refused.
"""

import os
from typing import NamedTuple

import numpy as np

GIB = 2 ** 30
MEMINFO = "/proc/meminfo"
LAPACK_BYTES = 8  # numpy's eigenvalue routines compute in float64


class Sizes(NamedTuple):
    """What the estimates depend on (notation of the module docstring); ``mlp``: every layer
    Linear or elementwise, on (N, d) inputs (the Gram matrix factorises); ``independent``: no
    layer mixes examples (per-example gradients come layer by layer)."""

    P: int
    N: int
    D: int
    b: int
    m: int
    F: float
    T: float
    mlp: bool
    independent: bool

    @property
    def M(self):
        return self.N * self.D

    def with_examples(self, n):
        return self._replace(N=int(n))


class Estimate(NamedTuple):
    """``nbytes`` at the peak of ``quantity``, whose largest matrix is ``matrix`` (its shape and
    bytes); ``alternative``: what to compute instead, if anything (said when it does not fit)."""

    quantity: str
    nbytes: float
    matrix: str
    shape: tuple
    matrix_bytes: float
    alternative: str = ""


class NotEnoughMemory(MemoryError):
    """An estimate above the memory available: one line naming the quantity, its largest matrix,
    the peak, the memory available, and the remedy (fewer examples, or the matrix-free alternative)."""

    def __init__(self, estimate, available, dtype, examples_fit):
        self.estimate, self.available, self.dtype, self.examples_fit = estimate, available, dtype, examples_fit
        super().__init__(self.describe())

    def describe(self, examples_option=None):
        """The message; with ``examples_option`` (``"--examples"``) the remedy names that option."""
        e = self.estimate
        remedies = []
        if self.examples_fit:
            remedies.append(f"lower {examples_option} to {self.examples_fit} or less" if examples_option
                            else f"use at most {self.examples_fit} examples")
        if e.alternative:
            remedies.append(e.alternative)
        shape = " x ".join(str(n) for n in e.shape)
        return (f"{e.quantity} needs about {format_bytes(e.nbytes)} of memory at its peak (the {shape} "
                f"{np.dtype(self.dtype).name} {e.matrix}, {format_bytes(e.matrix_bytes)}), more than the "
                f"{format_bytes(self.available)} available; {'; or '.join(remedies) or 'use a smaller network'}")


def format_bytes(n):
    """``n`` bytes in the largest binary unit it reaches: ``"3.12 GiB"``, ``"14.8 MiB"``, ``"512 B"``."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", GIB), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def sizes(net, x):
    """The :class:`Sizes` of ``net`` on the batch ``x``, F and T from the forward and backward pass
    of its first two examples (of all of them if the network takes only the whole batch), each
    array buffer counted once; the network is left unchanged."""
    from .curvature.hvp import CurvatureBatch  # here: refplastic.curvature imports this module
    from .curvature.per_example import independent_examples
    from .nn import Linear
    from .nn.activations import Elementwise

    x = net.as_input(x)
    sample = x[:2].copy()  # a view would count all of x
    with np.errstate(all="ignore"):
        try:
            batch = CurvatureBatch(net, None, sample, None)
        except ValueError:  # a layer whose shape spans the batch axis (a LayerNorm over it) takes only all of x
            sample = x.copy()
            batch = CurvatureBatch(net, None, sample, None)
    kept, tangents = _array_bytes([batch.caches, batch.gys], set()), _array_bytes([batch.caches[1:], batch.gys], set())
    layer_sizes = [sum(int(np.prod(shape)) for shape in layer.param_shapes.values()) for layer in net.layers]
    return Sizes(P=net.num_parameters, N=len(x), D=int(batch.z[0].size), b=np.dtype(net.dtype).itemsize,
                 m=max(layer_sizes, default=0), F=kept / len(sample), T=tangents / len(sample),
                 mlp=x.ndim == 2 and all(isinstance(layer, (Linear, Elementwise)) for layer in net.layers),
                 independent=independent_examples(batch))


def _array_bytes(obj, seen):
    """Bytes of the distinct arrays (their base buffers) in ``obj``: arrays, tuples, lists, objects."""
    if isinstance(obj, np.ndarray):
        while isinstance(obj.base, np.ndarray):
            obj = obj.base
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(_array_bytes(item, seen) for item in obj)
    return sum(_array_bytes(item, seen) for item in getattr(obj, "__dict__", {}).values())


def _eig(s, n):
    """E(n)."""
    return n * n * (LAPACK_BYTES + (LAPACK_BYTES if s.b != LAPACK_BYTES else 0))


def _pass(s, block_size, directions, backward=True):
    """pass(K) for K = min(block size, number of ``directions``), without the R-backward's tangents
    when not ``backward``."""
    k = min(block_size, directions)
    return (1 + backward) * k * s.N * s.T + 2 * k * s.P * s.b


def _jacobian_pass(s, block_size):
    """pass(K) of building J: backward (K outputs at a time) if 3 M < P, else forward (K parameters
    at a time), as :func:`refplastic.curvature.jacobian` chooses."""
    backward = 3 * s.M < s.P
    return _pass(s, block_size, s.M if backward else s.P, backward)


def ntk_estimate(s, block_size, quantity="ntk"):
    """``max(M P b + pass(K), M P b + M^2 b + E(M))``: building J; then J, the kernel J J^T and
    its eigenvalues."""
    jacobian, kernel = s.M * s.P * s.b, s.M * s.M * s.b
    peak = max(jacobian + _jacobian_pass(s, block_size), jacobian + kernel + _eig(s, s.M)) + s.N * s.F
    return Estimate(quantity, peak, "kernel", (s.M, s.M), kernel)


def hessian_estimate(s, block_size, quantity="hessian_eigenvalues", alternative=""):
    """``P^2 b + max(4 m^2 b + 2 N m b + pass(K), E(P))``: H while its rows are built (a layer's
    symmetrised diagonal block and its transpose, kept into the next layer's rows, two blocks of
    factored Linear rows, and their products of the N inputs); then its eigenvalues."""
    square = s.P * s.P * s.b
    rows = 4 * s.m * s.m * s.b + 2 * s.N * s.m * s.b + _pass(s, block_size, s.P)
    return Estimate(quantity, square + max(rows, _eig(s, s.P)) + s.N * s.F, "Hessian", (s.P, s.P), square,
                    alternative)


def ggn_estimate(s, block_size, quantity="ggn_eigenvalues", alternative=""):
    """``max(M P b + pass(K), 4 M P b, 2 M P b + 3 P^2 b, P^2 b + E(P))``: building J; J and the
    loss's output Hessian applied to it, with two temporaries; J, H_z J, G, G + G^T and its half;
    then G's eigenvalues."""
    jacobian, square = s.M * s.P * s.b, s.P * s.P * s.b
    peak = max(jacobian + _jacobian_pass(s, block_size), 4 * jacobian, 2 * jacobian + 3 * square,
               square + _eig(s, s.P))
    return Estimate(quantity, peak + s.N * s.F, "Gauss-Newton matrix", (s.P, s.P), square, alternative)


def gradients_estimate(s, block_size, quantity="gradients"):
    """``N P b + max(N P b + N m b + N T [+ pass(K) if examples interact], 5 N^2 b + E(N))``: G with
    one layer's per-example products (or the R-passes of the whole-network route); then G with the
    norms' temporary, or with G G^T, the cosines and the Fisher's eigenvalues."""
    gradients = s.N * s.P * s.b
    build = gradients + s.N * (s.m * s.b + s.T) + (0 if s.independent else _pass(s, block_size, s.N))
    peak = gradients + max(build, 5 * s.N * s.N * s.b + _eig(s, s.N)) + s.N * s.F
    return Estimate(quantity, peak, "per-example gradients", (s.N, s.P), gradients)


def cosine_estimate(s, block_size, quantity):
    """The gradient cosine statistics: ``5 N^2 8 + N F`` for an MLP on (N, d) inputs (the float64
    Gram matrix, its per-layer terms, the layers' inputs); else ``5 N^2 8 + N P (b + 8) + N m b + N T
    [+ pass(K) if examples interact]`` (G, as for :func:`gradients_estimate`, and its float64 copy)."""
    gram = s.N * s.N * LAPACK_BYTES
    if s.mlp:
        return Estimate(quantity, 5 * gram + 2 * s.N * s.F, "Gram matrix of the per-example gradients", (s.N, s.N),
                        gram)
    gradients = s.N * s.P * s.b
    build = s.N * (s.m * s.b + s.T) + (0 if s.independent else _pass(s, block_size, s.N))
    peak = 5 * gram + s.N * s.P * (s.b + LAPACK_BYTES) + build + s.N * s.F
    return Estimate(quantity, peak, "per-example gradients", (s.N, s.P), gradients)


def reference_estimate(s, max_exact_parameters, quantity):
    """A reference case, computed in float64 (``s`` of its network in float64, b = 8), storing
    ``S = M P b + N P b + 2 P^2 b [P <= max_exact_parameters]``:
    ``max(M P b + pass(256), S + max(4 m^2 b + 2 N m b + pass(64), 3 M P b + P^2 b, E(P), 5 N^2 8 + 2 N P 8),
    2 S + max(M P, P^2))``: building J; J, the per-example gradients, H and G in the phases of
    :func:`hessian_estimate` and :func:`ggn_estimate`, then the statistics; every quantity once
    more while it is cast to the case's dtype, and the booleans of the finiteness check."""
    jacobian = s.M * s.P * s.b
    exact = s.P <= max_exact_parameters
    square = s.P * s.P * s.b if exact else 0
    stored = jacobian + s.N * s.P * s.b + 2 * square
    phases = [4 * s.m * s.m * s.b + 2 * s.N * s.m * s.b + _pass(s, 64, s.P), 3 * jacobian + square,
              _eig(s, s.P)] if exact else []
    phases.append(5 * s.N * s.N * LAPACK_BYTES + 2 * s.N * s.P * LAPACK_BYTES)
    largest = max(s.M * s.P, s.P * s.P if exact else 0)
    peak = max(jacobian + _jacobian_pass(s, 256), stored + max(phases), 2 * stored + largest) + s.N * s.F
    if square > jacobian:
        return Estimate(quantity, peak, "Hessian", (s.P, s.P), square)
    return Estimate(quantity, peak, "Jacobian", (s.M, s.P), jacobian)


def available_memory():
    """Bytes this process can still allocate, or None if unknown: ``MemAvailable`` of
    ``/proc/meminfo`` (Linux) lowered to the room left in the process's cgroup; elsewhere the
    free physical pages, or else all physical memory (``os.sysconf``)."""
    available = _meminfo_available()
    if available is None:
        for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            try:
                available = os.sysconf(name) * os.sysconf("SC_PAGE_SIZE")
                break
            except (ValueError, OSError, AttributeError):
                continue
    room = _cgroup_room()
    return room if available is None else available if room is None else min(available, room)


def _meminfo_available():
    for line in _lines(MEMINFO):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _lines(path):
    """The lines of a text file; none if it cannot be read."""
    try:
        with open(path) as f:
            return f.read().splitlines()
    except (OSError, ValueError):
        return []


def _cgroup_room():
    """Limit minus usage of the process's memory cgroups (v2 ``memory.max``/``memory.current``, v1
    ``memory.limit_in_bytes``/``memory.usage_in_bytes``), the least if both; None without a limit."""
    rooms = []
    for line in _lines("/proc/self/cgroup"):
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0":
            files = (f"/sys/fs/cgroup{path}/memory.max", f"/sys/fs/cgroup{path}/memory.current")
        elif "memory" in controllers.split(","):
            files = (f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes",
                     f"/sys/fs/cgroup/memory{path}/memory.usage_in_bytes")
        else:
            continue
        limit, usage = (" ".join(_lines(name)).strip() for name in files)
        if limit.isdigit() and usage.isdigit() and int(limit) < 2 ** 60:  # "max", or v1's huge number: no limit
            rooms.append(max(int(limit) - int(usage), 0))
    return min(rooms, default=None)


def check_memory(estimates, s, dtype, available=None):
    """Raise :class:`NotEnoughMemory` for the first of ``estimates(s)`` (a list of :class:`Estimate`
    for the :class:`Sizes` ``s``) above the memory available (``available``, default
    :func:`available_memory`); nothing if that is unknown. The message gives the largest number of
    examples that fits, found from ``estimates`` of fewer examples (0 when none does)."""
    available = available_memory() if available is None else available
    if available is None:
        return
    for estimate in estimates(s):
        if estimate.nbytes > available:
            def peak(n):
                return next(e.nbytes for e in estimates(s.with_examples(n)) if e.quantity == estimate.quantity)
            raise NotEnoughMemory(estimate, available, dtype, _examples_fit(peak, s.N, available))


def _examples_fit(nbytes, n, available):
    """The largest k < n with ``nbytes(k) <= available`` (nbytes grows with k), 0 if not even 1."""
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if nbytes(mid) <= available else (lo, mid)
    return lo
