"""The run-wide values of a launch, once the file (:class:`~catbus.spec.schema.LaunchDocument`)
and the command line (:class:`~catbus.spec.schema.CommandLine`) are decoded: which of the two
wins, the defaults, and the checks a type cannot make (a folder exists, a bus address is
well-formed, keys load, one publisher per topic, what the mode allows)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from catbus.errors import ConfigError
from catbus.spec.decode import decode, description, type_at
from catbus.spec.fieldcheck import CLI, absolute
from catbus.spec.nodespec import NodeSpec
from catbus.spec.schema import BUS_DESCRIPTION, DEFAULT_MAX_STEPS, CommandLine, LaunchDocument
from catbus.wire.protocol import bus_address_problem


@dataclass(frozen=True)
class RunValues:
    """The run-wide values after the command line, with their defaults applied."""

    name: str
    mode: str
    steps: int | None
    duration: float | None
    max_steps: int
    seed: int
    pace: float | None
    bus: str
    #: Whether ``steps`` came from the command line (an error about it names ``--steps``).
    steps_from_cli: bool


def command_line(values: dict[str, Any]) -> CommandLine:
    """The keyword arguments of ``load_launch`` decoded; an error names ``--the-option``."""
    given = {key: value for key, value in values.items() if value is not None}
    try:
        return decode(given, CommandLine, where=CLI)
    except ConfigError as exc:
        raise ConfigError(CLI, "--" + exc.field.replace("_", "-"), exc.message) from None


def run_values(top: LaunchDocument, cli: CommandLine, *, where: str,
               default_name: str) -> RunValues:
    """Command-line values over the file's, then the defaults. ``steps`` and ``duration`` end
    the run two ways: at most one of them, and one from the command line replaces both of the
    file's."""
    if cli.steps is not None and cli.duration is not None:
        raise ConfigError(CLI, "--steps", "give --steps or --duration, not both")
    from_cli = cli.steps is not None or cli.duration is not None
    if not from_cli and top.steps is not None and top.duration is not None:
        raise ConfigError(where, "steps", "give steps or duration, not both (remove one)")
    steps, duration = (cli.steps, cli.duration) if from_cli else (top.steps, top.duration)
    return RunValues(name=top.name or default_name, mode=_first(cli.mode, top.mode, "parallel"),
                     steps=steps, duration=duration,
                     max_steps=_first(cli.max_steps, top.max_steps, DEFAULT_MAX_STEPS),
                     seed=_first(cli.seed, top.seed, 0), pace=_first(cli.pace, top.pace, None),
                     bus=_bus(top.bus, cli.bus, where), steps_from_cli=cli.steps is not None)


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), values[-1])


def _bus(file_value: str | None, cli_value: str | None, where: str) -> str:
    value, src, key = (cli_value, CLI, "--bus") if cli_value is not None else \
        (file_value, where, "bus")
    if value is None or value == "ipc":
        return "ipc"
    if not isinstance(value, str) or not value.startswith("tcp://"):
        raise ConfigError(src, key, f"must be {BUS_DESCRIPTION}, got {value!r}")
    problem = bus_address_problem(value)
    if problem is not None:   # what is wrong with it: an IPv6 address without brackets ...
        raise ConfigError(src, key, f"{value}: {problem}")
    return value


def record_path(file_value: str | bool | None, cli_value: Any, base_dir: Path,
                where: str) -> Path | None:
    """The recording, absolute: the command line's (relative to the current folder; False
    turns the file's off) or the file's (relative to the file)."""
    if cli_value is False:
        return None
    if cli_value is not None:
        if not isinstance(cli_value, (str, os.PathLike)) or not str(cli_value):
            raise ConfigError(CLI, "--record", f"must be a file path, got {cli_value!r}")
        return absolute(Path(cli_value))
    if file_value is True:
        expected = description(type_at(LaunchDocument, ["record"]))
        raise ConfigError(where, "record", f"must be {expected} or false, got True")
    if not file_value:
        return None
    return absolute(base_dir / file_value)


def pythonpath(folders: Sequence[str] | None, base_dir: Path, where: str) -> list[Path]:
    """The ``pythonpath:`` folders, absolute (relative ones relative to the launch file), each
    an existing folder."""
    found = []
    for index, entry in enumerate(folders or ()):
        folder = absolute(base_dir / entry)
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "no such folder"
            raise ConfigError(where, f"pythonpath[{index}]",
                              f"{what}: {folder} (paths in a launch file are relative to its "
                              f"folder; list the folder that holds your node packages)")
        found.append(folder)
    return found


def keys_folder(file_keys: str | None, cli_value: Any, base_dir: Path,
                where: str) -> Path | None:
    """``security: {keys: DIR}`` (relative to the file) or ``--keys DIR`` (relative to the
    current folder): the keys folder, absolute and loadable (catbus.security), else None."""
    if cli_value is not None:
        src, key, folder = CLI, "--keys", absolute(Path(cli_value))
    elif file_keys is None:
        return None
    else:
        src, key, folder = where, "security.keys", absolute(base_dir / file_keys)
    from catbus.security import load_keys

    try:
        load_keys(folder, src)
    except ConfigError as exc:
        raise ConfigError(src, key, exc.message) from None
    return folder


def check_publishers(nodes: Sequence[NodeSpec], where: str) -> None:
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


