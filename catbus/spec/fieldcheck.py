"""Small pieces every launch-file check shares: where a value came from (the command line,
``--set``), value tests, absolute paths, and "did you mean" messages for unknown keys and nodes."""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from catbus.errors import ConfigError

CLI = "command line"
SET = "--set"


def _unknown_key(where: str, field_path: str, key: Any, allowed: Iterable[str]) -> ConfigError:
    allowed = list(allowed)
    message = f"unknown key {key!r} (allowed: {', '.join(allowed)})"
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return ConfigError(where, field_path, message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _absolute(path: Path) -> Path:
    """Absolute without resolving symlinks (the user's spelling of the folder stays)."""
    return Path(os.path.abspath(path.expanduser()))


def _class_path_of(value: Any) -> str | None:
    if isinstance(value, type):
        return f"{value.__module__}:{value.__qualname__}"
    return value.strip() if isinstance(value, str) else None


def _mapping_or_empty(value: Any) -> Any:
    return {} if value is None else value


def _unknown_node_message(name: str, known: Sequence[str]) -> str:
    message = f"no node named {name!r} (nodes: {', '.join(known)})"
    close = difflib.get_close_matches(name, list(known), n=1)
    return message + (f"; did you mean {close[0]!r}?" if close else "")
