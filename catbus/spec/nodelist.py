"""A launch file's ``nodes:`` mapping before any class is imported: node names and keys checked,
the recorder attached, ``--set`` overrides and ``--remote`` names matched to nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from catbus import params as params_mod
from catbus.errors import ConfigError
from catbus.spec.fieldcheck import CLI, SET, _class_path_of, _mapping_or_empty, _unknown_key, \
    _unknown_node_message
from catbus.spec.yamlfile import _load_yaml_text
from catbus.topics import validate_node_name

NODE_KEYS = ("class", "period", "params", "params_file", "remap", "remote", "restart",
             "max_restarts", "restart_backoff")
RECORDER_CLASS = "catbus.recording.recorder:Recorder"
RECORDER_NAME = "recorder"


def _raw_nodes(value: Any, where: str) -> dict[str, dict[str, Any]]:
    """Copies of the node mappings, checked for names and keys (but not yet for content)."""
    if value is None:
        raise ConfigError(where, "nodes", "missing or empty: list the nodes to run, e.g. "
                                          "nodes: {env: {class: module:Class}}")
    if not isinstance(value, Mapping):
        raise ConfigError(where, "nodes", "must be a mapping of node name to its settings "
                                          "(class:, params:, ...), not a list")
    if not value:
        raise ConfigError(where, "nodes", "is empty: a run needs at least one node")
    nodes: dict[str, dict[str, Any]] = {}
    for name, settings in value.items():
        problem = validate_node_name(name)
        if problem and isinstance(name, bool):
            problem += " (YAML reads yes/no/on/off/true/false as booleans: quote the name)"
        if problem:
            raise ConfigError(where, f"nodes.{name}", problem)
        if not isinstance(settings, Mapping):
            raise ConfigError(where, f"nodes.{name}", f"must be a mapping with at least 'class: "
                                                      f"module:Class', got {settings!r}")
        for key in settings:
            if key not in NODE_KEYS:
                raise _unknown_key(where, f"nodes.{name}.{key}", key, NODE_KEYS)
        nodes[name] = dict(settings)
    return nodes


def _attach_recorder(nodes: dict[str, dict[str, Any]], record: Path, where: str) -> None:
    """Point the file's recorder at ``record``, or append one named ``recorder`` at the end."""
    for settings in nodes.values():
        if _class_path_of(settings.get("class")) == RECORDER_CLASS:
            given = _mapping_or_empty(settings.get("params"))
            if isinstance(given, Mapping):  # otherwise _params reports the bad value
                settings["params"] = {**given, "path": str(record)}
            return
    if RECORDER_NAME in nodes:
        raise ConfigError(where, f"nodes.{RECORDER_NAME}",
                          f"recording adds a node named {RECORDER_NAME!r} of class "
                          f"{RECORDER_CLASS}; rename this node or make it that class")
    nodes[RECORDER_NAME] = {"class": RECORDER_CLASS, "params": {"path": str(record)}}


def _parse_sets(overrides: Sequence[str], nodes: Mapping[str, Any]
                ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """``--set NODE.a.b=V`` strings grouped by node: ``{node: [(text, {"a": {"b": V}})]}``."""
    if isinstance(overrides, str):  # a lone string would otherwise be split into characters
        overrides = [overrides]
    result: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for text in overrides:
        parts, value = params_mod.parse_assignment(text, where=SET)
        if isinstance(value, str) and value:  # read "1e-3" as a file would (see yamlfile)
            try:
                value = _load_yaml_text(text.split("=", 1)[1], SET)
            except ConfigError:
                pass
        if parts[0] not in nodes:
            raise ConfigError(SET, text.split("=", 1)[0], _unknown_node_message(parts[0], list(nodes)))
        if len(parts) < 2:
            raise ConfigError(SET, text.split("=", 1)[0],
                              f"name a parameter: {parts[0]}.PARAM=VALUE (for example "
                              f"{parts[0]}.gain=2)")
        result.setdefault(parts[0], []).append((text, params_mod.nest(parts[1:], value)))
    return result


def _check_remote_names(remote: Sequence[str], nodes: Mapping[str, Any]) -> set[str]:
    if isinstance(remote, str):
        remote = [remote]
    for name in remote:
        if name not in nodes:
            raise ConfigError(CLI, "--remote", _unknown_node_message(name, list(nodes)))
    return set(remote)


__all__ = ["NODE_KEYS", "RECORDER_CLASS", "RECORDER_NAME"]
