"""``catbus launch FILE --only robot,human --bus tcp://HOST:PORT``: this host's share of a run.

The run is owned by a launcher on another host (it hosts the registry and marks these nodes
``remote``); here we start just the named nodes of the same launch file, each as the ``catbus
node`` process a user would type, and supervise them until they end. Parameters and the seed
come from that registry, never from this host's copy of the file, so the two copies only need to
agree on the node names and classes.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Sequence

from catbus.errors import ConfigError
from catbus.spec.imports import node_process_command
from catbus.spec.launchfile import LaunchSpec
from catbus.spec.nodespec import NodeSpec
from catbus.wire.protocol import bus_address_problem

#: Seconds between the signals of the shutdown ladder (SIGINT, SIGTERM, SIGKILL) on Ctrl-C.
SIGNAL_GRACE = 5.0


def only_command(spec: LaunchSpec, names: Sequence[str], bus: str) -> str:
    """The ``catbus launch ... --only`` line the owning launcher prints for a remote node."""
    file = shlex.quote(os.fspath(spec.path)) if spec.path is not None else "LAUNCH.yaml"
    return f"catbus launch {file} --only {','.join(names)} --bus {bus}"


def check_only(spec: LaunchSpec, names: Sequence[str], bus: str | None) -> list[NodeSpec]:
    """The nodes ``--only`` names, checked: each in the launch file, and a registry address."""
    if not bus or bus == "ipc":
        raise ConfigError("command line", "--only", "needs --bus tcp://HOST:PORT: the registry "
                                                    "of the run these nodes join, on the host "
                                                    "that owns it")
    problem = bus_address_problem(bus)
    if problem is not None:
        raise ConfigError("command line", "--bus", f"{problem}")
    nodes = []
    for name in names:
        nodes.append(spec.node(name))   # a ConfigError listing the nodes if there is none
    if not nodes:
        raise ConfigError("command line", "--only", "give node names, e.g. --only robot,human")
    return nodes


def run_share(spec: LaunchSpec, names: Sequence[str], bus: str, *,
              extra: Sequence[str] = ()) -> int:
    """Start the named nodes against ``bus`` and wait for them; returns the exit code (see the
    README's table): 0 when every node ended cleanly, 1 if one failed (an error, or killed by a
    signal) and its restart policy did not answer, 130/143 after Ctrl-C/SIGTERM, every node
    stopped gracefully.

    The nodes' ``restart: on-failure`` is applied here, on their own host: the owner's launcher
    cannot start a process on this one. A process that fails is started again with
    ``--restart`` after its backoff, and the run's registry lets the new one take its place."""
    nodes = {node.name: node for node in check_only(spec, names, bus)}
    interrupted: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        interrupted.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    env = dict(os.environ, CATBUS_PARENT_PID=str(os.getpid()))
    children: dict[str, subprocess.Popen] = {}
    restarts: dict[str, int] = {}
    due: dict[str, float] = {}   # name -> monotonic time its new process starts
    failed: dict[str, str] = {}

    def start(node: NodeSpec, *, restart: bool = False) -> None:
        command = node_process_command(node.class_path, node.name, bus, spec.import_path,
                                       [*extra, *(["--restart"] if restart else [])])
        children[node.name] = subprocess.Popen(command, env=env, start_new_session=True,
                                               stdin=subprocess.DEVNULL)
        print(f"catbus: started node {node.name} (pid {children[node.name].pid}) for the "
              f"run at {bus}" + (" again" if restart else ""), file=sys.stderr, flush=True)

    try:
        for node in nodes.values():
            start(node)
        while not interrupted and not failed:
            for name, child in list(children.items()):
                code = child.poll()
                if code is None or code == 0 or name in due:
                    continue
                how = _how(code)
                policy = nodes[name].restart
                if policy.allows(restarts.get(name, 0)):
                    delay = policy.delay(restarts.get(name, 0))
                    restarts[name] = restarts.get(name, 0) + 1
                    due[name] = time.monotonic() + delay
                    print(f"catbus: node {name} {how}; restarting it in {delay:g} s (restart "
                          f"{restarts[name]} of {policy.max_restarts})", file=sys.stderr,
                          flush=True)
                else:
                    failed[name] = how
            for name, when in list(due.items()):
                if time.monotonic() >= when:
                    del due[name]
                    start(nodes[name], restart=True)
            if not due and all(child.poll() is not None for child in children.values()):
                break   # every node ended, none to start again
            time.sleep(0.05)
    finally:
        _stop(children.values())
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interrupted:
        return 128 + interrupted[0]
    for name, child in children.items():
        if child.returncode not in (0, None) and name not in failed:
            failed[name] = _how(child.returncode)
    for name, how in failed.items():
        print(f"catbus: node {name} {how}", file=sys.stderr)
    return 1 if failed else 0


def _how(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def _stop(children: object) -> None:
    """SIGINT (a node then leaves gracefully), SIGTERM, SIGKILL, each with a grace period."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        alive = [c for c in children if c.poll() is None]
        if not alive:
            return
        for child in alive:
            try:
                child.send_signal(sig)
            except ProcessLookupError:
                pass
        until = time.monotonic() + SIGNAL_GRACE
        while time.monotonic() < until and any(c.poll() is None for c in alive):
            time.sleep(0.02)


__all__ = ["run_share", "check_only", "only_command"]
