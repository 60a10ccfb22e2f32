"""One node of a launch file, checked: its class imported, its period, its parameters (every
layer validated where it was written), its remaps and its resolved input and output topics."""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from catbus import params as params_mod
from catbus.control.config import RestartPolicy
from catbus.errors import ConfigError
from catbus.spec.callbacks import callback_problems
from catbus.spec.fieldcheck import SET, _absolute, _class_path_of, _is_int, _is_number, \
    _mapping_or_empty
from catbus.spec.imports import describe, import_path_for, shadowing_module, use_import_path
from catbus.spec.yamlfile import _load_yaml_file
from catbus.node import Input, Node
from catbus.topics import ALL_TOPICS, resolve_topic, validate_topic
from catbus.wire.protocol import POLICIES, RESTART_POLICIES


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


# ------------------------------------------------------------------------------------------------
# One node
# ------------------------------------------------------------------------------------------------
def _node_spec(name: str, raw: Mapping[str, Any], *, where: str, base_dir: Path,
               sets: list[tuple[str, dict[str, Any]]], force_remote: bool,
               import_path: Sequence[Path]) -> NodeSpec:
    prefix = f"nodes.{name}"
    class_path, node_class = import_node_class(raw.get("class"), where, prefix,
                                               import_path=import_path)
    for callback, problem in callback_problems(node_class):
        raise ConfigError(where, f"{prefix}.class", f"{class_path}: {problem}")
    node_params, given_params = _params(name, raw, node_class, where=where, base_dir=base_dir,
                                        sets=sets)
    # Outputs and the default period may depend on the parameters (Node.declared_outputs).
    declared_outputs = _from_params(node_class.declared_outputs, node_params, where, prefix)
    period = _period(raw, node_class, where, prefix,
                     lambda: _from_params(node_class.declared_period, node_params, where, prefix))
    remote = _remote(raw.get("remote", False), where, prefix) or force_remote
    remap = _remap(raw.get("remap"), node_class, declared_outputs, where, prefix)
    builtin = class_path.startswith("catbus.")
    inputs, outputs = _bindings(name, node_class, declared_outputs, remap, builtin, where, prefix)
    return NodeSpec(name=name, class_path=class_path, node_class=node_class, params=node_params,
                    period=period, remote=remote, remap=remap, inputs=inputs, outputs=outputs,
                    given_params=given_params, restart=_restart(raw, where, prefix))


def _restart(raw: Mapping[str, Any], where: str, prefix: str) -> "RestartPolicy":
    policy = raw.get("restart", "never")
    if policy not in RESTART_POLICIES:
        raise ConfigError(where, f"{prefix}.restart", f"must be one of "
                                                      f"{', '.join(RESTART_POLICIES)}, got "
                                                      f"{policy!r}")
    count = raw.get("max_restarts", 3)
    if not _is_int(count) or count < 0:
        raise ConfigError(where, f"{prefix}.max_restarts",
                          f"must be a whole number >= 0, got {count!r}")
    backoff = raw.get("restart_backoff", 0.5)
    if not _is_number(backoff) or backoff < 0:
        raise ConfigError(where, f"{prefix}.restart_backoff",
                          f"must be a number of seconds >= 0, got {backoff!r}")
    return RestartPolicy(policy, int(count), float(backoff))


#: How to fix a class path that does not import, in a launch file.
LAUNCH_IMPORT_FIX = ("put the package in one of those folders, or list the folder that holds it "
                     "under 'pythonpath:' in the launch file (relative to the file); and check "
                     "the spelling")


def import_node_class(value: Any, where: str, prefix: str, *,
                      import_path: Sequence[str | os.PathLike] | None = None,
                      fix: str = LAUNCH_IMPORT_FIX) -> tuple[str, type]:
    """Import ``module:Class`` (or accept a Node subclass), reporting every failure as config.

    ``import_path`` (default: the current folder) goes in front of ``sys.path`` first
    (:func:`catbus.spec.imports.use_import_path`); ``fix`` ends the message when the module
    is not found."""
    field_path = f"{prefix}.class" if prefix else "class"
    if value is None:
        raise ConfigError(where, field_path, "missing: give the node's class as module:Class "
                                             "(for example nodes.flat_evade.env:FlatEvadeEnv)")
    if isinstance(value, type):
        node_class: Any = value
        class_path = _class_path_of(value)
    else:
        if not isinstance(value, str) or ":" not in value:
            raise ConfigError(where, field_path, f"must be module:Class (a colon between the module "
                                                 f"and the class), got {value!r}")
        class_path = value.strip()
        module_name, _, attr = class_path.partition(":")
        if not module_name or not attr:
            raise ConfigError(where, field_path, f"must be module:Class, got {value!r}")
        paths = tuple(import_path) if import_path is not None else import_path_for()
        module = _import_module(module_name, where, field_path, paths, fix)
        node_class = _get_attr(module, module_name, attr, where, field_path)
    if not isinstance(node_class, type) or not issubclass(node_class, Node):
        what = "a class not derived from catbus.Node" if isinstance(node_class, type) else \
            f"a {type(node_class).__name__}, not a class"
        raise ConfigError(where, field_path, f"{class_path} is not a catbus.Node subclass (it is "
                                             f"{what})")
    return class_path, node_class


