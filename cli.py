"""The refplastic command line: a thin click layer over the library.

Every command turns bad input into one line ``Error: ...`` and a non-zero exit (2 for bad usage,
1 for bad data or files); set ``REFPLASTIC_DEBUG=1`` to see the traceback instead.
"""

import contextlib
import difflib
import math
import os
import sys

import click

import refplastic
from refplastic.sweep.grid import COMMAND_OPTIONS  # plain Python: --help stays free of numpy


# The library's own lists, repeated so that --help needs no numpy or Numba import (about a second);
# tests/test_cli.py keeps them equal to refplastic.data.GENERATORS, refplastic.training.ACTIVATIONS,
# refplastic.nn.optim.OPTIMIZERS and refplastic.curvature.report.QUANTITIES.
DATASETS = ("teacher-classification", "teacher-regression", "gaussian-clusters")
ACTIVATIONS = ("ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU", "Identity")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LOSSES = ("mse", "cross_entropy", "huber", "clipped_gradient_l2")
# The kinds of file the commands write: the root attribute 'format' of each (refplastic.outputs.file_kind).
CHECKPOINT, STATISTICS, REFERENCE, CURVATURE = ("refplastic-checkpoint", "refplastic-statistics",
                                                "refplastic-reference", "refplastic-curvature")
RUN, RUN_CHECKPOINT = "refplastic-run", "refplastic-run-checkpoint"
DQN, DQN_CHECKPOINT = "refplastic-dqn", "refplastic-dqn-checkpoint"
PROGRESS = "refplastic-progress"
CURVATURE_QUANTITIES = ("hessian_eigenvalues", "ggn_eigenvalues", "hessian_lanczos", "ggn_lanczos", "hessian_trace",
                        "ggn_trace", "hessian_density", "ggn_density", "gradients", "ntk")


class PositiveFloat(click.ParamType):
    """A finite number > 0 (click's FloatRange lets nan and inf through)."""

    name = "float"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"must be a finite number > 0, got {value!r}", param, ctx)
        return number


POSITIVE_FLOAT = PositiveFloat()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(refplastic.__version__, prog_name="refplastic")
def cli():
    """refplastic: an exact, auditable reference for studying loss of plasticity."""


def _check_paths(outputs, inputs=None, force=False):
    """Before any work, prove each output usable (:func:`refplastic.outputs.check_output`) and
    refuse two outputs on one path or an output on an input; every failure is a usage error
    (exit 2) naming the option. ``outputs``: ``{option: (path or None, kind)}``, where a kind
    wrapped as ``resumed(kind)`` marks a checkpoint the command resumes from (it must be of that
    kind if it exists, --force or not); ``inputs``: ``{option: path}``."""
    from refplastic.outputs import check_distinct, check_output

    try:
        check_distinct({option: path for option, (path, _) in outputs.items()}, inputs or {})
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    for option, (path, kind) in outputs.items():
        if path is None:
            continue
        try:
            if isinstance(kind, resumed):
                check_output(path, kind.kind, resumes=True)
            else:
                check_output(path, kind, force)
        except OSError as e:
            raise click.BadParameter(str(e), param_hint=f"'{option}'") from None


class resumed:  # noqa: N801 (reads as a marker in the tables of _check_paths)
    """An output kind that the command also resumes from: ``resumed(CHECKPOINT)``."""

    def __init__(self, kind):
        self.kind = kind


FORCE_OPTION = click.option("--force", is_flag=True,
                            help="Overwrite an existing output file of another kind (refused without it).")


def _int_list(ctx, param, value):
    """Comma-separated widths; an empty value is no hidden layer at all."""
    try:
        widths = tuple(int(v) for v in value.split(",")) if value.strip() else ()
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 64,64, got {value!r}") from None
    if any(w < 1 for w in widths):
        raise click.BadParameter(f"widths must be positive, got {value!r}")
    return widths


@cli.command(short_help="Train an MLP on built-in data and print its learning curve.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of every random draw.")
@click.option("--dataset", type=click.Choice(DATASETS),
              default="teacher-classification", show_default=True, help="Built-in generated data set.")
@click.option("--hidden", default="64,64", show_default=True, callback=_int_list,
              help="Hidden widths, comma-separated (\"\" for none).")
@click.option("--activation", type=click.Choice(ACTIVATIONS),
              default="ReLU", show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam",
              show_default=True)
