"""``catbus node module:Class --name NAME --bus ADDR``: one node process joining a run (and
``catbus node list``, see :mod:`catbus.cli.nodes`).

The launcher starts local nodes with this very command; a user starts a remote node with it on
another host. Parameters and the seed come from the registry when the run's launch file has the
node; ``--param`` values are used only by an open bus (``catbus bus``) that has no launch file.
A ``--param`` that the run's launch file overrules (the node runs with another value) is said
on stderr, naming the value used and how to change it (``catbus launch --set``); the node still
joins, so the run is not failed by it.

The node runtime and the class are imported only when the node runs, so that building the
``catbus`` parser stays cheap.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any, Sequence

from catbus.cli.common import EXIT_CODES, RAW, add_log_level, add_run_choice
from catbus.errors import CatbusError, ConfigError
from catbus.spec.imports import import_path_for
from catbus.wire.protocol import bus_address_problem


def add_parser(commands: Any) -> None:
    """Add ``node`` to the ``catbus`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("node", help="run one node and join a run (`catbus node list`: "
                            "list the nodes of a running run)", epilog=EXIT_CODES,
                            formatter_class=RAW)
    p.add_argument("target", metavar="CLASS|list|info", help="module:Class of the node, or "
                   "'list', or 'info NAME' (one node of a running run)")
    p.add_argument("node_name", nargs="?", metavar="NAME", help="info: the node to describe")
    p.add_argument("--json", action="store_true", help="list, info: machine-readable output")
    p.add_argument("--name", help="node name (its identity in the run)")
    add_run_choice(p, "registry address, e.g. tcp://10.0.0.1:7700 (default: the run on this "
                      "machine)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="parameter, for an open bus (`catbus bus`); a run whose launch file has "
                        "this node sets its parameters (a --param that differs is warned about "
                        "and not used: use `catbus launch --set NODE.KEY=VALUE`) (repeatable)")
    p.add_argument("--remap", action="append", default=[], metavar="DECLARED=TOPIC",
                   help="rename a declared topic (repeatable)")
    p.add_argument("--period", type=float, help="override the class's period (seconds)")
    p.add_argument("--advertise", metavar="IP", help="address other hosts reach this one at")
    p.add_argument("--data-ports", metavar="FIRST-LAST",
                   help="bind the node's data socket on a free port of this range (TCP; for a "
                        "firewall that opens only these), e.g. 7710-7799; default: any free port")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the registry (default 10)")
    p.add_argument("--path", dest="paths", action="append", default=[], metavar="DIR",
                   help="folder searched first for the class's package (repeatable; then the "
                   "current folder, then the installed packages); the launcher passes its run's "
                   "import path this way: the launch file's pythonpath folders, its folder, "
                   "its current folder")
    p.add_argument("--replace", action="store_true",
                   help="take the place of the running node of this name (hot swap: this "
                        "process connects, then takes over between two steps, then the old one "
                        "stops; from any host); --param values then go on top of the launch "
                        "file's")
    p.add_argument("--restart", action="store_true",
                   help="the running process of this name died: take its place at once, "
                        "starting where its readers stopped hearing from it (what "
                        "`catbus launch --only` does under restart: on-failure)")
    p.add_argument("--with", dest="with_nodes", action="append", default=[],
                   metavar="NAME=CLASS",
                   help="run this node too, in the same process (a node group: stepped mode "
                        "only; its messages to this node pass without a socket); its parameters "
                        "and topics come from the run's launch file (repeatable; what the "
                        "launcher does for `group:`)")
    add_log_level(p, None)
    p.set_defaults(func=cmd_node)


def cmd_node(args: argparse.Namespace) -> int:
    """``catbus node list`` lists the nodes; ``catbus node CLASS`` runs one (``--name`` is
    required: it is the node's identity in the run)."""
    if args.target in ("list", "info"):
        from catbus.cli.nodes import cmd_nodes

        return cmd_nodes(args)
    if args.node_name is not None:
        print(f"catbus: node: unexpected argument {args.node_name!r} (only `catbus node info "
              f"NAME` takes a name; a node's name is --name)", file=sys.stderr)
        return 2
    if not args.name:
        print("catbus: node: --name is required (the node's identity in the run)",
              file=sys.stderr)
        return 2
    return run_node(args.target, name=args.name, bus=args.bus, run=args.run, params=args.param,
                    data_ports=args.data_ports,
                    remaps=args.remap, period=args.period, advertise=args.advertise,
                    timeout=args.timeout, paths=args.paths, log_level=args.log_level,
                    replace=args.replace, restart=args.restart, keys=args.keys,
                    with_nodes=args.with_nodes)


