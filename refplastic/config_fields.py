"""What the configurations of refplastic's jobs share (``training.TrainConfig``,
``plasticity.config.RunConfig``, ``rl.config.DQNConfig``): the error naming a bad field, the
type and range checks of ``__post_init__``, JSON round trips, ``--show-config`` and ``--set``.

A field's type is its default's: bool, int, float, str, or tuple (a list of names, written
``a,b`` on the command line and as a JSON list in files).
"""

import dataclasses
import json
import math


class ConfigError(ValueError):
    """A bad field: the message is ``"<field> <problem>"``, and ``field`` and ``problem`` are kept
    apart so that a front end can name its own spelling of the field."""

    def __init__(self, field, problem):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def checked_fields(cls, values):
    """``values`` if it is a dict with exactly the fields of the dataclass ``cls``; else a
    ValueError naming the missing and unknown ones."""
    if not isinstance(values, dict):
        raise ValueError(f"expected a JSON object, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    missing, unknown = sorted(names - set(values)), sorted(set(values) - names)
    if missing or unknown:
        raise ValueError(f"missing fields {missing}, unknown fields {unknown}")
    return values


# ---- checks for __post_init__ --------------------------------------------------------------------
def check_types(config):
    """Every field of the type of its default (ints accepted as floats, and made floats)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind = type(f.default)
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                setattr(config, f.name, float(value))
        elif kind is tuple:
            ok = isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f.name, f"must be {_kind_name(kind)}, got {value!r}")


def _kind_name(kind):
    return {bool: "true or false", int: "an integer", float: "a number", tuple: "a list of names",
            str: "a string"}[kind]


def at_least(config, name, low):
    if getattr(config, name) < low:
        raise ConfigError(name, f"must be at least {low}, got {getattr(config, name)}")


MAX_SCHEDULE_POINTS = 1_000_000
"""The most points a run's schedule may have (its evaluations, probe points or log rows: ``total``
over each period): each schedule is a list in memory and each point a row of the results file."""


def schedule_points(config, total, periods):
    """A ConfigError naming ``total`` (a length in steps or frames) if ``total`` over any of the
    ``periods`` (field names) exceeds :data:`MAX_SCHEDULE_POINTS`."""
    for name in periods:
        points = getattr(config, total) // getattr(config, name)
        if points > MAX_SCHEDULE_POINTS:
            raise ConfigError(total, f"{getattr(config, total)} with {name} {getattr(config, name)} gives {points} "
                                     f"points; at most {MAX_SCHEDULE_POINTS:,} (a smaller {total} or a larger {name})")


def finite(config, name, low=-math.inf, high=math.inf, strict=False, high_open=False):
    """``config.name`` finite and in the interval from ``low`` (excluded if ``strict``) to ``high``
    (excluded if ``high_open``)."""
    value = getattr(config, name)
    below = value <= low if strict else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        interval = f"{'(' if strict or low == -math.inf else '['}{low}, {high}{')' if high_open or high == math.inf else ']'}"
        raise ConfigError(name, f"must be a finite number in {interval}, got {value!r}")


# ---- JSON, --show-config and --set ---------------------------------------------------------------
class ConfigFields:
    """What a config dataclass inherits: :meth:`to_json`, :meth:`from_json` and :meth:`describe`."""

    def to_json(self):
        return to_json_values(self)

    @classmethod
    def from_json(cls, values):
        """The config :meth:`to_json` wrote; a ValueError names a missing, unknown or bad field."""
        return from_json_values(cls, values)

    def describe(self):
        """``FIELD = VALUE`` lines, one per field, in declaration order (``--show-config``)."""
        return describe(self)



def to_json_values(config):
    """The fields of ``config`` as JSON values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def from_json_values(cls, values):
    """The ``cls`` of :func:`to_json_values`' ``values``; a ValueError names a missing, unknown or bad field."""
    values = checked_fields(cls, values)
    tuples = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, tuple)}
    return cls(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in values.items()})


def describe(config):
    """``FIELD = VALUE`` lines, one per field, in declaration order (``--show-config``)."""
    fields = dataclasses.fields(config)
    width = max(len(f.name) for f in fields)
    return "\n".join(f"{f.name:<{width}} = {_text(getattr(config, f.name))}" for f in fields)


def _text(value):
    return ",".join(value) if isinstance(value, tuple) else json.dumps(value)


def overridden(config, assignments, lister):
    """``config`` with each ``"FIELD=VALUE"`` of ``assignments`` applied in turn (``--set``): the
    value is read as the field's type (numbers, true/false, comma lists); ``lister`` is the command
    that lists the fields, named in the error for an unknown one."""
    cls = type(config)
    values = to_json_values(config)
    types = {f.name: type(f.default) for f in dataclasses.fields(cls)}
    for assignment in assignments:
        name, sep, text = str(assignment).partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError("set", f"expected FIELD=VALUE, got {assignment!r}")
        if name not in types:
            raise ConfigError("set", f"unknown field {name!r}; {lister} lists them")
        values[name] = _parsed(name, text.strip(), types[name])
    return from_json_values(cls, values)


def _parsed(name, text, kind):
    if kind is tuple:
        return [v.strip() for v in text.split(",") if v.strip()]
    if kind is str:
        return text
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(name, f"must be true or false, got {text!r}")
        return text.lower() in ("true", "1", "yes")
    try:
        number = float(text)
    except ValueError:
        raise ConfigError(name, f"must be {_kind_name(kind)}, got {text!r}") from None
    if kind is int:
        if not (math.isfinite(number) and number == int(number)):
            raise ConfigError(name, f"must be an integer, got {text!r}")
        return int(number)
    return number


def config_differences(mine, theirs, ignore=()):
    """``"field A here, B in the file; ..."`` for the fields two JSON configs disagree on, those of
    ``ignore`` left out ("" if none)."""
    keys = [k for k in dict.fromkeys([*mine, *theirs]) if k not in ignore and mine.get(k) != theirs.get(k)]
    return "; ".join(f"{k} {json.dumps(mine.get(k))} here, {json.dumps(theirs.get(k))} in the file" for k in keys)