@click.option("--lr", type=POSITIVE_FLOAT, default=1e-3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Save here every --checkpoint-every steps and when stopped; resume from it if it exists.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the trained network and learning curve here (HDF5, checkpoint layout).")
@FORCE_OPTION
def train(seed, dataset, hidden, activation, optimizer, lr, batch_size, steps, eval_every, dtype,
          checkpoint, checkpoint_every, out, force):
    """Train an MLP on built-in data and print its learning curve."""
    from refplastic.checkpoint import save_checkpoint
    from refplastic.stopping import polling, stop_requested
    from refplastic.training import ConfigError, TrainConfig, train as run_training

    try:
        config = TrainConfig(seed=seed, dataset=dataset, hidden=hidden, activation=activation, optimizer=optimizer,
                             lr=lr, batch_size=batch_size, steps=steps, eval_every=eval_every, dtype=dtype)
    except ConfigError as e:  # every field the options set is the option's name with "_" for "-"
        raise click.BadParameter(e.problem, param_hint=f"'--{e.field.replace('_', '-')}'") from None
    _check_paths({"--out": (out, CHECKPOINT), "--checkpoint": (checkpoint, resumed(CHECKPOINT))}, force=force)
    with click.progressbar(length=steps, label="training", file=sys.stderr) as bar, polling():
        table = _LearningCurve(bar)
        net, optimizer, run = run_training(config, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                           progress=bar.update, on_evaluation=table.row, should_stop=stop_requested)
    if out is not None:
        save_checkpoint(out, net, optimizer, run)
        click.echo(f"wrote {out}")


class _LearningCurve:
    """Prints the learning curve a row at a time, as each evaluation is computed, above the progress bar."""

    def __init__(self, bar):
        self.bar, self.keys = bar, None

    def row(self, values):
        lines = []
        if self.keys is None:
            self.keys = [k for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy") if k in values]
            lines.append(f"{'step':>7} " + " ".join(f"{k:>14}" for k in self.keys))
        lines.append(f"{values['step']:>7} " + " ".join(f"{values[k]:>14.6g}" for k in self.keys))
        _echo_above(self.bar, "\n".join(lines))


def _echo_above(bar, text):
    """Print ``text`` to stdout; on a terminal, first clear the progress bar's line (the bar is
    drawn again below the text at its next change)."""
    if not bar.hidden and getattr(bar.file, "isatty", lambda: False)():
        bar.file.write("\r\033[K")
        bar.file.flush()
    click.echo(text)


def _quantity_list(ctx, param, value):
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise click.BadParameter("give at least one quantity (refplastic curvature --list shows them)")
    for name in names:
        if name not in CURVATURE_QUANTITIES:
            nearest = ", ".join(difflib.get_close_matches(name, CURVATURE_QUANTITIES, n=3))
            raise click.BadParameter(f"unknown quantity {name}" + (f"; nearest: {nearest}" if nearest else "")
                                     + "; refplastic curvature --list shows every quantity")
    return names


def _list_option(describe, help):
    """``--list``: print ``describe()`` and exit, before NETWORK and the other options are looked at."""
    def callback(ctx, param, value):
        if value and not ctx.resilient_parsing:
            click.echo(describe())
            ctx.exit()
    return click.option("--list", is_flag=True, is_eager=True, expose_value=False, callback=callback, help=help)


def _describe_quantities():
    from refplastic.curvature.report import describe_quantities

    return describe_quantities()


def _describe_statistics():
    from refplastic.stats import describe_statistics

    return describe_statistics()


class _Progress:
    """A click progress bar per label, for ``progress(label, done, total)`` callbacks."""

    def __init__(self):
        self.bar, self.label, self.done = None, None, 0

    def __call__(self, label, done, total):
        if label != self.label:
            self.close()
            self.bar, self.label, self.done = click.progressbar(length=total, label=label, file=sys.stderr), label, 0
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _network_and_batch(network, data, loss, examples):
    """``(net, x, t, loss_name)`` for the commands that analyse a saved network on a batch.

    The batch is ``data`` (a .npz or HDF5 file with ``inputs`` and ``targets``) or else the
    built-in training data of the run the checkpoint holds; the loss defaults to the run's.
    Only the first ``examples`` examples are kept; they must fit the network and the loss.
    """
    from refplastic.checkpoint import load_checkpoint
    from refplastic.data.arrays import check_batch, load_batch
    from refplastic.nn import make_loss
    from refplastic.training import TrainConfig, make_data

    saved = load_checkpoint(network)
    net, run = saved["network"], saved["run"]
    built = None
    if run is not None:
        try:
            built = make_data(TrainConfig.from_json(run["config"]))
        except ValueError as e:
            raise ValueError(f"{network}: /run: attribute 'config': {e}") from None
        loss = loss or ("cross_entropy" if built.num_classes else "mse")
    if data is not None:
        x, t = load_batch(data)
    elif built is not None:
        x, t = built.x_train, built.y_train
    else:
        raise click.UsageError("the checkpoint holds no training run: give --data FILE")
    if loss is None:
        raise click.UsageError("give --loss (mse, cross_entropy, huber or clipped_gradient_l2): the checkpoint holds no training run")
    x, t = x[:examples], t[:examples]
    check_batch(net, make_loss(loss), x, t, data or f"{network}: the run's training data")
    return net, x, t, loss


DATA_OPTION = click.option(
    "--data", type=click.Path(dir_okay=False), default=None,
    help="A .npz or HDF5 file with arrays 'inputs' and 'targets'. Default: the built-in training data the "
         "checkpoint was trained on.")
LOSS_OPTION = click.option("--loss", type=click.Choice(LOSSES), default=None,
                           help="Default: the loss the checkpoint was trained with.")
EXAMPLES_OPTION = click.option("--examples", type=click.IntRange(min=1), default=256, show_default=True,
                               help="Use the first this many examples.")


@cli.command(short_help="Exact curvature of a saved network's loss on a batch.")
@click.argument("network", type=click.Path(dir_okay=False))
@_list_option(_describe_quantities, "Print every quantity with its formula, one a line, and exit (no NETWORK needed).")
@DATA_OPTION
@LOSS_OPTION
@EXAMPLES_OPTION
@click.option("--quantities", default="hessian_lanczos,ggn_lanczos,hessian_trace", show_default=True,
              callback=_quantity_list,
              help=f"Comma-separated, from: {', '.join(CURVATURE_QUANTITIES)} (formulas: --list).")
@click.option("--top-k", type=click.IntRange(min=1), default=20, show_default=True,
              help="Lanczos: how many largest and smallest eigenvalues.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the random probes.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the report here (HDF5: groups hessian, ggn, gradients and ntk, as computed).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Plot the spectra here (needs the 'plot' extra, matplotlib).")
@FORCE_OPTION
def curvature(network, data, loss, examples, quantities, top_k, seed, out, plot, force):
    """Exact curvature of a saved network's loss on a batch: spectra, traces, gradients, NTK."""
    from refplastic.curvature.report import (check_plot, check_top_k, curvature_report, plot_spectrum, summary,
                                             write_report_h5)
    from refplastic.nn import make_loss

    _check_paths({"--out": (out, CURVATURE), "--plot": (plot, "image")}, {"NETWORK": network, "--data": data}, force)
    if plot is not None:
        _checked(check_plot, plot, quantities, option="--plot")
    net, x, t, loss = _network_and_batch(network, data, loss, examples)
    _checked(check_top_k, top_k, net.num_parameters, option="--top-k")
    progress = _Progress()
    try:
        with _examples_hint():
            report = curvature_report(net, make_loss(loss), x, t, quantities, seed, progress, top_k=top_k)
    finally:
        progress.close()
    attrs = report["attrs"]
    click.echo(f"{attrs['num_parameters']} parameters, {attrs['num_examples']} examples")
    for key, value in summary(report):
        click.echo(f"{key:<40} {value}")
    if out is not None:
        write_report_h5(out, report)
        click.echo(f"wrote {out}")
    if plot is not None:
        plot_spectrum(report, plot)
        click.echo(f"wrote {plot}")


@contextlib.contextmanager
def _examples_hint():
    """A quantity refused for want of memory names --examples as what to lower (exit 1)."""
    from refplastic.memory import NotEnoughMemory

    try:
        yield
    except NotEnoughMemory as e:
        raise click.ClickException(e.describe("--examples")) from None


def _checked(check, *args, option):
    """Run a library ``check(*args)``; its ValueError becomes a bad value of ``option`` (exit 2)."""
    try:
        check(*args)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint=f"'{option}'") from None


def _stat_names(ctx, param, value):
    from refplastic.stats import DEFAULT_STATISTICS, parse_name

    if value is None:
        return DEFAULT_STATISTICS  # the same object: stats() tells the default set from a request by identity
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise click.BadParameter("give at least one statistic name (refplastic stats --list shows them)")
    for name in names:
        try:
            parse_name(name)
        except ValueError as e:
            raise click.BadParameter(f"{e}; refplastic stats --list shows every name and interval") from None
    return names


@cli.command(short_help="Plasticity statistics of a saved network on a batch.")
@click.argument("network", type=click.Path(dir_okay=False))
@_list_option(_describe_statistics, "Print every statistic with its defaults, formula and parameter intervals, one a "
                                    "line, and exit (no NETWORK needed).")
@DATA_OPTION
@LOSS_OPTION
@EXAMPLES_OPTION
@click.option("--names", default=None, callback=_stat_names,
              help="Comma-separated statistic names, such as dormant_fraction/tau=0.1/layer=1 (all of them: --list). "
                   "Default: the default set.")
@click.option("--init", "init_network", type=click.Path(dir_okay=False), default=None,
              help="The network at initialisation (a checkpoint), for the statistics relative to it.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the Lanczos start vector (hessian_ and ggn_largest_eigenvalue).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the statistics here (HDF5: datasets names and values).")
@FORCE_OPTION
def stats(network, data, loss, examples, names, init_network, seed, out, force):
    """Saturation, representation and gradient statistics of a saved network on a batch."""
    from refplastic.checkpoint import load_network
    from refplastic.stats import (DEFAULT_STATISTICS, compute_statistics, format_statistics, needing_init, unavailable,
                                  write_statistics_h5)

    _check_paths({"--out": (out, STATISTICS)}, {"NETWORK": network, "--data": data, "--init": init_network}, force)
    missing_init = needing_init(names) if init_network is None else []
    if missing_init:
        raise click.UsageError(f"{', '.join(missing_init)} need(s) --init FILE, the network at initialisation")
    net, x, t, loss = _network_and_batch(network, data, loss, examples)
    skipped = unavailable(net, names, len(x))
    reasons = ", ".join(f"{name} ({why})" for name, why in skipped.items())
    if all(name in skipped for name in names):
        raise click.ClickException(f"nothing to compute: {reasons}")
    if skipped and names is not DEFAULT_STATISTICS:  # the default set does not apply to every network, by design
        click.echo(f"no value for {reasons}", err=True)
    init_net = load_network(init_network, like=net) if init_network is not None else None
    with _examples_hint():
        values = compute_statistics(net, x, t, loss, names, init_net=init_net, seed=seed)
    click.echo(format_statistics(values))
    if out is not None:
        write_statistics_h5(out, values, {"network": os.path.abspath(network), "loss": loss, "seed": seed,
                                          "num_examples": len(x)})
        click.echo(f"wrote {out}")


@cli.command(short_help="Write the built-in suite of exact reference numbers.")
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Where to write the built-in reference suite (HDF5; layout: python -m pydoc "
                   "refplastic.reference.format).")
@FORCE_OPTION
def reference(out, force):
    """Write the built-in suite of exact reference numbers."""
    from refplastic.reference import write_suite

    _check_paths({"--out": (out, REFERENCE)}, force=force)
    progress = _Progress()
    try:
        write_suite(out, progress)
    finally:
        progress.close()
    click.echo(f"wrote {out}")


@cli.command(short_help="Complete a reference input file with every quantity.")
@click.argument("inp", metavar="IN", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Where to write IN completed with every reference quantity.")
@FORCE_OPTION
def compute(inp, out, force):
    """Complete IN (architecture, loss, dtype, mode, params, inputs, targets) with every quantity."""
    from refplastic.reference import compute_file

    _check_paths({"--out": (out, REFERENCE)}, {"IN": inp}, force)
    progress = _Progress()
    try:
        compute_file(inp, out, progress)
    finally:
        progress.close()
    click.echo(f"wrote {out}")


@cli.command(short_help="Compare a file with the reference numbers.")
@click.argument("theirs", type=click.Path(dir_okay=False))
@click.option("--reference", "reference_path", type=click.Path(dir_okay=False), default=None,
              help="The reference file. Default: the built-in suite, computed now.")
@click.option("--rtol", type=POSITIVE_FLOAT, default=None,
              help="Relative tolerance. Default: 1e-8 for float64 cases, 1e-4 for float32.")
def verify(theirs, reference_path, rtol):
    """Compare THEIRS with the reference: a table case x quantity; non-zero exit on a mismatch."""
    from refplastic.outputs import same_file
    from refplastic.reference import format_table, verify_files

    if reference_path is not None and same_file(theirs, reference_path):
        raise click.BadParameter(f"{reference_path} is THEIRS itself: comparing a file with itself checks nothing",
                                 param_hint="'--reference'")
    rows, ok = verify_files(theirs, reference_path, rtol)
    click.echo(format_table(rows))
    sys.exit(0 if ok else 1)

# Repeated from refplastic.plasticity.config for --help without numpy (tests/test_cli.py keeps them equal).
RUN_PRESETS = ("paper", "laptop", "demo", "smoke")
RUN_TASKS = ("easy", "hard", "sparse", "memorise")
RUN_ARCHITECTURES = ("mlp", "cnn")


def _data_spec(ctx, param, value):
    """A data set spec checked before any work: builtin, builtin-gray, mnist:DIR or cifar10:DIR."""
    from refplastic.data import parse_data_spec

    if value is not None:
        try:
            parse_data_spec(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None
    return value


def _config(module, preset_name, options, assignments):
    """The config of ``module`` (``refplastic.plasticity.config`` or ``refplastic.rl.config``): the
    preset, then the options given, then each --set; a bad value is a usage error naming the option
    (or --set and the field)."""
    import importlib

    from refplastic.config_fields import ConfigError

    configs = importlib.import_module(module)
    given = {field: value for field, value in options.items() if value is not None}
    try:
        config = configs.preset(preset_name, **given)
    except ConfigError as e:
        raise click.BadParameter(e.problem, param_hint=f"'--{e.field}'" if e.field in options else f"'--set {e.field}'") \
            from None
    try:
        return configs.with_overrides(config, assignments)
    except ConfigError as e:  # "lr must be ...", or a problem of the assignment itself
        raise click.BadParameter(e.problem if e.field == "set" else str(e), param_hint="'--set'") from None


PROGRESS_OPTION = click.option("--progress", "progress_file", type=click.Path(dir_okay=False), default=None, hidden=True,
                               help="Keep 'refplastic-progress DONE TOTAL UNIT' in this file as the job goes (for refplastic sweep).")


class _ProgressFile:
    """``--progress FILE``: the job's progress as ``refplastic-progress DONE TOTAL UNIT``, rewritten whole (temporary
    name and rename) at most once a second and at the end, for ``refplastic sweep`` to read."""

    def __init__(self, path, total, unit):
        import time

        self.path, self.total, self.unit, self.clock, self.written = path, total, unit, time.monotonic, None

    def __call__(self, done):
        if self.path is None or (self.written is not None and self.clock() - self.written < 1.0 and done < self.total):
            return
        from refplastic.outputs import atomic_path

        with atomic_path(self.path) as tmp, open(tmp, "w") as f:
            f.write(f"{PROGRESS} {done} {self.total} {self.unit}\n")
        self.written = self.clock()


def RUN_OPTIONS(command):  # noqa: N802 (reads as the other option constants)
    """The options ``run`` and ``dqn`` share, after their own: --set, --show-config, --checkpoint,
    --out, --force and --progress."""
    for option in reversed([
            click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUE",
                         help="Set any config field (repeatable); --show-config lists them."),
            click.option("--show-config", is_flag=True, help="Print the resolved config and exit."),
            click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                         help="Save here as the run goes and when stopped; resume from it if it exists."),
            click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the results here (HDF5)."),
            FORCE_OPTION, PROGRESS_OPTION]):
        command = option(command)
    return command


@cli.command(short_help="One plasticity run: a DQN on a classification MDP, probed.")
@click.option("--preset", "preset_name", type=click.Choice(RUN_PRESETS), default="laptop", show_default=True,
              help="Sizes and settings: the paper's, a laptop's (minutes), or a smoke test's (seconds).")
@click.option("--task", type=click.Choice(RUN_TASKS), default=None,
              help="easy (true-label), hard (random-label), sparse, or memorise. Default: the preset's (hard).")
@click.option("--data", default=None, callback=_data_spec,
              help="builtin, builtin-gray, mnist:DIR or cifar10:DIR. Default: builtin (Atari frames, nothing "
                   "downloaded).")
@click.option("--arch", type=click.Choice(RUN_ARCHITECTURES), default=None, help="Default: the preset's (mlp).")
@click.option("--intervention", default=None,
              help="Comma-separated, from: none, layernorm, reset_last_layer, shrink_and_perturb, twohot, "
                   "spectral_norm, weight_decay, reset_optimizer, redo, continual_backprop, brownian.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of every random draw. Default: 0.")
@RUN_OPTIONS
def run(preset_name, task, data, arch, intervention, seed, assignments, show_config, checkpoint, out, force,
        progress_file):
    """One plasticity run of Lyle et al. (2023): a DQN agent on a classification MDP (or the
    memorisation task), its plasticity probed on a schedule with the statistics of refplastic
    stats; prints the probe loss at each probe point and the plasticity loss at the end."""
    from refplastic.plasticity import experiment
    from refplastic.plasticity.config import probe_points
    from refplastic.plasticity.results import plasticity_loss
    from refplastic.stopping import polling, stop_requested

    interventions = None if intervention is None else tuple(v.strip() for v in intervention.split(","))
    config = _config("refplastic.plasticity.config", preset_name,
                     {"task": task, "data": data, "arch": arch, "intervention": interventions, "seed": seed}, assignments)
    if show_config:
        click.echo(config.describe())
        return
    _check_paths({"--out": (out, RUN), "--checkpoint": (checkpoint, resumed(RUN_CHECKPOINT)),
                  "--progress": (progress_file, PROGRESS)}, force=force)
    total = config.train_steps + len(probe_points(config)) * config.probe_steps
    with click.progressbar(length=total, label="run", file=sys.stderr, show_pos=True,
                           item_show_func=lambda rate: rate) as bar, polling():
        rate = _Rate()
        table = _ProbeTable(bar)
        progress = _ProgressFile(progress_file, total, "steps")

        def on_step(n, probe=False):
            bar.update(n, rate(bar.pos + n))
            progress(bar.pos)

        finished = experiment.run_experiment(config, checkpoint, on_step=on_step, on_probe=table.row,
                                             should_stop=stop_requested)
    if finished.status == "diverged":
        click.echo(f"diverged at step {finished.diverged_at}: the loss or the parameters stopped being finite "
                   f"(recorded{' in ' + out if out else ''})")
    else:
        click.echo(f"plasticity loss {plasticity_loss(finished.record):.4g} (the mean final probe loss at step "
                   f"{finished.step} minus that at step 0)")
    if out is not None:
        experiment.write(finished, out)
        click.echo(f"wrote {out}")


class _Rate:
    """Steps (or another ``unit``) per second since the first call, as text for the progress bar."""

    def __init__(self, unit="steps/s"):
        import time

        self.clock, self.start, self.first, self.unit = time.perf_counter, time.perf_counter(), None, unit

    def __call__(self, position):
        if self.first is None:
            self.first, self.start = position, self.clock()
            return ""
        elapsed = self.clock() - self.start
        return f"{(position - self.first) / elapsed:.0f} {self.unit}" if elapsed > 0 else ""


class _ProbeTable:
    """The probe points as rows, printed as they come, above the progress bar."""

    def __init__(self, bar):
        self.bar, self.header = bar, False

    def row(self, values):
        lines = []
        if not self.header:
            lines.append(f"{'step':>8} {'probe_loss':>12} {'+-':>9} {'td_loss':>12} {'reward':>8}")
            self.header = True
        lines.append(f"{values['step']:>8} {values['probe_loss']:>12.5g} {values['probe_loss_sd']:>9.2g} "
                     f"{values.get('td_loss', float('nan')):>12.5g} {values.get('reward', float('nan')):>8.3f}")
        _echo_above(self.bar, "\n".join(lines))



@cli.command(short_help="Probe loss over training of several runs, side by side.")
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="RUN.h5...")
def compare(runs):
    """Print the mean final probe loss at each probe point of each RUN (results of refplastic run),
    side by side, each run's plasticity loss (the last probe point minus the first) and its wall
    time in seconds (training and probing, resumed parts included)."""
    from refplastic.plasticity.results import comparison, read_results, run_label

    loaded = [read_results(path)[:2] for path in runs]
    steps, columns, plasticity = comparison(loaded)
    names = [os.path.splitext(os.path.basename(path))[0] for path in runs]
    widths = [max(12, len(name)) for name in names]
    for name, (attrs, _) in zip(names, loaded):
        click.echo(f"{name}: {run_label(attrs)}")
    click.echo("mean final probe loss at each probe point (lower: more plastic)")
    click.echo(f"{'step':>10}  " + "  ".join(f"{name:>{w}}" for name, w in zip(names, widths)))
    for i, step in enumerate(steps):
        click.echo(f"{step:>10}  " + "  ".join(f"{column[i]:>{w}.5g}" for column, w in zip(columns, widths)))
    click.echo(f"{'plasticity':>10}  " + "  ".join(f"{value:>{w}.4g}" for value, w in zip(plasticity, widths)))
    seconds = [attrs["train_seconds"] + attrs["probe_seconds"] for attrs, _ in loaded]
    click.echo(f"{'seconds':>10}  " + "  ".join(f"{value:>{w}.0f}" for value, w in zip(seconds, widths)))
    for (attrs, _), path in zip(loaded, runs):
        if attrs.get("status") == "diverged":
            click.echo(f"{path}: diverged at step {attrs['diverged_at_step']}")


