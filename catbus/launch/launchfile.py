"""Launch files: what runs, with which parameters, wired to which topics, in which mode.

Everything about a run is checked here, before any process starts: a typo in a launch file, a
parameter or a ``--set`` is one line naming the file, the dotted field and the fix
(:class:`~catbus.errors.ConfigError`), never a traceback from a child process minutes later.

Format (YAML)::

    name: flat_evade              # default: the file's stem ("launch" for a dict)
    description: free text        # optional, ignored
    mode: parallel                # parallel (default) | stepped | inline; --mode overrides
    steps: 500                    # N periods of the FIRST periodic node in the file (the
                                  # environment): ticks 0..N, i.e. N steps after the reset
    # duration: 5.0               # or seconds of (simulated or wall) time; not both
    seed: 0                       # default 0; a non-negative integer
    record: runs/flat_evade.mcap  # optional; relative to this file's folder
    bus: ipc                      # default ipc (private temp folder) or tcp://HOST:PORT for the
                                  # registry, when nodes run on other machines (see "TCP" below)
    pythonpath: [..]              # optional; folders searched first for classes, relative to
                                  # this file (see "Imports" below)
    nodes:                        # in schedule order: within a tick, nodes step in this order
      env:                        # the node's name: its identity on the bus ([A-Za-z_][A-Za-z0-9_]*)
        class: nodes.flat_evade.env:FlatEvadeEnv   # module:Class, a catbus.Node subclass
        period: 0.01              # seconds; default: the class's period
        params: {...}             # checked against the class's Param declaration
        params_file: env.yaml     # a YAML mapping merged UNDER params; relative to this file
        remap: {"~/sensors": robot/sensors}        # declared name -> topic
        remote: false             # true: started elsewhere with `catbus node`; the launcher waits

Decisions worth knowing:

* **End of a run.** At most one of ``steps`` and ``duration``. With neither, a ``parallel`` run
  goes on until a node ends the episode or Ctrl-C; ``stepped`` and ``inline`` refuse to start,
  because a simulated clock would run as fast as it can forever (give an upper bound with
  ``--steps``; a node may still end the episode earlier). ``steps: 0`` runs the reset tick only.
  A command-line ``steps`` replaces a file's ``duration`` and vice versa.
* **Overrides.** Command-line values win over the file. ``--set NODE.a.b=VALUE`` (YAML value)
  lands on top of ``params``, which lands on top of ``params_file``, which lands on top of the
  class defaults. Each layer is validated on its own, so an error names the file (or ``--set``)
  it came from.
* **Paths.** Paths in a file (``record``, ``params_file``) are relative to that file's folder;
  a ``record`` given on the command line is relative to the current directory. Both end up
  absolute, because nodes may run with another working directory.
* **Recording.** With ``record``, a node ``recorder`` of class ``catbus.recording.recorder:Recorder`` is
  appended last (it subscribes to everything) with ``params.path`` set to the absolute path;
  if the file already has a node of that class, only its ``path`` is set.
* **Topics.** One publisher per topic (two would make the recording and the lockstep ambiguous).
  An input that nobody publishes is allowed (a remote tool may publish it, or it is optional);
  :meth:`LaunchSpec.unpublished_inputs` lists them so the runtime can warn.
* **Remote nodes** are refused in ``inline`` mode (one process cannot host a node that runs
  elsewhere). Their classes must still be importable here, since parameters and topics are checked
  before anything starts.
* **TCP.** The registry binds ``bus``, so HOST is an address of the launcher's machine: the
  one the other hosts reach it at (``tcp://10.0.0.1:7700``), or ``0.0.0.0`` for every interface.
  Every node binds its data socket on the address it reaches the registry from and registers
  that as its endpoint (``catbus node --advertise IP`` overrides it); the launcher's own nodes,
  given a ``0.0.0.0`` registry, use this host's address instead
  (:func:`catbus.runtime.dataplane.host_address`: the default route's interface, else the only
  address). A remote node runs ``catbus node module:Class --name NAME --bus tcp://HOST:PORT``
  with HOST as *it* reaches the launcher's machine; its parameters and the run seed come from
  the registry, never from files on its host.
* **Imports.** Class paths are imported with the run's *import path* in front of ``sys.path``:
  the ``pythonpath:`` folders (relative to the file), the launch file's folder, then the current
  folder (:mod:`catbus.launch.imports`). The launcher, every node process (``--path`` options)
  and ``catbus eval`` use the same folders, so a user's ``nodes/`` package next to the launch
  file or in the current folder is found in every mode, installed catbus or not; catbus installs
  no ``nodes`` package of its own. :attr:`LaunchSpec.import_path` is that list, and the document
  records it as absolute ``pythonpath`` folders (so it resolves the same classes from anywhere).
* Classes whose module is under ``catbus.`` (the framework's own nodes) may use ``catbus/`` topics.
* :attr:`LaunchSpec.document` is the launch data after every override, with every node's full
  parameters and effective period, plain YAML: it is recorded as metadata, and
  ``build_launch(spec.document)`` rebuilds the same spec (sweeps rely on that).

Python scripts pass a dict to :func:`build_launch`; there ``class`` may also be a Node subclass
itself instead of ``"module:Class"``.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from catbus import params as params_mod
from catbus.errors import ConfigError
from catbus.launch.imports import describe, import_path_for, shadowing_module, use_import_path
from catbus.launch.callbacks import callback_problems
from catbus.node import Input, Node
from catbus.wire.protocol import MODES, POLICIES, bus_address_problem
from catbus.topics import ALL_TOPICS, RESERVED_PREFIX, resolve_topic, validate_node_name, \
    validate_topic

TOP_KEYS = ("name", "description", "mode", "steps", "duration", "seed", "record", "bus",
            "pythonpath", "nodes")
NODE_KEYS = ("class", "period", "params", "params_file", "remap", "remote")
RECORDER_CLASS = "catbus.recording.recorder:Recorder"
RECORDER_NAME = "recorder"
CLI = "command line"
SET = "--set"

_RUN_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")


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


@dataclass(frozen=True)
class LaunchSpec:
    """A whole run, checked. ``nodes`` is in launch-file order, which is the schedule order."""

    path: Path | None        # the launch file, None when built from a dict
    name: str
    nodes: tuple[NodeSpec, ...]
    bus: str                 # "ipc" or "tcp://HOST:PORT" to bind the registry on
    mode: str                # "parallel" | "stepped" | "inline"
    steps: int | None
    duration: float | None
    seed: int
    record: Path | None
    document: dict = field(repr=False)  # launch data after all overrides, plain YAML
    #: Folders searched first for class paths, in order (absolute): the file's ``pythonpath:``
    #: folders, its own folder, the current folder at load time. Node processes get them as
    #: ``catbus node --path DIR`` options.
    import_path: tuple[Path, ...] = ()

    def node(self, name: str) -> NodeSpec:
        """The node called ``name``; a ConfigError listing the nodes if there is none."""
        for spec in self.nodes:
            if spec.name == name:
                return spec
        raise ConfigError(self._where, f"nodes.{name}", _unknown_node_message(name, self.node_names))

    @property
    def node_names(self) -> list[str]:
        return [spec.name for spec in self.nodes]

    @property
    def clock_node(self) -> str | None:
        """The first periodic node: ``steps`` counts its periods (the environment, by convention)."""
        return next((spec.name for spec in self.nodes if spec.period is not None), None)

    def publishers(self) -> dict[str, str]:
        """``{topic: name of the node publishing it}`` (one publisher per topic)."""
        return {out.topic: spec.name for spec in self.nodes for out in spec.outputs}

    def unpublished_inputs(self) -> list[tuple[str, TopicBinding]]:
        """``(node name, input)`` for every input topic that no node of this launch publishes.

        Not an error: a remote tool may publish it, or the input may be optional. The runtime
        warns, because in ``stepped`` mode such an input simply stays ``None``.
        """
        published = self.publishers()
        return [(spec.name, binding) for spec in self.nodes for binding in spec.inputs
                if binding.topic != ALL_TOPICS and binding.topic not in published
                and not binding.topic.startswith(RESERVED_PREFIX)]

    def to_yaml(self) -> str:
        """:attr:`document` as YAML text (a launch file that reproduces this run)."""
        return yaml.safe_dump(self.document, sort_keys=False, default_flow_style=False)

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else "<launch>"


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------
def load_launch(path: str | os.PathLike, *, mode: str | None = None, steps: int | None = None,
                duration: float | None = None, seed: int | None = None,
                record: str | os.PathLike | bool | None = None, overrides: Sequence[str] = (),
                remote: Sequence[str] = (), bus: str | None = None) -> LaunchSpec:
    """Read, validate and override the launch file at ``path``.

    Keyword arguments are command-line values and win over the file; ``None`` keeps the file's
    value. ``record`` is relative to the current directory; ``record=False`` turns off a recording
    the file asks for. ``overrides`` are ``NODE.param.path=value`` strings (``--set``); ``remote``
    names nodes to treat as remote.
    """
    file = Path(path)
    where = str(file)
    document = _load_yaml_file(file, where=where, missing="no such launch file")
    return _build(document, where=where, base_dir=_absolute(file).parent, path=file,
                  default_name=file.stem, mode=mode, steps=steps, duration=duration, seed=seed,
                  record=record, overrides=overrides, remote=remote, bus=bus)


def build_launch(document: Mapping[str, Any], *, where: str = "<launch>",
                 base_dir: str | os.PathLike | None = None, mode: str | None = None,
                 steps: int | None = None, duration: float | None = None, seed: int | None = None,
                 record: str | os.PathLike | bool | None = None, overrides: Sequence[str] = (),
                 remote: Sequence[str] = (), bus: str | None = None) -> LaunchSpec:
    """Validate launch data given as a dict (the Python API), with the same overrides as
    :func:`load_launch`. Relative paths in ``document`` are relative to ``base_dir`` (default: the
    current directory at call time); ``where`` names the source in error messages."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _build(document, where=where, base_dir=base, path=None, default_name="launch",
                  mode=mode, steps=steps, duration=duration, seed=seed, record=record,
                  overrides=overrides, remote=remote, bus=bus)


