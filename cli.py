"""The refplastic command line: a thin click layer over the library.

Every command turns bad input into one line ``Error: ...`` and a non-zero exit (2 for bad usage,
1 for bad data or files); set ``REFPLASTIC_DEBUG=1`` to see the traceback instead.
"""

import os
import sys

import click

import refplastic


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(refplastic.__version__, prog_name="refplastic")
def cli():
    """refplastic: an exact, auditable reference for studying loss of plasticity."""


def _writable_path(ctx, param, value):
    """A file path whose directory exists (checked before any work is done)."""
    if value is not None and not os.path.isdir(os.path.dirname(os.path.abspath(value))):
        raise click.BadParameter(f"directory does not exist: {os.path.dirname(os.path.abspath(value))}")
    return value


def _int_list(ctx, param, value):
    try:
        widths = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers such as 64,64, got {value!r}") from None
    if any(w < 1 for w in widths):
        raise click.BadParameter(f"widths must be positive, got {value!r}")
    return widths


@cli.command()
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random draw.")
@click.option("--dataset", type=click.Choice(["teacher-classification", "teacher-regression", "gaussian-clusters"]),
              default="teacher-classification", show_default=True, help="Built-in generated data set.")
@click.option("--hidden", default="64,64", show_default=True, callback=_int_list, help="Hidden widths.")
@click.option("--activation", type=click.Choice(["ReLU", "Tanh", "Sigmoid", "GELU", "LeakyReLU", "Identity"]),
              default="ReLU", show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd", "rmsprop"]), default="adam",
              show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--eval-every", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, callback=_writable_path,
              help="Save here every --checkpoint-every steps; resume from it if it exists.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, callback=_writable_path,
              help="Write the trained network and learning curve here (HDF5, checkpoint layout).")
def train(seed, dataset, hidden, activation, optimizer, lr, batch_size, steps, eval_every, dtype,
          checkpoint, checkpoint_every, out):
    """Train an MLP on built-in data and print its learning curve."""
    from refplastic.checkpoint import save_checkpoint
    from refplastic.training import TrainConfig, train as run_training

    config = TrainConfig(seed=seed, dataset=dataset, hidden=hidden, activation=activation, optimizer=optimizer,
                         lr=lr, batch_size=batch_size, steps=steps, eval_every=eval_every, dtype=dtype)
    with click.progressbar(length=steps, label="training", file=sys.stderr) as bar:
        net, optimizer, run = run_training(config, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                           progress=bar.update)
    history = run["history"]
    keys = [k for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy") if k in history]
    click.echo(f"{'step':>7} " + " ".join(f"{k:>14}" for k in keys))
    for i, step in enumerate(history["step"]):
        click.echo(f"{step:>7} " + " ".join(f"{history[k][i]:>14.6f}" for k in keys))
    if out is not None:
        save_checkpoint(out, net, optimizer, run)
        click.echo(f"wrote {out}")


def main(argv=None):
    """Entry point: run the group, turning every expected failure into one line and an exit code."""
    debug = os.environ.get("REFPLASTIC_DEBUG") == "1"
    try:
        return cli.main(args=argv, prog_name="refplastic", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        if debug:
            raise
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except (ValueError, OSError, KeyError) as e:
        if debug:
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
