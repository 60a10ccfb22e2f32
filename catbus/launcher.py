"""Starts a run's node processes, supervises them, and stops every one of them.

The launcher hosts the registry, starts each local node as ``python -m catbus node ...`` (exactly
what a user types on another host for a remote node), and watches three things: registry events
(errors with tracebacks, missed heartbeats), child exit codes, and Ctrl-C. At the end -- normal,
failed or interrupted -- every child is stopped: a ``stop`` message first, then SIGINT, SIGTERM and
SIGKILL, each with a deadline. Children are in their own session so that Ctrl-C reaches only the
launcher, which then stops them in order (the recorder last, so it keeps everything), and they get
SIGTERM from the kernel if the launcher itself dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import zmq

from catbus.errors import ConfigError, NodeFailed, RunTimeout
from catbus.launchfile import LaunchSpec, NodeSpec
from catbus.progress import RunProgress
from catbus.registry import Registry
from catbus.result import RunResult
from catbus.rundir import RunDir
from catbus.runinfo import build_run_info, parallel_duration, schedule_for

#: Seconds given to children for each step of the shutdown ladder.
STOP_GRACE = 5.0
SIGNAL_GRACE = 2.0


def node_command(spec: NodeSpec, bus: str) -> list[str]:
    """The command line of a local node process (the same CLI a remote node uses)."""
    return [sys.executable, "-m", "catbus", "node", spec.class_path, "--name", spec.name,
            "--bus", bus]


def expected_config(spec: LaunchSpec) -> dict[str, dict[str, Any]]:
    """What the registry hands each node: its validated parameters, period and topics."""
    return {n.name: {"params": n.params, "period": n.period,
                     "inputs": [[b.declared, b.topic, b.policy] for b in n.inputs],
                     "outputs": [[b.declared, b.topic] for b in n.outputs]}
            for n in spec.nodes}


class Launcher:
    """One multi-process run (``parallel`` or ``stepped``)."""

    def __init__(self, spec: LaunchSpec, *, progress: bool | None = None, deadline: float = 30.0,
                 remote_timeout: float = 120.0, startup_timeout: float = 60.0) -> None:
        self.spec = spec
        self.schedule = schedule_for(spec)
        self.run_info = build_run_info(spec, self.schedule)
        self.deadline = deadline
        self.remote_timeout = remote_timeout
        self.startup_timeout = startup_timeout
        self.show_progress = progress
        self.children: dict[str, subprocess.Popen] = {}
        self.failures: list[tuple[str, str, str]] = []
        self.interrupted = False

    def run(self) -> RunResult:
        spec = self.spec
        rundir = RunDir.create(spec.name)
        ctx = zmq.Context()
        bind = rundir.endpoint("registry") if spec.bus == "ipc" else spec.bus
        registry = Registry(
            ctx, bind, expected=expected_config(spec), mode=spec.mode, seed=spec.seed,
            run_info=self.run_info, schedule=self.schedule.to_dict() if self.schedule else None,
            duration=parallel_duration(spec), order=[n.name for n in spec.nodes],
            deadline=self.deadline)
        rundir.publish(registry.endpoint, spec.name)
        # SIGTERM (kill, timeout, systemd, a CI runner) stops the run like Ctrl-C does. Left at its
        # default it killed the launcher outright: no stop for the children (they only had their
        # parent-death signal), no summary, and the run folder left behind.
        previous_handlers = {sig: signal.signal(sig, self._on_sigint)
                             for sig in (signal.SIGINT, signal.SIGTERM)}
        began = time.monotonic()
        try:
            for node in spec.nodes:
                if not node.remote:
                    self._spawn(node, registry.endpoint)
            self._supervise(registry)
        finally:
            self._stop_children(registry)
            for sig, handler in previous_handlers.items():
                signal.signal(sig, handler)
            registry.close()
            ctx.term()
            rundir.remove()
        return self._result(registry, time.monotonic() - began)

    # -- children -------------------------------------------------------------------------------
    def _spawn(self, node: NodeSpec, bus: str) -> None:
        env = dict(os.environ, CATBUS_PARENT_PID=str(os.getpid()))
        self.children[node.name] = subprocess.Popen(
            node_command(node, bus), env=env, start_new_session=True, stdin=subprocess.DEVNULL)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def _supervise(self, registry: Registry) -> None:
        spec = self.spec
        remote = [n.name for n in spec.nodes if n.remote]
        limit = self.remote_timeout if remote else self.startup_timeout
        started_by = time.monotonic() + limit
        progress = RunProgress(self.schedule, parallel_duration(spec), enabled=self.show_progress)
        try:
            while True:
                for event in registry.poll(50):
                    self._on_event(registry, event)
                self._check_children(registry)
                if self.failures:
                    registry.stop(f"node {self.failures[0][0]} failed")
                    return
                if self.interrupted:
                    registry.stop("interrupted (Ctrl-C)")
                    return
                if not registry.started and time.monotonic() > started_by:
                    raise RunTimeout(self._startup_message(registry, limit))
                if all(m.state in ("done", "failed") for m in registry.members.values()):
                    return
                progress.update(registry)
        finally:
            progress.close()

    def _startup_message(self, registry: Registry, limit: float) -> str:
        missing = registry.missing()
        remote = [n for n in missing if self.spec.node(n).remote]
        if remote:
            return (f"remote node(s) {', '.join(remote)} did not join within {limit:g} s; start "
                    f"each on its host with: catbus node CLASS --name NAME --bus {registry.endpoint}")
        waiting = registry.not_ready()
        return (f"the run did not start within {limit:g} s; still waiting for: "
                f"{', '.join(waiting) or 'nothing'}")

    def _on_event(self, registry: Registry, event: Any) -> None:
        if event.kind == "failed":
            self.failures.append((event.node, event.message, event.detail))
        elif event.kind == "timeout":
            self.failures.append((event.node, event.message, ""))

    def _check_children(self, registry: Registry) -> None:
        for name, child in self.children.items():
            code = child.poll()
            member = registry.members[name]
            if code is None or member.state in ("done", "failed"):
                continue
            # Give a dying node's last control messages (its traceback) a moment to arrive.
            for event in registry.poll(200):
                self._on_event(registry, event)
            if member.state in ("done", "failed"):
                continue
            member.state = "failed"
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            self.failures.append((name, f"process {how} before the run ended", ""))

    def _stop_children(self, registry: Registry) -> None:
        """Stop every child: stop message, SIGINT, SIGTERM, SIGKILL, each with a deadline."""
        if not self.children:
            return
        registry.stop("the run is over")
        ladder = [(None, STOP_GRACE), (signal.SIGINT, SIGNAL_GRACE),
                  (signal.SIGTERM, SIGNAL_GRACE), (signal.SIGKILL, SIGNAL_GRACE)]
        for sig, grace in ladder:
            alive = [c for c in self.children.values() if c.poll() is None]
            if not alive:
                break
            for child in alive:
                if sig is not None:
                    try:
                        child.send_signal(sig)
                    except ProcessLookupError:
                        pass
            until = time.monotonic() + grace
            while time.monotonic() < until and any(c.poll() is None for c in alive):
                for event in registry.poll(20):
                    self._on_event(registry, event)
        for child in self.children.values():
            child.wait()

    # -- result ---------------------------------------------------------------------------------
    def _result(self, registry: Registry, wall: float) -> RunResult:
        nodes = {m.name: dict(m.stats, state=m.state, pid=m.pid, host=m.host)
                 for m in registry.members.values()}
        for name, child in self.children.items():
            # How each local process ended (negative: killed by that signal, e.g. -9 when the
            # shutdown ladder had to use SIGKILL).
            nodes[name]["returncode"] = child.returncode
        if self.failures:
            name, message, detail = self.failures[0]
            raise NodeFailed(f"node {name} failed: {message}" + (f"\n{detail}" if detail else ""),
                             result=RunResult(self.spec, nodes, wall, registry.end_reason,
                                              failures=self.failures))
        return RunResult(self.spec, nodes, wall, registry.end_reason,
                         interrupted=self.interrupted)


def launch(spec: LaunchSpec, **options: Any) -> RunResult:
    """Run a ``parallel`` or ``stepped`` launch spec; raises NodeFailed if a node failed."""
    if spec.mode == "inline":
        raise ConfigError(str(spec.path or ""), "mode", "use catbus.inline for inline runs")
    return Launcher(spec, **options).run()


__all__ = ["launch", "Launcher", "node_command"]
