"""A launch file's ``nodes:`` mapping before any class is imported: node names checked, each
node's settings decoded (:class:`~catbus.spec.schema.NodeEntry`), the recorder attached,
``--set`` overrides and ``--remote`` names matched to nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import msgspec

from catbus import params as params_mod
from catbus.errors import ConfigError
from catbus.spec.decode import decode
from catbus.spec.fieldcheck import CLI, SET, class_path_of, unknown_node_message
from catbus.spec.schema import NodeEntry
from catbus.spec.yamlfile import load_yaml_text
from catbus.topics import validate_node_name

RECORDER_CLASS = "catbus.recording.recorder:Recorder"
RECORDER_NAME = "recorder"


def decode_nodes(value: Mapping[Any, Any], where: str,
                 origins: Mapping[str, Any] | None = None) -> dict[str, NodeEntry]:
    """Each node's settings decoded on its own, so that an error names the node (msgspec
    reports a mapping's value without its key). ``origins``: where included nodes were
    written (:class:`catbus.spec.includes.NodeOrigin`), which their errors name instead."""
    nodes: dict[str, NodeEntry] = {}
    for name, settings in value.items():
        problem = validate_node_name(name)
        if problem and isinstance(name, bool):
            problem += " (YAML reads yes/no/on/off/true/false as booleans: quote the name)"
        if problem:
            raise ConfigError(where, f"nodes.{name}", problem)
        origin = (origins or {}).get(name)
        nodes[name] = decode(settings, NodeEntry, where=origin.where if origin else where,
                             prefix=origin.field if origin else f"nodes.{name}")
    return nodes


def attach_recorder(nodes: dict[str, NodeEntry], record: Path, where: str) -> None:
    """Point the file's recorder at ``record``, or append one named ``recorder`` at the end."""
    for name, entry in nodes.items():
        if class_path_of(entry.class_) == RECORDER_CLASS:
            nodes[name] = msgspec.structs.replace(
                entry, params={**(entry.params or {}), "path": str(record)})
            return
    if RECORDER_NAME in nodes:
        raise ConfigError(where, f"nodes.{RECORDER_NAME}",
                          f"recording adds a node named {RECORDER_NAME!r} of class "
                          f"{RECORDER_CLASS}; rename this node or make it that class")
    nodes[RECORDER_NAME] = NodeEntry(class_=RECORDER_CLASS, params={"path": str(record)})


#: Node keys (not parameters) that ``--set NODE.KEY=VALUE`` sets: ``--set robot.latency=0.05``
#: is the node's ``latency:`` (a parameter of that name is not reachable by ``--set``).
NODE_KEYS = ("latency",)


def apply_node_keys(overrides: Sequence[str], nodes: dict[str, NodeEntry]) -> list[str]:
    """Apply the ``--set NODE.KEY=VALUE`` overrides of :data:`NODE_KEYS` to the decoded nodes
    (checked here, so that a bad value names ``--set``); returns the other overrides, the
    parameters', for :func:`parse_sets`."""
    from catbus.runtime.latency import latency_problem

    if isinstance(overrides, str):
        overrides = [overrides]
    rest = []
    for text in overrides:
        key = text.split("=", 1)[0].strip().split(".")
        if len(key) != 2 or key[1] not in NODE_KEYS or key[0] not in nodes or "=" not in text:
            rest.append(text)
            continue
        _parts, value = params_mod.parse_assignment(text, where=SET)
        if isinstance(value, str) and value:  # read "1e-3" as a file would (see yamlfile)
            try:
                value = load_yaml_text(text.split("=", 1)[1], SET)
            except ConfigError:
                pass
        problem = latency_problem(value)
        if problem is not None:
            raise ConfigError(SET, text.split("=", 1)[0].strip(), problem)
        nodes[key[0]] = msgspec.structs.replace(nodes[key[0]], **{key[1]: value})
    return rest


def parse_sets(overrides: Sequence[str], nodes: Mapping[str, Any]
               ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """``--set NODE.a.b=V`` strings grouped by node: ``{node: [(text, {"a": {"b": V}})]}``."""
    if isinstance(overrides, str):  # a lone string would otherwise be split into characters
        overrides = [overrides]
    result: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for text in overrides:
        parts, value = params_mod.parse_assignment(text, where=SET)
        if isinstance(value, str) and value:  # read "1e-3" as a file would (see yamlfile)
            try:
                value = load_yaml_text(text.split("=", 1)[1], SET)
            except ConfigError:
                pass
        if parts[0] not in nodes:
            raise ConfigError(SET, text.split("=", 1)[0],
                              unknown_node_message(parts[0], list(nodes)))
        if len(parts) < 2:
            raise ConfigError(SET, text.split("=", 1)[0],
                              f"name a parameter: {parts[0]}.PARAM=VALUE (for example "
                              f"{parts[0]}.gain=2)")
        result.setdefault(parts[0], []).append((text, params_mod.nest(parts[1:], value)))
    return result


def apply_groups(groups: Sequence[str], nodes: dict[str, NodeEntry]) -> None:
    """``--group NAME=a,b,c``: put those nodes in group ``NAME`` (over the file's ``group:``;
    the recorder a recording adds can be named too)."""
    if isinstance(groups, str):
        groups = [groups]
    for text in groups:
        group, equals, members = text.partition("=")
        group = group.strip()
        names = [name.strip() for name in members.split(",") if name.strip()]
        if not equals or not group or not names:
            raise ConfigError(CLI, "--group", f"{text!r}: expected NAME=NODE,NODE,... (for "
                                              f"example --group world=env,human,recorder)")
        try:
            decode({"class": "x:y", "group": group}, NodeEntry, where=CLI, prefix="--group")
        except ConfigError as exc:
            raise ConfigError(CLI, "--group", f"{text!r}: {exc.message}") from None
        for name in names:
            if name not in nodes:
                raise ConfigError(CLI, "--group", unknown_node_message(name, list(nodes)))
            nodes[name] = msgspec.structs.replace(nodes[name], group=group)


def check_remote_names(remote: Sequence[str], nodes: Mapping[str, Any]) -> set[str]:
    """The ``--remote`` names, each a node of the launch file."""
    if isinstance(remote, str):
        remote = [remote]
    for name in remote:
        if name not in nodes:
            raise ConfigError(CLI, "--remote", unknown_node_message(name, list(nodes)))
    return set(remote)


__all__ = ["RECORDER_CLASS", "RECORDER_NAME", "NODE_KEYS", "apply_node_keys", "decode_nodes",
           "attach_recorder", "parse_sets", "apply_groups",
           "check_remote_names"]
