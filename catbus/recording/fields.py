"""Field paths into messages: ``robot.pos[0]`` picks one value out of a message, as ROS 2's
``ros2 topic echo --field`` and rqt_plot do. ``catbus topic echo --field`` and ``catbus plot
--field`` share it, so a path means the same live and in a recording.

A path is dot-separated keys with ``[index]`` for list and array elements (negative indexes
count from the end): ``state.robot.pos[0]``, ``control[1][0]``, ``[2]`` (a message that is a
list). A key that is not an identifier can be quoted as ``["my key"]``. Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any, Iterator, Sequence

from catbus.errors import CatbusError

#: One step of a path: ``key`` (first), ``.key``, ``[3]``, ``["key"]``.
_KEY = r"[A-Za-z_][A-Za-z0-9_\-]*"
_STEP = re.compile(rf"""(?P<dot>\.)?(?P<key>{_KEY})|\[(?P<index>-?\d+)\]|"""
                   r"""\[(?P<quote>["'])(?P<quoted>.*?)(?P=quote)\]""")


class FieldError(CatbusError):
    """A field path that is malformed, or that a message does not have (the message says which
    part is missing and what is there instead)."""

    exit_code = 2


def parse_field(path: str) -> tuple[str | int, ...]:
    """``"a.b[0]"`` as ``("a", "b", 0)``.

    Raises:
        FieldError: The path is empty or malformed (the message shows where).
    """
    text = path.strip()
    if not text:
        raise FieldError("--field: empty field path; give e.g. robot.pos[0]")
    parts: list[str | int] = []
    at = 0
    while at < len(text):
        found = _STEP.match(text, at)
        # A key comes first without a dot, later only after one.
        if found is None or (found.group("key") is not None and
                             bool(found.group("dot")) != bool(at)):
            raise FieldError(f"--field {path!r}: cannot read it at {text[at:]!r}; a field path "
                             f"is keys and [indexes], e.g. robot.pos[0]")
        if found.group("key") is not None:
            parts.append(found.group("key"))
        elif found.group("index") is not None:
            parts.append(int(found.group("index")))
        else:
            parts.append(found.group("quoted"))
        at = found.end()
    return tuple(parts)


def format_field(parts: Sequence[str | int]) -> str:
    """The path of ``parts`` as a user writes it (``("a", 0)`` -> ``a[0]``)."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _describe(value: Any) -> str:
    """What is at a place a path could not go on from, for the error message."""
    if isinstance(value, dict):
        keys = ", ".join(str(k) for k in list(value)[:12]) + (", ..." if len(value) > 12 else "")
        return f"a map with keys: {keys or 'none'}"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"an array of shape {tuple(shape)}"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    return f"{type(value).__name__} {value!r}"[:80]


def get_field(value: Any, parts: Sequence[str | int]) -> Any:
    """The value at ``parts`` in ``value`` (a decoded message).

    Raises:
        FieldError: The message has no such field: names the first part that is missing and
            what is there instead.
    """
    current = value
    for depth, part in enumerate(parts):
        where = format_field(parts[:depth]) or "the message"
        if isinstance(part, int):
            length = None if isinstance(current, (dict, str, bytes)) else _length(current)
            if length is None:
                raise FieldError(f"no element [{part}] in {where}: it is {_describe(current)}")
            if not -length <= part < length:
                raise FieldError(f"no element [{part}] in {where}: it has {length}")
            current = current[part]
        else:
            if not isinstance(current, dict) or part not in current:
                raise FieldError(f"no field {part!r} in {where}: it is {_describe(current)}")
            current = current[part]
    return current


def _length(value: Any) -> int | None:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return int(shape[0]) if len(shape) else None
    if isinstance(value, (list, tuple)):
        return len(value)
    return None


def numeric_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every number in ``value`` with its path below it: a scalar as ``("", x)``, an array or
    list one ``("[i]", x)`` per element (nested: ``"[i][j]"``), a map ``(".key", x)`` per key.
    Booleans count as 0/1; strings and None are left out (a plot has no place for them)."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bool):
        yield prefix, float(value)
    elif isinstance(value, (int, float)):
        yield prefix, float(value)
    elif hasattr(value, "item") and hasattr(value, "dtype"):   # a numpy scalar
        item = value.item()
        if isinstance(item, (bool, int, float)):
            yield prefix, float(item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from numeric_leaves(item, f"{prefix}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numeric_leaves(item, f"{prefix}.{key}")


__all__ = ["FieldError", "parse_field", "format_field", "get_field", "numeric_leaves"]
