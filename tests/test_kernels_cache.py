"""Numba's cache on a read-only install: the kernels compile when neither the package nor the home
can be written, and Numba's own choices stand when one of them can."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def read_only_install(tmp_path):
    """The package and cli.py copied to tmp_path/src with a file named ``__pycache__`` where the
    kernels' cache directory would go, so that no one, root included, can cache beside the source."""
    src = tmp_path / "src"
    shutil.copytree(ROOT / "refplastic", src / "refplastic", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "cli.py", src)
    (src / "refplastic" / "kernels" / "__pycache__").write_text("")
    return src


def run_in(src, tmp_path, args, **env):
    """Run ``python args`` in src with TMPDIR=tmp_path/tmp and no Numba cache settings but ``env``."""
    (tmp_path / "tmp").mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    environ.update(TMPDIR=str(tmp_path / "tmp"), **env)
    return subprocess.run([sys.executable, *args], cwd=src, env=environ, capture_output=True, text=True, timeout=300)


def fallback(tmp_path):
    return tmp_path / "tmp" / f"refplastic-numba-{os.getuid()}"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX temporary directory per uid")
def test_train_runs_with_an_unwritable_package_and_home(read_only_install, tmp_path):
    home = tmp_path / "home-is-a-file"  # ~/.cache/numba cannot be made under it
    home.write_text("")
    result = run_in(read_only_install, tmp_path, ["cli.py", "train", "--steps", "5"], HOME=str(home))
    assert result.returncode == 0, result.stderr
    assert "cache" not in result.stderr  # silently
    assert list(fallback(tmp_path).glob("kernels_*/*.nbi"))
    assert fallback(tmp_path).stat().st_mode & 0o077 == 0


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX temporary directory per uid")
@pytest.mark.parametrize("where", ["NUMBA_CACHE_DIR", "HOME"])
def test_a_writable_cache_directory_of_numbas_own_is_kept(read_only_install, tmp_path, where):
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    result = run_in(read_only_install, tmp_path, ["-c", "import refplastic.kernels.relu"], **{where: str(chosen)})
    assert result.returncode == 0, result.stderr
    assert list(chosen.glob("**/kernels_*"))  # where Numba put the kernels' cache
    assert not fallback(tmp_path).exists()