# Repeated from refplastic.rl.config for --help without numpy (tests/test_cli.py keeps them equal).
DQN_PRESETS = ("paper", "cleanrl", "laptop", "smoke")


@cli.command(short_help="One Double DQN run on an Atari game, with or without LayerNorm, probed.")
@click.option("--game", default=None, help="An Atari-57 game, e.g. pong, breakout, space_invaders. Default: pong.")
@click.option("--preset", "preset_name", type=click.Choice(DQN_PRESETS), default="laptop", show_default=True,
              help="DQN Zoo's Double DQN as the paper ran it, CleanRL's DQN, a laptop's, or a smoke test's.")
@click.option("--layernorm/--no-layernorm", default=None, help="A LayerNorm after every hidden layer (the paper's A.3).")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of every random draw. Default: 0.")
@click.option("--frames", type=int, default=None, help="Environment frames to train for (4 per agent step).")
@RUN_OPTIONS
def dqn(game, preset_name, layernorm, seed, frames, assignments, show_config, checkpoint, out, force, progress_file):
    """One Double DQN run on an Atari game (Lyle et al. 2023, A.3): prints each evaluation's mean
    return and each probe point's probe loss as they come, and the final score at the end."""
    from refplastic.rl import experiment
    from refplastic.stopping import polling, stop_requested

    config = _config("refplastic.rl.config", preset_name,
                     {"game": game, "layernorm": layernorm, "seed": seed, "frames": frames}, assignments)
    if show_config:
        click.echo(config.describe())
        return
    _check_paths({"--out": (out, DQN), "--checkpoint": (checkpoint, resumed(DQN_CHECKPOINT)),
                  "--progress": (progress_file, PROGRESS)}, force=force)
    _check_replay(config)
    with click.progressbar(length=config.frames, label=f"dqn {config.game}", file=sys.stderr,
                           item_show_func=lambda text: text) as bar, polling():
        rate = _Rate(unit="frames/s")
        rows = _DQNRows(bar)
        progress = _ProgressFile(progress_file, config.frames, "frames")

        def on_frames(n, row):
            bar.update(n, f"{rate(bar.pos + n)}, return {row.get('return_mean', float('nan')):.1f}"
                          f", eps {row.get('epsilon', float('nan')):.2f}" if row else rate(bar.pos + n))
            progress(bar.pos)

        finished = experiment.run_dqn(config, checkpoint, on_frames=on_frames, on_row=rows.row,
                                      should_stop=stop_requested)
    if finished.status == "diverged":
        click.echo(f"diverged at frame {finished.diverged_at}: the loss or the parameters stopped being finite "
                   f"(recorded{' in ' + out if out else ''})")
    summary = finished.summary()
    click.echo(f"final evaluation return {summary['final_evaluation_return']:.2f} "
               f"(human-normalised {summary['final_human_normalised']:.3f}) after {finished.frame} frames")
    if out is not None:
        experiment.write(finished, out)
        click.echo(f"wrote {out}")