def check_mode(nodes: Sequence[NodeSpec], run: RunValues, where: str) -> None:
    """Checks that depend on the mode and the end of the run."""
    if run.steps is not None and not any(spec.period is not None for spec in nodes):
        raise ConfigError(CLI if run.steps_from_cli else where,
                          "--steps" if run.steps_from_cli else "steps",
                          "counts periods of the first periodic node, but no node has a period; "
                          "give a period or use duration")
    delayed = next((spec for spec in nodes if spec.latency is not None), None)
    if run.mode == "parallel" and delayed is not None:
        raise ConfigError(where, f"nodes.{delayed.name}.latency",
                          "a latency model is for stepped and inline runs; in parallel the "
                          "latency is real (each step takes the time it takes): remove latency "
                          "or use --mode stepped or inline")
    check_checkpoints(nodes, run, where)
    check_groups(nodes, where)
    if run.mode == "inline":
        for spec in nodes:
            if spec.remote:
                raise ConfigError(where, f"nodes.{spec.name}.remote",
                                  "inline mode runs every node in this one process, so it cannot "
                                  "have remote nodes: use --mode stepped or parallel")


def check_groups(nodes: Sequence[NodeSpec], where: str) -> None:
    """A group (``group:``) is one process the launcher starts: none of its nodes can be
    remote, nor restarted (:mod:`catbus.runtime.group`): the group's process dying is several
    neighbours restarting at once, and two restarted neighbours wait for each other's answer
    to their hello before either starts."""
    for spec in nodes:
        if spec.group is None:
            continue
        if spec.remote:
            raise ConfigError(where, f"nodes.{spec.name}.group",
                              f"node {spec.name} is remote, but a group is one process the "
                              f"launcher starts on this host: remove group or remote")
        if spec.restart.enabled:
            raise ConfigError(where, f"nodes.{spec.name}.restart",
                              f"node {spec.name} is in group {spec.group}: the nodes of a group "
                              f"cannot be restarted yet (its process dying would restart them "
                              f"all at once); remove restart, or group")


def check_checkpoints(nodes: Sequence[NodeSpec], run: RunValues, where: str) -> None:
    """Stepped and inline: a node restarted from its checkpoint is fed again from its
    publishers' retained messages, so they must retain the checkpoint interval (twice over,
    see :func:`catbus.runtime.checkpoints.needed_ticks`); an interval they cannot is refused,
    naming the longest that fits. (Parallel restarts are not exact and need no retention.)"""
    given = [spec for spec in nodes if spec.checkpoint is not None]
    if not given or run.mode == "parallel":
        return
    from catbus.runtime.checkpoints import retention_problem
    from catbus.runtime.schedule import build_schedule

    schedule = build_schedule([(spec.name, spec.period) for spec in nodes], steps=1,
                              duration=None, where=where)
    for spec in given:
        problem = retention_problem(spec.name, spec.checkpoint, schedule)
        if problem is not None:
            raise ConfigError(where, f"nodes.{spec.name}.checkpoint", problem)


def data_ports_problem(ports: tuple[int, int], names: Sequence[str],
                       free: int | None = None, host: str = "") -> str | None:
    """Why the data-port range ``ports`` cannot serve the node processes ``names`` (each binds
    one port of it), or None. ``free``: how many of its ports could be bound on ``host`` now
    (None: not probed)."""
    low, high = ports
    size = high - low + 1
    need = len(names)
    if need == 0:
        return None
    nodes = ", ".join(names)
    fix = f"widen it to at least {need} ports, e.g. --data-ports {low}-{low + need - 1}" \
        if low + need - 1 < 65536 else f"give a range of at least {need} ports"
    if size < need:
        return (f"{low}-{high} has {size} port{'s' if size != 1 else ''} for {need} node "
                f"processes that bind here, one each ({nodes}); {fix}")
    if free is not None and free < need:
        wider = f"--data-ports {low}-{min(high + need - free, 65535)}"
        return (f"only {free} of the {size} ports of {low}-{high} are free on {host} for {need} "
                f"node processes that bind here ({nodes}); stop what uses them, or widen it, "
                f"e.g. {wider}" if free else
                f"no port of {low}-{high} is free on {host} for the node processes that bind "
                f"here ({nodes}); stop what uses them, or give another range")
    return None


def free_ports(host: str, ports: tuple[int, int], enough: int | None = None) -> int:
    """How many ports of ``ports`` a listening socket could bind on ``host`` now (as ZeroMQ
    binds: SO_REUSEADDR, so a port in TIME_WAIT counts as free); counting stops at
    ``enough``."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    count = 0
    for port in range(ports[0], ports[1] + 1):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
                count += 1
            except OSError:
                continue
        if enough is not None and count >= enough:
            break
    return count


def check_data_ports(ports: tuple[int, int], names: Sequence[str], bus: str | None,
                     field: str = "--data-ports") -> None:
    """Refuse (ConfigError, exit 2) before anything starts a ``--data-ports`` range that cannot
    give each node process ``names`` started here a port on the address they bind (the one this
    host reaches the TCP ``bus`` from); an ipc bus binds no port."""
    if not bus or not bus.startswith("tcp://"):
        return
    problem = data_ports_problem(ports, names)
    if problem is None and names:
        from catbus.runtime.hostaddr import reachable_host

        host = reachable_host(bus)
        problem = data_ports_problem(ports, names, free_ports(host, ports, len(names)), host)
    if problem is not None:
        raise ConfigError(CLI, field, problem)


__all__ = ["check_checkpoints", "data_ports_problem", "free_ports", "check_data_ports", "RunValues", "command_line", "run_values", "record_path", "pythonpath",
           "keys_folder", "check_publishers", "check_mode"]
