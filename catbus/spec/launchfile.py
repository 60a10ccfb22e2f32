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
    args:                         # optional: arguments, set with --arg NAME=VALUE and used as
      rate: {default: 0.01, help: the environment's period}   # $(arg rate) in any value
    include:                      # optional: another file's nodes under a prefix (includes.py)
      - {file: parts/arm.yaml, prefix: left, args: {rate: $(arg rate)}}
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

How it is checked: ``args:`` and ``include:`` are expanded on the YAML first
(:mod:`catbus.spec.launchargs`, :mod:`catbus.spec.includes`), so that nothing after knows they
exist and a substituted value is checked like a written one. Then the structure (keys, types, ranges, defaults) is the msgspec types of
:mod:`catbus.spec.schema`, decoded by :mod:`catbus.spec.decode`, whose errors name the dotted field
and say what a right value looks like, with "did you mean" for an unknown key. What a type cannot
say is checked after decoding: run-wide values in :mod:`catbus.spec.runchecks`, each node against
its class in :mod:`catbus.spec.nodespec`, ``swap:`` in :mod:`catbus.spec.swapplan`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from catbus.errors import ConfigError
from catbus.spec.decode import decode
from catbus.spec.document import launch_document
from catbus.spec.fieldcheck import absolute, unknown_node_message
from catbus.spec.imports import import_path_for
from catbus.spec.includes import expand_launch
from catbus.spec.launchargs import parse_arg_options
from catbus.spec.nodelist import apply_groups, apply_node_keys, attach_recorder, \
    check_remote_names, decode_nodes, parse_sets
from catbus.spec.nodespec import NodeSpec, TopicBinding, node_spec
from catbus.spec.runchecks import check_mode, check_publishers, command_line, keys_folder, \
    pythonpath, record_path, run_values
from catbus.spec.schema import DEFAULT_MAX_STEPS, LaunchDocument
from catbus.spec.swapplan import ScheduledSwap, parse_swaps
from catbus.spec.yamlfile import load_yaml_file
from catbus.topics import ALL_TOPICS, RESERVED_PREFIX
from catbus.wire.protocol import MODES


def length_reason(spec: "LaunchSpec") -> str:
    """``RunResult.end_reason`` of a run that no node ended: the length it was given ran out
    (``steps``, ``duration``, else the ``max_steps`` bound)."""
    if spec.steps is not None:
        return f"ran its {spec.steps} steps"
    if spec.duration is not None:
        return f"ran its {spec.duration:g} s duration"
    return max_steps_reason(spec.max_steps)


def max_steps_reason(max_steps: int) -> str:
    """``RunResult.end_reason`` of a run that reached its ``max_steps`` bound."""
    return (f"reached max_steps ({max_steps}) without an end of episode; raise max_steps or "
            f"give steps")


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
    #: ``{node: [(tick, changes), ...]}``: parameter changes applied before those ticks, as
    #: they were live when recorded (set by ``catbus play``; :mod:`catbus.runtime.liveparams`).
    param_changes: dict = field(default_factory=dict, compare=False)

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
        raise ConfigError(self._where, f"nodes.{name}",
                          unknown_node_message(name, self.node_names))

    @property
    def groups(self) -> dict[str, list[str]]:
        """``{group: [its nodes, in launch order]}`` (``group:``; empty: none)."""
        found: dict[str, list[str]] = {}
        for spec in self.nodes:
            if spec.group is not None:
                found.setdefault(spec.group, []).append(spec.name)
        return found

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
                keys: str | os.PathLike | None = None,
                args: Mapping[str, Any] | Sequence[str] | None = None,
                groups: Sequence[str] = ()) -> LaunchSpec:
    """Read, validate and override the launch file at ``path``.

    Keyword arguments are command-line values and win over the file; ``None`` keeps the file's
    value. ``record`` is relative to the current directory; ``record=False`` turns off a recording
    the file asks for. ``overrides`` are ``NODE.param.path=value`` strings (``--set``); ``remote``
    names nodes to treat as remote; ``args`` sets the file's ``args:`` (``--arg NAME=VALUE``
    strings or a mapping); ``groups`` are ``NAME=NODE,NODE`` strings (``--group``).
    """
    file = Path(path)
    where = str(file)
    document = load_yaml_file(file, where=where, missing="no such launch file")
    return _build(document, where=where, base_dir=absolute(file).parent, path=file,
                  default_name=file.stem, mode=mode, steps=steps, duration=duration, seed=seed,
                  record=record, overrides=overrides, remote=remote, bus=bus,
                  max_steps=max_steps, pace=pace, keys=keys, args=args, groups=groups)


