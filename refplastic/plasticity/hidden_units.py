"""Hidden units of a sequential network, and where each unit's parameters lie.

A *hidden layer* is a Linear or Conv2d layer ``i`` whose outputs reach the next Linear or Conv2d
layer ``j`` only through elementwise activations, LayerNorm, BatchNorm, MaxPool2d and Flatten.
Its units are the outputs of ``i``: features (Linear) or channels (Conv2d), ``C`` of them. Unit
``u`` owns

    incoming   row u of i's weight (Linear (out, in), Conv2d (out, in, kh, kw)) and i's bias[u]
    norm       the entries of unit u in each LayerNorm or BatchNorm between i and j that
               normalises per unit: weight[u] and bias[u] (BatchNorm also running_mean[u] and
               running_var[u]); a LayerNorm over (C, H, W) owns weight[u, :, :]
    outgoing   column u of j's weight (Linear after Linear), j.weight[:, u] (Conv2d after
               Conv2d), or columns u k, ..., u k + k - 1 of j's weight for a Linear after a
               Flatten, k = in_features / C: torch flattens NCHW with the channel slowest, so a
               channel's k = H W positions are contiguous

and its activity ``h`` is the output of the last elementwise activation between i and j (i's own
output if there is none): what :mod:`refplastic.stats.units` scores and what j reads.

A LayerNorm over the spatial axes only ((H, W) or (W,) after a convolution) shares its entries
between all channels: they belong to no unit and resets leave them alone.

ReDo (:func:`refplastic.plasticity.interventions.redo`) and continual backprop
(:mod:`refplastic.plasticity.continual_backprop`) reset units through the functions here;
parameters change in place (they are views into ``net.flat``) and the optimiser's flat buffers,
aligned with ``net.flat``, are zeroed on exactly the entries that changed (:func:`zero_moments`).
"""

from dataclasses import dataclass

import numpy as np

from ..nn.activations import Elementwise
from ..nn.batchnorm import BatchNorm1d, BatchNorm2d
from ..nn.conv import Conv2d
from ..nn.flatten import Flatten
from ..nn.init import torch_default_init_
from ..nn.layernorm import LayerNorm
from ..nn.linear import Linear
from ..nn.pool import MaxPool2d
from ..nn.spectral_norm import SpectralNormLinear


@dataclass(frozen=True)
class HiddenLayer:
    """The units of layer ``incoming`` (``width`` of them) and the layers that hold their parameters.

    ``norms`` lists ``(layer index, entries per unit)`` of the per-unit normalisation layers
    between ``incoming`` and ``outgoing`` (entries per unit is 1 except after a Flatten);
    ``outgoing_block`` is the number of columns of a Linear ``outgoing`` per unit (1, or H W
    after a Flatten; 1 for a Conv2d); ``after_activation`` the indices of the layers strictly
    between ``activation`` and ``outgoing``.
    """

    incoming: int
    outgoing: int
    activation: int
    width: int
    norms: tuple
    outgoing_block: int
    after_activation: tuple


DENSE = (Linear, SpectralNormLinear)  # a SpectralNormLinear's units: rows of its parameter W, as a Linear's
WEIGHT_LAYERS = DENSE + (Conv2d,)


def hidden_layers(net):
    """The :class:`HiddenLayer` of every Linear or Conv2d layer but the last, in order.

    A ValueError names the layer when the architecture does not fit the description above (a
    layer of another kind between two weight layers, a Linear reading unflattened images, a
    normalisation whose size matches no unit layout).
    """
    layers = net.layers
    weights = [i for i, layer in enumerate(layers) if isinstance(layer, WEIGHT_LAYERS)]
    return [_hidden_layer(layers, i, j) for i, j in zip(weights[:-1], weights[1:])]


