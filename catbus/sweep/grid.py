"""The grid of a sweep: ``--seeds`` and ``--set`` value lists, the settings x seeds product, and
the slug that names a setting (its record folder)."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any, Iterable, Mapping, Sequence

from catbus.errors import ConfigError

CLI = "<command line>"


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes: ``[1,2],[3,4]`` -> two items."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """One value, read as YAML flow (``100`` a number, ``[1,2]`` a list, ``SafeSet`` a string)."""
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(CLI, "--set", f"cannot read {text!r} as a YAML value ({exc})") from None


def parse_set(arg: str) -> tuple[str, list[Any]]:
    """``node.param=v1,v2`` -> ``("node.param", [v1, v2])`` (values split on top-level commas)."""
    key, sep, values = arg.partition("=")
    key = key.strip()
    if not sep or "." not in key or not key.split(".", 1)[1]:
        raise ConfigError(CLI, "--set", f"expected NODE.PARAM=VALUE[,VALUE...], got {arg!r}")
    return key, [parse_value(v) for v in split_top_level(values)]


def parse_sets(args: Iterable[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for arg in args:
        key, values = parse_set(arg)
        if key in grid:
            raise ConfigError(CLI, "--set", f"{key} given twice; list its values once: "
                              f"--set {key}=A,B")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> list[int]:
    """``A:B`` (half-open, as in Python; ``A:B:STEP`` too), ``3,7,9`` or ``5``."""
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3 or parts[1] is None:
                raise ValueError
            seeds = list(range(parts[0] or 0, parts[1], *([parts[2]] if len(parts) == 3
                                                           and parts[2] else [])))
        else:
            seeds = [int(p) for p in text.split(",")]
    except ValueError:
        raise ConfigError(CLI, "--seeds", f"expected A:B (half-open, e.g. 0:100) or a list "
                          f"(e.g. 3,7,9), got {text!r}") from None
    if not seeds:
        raise ConfigError(CLI, "--seeds", f"{text!r} gives no seeds")
    if any(s < 0 for s in seeds):
        raise ConfigError(CLI, "--seeds", f"seeds must be non-negative, got {text!r}")
    return seeds


def settings_of(grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first key varying slowest."""
    grid = dict(grid or {})
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(CLI, "grid", f"{key}: expected a non-empty list of values, got "
                              f"{values!r}")
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def canonical(value: Any) -> str:
    """A value as a stable string (resume matching, CSV cells)."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def slug(setting: Mapping[str, Any]) -> str:
    """A folder name for a setting: ``safe_controller=Unsafe``, ``u_max=100_100``."""
    if not setting:
        return "default"
    parts = []
    for key, value in setting.items():
        text = f"{key.split('.', 1)[1]}={canonical(value)}"
        parts.append(re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_"))
    return "__".join(parts)[:120]


def unique_slugs(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """One slug per setting, made unique with a suffix where two would collide."""
    seen: dict[str, int] = {}
    out = []
    for setting in settings:
        base = slug(setting)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.append(base if n == 0 else f"{base}-{n + 1}")
    return out
