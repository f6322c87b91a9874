"""A Linear layer with a spectrally normalised weight: torch's ``spectral_norm(nn.Linear(...))``.

PyTorch's ``torch.nn.utils.parametrizations.spectral_norm`` (Miyato et al. 2018) with ``dim=0``,
its value for Linear. The parameters are the unnormalised weight W (out, in) and the bias b; the
buffers u (out,) and v (in,) estimate W's leading singular vectors by power iteration:

    normalize(a)     = a / max(|a|_2, eps)
    power iteration  u <- normalize(W v),  v <- normalize(W^T u)   (in place, no derivative)
    sigma            = u^T W v,            W_sn = W / sigma,       y = x W_sn^T + b

In training mode every ``forward`` first runs ``n_power_iterations`` power iterations, updating
u and v; in eval mode it uses them as stored. ``backward``, ``forward_r`` and ``backward_r``
read the forward's cache (its u, v, sigma and W_sn) and never iterate again. As in torch, the
derivatives treat u and v as constants, so ``d sigma / d W = u v^T``. With ``G = gy^T x`` (summed
over all leading axes of x), ``P = u v^T``, ``<A, B> = sum A * B``, and the direction (V, Vb):

    backward    gx = gy W_sn,   gb = sum_n gy,
                gW = (G - <G, W_sn> P) / sigma
    forward_r   R sigma = u^T V v,   R W_sn = (V - W_sn R sigma) / sigma,
                Ry = Rx W_sn^T + x R W_sn^T + Vb
    backward_r  R gx = R gy W_sn + gy R W_sn,   R gb = sum_n R gy,
                R G  = R gy^T x + gy^T Rx,
                R gW = (R G - (<R G, W_sn> + <G, R W_sn>) P - gW R sigma) / sigma

(``gW = dL/dW_sn / sigma - <dL/dW_sn, W> P / sigma^2``, and ``R gW`` is its derivative by the
product rule.) Tangents carry the leading tangent axis K (see :mod:`refplastic.nn.layer`).

Initialisation, mirroring ``spectral_norm(nn.Linear(...))``: W and b as for Linear (weight, then
bias), then u ~ N(0, I_out) and v ~ N(0, I_in) drawn from the same generator (u first), each
normalised, then ``15 + n_power_iterations`` power iterations: torch's ``_SpectralNorm`` runs 15
when it is made, and ``register_parametrization`` (``unsafe=False``) then evaluates the
parametrisation once to check it, a training-mode forward of the new module that runs
``n_power_iterations`` more. Parameter order is torch's ``named_parameters()`` order of the
parametrised module: ``bias`` (the module's own parameter) before ``weight`` (torch's
``parametrizations.weight.original``); the buffers ``u`` and ``v`` are torch's
``parametrizations.weight.0._u`` and ``._v``.
"""

import copy
from typing import NamedTuple

import numpy as np

from .arguments import finite_float, positive_int
from .init import torch_default_init_
from .layer import Layer
from .linear import _krows, _rows

INITIAL_POWER_ITERATIONS = 15  # torch's _SpectralNorm.__init__; registration's check then runs n_power_iterations


def normalize_(a, eps):
    """``a <- a / max(|a|_2, eps)`` in place (torch's ``F.normalize(a, dim=0, eps=eps)``)."""
    a /= max(float(np.linalg.norm(a)), eps)
    return a


def power_iteration_(weight, u, v, steps, eps):
    """``steps`` times ``u <- normalize(W v)``, then ``v <- normalize(W^T u)``; u and v in place."""
    for _ in range(steps):
        np.matmul(weight, v, out=u)
        normalize_(u, eps)
        np.matmul(weight.T, u, out=v)
        normalize_(v, eps)


class SpectralNormalized(NamedTuple):
    """The forward cache: input, ``W_sn``, ``sigma`` and the u, v it was computed with."""

    x: np.ndarray
    weight: np.ndarray
    sigma: float
    u: np.ndarray
    v: np.ndarray


