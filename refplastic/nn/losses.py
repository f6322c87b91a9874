"""Losses with PyTorch's reductions, and their first and second derivatives.

Each loss maps network outputs ``z`` and targets ``t`` to a scalar ``L``. Besides the value it
gives ``gz = dL/dz`` (``backward``) and the output-space Hessian-vector product
``R{gz} = (d^2 L / dz^2) Rz`` (``backward_r``), which starts the backward R-pass of an exact
Hessian-vector product and is the middle factor of the Gauss-Newton matrix.

``reduction`` is torch's: ``"mean"`` (the default) divides the summed loss by the count written
``M`` (or ``N``) in each formula below, ``"sum"`` does not (read ``1/M`` as 1). torch's
``"none"`` gives a loss per element, not the scalar these maps differentiate, and is refused.
"""

import numpy as np

from .arguments import finite_float


class Loss:
    """Base class: ``forward(z, t) -> (L, cache)``, ``backward(cache) -> gz``,
    ``backward_r(cache, rz) -> (d^2 L/dz^2) rz``."""

    name = ""

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r} "
                             "('none' gives a loss per element, not a scalar to differentiate)")
        self.reduction = reduction

    def divisor(self, count):
        """What the summed loss is divided by: ``count`` for the mean, 1 for the sum."""
        return count if self.reduction == "mean" else 1

    def __call__(self, z, t):
        return self.forward(z, t)[0]

    def __repr__(self):
        return f"{type(self).__name__}()" if self.reduction == "mean" else \
            f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Squared error over all M elements (``torch.nn.MSELoss(reduction="mean")``):

        L = (1/M) sum (z - t)^2,   gz = 2 (z - t) / M,   d^2L/dz^2 = (2/M) I
    """

    name = "mse"

    def forward(self, z, t):
        t = _float_targets(z, t)
        d = z - t
        return float(np.vdot(d, d)) / self.divisor(d.size), d

    def backward(self, d):
        return d * (2.0 / self.divisor(d.size))

    def backward_r(self, d, rz):
        return rz * (2.0 / self.divisor(d.size))


class HuberLoss(Loss):
    """Huber loss with threshold delta (``torch.nn.HuberLoss(reduction="mean", delta=1.0)``) over M
    elements:

        l(d) = d^2 / 2 if |d| < delta else delta (|d| - delta / 2),   d = z - t
        L = (1/M) sum l(d),  gz = clip(d, -delta, delta) / M,  d^2L/dz^2 = diag([|d| < delta]) / M
    """

    name = "huber"

    def __init__(self, reduction="mean", delta=1.0):
        super().__init__(reduction)
        self.delta = finite_float(delta, "HuberLoss delta", 0, strictly_above=True)

    def forward(self, z, t):
        t = _float_targets(z, t)
        d = z - t
        a = np.abs(d)
        inside = a < self.delta
        l = np.where(inside, 0.5 * d * d, self.delta * (a - 0.5 * self.delta))
        return float(l.sum()) / self.divisor(d.size), (d, inside)

    def backward(self, cache):
        d, inside = cache
        return np.clip(d, -self.delta, self.delta) / self.divisor(d.size)

    def backward_r(self, cache, rz):
        d, inside = cache
        return np.where(inside, rz, 0) / self.divisor(d.size)


class ClippedGradientL2Loss(Loss):
    """DQN Zoo's TD loss: half the squared error, with the gradient of each element clipped to
    [-bound, bound] (default 1/32) *after* the mean's 1/M; over M elements, d = z - t,

        L = (1/M) sum d^2 / 2,   gz = clip(d / M, -bound, bound),   R{gz} = [|d| < bound M] Rz / M.

    Source: ``dqn_zoo/double_q/agent.py`` (the Double DQN of Lyle et al. 2023, A.3) computes
    ``td = y - Q(s, a)`` per transition, then ``td = rlax.clip_gradient(td, -bound, bound)``,
    ``losses = rlax.l2_loss(td)`` (= td^2 / 2) and ``loss = jnp.mean(losses)``. ``clip_gradient``
    is the identity whose VJP clips the incoming cotangent element by element; that cotangent is
    ``dL/dtd_n = td_n / M``, the mean's 1/M included, so ``dL/dQ_n = -clip(td_n / M, -b, b)``:
    the clip acts on each element's share of the mean's gradient, not on td itself. With DQN
    Zoo's batch of 32 and bound 1/32 this is ``clip(d, -1, 1) / 32``, the gradient of
    ``HuberLoss(delta=1)``, while the value reported is that of the squared error.

    ``gz`` is the exact gradient of ``(1/M) sum huber_{bound M}(d)``, Huber with threshold
    delta = bound M (gradient ``clip(d, -delta, delta) / M``), not of L: ``backward_r`` is that
    Huber loss's output Hessian, the derivative of the gradient this loss trains with, so the
    curvature code measures the curvature of the objective that training follows, while ``L``
    (and its finite differences) is the squared error. With ``reduction="sum"`` read M as 1.
    """

    name = "clipped_gradient_l2"

    def __init__(self, reduction="mean", bound=1 / 32):
        super().__init__(reduction)
        self.bound = finite_float(bound, "ClippedGradientL2Loss bound", 0, strictly_above=True)

    def __repr__(self):
        args = [] if self.reduction == "mean" else [f"reduction={self.reduction!r}"]
        args += [] if self.bound == 1 / 32 else [f"bound={self.bound!r}"]
        return f"{type(self).__name__}({', '.join(args)})"

    def forward(self, z, t):
        t = _float_targets(z, t)
        d = z - t
        m = self.divisor(d.size)
        return 0.5 * float(np.vdot(d, d)) / m, (d / m, m)

    def backward(self, cache):
        share, m = cache
        return np.clip(share, -self.bound, self.bound)

    def backward_r(self, cache, rz):
        share, m = cache
        return np.where(np.abs(share) < self.bound, rz, 0) / m


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy (``torch.nn.CrossEntropyLoss(reduction="mean", label_smoothing=0.0)``)
    on logits ``z`` of shape (N, C).

    Targets are class indices ``y`` of shape (N,) or class probabilities ``t`` of shape (N, C).
    Label smoothing ``e`` replaces them, as torch does, by ``(1 - e) t + e / C`` (t one-hot for
    indices); everything below is linear in t and holds for the smoothed targets.
    torch's ``weight`` and ``ignore_index`` are accepted at their defaults only (None, and a
    negative index, which no valid label can equal).
    With ``log p = (z - max z) - log sum exp(z - max z)`` (the stable log-softmax, as torch's),
    ``p = softmax(z)`` and ``s_n = sum_c t_nc``:

        L   = -(1/N) sum_n sum_c t_nc log p_nc
        gz  = (s_n p_n - t_n) / N
        d^2L/dz_n^2 = s_n (diag(p_n) - p_n p_n^T) / N,  so  R{gz}_n = s_n p_n * (Rz_n - <p_n, Rz_n>) / N

    For indices, ``t`` is one-hot and ``s_n = 1``. Like torch, float targets are taken as they
    are: rows need not be probabilities (hence ``s_n``); :func:`check_probabilities` is the check
    that the command line and reference files apply to a user's targets. The value sums ``t log p`` term by term:
    ``s_n lse(z_n) - <t_n, z_n>``, equal in exact arithmetic, cancels catastrophically for large,
    confident logits. For the same reason ``R{gz}`` shifts the tangent by its entry at the most
    likely class m, ``Rz_n - <p_n, Rz_n> = d_n - <p_n, d_n>`` with ``d_n = Rz_n - Rz_nm`` (the
    two agree as ``sum_c p_nc = 1``): at class m this is ``-sum_{c != m} p_nc d_nc``, small and
    exact, where ``Rz_nm (1 - p_nm)`` would lose the digits of ``1 - p_nm``.
    """

    name = "cross_entropy"

    def __init__(self, reduction="mean", label_smoothing=0.0, weight=None, ignore_index=-100):
        super().__init__(reduction)
        self.label_smoothing = finite_float(label_smoothing, "CrossEntropyLoss label_smoothing", 0, 1)
        if weight is not None:
            raise ValueError("CrossEntropyLoss supports weight=None only (no class weights)")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)) or ignore_index >= 0:
            raise ValueError(f"CrossEntropyLoss supports a negative ignore_index only (no label is ignored), "
                             f"got {ignore_index!r}")

    def __repr__(self):
        args = [] if self.reduction == "mean" else [f"reduction={self.reduction!r}"]
        args += [f"label_smoothing={self.label_smoothing!r}"] if self.label_smoothing else []
        return f"{type(self).__name__}({', '.join(args)})"

    def forward(self, z, t):
        if z.ndim != 2:
            raise ValueError(f"cross_entropy expects logits of shape (N, C), got {z.shape}")
        n, c = z.shape
        t = np.asarray(t)
        if t.shape == (n,) and np.issubdtype(t.dtype, np.integer):
            bad = np.flatnonzero((t < 0) | (t >= c))
            if bad.size:
                raise ValueError(f"cross_entropy labels must lie in [0, {c}): targets row {bad[0]} is {t[bad[0]]}")
            onehot = np.zeros_like(z)
            onehot[np.arange(n), t] = 1
            t = onehot
        elif t.shape == (n, c) and np.issubdtype(t.dtype, np.floating):
            t = t.astype(z.dtype, copy=False)
        else:
            raise ValueError(f"cross_entropy targets must be int labels of shape ({n},) or "
                             f"float probabilities of shape ({n}, {c}), got {t.dtype} {t.shape}")
        if self.label_smoothing:
            t = (1 - self.label_smoothing) * t + self.label_smoothing / c
        shifted = z - z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        se = e.sum(axis=1, keepdims=True)
        log_p = shifted - np.log(se)
        p = e / se
        s = t.sum(axis=1, keepdims=True)
        loss = -float(np.vdot(t, log_p)) / self.divisor(n)
        return loss, (p, t, s)

    def backward(self, cache):
        p, t, s = cache
        return (s * p - t) / self.divisor(p.shape[0])

    def backward_r(self, cache, rz):
        p, t, s = cache
        top = p.argmax(axis=1)
        d = rz - rz[..., np.arange(p.shape[0]), top][..., None]
        return s * p * (d - (p * d).sum(axis=-1, keepdims=True)) / self.divisor(p.shape[0])


