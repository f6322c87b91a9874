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

from ..plasticity.results import empty_record, read_record, read_results_file, write_results_file

FORMAT = "refplastic-dqn"
VERSION = 1
GROUPS = ("train", "episodes", "evaluation", "probes", "statistics")


def new_record():
    return empty_record(GROUPS)


def read_dqn_record(group, where):
    """``(record, statistic_names)`` of a DQN record written by :func:`refplastic.plasticity.results.write_record`."""
    return read_record(group, where, GROUPS)


def final_evaluation(record):
    """The last evaluation's mean return (NaN if none was made)."""
    means = record["evaluation"].get("return_mean", [])
    return float(means[-1]) if len(means) else float("nan")


def write_results(path, config, record, statistic_names, summary):
    """The results file of a DQN run (root attributes from ``summary``), written atomically."""
    write_results_file(path, (FORMAT, VERSION), config, record, statistic_names, summary)


def read_results(path):
    """``(attrs, record, statistic_names)`` of a DQN results file."""
    return read_results_file(path, (FORMAT, VERSION), "a refplastic dqn run", GROUPS)
