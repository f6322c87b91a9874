"""Output files of a command: proved writable before any work, written whole or not at all.

Every file refplastic writes goes through :func:`atomic_path`: it is written under a temporary
name in the same directory, ``<path>.tmp-<host>-<pid>``, and renamed to ``path`` only when
complete, so a crash, an error or a signal never leaves a half-written ``path`` behind. A process
killed outright (SIGKILL) can leave its temporary file; :func:`remove_stale_temporaries` removes
those of dead processes of this host, and :func:`check_output` calls it at the start of every
command, so the next start cleans up. (The host is in the name because a directory may be
shared by the machines of a cluster, where a process id says nothing about another host.)

Before any work, :func:`check_output` proves an output path usable: a file name (not a directory
or a name ending in ``/``), in an existing directory, whose temporary name can be created there
(so a name too long for the file system fails now, not after the work), and not an existing file
of another kind, which is kept unless the caller forces the overwrite. :func:`check_distinct`
refuses two outputs on one path and an output on one of the command's inputs.

A file's *kind* is what :func:`file_kind` reads from its content: the ``format`` attribute of a
refplastic HDF5 file (``refplastic-checkpoint``, ``refplastic-statistics``, ...), an image format
from its first bytes, or ``None`` for anything else.
"""

import contextlib
import errno
import glob
import os
import socket

HOST = socket.gethostname().split(".")[0] or "host"

IMAGE_SIGNATURES = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "pdf": (b"%PDF",),
    "jpg": (b"\xff\xd8\xff",),
    "jpeg": (b"\xff\xd8\xff",),
    "tif": (b"II*\x00", b"MM\x00*"),
    "tiff": (b"II*\x00", b"MM\x00*"),
    "ps": (b"%!PS",),
    "eps": (b"%!PS", b"\xc5\xd0\xd3\xc6"),
    "svg": (b"<?xml", b"<svg"),
    "svgz": (b"\x1f\x8b",),
    "webp": (b"RIFF",),
    "gif": (b"GIF87a", b"GIF89a"),
}
"""The first bytes of each image format matplotlib writes and a file can be recognised by."""


TEXT_SIGNATURES = {"refplastic-dqn-report": b"# DQN report\n", "refplastic-dqn-scores": b"game,baseline_seeds,",
                   "refplastic-progress": b"refplastic-progress ",
                   "refplastic-analysis-report": b"# refplastic analysis\n",
                   "refplastic-figure6": b"intervention,arch,", "refplastic-correlations": b"statistic,split,"}
"""The first bytes of each text file a command writes (``dqn-report``'s and ``analyse``'s, the
progress files of ``run`` and ``dqn`` for ``sweep``), by the kind they make it."""


def temporary_name(path):
    """``<path>.tmp-<host>-<pid>``: where this process writes ``path`` before renaming it."""
    return f"{os.fspath(path)}.tmp-{HOST}-{os.getpid()}"


