"""What the launcher tells the user about nodes on other hosts: the exact command that starts
each one there, and why a run did not start."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from catbus import security
from catbus.control.state import RunState
from catbus.runtime.dataplane import reachable_bus
from catbus.spec.launchfile import LaunchSpec


def remote_commands(spec: LaunchSpec, endpoint: str, keys: Any,
                    names: list[str] | None = None) -> list[str]:
    """The exact command that starts each remote node on its host (parameters and seed
    come from the registry, so the command needs nothing else but where to import the class
    from: the run's import path as ``--path`` options -- on another host, the folders that
    hold the same packages there)."""
    bus = reachable_bus(endpoint)
    paths = "".join(f" --path {shlex.quote(os.fspath(folder))}" for folder in spec.import_path)
    return [f"catbus node {shlex.quote(n.class_path)} --name {n.name} --bus {bus}{paths}"
            f"{security.node_option(keys, n.name)}"
            for n in spec.nodes if n.remote and (names is None or n.name in names)]


def announce_remote(spec: LaunchSpec, endpoint: str, keys: Any, timeout: float) -> None:
    """Tell the user, before waiting, what to type on the other host."""
    commands = remote_commands(spec, endpoint, keys)
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
        from catbus.supervise.share import only_command

        remote = [n.name for n in spec.nodes if n.remote]
        print("or, with this launch file on that host, all of them at once:\n  "
              + only_command(spec, remote, reachable_bus(endpoint))
              + security.node_option(keys, remote[0]), file=sys.stderr)
    sys.stderr.flush()


def startup_message(spec: LaunchSpec, state: RunState, endpoint: str, keys: Any,
                    limit: float) -> str:
    """Why the run did not start within ``limit`` seconds: the remote nodes that never
    joined, with their commands, or the nodes still not ready."""
    remote = [n for n in state.missing() if spec.node(n).remote]
    if remote:
        commands = "; ".join(remote_commands(spec, endpoint, keys, remote))
        return (f"remote node(s) {', '.join(remote)} did not join within {limit:g} s; start "
                f"each on its host with: {commands}")
    waiting = state.not_ready()
    return (f"the run did not start within {limit:g} s; still waiting for: "
            f"{', '.join(waiting) or 'nothing'}")


__all__ = ["remote_commands", "announce_remote", "startup_message"]