def _hidden_layer(layers, i, j):
    source = layers[i]
    width = source.out_features if isinstance(source, DENSE) else source.out_channels
    layout = "dense" if isinstance(source, DENSE) else "channels"
    block = 1  # entries per unit once flattened
    activation, norms = i, []
    for t in range(i + 1, j):
        layer = layers[t]
        if isinstance(layer, Elementwise):
            activation = t
        elif isinstance(layer, Flatten):
            if layout == "channels":
                if (layer.start_dim, layer.end_dim) != (1, -1):
                    raise ValueError(f"layer {t}: only Flatten(start_dim=1, end_dim=-1) may follow a convolution")
                layout, block = "flat", None  # entries per channel: known at the next layer that counts them
        elif isinstance(layer, MaxPool2d):
            if layout != "channels":
                raise ValueError(f"layer {t}: MaxPool2d needs images, but layer {i}'s units are {layout}")
        elif isinstance(layer, LayerNorm):
            entries = _layernorm_block(layer, layout, width, t)
            if entries is not None:
                block = _agree(block, entries, t)
                if layer.params:
                    norms.append((t, entries))
        elif isinstance(layer, (BatchNorm1d, BatchNorm2d)):
            entries = layer.num_features // width
            if layer.num_features % width or isinstance(layer, BatchNorm2d) != (layout == "channels") \
                    or (layout != "flat" and entries != 1):
                raise ValueError(f"layer {t}: {layer!r} does not normalise the {width} units of layer {i}")
            block = _agree(block, entries, t)
            if layer.params or layer.buffers:
                norms.append((t, entries))
        else:
            raise ValueError(f"layer {t}: {type(layer).__name__} between weight layers {i} and {j} is not supported "
                             "for unit resets")
    target = layers[j]
    if isinstance(target, DENSE):
        if layout == "channels":
            raise ValueError(f"layer {j}: a Linear layer reads the images of layer {i} without a Flatten")
        if target.in_features % width:
            raise ValueError(f"layer {j}: in_features {target.in_features} is not a multiple of the {width} units "
                             f"of layer {i}")
        outgoing_block = _agree(block, target.in_features // width, j)
    else:
        if layout != "channels" or target.in_channels != width:
            raise ValueError(f"layer {j}: {target!r} does not read the {width} channels of layer {i}")
        outgoing_block = 1
    return HiddenLayer(i, j, activation, width, tuple(norms), outgoing_block, tuple(range(activation + 1, j)))


def _layernorm_block(layer, layout, width, t):
    """Entries per unit of a LayerNorm in ``layout``, or None when its entries are shared by all units."""
    shape = layer.normalized_shape
    if layout == "channels" and len(shape) < 3:
        return None
    if layout == "channels" and len(shape) == 3 and shape[0] == width:
        return 1
    if layout in ("dense", "flat") and len(shape) == 1 and shape[0] % width == 0 \
            and (layout == "flat" or shape[0] == width):
        return shape[0] // width
    raise ValueError(f"layer {t}: {layer!r} does not normalise {width} units laid out as {layout}")


def _agree(block, entries, t):
    if block is not None and block != entries:
        raise ValueError(f"layer {t}: {entries} entries per unit where an earlier layer had {block}")
    return entries


def unit_rows(units, width, length):
    """Indices along axis 0 of an array of ``length`` rows holding ``width`` units in equal blocks:
    ``units`` itself when each unit has one row, else the rows ``u k ... u k + k - 1`` of each."""
    units = np.asarray(units, dtype=np.intp)
    if length == width:
        return units
    block = length // width
    return (units[:, None] * block + np.arange(block)).ravel()


def incoming_entries(net, layer, units):
    """``[(layer index, parameter name, index), ...]`` of the incoming weights and biases of ``units``."""
    return [(layer.incoming, name, (units,)) for name in net.layers[layer.incoming].params]


def norm_entries(net, layer, units):
    """The entries of ``units`` in the per-unit normalisation layers, as :func:`incoming_entries`."""
    out = []
    for t, _ in layer.norms:
        for name, array in net.layers[t].params.items():
            out.append((t, name, (unit_rows(units, layer.width, array.shape[0]),)))
    return out


def outgoing_entries(net, layer, units):
    """The outgoing weights of ``units`` (columns of the next layer's weight), as :func:`incoming_entries`."""
    columns = unit_rows(units, layer.width, layer.width * layer.outgoing_block)
    return [(layer.outgoing, "weight", (slice(None), columns))]


def reinitialise_incoming(net, layer, units, rng, fresh_bias):
    """Fresh incoming weights for ``units`` and their normalisation entries back to their start.

    The weights are drawn as at initialisation, PyTorch's default ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` (:mod:`refplastic.nn.init`), for the units in the order given, weights
    before biases; the biases are drawn the same way if ``fresh_bias``, else set to 0.
    Normalisation entries become weight 1, bias 0, running mean 0, running variance 1.
    Returns the entries changed (:func:`incoming_entries` plus :func:`norm_entries`).
    """
    units = np.asarray(units, dtype=np.intp)
    source = net.layers[layer.incoming]
    weight, bias = source.params["weight"], source.params.get("bias")
    new_weight = np.empty((units.size, *weight.shape[1:]), net.dtype)
    new_bias = None if bias is None else np.zeros(units.size, net.dtype)
    torch_default_init_(new_weight, new_bias if fresh_bias else None, rng)
    weight[units] = new_weight
    if bias is not None:
        bias[units] = new_bias
    for t, _ in layer.norms:
        norm = net.layers[t]
        for name, fill in (("weight", 1), ("bias", 0)):
            if name in norm.params:
                norm.params[name][unit_rows(units, layer.width, norm.params[name].shape[0])] = fill
        for name, fill in (("running_mean", 0), ("running_var", 1)):
            if name in norm.buffers:
                norm.buffers[name][unit_rows(units, layer.width, norm.buffers[name].shape[0])] = fill
    return incoming_entries(net, layer, units) + norm_entries(net, layer, units)


def zero_outgoing(net, layer, units):
    """Set the outgoing weights of ``units`` to 0; returns the entries changed."""
    entries = outgoing_entries(net, layer, np.asarray(units, dtype=np.intp))
    set_entries(net.unflatten(net.flat), entries, 0)
    return entries


def set_entries(views, entries, value):
    """``views[i][name][index] = value`` for every entry; ``views`` is ``net.unflatten(vector)``."""
    for i, name, index in entries:
        views[i][name][index] = value


def zero_moments(net, optimizer, entries):
    """Zero every state buffer of ``optimizer`` (``optimizer.buffers``, flat and aligned with
    ``net.flat``) on ``entries``; the step count is kept. ``optimizer=None`` does nothing."""
    if optimizer is None:
        return
    for name, buffer in optimizer.buffers.items():
        if buffer.shape != net.flat.shape:
            raise ValueError(f"optimizer buffer {name!r} has shape {buffer.shape}, the network "
                             f"{net.flat.shape}: the optimizer does not belong to this network")
        set_entries(net.unflatten(buffer), entries, 0)


def activations_from_caches(net, caches, layers=None):
    """The activity ``h`` of each hidden layer, read from the caches of ``net.forward_cached(x)``.

    The training step's forward pass already holds them: an elementwise activation's cache is
    ``(x, y)``, so no second forward pass is needed. A hidden layer without an elementwise
    activation is refused (use ``net.layer_outputs(x)``, which costs a forward pass).
    """
    out = []
    for layer in hidden_layers(net) if layers is None else layers:
        if not isinstance(net.layers[layer.activation], Elementwise):
            raise ValueError(f"layer {layer.incoming} has no elementwise activation before layer {layer.outgoing}; "
                             "take its outputs from net.layer_outputs(x)")
        out.append(caches[layer.activation][1])
    return out
