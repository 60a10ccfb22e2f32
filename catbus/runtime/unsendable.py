"""What a node returned that cannot be published, named precisely: an undeclared output, or
the part of a value that has no wire encoding (``"u"[1]``), so the run fails with a message
that says where to look. Only consulted on the way to failing: nothing per message on the good
path."""

from __future__ import annotations

from typing import Any

from catbus.errors import CatbusError
from catbus.wire import codec


class OutputError(CatbusError):
    """A node returned something it cannot publish: an undeclared output, or a value (or a part
    of one) that has no wire encoding. Fails the run, in every mode."""

    exit_code = 1


def unsendable_error(node: str, topic: str | None, value: Any, exc: Exception) -> Exception:
    """The error to fail with when sending ``value`` on ``topic`` raised ``exc``: an
    :class:`OutputError` naming the field inside the value, or ``exc`` itself when no part of
    the value fails alone (the error is not about the value)."""
    found = unsendable_field(value)
    if topic is None or found is None:
        return exc
    path, reason = found
    where = f"field {path}: " if path else ""
    return OutputError(f"node {node}: output {topic}: {where}{reason}")


def unsendable_field(value: Any) -> tuple[str, str] | None:
    """The first part of ``value`` that has no wire encoding, as ``(path, reason)``: the path
    reads like the Python that reaches it (``"u"[1]`` for ``value["u"][1]``; empty for the value
    itself), the reason is the codec's. None if every part encodes on its own."""
    def walk(item: Any, path: str) -> tuple[str, str] | None:
        if type(item) is dict:
            for key, inner in item.items():
                if type(key) is not str:
                    bad = walk(key, f"{path}{'.' if path else ''}<key {key!r}>")
                    if bad:
                        return bad
                step = f'"{key}"' if type(key) is str else f"[{key!r}]"
                bad = walk(inner, f"{path}.{step}" if path and step[0] == '"' else path + step)
                if bad:
                    return bad
            return None
        if type(item) in (list, tuple):
            for index, inner in enumerate(item):
                bad = walk(inner, f"{path}[{index}]")
                if bad:
                    return bad
            return None
        try:
            codec.encode_payload(item)
        except (TypeError, ValueError, OverflowError) as exc:
            return path, str(exc)
        return None

    return walk(value, "")


__all__ = ["OutputError", "unsendable_error", "unsendable_field"]
