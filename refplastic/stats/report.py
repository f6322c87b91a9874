"""Statistics on disk and on screen.

HDF5 layout (version 1), written atomically (temporary name, then rename)::

    /          attrs: format = "refplastic-statistics", version = 1, refplastic_version, command,
                      and the caller's attrs (``refplastic stats`` writes network, loss, seed,
                      num_examples)
    /names     (K,) UTF-8 strings: the statistic keys, in order
    /values    (K,) float64: their values

``dict(zip(names, values))`` is the dict :func:`refplastic.stats.compute_statistics` returned.
"""

import h5py
import numpy as np

from ..h5io import atomic_h5, check_format, open_h5

FORMAT = "refplastic-statistics"
VERSION = 1


def write_statistics_h5(path, statistics, attrs=None):
    """Write ``statistics`` ({key: float}) and ``attrs`` (scalars or strings) to ``path``."""
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        f.create_dataset("names", data=list(statistics), dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("values", data=np.array(list(statistics.values()), dtype=np.float64))


def read_statistics_h5(path):
    """``(statistics, attrs)`` from a file written by :func:`write_statistics_h5`."""
    with open_h5(path) as f:
        check_format(f, path, FORMAT, VERSION, "a refplastic statistics file")
        names = [n.decode() if isinstance(n, bytes) else n for n in f["names"][()]]
        statistics = dict(zip(names, (float(v) for v in f["values"][()])))
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    return statistics, attrs


def format_statistics(statistics):
    """One line per statistic, ``key  value``, keys padded to one column."""
    width = max((len(k) for k in statistics), default=0)
    return "\n".join(f"{key:<{width}}  {value:.6g}" for key, value in statistics.items())
