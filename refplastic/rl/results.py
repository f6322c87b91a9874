"""What a DQN run records, in memory and in its HDF5 file (docs/dqn.md, "Results file").

The record is a dict of groups, each a dict of equally long columns (one entry per row), as the
plasticity run's (:mod:`refplastic.plasticity.results`, whose writer and reader it uses):

    train        frame, td_loss, q_mean, epsilon, frames_per_second, episodes, return_mean
                 every log_every frames (return_mean: of the training episodes that ended in the
                 row's window, NaN if none did)
    episodes     frame, return, length          every training episode, when it ends (whole
                 games: unclipped score, agent steps)
    evaluation   frame, return_mean, returns (E,), lengths (E,)       every eval_every frames
    probes       frame, final_loss (K,), target_variance (K,), offset, curve (K, L)   probe points
    statistics   values (S,) at each probe point, names (S,) in the group's attrs

Root attributes: format "refplastic-dqn", version, the config (JSON), status, frames,
diverged_at_frame, game, num_actions, architecture, num_parameters, seconds (train, evaluation,
probes), the last evaluation's mean return and its human-normalised score.
"""

import json

import numpy as np

from ..h5io import atomic_h5, check_format, open_h5
from ..plasticity.results import empty_record, read_record, write_record

FORMAT = "refplastic-dqn"
VERSION = 1
GROUPS = ("train", "episodes", "evaluation", "probes", "statistics")


def new_record():
    return empty_record(GROUPS)


def read_dqn_record(group, where):
    """``(record, statistic_names)`` of a DQN record written by :func:`write_record`."""
    return read_record(group, where, GROUPS)


def final_evaluation(record):
    """The last evaluation's mean return (NaN if none was made)."""
    means = record["evaluation"].get("return_mean", [])
    return float(means[-1]) if len(means) else float("nan")


def write_results(path, config, record, statistic_names, summary):
    """The results file of a DQN run (root attributes from ``summary``), written atomically."""
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["config"] = json.dumps(config.to_json(), sort_keys=True)
        for key, value in summary.items():
            f.attrs[key] = value
        write_record(f, record, statistic_names)


def read_results(path):
    """``(attrs, record, statistic_names)`` of a DQN results file."""
    with open_h5(path) as f:
        check_format(f, path, FORMAT, VERSION, "a refplastic dqn run")
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        record, names = read_dqn_record(f, path)
    return attrs, record, names
