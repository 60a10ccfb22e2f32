"""One node of a launch file, checked after its settings are decoded: its class imported, its
period, its parameters (every layer validated where it was written), its remaps and its resolved
input and output topics. ``import_node_class`` lives in :mod:`catbus.spec.nodeclass` and is
re-exported here for the callers that import it from this module."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from msgspec import UNSET

from catbus import params as params_mod
from catbus.control.config import RestartPolicy
from catbus.errors import CatbusError, ConfigError
from catbus.node import Input
from catbus.spec.callbacks import callback_problems
from catbus.spec.fieldcheck import SET, absolute, did_you_mean, is_number
from catbus.spec.nodeclass import LAUNCH_IMPORT_FIX, checkpoint_problem, import_node_class
from catbus.spec.schema import NodeEntry
from catbus.spec.yamlfile import load_yaml_file
from catbus.topics import ALL_TOPICS, RESERVED_PREFIX, resolve_topic, validate_topic
from catbus.wire.protocol import POLICIES

# ------------------------------------------------------------------------------------------------
# Specs
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicBinding:
    """One declared input or output after name resolution."""

    declared: str      # as the node class declares it ("~/sensors")
    topic: str         # resolved ("robot/sensors"), or "*" for the wildcard input
    policy: str = "latest"  # inputs: "latest" | "all"; outputs: "latest"


@dataclass(frozen=True)
class NodeSpec:
    """One node of a run, fully checked: everything a runner needs to start it."""

    name: str
    class_path: str          # "module:Class"
    node_class: type         # the imported Node subclass
    params: dict             # validated, nested, defaults merged
    period: float | None     # seconds; None = reactive
    remote: bool
    remap: dict[str, str]
    inputs: tuple[TopicBinding, ...]
    outputs: tuple[TopicBinding, ...]
    #: The parameter values the launch file (and ``--set``) gives, without class defaults: what
    #: a swap to another class keeps of them (those that class declares).
    given_params: dict = field(default_factory=dict, compare=False)
    #: ``restart: on-failure``: a failed process is started again, at most ``max_restarts``
    #: times, after ``restart_backoff`` seconds (doubled each time).
    restart: RestartPolicy = field(default_factory=lambda: RestartPolicy())
    #: ``checkpoint: N``: its state goes to the run every N of its steps, and a restart goes
    #: on from the latest (:mod:`catbus.runtime.checkpoints`); None: no checkpoints.
    checkpoint: int | None = None
    #: ``latency:`` (stepped, inline): when its outputs become visible
    #: (:mod:`catbus.runtime.latency`), normalized; None: at once (also for ``latency: 0``).
    latency: Any = None
    #: ``group: NAME`` (or ``--group NAME=a,b``): stepped, the nodes of one group run in one
    #: process (:mod:`catbus.runtime.group`); None: a process of its own.
    group: str | None = None


# ------------------------------------------------------------------------------------------------
# One node
# ------------------------------------------------------------------------------------------------
def node_spec(name: str, entry: NodeEntry, *, where: str, base_dir: Path,
              sets: list[tuple[str, dict[str, Any]]], force_remote: bool,
              import_path: Sequence[Path], origin: Any = None) -> NodeSpec:
    """The checks of one decoded node that need its class: the class imports and its callbacks
    can be called, the parameters fit its declared ones, the remaps name what it declares.
    ``origin`` (a :class:`catbus.spec.includes.NodeOrigin`): the node was included; its errors
    name the file it was written in, and its topics go under the include's namespace."""
    prefix = f"nodes.{name}"
    if origin is not None:
        where, prefix = origin.where, origin.field
        base_dir = origin.folder or base_dir
    class_path, node_class = import_node_class(entry.class_, where, prefix,
                                               import_path=import_path)
    for callback, problem in callback_problems(node_class):
        raise ConfigError(where, f"{prefix}.class", f"{class_path}: {problem}")
    node_params, given_params = _params(name, entry, node_class, where=where, base_dir=base_dir,
                                        sets=sets)
    # Outputs and the default period may depend on the parameters (Node.declared_outputs).
    declared_outputs = _from_params(node_class.declared_outputs, node_params, where, prefix)
    if entry.period is UNSET:
        period = _class_period(node_class, _from_params(node_class.declared_period, node_params,
                                                        where, prefix), where, prefix)
    else:
        period = entry.period
    remap = _remap(entry.remap or {}, node_class, declared_outputs, where, prefix)
    builtin = class_path.startswith("catbus.")
    if origin is not None and origin.namespace:
        remap = namespaced(remap, origin.local_name, origin.namespace,
                           _declared_names(node_class, declared_outputs))
    inputs, outputs = _bindings(name, node_class, declared_outputs, remap, builtin, where, prefix)
    restart = RestartPolicy(entry.restart, entry.max_restarts, entry.restart_backoff)
    checkpoint_problem(node_class, entry.checkpoint, period, where, prefix)
    return NodeSpec(name=name, class_path=class_path, node_class=node_class, params=node_params,
                    period=period, remote=entry.remote or force_remote, remap=remap,
                    inputs=inputs, outputs=outputs, given_params=given_params, restart=restart,
                    checkpoint=entry.checkpoint, group=entry.group,
                    latency=_latency(entry.latency, period, where, prefix, base_dir, name))


