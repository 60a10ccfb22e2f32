"""Reading launch and parameter files as YAML: duplicate keys refused (naming both lines),
``1e-3`` read as a number, and every failure a one-line :class:`~catbus.errors.ConfigError`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from catbus.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys.

    Plain YAML keeps the last of two equal keys, so a copy-pasted node silently replaces the first;
    here it is an error naming the dotted path and both lines.
    """

    def load_checked(self, where: str) -> Any:
        try:
            root = self.get_single_node()
            if root is None:
                return None
            _find_duplicate_keys(root, "", where, set())
            return self.construct_document(root)
        finally:
            self.dispose()


# YAML 1.1 (PyYAML) reads 1e-3 as text because it has no dot; robotics people write periods and
# gains that way and YAML 1.2 agrees that it is a number, so launch and parameter files do too.
_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _find_duplicate_keys(node: yaml.Node, path: str, where: str, seen: set[int]) -> None:
    if id(node) in seen:  # aliases point at nodes already walked (and may form cycles)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            child = f"{path}.{key}" if path else str(key)
            if key is not None and key != "<<":
                if key in first_line:
                    raise ConfigError(where, child,
                                      f"defined twice (lines {first_line[key]} and "
                                      f"{key_node.start_mark.line + 1}); keep one")
                first_line[key] = key_node.start_mark.line + 1
            _find_duplicate_keys(value_node, child, where, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicate_keys(item, f"{path}.{index}" if path else str(index), where, seen)


def load_yaml_text(text: str, where: str) -> Any:
    """``text`` as YAML (duplicate keys refused, ``1e-3`` a number); errors name ``where``."""
    try:
        return _UniqueKeyLoader(text).load_checked(where)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = ": ".join(str(part) for part in (error.context, error.problem) if part)
        raise ConfigError(where, "", f"{place}invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(where, "", f"invalid YAML: {error}") from None


def load_yaml_file(file: Path, *, where: str, missing: str) -> Any:
    """The YAML in ``file``; ``missing`` says what a file that is not there is."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(where, "", f"{missing} (looked for {file.resolve()})") from None
    except IsADirectoryError:
        raise ConfigError(where, "", "is a folder, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(where, "", f"cannot read it: {error}") from None
    return load_yaml_text(text, where)


__all__ = ["load_yaml_text", "load_yaml_file"]
