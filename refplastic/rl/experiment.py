"""One DQN run from its configuration to its results file: resume or start, run, write.

This is what ``refplastic dqn`` does, as a library call::

    from refplastic.rl import experiment
    from refplastic.rl.config import preset

    run = experiment.run_dqn(preset("laptop", game="breakout", layernorm=True), checkpoint="ck.h5")
    experiment.write(run, "run.h5")
"""

from ..h5io import exists
from .checkpoint import load_dqn, save_dqn
from .results import write_results
from .run import DQNRun


def run_dqn(config, checkpoint=None, on_frames=None, on_row=None, should_stop=None):
    """Run ``config`` to its end; the finished :class:`DQNRun`.

    With ``checkpoint`` a path, resume from it if it exists (same configuration) and save to it
    every ``checkpoint_every`` frames, after each evaluation and probe point and when stopped.
    The callbacks are :meth:`DQNRun.run`'s; a resumed run first reports the frames already done
    (``on_frames(frames, last_row)``) and its past evaluations and probe points.
    """
    if checkpoint is not None and exists(checkpoint):
        run = load_dqn(checkpoint, config)
        for kind, group in (("evaluation", "evaluation"), ("probe", "probes")):
            columns = run.record[group]
            for i in range(len(next(iter(columns.values()), []))):
                if on_row is not None:
                    on_row(kind, {k: v[i] for k, v in columns.items()})
        if on_frames is not None and run.frame:
            on_frames(run.frame, run.last_row())
    else:
        run = DQNRun(config)
    run.run(on_frames, on_row, None if checkpoint is None else (lambda r: save_dqn(checkpoint, r)), should_stop)
    return run


def write(run, path):
    """The results file of ``run`` (docs/dqn.md)."""
    write_results(path, run.config, run.record, run.statistic_names, run.summary())
