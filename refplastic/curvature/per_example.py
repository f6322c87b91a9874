"""Per-example gradients and the statistics built from them.

The loss of a batch is a sum over examples of the terms that involve each example's outputs;
for the built-in mean-reduced losses ``L = sum_n L_n`` with ``L_n`` the part of L due to the
outputs ``z_n`` of example n (``(1/N) ce(z_n, t_n)``, or ``(1/(N D)) sum_d (z_nd - t_nd)^2``).
Row n of the per-example gradient matrix is

    g_n = N dL_n / dtheta,   so that   mean_n g_n = dL/dtheta.

When examples do not interact, g_n is the gradient of the loss on example n alone. Two exact
routes, without a Python loop over examples:

- per layer (examples independent: Linear, SpectralNormLinear, Conv2d, LayerNorm over non-batch axes, BatchNorm
  with running statistics in eval mode, and the parameter-free elementwise, MaxPool2d and Flatten layers): one backward
  pass gives every layer's output cotangent gy; a layer's parameter gradient is a sum over
  examples, and its terms are the per-example gradients, e.g. Linear ``gW_n = gy_n^T x_n``,
  ``gb_n = sum gy_n``, Conv2d ``gW_n = corr(gy_n, x_n)`` (:meth:`Conv2d.example_gradients`),
  SpectralNormLinear ``gW_n = (G_n - <G_n, W_sn> u v^T) / sigma`` with ``G_n = gy_n^T x_n``
  (:meth:`SpectralNormLinear.example_gradients`; its power iteration depends on W alone);
- through the whole network (any layer, including train-mode BatchNorm, whose batch statistics
  make example n's loss depend on every input): ``g_n = N J^T u_n`` with ``u_n`` the output
  cotangent ``dL/dz`` restricted to example n, a batched VJP over blocks of examples.

From G (N x P), with ``gbar = mean_n g_n``:

    empirical Fisher  F = (1/N) sum_n g_n g_n^T = G^T G / N
    covariance        C = (1/N) sum_n (g_n - gbar)(g_n - gbar)^T = F - gbar gbar^T
    cosine similarity S[n, m] = <g_n, g_m> / (|g_n| |g_m|)     (0 where a gradient is 0)

The nonzero eigenvalues of F are those of the N x N Gram matrix ``G G^T / N``.
"""

import numpy as np

from ..nn.activations import Elementwise
from ..nn.batchnorm import _BatchNorm
from ..nn.conv import Conv2d
from ..nn.flatten import Flatten
from ..nn.layernorm import LayerNorm
from ..nn.linear import Linear
from ..nn.pool import MaxPool2d
from ..nn.spectral_norm import SpectralNormLinear
from .hvp import CurvatureBatch


def per_example_gradients(net, loss, x, t, mode="auto", block_size=64, batch=None):
    """G of shape (N, P): row n is ``N dL_n/dtheta`` (see the module docstring).

    ``mode``: "layers" (examples must be independent), "vjp" (any network) or "auto" (layers
    when every layer allows it). Buffers are left unchanged.
    """
    batch = CurvatureBatch(net, loss, x, t) if batch is None else batch
    maps = _example_maps(batch)
    if mode == "auto":
        mode = "layers" if all(m is not None for m in maps) else "vjp"
    if mode == "layers":
        if any(m is None for m in maps):
            names = [type(layer).__name__ for layer, m in zip(net.layers, maps) if m is None]
            raise ValueError(f"per-layer per-example gradients need independent examples; not so for {names}")
        return _by_layers(batch, maps)
    if mode == "vjp":
        return _by_vjp(batch, block_size)
    raise ValueError(f"mode must be 'auto', 'layers' or 'vjp', got {mode!r}")


def _by_layers(batch, maps):
    net, n = batch.net, batch.z.shape[0]
    out = np.empty((n, net.num_parameters), net.dtype)
    for layer, example_map, cache, gy, views in zip(net.layers, maps, batch.caches, batch.gys, net.unflatten(out)):
        if layer.params:
            example_map(layer, cache, gy, views)
    out *= n
    return out