def _check_replay(config):
    """A replay buffer of the DQN ``config`` that would not fit in memory: a usage error naming
    ``--set replay_capacity``, before any work."""
    from refplastic.rl.frame_replay import check_replay_memory

    try:
        check_replay_memory(config.replay_capacity, config.num_envs)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--set replay_capacity'") from None


class _DQNRows:
    """Evaluations and probe points as lines above the progress bar."""

    def __init__(self, bar):
        self.bar = bar

    def row(self, kind, values):
        if kind == "evaluation":
            returns = values["returns"]
            text = (f"frame {int(values['frame']):>11}  evaluation return {values['return_mean']:8.2f} "
                    f"(min {min(returns):.0f}, max {max(returns):.0f}, {len(returns)} episodes)")
        else:
            final = values["final_loss"]
            text = f"frame {int(values['frame']):>11}  probe loss {float(final.mean()):.5g} +- {float(final.std()):.2g}"
        _echo_above(self.bar, text)


@cli.command(short_help="A grid of runs (run or dqn) on this machine or a Dask cluster; resumable.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False), default=None,
              help="The grid as a TOML file (docs/sweep.md), instead of the options below.")
@click.option("--command", "command_name", type=click.Choice(tuple(COMMAND_OPTIONS)), default=None,
              help="What each run is: refplastic run (default) or refplastic dqn.")
