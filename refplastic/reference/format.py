"""The reference file format, version 1 (docs/reference-format.md): constants, cases, reading, writing.

A reference file is HDF5::

    /                  attrs: format = "refplastic-reference", version = 1, refplastic_version, command
    /cases/<name>/     attrs: architecture (JSON), loss, dtype, mode, [description]
                       datasets: inputs, targets, params/<name>, buffers/<name>, [hvp/vectors],
                       and the computed quantities (refplastic.reference.compute)

A :class:`Case` holds what defines a problem (the input fields); :func:`read_cases` reads and
validates them, raising one-line ``ValueError`` s of the form ``FILE: case 'NAME': FIELD: what``.
"""

import contextlib
import json
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..h5io import atomic_h5, check_format, link_description, open_h5
from ..nn import Network
from ..nn.losses import check_probabilities

FORMAT = "refplastic-reference"
VERSION = 1
LOSSES = ("mse", "cross_entropy", "huber")
DTYPES = ("float64", "float32")
MODES = ("train", "eval")
CASE_ATTRS = ("architecture", "loss", "dtype", "mode")
GROUP = "a group"  # what CaseDatasets.non_datasets says of a group


@dataclass
class Case:
    """One problem: a network (architecture, parameters, buffers, mode), a batch and a loss.

    Arrays are stored in the case's ``dtype`` (int64 for class labels and ``num_batches_tracked``);
    ``hvp_vectors`` (K, P) is optional.
    """

    name: str
    architecture: list
    loss: str
    dtype: str
    mode: str
    inputs: np.ndarray
    targets: np.ndarray
    params: dict
    buffers: dict = field(default_factory=dict)
    hvp_vectors: np.ndarray = None
    description: str = ""

    def network(self, dtype=np.float64):
        """A fresh :class:`Network` with this case's parameters, buffers and mode (float64 by default)."""
        net = Network.from_architecture(self.architecture, np.random.default_rng(0), dtype)
        net.load_state_dict({**self.params, **self.buffers})
        return net.train(self.mode == "train")

    def datasets(self):
        """The input fields as ``{path: array}``: inputs, targets, params/*, buffers/*, [hvp/vectors]."""
        out = {"inputs": self.inputs, "targets": self.targets}
        out.update({f"params/{k}": v for k, v in self.params.items()})
        out.update({f"buffers/{k}": v for k, v in self.buffers.items()})
        if self.hvp_vectors is not None:
            out["hvp/vectors"] = self.hvp_vectors
        return out


# ---- validation -------------------------------------------------------------------------------
class CaseError(ValueError):
    """A problem with one field of one case; ``str`` is ``WHERE: FIELD: message`` on one line."""


def check_case(case, where):
    """Raise :class:`CaseError` unless ``case`` is complete, consistent and finite.

    Checks, in order: loss, dtype, mode; the architecture builds; params (and buffers) have exactly
    the network's names and shapes and are finite; inputs are finite floats that go through the
    network; targets fit the loss and the outputs; hvp/vectors are (K, P) and finite.
    """
    def fail(name, message):
        raise CaseError(f"{where}: {name}: {message}")

    for name, allowed in (("loss", LOSSES), ("dtype", DTYPES), ("mode", MODES)):
        if getattr(case, name) not in allowed:
            fail(name, f"must be one of {', '.join(allowed)}, got {getattr(case, name)!r}")
    if not isinstance(case.architecture, list) or not case.architecture:
        fail("architecture", "must be a non-empty JSON list of layer descriptions")
    try:
        net = Network.from_architecture(case.architecture, np.random.default_rng(0))
    except (ValueError, TypeError, MemoryError) as e:
        fail("architecture", str(e) or type(e).__name__)
    _check_state("params", case.params, dict(net.named_parameters()), fail)
    _check_state("buffers", case.buffers, dict(net.named_buffers()), fail)
    net = case.network()

    x = case.inputs
    if not np.issubdtype(x.dtype, np.floating) or x.ndim < 2 or len(x) == 0:
        fail("inputs", f"must be a float array (N, ...) with N >= 1, got {x.dtype} {x.shape}")
    _check_finite("inputs", x, fail)
    try:
        z = net.forward(x)
    except ValueError as e:
        fail("inputs", f"shape {x.shape} does not fit the architecture: {e}")
    _check_finite("outputs", z, fail)
    _check_targets(case.loss, case.targets, z, fail)

    if case.hvp_vectors is not None:
        v = case.hvp_vectors
        if not np.issubdtype(v.dtype, np.floating) or v.ndim != 2 or v.shape[1] != net.num_parameters or not len(v):
            fail("hvp/vectors", f"expected a float array (K, {net.num_parameters}), got {v.dtype} {v.shape}")
        _check_finite("hvp/vectors", v, fail)


