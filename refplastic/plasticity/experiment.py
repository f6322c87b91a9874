"""One run from its configuration to its results file: load the data, resume or start, train, write.

This is what ``refplastic run`` does, as a library call::

    from refplastic.plasticity import experiment
    from refplastic.plasticity.config import preset

    run = experiment.run_experiment(preset("laptop", intervention=("layernorm",)), checkpoint="ck.h5")
    experiment.write(run, "run.h5")
"""

import functools

from ..data import BUILTIN_SETS, load_images
from ..h5io import exists
from .checkpoint import load_run, save_run
from .results import probe_row, write_results
from .run import Run


def load_data(config):
    """The :class:`ImageDataset` ``config.data`` names (a built-in set at ``builtin_images`` frames)."""
    if config.data in BUILTIN_SETS:
        return _builtin(config.data, config.builtin_images)
    return load_images(config.data)


@functools.lru_cache(maxsize=2)
def _builtin(name, frames):
    """A built-in set, rendered once per process for each size (it is a fixed function of the size)."""
    return load_images(name, builtin_sizes=(frames, 10))


def run_experiment(config, checkpoint=None, on_step=None, on_probe=None, should_stop=None, images=None):
    """Run ``config`` to its end; the finished :class:`Run`.

    With ``checkpoint`` a path, resume from it if it exists (same configuration and data) and save
    to it every ``checkpoint_every`` steps, at every probe point and when stopped. The callbacks
    are :meth:`Run.run`'s; ``images`` skips loading the data set.
    """
    images = load_data(config) if images is None else images
    if checkpoint is not None and exists(checkpoint):
        run = load_run(checkpoint, config, images)
        if on_probe is not None:
            for i in range(run.probes_done):
                on_probe(probe_row(run.record, i))
        if on_step is not None and run.step:
            on_step(run.step)
            on_step(run.probes_done * config.probe_steps, probe=True)
    else:
        run = Run(config, images)
    run.run(on_step, on_probe, None if checkpoint is None else (lambda r: save_run(checkpoint, r)), should_stop)
    return run


def write(run, path):
    """The results file of ``run`` (docs/results-format.md)."""
    write_results(path, run.config, run.record, run.statistic_names, run.summary())
