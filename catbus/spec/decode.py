"""Launch data into the :mod:`catbus.spec.schema` types, every msgspec error one ConfigError.

msgspec says what is wrong and where, as ``Expected `float` > 0.0 - at `$.period```; a person
needs the file, the dotted field, what a right value looks like and what they wrote:
``bad.yaml: nodes.talker.period: must be a positive number of seconds (omit it to use the
class's period), got 0``. The "right value" text is the field's ``Meta(description=...)`` (or
the struct's ``about``), found by walking the schema types along msgspec's path; the value is
found by walking the data along the same path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as typeinfo

from catbus.errors import ConfigError
from catbus.spec.fieldcheck import unknown_key_message

T = TypeVar("T")

#: ``<what> - at `<path>``` or ``<what> - at `key` in `<path>``` (a key of the wrong type).
_ERROR = re.compile(r"(?P<what>.*?)(?: - at `(?P<path>[^`]*)`(?: in `(?P<container>[^`]*)`)?)?\Z",
                    re.S)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<name>.*)`\Z", re.S)
_MISSING_FIELD = re.compile(r"Object missing required field `(?P<name>.*)`\Z", re.S)
_NOWHERE = object()   # a value the path does not reach
_LONGEST_VALUE = 100  # characters of a wrong value shown in a message


def decode(data: Any, kind: type[T], *, where: str, prefix: str = "") -> T:
    """``data`` as ``kind``; a wrong value is a ConfigError naming ``where`` and the dotted
    field (``prefix`` in front: ``nodes.robot`` for one node's settings)."""
    try:
        return msgspec.convert(python_scalars(data), kind)
    except msgspec.ValidationError as error:
        raise explain(str(error), data, kind, where=where, prefix=prefix) from None


def python_scalars(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers (a script's ``np.float64(0.1)`` period is a
    number like any other; msgspec checks exact types) and mappings as dicts."""
    if isinstance(value, Mapping):
        return {key: python_scalars(item) for key, item in value.items()}
    if isinstance(value, list):
        return [python_scalars(item) for item in value]
    if isinstance(value, tuple):
        return tuple(python_scalars(item) for item in value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def explain(text: str, data: Any, kind: Any, *, where: str, prefix: str = "") -> ConfigError:
    """The ConfigError for msgspec's error ``text`` about decoding ``data`` as ``kind``."""
    found = _ERROR.match(text)
    what = found["what"] if found else text
    key_error = bool(found and found["container"])
    path = (found["container"] if key_error else found["path"]) if found else None
    steps = _steps(path or "$")
    at_type, value = type_at(kind, steps), value_at(data, steps)
    if unknown := _UNKNOWN.match(what):
        name = unknown["name"]
        return ConfigError(where, dotted(prefix, [*steps, name]),
                           unknown_key_message(name, field_names(at_type)))
    if missing := _MISSING_FIELD.match(what):
        name = missing["name"]
        expected = description(_inside(at_type, name)) or "a value"
        return ConfigError(where, dotted(prefix, [*steps, name]), f"missing: give {expected}")
    if key_error and isinstance(value, Mapping):
        bad = next((key for key in value if not isinstance(key, str)), None)
        return ConfigError(where, dotted(prefix, [*steps, str(bad)]),
                           f"{bad!r} is not a key name: keys are text (YAML reads yes/no/on/off/"
                           f"true/false and numbers as other types: quote the key)")
    field = dotted(prefix, steps)
    expected = description(at_type)
    got = "" if value is _NOWHERE else f", got {_short(value)}"
    message = f"must be {expected}{got}" if expected else f"{what}{got}"
    return ConfigError(where, field, message if field else f"the top level {message}")


def dotted(prefix: str, steps: list[str | int | None]) -> str:
    """``nodes.robot`` + ``["swap", 0, "at"]`` -> ``nodes.robot.swap[0].at``."""
    text = prefix
    for step in steps:
        if isinstance(step, int):
            text += f"[{step}]"
        elif step is None:
            text += "[...]"
        else:
            text += f".{step}" if text else step
    return text


def description(info: Any) -> str | None:
    """What a right value looks like, from a ``msgspec.inspect`` type: the outermost
    ``Meta(description=...)``, or a struct's ``about``; None if the schema says nothing."""
    if isinstance(info, typeinfo.Metadata):
        return (info.extra_json_schema or {}).get("description") or description(info.type)
    if isinstance(info, typeinfo.UnionType):
        return next(filter(None, map(description, info.types)), None)
    if isinstance(info, typeinfo.StructType):
        return getattr(info.cls, "about", None)
    return None


def type_at(kind: Any, steps: list[str | int | None]) -> Any:
    """The ``msgspec.inspect`` type at ``steps`` inside the type ``kind`` (None where the schema
    stops: an untyped mapping, ``Any``)."""
    info: Any = typeinfo.type_info(kind)
    for step in steps:
        info = _inside(info, step) if info is not None else None
    return info


def value_at(data: Any, steps: list[str | int | None]) -> Any:
    """The part of ``data`` at ``steps``, or a marker if the path does not reach one."""
    for step in steps:
        if isinstance(step, str) and isinstance(data, Mapping) and step in data:
            data = data[step]
        elif isinstance(step, int) and isinstance(data, (list, tuple)) and step < len(data):
            data = data[step]
        else:
            return _NOWHERE
    return data


def field_names(info: Any) -> list[str]:
    """The keys a struct allows, in its order, as a file spells them (``class``, not
    ``class_``)."""
    if isinstance(info, typeinfo.Metadata):
        return field_names(info.type)
    if isinstance(info, typeinfo.UnionType):
        return next(filter(None, map(field_names, info.types)), [])
    if isinstance(info, typeinfo.StructType):
        return [field.encode_name for field in info.fields]
    return []


def _inside(info: Any, step: str | int | None) -> Any:
    """The type one step inside ``info``: a struct's field, a list's item, a dict's value."""
    if isinstance(info, typeinfo.Metadata):
        return _inside(info.type, step)
    if isinstance(info, typeinfo.UnionType):
        return next(filter(None, (_inside(member, step) for member in info.types)), None)
    if isinstance(info, typeinfo.StructType) and isinstance(step, str):
        return next((field.type for field in info.fields if field.encode_name == step), None)
    if isinstance(info, typeinfo.ListType) and isinstance(step, int):
        return info.item_type
    if isinstance(info, typeinfo.DictType) and not isinstance(step, int):
        return info.value_type
    return None


def _steps(path: str) -> list[str | int | None]:
    """msgspec's ``$.swap[0].at`` as ``["swap", 0, "at"]`` (``[...]``, a mapping's value: None)."""
    steps: list[str | int | None] = []
    for name, index in _STEP.findall(path.removeprefix("$")):
        steps.append(name if name else (None if index == "..." else int(index)))
    return steps


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _LONGEST_VALUE else text[:_LONGEST_VALUE - 3] + "..."


__all__ = ["decode", "explain", "python_scalars", "description", "dotted", "type_at",
           "value_at", "field_names"]
