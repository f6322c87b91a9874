"""Run a kernel's outer loop on several threads.

The memory-bound kernels (the convolution rearrangements, the fused optimizer updates, ReLU) are
compiled with ``nogil=True`` and take the range ``[start, stop)`` of their outer loop as their last
two arguments; their iterations write disjoint parts of the output, so any split of the range
gives the same bits as one serial call. :func:`parallel_range` splits the range into one chunk
per thread, runs the first chunk on the calling thread and the others on a small pool of Python
threads, and waits for all of them.

Why Python threads rather than Numba's ``parallel=True``: Numba's OpenMP layer aborts fork()ed
child processes (a multiprocessing pool of seeds) and its workqueue layer is not safe when two
Python threads call into it; a plain thread pool is neither, and it is rebuilt in a fork()ed child.

Thread count: ``REFPLASTIC_NUM_THREADS`` if set, else the CPUs this process may run on; change it
with :func:`set_num_threads`. A chunk is never smaller than ``MIN_CHUNK`` elements of work, so a
small call (one image, a small layer) stays on the calling thread, where a hand-off would cost
more than it saves.
"""

import os
from concurrent.futures import ThreadPoolExecutor

MIN_CHUNK = 1 << 16  # elements of work below which a chunk is not worth a hand-off (~20 us)


def _default_threads():
    value = os.environ.get("REFPLASTIC_NUM_THREADS", "")
    if value.strip():
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"REFPLASTIC_NUM_THREADS must be a positive integer, got {value!r}") from None
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_threads = _default_threads()
_pool = None


def num_threads():
    """The number of threads :func:`parallel_range` uses."""
    return _threads


def set_num_threads(n):
    """Use ``n`` threads (at least 1) from now on."""
    global _threads, _pool
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"the number of threads must be a positive int, got {n!r}")
    _threads = n
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def _forget_pool():
    """In a fork()ed child the pool's threads do not exist: start a new pool when needed."""
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def chunks(n, work_per_item):
    """``[(start, stop), ...]``: ``range(n)`` cut into at most :func:`num_threads` near-equal
    chunks of at least ``MIN_CHUNK`` elements of work each (one chunk when the call is small)."""
    count = max(1, min(_threads, n, (n * work_per_item) // MIN_CHUNK))
    bounds = [n * i // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def parallel_range(kernel, n, work_per_item, *args):
    """Call ``kernel(*args, start, stop)`` over chunks of ``range(n)`` on several threads.

    ``work_per_item`` is the number of array elements one iteration of the outer loop reads or
    writes; it decides how many chunks the call is worth (see :func:`chunks`).
    """
    global _pool
    parts = chunks(n, work_per_item)
    if len(parts) == 1:
        kernel(*args, 0, n)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads - 1, thread_name_prefix="refplastic")
    futures = [_pool.submit(kernel, *args, start, stop) for start, stop in parts[1:]]
    try:
        kernel(*args, *parts[0])
    finally:
        for future in futures:
            future.result()