def _latency(value: Any, period: float | None, where: str, prefix: str, base_dir: Path,
             name: str) -> Any:
    """The node's ``latency:``, checked and normalized (None: none). A node without a period
    has no steps whose outputs it could delay. A recorded latency's durations are read here,
    from the recording's step log (relative to the launch file's folder), once."""
    from catbus.runtime.latency import latency_problem, normalized

    problem = latency_problem(value)
    if problem is not None:
        raise ConfigError(where, f"{prefix}.latency", problem)
    latency = normalized(value)
    if isinstance(latency, dict) and "recorded" in latency and "durations" not in latency:
        from catbus.reproduce.source import recorded_durations

        path = absolute(base_dir / latency["recorded"])
        try:
            durations = recorded_durations(path, latency.get("node") or name)
        except CatbusError as exc:
            raise ConfigError(where, f"{prefix}.latency.recorded", str(exc)) from None
        latency = {**latency, "recorded": str(path), "durations": durations}
    if latency is not None and period is None:
        raise ConfigError(where, f"{prefix}.latency", "a node without a period has no steps to "
                                                      "delay; remove latency or give a period")
    return latency


def namespaced(remap: Mapping[str, str], local_name: str, namespace: str,
               declared: Sequence[str]) -> dict[str, str]:
    """An included node's remap with every topic under ``namespace``: each declared name,
    resolved as in its own file (``~/`` is its name there), becomes ``NAMESPACE/TOPIC``;
    absolute (``/x``), ``catbus/`` and ``*`` topics stay as they are
    (:mod:`catbus.spec.includes`)."""
    result = dict(remap)
    for declared_name in declared:
        target = remap.get(declared_name, declared_name)
        if target == ALL_TOPICS or target.startswith("/"):
            continue
        topic = resolve_topic(declared_name, local_name, remap)
        if topic == "catbus" or topic.startswith(RESERVED_PREFIX):
            continue
        result[declared_name] = f"{namespace}/{topic}"
    return result


def _from_params(hook: Any, params: dict[str, Any], where: str, prefix: str) -> Any:
    """Call a ``Node.declared_*(params)`` hook; its ConfigError gets the file and the node."""
    try:
        return hook(params)
    except ConfigError as exc:
        if exc.where:
            raise
        field_path = f"{prefix}.params" + (f".{exc.field}" if exc.field else "")
        raise ConfigError(where, field_path, exc.message) from None


def _class_period(node_class: type, declared: Any, where: str, prefix: str) -> float | None:
    """The period a class declares, when the launch file gives none."""
    if declared is not None and (not is_number(declared) or declared <= 0):
        raise ConfigError(where, f"{prefix}.class", f"{node_class.__name__} declares "
                                                    f"period={declared!r}; a class period must "
                                                    f"be a positive number or None")
    return float(declared) if declared is not None else None


