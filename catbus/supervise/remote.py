"""What the launcher tells the user about nodes on other hosts: the exact command that starts
each one there, the ``--only`` command that starts a host's share at once, why a run did not
start, and why an open bus on the network is refused."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any, Sequence

from catbus import security
from catbus.control.state import RunState
from catbus.runtime.hostaddr import is_loopback, reachable_bus
from catbus.spec.launchfile import LaunchSpec
from catbus.wire.sockets import tcp_host

#: Where a node's client folder goes when no client of the allow-list may register it.
NO_CLIENT = "CLIENT_DIR"


def ports_option(data_ports: tuple[int, int] | None) -> str:
    """`` --data-ports FIRST-LAST`` when the run has a data-port range, else nothing."""
    return f" --data-ports {data_ports[0]}-{data_ports[1]}" if data_ports else ""


def remote_commands(spec: LaunchSpec, endpoint: str, keys: Any,
                    names: list[str] | None = None,
                    data_ports: tuple[int, int] | None = None) -> list[str]:
    """The exact command that starts each remote node on its host (parameters and seed
    come from the registry, so the command needs nothing else but where to import the class
    from: the run's import path as ``--path`` options -- on another host, the folders that
    hold the same packages there -- the key folder of that host and the run's data ports)."""
    bus = reachable_bus(endpoint)
    paths = "".join(f" --path {shlex.quote(os.fspath(folder))}" for folder in spec.import_path)
    return [f"catbus node {shlex.quote(n.class_path)} --name {n.name} --bus {bus}{paths}"
            f"{security.node_option(keys, n.name)}{ports_option(data_ports)}"
            for n in spec.nodes if n.remote and (names is None or n.name in names)]


def hosts_of(keys: Any, names: Sequence[str]) -> dict[str | None, list[str]]:
    """The remote nodes grouped by the client (host) whose key may register them, in launch
    order: ``{client: [names]}``. Without keys one group (``None``): any host may start any
    node. A node no client may register is grouped under :data:`NO_CLIENT`."""
    if keys is None:
        return {None: list(names)}
    groups: dict[str | None, list[str]] = {}
    for name in names:
        groups.setdefault(keys.client_for_node(name) or NO_CLIENT, []).append(name)
    return groups


def only_commands(spec: LaunchSpec, endpoint: str, keys: Any,
                  data_ports: tuple[int, int] | None = None) -> list[str]:
    """``catbus launch FILE --only ...`` lines for the remote nodes: one per host (each with
    that host's key folder and the run's ``--data-ports``); a single line when one key may
    register all of them (or the run has no keys)."""
    from catbus.supervise.share import only_command

    remote = [n.name for n in spec.nodes if n.remote]
    if not remote:
        return []
    bus = reachable_bus(endpoint)
    lines = []
    for client, names in hosts_of(keys, remote).items():
        key_option = "" if keys is None else \
            f" --keys {keys.folder / security.CLIENTS / client if client != NO_CLIENT else NO_CLIENT}"
        lines.append(only_command(spec, names, bus) + key_option + ports_option(data_ports))
    return lines


def announce_remote(spec: LaunchSpec, endpoint: str, keys: Any, timeout: float,
                    data_ports: tuple[int, int] | None = None) -> None:
    """Tell the user, before waiting, what to type on the other host(s)."""
    commands = remote_commands(spec, endpoint, keys, data_ports=data_ports)
    if not commands:
        return
    tcp = endpoint.startswith("tcp://")
    where = ("on its host" if tcp else
             "on THIS machine (the bus is ipc; set bus: tcp://ADDR:PORT for another host)")
    print(f"catbus: waiting up to {timeout:g} s for {len(commands)} remote node(s); start "
          f"each {where}:", file=sys.stderr)
    for command in commands:
        print(f"  {command}", file=sys.stderr)
    if tcp:
        lines = only_commands(spec, endpoint, keys, data_ports)
        if len(lines) == 1:
            print(f"or, with this launch file on that host, all of them at once:\n  {lines[0]}",
                  file=sys.stderr)
        else:
            print("or, with this launch file on each host, that host's nodes at once:",
                  file=sys.stderr)
            for line in lines:
                print(f"  {line}", file=sys.stderr)
    sys.stderr.flush()


def startup_message(spec: LaunchSpec, state: RunState, endpoint: str, keys: Any,
                    limit: float, data_ports: tuple[int, int] | None = None) -> str:
    """Why the run did not start within ``limit`` seconds: the remote nodes that never
    joined, with their commands, or the nodes still not ready."""
    remote = [n for n in state.missing() if spec.node(n).remote]
    if remote:
        commands = "; ".join(remote_commands(spec, endpoint, keys, remote, data_ports))
        return (f"remote node(s) {', '.join(remote)} did not join within {limit:g} s; start "
                f"each on its host with: {commands}")
    waiting = state.not_ready()
    return (f"the run did not start within {limit:g} s; still waiting for: "
            f"{', '.join(waiting) or 'nothing'}")


def open_bus_problem(endpoint: str, keys: Any, accept: str = "--insecure") -> str | None:
    """Why a bus bound at ``endpoint`` is refused, or None: without keys, a TCP bus on an
    address other hosts reach lets anyone who reaches it join, read and publish (the run's
    parameters, its seed, every topic, and driving its nodes). Loopback and ipc stay open:
    only this machine reaches them. ``accept``: the option that takes the risk."""
    host = tcp_host(endpoint)
    if host is None or keys is not None or is_loopback(host):
        return None
    return (f"{endpoint} would be an open bus on the network (anyone who reaches it can join, "
            f"read and publish): secure it with keys (catbus keys generate keys/ --node "
            f"NODE=HOST, then security: {{keys: keys/}} or --keys keys/), or pass {accept} to "
            f"accept the risk; a bus on 127.0.0.1 or ipc needs neither")


__all__ = ["remote_commands", "only_commands", "hosts_of", "announce_remote",
           "startup_message", "open_bus_problem", "ports_option", "NO_CLIENT"]
