"""Checkpoints in HDF5: a network, optionally its optimizer state and a run's progress.

Layout (version 1)::

    /                 attrs: format = "refplastic-checkpoint", version = 1, refplastic_version,
                             command, architecture (JSON list of {"type", **torch kwargs}),
                             dtype ("float64" | "float32"), training (bool)
    /state/<name>     parameters and buffers, PyTorch state-dict names and layouts (SpectralNormLinear:
                      refplastic names, mapped to torch's in docs/conventions.md)
    /optimizer        the optimizer's state_dict(): attrs name and its scalars (optimizer, hyperparameters,
                      step); datasets its arrays (the state buffers, Adam's betas)
    /run              attrs: config (JSON), rng_state (JSON of the bit generator state), step
    /run/history/<k>  1-D arrays of a run's logged values

Nothing is unpickled: every field is a plain array, number or JSON string.
"""

import json

import h5py
import numpy as np

from .config_fields import config_differences
from .h5io import atomic_h5, attr_text, check_format, open_h5, read_datasets, read_dict, read_json_attr, write_dict, write_json_attr
from .nn import Network, as_dtype
from .nn.optim import OPTIMIZERS, StateError, make_optimizer

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


def load_network(path, like=None):
    """The network stored in a checkpoint file, in the mode it was saved in.

    With ``like`` a network, the stored one must have the same architecture (say, the same
    network at initialisation); a ValueError naming the file says what differs.
    """
    with open_h5(path) as f:
        net = _network_from(f, path)
    if like is not None and net.architecture() != like.architecture():
        raise ValueError(f"{path}: a different architecture from the network's: "
                         f"{net.num_parameters} parameters in {len(net.layers)} layers, "
                         f"not {like.num_parameters} in {len(like.layers)}")
    return net


def load_checkpoint(path):
    """``{"network", "optimizer_state", "optimizer_name", "run"}`` from a checkpoint file.

    ``run`` is ``None`` or a dict with ``config`` (a dict), ``rng_state`` (a dict), ``step`` (an
    int >= 0) and ``history`` (equally long 1-D arrays of numbers). Every field is checked; a bad
    one raises a one-line ValueError naming the file and the field; the optimizer state, if any,
    must load into its optimizer for the network (:func:`_optimizer_from`).
    """
    with open_h5(path) as f:
        net = _network_from(f, path)
        out = {"network": net, "optimizer_name": None, "optimizer_state": None, "run": None}
        if "optimizer" in f:
            out["optimizer_name"], out["optimizer_state"] = _optimizer_from(f["optimizer"], net, path)
        if "run" in f:
            out["run"] = _run_from(f["run"], path)
        return out


