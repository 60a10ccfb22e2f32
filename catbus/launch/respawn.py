"""The launcher's side of replacing nodes: it starts the replacement processes of hot swaps and
restarts, knows which of a name's processes is the current one, and applies restart policies
(``restart: on-failure``). The protocol itself is the registry's (:mod:`catbus.launch.swaps`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Sequence

from catbus.errors import ConfigError
from catbus.launch.imports import node_process_command
from catbus.launch.nodespec import import_node_class
from catbus.launch.swaps import Order
from catbus.launch.swapplan import fit_problem, replacement_params, swap_tick

if TYPE_CHECKING:
    from catbus.launch.launcher import Launcher
    from catbus.launch.registry import Event, Registry


def replacement_command(class_path: str, name: str, bus: str,
                        import_path: Sequence[os.PathLike | str],
                        keys: os.PathLike | str | None = None) -> list[str]:
    """``python -P -m catbus node CLASS --name NAME --bus ADDR --replace --path DIR ...``: the
    command a user types on any host to swap a node by hand (``catbus node ... --replace``)."""
    return node_process_command(class_path, name, bus, import_path,
                                ["--replace", *(["--keys", os.fspath(keys)] if keys else [])])


class Respawner:
    """Replacement processes of one run."""

    def __init__(self, launcher: "Launcher") -> None:
        self.launcher = launcher
        #: Processes of a name that are not its current one: pid -> (name, process). A swap's
        #: replacement before it takes over, the old process after.
        self.spares: dict[int, tuple[str, subprocess.Popen]] = {}
        self.restarts: dict[str, int] = {}
        #: name -> (monotonic time to start it again, why its process failed)
        self.due: dict[str, tuple[float, str]] = {}
        #: name -> why its process failed, while the launcher waits for it to exit
        self.failing: dict[str, str] = {}
        #: Parallel mode: the launch file's swaps, ordered when their wall time comes.
        self.pending = list(launcher.spec.swaps) if launcher.spec.mode == "parallel" else []

    def attach(self, registry: "Registry") -> None:
        """Let the registry order swaps, and give it the stepped swap schedule."""
        registry.swaps.can_spawn = True
        spec, schedule = self.launcher.spec, self.launcher.schedule
        if spec.mode == "stepped" and schedule is not None:
            for entry in spec.swaps:
                registry.swaps.scheduled.setdefault(entry.node, []).append(
                    (swap_tick(schedule, entry.node, entry.at),
                     entry.class_path or spec.node(entry.node).class_path, entry.overrides))

    # -- events ---------------------------------------------------------------------------------
    def on_event(self, registry: "Registry", event: "Event") -> bool:
        """Handle a registry event about replacements; True if it was one (or a failure that a
        restart policy answers)."""
        if event.kind == "swap":
            self._start_replacement(registry, event.node, event.message)
            return True
        if event.kind == "swapped":
            self._became_current(registry, event.node)
            _say(f"catbus: {event.message}")
            return True
        if event.kind == "swap-failed":
            self._became_current(registry, event.node)
            _say(f"catbus: swap of {event.node} failed, the old process goes on: "
                 f"{event.message}")
            return True
        if event.kind in ("failed", "timeout") and self._restartable(event.node):
            self.failing[event.node] = event.message
            if event.kind == "timeout":   # alive but silent: it is ours, so end it
                child = self.launcher.children.get(event.node)
                if child is not None and child.poll() is None:
                    child.send_signal(signal.SIGKILL)
            return True
        return False

    def _start_replacement(self, registry: "Registry", name: str, class_path: str) -> None:
        """Check the swap against the launch file -- the class imports and fits, the
        parameters validate -- then start the replacement; a swap that cannot work fails at
        once, naming why, and nothing is started."""
        launcher = self.launcher
        switch = registry.swaps.switches.get(name)
        problem = self._swap_problem(name, class_path, switch.order.params if switch else {})
        if problem is not None:
            for event in registry.swaps._fail(name, problem):
                launcher.on_registry_event(registry, event)
            return
        command = replacement_command(class_path, name, registry.endpoint,
                                      launcher.spec.import_path, launcher.node_keys)
        process = launcher.start_process(command)
        self.spares[process.pid] = (name, process)

    def _swap_problem(self, name: str, class_path: str, overrides: dict) -> str | None:
        spec = self.launcher.spec
        try:
            node = spec.node(name)
            if class_path == node.class_path:
                node_class = node.node_class
            else:
                class_path, node_class = import_node_class(
                    class_path, "swap", "class", import_path=spec.import_path)
            params = replacement_params(node, node_class, class_path, overrides, where="swap",
                                        prefix="params")
        except ConfigError as exc:
            return str(exc)
        return fit_problem(node, node_class, params)

    def _became_current(self, registry: "Registry", name: str) -> None:
        """After a swap (or its roll-back): the process whose pid the registry has for ``name``
        is its current one; any other goes to the spares (to be reaped)."""
        children = self.launcher.children
        pid = registry.members[name].pid
        current = children.get(name)
        if current is not None and current.pid == pid:
            return
        if current is not None:
            self.spares[current.pid] = (name, current)
            del children[name]
        spare = self.spares.pop(pid, None)
        if spare is not None:
            children[name] = spare[1]

    # -- restarts -------------------------------------------------------------------------------
    def _restartable(self, name: str) -> bool:
        spec = self.launcher.spec
        try:
            node = spec.node(name)
        except Exception:
            return False
        return (node.restart.enabled and not node.remote
                and self.restarts.get(name, 0) < node.restart.max_restarts)

    def child_exited(self, registry: "Registry", name: str, how: str) -> bool:
        """The current process of ``name`` exited before the run ended: True if it will be
        started again (its restart policy allows it), else the run fails."""
        if registry.end_tick is not None or not registry.started or not self._restartable(name):
            return False
        why = self.failing.pop(name, f"process {how}")
        count = self.restarts.get(name, 0)
        backoff = self.launcher.spec.node(name).restart.backoff * 2 ** count
        self.restarts[name] = count + 1
        registry.expect_restart(name)
        process = self.launcher.children.pop(name)
        self.spares[process.pid] = (name, process)
        self.due[name] = (time.monotonic() + backoff, why)
        _say(f"catbus: node {name} failed ({why}); restarting it in {backoff:g} s "
             f"(restart {count + 1} of {self.launcher.spec.node(name).restart.max_restarts})")
        return True

    def waiting_on_exit(self, name: str) -> bool:
        """A failure of ``name`` is being answered by a restart: wait for its process to exit."""
        return name in self.failing

    def tick(self, registry: "Registry") -> None:
        """Start the processes whose restart is due, and order the parallel swaps whose time
        has come."""
        now = time.monotonic()
        for name, (when, _why) in list(self.due.items()):
            if now >= when:
                del self.due[name]
                node = self.launcher.spec.node(name)
                process = self.launcher.start_process(replacement_command(
                    node.class_path, name, registry.endpoint, self.launcher.spec.import_path,
                    self.launcher.node_keys))
                self.launcher.children[name] = process
        if self.pending and registry.started:
            elapsed = registry.elapsed()
            while self.pending and self.pending[0].at <= elapsed:
                entry = self.pending.pop(0)
                problem = registry.swaps._request_problem(entry.node)
                if problem is not None:
                    _say(f"catbus: scheduled swap of {entry.node} at {entry.at:g} s skipped: "
                         f"{problem}")
                    continue
                for event in registry.swaps.order(Order(entry.node, entry.class_path,
                                                        dict(entry.overrides))):
                    self.launcher.on_registry_event(registry, event)

    def check_spares(self, registry: "Registry") -> None:
        """A replacement that exits before taking over fails its swap (the old one goes on);
        old processes that exit after a swap are simply reaped."""
        for pid, (name, process) in list(self.spares.items()):
            code = process.poll()
            if code is None:
                continue
            del self.spares[pid]
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            for event in registry.swaps.process_exited(pid, how):
                self.launcher.on_registry_event(registry, event)

    def processes(self) -> list[subprocess.Popen]:
        return [process for _, process in self.spares.values()]


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = ["Respawner", "replacement_command"]
