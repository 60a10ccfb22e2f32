"""Small pieces every launch-file check shares: where a value came from (the command line,
``--set``), absolute paths, class paths, and "did you mean" messages for unknown keys and nodes."""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

CLI = "command line"
SET = "--set"


def did_you_mean(name: Any, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the nearest of ``known``, or ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key_message(key: Any, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    return f"unknown key {key!r} (allowed: {', '.join(allowed)}){did_you_mean(key, allowed)}"


def unknown_node_message(name: str, known: Sequence[str]) -> str:
    return f"no node named {name!r} (nodes: {', '.join(known)}){did_you_mean(name, known)}"


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool (for values the schema does not decode: a class's
    declared period)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def absolute(path: Path) -> Path:
    """Absolute without resolving symlinks (the user's spelling of the folder stays)."""
    return Path(os.path.abspath(path.expanduser()))


def class_path_of(value: Any) -> str | None:
    """``module:Class`` of a class, or a class path as written; None for anything else."""
    if isinstance(value, type):
        return f"{value.__module__}:{value.__qualname__}"
    return value.strip() if isinstance(value, str) else None


__all__ = ["CLI", "SET", "did_you_mean", "unknown_key_message", "unknown_node_message",
           "is_number", "absolute", "class_path_of"]
