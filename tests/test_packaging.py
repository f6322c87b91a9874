"""What an install puts in site-packages: the package alone, with the command line inside it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_command_line_is_installed_inside_the_package(tmp_path, monkeypatch):
    """setuptools' build_py on this checkout's setup.cfg lays out the files that a wheel or
    ``pip install .`` installs: no top-level module (a ``cli`` there collides with any other
    project's), and the console script runs from that tree."""
    setuptools_dist = pytest.importorskip("setuptools.dist")
    monkeypatch.chdir(ROOT)
    dist = setuptools_dist.Distribution({"script_name": "setup.py"})
    dist.parse_config_files()
    build = dist.get_command_obj("build_py")
    build.build_lib = str(tmp_path)
    build.ensure_finalized()
    build.run()
    assert [p.name for p in tmp_path.iterdir()] == ["refplastic"]

    [script] = dist.entry_points["console_scripts"]
    module, function = script.split("=")[1].strip().split(":")
    code = f"import {module} as m; print(m.__file__); m.{function}()"
    result = subprocess.run([sys.executable, "-c", code, "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(tmp_path / "refplastic"))
    assert "refplastic, version" in result.stdout
