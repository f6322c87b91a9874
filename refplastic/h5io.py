"""HDF5 helpers shared by checkpoints, results and reference files.

Files are written under a temporary name in the same directory and renamed into place only when
complete (:mod:`refplastic.outputs`), so a crash, an error or a signal never leaves a half-written
file behind.
"""

import contextlib
import errno
import json
import os
import sys

import h5py
import numpy as np

from . import __version__
from .outputs import atomic_path, check_writable


@contextlib.contextmanager
def atomic_h5(path):
    """Open ``path`` for writing as a temporary HDF5 file; rename it to ``path`` on success."""
    path = check_writable(path)
    with atomic_path(path) as tmp:
        try:
            f = h5py.File(tmp, "w")
        except OSError as e:
            raise OSError(f"cannot write {path}: {_reason(e)}") from None
        with f:
            f.attrs["refplastic_version"] = __version__
            f.attrs["command"] = command_line()
            yield f


def exists(path):
    """Whether a file is at ``path`` (False when nothing is there, or a symbolic link to nothing);
    a one-line OSError with the system's reason when that cannot be told (a symbolic link loop:
    ``cannot read PATH: Too many levels of symbolic links``; a path through a file: ``Not a directory``)."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise OSError(f"cannot read {os.fspath(path)}: {_reason(e)}") from None
    return True


def check_readable(path):
    """``path`` as a string if it names a file that can be read, else a one-line OSError saying why,
    in the system's words (``os.strerror``): ``no such file: PATH``, ``cannot read PATH: Is a directory``,
    ``cannot read PATH: Too many levels of symbolic links``."""
    path = os.fspath(path)
    if not exists(path):
        link = f" (a symbolic link to {os.readlink(path)!r}, which does not exist)" if os.path.islink(path) else ""
        raise OSError(f"no such file: {path}{link}")
    for bad, error in ((os.path.isdir(path), errno.EISDIR), (not os.access(path, os.R_OK), errno.EACCES)):
        if bad:
            raise OSError(f"cannot read {path}: {os.strerror(error)}")
    return path


def _reason(error):
    """The operating system's short reason for an OSError (h5py's messages run to several clauses)."""
    return error.strerror or str(error).split("(")[0].strip() or type(error).__name__


def open_h5(path, links=False):
    """Open an existing HDF5 file for reading, with a one-line error if it is not one.

    Unless ``links``, a file holding a soft or external link is refused with a one-line ValueError
    naming it: refplastic reads plain groups and datasets, and never follows a link (a dangling
    one would fail later with h5py's message, an external one opens another file). With ``links``
    the caller handles them (see :func:`link_description`).
    """
    path = check_readable(path)
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise OSError(f"not a readable HDF5 file: {path}") from None
    if not links:
        with _closed_on_error(f):
            _refuse_links(f, path)
    return f


@contextlib.contextmanager
def _closed_on_error(f):
    try:
        yield
    except BaseException:
        f.close()
        raise


def _refuse_links(f, path):
    def first_link(name, link):
        return name if link_description(link) else None

    name = f.visititems_links(first_link)
    if name is not None:
        raise ValueError(f"{path}: /{name} is {link_description(f.get(name, getlink=True))}; "
                         f"refplastic reads plain groups and datasets, not links")


def link_description(link):
    """``"a soft link to '/x'"`` or ``"an external link to FILE:/x"`` for an h5py link object; ``None`` for a hard link."""
    if isinstance(link, h5py.SoftLink):
        return f"a soft link to {link.path!r}"
    if isinstance(link, h5py.ExternalLink):
        return f"an external link to {link.filename}:{link.path}"
    return None


def attr_text(value):
    """An HDF5 attribute as text (bytes decoded, 0-d arrays unwrapped); ``None`` if it is not a string."""
    value = value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value
    value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return value if isinstance(value, str) else None


def check_format(f, path, expected_format, expected_version, what, required=True):
    """One-line ValueErrors unless the root attributes ``format`` and ``version`` are as expected.

    With ``required`` False either may be absent (a user's hand-made file), but must be right if set.
    ``what`` names the kind of file in the messages ("a refplastic checkpoint").
    """
    attrs = f.attrs
    if "format" in attrs or required:
        found = attr_text(attrs.get("format"))
        if found != expected_format:
            raise ValueError(f"{path}: not {what} (attribute format is {found!r}, expected {expected_format!r})")
    if "version" not in attrs and required:
        raise ValueError(f"{path}: missing attribute 'version'")
    if "version" in attrs:
        version = np.asarray(attrs["version"])
        if not (version.shape == () and np.issubdtype(version.dtype, np.integer) and version == expected_version):
            raise ValueError(f"{path}: unsupported version {_shown(attrs.get('version'))}; "
                             f"this refplastic reads version {expected_version}")


def _shown(value):
    """A short, unambiguous rendering of an attribute value for a message."""
    value = value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value
    text = repr(value.decode() if isinstance(value, bytes) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def command_line():
    """The command line that is running, as one string (recorded in every file written)."""
    return " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else ""


def write_json_attr(obj, key, value):
    obj.attrs[key] = json.dumps(value, sort_keys=True)


def read_json_attr(obj, key, where):
    if key not in obj.attrs:
        raise ValueError(f"{where}: missing attribute {key!r}")
    try:
        return json.loads(obj.attrs[key])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: attribute {key!r} is not valid JSON") from None


def write_dict(group, values):
    """Arrays become datasets and scalars become attributes of ``group``."""
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            group.create_dataset(key, data=value)
        else:
            group.attrs[key] = value


def read_dict(group, where):
    """Inverse of :func:`write_dict`: datasets as arrays, attributes as Python scalars."""
    return {**read_attrs(group), **read_datasets(group, where)}


def read_attrs(obj):
    """``{name: value}`` of the attributes of ``obj``, 0-d values as Python scalars."""
    values = {k: np.asarray(v) for k, v in obj.attrs.items()}
    return {k: (v.item() if v.ndim == 0 else v) for k, v in values.items()}


def read_datasets(group, where):
    """``{name: array}`` of the members of ``group``, each of which must be a dataset."""
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{where}: expected a group, found a dataset")
    arrays = {}
    for name, member in group.items():
        if not isinstance(member, h5py.Dataset):
            raise ValueError(f"{where}/{name}: expected a dataset, found a group")
        arrays[name] = member[()]
    return arrays
