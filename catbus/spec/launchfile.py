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
    max_steps: 100000             # without steps/duration: the bound of a run a node ends
                                  # (end_episode); same unit as steps; default 100000
    seed: 0                       # default 0; a non-negative integer
    record: runs/flat_evade.mcap  # optional; relative to this file's folder
    bus: ipc                      # default ipc (private temp folder) or tcp://HOST:PORT for the
                                  # registry, when nodes run on other machines (see "TCP" below)
    pythonpath: [..]              # optional; folders searched first for classes, relative to
                                  # this file (see "Imports" below)
    pace: 1.0                     # stepped/inline: run at this many times real time (--pace)
    security: {keys: keys/}       # TCP: CURVE keys from `catbus keys generate` (--keys DIR);
                                  # relative to this file; not used on an ipc bus
    swap:                         # optional: swaps as part of the experiment (swapplan.py)
      - {at: 2.5, node: robot, params: {safe_controller: Unsafe}}
    nodes:                        # in schedule order: within a tick, nodes step in this order
      env:                        # the node's name: its identity on the bus ([A-Za-z_][A-Za-z0-9_]*)
        class: nodes.flat_evade.env:FlatEvadeEnv   # module:Class, a catbus.Node subclass
        period: 0.01              # seconds; default: the class's period
        params: {...}             # checked against the class's Param declaration
        params_file: env.yaml     # a YAML mapping merged UNDER params; relative to this file
        remap: {"~/sensors": robot/sensors}        # declared name -> topic
        remote: false             # true: started elsewhere with `catbus node`; the launcher waits
        restart: on-failure       # never (default) | on-failure: start a failed process again,
        max_restarts: 3           #   at most this often, after restart_backoff seconds
        restart_backoff: 0.5      #   (doubled each time)

Decisions worth knowing:

* **End of a run.** At most one of ``steps`` and ``duration``. With neither, the run lasts
  until a node ends the episode (``end_episode``), bounded by ``max_steps`` (default
  :data:`DEFAULT_MAX_STEPS`, periods of the first periodic node like ``steps``; in ``parallel``
  the same bound as wall-clock seconds, ``max_steps`` x that node's period). A run that reaches
  the bound ends normally with ``RunResult.end_reason`` saying so (:func:`max_steps_reason`).
  ``steps`` or ``duration``, when given, win and ``max_steps`` is not used. ``steps: 0`` runs
  the reset tick only. A command-line ``steps`` replaces a file's ``duration`` and vice versa.
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
  folder (:mod:`catbus.spec.imports`). The launcher, every node process (``--path`` options)
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

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from catbus.errors import ConfigError
from catbus.spec.fieldcheck import CLI, _absolute, _is_int, _is_number, _unknown_key, \
    _unknown_node_message
from catbus.spec.imports import import_path_for
from catbus.spec.nodelist import _attach_recorder, _check_remote_names, _parse_sets, _raw_nodes
from catbus.spec.nodespec import NodeSpec, TopicBinding, _node_spec
from catbus.spec.swapplan import ScheduledSwap, parse_swaps
from catbus.spec.yamlfile import _load_yaml_file
from catbus.topics import ALL_TOPICS, RESERVED_PREFIX
from catbus.wire.protocol import MODES, bus_address_problem

TOP_KEYS = ("name", "description", "mode", "steps", "duration", "max_steps", "seed", "record",
            "bus", "pythonpath", "pace", "swap", "nodes", "security")

#: The bound of a run without ``steps`` or ``duration`` (periods of the first periodic node).
DEFAULT_MAX_STEPS = 100_000


def max_steps_reason(max_steps: int) -> str:
    """``RunResult.end_reason`` of a run that reached its ``max_steps`` bound."""
    return (f"reached max_steps ({max_steps}) without an end of episode; raise max_steps or "
            f"give steps")

_RUN_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")


# ------------------------------------------------------------------------------------------------
# Specs
# ------------------------------------------------------------------------------------------------
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
    #: The bound of a run without ``steps`` or ``duration``, in periods of the first periodic
    #: node (see :attr:`bounded_by_max_steps`).
    max_steps: int = DEFAULT_MAX_STEPS
    #: ``stepped``/``inline``: run at this many times real time (None: as fast as possible).
    pace: float | None = None
    #: The launch file's ``swap:`` schedule, in the order of ``at``.
    swaps: tuple[ScheduledSwap, ...] = ()
    #: ``security: {keys: DIR}`` (or ``--keys``): the keys folder, absolute; None: no keys.
    keys: Path | None = None

    @property
    def bounded_by_max_steps(self) -> bool:
        """True when neither ``steps`` nor ``duration`` is given: the run lasts until a node
        ends the episode, at most ``max_steps`` periods of the first periodic node."""
        return self.steps is None and self.duration is None

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

    def unpublished_input_warnings(self) -> list[str]:
        """One line per input nobody publishes, naming the file, the node, the topic and the
        nearest published topic names (a typo in a remap is the usual cause)."""
        import difflib

        published = sorted(self.publishers())
        lines = []
        for name, binding in self.unpublished_inputs():
            near = difflib.get_close_matches(binding.topic, published, n=3, cutoff=0.6)
            hint = (f"; did you mean {', '.join(near)}?" if near else
                    f"; published topics: {', '.join(published) or 'none'}")
            lines.append(f"{self._where}: nodes.{name}: input {binding.declared!r} reads "
                         f"{binding.topic!r}, which no node of this launch publishes (it stays "
                         f"None unless a tool publishes it){hint}")
        return lines

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
                remote: Sequence[str] = (), bus: str | None = None,
                max_steps: int | None = None, pace: float | None = None,
                keys: str | os.PathLike | None = None) -> LaunchSpec:
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
                  record=record, overrides=overrides, remote=remote, bus=bus,
                  max_steps=max_steps, pace=pace, keys=keys)