def _parse_remaps(remaps: Sequence[str]) -> dict[str, str]:
    result = {}
    for item in remaps:
        if "=" not in item:
            raise ConfigError("--remap", item, "expected DECLARED=TOPIC, e.g. ~/sensors=robot/sensors")
        declared, topic = item.split("=", 1)
        result[declared] = topic
    return result


def _find_bus(bus: str | None, run: str | None = None) -> str:
    if bus and not run:
        return _check_bus(bus)
    from catbus.client import find_registry

    return find_registry(bus, run)


def _check_bus(bus: str) -> str:
    """``--bus`` as ZeroMQ must see it: a malformed address was a ZMQError traceback."""
    problem = bus_address_problem(bus)
    if problem is None:
        return bus
    raise ConfigError("--bus", bus, f"{problem}; give the registry's address")


def _check_advertise(address: str | None) -> str | None:
    """``--advertise``: the node binds its data socket on that address, so it must be one of this
    host's (a bad one was a ZMQError traceback at bind). Returns it as the host of an endpoint
    (an IPv6 address in brackets: ``fd00::2`` and ``[fd00::2]`` both give ``[fd00::2]``)."""
    if not address:
        return None
    from catbus.runtime.hostaddr import endpoint_host, machine_addresses
    from catbus.wire.sockets import is_ipv6

    bare = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    family = socket.AF_INET6 if is_ipv6(bare) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((bare, 0))
    except (OSError, UnicodeError) as exc:
        mine = ", ".join(a for a in machine_addresses() if a not in ("127.0.0.1", "::1")) \
            or "127.0.0.1"
        reason = getattr(exc, "strerror", None) or exc
        raise ConfigError("--advertise", address, f"not an address of this host "
                                                   f"({reason}); the node binds "
                                                   f"its data socket there, so give the IP "
                                                   f"other hosts reach it at: {mine}") from None
    return endpoint_host(bare)


#: How to fix a class path that ``catbus node`` cannot import.
NODE_IMPORT_FIX = ("run from the folder that holds the package, or give that folder with "
                   "--path DIR (repeatable); check the spelling")


def _import_path(paths: Sequence[str]) -> tuple:
    """``--path`` folders (relative to the current folder) then the current folder: the same
    import path rule as the launcher's (:mod:`catbus.spec.imports`)."""
    for folder in paths:
        if not os.path.isdir(folder):
            raise ConfigError("--path", folder, f"no such folder on this host "
                                                f"({os.path.abspath(folder)}); give the folder "
                                                f"that holds the node's package here")
    return import_path_for(paths)


def _members(with_nodes: Sequence[str], first: Any, paths: Sequence[str]) -> list[Any]:
    """``--with NAME=CLASS``: the other nodes of a group, each like ``first`` but for its class
    and name (parameters and topics come from the registry)."""
    from catbus.cli.node_runtime import CliNodeRuntime
    from catbus.spec.callbacks import callback_problems
    from catbus.spec.nodespec import import_node_class
    from catbus.topics import validate_node_name

    members = []
    names = {first.name}
    for text in with_nodes:
        name, equals, class_path = text.partition("=")
        problem = validate_node_name(name) if equals and class_path else \
            "expected NAME=module:Class"
        if problem is None and name in names:
            problem = f"node {name} is named twice"
        if problem:
            raise ConfigError("catbus node", "--with", f"{text!r}: {problem}")
        names.add(name)
        _, node_class = import_node_class(class_path, "catbus node", "--with",
                                          import_path=_import_path(paths), fix=NODE_IMPORT_FIX)
        for _, problem in callback_problems(node_class):
            raise ConfigError("catbus node", "--with", f"{class_path}: {problem}")
        member = CliNodeRuntime(node_class, name, first.bus, class_path=class_path,
                                registry_timeout=first.registry_timeout,
                                log_level=first.log_level, keys=first.keys)
        member.parent_pid, member.data_ports = first.parent_pid, first.data_ports
        members.append(member)
    return members


