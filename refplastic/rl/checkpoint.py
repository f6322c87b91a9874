"""Checkpoints of a DQN run: everything needed to go on as if never stopped.

Layout (version 1), written atomically::

    /              attrs: format = "refplastic-dqn-checkpoint", version = 1, config (JSON),
                          frame, updates, evaluations_done, probes_done, status,
                          diverged_at_frame, learning_resumes_at, seconds (JSON: the wall
                          times of training, evaluation and probes, and at the last log row),
                          rng (JSON: each stream's bit generator state), window (JSON: the sums
                          of the unfinished training-log row)
    /network/<name>     the online network's state dict (torch names)
    /target/<name>      the target network's
    /optimizer          the optimiser's state_dict: scalars as attrs, arrays as datasets
    /replay/<field>     the replay buffer (only with checkpoint_replay, the default)
    /environments/...   each environment's current episode: its reset seed and its actions so
                        far (refplastic.rl.atari rebuilds the emulators by replaying them)
    /observation        the stacked observations the next actions are chosen on, (N, 4, 84, 84)
    /record/...         the record so far (refplastic.rl.results)

A resumed run needs the same configuration. With the replay buffer stored, the numbers are
those of an uninterrupted run, bit for bit. Without it (``checkpoint_replay = false``, for
size: 100k transitions take about 0.7 GB) the buffer restarts empty and learning pauses for
``learning_starts`` frames while it refills: a faithful continuation, not an identical one.
"""

import json

import numpy as np

from ..checkpoint import load_optimizer_state, load_saved_run, restore_streams
from ..h5io import atomic_h5, read_datasets, read_dict, read_json_attr, write_dict
from ..plasticity.results import write_record
from .results import read_dqn_record
from .run import DQNRun, evaluation_frames, probe_frames

FORMAT = "refplastic-dqn-checkpoint"
VERSION = 1
COUNTERS = ("frame", "updates", "evaluations_done", "probes_done", "diverged_at", "learning_resumes_at")


def save_dqn(path, run):
    """Write ``run``'s whole state to ``path`` (temporary name, then rename)."""
    with atomic_h5(path) as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["config"] = json.dumps(run.config.to_json(), sort_keys=True)
        for name in COUNTERS:
            f.attrs[name] = getattr(run, name)
        f.attrs["status"] = run.status
        for key, value in (("seconds", {**run.seconds, "at_last_log_row": run.window.seconds}),
                           ("window", run.window.state_dict()),
                           ("rng", {name: rng.bit_generator.state for name, rng in run.rngs.items()})):
            f.attrs[key] = json.dumps(value)
        write_dict(f.create_group("network"), run.net.state_dict())
        write_dict(f.create_group("target"), run.target.state_dict())
        write_dict(f.create_group("optimizer"), run.optimizer.state_dict())
        if run.config.checkpoint_replay:
            write_dict(f.create_group("replay"), run.replay.state_dict())
        write_dict(f.create_group("environments"), run.envs.state_dict())
        f["observation"] = run.observation
        write_record(f.create_group("record"), run.record, run.statistic_names)


def load_dqn(path, config):
    """The :class:`DQNRun` of ``config`` in the state saved at ``path``.

    Refused with a one-line ValueError naming the file: another kind of file, another
    configuration (the message names what differs), or a field that does not fit. Only
    ``frames`` may differ, to extend a run (finished or not) or end it sooner: the run goes on to
    the new ``frames`` on the same schedules (epsilon, evaluations, target updates and probes all
    count frames from the start). An extended finished run is the uninterrupted run of the new
    length with, in its record, the evaluation and probe point of the old end where the new
    schedules have none.
    """
    return load_saved_run(path, config, (FORMAT, VERSION, "a refplastic dqn checkpoint"), lambda f: DQNRun(config),
                          _restore, ignore=("frames",))


def _restore(f, path, run):
    for name in COUNTERS:
        setattr(run, name, int(f.attrs[name]))
    run.status = str(f.attrs["status"])
    if run.status not in ("running", "complete", "diverged") or run.frame < 0:
        raise ValueError(f"{path}: status {run.status!r} at frame {run.frame} does not fit the configuration")
    if run.frame > run.config.frames:
        raise ValueError(f"{path}: the checkpoint is at frame {run.frame}, beyond frames = {run.config.frames}; "
                         f"give at least {run.frame}")
    if run.status == "complete" and run.frame < run.config.frames:  # extended: the points done are those
        run.status = "running"                                       # of the new schedules up to here
        run.evaluations_done = sum(frame <= run.frame for frame in evaluation_frames(run.config))
        run.probes_done = sum(frame <= run.frame for frame in probe_frames(run.config))
    run.seconds = read_json_attr(f, "seconds", path)
    run.window.seconds = float(run.seconds.pop("at_last_log_row"))
    run.window.load_state_dict(read_json_attr(f, "window", path))
    run.rngs = restore_streams(f, path, run.rngs)
    run.net.load_state_dict(read_datasets(f["network"], f"{path}: /network"))
    run.target.load_state_dict(read_datasets(f["target"], f"{path}: /target"))
    load_optimizer_state(run.optimizer, read_dict(f["optimizer"], f"{path}: /optimizer"), f["optimizer"], path)
    if "replay" in f:
        run.replay.load_state_dict(read_dict(f["replay"], f"{path}: /replay"))
    elif run.status == "running":  # refill before learning again (see the module docstring)
        run.learning_resumes_at = run.frame + run.config.learning_starts
    run.envs.load_state_dict(read_dict(f["environments"], f"{path}: /environments"), run.rngs["environment"])
    observation = np.asarray(f["observation"][()])
    if not np.array_equal(observation, run.envs.observations):
        raise ValueError(f"{path}: the environments replayed from /environments do not reach the saved "
                         f"/observation (another ale-py or ROM?)")
    run.observation = observation
    run.record, names = read_dqn_record(f["record"], path)
    run.statistic_names = tuple(names)

