"""Node parameters: declaration, validation and dotted overrides.

A node declares its parameters as a nested dict of :class:`Param`, nested as the user thinks of
them (``{"feedback": {"kp": Param(float, 200.0)}}``). Given values (from the launch file, a
parameter file, ``--set robot.feedback.kp=150`` or ``--param feedback.kp=150``) are validated
against that declaration *before any process starts*, so a typo is an error with the dotted path,
never a silently ignored key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from catbus.errors import ConfigError

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "a list", dict: "a mapping"}


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type, default, help text and, optionally, allowed values."""

    type: type
    default: Any
    help: str = ""
    choices: Sequence[Any] | None = None
    shape: Sequence[int] | None = field(default=None)  # for list params: the expected length(s)

    def validate(self, value: Any, path: str, where: str) -> Any:
        """Return ``value`` coerced to the declared type, or raise ConfigError naming ``path``."""
        coerced = _coerce(self.type, value)
        if coerced is _INVALID:
            raise ConfigError(where, path, f"must be {_TYPE_NAMES.get(self.type, self.type.__name__)}, "
                                           f"got {value!r}")
        if self.choices is not None and coerced not in self.choices:
            options = ", ".join(map(str, self.choices))
            raise ConfigError(where, path, f"must be one of {options}; got {value!r}")
        if self.shape is not None and isinstance(coerced, list) and len(coerced) not in self.shape:
            raise ConfigError(where, path, f"must have {' or '.join(map(str, self.shape))} elements, "
                                           f"got {len(coerced)}")
        return coerced


_INVALID = object()

#: How a float parameter's infinities and NaN may be written where a value is text (``--set
#: agent.threshold=inf``, a launch file): Python's spellings (``float("inf")`` is a common
#: default), YAML's (``.inf``) and JSON's strings (``"Infinity"``, what ``catbus export``
#: writes), any case. YAML reads ``inf`` as a string, so without these the default of such a
#: parameter could not be given back on the command line.
NONFINITE_WORDS: dict[str, float] = {
    **{word: float("inf") for word in ("inf", "+inf", "infinity", "+infinity", ".inf", "+.inf")},
    **{word: float("-inf") for word in ("-inf", "-infinity", "-.inf")},
    **{word: float("nan") for word in ("nan", ".nan")},
}


def _coerce(kind: type, value: Any) -> Any:
    if kind is bool:
        return value if isinstance(value, bool) else _INVALID
    if kind is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return NONFINITE_WORDS.get(value.strip().lower(), _INVALID)
        return _INVALID
    if kind is list:
        return list(value) if isinstance(value, (list, tuple)) else _INVALID
    if kind is dict:
        return dict(value) if isinstance(value, Mapping) else _INVALID
    return value if isinstance(value, kind) else _INVALID


def defaults(declared: Mapping[str, Any]) -> dict[str, Any]:
    """The nested dict of default values of a declaration."""
    return {key: defaults(spec) if isinstance(spec, Mapping) else spec.default
            for key, spec in declared.items()}


def resolve(declared: Mapping[str, Any], given: Mapping[str, Any] | None, *, where: str,
            prefix: str) -> dict[str, Any]:
    """Merge ``given`` over the defaults of ``declared``, validating every key and type.

    ``prefix`` is the dotted path of this parameter block in the user's file (e.g.
    ``nodes.robot.params``) so errors point at the right line of thought.
    """
    result = defaults(declared)
    _merge_into(result, declared, given or {}, where, prefix)
    return result


def _merge_into(target: dict, declared: Mapping[str, Any], given: Mapping[str, Any], where: str,
                prefix: str) -> None:
    if not isinstance(given, Mapping):
        raise ConfigError(where, prefix, f"must be a mapping of parameters, got {given!r}")
    for key, value in given.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in declared:
            known = ", ".join(sorted(map(str, declared))) or "none"
            close = difflib.get_close_matches(str(key), list(map(str, declared)), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(where, path, f"unknown parameter (this node has: {known}){hint}")
        spec = declared[key]
        if isinstance(spec, Mapping):
            _merge_into(target[key], spec, value, where, path)
        else:
            target[key] = spec.validate(value, path, where)


def parse_assignment(text: str, *, where: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], value); the value is read as YAML.

    YAML makes ``kp=150`` an int, ``safe_controller=SafeSet`` a string and ``u_max=[1,2]`` a list,
    as a user would expect on a command line.
    """
    if "=" not in text:
        raise ConfigError(where, text, "expected KEY=VALUE (for example robot.feedback.kp=150)")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(where, key, "the key has an empty part; write it as name.sub.key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def nest(parts: Sequence[str], value: Any) -> dict[str, Any]:
    """``nest(["a", "b"], 1) == {"a": {"b": 1}}``."""
    result: Any = value
    for part in reversed(parts):
        result = {part: result}
    return result


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` merged into ``base``, recursing into mappings on both sides."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