def _check_state(group, given, expected, fail):
    """Names, shapes, kinds and finiteness of params or buffers against the network's."""
    for name in given:
        if name not in expected:
            fail(f"{group}/{name}", f"not in this architecture, which has {', '.join(expected) or 'none'}")
    for name, target in expected.items():
        if name not in given:
            fail(f"{group}/{name}", "missing")
        value = given[name]
        if value.shape != target.shape:
            fail(f"{group}/{name}", f"expected shape {target.shape} from the architecture, got {value.shape}")
        kind = np.integer if np.issubdtype(target.dtype, np.integer) else np.floating
        if not np.issubdtype(value.dtype, kind):
            fail(f"{group}/{name}", f"expected {kind.__name__} values, got {value.dtype}")
        _check_finite(f"{group}/{name}", value, fail)


def _check_targets(loss, t, z, fail):
    """mse, huber: floats of the outputs' shape; cross_entropy: int labels (N,) in [0, C) or class
    probabilities (N, C) (:func:`refplastic.nn.losses.check_probabilities`)."""
    if loss == "cross_entropy" and np.issubdtype(t.dtype, np.integer):
        if t.shape != z.shape[:1] or z.ndim != 2:
            fail("targets", f"int labels must have shape ({len(z)},) for outputs {z.shape}, got {t.shape}")
        bad = np.flatnonzero((t < 0) | (t >= z.shape[1]))
        if bad.size:
            fail("targets", f"labels must lie in [0, {z.shape[1]}): row {bad[0]} is {t[bad[0]]}")
        return
    if not np.issubdtype(t.dtype, np.floating) or t.shape != z.shape:
        kinds = "int64 labels or " if loss == "cross_entropy" else ""
        fail("targets", f"expected {kinds}floats of the outputs' shape {z.shape}, got {t.dtype} {t.shape}")
    _check_finite("targets", t, fail)
    if loss == "cross_entropy":
        try:
            check_probabilities(t)
        except ValueError as e:
            fail("targets", str(e).removeprefix("targets "))


def _check_finite(name, a, fail):
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        fail(name, "contains NaN or infinity")


# ---- reading ----------------------------------------------------------------------------------
def read_cases(path):
    """Every case of a reference (or input) file, validated by :func:`check_case`, in file order."""
    with open_h5(path) as f:
        cases_group = _cases_group(f, path)
        cases = [_read_case(cases_group[name], name, f"{path}: case {name!r}") for name in cases_group]
    return cases


class CaseDatasets(dict):
    """``{path within the case: array}`` of a case's datasets; ``non_datasets`` is ``{path: what}``
    of the other objects in it, none of them read or followed: groups ("a group") and soft or
    external links, dangling or not ("a soft link to '/x'")."""

    def __init__(self, arrays=(), non_datasets=None):
        super().__init__(arrays)
        self.non_datasets = dict(non_datasets or {})


def read_datasets(path):
    """``{case name: CaseDatasets}`` of every dataset in the file (for comparing); links are not followed."""
    out = {}
    with open_h5(path, links=True) as f:
        cases_group = _cases_group(f, path)
        for name in cases_group:
            group = cases_group.get(name, getlink=True)
            if not isinstance(group, h5py.HardLink) or not isinstance(cases_group[name], h5py.Group):
                raise ValueError(f"{path}: /cases/{name} is not a group")
            out[name] = _case_datasets(cases_group[name])
    return out


