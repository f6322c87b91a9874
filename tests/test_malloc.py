"""keep_freed_memory: a block freed and allocated again is not faulted in again (glibc only)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

REALLOCATE = """
import resource, sys
import numpy as np
from refplastic.malloc import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
np.ones(1 << 22)  # 32 MiB, freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(1 << 22)
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode):
    """``(keep_freed_memory's answer or None, page faults of the second 32 MiB array)`` in a fresh
    process: the setting is the process's, so it must not leak into the test session."""
    out = subprocess.run([sys.executable, "-c", REALLOCATE, mode], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and getrusage's fault count")
def test_freed_memory_is_kept_for_the_next_block():
    kept, faults = page_faults("keep")
    if kept == "False":
        pytest.skip("the C library is not glibc")
    assert faults == 0
    assert page_faults("default")[1] > 0  # without it, glibc returns the block to the kernel
