"""A grid of runs: one ``refplastic run`` (or ``refplastic dqn``) per combination of the values of
its axes.

``refplastic sweep`` takes a grid as the options of the command it repeats, each value a comma list
(``--task hard,easy --arch mlp,cnn --seed 0,1,2 --set lr=1e-3,1e-4``), or as a TOML file
(``--grid FILE``) with the same keys, where a list is an axis and a single value is fixed::

    command = "run"                  # or "dqn"
    preset = "laptop"
    task = ["hard", "easy"]
    arch = ["mlp", "cnn"]
    intervention = ["none", "layernorm", "layernorm+twohot"]
    seed = [0, 1, 2]

    [set]                            # any config field (refplastic run --show-config lists them)
    lr = [1e-3, 1e-4]
    train_steps = 5000

One run's interventions are joined with ``+`` (a comma separates the runs of an axis); for a
``dqn`` grid the keys are ``game``, ``layernorm`` (``true,false``), ``frames`` and ``seed``.
The runs are the Cartesian product of the axes, the seeds outermost (all runs of seed 0 first,
so that a half-finished grid already has one seed of everything); a run's name joins
``axis-value`` for each axis with more than one value, in the command's order with the seed
last (``arch-mlp_intervention-layernorm_seed-0``), and is the stem of its files; a value's
characters other than letters, digits, ``.``, ``+`` and ``-`` become ``-`` in it
(``reset-last-layer``), so that ``_`` only separates axes.
"""

import dataclasses
import itertools
import re

COMMAND_OPTIONS = {"run": ("task", "data", "arch", "intervention", "seed"),
                   "dqn": ("game", "layernorm", "frames", "seed")}
"""The options of each command a grid may vary (besides ``--set``), in the order of run names."""

LIST_JOIN = "+"
"""Joins the interventions of one run in a grid (``layernorm+twohot``)."""


class GridError(ValueError):
    """A bad grid: ``field`` names the option (``task``, ``set lr``, ``grid``) and ``problem``
    says what is wrong."""

    def __init__(self, field, problem):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


class GridFileError(GridError):
    """A grid file that cannot be read or is not a grid (bad data, not bad usage)."""

    def __init__(self, problem):
        super().__init__("grid", problem)


@dataclasses.dataclass(frozen=True)
class Grid:
    """``command`` ("run" or "dqn"), its ``preset``, and ``axes``: ``((key, values), ...)`` with
    ``key`` an option of the command or ``set:FIELD``, and ``values`` a tuple of strings."""

    command: str
    preset: str
    axes: tuple


@dataclasses.dataclass(frozen=True)
class GridRun:
    """One run of a grid: its ``name``, the ``options`` of the command (``{"arch": "mlp", ...}``)
    and the ``assignments`` of ``--set`` (``("lr=0.001", ...)``)."""

    name: str
    command: str
    preset: str
    options: dict
    assignments: tuple

    def arguments(self):
        """The command line of this run, without its output options: ``["run", "--preset", ...]``."""
        args = [self.command, "--preset", self.preset]
        for option, value in self.options.items():
            if option == "layernorm":
                args.append("--layernorm" if value == "true" else "--no-layernorm")
            else:
                args += [f"--{option}", value.replace(LIST_JOIN, ",") if option == "intervention" else value]
        for assignment in self.assignments:
            args += ["--set", assignment]
        return args


def grid_from_options(command, preset, options, assignments):
    """The grid of ``refplastic sweep``'s options: ``options`` maps each option of ``command`` to
    its comma list (or None: the preset's value), ``assignments`` is each ``--set FIELD=VALUES``."""
    axes = []
    for key, text in options.items():
        if text is not None:
            axes.append((key, _comma_list(key, text)))
    for assignment in assignments:
        field, sep, text = assignment.partition("=")
        if not sep or not field.strip():
            raise GridError("set", f"expected FIELD=VALUE[,VALUE...], got {assignment!r}")
        axes.append((f"set:{field.strip()}", _comma_list(f"set {field.strip()}", text)))
    return make_grid(command, preset, axes)