def _build(document: Any, *, where: str, base_dir: Path, path: Path | None, default_name: str,
           mode: str | None, steps: int | None, duration: float | None, seed: int | None,
           record: str | os.PathLike | bool | None, overrides: Sequence[str],
           remote: Sequence[str], bus: str | None) -> LaunchSpec:
    """The one pipeline behind both entry points: top level, nodes, overrides, cross-checks."""
    top = _check_top(document, where)
    run_name = _run_name(top.get("name"), default_name, where)
    run_mode = _mode(top.get("mode"), mode, where)
    run_steps, run_duration = _end(top, steps, duration, where)
    run_seed = _seed(top.get("seed"), seed, where)
    run_record = _record(top.get("record"), record, base_dir, where)
    run_bus = _bus(top.get("bus"), bus, where)
    import_path = import_path_for([*_pythonpath(top.get("pythonpath"), base_dir, where),
                                   base_dir])

    raw_nodes = _raw_nodes(top.get("nodes"), where)
    if run_record is not None:
        _attach_recorder(raw_nodes, run_record, where)
    sets = _parse_sets(overrides, raw_nodes)
    remote_names = _check_remote_names(remote, raw_nodes)

    nodes = tuple(_node_spec(name, raw, where=where, base_dir=base_dir, sets=sets.get(name, []),
                             force_remote=name in remote_names, import_path=import_path)
                  for name, raw in raw_nodes.items())
    _check_publishers(nodes, where)
    _check_mode(nodes, run_mode, run_steps, run_duration, where, steps_from_cli=steps is not None)

    doc = _document(top, run_name, run_mode, run_steps, run_duration, run_seed, run_record,
                    run_bus, import_path, nodes)
    return LaunchSpec(path=path, name=run_name, nodes=nodes, bus=run_bus, mode=run_mode,
                      steps=run_steps, duration=run_duration, seed=run_seed, record=run_record,
                      document=doc, import_path=import_path)


