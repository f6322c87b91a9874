"""What the configurations of the two jobs (``training.TrainConfig`` and
``plasticity.config.RunConfig``) share: the error naming a bad field, and the check of a config
read back from JSON."""

import dataclasses


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