@contextlib.contextmanager
def atomic_path(path):
    """Yield :func:`temporary_name` of ``path``; rename it to ``path`` if the block succeeds, else
    remove it (an exception, KeyboardInterrupt and the stop signals included)."""
    path = os.fspath(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def check_writable(path):
    """``path`` as a string if a file can be created there under its temporary name, else a
    one-line OSError saying why (checked by creating and removing that temporary file)."""
    path = os.fspath(path)
    if not path or path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise OSError(f"not a file name: {path!r}" if not path else
                      f"{path} is a directory name (it ends in {path[-1]!r}), not a file name")
    if os.path.isdir(path):
        raise OSError(f"{path} is a directory, not a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        raise OSError(f"{path} exists and is not a regular file (a device, pipe or socket): "
                      "outputs are written to files only")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OSError(f"directory does not exist: {directory}")
    tmp = temporary_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return path  # a temporary of this very process: the name fits and the directory is writable
    except OSError as e:
        hint = " (choose a shorter file name)" if e.errno == errno.ENAMETOOLONG else ""
        raise OSError(f"cannot write {path}: {e.strerror or type(e).__name__}{hint}") from None
    os.close(fd)
    os.remove(tmp)
    return path


def remove_stale_temporaries(path):
    """Remove the temporary files of ``path`` left by processes of this host that no longer run
    (a SIGKILL, a power cut); return their names. Others' temporaries are left alone."""
    removed = []
    for tmp in glob.glob(glob.escape(os.fspath(path)) + f".tmp-{glob.escape(HOST)}-*"):
        pid = tmp.rpartition("-")[2]
        if pid.isdigit() and not _running(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
                removed.append(tmp)
    return removed


def _running(pid):
    """Whether a process ``pid`` exists on this host."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def file_kind(path):
    """What an existing file is, read from its content: the ``format`` attribute of an HDF5 file
    (``"refplastic-checkpoint"``, ...; ``"HDF5"`` without one), ``"image/<ext>"`` for an image of
    a format in :data:`IMAGE_SIGNATURES`, a kind of :data:`TEXT_SIGNATURES`, ``"empty"``, or
    ``None`` for anything else."""
    import h5py

    with open(path, "rb") as f:
        head = f.read(32)
    if not head:
        return "empty"
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                found = f.attrs.get("format")
        except OSError:
            return "HDF5"
        found = found.decode("utf-8", "replace") if isinstance(found, bytes) else found
        return found if isinstance(found, str) else "HDF5"
    extension = os.path.splitext(path)[1][1:].lower()
    if any(head.startswith(s) for s in IMAGE_SIGNATURES.get(extension, ())):
        return f"image/{extension}"
    return next((kind for kind, start in TEXT_SIGNATURES.items() if head.startswith(start)), None)


def describe_kind(kind):
    """A file kind as words for a message."""
    if kind is None:
        return "a file refplastic did not write"
    if kind.startswith("image/"):
        return f"a {kind[6:].upper()} image"
    if kind == "HDF5":
        return "an HDF5 file refplastic did not write"
    return f"a {kind.replace('refplastic-', 'refplastic ')} file"


def check_output(path, kind, force=False, resumes=False):
    """Prove ``path`` usable as an output of ``kind`` before any work; return it as a string.

    ``kind`` is the :func:`file_kind` the command writes (for an image, ``"image"``: any image of
    the extension's format). An existing file of another kind (a checkpoint where a statistics
    file is to be written, a text file, ...) is refused unless ``force``; one of the same kind,
    or an empty one, is replaced. With ``resumes`` (a checkpoint, which a command reads back
    before it writes it) an existing file must be of ``kind``, ``force`` or not. Stale
    temporaries of ``path`` are removed first. Raises a one-line OSError (cannot write) or
    FileExistsError (another kind) otherwise.
    """
    path = check_writable(path)
    remove_stale_temporaries(path)
    if os.path.isfile(path) and (resumes or not force):
        found = file_kind(path)
        if resumes and found != kind:
            raise FileExistsError(f"{path} exists and is {describe_kind(found)}, not {describe_kind(kind)} "
                                  f"to resume from; give another path")
        same = found == kind or (kind == "image" and found is not None and found.startswith("image/"))
        if not (same or found == "empty"):
            raise FileExistsError(f"{path} exists and is {describe_kind(found)}; refusing to replace it "
                                  f"(give another path, or --force to overwrite it)")
    return path


def same_file(a, b):
    """Whether the paths ``a`` and ``b`` name one file (through links or ``..`` too); a path that
    does not exist yet is the same as another only if both spell the same absolute path."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def check_distinct(outputs, inputs):
    """Refuse two outputs on one path and an output on an input: ``outputs`` and ``inputs`` are
    ``{option name: path or None}``; a ValueError names both options."""
    named_outputs = [(name, path) for name, path in outputs.items() if path is not None]
    for i, (name, path) in enumerate(named_outputs):
        for other, other_path in named_outputs[:i]:
            if same_file(path, other_path):
                raise ValueError(f"{name} and {other} are one file ({path}); each output needs its own path")
        for other, other_path in inputs.items():
            if other_path is not None and same_file(path, other_path):
                raise ValueError(f"{name} is {other} ({path}); the output would overwrite the input")