@click.option("--preset", "preset_name", default=None, help="The preset of every run. Default: laptop.")
@click.option("--task", default=None, help="Comma list (run), e.g. easy,hard.")
@click.option("--data", default=None, help="Comma list (run), e.g. builtin,builtin-gray.")
@click.option("--arch", default=None, help="Comma list (run): mlp,cnn.")
@click.option("--intervention", default=None,
              help="Comma list (run), one run's interventions joined by '+', e.g. none,layernorm,layernorm+twohot.")
@click.option("--game", default=None, help="Comma list (dqn), e.g. pong,breakout.")
@click.option("--layernorm", default=None, help="Comma list (dqn): false,true.")
@click.option("--frames", default=None, help="Comma list (dqn).")
@click.option("--seed", default=None, help="Comma list, e.g. 0,1,2.")
@click.option("--set", "assignments", multiple=True, metavar="FIELD=VALUES",
              help="A config field and its comma list of values (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="The grid's directory: its manifest, each run's results, checkpoint and log.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Runs at a time on this machine, one BLAS thread each. Default: its cores.")
@click.option("--scheduler", default=None,
              help="Send every run to the Dask scheduler at tcp://HOST:PORT (the 'cluster' extra); DIR must be "
                   "shared by its workers.")
@click.option("--list", "list_runs", is_flag=True, help="Print each run's name and command and exit.")
def sweep(grid_file, command_name, preset_name, task, data, arch, intervention, game, layernorm, frames, seed,
          assignments, out_dir, jobs, scheduler, list_runs):
    """Run every combination of the values given (comma lists of the options of refplastic run,
    or of refplastic dqn with --command dqn; or a TOML --grid file), each run writing its own
    results file in --out. The same command again skips finished runs and resumes unfinished ones
    from their checkpoints; a directory holds one grid. Prints a line as each run ends and lists
    the failures at the end (exit 1 if any). Then: refplastic analyse DIR --out REPORT_DIR."""
    import shlex

    from refplastic.sweep import directory as layout
    from refplastic.sweep.grid import GridError, GridFileError, absolute_data_paths, grid_from_options, grid_from_toml, grid_runs
    from refplastic.sweep.runner import GridStopped, run_grid
    from refplastic.stopping import polling, stop_requested

    options = {"task": task, "data": data, "arch": arch, "intervention": intervention, "game": game,
               "layernorm": layernorm, "frames": frames, "seed": seed}
    try:
        if grid_file is not None:
            given = [f"--{name}" for name, value in options.items() if value is not None]
            given += [f"--{name}" for name, value in (("command", command_name), ("preset", preset_name),
                                                        ("set", assignments)) if value]
            if given:
                raise click.UsageError(f"give the grid either as --grid FILE or as options, not both ({given[0]})")
            grid = grid_from_toml(grid_file)
        else:
            command_name = command_name or "run"
            others = [name for name, value in options.items() if value is not None and name not in COMMAND_OPTIONS[command_name]]
            if others:
                raise click.UsageError(f"--{others[0]} is not an option of refplastic {command_name}"
                                       + ("; add --command dqn" if command_name == "run" else ""))
            grid = grid_from_options(command_name, preset_name or "laptop",
                                     {name: options[name] for name in COMMAND_OPTIONS[command_name]}, assignments)
        runs = grid_runs(absolute_data_paths(grid))
    except GridError as e:
        if grid_file is not None:  # the file's content is data: exit 1, naming the file
            problem = e.problem if isinstance(e, GridFileError) else f"{grid_file}: {e}"
            raise click.ClickException(f"--grid: {problem}") from None
        raise click.BadParameter(e.problem, param_hint=f"'--{e.field}'") from None
    for run in runs:
        _check_grid_run(run, grid_file)
    if list_runs:
        for run in runs:
            click.echo(f"{run.name}: refplastic {shlex.join(run.arguments())}")
        return
    if out_dir is None:
        raise click.UsageError("Missing option '--out' (the grid's directory)")
    if scheduler is not None and jobs is not None:
        raise click.UsageError("--jobs is for runs on this machine; with --scheduler each worker's threads decide")
    if scheduler is not None:
        from refplastic.sweep.executors import scheduler_address

        try:
            scheduler_address(scheduler)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="'--scheduler'") from None
    _claim_directory(out_dir, grid, runs)
    executor = _executor(jobs, scheduler)
    done_before = sum(os.path.exists(layout.results_path(out_dir, run.name)) for run in runs)
    where = f"the Dask scheduler at {scheduler}" if scheduler else f"{executor.jobs} process{'es' if executor.jobs > 1 else ''} on this machine"
    click.echo(f"grid of {len(runs)} runs in {out_dir} ({done_before} finished before), on {where}")
    with click.progressbar(length=len(runs), label="sweep", file=sys.stderr, show_pos=True,
                           item_show_func=lambda text: text) as bar, polling():
        bar.update(done_before)

        def on_outcome(outcome):
            text = f"{outcome.name}: {outcome.status} ({outcome.seconds:.0f} s)"
            _echo_above(bar, f"{text}: {outcome.message}" if outcome.message else text)
            if outcome.status in ("finished", "done", "failed"):
                bar.update(1, bar.current_item)

        def on_progress(running):
            if running:
                name, (done, total, unit) = min(running.items(), key=lambda item: item[1][0] / max(item[1][1], 1))
                bar.update(0, f"{len(running)} running; slowest {name} at {done}/{total} {unit}")

        outcomes = run_grid(out_dir, runs, executor, on_progress, on_outcome, stop_requested)
    if stop_requested():
        raise GridStopped(stop_requested(), sum(o.status in ("finished", "done") for o in outcomes), len(runs))
    failed = [o for o in outcomes if o.status == "failed"]
    click.echo(f"{len(runs) - len(failed)} of {len(runs)} runs finished in {out_dir}"
               + (f"; {len(failed)} failed:" if failed else f"; next: refplastic analyse {out_dir} --out REPORT_DIR"))
    for outcome in failed:
        click.echo(f"  {outcome.name}: {outcome.message} (log: {layout.log_path(out_dir, outcome.name)})")
    if failed:
        sys.exit(1)


