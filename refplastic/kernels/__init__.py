"""Numba kernels, each beside a naive NumPy twin (``*_naive``) that the tests compare it with.

Every kernel is compiled with ``cache=True``. Numba keeps that cache in ``$NUMBA_CACHE_DIR`` if it
is set, else in ``__pycache__`` beside the source, else in the user's cache directory
(``~/.cache/numba`` on Linux), and refuses to compile a kernel when none of them is writable: a
read-only install run with an unwritable home, as on shared clusters. Then, and only then, this
package points ``NUMBA_CACHE_DIR`` at ``<tmp>/refplastic-numba-<uid>`` before any kernel compiles.
"""

import contextlib
import os
import stat
import tempfile

from numba.core import config
from numba.misc.appdirs import AppDirs


def can_create_files_in(directory):
    """Whether a file can be created in ``directory``, made if missing (Numba's own test of a cache directory)."""
    try:
        os.makedirs(directory, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        return False
    return True


def private_temporary_directory():
    """``<tmp>/refplastic-numba-<uid>``, made if missing and kept between runs, if it is a directory
    only this user can write; else (the name taken by someone else, or no uids) a fresh one.

    Numba's cache index is a pickle, so it must never live where another user can write.
    """
    if hasattr(os, "getuid"):
        path = os.path.join(tempfile.gettempdir(), f"refplastic-numba-{os.getuid()}")
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        status = os.lstat(path)
        if stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid() and not status.st_mode & 0o022:
            return path
    return tempfile.mkdtemp(prefix="refplastic-numba-")


if not (config.CACHE_DIR or can_create_files_in(os.path.join(os.path.dirname(__file__), "__pycache__"))
        or can_create_files_in(AppDirs("numba", appauthor=False).user_cache_dir)):
    os.environ["NUMBA_CACHE_DIR"] = private_temporary_directory()
    config.reload_config()