def _params(name: str, entry: NodeEntry, node_class: type, *, where: str, base_dir: Path,
            sets: list[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Defaults < params_file < params < --set, each layer validated where it was written;
    also the merged layers without the defaults (what a swap to another class keeps)."""
    declared = node_class.params
    prefix = f"nodes.{name}.params"
    layers: list[Mapping[str, Any]] = []
    if entry.params_file is not None:
        file_params, file_where = _params_file(entry.params_file, where, base_dir, name)
        params_mod.resolve(declared, file_params, where=file_where, prefix="")
        layers.append(file_params)
    inline = entry.params or {}
    params_mod.resolve(declared, inline, where=where, prefix=prefix)
    layers.append(inline)
    for _text, update in sets:
        params_mod.resolve(declared, update, where=SET, prefix=name)
        layers.append(update)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = params_mod.deep_merge(merged, layer)
    return params_mod.resolve(declared, merged, where=where, prefix=prefix), merged


def _params_file(value: str, where: str, base_dir: Path, name: str) -> tuple[dict[str, Any], str]:
    field_path = f"nodes.{name}.params_file"
    file = absolute(base_dir / value)
    if not file.is_file():
        raise ConfigError(where, field_path, f"file not found: {file} (paths in a launch file are "
                                             f"relative to its folder)")
    content = load_yaml_file(file, where=str(file), missing="file not found")
    if content is None:
        return {}, str(file)
    if not isinstance(content, Mapping):
        raise ConfigError(where, field_path, f"{file} must contain a mapping of parameters, got "
                                             f"{type(content).__name__}")
    return dict(content), str(file)


# ------------------------------------------------------------------------------------------------
# Topics
# ------------------------------------------------------------------------------------------------
def _declared_names(node_class: type, declared_outputs: Sequence[Any]) -> list[str]:
    inputs = [item.topic for item in _declared_inputs(node_class)]
    return inputs + [out for out in declared_outputs if isinstance(out, str)]


def _declared_inputs(node_class: type) -> list[Input]:
    return [item if isinstance(item, Input) else Input(item) for item in node_class.inputs]


def _remap(value: Mapping[Any, Any], node_class: type, declared_outputs: Sequence[Any],
           where: str, prefix: str) -> dict[str, str]:
    """Every key a name the class declares, every target a string (the topic is checked once
    resolved, in :func:`_resolved`)."""
    field_path = f"{prefix}.remap"
    declared = _declared_names(node_class, declared_outputs)
    for key, target in value.items():
        if key not in declared:
            raise ConfigError(where, f"{field_path}.{key}",
                              f"{key!r} is not an input or output of {node_class.__name__} "
                              f"(declared: {', '.join(declared) or 'none'})"
                              f"{did_you_mean(key, declared)}")
        if not isinstance(target, str):
            raise ConfigError(where, f"{field_path}.{key}", f"must be a topic name, got {target!r}")
    return dict(value)


def _bindings(name: str, node_class: type, declared_outputs: Sequence[Any],
              remap: Mapping[str, str], builtin: bool, where: str,
              prefix: str) -> tuple[tuple[TopicBinding, ...], tuple[TopicBinding, ...]]:
    """Resolve and check every declared input and output of one node."""
    inputs = []
    for item in _declared_inputs(node_class):
        if item.policy not in POLICIES:
            raise ConfigError(where, f"{prefix}.class", f"{node_class.__name__} declares input "
                                                        f"{item.topic!r} with policy "
                                                        f"{item.policy!r}; use latest or all")
        topic = _resolved(name, node_class, item.topic, remap, builtin, True, where, prefix)
        inputs.append(TopicBinding(item.topic, topic, item.policy))
    outputs = []
    for declared in declared_outputs:
        if not isinstance(declared, str):
            raise ConfigError(where, f"{prefix}.class", f"{node_class.__name__} declares output "
                                                        f"{declared!r}; outputs are topic names")
        topic = _resolved(name, node_class, declared, remap, builtin, False, where, prefix)
        outputs.append(TopicBinding(declared, topic, "latest"))
    return tuple(inputs), tuple(outputs)


def _resolved(name: str, node_class: type, declared: str, remap: Mapping[str, str], builtin: bool,
              is_input: bool, where: str, prefix: str) -> str:
    topic = resolve_topic(declared, name, remap)
    wildcard_ok = is_input and remap.get(declared, declared) == declared == ALL_TOPICS
    problem = validate_topic(topic, allow_wildcard=wildcard_ok, allow_reserved=builtin)
    if problem and topic == ALL_TOPICS and declared in remap:
        problem = ("cannot remap to '*': only a node class can declare the every-topic input "
                   "(it changes what step receives)")
    if problem is None:
        return topic
    if declared in remap:
        raise ConfigError(where, f"{prefix}.remap.{declared}", problem)
    kind = "input" if is_input else "output"
    raise ConfigError(where, f"{prefix}.class", f"{node_class.__name__} declares {kind} "
                                                f"{declared!r}: {problem}")


__all__ = ["TopicBinding", "NodeSpec", "node_spec", "import_node_class", "LAUNCH_IMPORT_FIX"]
