"""Checkpoints of a plasticity run: everything needed to go on as if never stopped.

Layout (version 1), written atomically::

    /              attrs: format = "refplastic-run-checkpoint", version = 1, refplastic_version,
                          command, config (JSON), step, probes_done, status, diverged_at_step,
                          seconds (JSON), rng (JSON: each stream's bit generator state),
                          log_window (JSON: the sums of the unfinished training-log row)
    /network/<name>   the network's state dict (parameters and buffers, torch names)
    /target/<name>    the target network's (DQN tasks)
    /optimizer        the optimiser's state_dict: scalars as attrs, arrays as datasets
    /replay/<field>   the stored transitions, attrs next and capacity (DQN tasks)
    /environment      attrs state, observation (DQN tasks)
    /memorise_labels  the current random labels (memorise task)
    /continual_backprop/<name>   its utilities, ages and owed units (with that intervention)
    /record/...       the record so far (refplastic.plasticity.results)

A resumed run needs the same configuration and the same data set (its source and size are
checked); the training streams continue from their saved states, so the numbers are those of
an uninterrupted run, bit for bit.
"""

import json

import numpy as np

from ..checkpoint import load_optimizer_state, load_saved_run, restore_streams
from ..h5io import atomic_h5, read_datasets, read_dict, read_json_attr, write_dict
from .results import read_record, write_record
from .run import Run

FORMAT = "refplastic-run-checkpoint"
VERSION = 1


def save_run(path, run):
    """Write ``run``'s whole state to ``path`` (temporary name, then rename)."""
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["config"] = json.dumps(run.config.to_json(), sort_keys=True)
        f.attrs["data_source"] = run.source
        f.attrs["data_examples"] = len(run.images)
        f.attrs["step"], f.attrs["probes_done"] = run.step, run.probes_done
        f.attrs["status"], f.attrs["diverged_at_step"] = run.status, run.diverged_at
        for key, value in (("seconds", run.seconds), ("log_window", run.log_window.state_dict()),
                           ("rng", {name: rng.bit_generator.state for name, rng in run.rngs.items()})):
            f.attrs[key] = json.dumps(value)
        write_dict(f.create_group("network"), run.net.state_dict())
        write_dict(f.create_group("optimizer"), run.optimizer.state_dict())
        if run.config.task == "memorise":
            f["memorise_labels"] = run.memorise_labels
        else:
            write_dict(f.create_group("target"), run.target.state_dict())
            write_dict(f.create_group("replay"), run.replay.state_dict())
            write_dict(f.create_group("environment"), run.env.state_dict())
        if run.cbp is not None:
            write_dict(f.create_group("continual_backprop"), run.cbp.state_dict())
        write_record(f.create_group("record"), run.record, run.statistic_names)


def load_run(path, config, images):
    """The :class:`Run` of ``config`` on ``images`` in the state saved at ``path``.

    Refused with a one-line ValueError naming the file: another kind of file, another
    configuration (the message names what differs), another data set, or a field that does not fit.
    """
    def build(f):
        run = Run(config, images)
        if str(f.attrs.get("data_source")) != run.source or int(f.attrs.get("data_examples", -1)) != len(run.images):
            raise ValueError(f"{path}: checkpoint was written on another data set ({f.attrs.get('data_source')})")
        return run

    return load_saved_run(path, config, (FORMAT, VERSION, "a refplastic run checkpoint"), build, _restore)


def _restore(f, path, run):
    run.step, run.probes_done = int(f.attrs["step"]), int(f.attrs["probes_done"])
    run.status, run.diverged_at = str(f.attrs["status"]), int(f.attrs["diverged_at_step"])
    if run.status not in ("running", "complete", "diverged") or not 0 <= run.step <= run.config.train_steps:
        raise ValueError(f"{path}: status {run.status!r} at step {run.step} does not fit the configuration")
    run.seconds = read_json_attr(f, "seconds", path)
    run.log_window.load_state_dict(read_json_attr(f, "log_window", path))
    run.rngs = restore_streams(f, path, run.rngs)
    run.net.load_state_dict(read_datasets(f["network"], f"{path}: /network"))
    load_optimizer_state(run.optimizer, read_dict(f["optimizer"], f"{path}: /optimizer"), f["optimizer"], path)
    if run.config.task == "memorise":
        labels = np.asarray(f["memorise_labels"][()])
        if labels.shape != run.memorise_labels.shape:
            raise ValueError(f"{path}: /memorise_labels has shape {labels.shape}, expected {run.memorise_labels.shape}")
        run.memorise_labels = labels
    else:
        run.target.load_state_dict(read_datasets(f["target"], f"{path}: /target"))
        run.replay.load_state_dict(read_dict(f["replay"], f"{path}: /replay"))
        run.env.load_state_dict(read_dict(f["environment"], f"{path}: /environment"))
        run.env.rng = run.rngs["environment"]
    if run.cbp is not None:
        run.cbp.load_state_dict(read_datasets(f["continual_backprop"], f"{path}: /continual_backprop"))
    run.record, run.statistic_names = read_record(f["record"], path)
    run.statistic_names = tuple(run.statistic_names)

