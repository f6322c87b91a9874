"""Gradient statistics: the batch gradient, and how per-example gradients agree with each other.

Per-example gradients follow :mod:`refplastic.curvature.per_example`: for a mean-reduced loss
``L = sum_n L_n``, ``g_n = N dL_n/dtheta``, so ``mean_n g_n = dL/dtheta`` and, when examples do
not interact, g_n is the gradient of example n's own loss. Then

    gradient_norm        |dL/dtheta|_2 (all parameters, or one layer's)
    Gram matrix          K[n, m] = <g_n, g_m>
    cosine similarity    C[n, m] = K[n, m] / sqrt(K[n, n] K[m, m])   (0 where a gradient is 0)
                         (Lyle et al. 2023, who plot C to show gradients of different examples
                         interfering: many negative entries)
    cosine_mean          mean of C[n, m] over n != m
    negative_fraction    fraction of the pairs n != m with C[n, m] < 0

The Gram matrix is computed without storing the N x P matrix G when the examples are
independent: a Linear layer with inputs x (N, in) and output cotangents gy (N, out) of the batch
loss has ``g_n = N gy_n x_n^T`` (weight) and ``N gy_n`` (bias), so its part of K is

    K_layer = N^2 (gy gy^T) o (x x^T) + N^2 gy gy^T          (o: elementwise product)

(Goodfellow 2015's trick), O(N^2 (in + out)) instead of the O(N in out) of the gradients
themselves. Other layers with parameters (Conv2d, SpectralNormLinear, LayerNorm, eval-mode BatchNorm) contribute
``G_layer G_layer^T`` from their columns of :func:`refplastic.curvature.per_example_gradients`.
A layer that mixes examples (a BatchNorm that normalises with batch statistics, a LayerNorm
whose ``normalized_shape`` spans the batch axis) makes every example's loss depend on every
input; then ``K = G G^T`` with G from the whole-network route of ``per_example_gradients``.

:func:`kmeans_order` orders the rows of C for plotting, grouping examples whose gradients point
the same way: seeded k-means++ and Lloyd's algorithm on the rows of C.
"""

import numpy as np

from ..curvature import CurvatureBatch, per_example_gradients, preserved_buffers
from ..curvature.per_example import independent_examples
from ..nn import Linear


def gradient_norm(gradient):
    """``|g|_2`` in float64."""
    return float(np.sqrt(np.sum(np.square(gradient, dtype=np.float64))))


def per_example_gradient_gram(net, loss, x, t, batch=None):
    """``K[n, m] = <g_n, g_m>`` (N x N, float64) for the per-example gradients of the module docstring.

    ``batch``: a :class:`refplastic.curvature.CurvatureBatch` of the same net, loss and batch to reuse.
    """
    batch = CurvatureBatch(net, loss, x, t) if batch is None else batch
    if not independent_examples(batch):
        G = per_example_gradients(net, loss, x, t, batch=batch).astype(np.float64)
        return G @ G.T
    n = batch.z.shape[0]
    with preserved_buffers(net):  # a train-mode forward moves BatchNorm statistics and spectral-norm vectors
        inputs = [net.as_input(x)] + net.layer_outputs(x)[:-1]
    factorised = [i for i, layer in enumerate(net.layers) if isinstance(layer, Linear) and inputs[i].ndim == 2]
    gram = np.zeros((n, n))
    for i in factorised:
        gy = batch.gys[i].astype(np.float64)
        x_i = inputs[i].astype(np.float64)
        gy_gram = gy @ gy.T
        gram += n * n * gy_gram * (x_i @ x_i.T)
        if net.layers[i].bias:
            gram += n * n * gy_gram
    others = [i for i, layer in enumerate(net.layers) if layer.params and i not in factorised]
    if others:
        G = per_example_gradients(net, loss, x, t, batch=batch)
        offsets = net.parameter_offsets()
        for name, (start, stop) in offsets.items():
            if int(name.split(".")[0]) in others:
                block = G[:, start:stop].astype(np.float64)
                gram += block @ block.T
    return gram


def cosine_from_gram(gram):
    """``C[n, m] = K[n, m] / sqrt(K[n, n] K[m, m])``, with 0 in the rows and columns of zero gradients."""
    norms = np.sqrt(np.maximum(np.diag(gram), 0))
    inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return gram * inverse[:, None] * inverse[None, :]


def _off_diagonal(matrix):
    n = matrix.shape[0]
    if n < 2:
        raise ValueError(f"off-diagonal statistics need at least two examples, got {n}")
    return matrix[~np.eye(n, dtype=bool)]


def cosine_mean(cosine):
    """Mean of ``C[n, m]`` over the N (N - 1) pairs n != m."""
    return float(np.mean(_off_diagonal(cosine)))


def negative_fraction(cosine):
    """Fraction of the pairs n != m with ``C[n, m] < 0``."""
    return float(np.mean(_off_diagonal(cosine) < 0))


def kmeans_order(matrix, k, rng, max_iterations=100):
    """``(order, labels)``: a row order that groups similar rows of ``matrix``, for plotting
    ``matrix[np.ix_(order, order)]``.

    k-means on the rows (points in R^N): k-means++ seeding from ``rng`` (first centre uniform,
    each next one drawn with probability proportional to the squared distance to the nearest
    centre so far), then Lloyd's iterations (assign each row to its nearest centre, the first on
    ties; move each centre to the mean of its rows; a centre left without rows stays) until the
    assignment stops changing or ``max_iterations``. Clusters are numbered by size, largest
    first (ties by first row), and ``order`` lists the rows of cluster 0, then 1, ..., each in
    increasing row index. The same ``rng`` state gives the same result.
    """
    points = np.asarray(matrix, dtype=np.float64)
    n = points.shape[0]
    k = max(1, min(int(k), n))
    centres = _kmeans_plus_plus(points, k, rng)
    labels = np.full(n, -1)
    for _ in range(max_iterations):
        new = np.argmin(_squared_distances(points, centres), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = points[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    sizes = np.bincount(labels, minlength=k)
    first_row = np.array([np.flatnonzero(labels == j)[0] if sizes[j] else n for j in range(k)])
    rank = np.empty(k, int)
    rank[np.lexsort((first_row, -sizes))] = np.arange(k)
    labels = rank[labels]
    return np.argsort(labels, kind="stable"), labels


def _squared_distances(points, centres):
    return np.sum((points[:, None, :] - centres[None, :, :]) ** 2, axis=2)


def _kmeans_plus_plus(points, k, rng):
    n = points.shape[0]
    chosen = [int(rng.integers(n))]
    nearest = _squared_distances(points, points[chosen])[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        index = int(rng.choice(n, p=nearest / total)) if total > 0 else int(rng.integers(n))
        chosen.append(index)
        nearest = np.minimum(nearest, _squared_distances(points, points[[index]])[:, 0])
    return points[chosen].copy()