def _optimizer_from(group, net, path):
    """``(name, state)`` of the /optimizer group, checked by loading it into that optimizer for ``net``:
    every hyperparameter attribute of the right kind and range, the step, and every buffer of the
    network's size and dtype and finite. A bad one is named: ``/optimizer attribute 'lr'``, ``/optimizer/exp_avg``."""
    state = read_dict(group, f"{path}: /optimizer")
    if "name" not in state:
        raise ValueError(f"{path}: /optimizer: missing attribute 'name'")
    name = state.pop("name")
    if attr_text(name) not in OPTIMIZERS:
        raise ValueError(f"{path}: /optimizer attribute 'name' must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    load_optimizer_state(make_optimizer(attr_text(name), net.flat.copy()), state, group, path)
    return name, state


def load_optimizer_state(optimizer, state, group, path):
    """``optimizer.load_state_dict(state)`` for ``state`` read from the HDF5 ``group``; a bad field
    is a one-line ValueError naming the file and where the field is stored:
    ``run.h5: /optimizer attribute 'lr' must be a finite number, got 'x'``, ``run.h5: /optimizer/exp_avg
    contains NaN or infinity``."""
    try:
        optimizer.load_state_dict(state)
    except StateError as e:
        field = e.field.split("[")[0]  # betas[1] is stored as betas
        where = f"{group.name} attribute {field!r}" if field in group.attrs else f"{group.name}/{field}"
        raise ValueError(f"{path}: {where}{e.field[len(field):]} {e.problem}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {group.name}: {e}") from None


def _run_from(run, path):
    where = f"{path}: /run"
    if not isinstance(run, h5py.Group) or "step" not in run.attrs or "history" not in run:
        raise ValueError(f"{where} needs an attribute 'step' and a group 'history'")
    step = np.asarray(run.attrs["step"])
    if not (step.shape == () and np.issubdtype(step.dtype, np.integer) and step >= 0):
        raise ValueError(f"{where}: attribute 'step' must be an integer >= 0, got {step.tolist()!r}")
    config, rng_state = (read_json_attr(run, key, where) for key in ("config", "rng_state"))
    for key, value in (("config", config), ("rng_state", rng_state)):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: attribute {key!r} must be a JSON object")
    history = read_datasets(run["history"], f"{where}/history")
    for key, values in history.items():
        if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
            raise ValueError(f"{where}/history/{key}: expected a 1-D array of numbers, got {values.dtype} {values.shape}")
    if len({len(values) for values in history.values()}) > 1:
        raise ValueError(f"{where}/history: arrays of different lengths "
                         f"({', '.join(f'{k} {len(v)}' for k, v in history.items())})")
    return {"config": config, "rng_state": rng_state, "step": int(step), "history": history}


def _network_from(f, path):
    check_format(f, path, FORMAT, VERSION, "a refplastic checkpoint")
    architecture = read_json_attr(f, "architecture", str(path))
    if not isinstance(f.get("state"), h5py.Group):
        raise ValueError(f"{path}: missing group /state")
    if "dtype" not in f.attrs:
        raise ValueError(f"{path}: missing attribute 'dtype'")
    training = np.asarray(f.attrs.get("training", True))
    if training.shape != () or training.dtype.kind not in "bi" or training not in (0, 1):
        raise ValueError(f"{path}: attribute 'training' must be true or false, got {f.attrs['training']!r}")
    try:
        net = Network.from_architecture(_as_list(architecture), np.random.default_rng(0),
                                        as_dtype(attr_text(f.attrs["dtype"]) or repr(f.attrs["dtype"])))
    except (ValueError, TypeError, MemoryError) as e:
        raise ValueError(f"{path}: cannot build the network: {str(e) or type(e).__name__}") from None
    state = read_datasets(f["state"], f"{path}: /state")
    try:
        net.load_state_dict(state)
    except ValueError as e:
        raise ValueError(f"{path}: /state: {e}") from None
    for name, value in state.items():
        if np.issubdtype(np.asarray(value).dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: /state/{name} contains NaN or infinity")
    net.train(bool(training))
    return net


def _as_list(architecture):
    if not isinstance(architecture, list) or not architecture:
        raise ValueError("attribute 'architecture' must be a non-empty JSON list of layer descriptions")
    return architecture


def restore_rng(rng_state):
    """A ``numpy.random.Generator`` in the exact state saved by :func:`save_checkpoint`."""
    name = rng_state.get("bit_generator") if isinstance(rng_state, dict) else None
    bit_generator = BIT_GENERATORS.get(name) if isinstance(name, str) else None
    if bit_generator is None:
        raise ValueError(f"unknown bit generator in checkpoint: {json.dumps(name)}")
    bg = bit_generator()
    try:
        bg.state = rng_state
    except (TypeError, ValueError, KeyError, OverflowError):
        raise ValueError(f"invalid {name} state in checkpoint") from None
    return np.random.Generator(bg)


def restore_streams(f, path, names):
    """The generators saved as the JSON attribute ``rng`` of ``f`` (``{stream: bit generator
    state}``), which must name exactly the streams ``names``; one-line ValueErrors otherwise."""
    states = read_json_attr(f, "rng", path)
    if set(states) != set(names):
        raise ValueError(f"{path}: attribute 'rng' holds the streams {sorted(states)}, expected {sorted(names)}")
    return {name: restore_rng(state) for name, state in states.items()}


def check_saved_config(f, path, config, ignore=()):
    """A one-line ValueError naming the fields where the JSON attribute ``config`` of ``f``
    differs from ``config`` (a dataclass with ``to_json``), those of ``ignore`` left out."""
    saved = read_json_attr(f, "config", path)
    differences = config_differences(config.to_json(), saved if isinstance(saved, dict) else {}, ignore)
    if differences:
        raise ValueError(f"{path}: checkpoint was written with a different configuration: {differences}")


def load_saved_run(path, config, kind, build, restore, ignore=()):
    """The run of ``config`` in the state saved at ``path``, a checkpoint of ``kind`` (``(format,
    version, what)``, e.g. ``("refplastic-run-checkpoint", 1, "a refplastic run checkpoint")``):
    checks the file's format and its saved configuration (the fields of ``ignore`` may differ),
    makes the run with ``build(f)`` (which may check more of the file first) and fills it with
    ``restore(f, path, run)``. Each refusal is a one-line ValueError naming the file; a missing or
    ill-typed field is "a field is missing or damaged"."""
    fmt, version, what = kind
    with open_h5(path) as f:
        check_format(f, path, fmt, version, what)
        check_saved_config(f, path, config, ignore=ignore)
        run = build(f)
        try:
            restore(f, path, run)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: a field is missing or damaged ({e})") from None
    return run