def _check_grid_run(run, grid_file):
    """A grid run's config built as its command would build it, before any work: a bad value is a
    usage error naming the option (or the grid file)."""
    types = {"seed": int, "frames": int, "layernorm": lambda v: v == "true",
             "intervention": lambda v: tuple(v.split("+"))}
    module = {"run": "refplastic.plasticity.config", "dqn": "refplastic.rl.config"}[run.command]
    presets = {"run": RUN_PRESETS, "dqn": DQN_PRESETS}[run.command]
    try:
        if run.preset not in presets:
            raise click.BadParameter(f"must be one of {', '.join(presets)} for refplastic {run.command}, "
                                     f"got {run.preset!r}", param_hint="'--preset'")
        options = {}
        for name, text in run.options.items():
            try:
                options[name] = types.get(name, str)(text)
            except ValueError:
                raise click.BadParameter(f"expected an integer, got {text!r}", param_hint=f"'--{name}'") from None
        if "data" in options:
            _data_spec(None, None, options["data"])
        config = _config(module, run.preset, options, run.assignments)
        if run.command == "dqn":
            _check_replay(config)
    except click.BadParameter as e:
        if grid_file is None:
            raise
        field = (e.param_hint or "").strip("'-").replace("set ", "set.")
        raise click.ClickException(f"--grid: {grid_file}: {field}: {e.message}") from None


