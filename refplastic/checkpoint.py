"""Checkpoints in HDF5: a network, optionally its optimizer state and a run's progress.

Layout (version 1)::

    /                 attrs: format = "refplastic-checkpoint", version = 1, refplastic_version,
                             command, architecture (JSON list of {"type", **torch kwargs}),
                             dtype ("float64" | "float32"), training (bool)
    /state/<name>     parameters and buffers, PyTorch state-dict names and layouts
    /optimizer        attrs: name and scalar state (hyperparameters, step); datasets: state arrays
    /run              attrs: config (JSON), rng_state (JSON of the bit generator state), step
    /run/history/<k>  1-D arrays of a run's logged values

Nothing is unpickled: every field is a plain array, number or JSON string.
"""

import json

import numpy as np

from .h5io import atomic_h5, open_h5, read_datasets, read_dict, read_json_attr, write_dict, write_json_attr
from .nn import Network, as_dtype

BIT_GENERATORS = {g.__name__: g for g in (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox,
                                           np.random.SFC64, np.random.MT19937)}
FORMAT = "refplastic-checkpoint"
VERSION = 1


def save_checkpoint(path, net, optimizer=None, run=None):
    """Write ``net`` (and the optimizer state and ``run`` dict, if given) to ``path`` atomically.

    ``run`` holds ``config`` (a JSON-able dict), ``rng`` (a ``numpy.random.Generator``), ``step``
    and ``history`` (a dict of 1-D arrays).
    """
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        write_json_attr(f, "architecture", net.architecture())
        f.attrs["dtype"] = np.dtype(net.dtype).name
        f.attrs["training"] = net.training
        state = f.create_group("state")
        for name, value in net.state_dict().items():
            state.create_dataset(name, data=value)
        if optimizer is not None:
            group = f.create_group("optimizer")
            group.attrs["name"] = optimizer.name
            write_dict(group, optimizer.state_dict())
        if run is not None:
            group = f.create_group("run")
            write_json_attr(group, "config", run["config"])
            write_json_attr(group, "rng_state", run["rng"].bit_generator.state)
            group.attrs["step"] = int(run["step"])
            history = group.create_group("history")
            for key, values in run["history"].items():
                history.create_dataset(key, data=np.asarray(values))


def load_network(path):
    """The network stored in a checkpoint file, in the mode it was saved in."""
    with open_h5(path) as f:
        return _network_from(f, path)


def load_checkpoint(path):
    """``{"network", "optimizer_state", "optimizer_name", "run"}`` from a checkpoint file.

    ``run`` is ``None`` or a dict with ``config``, ``rng_state``, ``step`` and ``history``.
    """
    with open_h5(path) as f:
        net = _network_from(f, path)
        out = {"network": net, "optimizer_name": None, "optimizer_state": None, "run": None}
        if "optimizer" in f:
            state = read_dict(f["optimizer"], f"{path}: /optimizer")
            if "name" not in state:
                raise ValueError(f"{path}: /optimizer: missing attribute 'name'")
            out["optimizer_name"] = state.pop("name")
            out["optimizer_state"] = state
        if "run" in f:
            run = f["run"]
            if "step" not in run.attrs or "history" not in run:
                raise ValueError(f"{path}: /run needs an attribute 'step' and a group 'history'")
            out["run"] = {
                "config": read_json_attr(run, "config", f"{path}: /run"),
                "rng_state": read_json_attr(run, "rng_state", f"{path}: /run"),
                "step": int(run.attrs["step"]),
                "history": read_datasets(run["history"], f"{path}: /run/history"),
            }
        return out


def _network_from(f, path):
    if f.attrs.get("format") != FORMAT:
        raise ValueError(f"{path}: not a refplastic checkpoint (attribute format != {FORMAT!r})")
    if int(f.attrs.get("version", -1)) != VERSION:
        raise ValueError(f"{path}: unsupported checkpoint version {f.attrs.get('version')}")
    architecture = read_json_attr(f, "architecture", str(path))
    if "state" not in f:
        raise ValueError(f"{path}: missing group /state")
    if "dtype" not in f.attrs:
        raise ValueError(f"{path}: missing attribute 'dtype'")
    net = Network.from_architecture(architecture, np.random.default_rng(0), as_dtype(str(f.attrs["dtype"])))
    state = read_datasets(f["state"], f"{path}: /state")
    try:
        net.load_state_dict(state)
    except ValueError as e:
        raise ValueError(f"{path}: /state: {e}") from None
    for name, value in state.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: /state/{name} contains NaN or infinity")
    net.train(bool(f.attrs.get("training", True)))
    return net


def restore_rng(rng_state):
    """A ``numpy.random.Generator`` in the exact state saved by :func:`save_checkpoint`."""
    name = rng_state.get("bit_generator") if isinstance(rng_state, dict) else None
    bit_generator = BIT_GENERATORS.get(name) if isinstance(name, str) else None
    if bit_generator is None:
        raise ValueError(f"unknown bit generator in checkpoint: {json.dumps(name)}")
    bg = bit_generator()
    bg.state = rng_state
    return np.random.Generator(bg)