PROBABILITY_SUM_ULPS = 4


def check_probabilities(t):
    """A one-line ValueError naming the first row of ``t`` (N, C) that is not a probability vector.

    Each row must be finite, ``>= 0`` and sum to 1 within ``4 C eps`` (``eps`` the machine epsilon
    of t's dtype: 2.2e-16 for float64, 1.2e-7 for float32), the sum taken in float64: rounding C
    exact probabilities to t's dtype, or normalising a row in that dtype, moves the sum by about
    ``C eps / 2`` at most. A message reads ``"targets row 3 sums to 0.7, not 1 (within 8.9e-15): ..."``
    (float64, C = 10)."""
    t = np.asarray(t)
    tolerance = PROBABILITY_SUM_ULPS * t.shape[1] * float(np.finfo(t.dtype).eps)
    with np.errstate(all="ignore"):
        rows = t.astype(np.float64)
        sums = rows.sum(axis=1)
    bad = ~np.isfinite(rows).all(axis=1) | (rows < 0).any(axis=1) | ~(np.abs(sums - 1) <= tolerance)
    if not bad.any():
        return
    n = int(np.argmax(bad))
    row = rows[n]
    if not np.all(np.isfinite(row)):
        detail = "contains NaN or infinity"
    elif np.any(row < 0):
        column = int(np.argmax(row < 0))
        detail = f"has a negative entry {row[column]:.6g} (column {column})"
    else:
        off = abs(float(sums[n]) - 1)  # enough digits to show it: 0.7, 1.00000052
        digits = max(6, 2 - int(np.floor(np.log10(off)))) if off < np.inf else 6
        detail = f"sums to {sums[n]:.{digits}g}, not 1 (within {tolerance:.2g})"
    raise ValueError(f"targets row {n} {detail}: cross_entropy float targets are class probabilities")


def _float_targets(z, t):
    t = np.asarray(t)
    if t.shape != z.shape:
        raise ValueError(f"targets must have the outputs' shape {z.shape}, got {t.shape}")
    return t.astype(z.dtype, copy=False)


LOSSES = {"mse": MSELoss, "cross_entropy": CrossEntropyLoss, "huber": HuberLoss,
          "clipped_gradient_l2": ClippedGradientL2Loss}


def make_loss(name):
    """The loss called ``name``: one of "mse", "cross_entropy", "huber" (delta 1),
    "clipped_gradient_l2" (bound 1/32)."""
    try:
        return LOSSES[name]()
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}") from None