def _claim_directory(out_dir, grid, runs):
    """The grid's directory made (or found) and claimed for this grid, and every run's files
    proved usable, before any work: a usage error naming --out otherwise."""
    from refplastic.outputs import check_output, check_writable
    from refplastic.sweep import directory as layout

    kinds = {"run": (RUN, RUN_CHECKPOINT), "dqn": (DQN, DQN_CHECKPOINT)}[grid.command]
    try:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise OSError(f"{out_dir} is a file, not a directory")
        layout.make_directories(out_dir)
        check_writable(os.path.join(out_dir, layout.MANIFEST))
        layout.claim(out_dir, grid, runs)
        for run in runs:
            for path, kind in zip((layout.results_path(out_dir, run.name), layout.checkpoint_path(out_dir, run.name)),
                                  kinds):
                check_output(path, kind, resumes=True)
    except (OSError, ValueError) as e:
        raise click.BadParameter(str(e), param_hint="'--out'") from None


def _executor(jobs, scheduler):
    """The local executor (``jobs`` processes, default the cores) or the Dask one at ``scheduler``."""
    from refplastic.sweep.executors import DaskExecutor, LocalExecutor, default_jobs

    if scheduler is None:
        return LocalExecutor(jobs or default_jobs())
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise click.UsageError("--scheduler needs Dask's distributed: pip install 'refplastic[cluster]'") from None
    try:
        return DaskExecutor(scheduler)
    except (OSError, ValueError, TypeError) as e:
        raise click.ClickException(f"--scheduler: {e}") from None