class SpectralNormLinear(Layer):
    """``y = x (W / sigma)^T + b``, ``sigma = u^T W v`` (see the module docstring).

    torch builds it as ``spectral_norm(nn.Linear(in_features, out_features, bias),
    n_power_iterations=n_power_iterations, eps=eps)``.
    """

    def __init__(self, in_features, out_features, bias=True, n_power_iterations=1, eps=1e-12):
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.bias = bool(bias)
        self.n_power_iterations = positive_int(n_power_iterations, "n_power_iterations")
        self.eps = finite_float(eps, "eps", 0, strictly_above=True)
        self.param_shapes = {"bias": (self.out_features,)} if self.bias else {}
        self.param_shapes["weight"] = (self.out_features, self.in_features)

    def config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias,
                "n_power_iterations": self.n_power_iterations, "eps": self.eps}

    def allocate_buffers(self, dtype):
        self.buffers = {"u": np.zeros(self.out_features, dtype), "v": np.zeros(self.in_features, dtype)}

    def reset_parameters(self, rng):
        """W and b as Linear's, then u and v as torch's registration draws them (module docstring).

        u and v need the generator and W, so they are drawn here; ``reset_buffers`` leaves them."""
        weight, u, v = self.params["weight"], self.buffers["u"], self.buffers["v"]
        torch_default_init_(weight, self.params.get("bias"), rng)
        u[...] = rng.standard_normal(u.shape)
        v[...] = rng.standard_normal(v.shape)
        normalize_(u, self.eps)
        normalize_(v, self.eps)
        power_iteration_(weight, u, v, INITIAL_POWER_ITERATIONS + self.n_power_iterations, self.eps)

    # ---- the four maps ----------------------------------------------------------------------
    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"SpectralNormLinear expects inputs with last dimension {self.in_features}, "
                             f"got shape {x.shape}")
        weight, u, v = self.params["weight"], self.buffers["u"], self.buffers["v"]
        if self.training:
            power_iteration_(weight, u, v, self.n_power_iterations, self.eps)
        u, v = u.copy(), v.copy()
        sigma = u @ (weight @ v)
        weight_sn = weight / sigma
        yt = weight_sn @ _rows(x).T
        if self.bias:
            yt += self.params["bias"][:, None]
        return yt.T.reshape(*x.shape[:-1], self.out_features), SpectralNormalized(x, weight_sn, sigma, u, v)

    def backward(self, cache, gy, grads, need_input_grad=True):
        if grads is not None:
            gy2 = _rows(gy)
            g = grads["weight"]
            np.matmul(gy2.T, _rows(cache.x), out=g)  # G
            g -= np.vdot(g, cache.weight) * np.outer(cache.u, cache.v)
            g /= cache.sigma
            if self.bias:
                np.sum(gy2, axis=0, out=grads["bias"])
        return gy @ cache.weight if need_input_grad else None

    # ---- the ensemble maps: member by member, each with its own u and v -----------------------
    def _member(self, e):
        """Member e's lone layer: its parameters and buffers are row e of the stacked ones (views,
        so its power iteration updates the ensemble's u and v)."""
        member = copy.copy(self)
        member.params = {name: array[e] for name, array in self.params.items()}
        member.buffers = {name: array[e] for name, array in self.buffers.items()}
        return member

    def ensemble_forward(self, x):
        """Member e's :meth:`forward` on ``x[e]``, in turn: each member's sigma comes from its own
        power iteration, so there is no product to batch beyond the members' own."""
        outputs = [self._member(e).forward(x[e]) for e in range(len(x))]
        return np.stack([y for y, _ in outputs]), [cache for _, cache in outputs]

    def ensemble_backward(self, caches, gy, grads, need_input_grad=True):
        """Member e's :meth:`backward` with its cache, writing row e of ``grads``."""
        gx = []
        for e, cache in enumerate(caches):
            rows = None if grads is None else {name: array[e] for name, array in grads.items()}
            gx.append(self._member(e).backward(cache, gy[e], rows, need_input_grad))
        return np.stack(gx) if need_input_grad else None

    def example_gradients(self, cache, gy, out):
        """Per-example parameter gradients, whose sum over n is :meth:`backward`'s:
        ``out["weight"][n] = (G_n - <G_n, W_sn> u v^T) / sigma`` with ``G_n = gy_n^T x_n`` (sums
        over any axes between batch and features), ``out["bias"][n] = sum gy_n``."""
        n = cache.x.shape[0]
        gy3 = gy.reshape(n, -1, self.out_features)
        g = out["weight"]
        np.matmul(gy3.transpose(0, 2, 1), cache.x.reshape(n, -1, self.in_features), out=g)
        g -= np.sum(g * cache.weight, axis=(1, 2))[:, None, None] * np.outer(cache.u, cache.v)
        g /= cache.sigma
        if "bias" in out:
            np.sum(gy3, axis=1, out=out["bias"])

    def forward_r(self, cache, rx, v):
        k = v["weight"].shape[0]
        rsigma = (v["weight"] @ cache.v) @ cache.u  # (K,)
        rweight = (v["weight"] - rsigma[:, None, None] * cache.weight) / cache.sigma  # R W_sn (K, out, in)
        ry = _rows(cache.x) @ rweight.transpose(0, 2, 1)  # (K, n, out)
        if rx is not None:
            ry += _krows(rx) @ cache.weight.T
        if self.bias:
            ry += v["bias"][:, None, :]
        return ry.reshape(k, *cache.x.shape[:-1], self.out_features), (rx, rweight, rsigma)

    def backward_r(self, cache, rcache, gy, rgy, rgrads, need_input_grad=True):
        rx, rweight, rsigma = rcache
        k = rgy.shape[0]
        rgy2, gy2, x2 = _krows(rgy), _rows(gy), _rows(cache.x)
        outer = np.outer(cache.u, cache.v)
        g = gy2.T @ x2  # G
        rg = rgrads["weight"]
        np.matmul(rgy2.transpose(0, 2, 1), x2, out=rg)  # R G
        if rx is not None:
            rg += gy2.T @ _krows(rx)
        rc = np.sum(rg * cache.weight, axis=(1, 2)) + np.sum(g * rweight, axis=(1, 2))  # R <G, W_sn>
        g -= np.vdot(g, cache.weight) * outer
        g /= cache.sigma  # gW
        rg -= rc[:, None, None] * outer + rsigma[:, None, None] * g
        rg /= cache.sigma
        if self.bias:
            np.sum(rgy2, axis=1, out=rgrads["bias"])
        if not need_input_grad:
            return None
        rgx = rgy2 @ cache.weight + gy2 @ rweight
        return rgx.reshape(k, *cache.x.shape)
