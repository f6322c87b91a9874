"""Where the runs of a grid run: this machine (:class:`LocalExecutor`) or a Dask cluster
(:class:`DaskExecutor`), behind one interface: ``submit(directory, run)`` returns a future whose
result is the run's :class:`~refplastic.sweep.task.Outcome`, ``wait(futures, timeout)`` returns
those done, and ``close()``.

Both run :func:`refplastic.sweep.task.run_one`, so a grid gives the same files on either.
"""

import concurrent.futures
import os
import time
import uuid

from .task import run_one


def default_jobs():
    """The cores this process may use (its CPU affinity where the system says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class LocalExecutor:
    """``jobs`` runs at a time on this machine, each a process of its own (started by a thread)."""

    def __init__(self, jobs):
        self.jobs = jobs
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="refplastic-run")

    def submit(self, directory, run):
        return self.pool.submit(run_one, directory, run)

    def wait(self, futures, timeout):
        done, _ = concurrent.futures.wait(futures, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        return done

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


def scheduler_address(text):
    """``text`` as the ``tcp://HOST:PORT`` address of a Dask scheduler (``HOST:PORT`` is taken as
    tcp); a ValueError saying what is wrong otherwise. Checked before connecting: a malformed
    address given to ``distributed.Client`` fails only after the client is half made."""
    rest = text[len("tcp://"):] if text.startswith("tcp://") else text
    host, colon, port = rest.rpartition(":")
    if "://" in rest or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected tcp://HOST:PORT (a port from 1 to 65535), got {text!r}")
    return f"tcp://{host}:{int(port)}"


class DaskExecutor:
    """Every run sent to the Dask scheduler at ``address`` (``tcp://HOST:PORT``), whose workers
    run it (each worker thread one run; start workers with ``--nthreads`` = the runs a machine
    should take at once). A run on a worker that is lost is given by the scheduler to another
    worker, where it resumes from its checkpoint. Needs the ``cluster`` extra."""

    def __init__(self, address, timeout=10):
        from distributed import Client

        address = scheduler_address(address)
        try:
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise OSError(f"cannot reach the Dask scheduler at {address} within {timeout} s "
                          f"({type(e).__name__})") from None

    def submit(self, directory, run):
        return self.client.submit(run_one, os.path.abspath(directory), run, pure=False,
                                  key=f"refplastic-{run.name}-{uuid.uuid4().hex[:8]}")

    def wait(self, futures, timeout):
        deadline = time.monotonic() + timeout
        while True:
            done = {future for future in futures if future.done()}
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(0.05)

    def close(self):
        self.client.close()