def _by_vjp(batch, block_size):
    n = batch.z.shape[0]
    out = np.empty((n, batch.num_parameters), batch.net.dtype)
    for a in range(0, n, block_size):
        b = min(n, a + block_size)
        U = np.zeros((b - a, *batch.z.shape), batch.net.dtype)
        U[np.arange(b - a), np.arange(a, b)] = batch.gz[a:b]
        out[a:b] = batch.vjp(U)
    out *= n
    return out


def _linear_map(layer, x, gy, out):
    """``gW_n = gy_n^T x_n``, ``gb_n = sum gy_n`` (sums over any axes between batch and features)."""
    n = x.shape[0]
    gy3 = gy.reshape(n, -1, layer.out_features)
    np.matmul(gy3.transpose(0, 2, 1), x.reshape(n, -1, layer.in_features), out=out["weight"])
    if "bias" in out:
        np.sum(gy3, axis=1, out=out["bias"])


def _own_map(layer, cache, gy, out):
    """The layer's own ``example_gradients``: Conv2d ``gW_n = corr(gy_n, x_n)``, SpectralNormLinear
    ``gW_n = (G_n - <G_n, W_sn> u v^T) / sigma``; ``gb_n = sum gy_n``."""
    layer.example_gradients(cache, gy, out)


def _normalization_map(layer, s, gy, out):
    """``ggamma_n = sum_B'(gy_n xhat_n)``, ``gbeta_n = sum_B' gy_n``, B' the parameter axes but the batch's."""
    axes = tuple(a for a in s.param_axes if a != -s.xhat.ndim)
    if "weight" in out:
        out["weight"][...] = np.sum(gy * s.xhat, axis=axes).reshape(out["weight"].shape)
    if "bias" in out:
        out["bias"][...] = np.sum(gy, axis=axes).reshape(out["bias"].shape)


def independent_examples(batch):
    """Whether no layer mixes the examples of ``batch`` (a :class:`CurvatureBatch`): then example
    n's outputs depend on input n alone, and the per-layer route applies."""
    return all(m is not None for m in _example_maps(batch))


def _example_maps(batch):
    """Every layer's per-example gradient map, None for a layer whose examples may interact."""
    return [_example_map(layer, cache) for layer, cache in zip(batch.net.layers, batch.caches)]


def _example_map(layer, cache):
    """The per-example gradient map of ``layer`` (forward cache ``cache``), or None if its examples
    may interact: a LayerNorm whose ``normalized_shape`` spans the batch axis too mixes them."""
    if isinstance(layer, Linear):
        return _linear_map
    if isinstance(layer, (Conv2d, SpectralNormLinear)):
        return _own_map
    if isinstance(layer, LayerNorm) and -cache.xhat.ndim in cache.param_axes:
        return _normalization_map
    if isinstance(layer, _BatchNorm) and layer.track_running_stats and not layer.training:
        return _normalization_map
    if isinstance(layer, (Elementwise, MaxPool2d)) or (isinstance(layer, Flatten) and layer.start_dim >= 1):
        return _no_parameters
    return None


def _no_parameters(layer, cache, gy, out):
    """Nothing to write."""


def empirical_fisher(G):
    """``F = G^T G / N`` (P x P) from per-example gradients G (N x P)."""
    return G.T @ G / G.shape[0]


def gradient_covariance(G):
    """``C = (1/N) sum_n (g_n - gbar)(g_n - gbar)^T`` (P x P), the biased covariance."""
    D = G - G.mean(axis=0)
    return D.T @ D / G.shape[0]


def cosine_similarity(G):
    """``S[n, m] = <g_n, g_m> / (|g_n| |g_m|)`` (N x N); rows of zero norm give 0."""
    norms = np.linalg.norm(G, axis=1)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (G @ G.T) * inv[:, None] * inv[None, :]