def build_launch(document: Mapping[str, Any], *, where: str = "<launch>",
                 base_dir: str | os.PathLike | None = None, mode: str | None = None,
                 steps: int | None = None, duration: float | None = None, seed: int | None = None,
                 record: str | os.PathLike | bool | None = None, overrides: Sequence[str] = (),
                 remote: Sequence[str] = (), bus: str | None = None,
                 max_steps: int | None = None, pace: float | None = None,
                 keys: str | os.PathLike | None = None) -> LaunchSpec:
    """Validate launch data given as a dict (the Python API), with the same overrides as
    :func:`load_launch`. Relative paths in ``document`` are relative to ``base_dir`` (default: the
    current directory at call time); ``where`` names the source in error messages."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _build(document, where=where, base_dir=base, path=None, default_name="launch",
                  mode=mode, steps=steps, duration=duration, seed=seed, record=record,
                  overrides=overrides, remote=remote, bus=bus, max_steps=max_steps,
                  pace=pace, keys=keys)


def _build(document: Any, *, where: str, base_dir: Path, path: Path | None, default_name: str,
           mode: str | None, steps: int | None, duration: float | None, seed: int | None,
           record: str | os.PathLike | bool | None, overrides: Sequence[str],
           remote: Sequence[str], bus: str | None, max_steps: int | None = None,
           pace: float | None = None, keys: str | os.PathLike | None = None) -> LaunchSpec:
    """The one pipeline behind both entry points: top level, nodes, overrides, cross-checks."""
    top = _check_top(document, where)
    run_name = _run_name(top.get("name"), default_name, where)
    run_mode = _mode(top.get("mode"), mode, where)
    run_steps, run_duration = _end(top, steps, duration, where)
    run_max_steps = _max_steps(top.get("max_steps"), max_steps, where)
    run_seed = _seed(top.get("seed"), seed, where)
    run_record = _record(top.get("record"), record, base_dir, where)
    run_bus = _bus(top.get("bus"), bus, where)
    run_keys = _security(top.get("security"), keys, base_dir, where)
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
    run_pace = _pace(top.get("pace"), pace, where)
    swaps = parse_swaps(top.get("swap"), nodes, where=where, import_path=import_path)

    doc = _document(top, run_name, run_mode, run_steps, run_duration, run_seed, run_record,
                    run_bus, import_path, nodes, run_max_steps)
    if run_pace is not None:
        doc["pace"] = run_pace
    if swaps:
        doc["swap"] = _plain([entry.document() for entry in swaps])
    if run_keys is not None:
        doc["security"] = {"keys": str(run_keys)}
    return LaunchSpec(path=path, name=run_name, nodes=nodes, bus=run_bus, mode=run_mode,
                      steps=run_steps, duration=run_duration, seed=run_seed, record=run_record,
                      document=doc, import_path=import_path, max_steps=run_max_steps,
                      pace=run_pace, swaps=swaps, keys=run_keys)


# ------------------------------------------------------------------------------------------------
# Top level
# ------------------------------------------------------------------------------------------------
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


def _max_steps(file_value: Any, cli_value: Any, where: str) -> int:
    """``max_steps``: a positive integer (periods of the first periodic node)."""
    value, src, key = _source(cli_value, file_value, "max-steps", where)
    if src != CLI:
        key = "max_steps"
    if value is None:
        return DEFAULT_MAX_STEPS
    if not _is_int(value) or value <= 0:
        raise ConfigError(src, key, f"must be a positive integer (the most periods of the first "
                                    f"periodic node a run without steps or duration lasts), got "
                                    f"{value!r}")
    return value


def _pace(file_value: Any, cli_value: Any, where: str) -> float | None:
    """``pace``: stepped and inline runs at this many times real time (1: as fast as the wall
    clock); None runs as fast as they can. Parallel runs are in real time anyway."""
    value, src, key = _source(cli_value, file_value, "pace", where)
    if value is None:
        return None
    if not _is_number(value) or not value > 0 or value == float("inf"):
        raise ConfigError(src, key, f"must be a positive number (1 = real time, 2 = twice as "
                                    f"fast), got {value!r}")
    return float(value)


def _seed(file_value: Any, cli_value: int | None, where: str) -> int:
    value, src, key = _source(cli_value, file_value, "seed", where)
    if value is None:
        return 0
    if not _is_int(value) or value < 0:
        raise ConfigError(src, key, f"must be a non-negative integer, got {value!r}")
    return value

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


def _security(file_value: Any, cli_value: Any, base_dir: Path, where: str) -> Path | None:
    """``security: {keys: DIR}`` (DIR relative to the file) or ``--keys DIR`` (relative to the
    current folder): the keys folder, absolute and loadable (catbus.security), else None."""
    if cli_value is not None:
        src, key, folder = CLI, "--keys", _absolute(Path(cli_value))
    elif file_value is None:
        return None
    else:
        if not isinstance(file_value, Mapping) or set(file_value) != {"keys"} or \
                not isinstance(file_value["keys"], str) or not file_value["keys"]:
            raise ConfigError(where, "security", f"must be {{keys: DIR}} (DIR: a folder from "
                                                 f"`catbus keys generate DIR`, relative to this "
                                                 f"file), got {file_value!r}")
        src, key, folder = where, "security.keys", _absolute(base_dir / file_value["keys"])
    from catbus.security import load_keys

    try:
        load_keys(folder, src)
    except ConfigError as exc:
        raise ConfigError(src, key, exc.message) from None
    return folder


# ------------------------------------------------------------------------------------------------
# Checks across nodes
# ------------------------------------------------------------------------------------------------
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
              import_path: Sequence[Path], nodes: Sequence[NodeSpec],
              max_steps: int = DEFAULT_MAX_STEPS) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name}
    if top.get("description") is not None:
        doc["description"] = top["description"]
    # The whole import path, absolute: the document resolves the same classes from any folder
    # (build_launch(document) adds only its own base folder and current folder after them), and
    # a recording's metadata tells `catbus eval` where its evaluator came from.
    doc.update({"mode": mode, "steps": steps, "duration": duration, "max_steps": max_steps,
                "seed": seed,
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
    if spec.restart.enabled:
        entry.update(restart=spec.restart.policy, max_restarts=spec.restart.max_restarts,
                     restart_backoff=spec.restart.backoff)
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


__all__ = ["LaunchSpec", "load_launch", "build_launch", "MODES", "DEFAULT_MAX_STEPS",
           "max_steps_reason"]
