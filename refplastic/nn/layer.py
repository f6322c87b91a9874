"""The layer interface: four maps that make first- and second-order derivatives exact.

A layer computes ``y = f(x; theta)``. Training needs its vector-Jacobian product (VJP); exact
Hessian-vector products need, in addition, the forward and backward *R-operators* of Pearlmutter
(1994), ``R{.} = d/dr (.)(theta + r v)|_{r=0}``, taken along a parameter direction ``v``:

==============  ===============================================================================
``forward``     ``y = f(x; theta)``, plus a cache of what the other maps need
``backward``    VJP: ``gx = J_x^T gy`` (returned) and ``g_theta = J_theta^T gy`` (written into
                ``grads``)
``forward_r``   JVP / R-forward: ``Ry = J_x Rx + J_theta v``
``backward_r``  R-backward: ``R{gx}`` and ``R{g_theta}``, the derivatives of the VJP outputs
                along the direction, given ``gy`` and its own derivative ``R{gy}``; by the chain
                rule ``R{gx} = J_x^T R{gy} + (d J_x^T gy / dx) Rx + (d J_x^T gy / d theta) v``.
==============  ===============================================================================

Running ``forward``, ``forward_r`` up the network, then ``backward`` and ``backward_r`` down it
gives ``R{grad L} = H v`` exactly (see ``refplastic.curvature``).

Parameters live in ``self.params``, an ordered dict from PyTorch parameter names ("weight",
"bias") to arrays. A :class:`refplastic.nn.Network` binds them as views into one flat vector.
Buffers (BatchNorm running statistics, SpectralNormLinear's u and v) live in ``self.buffers``
under PyTorch names (SpectralNormLinear's as in docs/conventions.md); only ``forward`` changes them.
Gradient outputs are passed in as dicts of arrays to fill, so that a network can point them at
views of one flat gradient vector and an optimizer can update everything in one kernel.

Every tangent carries a leading *tangent axis* of size K: ``Rx`` has shape (K, *x.shape), each
``v[name]`` (K, *param.shape), and so do ``Ry``, ``R{gy}``, ``R{gx}`` and the R-gradients; the
primal arrays (x, y, gy, parameters) do not. K directions then cost one pass of batched matrix
products instead of K passes: a single Hessian-vector product is K = 1, a full Hessian is P
directions in a few blocks.

``Rx = None`` stands for a zero input tangent: the data do not move, so the first layer skips
that work. ``forward_r`` returns an ``rcache`` that carries ``Rx`` and ``v`` to ``backward_r``.

Ensembles. A :class:`refplastic.nn.Ensemble` of E networks keeps a *stacked* copy of each layer:
the same layer whose parameters and buffers carry a leading *ensemble axis* E (``params[name]``
of shape (E, *shape), rows of the ensemble's (E, P) storage; a buffer (E, *shape)). Two more
maps compute all E members at once, member e with its own parameters on its own inputs:

======================  =========================================================================
``ensemble_forward``    ``y[e] = f(x[e]; theta[e])`` for x (E, N, ...), plus a cache
``ensemble_backward``   ``gx[e] = J_x[e]^T gy[e]`` (returned) and ``g_theta[e] = J_theta[e]^T gy[e]``
                        (written into ``grads``, arrays (E, *shape))
======================  =========================================================================

Each layer's own docstring says how: a batched matrix product over E, the lone map on the whole
(E, N, ...) array (elementwise maps, pooling), or statistics per member (normalisation). They
compute what the lone ``forward`` and ``backward`` compute, member by member.
"""

class Layer:
    """Base class. Subclasses set ``param_shapes`` in ``__init__`` and implement the four maps."""

    def __init__(self):
        self.param_shapes = {}
        self.params = {}
        self.buffers = {}
        self.training = True

    # ---- parameters -------------------------------------------------------------------------
    def reset_parameters(self, rng):
        """Fill ``self.params`` in place with PyTorch's default initialisation, drawing from ``rng``."""

    def allocate_buffers(self, dtype):
        """Create ``self.buffers`` (arrays of ``dtype``); layers without buffers have none."""

    def reset_buffers(self):
        """Reset buffers (running statistics) to their initial values, in place."""

    def config(self):
        """PyTorch constructor keyword arguments: ``getattr(torch.nn, type)(**config)`` rebuilds it."""
        return {}

    # ---- the four maps ----------------------------------------------------------------------
    def forward(self, x):
        """Return ``(y, cache)``."""
        raise NotImplementedError

    def backward(self, cache, gy, grads, need_input_grad=True):
        """Write ``J_theta^T gy`` into ``grads`` (dict of arrays); return ``J_x^T gy`` or ``None``.

        ``grads=None`` skips the parameter gradients: curvature products need only the cotangents.
        """
        raise NotImplementedError

    def ensemble_forward(self, x):
        """Return ``(y, cache)`` for the E members of a stacked layer at once (see above)."""
        raise NotImplementedError

    def ensemble_backward(self, cache, gy, grads, need_input_grad=True):
        """Write ``J_theta[e]^T gy[e]`` into ``grads`` (arrays (E, *shape)); return the ``J_x[e]^T gy[e]``
        (E, N, ...) or ``None``."""
        raise NotImplementedError

    def forward_r(self, cache, rx, v):
        """Return ``(Ry, rcache)`` with ``Ry = J_x Rx + J_theta v``; ``v`` is a dict like ``params``.

        ``rx`` may be ``None`` (zero). ``rcache`` holds what ``backward_r`` needs (``Rx``, ``v``).
        """
        raise NotImplementedError

    def backward_r(self, cache, rcache, gy, rgy, rgrads, need_input_grad=True):
        """Write ``R{g_theta}`` into ``rgrads``; return ``R{gx}`` or ``None``."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def shares_input(x):
    """Whether the members' inputs ``x`` (E, ...) are one array seen E times (``np.broadcast_to``, as
    the probe copies read one minibatch): the ensemble maps of Linear and Conv2d then compute all
    members in one product, and Conv2d lowers the images once."""
    return x.shape[0] > 1 and x.strides[0] == 0