def _import_module(module_name: str, where: str, field_path: str,
                   import_path: Sequence[str | os.PathLike], fix: str) -> Any:
    use_import_path(import_path)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            detail = "" if missing == module_name else f"no module {missing!r}; "
            shadow = shadowing_module(module_name, import_path)
            if shadow is not None and missing != module_name.partition(".")[0]:
                top = module_name.partition(".")[0]
                searched = (f"{top!r} is taken by {shadow}, another package of that name, "
                            f"outside the folders searched first ({describe(import_path)}); a "
                            f"process imports one package of a name")
            else:
                searched = (f"searched {describe(import_path)}, then the installed packages")
            raise ConfigError(where, field_path,
                              f"module {module_name!r} not found ({detail}{searched}); "
                              f"fix: {fix}") from None
        raise ConfigError(where, field_path, f"importing {module_name} failed: "
                                             f"{_one_line(error)}") from None
    except Exception as error:  # noqa: BLE001 -- any import failure is the user's to fix
        raise ConfigError(where, field_path, f"importing {module_name} failed: "
                                             f"{_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _get_attr(module: Any, module_name: str, attr: str, where: str, field_path: str) -> Any:
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            names = [n for n, v in vars(module).items()
                     if isinstance(v, type) and issubclass(v, Node) and v is not Node]
            hint = f" (Node classes there: {', '.join(sorted(names))})" if names else ""
            close = difflib.get_close_matches(part, names, n=1)
            hint += f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(where, field_path, f"module {module_name} has no {attr!r}{hint}")
        target = getattr(target, part)
    return target


def _from_params(hook: Any, params: dict[str, Any], where: str, prefix: str) -> Any:
    """Call a ``Node.declared_*(params)`` hook; its ConfigError gets the file and the node."""
    try:
        return hook(params)
    except ConfigError as exc:
        if exc.where:
            raise
        field_path = f"{prefix}.params" + (f".{exc.field}" if exc.field else "")
        raise ConfigError(where, field_path, exc.message) from None


def _period(raw: Mapping[str, Any], node_class: type, where: str, prefix: str,
            declared_period: Callable[[], Any]) -> float | None:
    if "period" not in raw:
        declared = declared_period()
        if declared is not None and (not _is_number(declared) or declared <= 0):
            raise ConfigError(where, f"{prefix}.class", f"{node_class.__name__} declares "
                                                        f"period={declared!r}; a class period must "
                                                        f"be a positive number or None")
        return float(declared) if declared is not None else None
    value = raw["period"]
    if not _is_number(value) or value <= 0:
        raise ConfigError(where, f"{prefix}.period", f"must be a positive number of seconds (omit "
                                                     f"it to use the class's period), got {value!r}")
    return float(value)


def _remote(value: Any, where: str, prefix: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, f"{prefix}.remote", f"must be true or false, got {value!r}")
    return value


def _params(name: str, raw: Mapping[str, Any], node_class: type, *, where: str, base_dir: Path,
            sets: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Defaults < params_file < params < --set, each layer validated where it was written."""
    declared = node_class.params
    prefix = f"nodes.{name}.params"
    layers: list[Mapping[str, Any]] = []
    if raw.get("params_file") is not None:
        file_params, file_where = _params_file(raw["params_file"], where, base_dir, name)
        params_mod.resolve(declared, file_params, where=file_where, prefix="")
        layers.append(file_params)
    inline = _mapping_or_empty(raw.get("params"))
    if not isinstance(inline, Mapping):
        raise ConfigError(where, prefix, f"must be a mapping of parameter values, got {inline!r}")
    params_mod.resolve(declared, inline, where=where, prefix=prefix)
    layers.append(inline)
    for _text, update in sets:
        params_mod.resolve(declared, update, where=SET, prefix=name)
        layers.append(update)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = params_mod.deep_merge(merged, layer)
    return params_mod.resolve(declared, merged, where=where, prefix=prefix), merged


def _params_file(value: Any, where: str, base_dir: Path, name: str) -> tuple[dict[str, Any], str]:
    field_path = f"nodes.{name}.params_file"
    if not isinstance(value, str) or not value:
        raise ConfigError(where, field_path, f"must be a path to a YAML file, got {value!r}")
    file = _absolute(base_dir / value)
    if not file.is_file():
        raise ConfigError(where, field_path, f"file not found: {file} (paths in a launch file are "
                                             f"relative to its folder)")
    content = _load_yaml_file(file, where=str(file), missing="file not found")
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


def _remap(value: Any, node_class: type, declared_outputs: Sequence[Any], where: str,
           prefix: str) -> dict[str, str]:
    field_path = f"{prefix}.remap"
    value = _mapping_or_empty(value)
    if not isinstance(value, Mapping):
        raise ConfigError(where, field_path, f"must be a mapping of declared name to topic, got "
                                             f"{value!r}")
    declared = _declared_names(node_class, declared_outputs)
    for key, target in value.items():
        if key not in declared:
            message = (f"{key!r} is not an input or output of {node_class.__name__} (declared: "
                       f"{', '.join(declared) or 'none'})")
            close = difflib.get_close_matches(str(key), declared, n=1)
            raise ConfigError(where, f"{field_path}.{key}",
                              message + (f"; did you mean {close[0]!r}?" if close else ""))
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


__all__ = ["TopicBinding", "NodeSpec", "import_node_class", "LAUNCH_IMPORT_FIX"]