def run_node(class_path: str, *, name: str, bus: str | None, run: str | None = None,
             params: Sequence[str] = (),
             remaps: Sequence[str] = (), period: float | None = None,
             advertise: str | None = None, timeout: float = 10.0,
             paths: Sequence[str] = (), log_level: str | None = None,
             replace: bool = False, restart: bool = False, keys: str | None = None,
             data_ports: str | None = None, with_nodes: Sequence[str] = ()) -> int:
    """Run one node (and the ``with_nodes``, ``NAME=CLASS``, in the same process: a group)
    until the run ends; returns the exit code.

    ``paths`` (``--path``) and the current folder go in front of ``sys.path`` before the class
    is imported (the launcher passes its run's import path this way)."""
    from catbus import params as params_mod
    from catbus import security
    from catbus.cli.node_runtime import CliNodeRuntime
    from catbus.runtime.inbox import InputBinding
    from catbus.runtime.signals import Interrupted, install_signal_handlers, \
        set_parent_death_signal, start_orphan_watchdog
    from catbus.spec.callbacks import callback_problems
    from catbus.spec.nodespec import import_node_class
    from catbus.topics import resolve_topic

    parent = os.environ.pop("CATBUS_PARENT_PID", None)
    runtime: Any = None
    try:
        set_parent_death_signal(int(parent) if parent else None)
        start_orphan_watchdog(int(parent) if parent else None)
        _, node_class = import_node_class(class_path, "catbus node", "node",
                                          import_path=_import_path(paths), fix=NODE_IMPORT_FIX)
        for _, problem in callback_problems(node_class):
            raise ConfigError("catbus node", "class", f"{class_path}: {problem}")
        given: dict = {}
        for assignment in params:
            parts, value = params_mod.parse_assignment(assignment, where="--param")
            given = params_mod.deep_merge(given, params_mod.nest(parts, value))
        params_mod.resolve(node_class.params, given, where="--param", prefix="")
        remap = _parse_remaps(remaps)
        inputs = [InputBinding(i.topic, resolve_topic(i.topic, name, remap), i.policy)
                  for i in node_class.declared_inputs()]
        outputs = [(o, resolve_topic(o, name, remap)) for o in node_class.outputs]
        advertise = _check_advertise(advertise)
        loaded = security.load_option(keys)   # --keys: CURVE on a TCP bus
        runtime = CliNodeRuntime(node_class, name, _find_bus(bus, run), class_path=class_path,
                                 params=given, inputs=inputs, outputs=outputs, period=period,
                                 advertise=advertise, registry_timeout=timeout,
                                 log_level=log_level, replace=replace, keys=loaded)
        runtime.restart = restart
        runtime.parent_pid = int(parent) if parent else None
        if data_ports is not None:
            from catbus.runtime.dataplane import parse_ports

            try:
                runtime.data_ports = parse_ports(data_ports)
            except ValueError as exc:
                raise ConfigError("--data-ports", data_ports, str(exc).split(": ", 1)[-1]) \
                    from None
        if with_nodes:
            if replace or restart:
                raise ConfigError("catbus node", "--with", "a group cannot --replace or "
                                                           "--restart a node: run it alone")
            from catbus.runtime.group import GroupRuntime

            runtime = GroupRuntime([runtime, *_members(with_nodes, runtime, paths)])
        install_signal_handlers(runtime)
    except Interrupted as exc:
        return exc.exit_code
    except CatbusError as exc:
        print(f"catbus: {exc}", file=sys.stderr)
        return 2
    try:
        return runtime.run()
    except Interrupted as exc:   # a signal before run() got to its own handling
        return exc.exit_code