def build_launch(document: Mapping[str, Any], *, where: str = "<launch>",
                 base_dir: str | os.PathLike | None = None, mode: str | None = None,
                 steps: int | None = None, duration: float | None = None, seed: int | None = None,
                 record: str | os.PathLike | bool | None = None, overrides: Sequence[str] = (),
                 remote: Sequence[str] = (), bus: str | None = None,
                 max_steps: int | None = None, pace: float | None = None,
                 keys: str | os.PathLike | None = None,
                 args: Mapping[str, Any] | Sequence[str] | None = None,
                 groups: Sequence[str] = ()) -> LaunchSpec:
    """Validate launch data given as a dict (the Python API), with the same overrides as
    :func:`load_launch`. Relative paths in ``document`` are relative to ``base_dir`` (default: the
    current directory at call time); ``where`` names the source in error messages."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    return _build(document, where=where, base_dir=base, path=None, default_name="launch",
                  mode=mode, steps=steps, duration=duration, seed=seed, record=record,
                  overrides=overrides, remote=remote, bus=bus, max_steps=max_steps,
                  pace=pace, keys=keys, args=args, groups=groups)


def _build(document: Any, *, where: str, base_dir: Path, path: Path | None, default_name: str,
           mode: str | None, steps: int | None, duration: float | None, seed: int | None,
           record: str | os.PathLike | bool | None, overrides: Sequence[str],
           remote: Sequence[str], bus: str | None, max_steps: int | None = None,
           pace: float | None = None, keys: str | os.PathLike | None = None,
           args: Mapping[str, Any] | Sequence[str] | None = None,
           groups: Sequence[str] = ()) -> LaunchSpec:
    """The one pipeline behind both entry points: arguments and includes at the YAML level,
    decode the structure, then the checks that need more than types (the run-wide values, each
    node against its class, across nodes)."""
    if document is None:
        raise ConfigError(where, "", "the launch file is empty; it needs at least a 'nodes:' "
                                     "mapping")
    cli = command_line(dict(mode=mode, steps=steps, duration=duration, seed=seed, bus=bus,
                            max_steps=max_steps, pace=pace))
    expanded = expand_launch(document, where=where, base_dir=base_dir, path=path,
                             args=parse_arg_options(args))
    top = decode(expanded.document, LaunchDocument, where=where)
    run = run_values(top, cli, where=where, default_name=default_name)
    run_record = record_path(top.record, record, base_dir, where)
    run_keys = keys_folder(top.security.keys if top.security else None, keys, base_dir, where)
    import_path = import_path_for([*pythonpath(top.pythonpath, base_dir, where), base_dir,
                                   *expanded.folders])
    origins = expanded.origins

    entries = decode_nodes(top.nodes, where, origins)
    if run_record is not None:
        attach_recorder(entries, run_record, where)
    apply_groups(groups, entries)
    sets = parse_sets(apply_node_keys(overrides, entries), entries)
    remote_names = check_remote_names(remote, entries)
    nodes = tuple(node_spec(name, entry, where=where, base_dir=base_dir, sets=sets.get(name, []),
                            force_remote=name in remote_names, import_path=import_path,
                            origin=origins.get(name))
                  for name, entry in entries.items())
    check_publishers(nodes, where)
    check_mode(nodes, run, where)
    swaps = parse_swaps(top.swap, nodes, where=where, import_path=import_path)

    doc = launch_document(run, description=top.description, record=run_record,
                          import_path=import_path, nodes=nodes, swaps=swaps, keys=run_keys)
    return LaunchSpec(path=path, name=run.name, nodes=nodes, bus=run.bus, mode=run.mode,
                      steps=run.steps, duration=run.duration, seed=run.seed, record=run_record,
                      document=doc, import_path=import_path, max_steps=run.max_steps,
                      pace=run.pace, swaps=swaps, keys=run_keys)


__all__ = ["LaunchSpec", "load_launch", "build_launch", "MODES", "DEFAULT_MAX_STEPS",
           "max_steps_reason"]
