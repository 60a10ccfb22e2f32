"""``catbus node module:Class --name NAME --bus ADDR``: one node process joining a run.

The launcher starts local nodes with this very command; a user starts a remote node with it on
another host. Parameters and the seed come from the registry when the run's launch file has the
node; ``--param`` values are used only by an open bus (``catbus bus``) that has no launch file.
A ``--param`` that the run's launch file overrules (the node runs with another value) is said
on stderr, naming the value used and how to change it (``catbus launch --set``); the node still
joins, so the run is not failed by it.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any, Mapping, Sequence

from catbus import params as params_mod
from catbus.errors import CatbusError, ConfigError
from catbus.runtime.inbox import InputBinding
from catbus.spec.imports import import_path_for
from catbus.spec.callbacks import callback_problems
from catbus.spec.nodespec import import_node_class
from catbus.runtime.process import NodeRuntime
from catbus.runtime.signals import Interrupted, install_signal_handlers, \
    set_parent_death_signal, start_orphan_watchdog
from catbus.topics import resolve_topic
from catbus.wire.protocol import bus_address_problem


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
    from catbus.cli.introspect import find_registry

    return find_registry(bus, run)


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: values}
    flat: dict[str, Any] = {}
    for key, value in values.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def overruled_params(given: Mapping[str, Any], used: Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted key: value used}`` for each ``--param`` the run did not use as given."""
    used_flat = _flat(dict(used))
    return {key: used_flat.get(key) for key, value in _flat(dict(given)).items()
            if key not in used_flat or used_flat[key] != value}


class _CliNodeRuntime(NodeRuntime):
    """The node runtime, telling the user when the registry's parameters overrule --param."""

    def _join(self, link: Any) -> Any:
        terms = super()._join(link)
        if self.given_params and not terms.joining:   # a replacement's --param are overrides
            overruled = overruled_params(self.given_params, terms.params)
            if overruled:
                used = ", ".join(f"{k}={v!r}" for k, v in overruled.items())
                sets = " ".join(f"--set {self.name}.{k}=..." for k in overruled)
                print(f"catbus: node {self.name}: warning: --param ignored: the run's launch "
                      f"file sets this node's parameters (used: {used}); change them there or "
                      f"with `catbus launch ... {sets}`", file=sys.stderr, flush=True)
        return terms


def _check_bus(bus: str) -> str:
    """``--bus`` as ZeroMQ must see it: a malformed address was a ZMQError traceback."""
    problem = bus_address_problem(bus)
    if problem is None:
        return bus
    raise ConfigError("--bus", bus, f"{problem}; give the registry's address")


def _check_advertise(address: str | None) -> None:
    """``--advertise``: the node binds its data socket on that address, so it must be one of this
    host's (a bad one was a ZMQError traceback at bind)."""
    if not address:
        return
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        from catbus.runtime.dataplane import interface_addresses

        mine = ", ".join(interface_addresses().values()) or "127.0.0.1"
        raise ConfigError("--advertise", address, f"not an address of this host "
                                                   f"({exc.strerror or exc}); the node binds "
                                                   f"its data socket there, so give the IP "
                                                   f"other hosts reach it at: {mine}") from None


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


def run_node(class_path: str, *, name: str, bus: str | None, run: str | None = None,
             params: Sequence[str] = (),
             remaps: Sequence[str] = (), period: float | None = None,
             advertise: str | None = None, timeout: float = 10.0,
             paths: Sequence[str] = (), log_level: str | None = None,
             replace: bool = False, restart: bool = False, keys: str | None = None,
             data_ports: str | None = None) -> int:
    """Run one node until the run ends; returns the exit code.

    ``paths`` (``--path``) and the current folder go in front of ``sys.path`` before the class
    is imported (the launcher passes its run's import path this way)."""
    parent = os.environ.pop("CATBUS_PARENT_PID", None)
    runtime: NodeRuntime | None = None
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
        _check_advertise(advertise)
        from catbus import security

        loaded = security.load_option(keys)   # --keys: CURVE on a TCP bus
        runtime = _CliNodeRuntime(node_class, name, _find_bus(bus, run), class_path=class_path,
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