# ------------------------------------------------------------------------------------------------
# YAML
# ------------------------------------------------------------------------------------------------
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


def _load_yaml_text(text: str, where: str) -> Any:
    try:
        return _UniqueKeyLoader(text).load_checked(where)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = ": ".join(str(part) for part in (error.context, error.problem) if part)
        raise ConfigError(where, "", f"{place}invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(where, "", f"invalid YAML: {error}") from None


def _load_yaml_file(file: Path, *, where: str, missing: str) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(where, "", f"{missing} (looked for {file.resolve()})") from None
    except IsADirectoryError:
        raise ConfigError(where, "", "is a folder, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(where, "", f"cannot read it: {error}") from None
    return _load_yaml_text(text, where)


# ------------------------------------------------------------------------------------------------
# Top level
# ------------------------------------------------------------------------------------------------
def _unknown_key(where: str, field_path: str, key: Any, allowed: Iterable[str]) -> ConfigError:
    allowed = list(allowed)
    message = f"unknown key {key!r} (allowed: {', '.join(allowed)})"
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return ConfigError(where, field_path, message)


def _check_top(document: Any, where: str) -> Mapping[str, Any]:
    if document is None:
        raise ConfigError(where, "", "the launch file is empty; it needs at least a 'nodes:' "
                                     "mapping")
    if not isinstance(document, Mapping):
        raise ConfigError(where, "", f"the top level must be a mapping with a 'nodes:' key, got "
                                     f"{type(document).__name__}")
    for key in document:
        if key not in TOP_KEYS:
            raise _unknown_key(where, str(key), key, TOP_KEYS)
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _source(cli_value: Any, file_value: Any, key: str, where: str) -> tuple[Any, str, str]:
    """Pick the command-line value over the file's, with where an error about it should point."""
    if cli_value is not None:
        return cli_value, CLI, f"--{key}"
    return file_value, where, key


def _run_name(value: Any, default: str, where: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or not _RUN_NAME.match(value):
        raise ConfigError(where, "name", f"must be a name of letters, digits, '_', '.' or '-', got "
                                         f"{value!r}")
    return value


def _mode(file_value: Any, cli_value: str | None, where: str) -> str:
    value, src, key = _source(cli_value, file_value, "mode", where)
    if value is None:
        return "parallel"
    if value not in MODES:
        raise ConfigError(src, key, f"must be one of {', '.join(MODES)}, got {value!r}")
    return value


def _end(top: Mapping[str, Any], cli_steps: Any, cli_duration: Any,
         where: str) -> tuple[int | None, float | None]:
    """``steps`` and ``duration``: at most one; a command-line value replaces both file values."""
    if cli_steps is not None and cli_duration is not None:
        raise ConfigError(CLI, "--steps", "give --steps or --duration, not both")
    if cli_steps is not None or cli_duration is not None:
        steps, duration, src = cli_steps, cli_duration, CLI
    else:
        steps, duration, src = top.get("steps"), top.get("duration"), where
        if steps is not None and duration is not None:
            raise ConfigError(where, "steps", "give steps or duration, not both (remove one)")
    prefix = "--" if src == CLI else ""
    if steps is not None and (not _is_int(steps) or steps < 0):
        raise ConfigError(src, f"{prefix}steps", f"must be a non-negative integer (periods of the "
                                                 f"first periodic node), got {steps!r}")
    if duration is not None and (not _is_number(duration) or duration <= 0):
        raise ConfigError(src, f"{prefix}duration", f"must be a positive number of seconds, got "
                                                    f"{duration!r}")
    return steps, (float(duration) if duration is not None else None)


def _seed(file_value: Any, cli_value: int | None, where: str) -> int:
    value, src, key = _source(cli_value, file_value, "seed", where)
    if value is None:
        return 0
    if not _is_int(value) or value < 0:
        raise ConfigError(src, key, f"must be a non-negative integer, got {value!r}")
    return value


def _absolute(path: Path) -> Path:
    """Absolute without resolving symlinks (the user's spelling of the folder stays)."""
    return Path(os.path.abspath(path.expanduser()))


def _record(file_value: Any, cli_value: Any, base_dir: Path, where: str) -> Path | None:
    if cli_value is False:
        return None
    if cli_value is not None:
        if not isinstance(cli_value, (str, os.PathLike)) or not str(cli_value):
            raise ConfigError(CLI, "--record", f"must be a file path, got {cli_value!r}")
        return _absolute(Path(cli_value))
    if file_value is None or file_value is False:
        return None
    if not isinstance(file_value, str) or not file_value:
        raise ConfigError(where, "record", f"must be a file path (for example runs/a.mcap), got "
                                           f"{file_value!r}")
    return _absolute(base_dir / file_value)


def _pythonpath(value: Any, base_dir: Path, where: str) -> list[Path]:
    """The ``pythonpath:`` folders, absolute (relative ones relative to the launch file)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(where, "pythonpath", f"must be a list of folders (relative to this "
                                               f"file), for example pythonpath: [..], got "
                                               f"{value!r}")
    folders = []
    for index, entry in enumerate(value):
        field_path = f"pythonpath[{index}]"
        if not isinstance(entry, str) or not entry.strip():
            raise ConfigError(where, field_path, f"must be a folder path (relative to this "
                                                 f"file), got {entry!r}")
        folder = _absolute(base_dir / entry)
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "no such folder"
            raise ConfigError(where, field_path, f"{what}: {folder} (paths in a launch file are "
                                                 f"relative to its folder; list the folder that "
                                                 f"holds your node packages)")
        folders.append(folder)
    return folders


def _bus(file_value: Any, cli_value: str | None, where: str) -> str:
    value, src, key = _source(cli_value, file_value, "bus", where)
    if value is None or value == "ipc":
        return "ipc"
    if not isinstance(value, str) or not value.startswith("tcp://") or \
            bus_address_problem(value) is not None:
        raise ConfigError(src, key, f"must be 'ipc' or 'tcp://HOST:PORT' (for example "
                                    f"tcp://0.0.0.0:7700), got {value!r}")
    return value


# ------------------------------------------------------------------------------------------------
# Nodes: raw mappings, recorder, --set, --remote
# ------------------------------------------------------------------------------------------------
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


def _parse_sets(overrides: Sequence[str], nodes: Mapping[str, Any]
                ) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """``--set NODE.a.b=V`` strings grouped by node: ``{node: [(text, {"a": {"b": V}})]}``."""
    if isinstance(overrides, str):  # a lone string would otherwise be split into characters
        overrides = [overrides]
    result: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for text in overrides:
        parts, value = params_mod.parse_assignment(text, where=SET)
        if isinstance(value, str) and value:  # read "1e-3" as a file would (see the loader)
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
    period = _period(raw, node_class, where, prefix)
    node_params = _params(name, raw, node_class, where=where, base_dir=base_dir, sets=sets)
    remote = _remote(raw.get("remote", False), where, prefix) or force_remote
    remap = _remap(raw.get("remap"), node_class, where, prefix)
    builtin = class_path.startswith("catbus.")
    inputs, outputs = _bindings(name, node_class, remap, builtin, where, prefix)
    return NodeSpec(name=name, class_path=class_path, node_class=node_class, params=node_params,
                    period=period, remote=remote, remap=remap, inputs=inputs, outputs=outputs)


#: How to fix a class path that does not import, in a launch file.
LAUNCH_IMPORT_FIX = ("put the package in one of those folders, or list the folder that holds it "
                     "under 'pythonpath:' in the launch file (relative to the file); and check "
                     "the spelling")


def import_node_class(value: Any, where: str, prefix: str, *,
                      import_path: Sequence[str | os.PathLike] | None = None,
                      fix: str = LAUNCH_IMPORT_FIX) -> tuple[str, type]:
    """Import ``module:Class`` (or accept a Node subclass), reporting every failure as config.

    ``import_path`` (default: the current folder) goes in front of ``sys.path`` first
    (:func:`catbus.launch.imports.use_import_path`); ``fix`` ends the message when the module
    is not found."""
    field_path = f"{prefix}.class"
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


def _period(raw: Mapping[str, Any], node_class: type, where: str, prefix: str) -> float | None:
    if "period" not in raw:
        declared = node_class.period
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
    return params_mod.resolve(declared, merged, where=where, prefix=prefix)


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
def _declared_names(node_class: type) -> list[str]:
    inputs = [item.topic for item in _declared_inputs(node_class)]
    return inputs + [out for out in node_class.outputs if isinstance(out, str)]


def _declared_inputs(node_class: type) -> list[Input]:
    return [item if isinstance(item, Input) else Input(item) for item in node_class.inputs]


def _remap(value: Any, node_class: type, where: str, prefix: str) -> dict[str, str]:
    field_path = f"{prefix}.remap"
    value = _mapping_or_empty(value)
    if not isinstance(value, Mapping):
        raise ConfigError(where, field_path, f"must be a mapping of declared name to topic, got "
                                             f"{value!r}")
    declared = _declared_names(node_class)
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


def _bindings(name: str, node_class: type, remap: Mapping[str, str], builtin: bool, where: str,
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
    for declared in node_class.outputs:
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


def _check_publishers(nodes: Sequence[NodeSpec], where: str) -> None:
    """One publisher per topic: the lockstep and the recording key everything by topic."""
    owner: dict[str, str] = {}
    for spec in nodes:
        for out in spec.outputs:
            if out.topic in owner:
                first = owner[out.topic]
                who = f"nodes {first} and {spec.name}" if first != spec.name else \
                    f"node {spec.name} twice"
                raise ConfigError(where, f"nodes.{spec.name}.remap",
                                  f"topic {out.topic!r} is published by {who}; a topic has one "
                                  f"publisher: remap one of them ({out.declared!r} here)")
            owner[out.topic] = spec.name


def _check_mode(nodes: Sequence[NodeSpec], mode: str, steps: int | None, duration: float | None,
                where: str, steps_from_cli: bool) -> None:
    """Checks that depend on the mode and the end of the run."""
    if steps is not None and not any(spec.period is not None for spec in nodes):
        raise ConfigError(CLI if steps_from_cli else where, "--steps" if steps_from_cli else "steps",
                          "counts periods of the first periodic node, but no node has a period; "
                          "give a period or use duration")
    if mode in ("stepped", "inline") and steps is None and duration is None:
        raise ConfigError(where, "steps", f"{mode} mode simulates time and needs an end: give "
                                          f"steps or duration in the file, or --steps/--duration")
    if mode == "inline":
        for spec in nodes:
            if spec.remote:
                raise ConfigError(where, f"nodes.{spec.name}.remote",
                                  "inline mode runs every node in this one process, so it cannot "
                                  "have remote nodes: use --mode stepped or parallel")


# ------------------------------------------------------------------------------------------------
# The document after overrides
# ------------------------------------------------------------------------------------------------
def _document(top: Mapping[str, Any], name: str, mode: str, steps: int | None,
              duration: float | None, seed: int, record: Path | None, bus: str,
              import_path: Sequence[Path], nodes: Sequence[NodeSpec]) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name}
    if top.get("description") is not None:
        doc["description"] = top["description"]
    # The whole import path, absolute: the document resolves the same classes from any folder
    # (build_launch(document) adds only its own base folder and current folder after them), and
    # a recording's metadata tells `catbus eval` where its evaluator came from.
    doc.update({"mode": mode, "steps": steps, "duration": duration, "seed": seed,
                "record": str(record) if record is not None else None, "bus": bus,
                "pythonpath": [str(folder) for folder in import_path]})
    doc["nodes"] = {spec.name: _node_document(spec) for spec in nodes}
    return _plain(doc)


def _node_document(spec: NodeSpec) -> dict[str, Any]:
    entry: dict[str, Any] = {"class": spec.class_path}
    if spec.period is not None:
        entry["period"] = spec.period
    entry["params"] = spec.params
    if spec.remap:
        entry["remap"] = spec.remap
    entry["remote"] = spec.remote
    return entry


def _plain(value: Any) -> Any:
    """Only YAML's own types: numpy values, tuples and paths become plain Python."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars (np.float64 is a float subclass,
        return _plain(value.tolist())  # which safe_dump refuses)
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


__all__ = ["TopicBinding", "NodeSpec", "LaunchSpec", "load_launch", "build_launch", "MODES",
           "RECORDER_CLASS", "RECORDER_NAME"]