@cli.command(name="dqn-report", short_help="Scores, LayerNorm's improvement and learning curves of DQN runs.")
@click.argument("runs", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="RUN.h5...")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write report.md, scores.csv and learning_curves.png (needs the 'plot' extra) into this directory.")
@FORCE_OPTION
def dqn_report(runs, out_dir, force):
    """Per-game scores of DQN runs (results of refplastic dqn: mean and spread over seeds, with and
    without LayerNorm), the human-normalised improvement of LayerNorm over the baseline (Wang et
    al. 2016's measure, as the paper's figure 7) with its reference-score source, and the
    learning curves."""
    from refplastic.rl import report

    paths = report.output_paths(out_dir) if out_dir is not None else {}
    if out_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError("--out plots the learning curves, which needs matplotlib: "
                                   "pip install 'refplastic[plot]'") from None
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as e:
            raise click.BadParameter(f"cannot create directory {out_dir}: {e.strerror}", param_hint="'--out'") from None
        _check_paths({f"--out ({name})": (path, kind) for (name, path), kind
                      in zip(paths.items(), ("refplastic-dqn-report", "refplastic-dqn-scores", "image"))},
                     inputs={f"RUN {p}": p for p in runs}, force=force)
    loaded = report.load_runs(runs)
    rows = report.report_rows(loaded)
    text = report.markdown(rows)
    click.echo(text, nl=False)
    if out_dir is not None:
        from refplastic.outputs import atomic_path

        for name, content in (("report.md", text), ("scores.csv", report.csv_text(rows))):
            with atomic_path(paths[name]) as tmp, open(tmp, "w") as f:
                f.write(content)
        with atomic_path(paths["learning_curves.png"]) as tmp:
            report.plot_learning_curves(loaded, tmp)
        click.echo(f"wrote {', '.join(paths.values())}")


@cli.command(short_help="The paper's tables and figures from a directory of runs.")
@click.argument("directory", metavar="DIR", type=click.Path())
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Write report.md, figure6.csv, correlations.csv and the figures (the 'plot' extra) here.")
@click.option("--bootstrap", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Resamples of each percentile bootstrap interval.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the bootstrap.")
@FORCE_OPTION
def analyse(directory, out_dir, bootstrap, seed, force):
    """The paper's tables and figures from DIR's results files of refplastic run and refplastic dqn:
    the figure-6 table (plasticity loss per intervention and architecture, mean and standard error
    over seeds), the figure-3 Spearman correlations of plasticity loss with every logged statistic
    (overall and by data set, architecture and task, with bootstrap intervals), the figures, and
    for DQN runs what dqn-report gives (docs/protocol.md, "Analysis")."""
    from refplastic.analysis import report, runs
    from refplastic.outputs import check_writable, same_file

    found = runs.find_results(directory)
    out_dir = os.path.normpath(out_dir)
    if same_file(out_dir, directory):
        raise click.BadParameter(f"{out_dir} is DIR itself; give another directory for the report",
                                 param_hint="'--out'")
    if os.path.isdir(out_dir):
        _check_paths({f"--out ({name})": path_and_kind for name, path_and_kind
                      in report.output_paths(out_dir, bool(found.dqn)).items()},
                     inputs={f"DIR {p}": p for p in found.plasticity + found.dqn}, force=force)
    else:
        try:
            check_writable(out_dir)
        except OSError as e:
            raise click.BadParameter(str(e), param_hint="'--out'") from None
    built = report.build(found, directory, bootstrap, seed)
    click.echo(built.figure6, nl=False)
    if not report.plots.available():
        click.echo(f"no figures drawn: {report.PLOT_EXTRA}")
    click.echo(f"wrote {', '.join(report.write(built, out_dir))}")


def main(argv=None):
    """Entry point: run the group, turning every expected failure into one line and an exit code.

    SIGTERM and SIGINT stop a command with one line and exit code 128 + the signal's number
    (143, 130); a command with a checkpoint first saves it (:mod:`refplastic.stopping`).
    """
    from refplastic.stopping import Stopped, stop_signals

    debug = os.environ.get("REFPLASTIC_DEBUG") == "1"
    try:
        with stop_signals():
            return cli.main(args=argv, prog_name="refplastic", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Stopped as e:
        click.echo(e.message(), err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        if debug:
            raise
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except (ValueError, OSError, KeyError, RuntimeError, MemoryError) as e:
        if debug:
            raise
        message = str(e).splitlines()[0] if str(e) else ("out of memory" if isinstance(e, MemoryError)
                                                          else type(e).__name__)
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