def grid_from_toml(path):
    """The grid of the TOML file ``path`` (the module docstring shows one)."""
    import tomllib

    from ..h5io import check_readable

    try:
        with open(check_readable(path), "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise GridFileError(str(e)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise GridFileError(f"{path} is not a TOML grid file: {e}") from None
    command, preset = table.pop("command", "run"), table.pop("preset", "laptop")
    for key, value in (("command", command), ("preset", preset)):
        if not isinstance(value, str):
            raise GridFileError(f"{path}: {key} must be a string, got {value!r}")
    settings = table.pop("set", {})
    if not isinstance(settings, dict):
        raise GridFileError(f"{path}: set must be a table of FIELD = value(s)")
    if command not in COMMAND_OPTIONS:
        raise GridFileError(f"{path}: command: must be one of {', '.join(COMMAND_OPTIONS)}, got {command!r}")
    allowed = COMMAND_OPTIONS[command]
    unknown = [key for key in table if key not in allowed]
    if unknown:
        raise GridFileError(f"{path}: unknown key {unknown[0]!r}; a {command} grid takes command, preset, "
                                f"{', '.join(allowed)} and a [set] table")
    axes = [(key, _toml_values(path, key, value)) for key, value in table.items()]
    axes += [(f"set:{field}", _toml_values(path, f"set.{field}", value)) for field, value in settings.items()]
    try:
        return make_grid(command, preset, axes)
    except GridError as e:
        raise GridFileError(f"{path}: {e}") from None


def make_grid(command, preset, axes):
    """A :class:`Grid`, its keys checked and put in the order of run names."""
    if command not in COMMAND_OPTIONS:
        raise GridError("command", f"must be one of {', '.join(COMMAND_OPTIONS)}, got {command!r}")
    order = COMMAND_OPTIONS[command]
    seen = set()
    for key, values in axes:
        if key in seen:
            raise GridError(_field(key), "given twice")
        seen.add(key)
        if not key.startswith("set:") and key not in order:
            raise GridError(key, f"is not an option of a {command} grid (those are {', '.join(order)} and --set)")
        if key == "layernorm":
            bad = [v for v in values if v not in ("true", "false")]
            if bad:
                raise GridError("layernorm", f"values are true or false, got {bad[0]!r}")

    def rank(item):
        key = item[0]
        return (key == "seed", order.index(key) if key in order else len(order))

    return Grid(command, preset, tuple(sorted(axes, key=rank)))


def absolute_data_paths(grid):
    """``grid`` with each data set spec naming a relative directory (``mnist:data/mnist``) made
    absolute: every run works in the grid's directory, not where the sweep was started."""
    import os

    def absolute(spec):
        kind, sep, where = spec.partition(":")
        return f"{kind}:{os.path.abspath(where)}" if sep and where and not os.path.isabs(where) else spec

    axes = tuple((key, tuple(absolute(v) for v in values) if key in ("data", "set:data") else values)
                 for key, values in grid.axes)
    return dataclasses.replace(grid, axes=axes)


def grid_runs(grid):
    """The runs of ``grid`` in the order they are run (seeds outermost), as :class:`GridRun`\\ s; a
    GridError if two would share a name."""
    keys = [key for key, _ in grid.axes]
    varying = [key for key, values in grid.axes if len(values) > 1]
    seed_first = sorted(range(len(keys)), key=lambda i: keys[i] != "seed")
    runs, names = [], {}
    for combination in itertools.product(*(grid.axes[i][1] for i in seed_first)):
        values = {keys[i]: value for i, value in zip(seed_first, combination)}
        name = "_".join(f"{_label(key)}-{_file_safe(values[key])}" for key in varying) or "run"
        if name in names:
            raise GridError("grid", f"two runs would share the name {name!r} ({names[name]} and {values}); "
                                    f"make the values differ in letters, digits, '.', '+' or '-'")
        names[name] = values
        options = {key: values[key] for key in keys if not key.startswith("set:")}
        assignments = tuple(f"{key[4:]}={values[key]}" for key in keys if key.startswith("set:"))
        runs.append(GridRun(name, grid.command, grid.preset, options, assignments))
    return runs


def _comma_list(field, text):
    values = tuple(v.strip() for v in text.split(","))
    if not all(values):
        raise GridError(field, f"expected a comma list of values, got {text!r}")
    _check_distinct(field, values)
    return values


def _toml_values(path, key, value):
    values = value if isinstance(value, list) else [value]
    if not values:
        raise GridFileError(f"{path}: {key} is an empty list")
    texts = []
    for v in values:
        if isinstance(v, bool):
            texts.append("true" if v else "false")
        elif isinstance(v, (int, float, str)):
            texts.append(v if isinstance(v, str) else repr(v))
        else:
            raise GridFileError(f"{path}: {key} must be a string, number or boolean (or a list of them), got {v!r}")
    _check_distinct(f"grid {key}", texts)
    return tuple(texts)


def _check_distinct(field, values):
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise GridError(field, f"value {repeated[0]!r} given twice")


def _field(key):
    return f"set {key[4:]}" if key.startswith("set:") else key


def _label(key):
    return key[4:] if key.startswith("set:") else key


def _file_safe(value):
    return re.sub(r"[^A-Za-z0-9.+-]", "-", value)