def _case_datasets(group):
    """The :class:`CaseDatasets` of one case's group (every link visited once, none followed)."""
    case = CaseDatasets()

    def visit(key, link):
        if link_description(link):
            case.non_datasets[key] = link_description(link)
        elif isinstance(group[key], h5py.Dataset):
            case[key] = group[key][()]
        else:
            case.non_datasets[key] = GROUP if isinstance(group[key], h5py.Group) else "a named datatype"

    group.visititems_links(visit)
    return case


def _cases_group(f, path):
    """``/cases`` after checking the root attributes (optional in a user's file, but must be right if set)."""
    check_format(f, path, FORMAT, VERSION, "a refplastic reference file", required=False)
    if not isinstance(f.get("cases"), h5py.Group) or not len(f["cases"]):
        raise ValueError(f"{path}: missing group /cases (one group per case)")
    return f["cases"]


def _read_case(group, name, where):
    if not isinstance(group, h5py.Group):
        raise CaseError(f"{where}: not a group")
    for key in CASE_ATTRS:
        if key not in group.attrs:
            raise CaseError(f"{where}: {key}: missing attribute")
    try:
        architecture = json.loads(_text(group.attrs["architecture"]))
    except ValueError:
        raise CaseError(f"{where}: architecture: not valid JSON") from None
    case = Case(
        name=name, architecture=architecture, loss=_text(group.attrs["loss"]), dtype=_text(group.attrs["dtype"]),
        mode=_text(group.attrs["mode"]), inputs=_dataset(group, "inputs", where),
        targets=_dataset(group, "targets", where), params=_datasets(group, "params", where),
        buffers=_datasets(group, "buffers", where, required=False),
        hvp_vectors=_dataset(group, "hvp/vectors", where) if "hvp/vectors" in group else None,
        description=_text(group.attrs.get("description", "")),
    )
    check_case(case, where)
    return _cast(case, where)


def _cast(case, where):
    """Float arrays in the case's dtype, class labels as int64; a :class:`CaseError` for a finite value
    that the case's dtype cannot hold (above 3.4e38 in a float32 case), which would become infinite."""
    def cast(name, a):
        if not np.issubdtype(a.dtype, np.floating):
            return a.astype(np.int64)
        with np.errstate(over="ignore"):
            out = a.astype(case.dtype)
        if not np.all(np.isfinite(out)):
            raise CaseError(f"{where}: {name}: values beyond the range of {case.dtype}")
        return out
    case.inputs, case.targets = cast("inputs", case.inputs), cast("targets", case.targets)
    case.params = {k: cast(f"params/{k}", v) for k, v in case.params.items()}
    case.buffers = {k: cast(f"buffers/{k}", v) for k, v in case.buffers.items()}
    if case.hvp_vectors is not None:
        case.hvp_vectors = cast("hvp/vectors", case.hvp_vectors)
    return case


def _dataset(group, key, where):
    obj = group.get(key)
    if obj is None:
        raise CaseError(f"{where}: {key}: missing dataset")
    if not isinstance(obj, h5py.Dataset):
        raise CaseError(f"{where}: {key}: expected a dataset, found a group")
    value = np.asarray(obj[()])
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise CaseError(f"{where}: {key}: expected numbers, got {value.dtype}")
    return value


def _datasets(group, key, where, required=True):
    obj = group.get(key)
    if obj is None and not required:
        return {}
    if not isinstance(obj, h5py.Group):
        raise CaseError(f"{where}: {key}: missing group")
    return {name: _dataset(obj, name, where + f": {key}") for name in obj}


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


# ---- writing ----------------------------------------------------------------------------------
@contextlib.contextmanager
def reference_writer(path):
    """Yield the ``/cases`` group of a new reference file, written atomically (temporary name, then rename)."""
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        yield f.create_group("cases")


def write_case(cases_group, case, datasets, attrs):
    """Write ``case``'s attributes and ``datasets`` (``{path: array}``), and ``attrs`` (``{group path: dict}``)."""
    group = cases_group.create_group(case.name)
    group.attrs["architecture"] = json.dumps(case.architecture)
    for key in ("loss", "dtype", "mode"):
        group.attrs[key] = getattr(case, key)
    if case.description:
        group.attrs["description"] = case.description
    for key, value in datasets.items():
        group.create_dataset(key, data=value)
    for key, values in attrs.items():
        group.require_group(key).attrs.update(values)
