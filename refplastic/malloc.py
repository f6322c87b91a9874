"""Keeping freed memory in the process, so that the next training step does not fault it back in.

A training step allocates its temporaries afresh (lowered images, activations, gradients: tens of
megabytes for an ensemble of CNNs) and frees them at its end. glibc's malloc then hands memory
back to the kernel: every block above its *mmap threshold* when it is freed (the threshold starts
at 128 KiB and rises to the size of each such block freed, up to 32 MiB), and the free top of its
heap once that exceeds its *trim threshold* (twice the mmap threshold). The next step touches
those pages again and the kernel faults each one in, zero-filled: a few microseconds a page on a
KVM guest such as the project's machine, where the step of ten probe CNNs (float32, batch 64)
took 47-59 ms with some 3,000 faults a step against 37-40 ms with none (docs/performance.md).

:func:`keep_freed_memory` raises both thresholds, so that blocks up to ``limit`` come from the heap
and up to ``limit`` bytes of freed memory stay with the process for the next step. It changes the
whole process (torch's allocations too, which go through the same malloc), so refplastic never
calls it on import or on its own: a program that trains calls it once at its start (the
benchmarks do with ``--keep-memory``).
"""

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3


def keep_freed_memory(limit=1 << 30):
    """Have glibc's malloc serve blocks below ``limit`` bytes from its heap and keep up to ``limit``
    freed bytes instead of returning them to the kernel. True if it did; False where the C
    library is not glibc, in which case nothing changes."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
