"""What a plasticity run records, in memory and in its HDF5 file (docs/results-format.md).

The record is a dict of groups, each a dict of equally long lists (one entry per log row or per
probe point), so that a checkpoint can hold it and a resumed run append to it:

    train        step, td_loss, reward, value_mean, units_replaced      every log_every optimiser steps
    probes       step, final_loss (K,), target_variance (K,), offset, curve (K, L)   every probe point
    statistics   values (S,) at every probe point, names (S,) in the group's attrs
    curvature    hessian_top (k,) ascending (NaN in front if Lanczos found fewer), hessian_top_residuals (k,),
                 slq_nodes, slq_weights,
                 gradient_cosine (n, n) k-means ordered, gradient_order (n,)       when asked for

(the memorise task logs its accuracy in ``train/accuracy`` and the TD columns hold its
cross-entropy.) :func:`plasticity_loss` is the paper's measure: the mean final probe loss at the
last probe point minus that at the first (Lyle et al. 2023, figure 6).
"""

import json

import h5py
import numpy as np

from ..h5io import atomic_h5, check_format, open_h5, read_json_attr

FORMAT = "refplastic-run"
VERSION = 1
GROUPS = ("train", "probes", "statistics", "curvature")


def empty_record(groups=GROUPS):
    return {group: {} for group in groups}


def append(record, group, **values):
    """Add one row to ``record[group]``: every column of the group gets a value (a new column may
    appear only while the group is empty)."""
    columns = record[group]
    if columns and set(columns) != set(values):
        raise ValueError(f"{group}: columns {sorted(values)}, expected {sorted(columns)}")
    for key, value in values.items():
        columns.setdefault(key, []).append(value)


def plasticity_loss(record):
    """Mean final probe loss at the last probe point minus the same at the first (NaN with fewer than two)."""
    final = record["probes"].get("final_loss", [])
    if len(final) < 2:
        return float("nan")
    return float(np.mean(final[-1]) - np.mean(final[0]))


def probe_row(record, i):
    """A summary of probe point ``i`` for a display: its step, the mean and standard deviation of
    its final probe losses, and the training log's last row at or before it."""
    probes, train = record["probes"], record["train"]
    step = int(probes["step"][i])
    logged = [j for j, s in enumerate(train.get("step", [])) if s <= step]
    last = {k: float(v[logged[-1]]) for k, v in train.items() if k != "step"} if logged else {}
    final = np.asarray(probes["final_loss"][i])
    return {"step": step, "probe_loss": float(final.mean()), "probe_loss_sd": float(final.std()), **last}


def write_record(group, record, statistic_names):
    """Write ``record`` under ``group`` (an h5py group): a subgroup per group of the record, a
    dataset per column, rows stacked on the first axis."""
    for name in record:
        sub = group.create_group(name)
        for key, values in record[name].items():
            sub.create_dataset(key, data=np.stack([np.asarray(v) for v in values]))
    group["statistics"].attrs["names"] = json.dumps(list(statistic_names))


def read_record(group, where, groups=GROUPS):
    """``(record, statistic_names)`` as :func:`write_record` wrote them (a record of ``groups``)."""
    record = empty_record(groups)
    for name in groups:
        if not isinstance(group.get(name), h5py.Group):
            raise ValueError(f"{where}: missing group /{name}")
        columns = {key: list(dataset[()]) for key, dataset in group[name].items()}
        if len({len(v) for v in columns.values()}) > 1:
            raise ValueError(f"{where}: /{name} holds columns of different lengths")
        record[name] = columns
    names = read_json_attr(group["statistics"], "names", f"{where}: /statistics")
    return record, names


def write_results(path, config, record, statistic_names, summary):
    """The results file of a run: root attributes (format, version, the config as JSON and
    ``summary``: status, steps, plasticity loss, timings) and the record; written atomically."""
    write_results_file(path, (FORMAT, VERSION), config, record, statistic_names,
                       {**summary, "plasticity_loss": plasticity_loss(record)})


def read_results(path):
    """``(attrs, record, statistic_names)`` of a results file."""
    return read_results_file(path, (FORMAT, VERSION), "a refplastic run", GROUPS)


def write_results_file(path, file_format, config, record, statistic_names, attrs):
    """A results file, written atomically: root attributes ``format`` and ``version`` (the pair
    ``file_format``), ``config`` (JSON) and ``attrs``, and the record (:func:`write_record`)."""
    with atomic_h5(path) as f:
        f.attrs["format"], f.attrs["version"] = file_format
        f.attrs["config"] = json.dumps(config.to_json(), sort_keys=True)
        for key, value in attrs.items():
            f.attrs[key] = value
        write_record(f, record, statistic_names)


def read_results_file(path, file_format, what, groups):
    """``(attrs, record, statistic_names)`` of a results file of ``file_format`` (format, version)
    holding a record of ``groups``; ``what`` names the kind of file in the errors."""
    with open_h5(path) as f:
        check_format(f, path, *file_format, what)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        record, names = read_record(f, path, groups)
    return attrs, record, names


def run_label(attrs):
    """A short name for a run: its interventions (or "none"), its task, architecture and seed."""
    config = json.loads(attrs["config"])
    interventions = "+".join(config["intervention"]) or "none"
    return f"{interventions} ({config['task']}, {config['arch']}, seed {config['seed']})"


def comparison(runs):
    """``(steps, columns, plasticity)`` for runs given as ``(attrs, record)`` pairs: every probe
    step of any run, each run's mean final probe loss at each (NaN where it has none), and each
    run's plasticity loss."""
    steps = sorted({int(s) for _, record in runs for s in record["probes"].get("step", [])})
    columns = []
    for _, record in runs:
        by_step = {int(s): float(np.mean(f)) for s, f in zip(record["probes"].get("step", []),
                                                              record["probes"].get("final_loss", []))}
        columns.append([by_step.get(step, float("nan")) for step in steps])
    return steps, columns, [plasticity_loss(record) for _, record in runs]
